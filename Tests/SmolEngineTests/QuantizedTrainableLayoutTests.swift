import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolModels
import SmolMoE
import SmolEngine
import SmolTestSupport

// The quantized trainable layout (`moe restructure --layout trainable --quantize-experts nf4|int4`):
// written by SmolMoE, read back by the engine through `ModelLoader.load(checkpoint:)`.
//
// Error budgets (named, measured on these fixtures; weights are N(0, 0.08²) random):
// - NF4 and 4-bit affine round a Gaussian weight with a relative RMS error near 0.09 (NF4 b64
//   measured 0.091–0.093 here); `stackRMSBudget` leaves room for the smallest stacks.
// - The logits of the model with quantized experts against the same model unquantized: relative
//   RMS error 0.002–0.15 and mean KL divergence 0.0000–0.0045 nats across the six architectures
//   (mixtral, whose two experts per token out of four carry most of the output, is the worst).
//   `logitsRMSBudget` and `klBudget` are about 1.5× the worst.
private let stackRMSBudget = 0.12
private let logitsRMSBudget = 0.25
private let klBudget = 0.007

/// Fixtures and the 4-bit formats their expert shapes allow (int4 groups of 32 need rows of a
/// multiple of 32: mixtral's down_proj rows are 48 wide).
private let quantizedCases: [String] = [
    "qwen3_moe/nf4", "qwen3_moe/int4", "qwen2_moe/nf4", "qwen2_moe/int4", "mixtral/nf4", "olmoe/nf4", "olmoe/int4",
    "gemma4_moe/nf4", "gemma4_moe/int4", "gpt_oss/nf4", "gpt_oss/int4", "qwen3_moe_bf16_sharded/nf4",
]

private func quantization(_ method: String) -> ExpertQuantization {
    method == "nf4" ? .nf4(blockSize: 64) : .int4(groupSize: 32)
}

/// Restructures fixture `arch` to the trainable layout with quantized experts, in a temporary folder.
private func writeQuantized(_ arch: String, _ q: ExpertQuantization, to out: URL) throws {
    let dir = Fixtures.hf(arch)
    let ckpt = try Checkpoint.open(dir.path)
    let config = try ModelConfig.load(folder: dir)
    let plan = try MoERestructure.plan(ckpt.source.tensorInfos, config: config, to: .trainable)
    try MoERestructure.write(plan, source: ckpt.source, to: out.path, inputFolder: dir.path, quantizeExperts: q)
}

private func logSoftmax(_ x: ArraySlice<Float>) -> [Double] {
    let m = Double(x.max()!)
    let s = x.reduce(0.0) { $0 + exp(Double($1) - m) }
    return x.map { Double($0) - m - log(s) }
}

@Suite struct QuantizedTrainableLayoutTests {
    @Test(arguments: quantizedCases)
    func quantizedExpertsStayWithinTheirBudget(_ c: String) throws {
        let parts = c.split(separator: "/").map(String.init)
        let (arch, q) = (parts[0], quantization(parts[1]))
        let tmp = Fixtures.temporaryDirectory("moe-quantized")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("model")
        try writeQuantized(arch, q, to: out)

        // The folder says what it holds, and every expert stack is stored quantized.
        let ckpt = try Checkpoint.open(out.path)
        let json = try #require(ckpt.config)
        #expect(try ExpertQuantization(config: json, file: "config.json") == q)
        let stacks = ckpt.source.tensorInfos.filter { $0.name.hasSuffix("experts.gate_up_proj") || $0.name.hasSuffix("experts.down_proj") }
        #expect(!stacks.isEmpty)
        for s in stacks { #expect(s.type == .dense(parts[1] == "nf4" ? .u8 : .u32), "\(s.name) is \(s.type.name)") }

        // Dequantized stacks are close to the originals (same name in the unquantized trainable view).
        let original = try Checkpoint.open(Fixtures.hf(arch).path)
        let config = try ModelConfig.load(folder: Fixtures.hf(arch))
        let plain = try MoERestructure.plan(original.source.tensorInfos, config: config, to: .trainable)
        let reader = DirectWeightReader(ckpt.source, mlx: nil, experts: q)
        for s in stacks {
            let ref = try #require(plain.tensors.first { $0.info.name == s.name })
            let w = try plain.bytes(ref, from: original.source).withUnsafeBytes {
                try ElementCodec.decode(ref.info.type.denseDType!, $0, count: ref.info.elementCount)
            }
            #expect(reader.shape(hf: s.name) == ref.info.shape)
            let d = try reader.floats(hf: s.name)
            try #require(d.count == w.count)
            var num = 0.0, den = 0.0
            for i in w.indices { num += Double(d[i] - w[i]) * Double(d[i] - w[i]); den += Double(w[i]) * Double(w[i]) }
            #expect((num / den).squareRoot() < stackRMSBudget, "\(c) \(s.name): RMS error \((num / den).squareRoot())")
        }

        // The engine runs the folder; its logits stay within budget of the unquantized model's.
        let ref = try Reference(arch)
        let ids = try ref.ints("input_ids")
        let a = try Engine(model: try ModelLoader.load(checkpoint: original), options: .transformersSDPA).forward(ids).logits
        let b = try Engine(model: try ModelLoader.load(checkpoint: ckpt), options: .transformersSDPA).forward(ids).logits
        var num = 0.0, den = 0.0
        for i in a.indices { num += Double(b[i] - a[i]) * Double(b[i] - a[i]); den += Double(a[i]) * Double(a[i]) }
        let rms = (num / den).squareRoot()
        let V = a.count / ids.count
        var kl = 0.0
        for t in 0..<ids.count {
            let p = logSoftmax(a[(t * V)..<((t + 1) * V)]), r = logSoftmax(b[(t * V)..<((t + 1) * V)])
            for v in 0..<V { kl += exp(p[v]) * (p[v] - r[v]) }
        }
        kl /= Double(ids.count)
        #expect(rms < logitsRMSBudget, "\(c): logits RMS error \(rms)")
        #expect(kl < klBudget, "\(c): mean KL \(kl)")
        #expect(rms > 0, "\(c): quantized experts gave identical logits: were they quantized at all?")
    }

    @Test func shapesThatDoNotSplitIntoGroupsAreRefusedNamingTheTensor() throws {
        let tmp = Fixtures.temporaryDirectory("moe-quantized")
        defer { try? FileManager.default.removeItem(at: tmp) }
        // mixtral's down_proj rows are 48 wide: not whole int4 groups of 32.
        do {
            try writeQuantized("mixtral", .int4(groupSize: 32), to: tmp.appendingPathComponent("m"))
            Issue.record("expected an error")
        } catch let e as SmolError {
            #expect(e.description.contains("experts.down_proj"), "\(e)")
            #expect(e.description.contains("48"), "\(e)")
        }
    }
}
