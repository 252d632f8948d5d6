import Foundation
import SmolFormats
import SmolTensor
import SmolTestSupport
import SmolTokenizer
import Testing

@Suite struct HuggingFaceTokenizerTests {
    /// tools/gguf_vocab_to_tokenizer_json.py (gguf-py) wrote a tokenizer.json from llama.cpp's
    /// llama-bpe vocabulary; reading it and reading the GGUF must give the same vocabulary and ids.
    @Test func tokenizerJSONFromGGUFGivesSameIds() throws {
        guard let path = TokenizerFixtures.vocab("llama-bpe") else { return }
        let folder = TokenizerFixtures.vocabDirectory.appendingPathComponent("hf-llama-bpe")
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) else {
            print("skipping: \(folder.path)/tokenizer.json is missing; run tools/setup")
            return
        }
        let gguf = try TokenizerFixtures.tokenizer(path)
        let hf = try Tokenizer.fromHuggingFace(folder: folder)
        #expect(hf.vocabulary.model == "gpt2" && hf.vocabulary.pre == "llama-bpe")
        #expect(hf.vocabulary.tokens == gguf.vocabulary.tokens)
        #expect(hf.vocabulary.merges == gguf.vocabulary.merges)
        #expect(hf.vocabulary.tokenTypes == gguf.vocabulary.tokenTypes)
        #expect(hf.bosID == gguf.bosID && hf.eosID == gguf.eosID && hf.addBOS == gguf.addBOS)
        for c in try TokenizerFixtures.cases(path) {
            #expect(hf.encode(c.text, addBOS: false, parseSpecial: false) == c.ids, "\(c.text.debugDescription)")
            #expect(hf.encode(c.text) == gguf.encode(c.text))
        }
    }

    /// GGUF vocabulary → tokenizer.json (our writer) → vocabulary → the same ids as llama.cpp.
    @Test(arguments: ["qwen2", "qwen35", "llama-bpe", "gpt-2", "llama-spm"])
    func writtenTokenizerJSONTokenizesLikeGGUF(_ name: String) throws {
        guard let path = TokenizerFixtures.vocab(name) else { return }
        let gguf = try TokenizerFixtures.tokenizer(path)
        let (doc, cfg) = try gguf.vocabulary.huggingFaceJSON()
        // Through text, as a file would.
        let reread = try JSONParser.parse(JSONWriter.compact(doc), duplicateKeys: .keepAll)
        let v = try TokenizerVocabulary(huggingFace: reread, config: cfg)
        let hf = try Tokenizer(v)
        #expect(v.model == gguf.vocabulary.model)
        #expect(v.tokens == gguf.vocabulary.tokens)
        if v.model == "gpt2" {
            #expect(v.pre == gguf.vocabulary.pre)
            #expect(v.merges == gguf.vocabulary.merges)
        }
        #expect(hf.addBOS == gguf.addBOS && hf.bosID == gguf.bosID && hf.addSpacePrefix == gguf.addSpacePrefix)
        for c in try TokenizerFixtures.cases(path) {
            #expect(hf.encode(c.text, addBOS: false, parseSpecial: false) == c.ids, "\(name): \(c.text.debugDescription)")
        }
    }

    /// The real Gemma 3 vocabulary through tokenizer.json: the GPL-3 text still gives llama.cpp's ids.
    @Test func gemmaThroughTokenizerJSON() throws {
        guard let gguf = try TokenizerFixtures.gemma() else { return }
        let (doc, cfg) = try gguf.vocabulary.huggingFaceJSON()
        let hf = try Tokenizer(TokenizerVocabulary(huggingFace: doc, config: cfg))
        let expected = TokenizerFixtures.ids(try TokenizerFixtures.json("gemma3-270m-gpl3-tokens.json").objectValue?["ids_with_bos"])
        let text = try String(contentsOf: Fixtures.root.appendingPathComponent("tokenizer/GPL-3"), encoding: .utf8)
        #expect(hf.encode(text) == expected)
        let cases = try #require(try TokenizerFixtures.json("gemma3-270m-tokenizer-cases.json").objectValue?["cases"]?.arrayValue)
        for c in cases {
            let t = try #require(c.objectValue?["text"]?.stringValue)
            #expect(hf.encode(t) == TokenizerFixtures.ids(c.objectValue?["ids_with_bos"]), "\(t.debugDescription)")
        }
    }

    /// writeHuggingFace → fromHuggingFace(folder:) on disk.
    @Test func folderRoundTrip() throws {
        guard let path = TokenizerFixtures.vocab("llama-spm") else { return }
        let gguf = try TokenizerFixtures.tokenizer(path)
        let dir = Fixtures.temporaryDirectory("smolconv-tokenizer")
        defer { try? FileManager.default.removeItem(at: dir) }
        try gguf.vocabulary.writeHuggingFace(to: dir)
        let hf = try Tokenizer.fromHuggingFace(folder: dir)
        #expect(hf.kind == .sentencePiece && hf.bosID == 1 && hf.eosID == 2 && hf.unknownID == 0)
        for c in try TokenizerFixtures.cases(path) {
            #expect(hf.encode(c.text) == gguf.encode(c.text), "\(c.text.debugDescription)")
        }
        // Back to GGUF keys: same texts and special ids.
        let entries = Dictionary(hf.vocabulary.ggufEntries, uniquingKeysWith: { a, _ in a })
        #expect(entries[TokenizerVocabulary.Key.tokens] == .array(.string(gguf.vocabulary.tokens)))
        #expect(entries[TokenizerVocabulary.Key.model] == .string("llama"))
        #expect(entries[TokenizerVocabulary.Key.bos] == .uint32(1))
    }

    @Test func rejectsWhatItCannotRead() throws {
        let wordPiece = try JSONParser.parse(#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#)
        #expect(throws: SmolError.self) { try TokenizerVocabulary(huggingFace: wordPiece) }
        let oddSplit = try JSONParser.parse(#"""
            {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false},
               {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}}
            """#)
        #expect(throws: SmolError.self) { try TokenizerVocabulary(huggingFace: oddSplit) }
        let sparse = try JSONParser.parse(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 2000000000}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}"#)
        #expect(throws: SmolError.self) { try TokenizerVocabulary(huggingFace: sparse) }
        let badMerge = try JSONParser.parse(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}, "pre_tokenizer": {"type": "ByteLevel"}}"#)
        #expect(throws: SmolError.self) { try TokenizerVocabulary(huggingFace: badMerge) }
    }
}
