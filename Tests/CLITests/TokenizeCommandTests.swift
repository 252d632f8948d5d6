import Foundation
import Testing
import SmolFormats
import SmolTestSupport

/// `smolconv tokenize` / `detokenize` on the real Gemma 3 270M, against llama.cpp's own ids, and
/// the tokenizer carried by `convert` from GGUF metadata to tokenizer.json.
@Suite(.serialized) struct TokenizeCommandTests {
    static func cases() throws -> [(text: String, ids: [Int])] {
        let v = try JSONValue.parse(Array(try Data(contentsOf: Fixtures.root.appendingPathComponent("gemma3-270m-tokenizer-cases.json"))))
        return try #require(v["cases"]?.arrayValue).map { c in
            (c["text"]!.stringValue!, c["ids_with_bos"]!.arrayValue!.map { $0.intValue! })
        }
    }

    static func gpl3IDs() throws -> [Int] {
        let v = try JSONValue.parse(Array(try Data(contentsOf: Fixtures.root.appendingPathComponent("gemma3-270m-gpl3-tokens.json"))))
        return try #require(v["ids_with_bos"]?.arrayValue).map { $0.intValue! }
    }

    func ids(_ r: CLIRun) throws -> [Int] {
        try #require(JSONValue.parse(r.stdout)["ids"]?.arrayValue).map { $0.intValue! }
    }

    @Test func tokenizeMatchesLlamaCppOnTheRealModel() throws {
        guard let model = Fixtures.realModel else { print("skipped: run tools/setup"); return }
        let gpl = Fixtures.root.appendingPathComponent("tokenizer/GPL-3").path
        let r = try CLIRun.run(["tokenize", model.path, "--text-file", gpl, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ids(r) == Self.gpl3IDs())
        for c in try Self.cases() {
            let t = try CLIRun.run(["tokenize", model.path, "--text", c.text, "--json"])
            #expect(try ids(t) == c.ids, "\(c.text.debugDescription)")
        }
        let noBOS = try CLIRun.run(["tokenize", model.path, "--text", "Hello world", "--no-bos", "--json"])
        #expect(try ids(noBOS) == [9259, 1902])
        let back = try CLIRun.run(["detokenize", model.path, "2,9259,1902"])
        #expect(back.stdout == "Hello world\n")
    }

    /// GGUF → Hugging Face writes tokenizer.json + tokenizer_config.json from the GGUF metadata, and
    /// the folder tokenizes exactly like the GGUF (llama.cpp's ids).
    @Test func convertCarriesTheTokenizerToTokenizerJSON() throws {
        guard let model = Fixtures.realModel else { print("skipped: run tools/setup"); return }
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let hf = dir.appendingPathComponent("hf").path
        let c = try CLIRun.run(["convert", model.path, hf, "--outtype", "bf16"])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(FileManager.default.fileExists(atPath: hf + "/tokenizer.json"))
        #expect(FileManager.default.fileExists(atPath: hf + "/tokenizer_config.json"))
        let gpl = Fixtures.root.appendingPathComponent("tokenizer/GPL-3").path
        let r = try CLIRun.run(["tokenize", hf, "--text-file", gpl, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try ids(r) == Self.gpl3IDs())
        for c in try Self.cases() {
            let t = try CLIRun.run(["tokenize", hf, "--text", c.text, "--json"])
            #expect(try ids(t) == c.ids, "\(c.text.debugDescription)")
        }
    }

    @Test func aGGUFWithoutATokenizerSaysSo() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("llama.gguf").path
        #expect(try CLIRun.run(["convert", Fixtures.hf("llama").path, out]).status == 0)
        let r = try CLIRun.run(["tokenize", out, "--text", "hi"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("carries no tokenizer"))
    }
}
