import Foundation
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor
import SmolTokenizer

/// Inputs of the evaluation commands (perplexity, verify, logits, generate): token ids from a
/// list or a text, and the model's BOS convention.
public enum EvaluationInput {
    /// Token ids from "1,2,3", a JSON array text, or a file holding either (a JSON object with
    /// "ids_with_bos" or "ids", like the project's llama.cpp token fixtures, is accepted too).
    public static func parseIDs(_ spec: String) throws -> [Int] {
        var text = spec
        var file: String?
        if FileManager.default.fileExists(atPath: spec) {
            guard let data = FileManager.default.contents(atPath: spec) else {
                throw SmolError(.io, file: spec, "cannot read the token file")
            }
            text = String(decoding: data, as: UTF8.self)
            file = spec
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("[") || trimmed.hasPrefix("{") {
            var v = try JSONValue.parse(trimmed, file: file)
            if let ids = v["ids_with_bos"] ?? v["ids"] { v = ids }
            guard let arr = v.arrayValue else {
                throw SmolError(.invalidArgument, file: file, "token ids: expected a JSON array of integers")
            }
            return try arr.enumerated().map { i, x in
                guard let n = x.intValue, n >= 0 else {
                    throw SmolError(.invalidArgument, file: file, at: "element \(i)", "token ids must be non-negative integers")
                }
                return n
            }
        }
        let parts = trimmed.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }).filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw SmolError(.invalidArgument, file: file, "no token ids given") }
        return try parts.map { p in
            guard let n = Int(p), n >= 0 else {
                throw SmolError(.invalidArgument, file: file, "'\(p)' is not a token id")
            }
            return n
        }
    }

    /// The BOS token llama.cpp puts first (and at the start of each perplexity chunk), or nil when
    /// the model adds none. GGUF: `tokenizer.ggml.add_bos_token` (llama.cpp's default for a
    /// missing key is true for SentencePiece vocabularies — gemma, llama — and false for BPE ones)
    /// and `tokenizer.ggml.bos_token_id`. Hugging Face: tokenizer_config.json's `add_bos_token`
    /// (default false) and config.json's `bos_token_id`.
    public static func bos(of ckpt: Checkpoint) -> Int? {
        if let g = ckpt.gguf {
            let m = g.metadata
            let add = m.bool("tokenizer.ggml.add_bos_token") ?? (m.string("tokenizer.ggml.model") == "llama")
            return add ? m.int("tokenizer.ggml.bos_token_id") : nil
        }
        guard let folder = ckpt.folder else { return nil }
        let tc = (folder as NSString).appendingPathComponent("tokenizer_config.json")
        let add = (try? JSONParser.parse(contentsOf: tc))?["add_bos_token"]?.boolValue ?? false
        return add ? ckpt.config?["bos_token_id"]?.intValue : nil
    }

    /// Reads a UTF-8 text file.
    public static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SmolError(.io, file: path, "cannot read the text file")
        }
        guard let s = String(data: data, encoding: .utf8) else {
            throw SmolError(.invalidArgument, file: path, "not valid UTF-8")
        }
        return s
    }
}

extension EvaluationInput {
    /// Tokenizes `text` with the checkpoint's own tokenizer, BOS first when the model adds one
    /// (llama.cpp's `common_tokenize(ctx, text, add_special = true)`).
    public static func tokenize(_ text: String, checkpoint: Checkpoint) throws -> [Int] {
        try codec(for: checkpoint).encode(text)
    }

    /// The checkpoint's own tokenizer: GGUF `tokenizer.ggml.*` metadata, or the folder's
    /// tokenizer.json (+ tokenizer_config.json).
    public static func tokenizer(for checkpoint: Checkpoint) throws -> Tokenizer {
        if let g = checkpoint.gguf {
            guard g.metadata.contains("tokenizer.ggml.model") else {
                throw SmolError(.invalidArgument, file: checkpoint.path, "this GGUF carries no tokenizer (no tokenizer.ggml.* metadata); pass token ids with --tokens")
            }
            return try Tokenizer.fromGGUF(g.metadata, file: checkpoint.path)
        }
        guard let folder = checkpoint.folder,
              FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent("tokenizer.json")) else {
            throw SmolError(.invalidArgument, file: checkpoint.path, "no tokenizer.json next to the weights; pass token ids with --tokens")
        }
        return try Tokenizer.fromHuggingFace(folder: URL(fileURLWithPath: folder))
    }
}

/// A checkpoint's tokenizer, as the evaluation commands use it.
public struct TextCodec: Sendable {
    let encodeText: @Sendable (String) throws -> [Int]
    let decodeIDs: @Sendable ([Int]) throws -> [UInt8]
    /// Tokens that end generation (eos, end-of-turn).
    public let stopTokens: Set<Int>
    /// The BOS the model adds, when it adds one.
    public let bos: Int?

    public init(encode: @escaping @Sendable (String) throws -> [Int], decode: @escaping @Sendable ([Int]) throws -> [UInt8],
                stopTokens: Set<Int>, bos: Int?) {
        encodeText = encode
        decodeIDs = decode
        self.stopTokens = stopTokens
        self.bos = bos
    }

    /// Text → ids, BOS first when the model adds one (llama.cpp `common_tokenize(…, add_special)`).
    public func encode(_ text: String) throws -> [Int] { try encodeText(text) }
    /// ids → UTF-8 bytes (byte-fallback pieces reassembled; a sequence cut mid-character stays cut).
    public func decode(_ ids: [Int]) throws -> [UInt8] { try decodeIDs(ids) }

    /// The length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence, so
    /// streamed text is printed only once each character is complete.
    public static func completeUTF8Prefix(_ bytes: [UInt8]) -> Int {
        var i = bytes.count
        // Look back at most 3 bytes for the lead byte of a trailing sequence.
        var back = 0
        while back < 3 && i - back - 1 >= 0 && bytes[i - back - 1] & 0xC0 == 0x80 { back += 1 }
        let leadIndex = i - back - 1
        guard leadIndex >= 0 else { return i }
        let lead = bytes[leadIndex]
        let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        if back + 1 < need { i = leadIndex }
        return i
    }
}

extension EvaluationInput {
    /// The checkpoint's tokenizer.
    public static func codec(for checkpoint: Checkpoint) throws -> TextCodec {
        let t = try tokenizer(for: checkpoint)
        var stops = Set(t.endOfGenerationIDs.map { Int($0) })
        if let e = t.eosID { stops.insert(Int(e)) }
        return TextCodec(encode: { text in t.encode(text).map { Int($0) } },
                         decode: { ids in t.decodeBytes(ids.map { Int32($0) }) },
                         stopTokens: stops, bos: t.addBOS ? t.bosID.map { Int($0) } : nil)
    }
}
