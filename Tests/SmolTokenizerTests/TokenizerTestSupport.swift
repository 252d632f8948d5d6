import Foundation
import SmolFormats
import SmolTestSupport
import SmolTokenizer
import Testing

/// Reference files for the tokenizer tests.
enum TokenizerFixtures {
    /// .cache/llama-vocab: llama.cpp's vocab-only GGUFs with .inp/.out cases (tools/setup step 4).
    static let vocabDirectory = Fixtures.packageRoot.appendingPathComponent(".cache/llama-vocab")

    /// Path of ggml-vocab-<name>.gguf, or nil (with a message) when tools/setup has not fetched it.
    static func vocab(_ name: String) -> String? {
        let p = vocabDirectory.appendingPathComponent("ggml-vocab-\(name).gguf").path
        if FileManager.default.fileExists(atPath: p) { return p }
        print("skipping: \(p) is missing; run tools/setup to fetch llama.cpp's vocabulary test files")
        return nil
    }

    struct Case {
        var text: String
        var ids: [Int32]
    }

    /// llama.cpp test-tokenizer-0 cases: .inp holds strings separated by "\n__ggml_vocab_test__\n",
    /// .out one line of space-separated ids per string (tokenized without BOS, parse_special false).
    static func cases(_ vocabPath: String) throws -> [Case] {
        let inp = try String(contentsOfFile: vocabPath + ".inp", encoding: .utf8)
        let out = try String(contentsOfFile: vocabPath + ".out", encoding: .utf8)
        var texts: [String] = []
        var rest = Substring(inp)
        let sep = "\n__ggml_vocab_test__\n"
        while !rest.isEmpty {
            if let r = rest.range(of: sep) {
                texts.append(String(rest[..<r.lowerBound]))
                rest = rest[r.upperBound...]
            } else {
                texts.append(String(rest))
                break
            }
        }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        try #require(texts.count == lines.count, "\(texts.count) inputs, \(lines.count) outputs in \(vocabPath)")
        return zip(texts, lines).map { t, l in
            Case(text: t, ids: l.split(separator: " ").map { Int32($0)! })
        }
    }

    /// Tokenizers by path, each loaded once (the tests share them).
    nonisolated(unsafe) static var loaded: [String: Tokenizer] = [:]
    static func tokenizer(_ path: String) throws -> Tokenizer {
        gemmaLock.lock(); defer { gemmaLock.unlock() }
        if let t = loaded[path] { return t }
        let t = try Tokenizer.fromGGUF(GGUFFile(path: path).metadata, file: path)
        loaded[path] = t
        return t
    }

    /// The real Gemma 3 270M tokenizer, loaded once for all tests.
    nonisolated(unsafe) static var gemmaCache: Tokenizer?
    static let gemmaLock = NSLock()
    static func gemma() throws -> Tokenizer? {
        guard let url = Fixtures.realModel else {
            print("skipping: the real model is missing; run tools/setup")
            return nil
        }
        gemmaLock.lock(); defer { gemmaLock.unlock() }
        if let t = gemmaCache { return t }
        let t = try Tokenizer.fromGGUF(path: url.path)
        gemmaCache = t
        return t
    }

    static func json(_ name: String) throws -> JSONValue {
        try JSONParser.parse(contentsOf: Fixtures.root.appendingPathComponent(name).path)
    }

    static func ids(_ v: JSONValue?) -> [Int32] { (v?.arrayValue ?? []).compactMap { $0.intValue.map(Int32.init) } }
}
