import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolModels
import SmolEngine
import SmolTestSupport

/// Logits and hidden states vs transformers 5.17 (Float32, CPU). Both sides compute in Float32 but
/// sum in different orders (BLAS blocking vs torch's kernels, our RoPE tables rounded once per
/// angle), so they differ by a few ulps per op, compounded over a few layers: 1e-4 of the largest
/// magnitude is ~30× that noise and far below any semantic error (a wrong norm or mask is O(1)).
let activationTolerance: Float = 1e-4
/// The loss is a mean of logsumexp terms; logit noise of 1e-6 moves it by ~1e-7 relative, so 1e-5
/// catches a wrong shift/label convention or averaging (≥1e-2) with margin.
let lossTolerance: Float = 1e-5
/// The fixtures' greedy run: 8 prompt tokens then 12 new ones.
let promptLength = 8
let newTokens = 12

struct Reference {
    let file: SafetensorsFile
    init(_ arch: String) throws {
        file = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("reference.safetensors").path)
    }
    func floats(_ name: String) throws -> [Float] { try loadFloat(file, name) }
    func ints(_ name: String) throws -> [Int] {
        let bytes = try file.tensorBytes(name)
        return bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }
    var hiddenStateCount: Int { file.tensorInfos.filter { $0.name.hasPrefix("hidden_states.") }.count }
}

/// The fixtures come from `AutoModelForCausalLM.from_config(...)` with transformers' default
/// attention (SDPA), which drops Gemma 2's attention soft-capping (with it, gemma2 logits differ
/// by 1.6e-4 relative; without it, 5e-7). So the fixture comparisons run with that convention.
func engine(_ arch: String, options: EngineOptions = .transformersSDPA) throws -> Engine {
    let dir = Fixtures.hf(arch)
    let source = try SafetensorsCheckpoint(path: dir.path)
    return Engine(model: try DenseDecoderModel.load(configDirectory: dir, source: source), options: options)
}

/// eos ids from generation_config.json (the fixtures generate with min_new_tokens = 12, so eos is
/// suppressed for the whole run).
func eosTokens(_ arch: String) throws -> Set<Int> {
    let data = try Data(contentsOf: Fixtures.hf(arch).appendingPathComponent("generation_config.json"))
    let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    if let one = obj["eos_token_id"] as? Int { return [one] }
    return Set(obj["eos_token_id"] as? [Int] ?? [])
}

@Suite struct DenseFixtureTests {
    @Test(arguments: Fixtures.denseArchitectures)
    func logitsAndHiddenStatesMatchTransformers(arch: String) throws {
        let ref = try Reference(arch)
        let e = try engine(arch)
        let ids = try ref.ints("input_ids")
        let out = try e.forward(ids, captureHiddenStates: true)
        let logitsError = relativeError(out.logits, try ref.floats("logits"))
        #expect(logitsError < activationTolerance, "\(arch) logits: \(logitsError)")
        let hidden = try #require(out.hiddenStates)
        #expect(hidden.count == ref.hiddenStateCount)
        for (i, h) in hidden.enumerated() {
            let err = relativeError(h, try ref.floats("hidden_states.\(i)"))
            #expect(err < activationTolerance, "\(arch) hidden_states.\(i): \(err)")
        }
    }

    @Test(arguments: Fixtures.denseArchitectures)
    func lossMatchesTransformers(arch: String) throws {
        let ref = try Reference(arch)
        let loss = try engine(arch).loss(try ref.ints("input_ids"))
        let expected = try ref.floats("loss")[0]
        #expect(abs(loss - expected) / abs(expected) < lossTolerance, "\(arch) loss \(loss) vs \(expected)")
    }

    @Test(arguments: Fixtures.denseArchitectures)
    func greedyGenerationWithCacheMatchesTransformers(arch: String) throws {
        let ref = try Reference(arch)
        let expected = try ref.ints("generated_ids")
        #expect(expected.count == promptLength + newTokens)
        let prompt = Array(expected.prefix(promptLength))
        let generated = try engine(arch).generate(prompt, maxNewTokens: newTokens, stopTokens: try eosTokens(arch),
                                                  minNewTokens: newTokens)
        #expect(generated == expected, "\(arch)")
    }

    @Test func cachedDecodingMatchesFullForward() throws {
        // Gemma 3 has sliding layers (window 8): feeding 20 tokens one at a time through the cache
        // must give the same last-row logits as one full pass (the window applies by position).
        let e = try engine("gemma3")
        let ids = try Reference("gemma3").ints("input_ids").prefix(20).map { $0 }
        let full = try e.forward(ids).logits
        let cache = e.makeCache()
        var last: [Float] = []
        for t in ids { last = try e.forward([t], cache: cache).logits }
        let V = e.vocabSize
        #expect(relativeError(last, Array(full[(19 * V)..<(20 * V)])) < activationTolerance)
    }

    @Test func gemma2AttentionSoftcappingIsApplied() throws {
        // With soft-capping on (eager semantics) gemma2 must move away from the SDPA fixture by
        // about the size of the cap's effect, x − 50·tanh(x/50) ≈ x³/7500; off, it matches.
        let ref = try Reference("gemma2")
        let ids = try ref.ints("input_ids")
        let capped = try engine("gemma2", options: EngineOptions(attentionSoftcapping: true)).forward(ids).logits
        let err = relativeError(capped, try ref.floats("logits"))
        #expect(err > 1e-5 && err < 1e-3)
    }

    @Test func nonDenseModelTypeIsRejected() throws {
        // A configuration ModelConfig reads but that is no dense architecture (an MoE).
        let config = try ModelConfig.load(folder: Fixtures.hf("mixtral"))
        let source = try SafetensorsCheckpoint(path: Fixtures.hf("mixtral").path)
        #expect(throws: SmolError.self) { try DenseDecoderModel.load(config: config, source: source) }
    }

    @Test func tokenOutsideVocabularyThrows() throws {
        #expect(throws: SmolError.self) { try engine("llama").forward([0, 100_000]) }
    }
}
