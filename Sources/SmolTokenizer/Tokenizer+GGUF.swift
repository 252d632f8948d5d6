import SmolFormats
import SmolTensor

/// GGUF tokenizer keys (llama.cpp `LLM_KV_TOKENIZER_*`):
///
/// | key | type | meaning |
/// | --- | --- | --- |
/// | tokenizer.ggml.model | string | llama, gpt2, gemma4 |
/// | tokenizer.ggml.pre | string | BPE pre-tokenizer name |
/// | tokenizer.ggml.tokens | [string] | token texts by id |
/// | tokenizer.ggml.scores | [f32] (or [i32]) | SentencePiece scores |
/// | tokenizer.ggml.token_type | [i32] | 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte |
/// | tokenizer.ggml.merges | [string] | "left right", by rank |
/// | tokenizer.ggml.{bos,eos,unknown,padding,seperator,mask,eot,eom}_token_id | u32 | special ids |
/// | tokenizer.ggml.add_{bos,eos}_token, add_space_prefix | bool | flags |
extension TokenizerVocabulary {
    public enum Key {
        public static let model = "tokenizer.ggml.model"
        public static let pre = "tokenizer.ggml.pre"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let scores = "tokenizer.ggml.scores"
        public static let tokenType = "tokenizer.ggml.token_type"
        public static let merges = "tokenizer.ggml.merges"
        public static let bos = "tokenizer.ggml.bos_token_id"
        public static let eos = "tokenizer.ggml.eos_token_id"
        public static let unknown = "tokenizer.ggml.unknown_token_id"
        public static let padding = "tokenizer.ggml.padding_token_id"
        /// (sic: llama.cpp spells it this way)
        public static let separator = "tokenizer.ggml.seperator_token_id"
        public static let mask = "tokenizer.ggml.mask_token_id"
        public static let eot = "tokenizer.ggml.eot_token_id"
        public static let eom = "tokenizer.ggml.eom_token_id"
        public static let addBOS = "tokenizer.ggml.add_bos_token"
        public static let addEOS = "tokenizer.ggml.add_eos_token"
        public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
    }

    /// Reads the `tokenizer.ggml.*` keys of a GGUF file's metadata. Throws naming the key when
    /// one is missing or has the wrong type.
    public init(gguf meta: GGUFMetadata, file: String? = nil) throws {
        func bad(_ key: String, _ msg: String) -> SmolError { SmolError(.malformed, file: file, at: "metadata key '\(key)'", msg) }
        guard let model = meta.string(Key.model) else { throw bad(Key.model, "missing or not a string") }
        guard let tokens = meta.stringArray(Key.tokens) else { throw bad(Key.tokens, "missing or not an array of strings") }
        self.init(model: model, pre: meta.string(Key.pre), tokens: tokens)
        if meta.contains(Key.scores) {
            if let f = meta.floatArray(Key.scores) {
                scores = f
            } else if let i = meta.intArray(Key.scores) {
                scores = i.map { Float($0) }
            } else {
                throw bad(Key.scores, "not an array of numbers")
            }
        }
        if meta.contains(Key.tokenType) {
            guard let t = meta.intArray(Key.tokenType) else { throw bad(Key.tokenType, "not an array of integers") }
            tokenTypes = t.map { Int32(truncatingIfNeeded: $0) }
        }
        if meta.contains(Key.merges) {
            guard let m = meta.stringArray(Key.merges) else { throw bad(Key.merges, "not an array of strings") }
            merges = m
        }
        func id(_ key: String) throws -> Int32? {
            guard meta.contains(key) else { return nil }
            guard let v = meta.int(key) else { throw bad(key, "not an integer") }
            // Out-of-range ids are ignored by llama.cpp (it keeps the model default); so do we.
            return v >= 0 && v < tokens.count ? Int32(v) : nil
        }
        bosID = try id(Key.bos)
        eosID = try id(Key.eos)
        unknownID = try id(Key.unknown)
        paddingID = try id(Key.padding)
        separatorID = try id(Key.separator)
        maskID = try id(Key.mask)
        eotID = try id(Key.eot)
        eomID = try id(Key.eom)
        addBOS = meta.bool(Key.addBOS)
        addEOS = meta.bool(Key.addEOS)
        addSpacePrefix = meta.bool(Key.addSpacePrefix)
        modelName = meta.string("general.name")
        do { try validate() } catch let e as SmolError { throw file.map { e.inFile($0) } ?? e }
    }

    /// The `tokenizer.ggml.*` entries for a GGUF writer, in llama.cpp's conventional order
    /// (gguf-py writes token_type as INT32, ids as UINT32).
    public var ggufEntries: [(String, GGUFValue)] {
        var e: [(String, GGUFValue)] = [(Key.model, .string(model))]
        if let pre { e.append((Key.pre, .string(pre))) }
        e.append((Key.tokens, .array(.string(tokens))))
        if let scores { e.append((Key.scores, .array(.float32(scores)))) }
        if let tokenTypes { e.append((Key.tokenType, .array(.int32(tokenTypes)))) }
        if let merges { e.append((Key.merges, .array(.string(merges)))) }
        for (k, v) in [(Key.bos, bosID), (Key.eos, eosID), (Key.unknown, unknownID), (Key.separator, separatorID),
                       (Key.padding, paddingID), (Key.mask, maskID), (Key.eot, eotID), (Key.eom, eomID)] {
            if let v { e.append((k, .uint32(UInt32(v)))) }
        }
        if let addBOS { e.append((Key.addBOS, .bool(addBOS))) }
        if let addEOS { e.append((Key.addEOS, .bool(addEOS))) }
        if let addSpacePrefix { e.append((Key.addSpacePrefix, .bool(addSpacePrefix))) }
        return e
    }
}

extension Tokenizer {
    /// The tokenizer stored in a GGUF file's metadata.
    public static func fromGGUF(_ metadata: GGUFMetadata, file: String? = nil) throws -> Tokenizer {
        try Tokenizer(TokenizerVocabulary(gguf: metadata, file: file))
    }

    /// Opens a GGUF file and reads its tokenizer.
    public static func fromGGUF(path: String) throws -> Tokenizer {
        try fromGGUF(GGUFFile(path: path).metadata, file: path)
    }
}
