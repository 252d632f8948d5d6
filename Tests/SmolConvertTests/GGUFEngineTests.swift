import Foundation
import Testing
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor
import SmolTestSupport

/// Same bound as the engine's transformers comparisons (SmolEngineTests): Float32 on both sides,
/// different summation orders, a few layers: 1e-4 of the largest logit is ~30× the noise and far
/// below any semantic error (a wrong permutation or norm offset is O(1)).
let logitTolerance: Float = 1e-4

/// The GGUF-capable dense fixtures (gemma4 has no llama.cpp mapping yet).
let ggufArchitectures = ["llama", "smollm3", "qwen3", "gemma2", "gemma3"]

struct FixtureReference {
    let file: SafetensorsFile
    init(_ arch: String) throws {
        file = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("reference.safetensors").path)
    }
    func floats(_ name: String) throws -> [Float] { try loadFloat(file, name) }
    func ints(_ name: String) throws -> [Int] {
        try file.tensorBytes(name).withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }
}

/// The fixtures were made with transformers' SDPA attention, which drops Gemma 2's attention
/// soft-capping (see SmolEngineTests), so they are compared under that convention.
let fixtureOptions = EngineOptions.transformersSDPA

@Suite struct GGUFEngineTests {
    /// HF fixture → `Converter.convert` (llama.cpp names, Q/K permutation, gemma 1 + w norms) →
    /// `Engine.load(gguf)`: logits within tolerance of transformers, greedy ids identical, and —
    /// the stronger statement — logits bit-identical to the engine on the HF folder, since the
    /// GGUF path undoes the permutation exactly and uses the stored 1 + w norms as they are.
    @Test(arguments: ggufArchitectures)
    func ggufFromConverterMatchesTransformers(arch: String) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = dir.appendingPathComponent("\(arch).gguf").path
        _ = try Converter.convert(input: Fixtures.hf(arch).path, output: gguf)

        let ref = try FixtureReference(arch)
        let ids = try ref.ints("input_ids")
        let fromGGUF = try Engine.load(gguf, options: fixtureOptions)
        let fromHF = try Engine.load(Fixtures.hf(arch).path, options: fixtureOptions)
        let logits = try fromGGUF.forward(ids).logits
        let err = relativeError(logits, try ref.floats("logits"))
        #expect(err < logitTolerance, "\(arch) GGUF logits vs transformers: \(err)")
        #expect(logits == (try fromHF.forward(ids).logits), "\(arch): GGUF and HF paths differ")

        let expected = try ref.ints("generated_ids")
        let prompt = Array(expected.prefix(8))
        let generated = try fromGGUF.generate(prompt, maxNewTokens: expected.count - 8, minNewTokens: expected.count - 8)
        #expect(generated == expected, "\(arch) greedy ids")
    }

    /// F16 and BF16 GGUF files of a fixture: the engine widens them exactly, so it must agree
    /// with the same model rounded to that type on the HF side (converted back to a folder).
    @Test(arguments: [ConvertOptions.OutType.f16, .bf16])
    func halfPrecisionGGUFMatchesItsHFRoundTrip(outType: ConvertOptions.OutType) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = ConvertOptions()
        options.outType = outType
        let gguf = dir.appendingPathComponent("m.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("llama").path, output: gguf, options: options)
        // Back to a folder in F32 (exact widening; auto refuses to narrow the F32 norms).
        let back = dir.appendingPathComponent("back").path
        var f32 = ConvertOptions()
        f32.outType = .f32
        _ = try Converter.convert(input: gguf, output: back, options: f32)
        let ids = try FixtureReference("llama").ints("input_ids")
        let a = try Engine.load(gguf, options: fixtureOptions).forward(ids).logits
        let b = try Engine.load(back, options: fixtureOptions).forward(ids).logits
        #expect(a == b)
        // And still close to the F32 transformers logits (half precision weights: looser).
        #expect(relativeError(a, try FixtureReference("llama").floats("logits")) < 2e-2)
    }

    /// The gemma GGUF path keeps the stored 1 + w norm weights and applies them as x̂ · w.
    @Test func gemmaGGUFNormsAreUsedAsStored() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = dir.appendingPathComponent("g.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("gemma3").path, output: gguf)
        let model = try DenseDecoderModel.load(path: gguf)
        #expect(model.spec.normWeighting == .multiply)
        let file = try GGUFFile(path: gguf)
        #expect(model.weights.layers[0].attnNorm == (try loadFloat(file, "blk.0.attn_norm.weight")))
        let hf = try DenseDecoderModel.load(path: Fixtures.hf("gemma3").path)
        #expect(hf.spec.normWeighting == .onePlus)
    }

    /// A single .safetensors file with config.json beside it loads like its folder.
    @Test func safetensorsFileLoads() throws {
        let path = Fixtures.hf("llama").appendingPathComponent("model.safetensors").path
        let ids = try FixtureReference("llama").ints("input_ids")
        let a = try Engine.load(path, options: fixtureOptions).forward(ids).logits
        let b = try Engine.load(Fixtures.hf("llama").path, options: fixtureOptions).forward(ids).logits
        #expect(a == b)
    }
}
