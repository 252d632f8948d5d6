import Foundation
import SmolFormats
import SmolTensor

/// Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) ↔ `TokenizerVocabulary`.
///
/// Two shapes are understood, the ones convert_hf_to_gguf.py turns into the two GGUF families:
/// - byte-level BPE: `model.type = BPE`, a `ByteLevel` pre-tokenizer (alone with `use_regex`,
///   or after a `Split` regex or `Digits`): GGUF model "gpt2"; the `pre` name is recognised from
///   the split pattern (table in formats/tokenizers.md);
/// - SentencePiece as BPE: `model.type = BPE` with `byte_fallback` and a normalizer replacing
///   " " with "▁" (Gemma, Llama 2): GGUF model "llama". tokenizer.json has no scores, so each
///   token's score is minus the rank of the first merge that forms it (merges are listed by
///   descending SentencePiece score, so the merge order is kept); tokens no merge forms score
///   below all of them.
///
/// Added tokens become control tokens when `special`, user-defined otherwise; ids missing from
/// both the vocabulary and the added tokens are filled with "[PAD<id>]" unused tokens, as
/// convert_hf_to_gguf.py does.
extension TokenizerVocabulary {
    /// Known split patterns of byte-level BPE tokenizers (as written in tokenizer.json) and the
    /// GGUF `pre` name llama.cpp gives them.
    static let splitPatterns: [(pattern: String, pre: String)] = [
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, "llama-bpe"),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, "qwen2"),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, "qwen35"),
    ]

    /// Reads a tokenizer.json document (and optionally tokenizer_config.json).
    public init(huggingFace tokenizer: JSONValue, config: JSONValue? = nil, file: String? = nil) throws {
        func bad(_ at: String, _ msg: String) -> SmolError { SmolError(.malformed, file: file, at: at, msg) }
        func unsupported(_ at: String, _ msg: String) -> SmolError { SmolError(.unsupported, file: file, at: at, msg) }
        guard let root = tokenizer.objectValue else { throw bad("top level", "not a JSON object") }
        guard let model = root["model"]?.objectValue else { throw bad("model", "missing") }
        let modelType = model["type"]?.stringValue ?? "BPE"
        guard modelType == "BPE" else { throw unsupported("model.type", "'\(modelType)' tokenizers are not supported (BPE is)") }
        guard let vocab = model["vocab"]?.objectValue else { throw bad("model.vocab", "missing or not an object") }

        // Texts by id: the model vocabulary, then added tokens (which may repeat vocabulary ids).
        var byID: [Int: String] = [:]
        var maxID = -1
        for m in vocab.members {
            guard let id = m.value.intValue, id >= 0, id < Int(Int32.max) else { throw bad("model.vocab[\(m.key.debugDescription)]", "id is not a non-negative integer") }
            byID[id] = m.key
            maxID = max(maxID, id)
        }
        var added: [Int: Bool] = [:] // id → special
        for (i, t) in (root["added_tokens"]?.arrayValue ?? []).enumerated() {
            guard let o = t.objectValue, let id = o["id"]?.intValue, id >= 0, id < Int(Int32.max),
                  let content = o["content"]?.stringValue else { throw bad("added_tokens[\(i)]", "needs id and content") }
            byID[id] = content
            added[id] = o["special"]?.boolValue ?? false
            maxID = max(maxID, id)
        }
        guard maxID >= 0 else { throw bad("model.vocab", "empty") }
        // Ids are dense in real files; gaps (and a larger vocab_size, padded with "[PAD<id>]" as
        // convert_hf_to_gguf.py pads to the embedding size) are allowed up to a bound, so a lying
        // id cannot make us allocate billions of filler tokens.
        let maxPadding = 1 << 20
        guard maxID + 1 <= byID.count + maxPadding else {
            throw bad("model.vocab", "ids reach \(maxID) but only \(byID.count) tokens are defined")
        }
        if let size = config?.objectValue?["vocab_size"]?.intValue, size > maxID + 1 {
            guard size <= byID.count + maxPadding else {
                throw bad("vocab_size", "\(size) is far beyond the \(byID.count) defined tokens")
            }
            maxID = size - 1
        }
        var tokens: [String] = []
        var types: [Int32] = []
        tokens.reserveCapacity(maxID + 1)
        types.reserveCapacity(maxID + 1)
        for id in 0...maxID {
            if let t = byID[id] {
                tokens.append(t)
                if let special = added[id] {
                    types.append(special ? TokenType.control.rawValue : TokenType.userDefined.rawValue)
                } else {
                    types.append(TokenType.normal.rawValue)
                }
            } else {
                tokens.append("[PAD\(id)]")
                types.append(TokenType.unused.rawValue)
            }
        }

        // Merges: "a b" strings (older files) or ["a", "b"] pairs (tokenizers ≥ 0.20).
        var merges: [String] = []
        for (i, m) in (model["merges"]?.arrayValue ?? []).enumerated() {
            if let s = m.stringValue {
                merges.append(s)
            } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                merges.append(a + " " + b)
            } else {
                throw bad("model.merges[\(i)]", "neither \"a b\" nor [a, b]")
            }
        }

        let byteFallback = model["byte_fallback"]?.boolValue ?? false
        let normalizers = TokenizerVocabulary.flatten(root["normalizer"], key: "normalizers")
        let replacesSpace = normalizers.contains {
            $0["type"]?.stringValue == "Replace" && $0["pattern"]?.objectValue?["String"]?.stringValue == " "
                && $0["content"]?.stringValue == "▁"
        }
        let preTokenizers = TokenizerVocabulary.flatten(root["pre_tokenizer"], key: "pretokenizers")
        let metaspace = preTokenizers.first { $0["type"]?.stringValue == "Metaspace" }

        if byteFallback && (replacesSpace || metaspace != nil) {
            // SentencePiece family.
            self.init(model: "llama", pre: "default", tokens: tokens)
            for i in tokens.indices where types[i] == TokenType.normal.rawValue {
                let t = tokens[i]
                if t.utf8.count == 6 && t.hasPrefix("<0x") && t.hasSuffix(">") && UInt8(t.dropFirst(3).prefix(2), radix: 16) != nil {
                    types[i] = TokenType.byte.rawValue
                }
            }
            // Scores from merge order.
            let index = TokenTable(tokens.map { Array($0.utf8) })
            var s = [Float](repeating: 0, count: tokens.count)
            var formed = [Bool](repeating: false, count: tokens.count)
            for (rank, m) in merges.enumerated() {
                let b = Array(m.utf8)
                guard b.count > 1, let sp = b[1...].firstIndex(of: 0x20) else { continue }
                var joined = Array(b[..<sp]); joined.append(contentsOf: b[(sp + 1)...])
                if let id = index.id(joined), !formed[Int(id)] { formed[Int(id)] = true; s[Int(id)] = -Float(rank) }
            }
            let floor = -Float(merges.count) - 1
            for i in tokens.indices where !formed[i] { s[i] = types[i] == TokenType.normal.rawValue ? floor : 0 }
            scores = s
            let prepends = normalizers.contains { $0["type"]?.stringValue == "Prepend" && $0["prepend"]?.stringValue == "▁" }
            let metaPrepend = metaspace.map { ($0["prepend_scheme"]?.stringValue ?? "always") != "never" && ($0["add_prefix_space"]?.boolValue ?? true) } ?? false
            addSpacePrefix = prepends || metaPrepend
        } else {
            guard preTokenizers.contains(where: { $0["type"]?.stringValue == "ByteLevel" }) else {
                throw unsupported("pre_tokenizer", "neither byte-level BPE nor SentencePiece-style BPE")
            }
            let pre = try TokenizerVocabulary.detectPre(preTokenizers, file: file)
            self.init(model: "gpt2", pre: pre, tokens: tokens, merges: merges)
        }
        tokenTypes = types
        // Byte-exact lookups (Swift String equality is canonical equivalence).
        let lookup = TokenTable(tokens.map { Array($0.utf8) })
        func idOf(_ name: String?) -> Int32? { name.flatMap { lookup.id(Array($0.utf8)) } }
        if let id = idOf(model["unk_token"]?.stringValue) {
            unknownID = id
            tokenTypes?[Int(id)] = TokenType.unknown.rawValue
        }

        // Special ids and flags from tokenizer_config.json.
        let cfg = config?.objectValue
        func tokenName(_ key: String) -> String? {
            if let s = cfg?[key]?.stringValue { return s }
            return cfg?[key]?.objectValue?["content"]?.stringValue // AddedToken dict
        }
        bosID = idOf(tokenName("bos_token"))
        eosID = idOf(tokenName("eos_token"))
        paddingID = idOf(tokenName("pad_token"))
        if let u = idOf(tokenName("unk_token")) { unknownID = u }
        if let b = cfg?["add_bos_token"]?.boolValue {
            addBOS = b
        } else if let post = root["post_processor"], let bos = bosID {
            // TemplateProcessing whose single-sequence template starts with the BOS token.
            let procs = TokenizerVocabulary.flatten(post, key: "processors")
            let starts = procs.contains { p in
                guard p["type"]?.stringValue == "TemplateProcessing", let first = p["single"]?.arrayValue?.first?.objectValue,
                      let id = first["SpecialToken"]?.objectValue?["id"]?.stringValue else { return false }
                return idOf(id) == bos
            }
            addBOS = starts
        }
        if let e = cfg?["add_eos_token"]?.boolValue { addEOS = e }
        try validate()
    }

    /// A normalizer / pre-tokenizer / processor, or the members of its Sequence.
    static func flatten(_ v: JSONValue?, key: String) -> [JSONObject] {
        guard let o = v?.objectValue else { return [] }
        if o["type"]?.stringValue == "Sequence", let items = o[key]?.arrayValue {
            return items.compactMap(\.objectValue)
        }
        return [o]
    }

    static func detectPre(_ steps: [JSONObject], file: String?) throws -> String {
        let types = steps.map { $0["type"]?.stringValue ?? "" }
        if types == ["ByteLevel"], steps[0]["use_regex"]?.boolValue ?? true { return "gpt-2" }
        if types == ["Digits", "ByteLevel"], steps[0]["individual_digits"]?.boolValue == true,
           steps[1]["use_regex"]?.boolValue ?? true { return "smollm" }
        if types == ["Split", "ByteLevel"], !(steps[1]["use_regex"]?.boolValue ?? true),
           let pattern = steps[0]["pattern"]?.objectValue?["Regex"]?.stringValue {
            if let hit = splitPatterns.first(where: { $0.pattern == pattern }) { return hit.pre }
            throw SmolError(.unsupported, file: file, at: "pre_tokenizer", "split pattern \(pattern.debugDescription) is not one smolconv knows")
        }
        throw SmolError(.unsupported, file: file, at: "pre_tokenizer", "pre-tokenizer sequence \(types) is not one smolconv knows")
    }

    // MARK: - Writing

    /// A tokenizer.json document for this vocabulary (the inverse of `init(huggingFace:)`), and the
    /// tokenizer_config.json fields that carry BOS/EOS. Byte-level BPE vocabularies need a `pre`
    /// with a known pattern; SentencePiece ones get merges built from their scores, the way
    /// transformers' SentencePieceExtractor does (every split of a token into two tokens, ordered
    /// by the token's score).
    public func huggingFaceJSON() throws -> (tokenizer: JSONValue, config: JSONValue) {
        try validate()
        let types = tokenTypes ?? [Int32](repeating: 1, count: tokens.count)
        var vocab: [JSONObject.Member] = []
        var added: [JSONValue] = []
        for (i, t) in tokens.enumerated() {
            let ty = types[i]
            if ty == TokenType.control.rawValue || ty == TokenType.userDefined.rawValue || (model == "llama" && ty == TokenType.unknown.rawValue) {
                added.append(.object(JSONObject([
                    ("id", JSONValue(i)), ("content", .string(t)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                    ("rstrip", .bool(false)), ("normalized", .bool(false)),
                    ("special", .bool(ty != TokenType.userDefined.rawValue)),
                ])))
            }
            if model == "gpt2" && (ty == TokenType.control.rawValue || ty == TokenType.userDefined.rawValue) { continue }
            vocab.append(JSONObject.Member(key: t, value: JSONValue(i)))
        }
        var mergeList: [JSONValue] = []
        let preTokenizer: JSONValue
        let normalizer: JSONValue
        let decoder: JSONValue
        let byteLevel: (Bool) -> JSONValue = { useRegex in
            .object(JSONObject([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
                                ("trim_offsets", .bool(true)), ("use_regex", .bool(useRegex))]))
        }
        if model == "gpt2" {
            for m in merges ?? [] {
                let b = Array(m.utf8)
                guard b.count > 1, let sp = b[1...].firstIndex(of: 0x20) else { continue }
                mergeList.append(.array([.string(String(decoding: b[..<sp], as: UTF8.self)), .string(String(decoding: b[(sp + 1)...], as: UTF8.self))]))
            }
            let p = pre ?? "default"
            if p == "gpt-2" {
                preTokenizer = byteLevel(true)
            } else if p == "smollm" {
                preTokenizer = .object(JSONObject([("type", .string("Sequence")), ("pretokenizers", .array([
                    .object(JSONObject([("type", .string("Digits")), ("individual_digits", .bool(true))])), byteLevel(true)]))]))
            } else if let pattern = TokenizerVocabulary.splitPatterns.first(where: { $0.pre == p })?.pattern {
                preTokenizer = .object(JSONObject([("type", .string("Sequence")), ("pretokenizers", .array([
                    .object(JSONObject([("type", .string("Split")), ("pattern", .object(JSONObject([("Regex", .string(pattern))]))),
                                        ("behavior", .string("Isolated")), ("invert", .bool(false))])), byteLevel(false)]))]))
            } else {
                throw SmolError(.unsupported, at: "tokenizer.ggml.pre", "no tokenizer.json pre-tokenizer for '\(p)'")
            }
            normalizer = .null
            decoder = byteLevel(true)
        } else if model == "llama" {
            mergeList = sentencePieceMerges().map { .array([.string($0.0), .string($0.1)]) }
            var norms: [JSONValue] = []
            if addSpacePrefix ?? true {
                norms.append(.object(JSONObject([("type", .string("Prepend")), ("prepend", .string("▁"))])))
            }
            norms.append(.object(JSONObject([("type", .string("Replace")), ("pattern", .object(JSONObject([("String", .string(" "))]))), ("content", .string("▁"))])))
            normalizer = .object(JSONObject([("type", .string("Sequence")), ("normalizers", .array(norms))]))
            preTokenizer = .null
            decoder = .object(JSONObject([("type", .string("Sequence")), ("decoders", .array([
                .object(JSONObject([("type", .string("Replace")), ("pattern", .object(JSONObject([("String", .string("▁"))]))), ("content", .string(" "))])),
                .object(JSONObject([("type", .string("ByteFallback"))])),
                .object(JSONObject([("type", .string("Fuse"))])),
            ]))]))
        } else {
            throw SmolError(.unsupported, at: "tokenizer.ggml.model", "no tokenizer.json writer for '\(model)'")
        }
        let unk: JSONValue = unknownID.map { .string(tokens[Int($0)]) } ?? .null
        let modelObj = JSONObject([
            ("type", .string("BPE")), ("dropout", .null), ("unk_token", unk), ("continuing_subword_prefix", .null),
            ("end_of_word_suffix", .null), ("fuse_unk", .bool(model == "llama")), ("byte_fallback", .bool(model == "llama")),
            ("ignore_merges", .bool(PreTokenizerConfig.forPre(pre ?? "default")?.ignoreMerges ?? false && model == "gpt2")),
            ("vocab", .object(JSONObject(vocab))), ("merges", .array(mergeList)),
        ])
        let tok = JSONValue.object(JSONObject([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null), ("added_tokens", .array(added)),
            ("normalizer", normalizer), ("pre_tokenizer", preTokenizer), ("post_processor", .null), ("decoder", decoder),
            ("model", .object(modelObj)),
        ]))
        var cfg: [(String, JSONValue)] = []
        let tokenizer = try Tokenizer(self)
        cfg.append(("add_bos_token", .bool(tokenizer.addBOS)))
        cfg.append(("add_eos_token", .bool(tokenizer.addEOS)))
        for (k, id) in [("bos_token", tokenizer.bosID), ("eos_token", tokenizer.eosID), ("unk_token", tokenizer.unknownID), ("pad_token", tokenizer.paddingID)] {
            if let id { cfg.append((k, .string(tokens[Int(id)]))) }
        }
        cfg.append(("model_max_length", JSONValue(1_000_000_000)))
        cfg.append(("tokenizer_class", .string("PreTrainedTokenizerFast")))
        cfg.append(("vocab_size", JSONValue(tokens.count)))
        return (tok, .object(JSONObject(cfg)))
    }

    /// Merges of a SentencePiece vocabulary: every split of a normal token into two tokens,
    /// best score first (ties: shorter left part, then ids), the way SentencePieceExtractor does.
    func sentencePieceMerges() -> [(String, String)] {
        let types = tokenTypes ?? [Int32](repeating: 1, count: tokens.count)
        let scores = self.scores ?? [Float](repeating: 0, count: tokens.count)
        let table = TokenTable(tokens.map { Array($0.utf8) })
        var found: [(score: Float, id: Int32, left: Int32, right: Int32)] = []
        for (i, t) in tokens.enumerated() where types[i] == TokenType.normal.rawValue || types[i] == TokenType.userDefined.rawValue {
            let bytes = Array(t.utf8)
            guard bytes.count > 1 else { continue }
            bytes.withUnsafeBufferPointer { buf in
                var k = UTF8Bytes.sequenceLength(buf[0])
                while k < buf.count {
                    if let l = table.id(UnsafeBufferPointer(rebasing: buf[..<k])), let r = table.id(UnsafeBufferPointer(rebasing: buf[k...])) {
                        found.append((scores[i], Int32(i), l, r))
                    }
                    k += UTF8Bytes.sequenceLength(buf[k])
                }
            }
        }
        found.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.id != b.id { return a.id < b.id }
            return a.left < b.left
        }
        return found.map { (tokens[Int($0.left)], tokens[Int($0.right)]) }
    }
}

extension Tokenizer {
    /// The tokenizer of a Hugging Face model folder (tokenizer.json, and tokenizer_config.json when
    /// present for BOS/EOS and their flags).
    public static func fromHuggingFace(folder: URL) throws -> Tokenizer {
        let tj = folder.appendingPathComponent("tokenizer.json").path
        let cj = folder.appendingPathComponent("tokenizer_config.json").path
        guard FileManager.default.fileExists(atPath: tj) else {
            throw SmolError(.invalidArgument, file: tj, "no tokenizer.json in the folder")
        }
        let doc = try JSONParser.parse(contentsOf: tj, duplicateKeys: .keepAll)
        let cfg = FileManager.default.fileExists(atPath: cj) ? try JSONParser.parse(contentsOf: cj, duplicateKeys: .keepAll) : nil
        return try Tokenizer(TokenizerVocabulary(huggingFace: doc, config: cfg, file: tj))
    }
}

extension TokenizerVocabulary {
    /// Writes tokenizer.json and tokenizer_config.json into `folder` (each through a temporary
    /// file renamed when complete).
    public func writeHuggingFace(to folder: URL) throws {
        let (doc, cfg) = try huggingFaceJSON()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (name, value) in [("tokenizer.json", doc), ("tokenizer_config.json", cfg)] {
            let out = try OutputFile(path: folder.appendingPathComponent(name).path)
            try out.write(Array(JSONWriter.compact(value).utf8))
            try out.commit()
        }
    }
}
