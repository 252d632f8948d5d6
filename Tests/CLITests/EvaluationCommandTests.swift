import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport

/// reference.safetensors of a fixture: transformers' ids, logits [1, T, V], hidden states.
struct CLIReference {
    let file: SafetensorsFile
    init(_ arch: String) throws {
        file = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("reference.safetensors").path)
    }
    func floats(_ name: String) throws -> [Float] {
        try file.tensorBytes(name).withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }
    }
    func ints(_ name: String) throws -> [Int] {
        try file.tensorBytes(name).withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }
    var hiddenStateCount: Int { file.tensorInfos.filter { $0.name.hasPrefix("hidden_states.") }.count }
}

func maxRelError(_ a: [Float], _ ref: [Float]) -> Float {
    var num: Float = 0, den: Float = 0
    for i in a.indices { num = max(num, abs(a[i] - ref[i])); den = max(den, abs(ref[i])) }
    return num / den
}

/// Float32 engine vs transformers (see SmolEngineTests' `activationTolerance`).
let cliActivationTolerance: Float = 1e-4

@Suite struct EvaluationCommandTests {
    @Test func logitsCommandWritesTransformersLayout() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ref = try CLIReference("gemma3")
        let ids = try ref.ints("input_ids")
        let gguf = dir.appendingPathComponent("g.gguf").path
        #expect(try CLIRun.run(["convert", Fixtures.hf("gemma3").path, gguf]).status == 0)
        for model in [Fixtures.hf("gemma3").path, gguf] {
            let out = dir.appendingPathComponent("out.safetensors").path
            try? FileManager.default.removeItem(atPath: out)
            let r = try CLIRun.run(["logits", model, "--tokens", ids.map(String.init).joined(separator: ","),
                                    "--output", out, "--hidden-states"])
            #expect(r.status == 0, "\(r.stderr)")
            let f = try SafetensorsFile(path: out)
            #expect(f.info("logits")?.shape == [ids.count, 512])
            #expect(f.info("logits")?.type == .dense(.f32))
            let logits = try f.tensorBytes("logits").withUnsafeBytes { raw in
                (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            }
            #expect(maxRelError(logits, try ref.floats("logits")) < cliActivationTolerance, "\(model)")
            #expect(f.tensorInfos.filter { $0.name.hasPrefix("hidden_states.") }.count == ref.hiddenStateCount)
        }
    }

    @Test func perplexityJSONOnAFixture() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ref = try CLIReference("llama")
        let ids = try ref.ints("input_ids")
        let tokens = dir.appendingPathComponent("ids.json").path
        try Data(("[" + (ids + ids).map(String.init).joined(separator: ", ") + "]").utf8).write(to: URL(fileURLWithPath: tokens))
        let r = try CLIRun.run(["perplexity", Fixtures.hf("llama").path, "--tokens", tokens, "--ctx", "32", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(r.stdout)
        #expect(json["tokens_scored"]?.intValue == 30)
        for key in ["ppl", "ppl_stderr", "seconds", "tokens_per_second"] { #expect(json[key]?.doubleValue != nil, "\(key)") }
        // The same statistic from transformers' logits: both chunks are the reference pass
        // (no BOS for this fixture), scored at rows 16 … 30.
        let logits = try ref.floats("logits"), V = 512
        var sum = 0.0
        for row in 16...30 {
            let x = logits[(row * V)..<((row + 1) * V)].map(Double.init)
            let m = x.max()!
            sum += m + log(x.reduce(0) { $0 + exp($1 - m) }) - x[ids[row + 1]]
        }
        let expected = exp(sum / 15)
        let ppl = try #require(json["ppl"]?.doubleValue)
        #expect(abs(ppl - expected) / expected < 1e-4, "\(ppl) vs \(expected)")
        let table = try CLIRun.run(["perplexity", Fixtures.hf("llama").path, "--tokens", tokens, "--ctx", "32"])
        #expect(table.stdout.hasPrefix("PPL = "))
    }

    @Test func perplexityRefusesAShortText() throws {
        let r = try CLIRun.run(["perplexity", Fixtures.hf("llama").path, "--tokens", "1,2,3,4,5,6,7,8,9", "--ctx", "8"])
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("smolconv: error: ") && r.stderr.contains("at least 16"))
    }

    @Test func verifyJSONAndPlot() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ids = try CLIReference("qwen3").ints("input_ids")
        let gguf = dir.appendingPathComponent("q.gguf").path
        #expect(try CLIRun.run(["convert", Fixtures.hf("qwen3").path, gguf, "--outtype", "bf16"]).status == 0)
        let png = dir.appendingPathComponent("v.png").path
        let r = try CLIRun.run(["verify", Fixtures.hf("qwen3").path, gguf, "--tokens", (ids + ids).map(String.init).joined(separator: ","),
                                "--ctx", "32", "--json", "--plot", png])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(r.stdout)
        let kld = try #require(json["kld_mean"]?.doubleValue)
        #expect(kld > 0 && kld < 1e-2)  // BF16 weights: small but real divergence
        #expect(json["kld_p99"]?.doubleValue != nil && json["top1_agreement"]?.doubleValue != nil)
        #expect(json["ppl_original"]?.doubleValue != nil && json["ppl_converted"]?.doubleValue != nil)
        let tensors = try #require(json["tensors"]?.arrayValue)
        #expect(tensors.count == 24)
        // 2-D tensors went to BF16 (finite SQNR, ~50 dB for 8-bit mantissas); norms stayed F32.
        for t in tensors {
            if t["shape"]?.arrayValue?.count == 2 {
                let s = try #require(t["sqnr_db"]?.doubleValue)
                #expect(s > 40 && s < 60, "\(t)")
            } else {
                #expect(t["identical"] == .bool(true))
            }
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let table = try CLIRun.run(["verify", Fixtures.hf("qwen3").path, gguf, "--tokens", (ids + ids).map(String.init).joined(separator: ","), "--ctx", "32"])
        #expect(table.stdout.contains("mean KLD") && table.stdout.contains("same top-1"))
    }
}
