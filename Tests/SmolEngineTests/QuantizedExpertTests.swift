import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolKernels
import SmolQuant
import SmolModels
import SmolMoE
import SmolEngine
import SmolTestSupport

// Quantized experts: the stacks held as GGUF blocks, dequantized one active expert at a time.
// SmolQuant has no quantizer on main yet, so the tests encode blocks with a transcription of
// ggml's reference quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) below, and decode
// through SmolQuant's dequantizer (bit-exact with gguf-py).

/// Logit budget of Q8_0 experts against the Float32 model (max |Δ| / max |logit|). Q8_0 rounds each
/// weight to within 1/254 of its block's largest magnitude (~0.2% of a typical weight for these
/// N(0, 0.08²) fixtures); the experts carry much of the residual stream of these 2-layer toys, so
/// it shows almost undiluted: measured 6e-3…9e-3 over the six architectures. Budget 2e-2.
let q8ExpertLogitBudget: Float = 2e-2
/// The same for Q4_0 (16 levels per block, step ≈ amax/8, ~16× Q8_0's error): measured 0.08…0.20.
/// Budget 0.4: this only states the cost; mapping errors are caught exactly by the grouped-vs-
/// reference and GGUF-vs-in-memory comparisons below.
let q4ExpertLogitBudget: Float = 0.4

enum TestQuant {
    /// ggml quantize_row_q8_0_ref: d = amax/127 stored as f16, q = round(x/d).
    static func q8_0(_ x: ArraySlice<Float>) -> [UInt8] {
        precondition(x.count % 32 == 0)
        var out: [UInt8] = []
        var i = x.startIndex
        while i < x.endIndex {
            let b = x[i..<(i + 32)]
            let amax = b.map(abs).max()!
            let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
            let h = FloatBits.f32ToF16(d)
            out += [UInt8(h & 0xff), UInt8(h >> 8)]
            out += b.map { UInt8(bitPattern: Int8(($0 * id).rounded(.toNearestOrAwayFromZero))) }
            i += 32
        }
        return out
    }

    /// ggml quantize_row_q4_0_ref: d = (signed value of largest magnitude)/−8, q = min(15, ⌊x/d + 8.5⌋),
    /// element j in the low nibble of byte j, element j + 16 in its high nibble.
    static func q4_0(_ x: ArraySlice<Float>) -> [UInt8] {
        precondition(x.count % 32 == 0)
        var out: [UInt8] = []
        var i = x.startIndex
        while i < x.endIndex {
            let b = Array(x[i..<(i + 32)])
            var amax: Float = 0, mx: Float = 0
            for v in b where amax < abs(v) { amax = abs(v); mx = v }
            let d = mx / -8, id: Float = d != 0 ? 1 / d : 0
            let h = FloatBits.f32ToF16(d)
            out += [UInt8(h & 0xff), UInt8(h >> 8)]
            for j in 0..<16 {
                let lo = min(15, Int8(b[j] * id + 8.5)), hi = min(15, Int8(b[j + 16] * id + 8.5))
                out.append(UInt8(lo) | (UInt8(hi) << 4))
            }
            i += 32
        }
        return out
    }

    static func encode(_ x: [Float], _ type: GGMLType) -> [UInt8] {
        type == .q8_0 ? q8_0(x[...]) : q4_0(x[...])
    }
}

/// The model with every Float32 expert stack re-held as `type` blocks.
func quantizingExperts(_ model: DenseDecoderModel, _ type: GGMLType) throws -> DenseDecoderModel {
    var m = model
    for i in m.weights.layers.indices {
        guard var moe = m.weights.layers[i].moe else { continue }
        let s = try #require(moe.experts as? DenseExpertStore)
        let E = s.numExperts, m1 = s.hiddenSize * s.intermediateSize
        func stack(_ v: [Float]) throws -> QuantizedExpertStore.Stack {
            let bytes = TestQuant.encode(v, type)
            return try QuantizedExpertStore.Stack(type: type, bytes: TensorBytes(bytes), experts: E,
                                                  expertStride: bytes.count / E, offset: 0, elements: m1)
        }
        moe.experts = try QuantizedExpertStore(experts: E, hidden: s.hiddenSize, intermediate: s.intermediateSize,
                                               gate: try stack(s.gate), up: try stack(s.up), down: try stack(s.down),
                                               gateBias: s.gateBias, upBias: s.upBias, downBias: s.downBias)
        m.weights.layers[i].moe = moe
    }
    return m
}

@Suite struct QuantizedExpertTests {
    @Test func encoderMatchesSmolQuantDecoderByHand() throws {
        // A block 0, 1, …, 31 (scaled): Q8_0 round-trips within d/2, Q4_0 within d/2 of its levels.
        let x = (0..<32).map { Float($0) * 0.25 - 4 }
        let q8 = try GGUFQuant.dequantize(.q8_0, TestQuant.q8_0(x[...]), count: 32)
        let d8 = 4 / Float(127)
        #expect(zip(q8, x).allSatisfy { abs($0 - $1) <= d8 / 2 + 1e-3 })
        let q4 = try GGUFQuant.dequantize(.q4_0, TestQuant.q4_0(x[...]), count: 32)
        #expect(q4[0] == -4)   // the extreme value maps exactly to level 0 · d
        #expect(zip(q4, x).allSatisfy { abs($0 - $1) <= 0.5 * 4 / 8 + 1e-3 })
    }

    @Test(arguments: ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss"])
    func quantizedExpertsStayWithinBudget(_ arch: String) throws {
        let ref = try Reference(arch)
        let ids = try ref.ints("input_ids")
        let f32 = try moeModel(arch, .shipped)
        let base = try Engine(model: f32, options: .transformersSDPA).forward(ids).logits
        for (type, budget) in [(GGMLType.q8_0, q8ExpertLogitBudget), (.q4_0, q4ExpertLogitBudget)] {
            let q = try quantizingExperts(f32, type)
            let grouped = try Engine(model: q, options: .transformersSDPA).forward(ids).logits
            let err = relativeError(grouped, base)
            #expect(err < budget && err > 0, "\(arch) \(type.name) experts: \(err)")
            // The reference loop dequantizes through the reference decoder, bit-identical to the
            // fast one: only summation order differs.
            var opts = EngineOptions.transformersSDPA
            opts.expertKernel = .reference
            let plain = try Engine(model: q, options: opts).forward(ids).logits
            #expect(relativeError(grouped, plain) < 1e-5, "\(arch) \(type.name): grouped vs reference")
        }
    }

    @Test(arguments: ["qwen3_moe", "olmoe", "gemma4_moe"])
    func quantizedGGUFExpertsLoadAndStayQuantized(_ arch: String) throws {
        // SmolMoE's GGUF layout with the expert stacks written as Q8_0: ModelLoader keeps them as
        // blocks, and the model equals the in-memory quantized one exactly (same bytes per expert).
        let dir = Fixtures.hf(arch)
        let config = try ModelConfig.load(folder: dir)
        let source = try SafetensorsCheckpoint(path: dir.path)
        let plan = try MoERestructure.plan(source.tensorInfos, config: config, to: .gguf)
        let tmp = Fixtures.temporaryDirectory("moe-q8")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let file = tmp.appendingPathComponent("model.gguf").path
        let tensors = try plan.tensors.map { ref -> GGUFWriter.Tensor in
            guard case .block(let g) = ref.info.type else { throw SmolError(.invalidArgument, "unexpected type") }
            if ref.info.name.hasSuffix("_exps.weight") {
                // Row-major [E, rows, cols]: every row is whole Q8_0 blocks.
                let floats = try GGUFQuant.dequantize(g, try plan.bytes(ref, from: source).array, count: ref.info.elementCount)
                let bytes = TestQuant.encode(floats, .q8_0)
                return GGUFWriter.Tensor(name: ref.info.name, type: .q8_0, shape: ref.info.shape) { TensorBytes(bytes) }
            }
            return GGUFWriter.Tensor(name: ref.info.name, type: g, shape: ref.info.shape) { try plan.bytes(ref, from: source) }
        }
        try GGUFWriter.write(to: file, metadata: plan.ggufMetadata!, tensors: tensors)
        let gguf = try GGUFFile(path: file)
        let loaded = try ModelLoader.load(config: config, source: gguf)
        let layer = try #require(loaded.weights.layers.first { $0.moe != nil }?.moe)
        let store = try #require(layer.experts as? QuantizedExpertStore)
        #expect(store.gate.type == .q8_0 && store.down.type == .q8_0)

        let ids = try Reference(arch).ints("input_ids")
        let fromFile = try Engine(model: loaded, options: .transformersSDPA).forward(ids).logits
        let inMemory = try Engine(model: try quantizingExperts(try moeModel(arch, .shipped), .q8_0),
                                  options: .transformersSDPA).forward(ids).logits
        #expect(fromFile == inMemory)
    }
}

