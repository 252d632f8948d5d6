import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolKernels
import SmolModels
import SmolMoE
import SmolEngine
import SmolTestSupport

/// The expert layouts a fixture is loaded from.
enum FixtureLayout: String, CaseIterable {
    /// The checkpoint as shipped (per-expert for qwen/mixtral/olmoe, fused for gemma4/gpt_oss).
    case shipped
    /// transformers' stacked layout: the fixture's `trainable/` folder, or the shipped files when
    /// the architecture ships stacked.
    case trainable
    /// SmolMoE's GGUF layout, written to a temporary file and read back with the config.json.
    case gguf
}

/// Every MoE fixture in every layout.
let moeCases: [String] = Fixtures.moeArchitectures.flatMap { a in FixtureLayout.allCases.map { "\(a)/\($0.rawValue)" } }

/// Loads fixture `arch` from `layout` through `ModelLoader`. The GGUF file is removed before return
/// (the loaded model holds no reference to it: F32 experts are copied into Float32 stacks).
func moeModel(_ arch: String, _ layout: FixtureLayout) throws -> DenseDecoderModel {
    var model = try loadMoEModel(arch, layout)
    // The bf16 fixture's reference ran the bf16-loaded model cast to float32, RoPE tables included.
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.hf(arch).appendingPathComponent("config.json"))) as? [String: Any]
    if config?["dtype"] as? String == "bfloat16" { model = model.withRoPETablesRounded(to: .bf16) }
    return model
}

func loadMoEModel(_ arch: String, _ layout: FixtureLayout) throws -> DenseDecoderModel {
    let dir = Fixtures.hf(arch)
    let config = try ModelConfig.load(folder: dir)
    switch layout {
    case .shipped:
        return try ModelLoader.load(config: config, source: try SafetensorsCheckpoint(path: dir.path))
    case .trainable:
        let t = dir.appendingPathComponent("trainable")
        let path = FileManager.default.fileExists(atPath: t.path) ? t.path : dir.path
        let source = try SafetensorsCheckpoint(path: path)
        // Precondition of the test: this really is the stacked layout.
        let arch = try #require(MoEArchitecture.forModelType(config.modelType))
        #expect(MoERestructure.detectLayout(source.tensorInfos.map(\.name), arch) == .trainable)
        return try ModelLoader.load(config: config, source: source)
    case .gguf:
        let source = try SafetensorsCheckpoint(path: dir.path)
        let plan = try MoERestructure.plan(source.tensorInfos, config: config, to: .gguf)
        let tmp = Fixtures.temporaryDirectory("moe-engine")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let file = tmp.appendingPathComponent("model.gguf").path
        try MoERestructure.write(plan, source: source, to: file, inputFolder: nil)
        return try ModelLoader.load(config: config, source: try GGUFFile(path: file))
    }
}

func split(_ c: String) -> (String, FixtureLayout) {
    let parts = c.split(separator: "/")
    return (String(parts[0]), FixtureLayout(rawValue: String(parts[1]))!)
}

@Suite struct MoEFixtureTests {
    @Test(arguments: moeCases)
    func logitsAndHiddenStatesMatchTransformers(_ c: String) throws {
        let (arch, layout) = split(c)
        let ref = try Reference(arch)
        let e = Engine(model: try moeModel(arch, layout), options: .transformersSDPA)
        let ids = try ref.ints("input_ids")
        let out = try e.forward(ids, captureHiddenStates: true)
        let logitsError = relativeError(out.logits, try ref.floats("logits"))
        #expect(logitsError < activationTolerance, "\(c) logits: \(logitsError)")
        let hidden = try #require(out.hiddenStates)
        #expect(hidden.count == ref.hiddenStateCount)
        for (i, h) in hidden.enumerated() {
            let err = relativeError(h, try ref.floats("hidden_states.\(i)"))
            #expect(err < activationTolerance, "\(c) hidden_states.\(i): \(err)")
        }
    }

    @Test(arguments: moeCases)
    func greedyGenerationWithCacheMatchesTransformers(_ c: String) throws {
        let (arch, layout) = split(c)
        let ref = try Reference(arch)
        let expected = try ref.ints("generated_ids")
        #expect(expected.count == promptLength + newTokens)
        let prompt = Array(expected.prefix(promptLength))
        let e = Engine(model: try moeModel(arch, layout), options: .transformersSDPA)
        // min_new_tokens = 12 in the fixtures: eos is suppressed for the whole run.
        let generated = try e.generate(prompt, maxNewTokens: newTokens, stopTokens: try eosTokens(arch), minNewTokens: newTokens)
        #expect(generated == expected, "\(c)")
    }

    @Test(arguments: Fixtures.moeArchitectures)
    func lossMatchesTransformers(_ arch: String) throws {
        let ref = try Reference(arch)
        let e = Engine(model: try moeModel(arch, .shipped), options: .transformersSDPA)
        let loss = try e.loss(try ref.ints("input_ids"))
        let expected = try ref.floats("loss")[0]
        #expect(abs(loss - expected) / abs(expected) < lossTolerance, "\(arch) loss \(loss) vs \(expected)")
    }

    @Test(arguments: ["qwen2_moe", "gemma4_moe", "gpt_oss"])
    func referenceExpertKernelGivesTheSameModel(_ arch: String) throws {
        // The whole model with the per-token reference expert loop: same logits as the grouped
        // kernel to kernel noise, and both within the transformers tolerance.
        let ref = try Reference(arch)
        let model = try moeModel(arch, .shipped)
        let ids = try ref.ints("input_ids")
        let grouped = try Engine(model: model, options: .transformersSDPA).forward(ids).logits
        var opts = EngineOptions.transformersSDPA
        opts.expertKernel = .reference
        let plain = try Engine(model: model, options: opts).forward(ids).logits
        #expect(relativeError(grouped, plain) < 1e-5)
        #expect(relativeError(plain, try ref.floats("logits")) < activationTolerance)
    }

    @Test func cachedDecodingMatchesFullForwardWithSinksAndWindow() throws {
        // gpt_oss: sliding window 8 on alternate layers and attention sinks; 20 tokens one at a
        // time through the cache give the full pass's last row.
        let e = Engine(model: try moeModel("gpt_oss", .shipped), options: .transformersSDPA)
        let ids = try Reference("gpt_oss").ints("input_ids").prefix(20).map { $0 }
        let full = try e.forward(ids).logits
        let cache = e.makeCache()
        var last: [Float] = []
        for t in ids { last = try e.forward([t], cache: cache).logits }
        let V = e.vocabSize
        #expect(relativeError(last, Array(full[(19 * V)..<(20 * V)])) < activationTolerance)
    }

    @Test func perExpertCheckpointWithoutRestructureIsRefusedClearly() throws {
        // DenseDecoderModel.load reads the trainable layout only; a per-expert source must go
        // through ModelLoader, and the error says so.
        let dir = Fixtures.hf("qwen3_moe")
        let config = try ModelConfig.load(folder: dir)
        #expect(throws: SmolError.self) {
            try DenseDecoderModel.load(config: config, source: try SafetensorsCheckpoint(path: dir.path))
        }
    }
}
