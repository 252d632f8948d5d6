import Foundation
import Testing
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor
import SmolTestSupport

/// Decode on block-quantized weights in their stored encoding vs the same model's Float32 copy:
/// both are exact (the weights are dequantized exactly, activations stay Float32), so they differ
/// only in summation order. 1e-5 of the largest logit is ~100× that noise on these few layers and
/// far below a wrong block, scale or row (O(1e-2) or more).
let storedTolerance: Float = 1e-5

@Suite struct StoredWeightsTests {
    /// gemma3 fixture → GGUF → Q8_0 / Q5_0 / Q4_0 (every linear block-quantized, row length 64 or
    /// 128): few-token forwards and greedy generation through the stored encoding agree with the
    /// Float32 path of the same file.
    @Test(arguments: [QuantMix.q8_0, .q5_0, .q4_0])
    func decodeOnStoredWeightsMatchesFloat32Path(mix: QuantMix) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f32 = dir.appendingPathComponent("m.gguf").path, q = dir.appendingPathComponent("q.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("gemma3").path, output: f32)
        var options = QuantizeOptions()
        options.mix = mix
        _ = try Quantizer.quantize(input: f32, output: q, options: options)

        let stored = try Engine.load(q, options: EngineOptions(storedWeights: true))
        let plain = try Engine.load(q, options: EngineOptions(storedWeights: false))
        #expect(stored.usesStoredWeights)
        #expect(!plain.usesStoredWeights)
        let ids = Array(try FixtureReference("gemma3").ints("input_ids").prefix(8))
        for n in [1, 3, 8] {   // matvec path: one token fused, several tokens through scratch rows
            let a = try stored.forward(Array(ids.prefix(n))).logits
            let b = try plain.forward(Array(ids.prefix(n))).logits
            let err = relativeError(a, b)
            #expect(err < storedTolerance, "\(mix) T=\(n): \(err)")
        }
        // Decode steps (one token each, cache growing) give the same greedy continuation.
        #expect(try stored.generate(ids, maxNewTokens: 12) == (try plain.generate(ids, maxNewTokens: 12)))
    }

    /// A Float32 GGUF has nothing worth keeping encoded: the engine uses its Float32 copy.
    @Test func float32FileUsesNoStoredWeights() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f32 = dir.appendingPathComponent("m.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("gemma3").path, output: f32)
        #expect(!(try Engine.load(f32).usesStoredWeights))
        #expect(!(try Engine.load(Fixtures.hf("gemma3").path).usesStoredWeights))
    }

    /// The real Gemma 3 270M Q4_K_M (Q8_0 output layer, Q5_0 / Q4_K / Q6_K / Q8_0 layers): a
    /// 4-token forward and 6 greedy decode steps agree with the Float32 path.
    @Test func realModelDecodeMatchesFloat32Path() throws {
        guard let model = Fixtures.realModel else { print("skipped: run tools/setup"); return }
        let stored = try Engine.load(model.path)
        let plain = try Engine.load(model.path, options: EngineOptions(storedWeights: false))
        #expect(stored.usesStoredWeights)
        let prompt = [2, 818, 5279, 529]   // <bos> and three words
        let err = relativeError(try stored.forward(prompt).logits, try plain.forward(prompt).logits)
        #expect(err < storedTolerance, "real model T=4: \(err)")
        #expect(try stored.generate(prompt, maxNewTokens: 6) == (try plain.generate(prompt, maxNewTokens: 6)))
    }
}
