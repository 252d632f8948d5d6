import Foundation
import Testing
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor
import SmolTestSupport

/// llama.cpp's tokenization of the GPL-3 text with the real model (Tests/Fixtures, from
/// shared/references): 7,563 ids, BOS first.
func gpl3Tokens() throws -> [Int] {
    try EvaluationInput.parseIDs(Fixtures.root.appendingPathComponent("gemma3-270m-gpl3-tokens.json").path)
}

/// The full protocol (14 chunks of 512 on the real model) takes minutes in a debug build, so the
/// Swift tests use a short window and tools/crosscheck/check_perplexity.py runs the full one
/// against llama.cpp's figures with the release binary.
@Suite struct RealModelEvaluationTests {
    /// The shipped Q4_K_M file and its exact F32 expansion (`convert --outtype f32`) are the same
    /// model: the engine must give bit-identical logits, hence the same perplexity and KLD 0.
    @Test func shippedFileAndItsF32ExpansionAgreeExactly() throws {
        guard let model = Fixtures.realModel else {
            print("skipped: run tools/setup to install the real model")
            return
        }
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = dir.appendingPathComponent("base-f32.gguf").path
        var o = ConvertOptions()
        o.outType = .f32
        _ = try Converter.convert(input: model.path, output: base, options: o)
        let tokens = Array(try gpl3Tokens().prefix(128))
        let ckpt = try Checkpoint.open(model.path)
        let p = PerplexityProtocol(context: 64, bos: EvaluationInput.bos(of: ckpt))
        #expect(p.bos == 2)  // gemma's <bos>, added by llama.cpp for this vocabulary
        let d = try Divergence.run(original: try Engine.load(base), converted: try Engine.load(model.path),
                                   tokens: tokens, protocol: p)
        #expect(d.tokensScored == 2 * 31)
        #expect(d.meanKLD == 0 && d.top1Agreement == 1)
        #expect(d.original == d.converted)
        // A sane language model on English legal text (llama.cpp: PPL 13.8 at ctx 512).
        #expect(d.original.perplexity > 2 && d.original.perplexity < 100, "\(d.original.perplexity)")
    }
}
