import Foundation
import SmolFormats
import SmolTestSupport
import SmolTokenizer
import Testing

/// The real Gemma 3 270M tokenizer (SentencePiece, 262,144 tokens) against llama.cpp's ids.
@Suite struct GemmaTokenizerTests {
    @Test func awkwardStringsMatchLlamaCpp() throws {
        guard let tok = try TokenizerFixtures.gemma() else { return }
        let doc = try TokenizerFixtures.json("gemma3-270m-tokenizer-cases.json")
        let cases = try #require(doc.objectValue?["cases"]?.arrayValue)
        #expect(cases.count == 19)
        for c in cases {
            let text = try #require(c.objectValue?["text"]?.stringValue)
            let expected = TokenizerFixtures.ids(c.objectValue?["ids_with_bos"])
            #expect(tok.encode(text) == expected, "text \(text.debugDescription)")
        }
    }

    @Test func gpl3MatchesLlamaCpp() throws {
        guard let tok = try TokenizerFixtures.gemma() else { return }
        let doc = try TokenizerFixtures.json("gemma3-270m-gpl3-tokens.json")
        let expected = TokenizerFixtures.ids(doc.objectValue?["ids_with_bos"])
        #expect(expected.count == 7563)
        let text = try String(contentsOf: Fixtures.root.appendingPathComponent("tokenizer/GPL-3"), encoding: .utf8)
        let got = tok.encode(text)
        #expect(got.count == expected.count)
        if got != expected, let i = zip(got, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("first difference at \(i): got \(got[i..<min(i + 8, got.count)]) expected \(expected[i..<min(i + 8, expected.count)])")
        }
        #expect(got == expected)
        // Round trip: decode drops BOS and gives the text back.
        #expect(tok.decode(got) == text)
    }

    @Test func metadataFlags() throws {
        guard let tok = try TokenizerFixtures.gemma() else { return }
        #expect(tok.kind == .sentencePiece)
        #expect(tok.vocabSize == 262_144)
        #expect(tok.bosID == 2)
        #expect(tok.eosID == 1)
        #expect(tok.addBOS && !tok.addEOS && !tok.addSpacePrefix)
        #expect(tok.tokenID("<end_of_turn>") == 106)
        #expect(tok.endOfGenerationIDs.contains(106))
        // Control tokens as plain text when parseSpecial is off: no id 105/106 appears.
        let plain = tok.encode("<start_of_turn>user", addBOS: false, parseSpecial: false)
        #expect(!plain.contains(105))
        #expect(tok.decode(plain) == "<start_of_turn>user")
        // Rendering control tokens on request.
        let chat = tok.encode("<start_of_turn>user\nHi<end_of_turn>")
        #expect(tok.decode(chat) == "user\nHi")
        #expect(tok.decode(chat, renderSpecial: true) == "<start_of_turn>user\nHi<end_of_turn>")
    }

    @Test func byteFallbackRoundTrip() throws {
        guard let tok = try TokenizerFixtures.gemma() else { return }
        // Characters outside the vocabulary are spelled as <0xNN> byte tokens and reassembled.
        for s in ["\u{10FFFD}", "a\u{E000}b", "𓀀𓀁 hieroglyphs", "\u{1}\u{2}\u{7F}"] {
            let ids = tok.encode(s, addBOS: false)
            #expect(tok.decode(ids) == s, "\(s.debugDescription) → \(ids)")
        }
    }
}
