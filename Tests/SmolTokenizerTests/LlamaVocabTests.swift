import Foundation
import SmolFormats
import SmolTestSupport
import SmolTokenizer
import Testing

/// llama.cpp's own tokenizer test vocabularies (models/ggml-vocab-*.gguf with .inp/.out, as
/// test-tokenizer-0 runs them: no BOS, special tokens not parsed), read through our GGUF reader.
@Suite struct LlamaVocabTests {
    static let names = ["qwen2", "qwen35", "llama-bpe", "gpt-2", "llama-spm", "gemma-4", "phi-3"]

    @Test(arguments: names)
    func casesMatchLlamaCpp(_ name: String) throws {
        guard let path = TokenizerFixtures.vocab(name) else { return }
        let tok = try TokenizerFixtures.tokenizer(path)
        let cases = try TokenizerFixtures.cases(path)
        #expect(cases.count >= 40)
        var failures = 0
        for c in cases {
            let got = tok.encode(c.text, addBOS: false, parseSpecial: false)
            if got != c.ids {
                failures += 1
                Issue.record("\(name): \(c.text.debugDescription): got \(got), expected \(c.ids)")
            }
        }
        #expect(failures == 0)
    }

    /// decode(encode(s)) == s for every case whose ids hold no unknown token. Cleaning spaces
    /// (`clean_up_tokenization_spaces`, lossy by design) is turned off.
    @Test(arguments: names)
    func roundTrip(_ name: String) throws {
        guard let path = TokenizerFixtures.vocab(name) else { return }
        let tok = try TokenizerFixtures.tokenizer(path)
        for c in try TokenizerFixtures.cases(path) {
            let ids = tok.encode(c.text, addBOS: false, parseSpecial: false)
            if let unk = tok.unknownID, ids.contains(unk) { continue }
            #expect(tok.decode(ids, cleanSpaces: false) == c.text, "\(name): \(c.text.debugDescription) → \(ids)")
        }
    }

    @Test func flagsFromMetadata() throws {
        if let p = TokenizerFixtures.vocab("llama-bpe") {
            let t = try TokenizerFixtures.tokenizer(p)
            #expect(t.kind == .bpe && t.vocabSize == 128_256 && t.bosID == 128_000 && t.addBOS)
            #expect(t.encode("Hello").first == 128_000)
            #expect(t.tokenID("<|eot_id|>").map { t.endOfGenerationIDs.contains($0) } == true)
        }
        if let p = TokenizerFixtures.vocab("qwen2") {
            let t = try TokenizerFixtures.tokenizer(p)
            #expect(!t.addBOS)
            #expect(t.encode("Hello") == t.encode("Hello", addBOS: false))
            #expect(t.encode("Hello", addBOS: true).first == t.bosID) // forced although the file says no
            // Control tokens written in the text are parsed by default.
            let im = try #require(t.tokenID("<|im_start|>"))
            #expect(t.encode("<|im_start|>user").first == im)
            #expect(t.encode("<|im_start|>user", parseSpecial: false).first != im)
        }
        if let p = TokenizerFixtures.vocab("llama-spm") {
            let t = try TokenizerFixtures.tokenizer(p)
            #expect(t.kind == .sentencePiece && t.addSpacePrefix && t.bosID == 1)
            // SentencePiece adds "▁" in front; decoding removes it again.
            let ids = t.encode("Hello world")
            #expect(ids.first == 1)
            #expect(t.tokenText(ids[1]) == "▁Hello")
            #expect(t.decode(ids) == " Hello world") // llama.cpp keeps the space after a removed BOS
            #expect(t.decode(Array(ids.dropFirst())) == "Hello world")
        }
    }
}
