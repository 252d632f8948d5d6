import SmolTensor

/// Everything a tokenizer is built from, as plain arrays: the GGUF `tokenizer.ggml.*` keys
/// (and what `Tokenizer.fromHuggingFace` derives from a tokenizer.json). `Tokenizer` validates
/// it and builds its lookup tables; converters read and write it.
public struct TokenizerVocabulary: Sendable, Equatable {
    /// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// `tokenizer.ggml.model`: "llama" (SentencePiece, score-based merges, `<0xNN>` byte
    /// fallback), "gpt2" (byte-level BPE with ranked merges) or "gemma4" (BPE over raw UTF-8
    /// with "▁" for spaces and `<0xNN>` byte fallback).
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary (nil: "default").
    public var pre: String?
    /// `tokenizer.ggml.tokens`, in id order.
    public var tokens: [String]
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities; nil: all 0).
    public var scores: [Float]?
    /// `tokenizer.ggml.token_type` (nil: all normal).
    public var tokenTypes: [Int32]?
    /// `tokenizer.ggml.merges`: "left right", highest priority first (BPE models).
    public var merges: [String]?

    public var bosID: Int32?
    public var eosID: Int32?
    public var unknownID: Int32?
    public var paddingID: Int32?
    public var separatorID: Int32?
    public var maskID: Int32?
    public var eotID: Int32?
    public var eomID: Int32?

    /// `tokenizer.ggml.add_bos_token` etc.; nil: llama.cpp's default for the model.
    public var addBOS: Bool?
    public var addEOS: Bool?
    public var addSpacePrefix: Bool?
    /// `general.name`: llama.cpp gives Phi-3's special tokens "strip spaces to the right" by name.
    public var modelName: String?

    public init(model: String, pre: String? = nil, tokens: [String], scores: [Float]? = nil,
                tokenTypes: [Int32]? = nil, merges: [String]? = nil) {
        self.model = model
        self.pre = pre
        self.tokens = tokens
        self.scores = scores
        self.tokenTypes = tokenTypes
        self.merges = merges
    }

    /// Throws when the arrays disagree with each other or an id points outside the vocabulary.
    public func validate() throws {
        guard !tokens.isEmpty else { throw SmolError(.malformed, at: "tokenizer.ggml.tokens", "empty vocabulary") }
        guard tokens.count <= Int(Int32.max) else {
            throw SmolError(.malformed, at: "tokenizer.ggml.tokens", "\(tokens.count) tokens do not fit 32-bit ids")
        }
        if let s = scores, s.count < tokens.count {
            throw SmolError(.malformed, at: "tokenizer.ggml.scores", "\(s.count) scores for \(tokens.count) tokens")
        }
        if let t = tokenTypes, t.count < tokens.count {
            throw SmolError(.malformed, at: "tokenizer.ggml.token_type", "\(t.count) token types for \(tokens.count) tokens")
        }
        switch model {
        case "llama": break
        case "gpt2", "gemma4":
            guard merges != nil else {
                throw SmolError(.malformed, at: "tokenizer.ggml.merges", "a '\(model)' vocabulary needs merges")
            }
        default:
            throw SmolError(.unsupported, at: "tokenizer.ggml.model", "tokenizer model '\(model)' is not supported (llama, gpt2, gemma4 are)")
        }
    }
}
