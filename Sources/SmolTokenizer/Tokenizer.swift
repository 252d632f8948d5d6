import SmolTensor

/// A text ↔ token-id converter that reproduces llama.cpp's tokenizers (llama-vocab.cpp) for
/// SentencePiece vocabularies (`tokenizer.ggml.model = llama`: Gemma, Llama 2, Phi-3) and
/// byte-level BPE vocabularies (`gpt2`: GPT-2, Llama 3, Qwen2/2.5/3/3.5, SmolLM; `gemma4`).
///
/// Encoding runs in three stages, as in llama.cpp:
/// 1. special-token partition: every control, user-defined and unknown token written in the text
///    is cut out as its own id (longest tokens first; control/unknown ones only when
///    `parseSpecial`);
/// 2. the remaining fragments are tokenized: SentencePiece merges symbol pairs by the merged
///    token's score, with `<0xNN>` byte fallback; BPE splits words with the `pre` pre-tokenizer
///    and merges them by merge rank;
/// 3. BOS/EOS are added as the file's flags say.
///
/// Thread safety: immutable after construction; `encode`/`decode` may run concurrently.
public final class Tokenizer: Sendable {
    /// The family the vocabulary belongs to.
    public enum Kind: String, Sendable {
        /// SentencePiece with score-based merges (`llama`).
        case sentencePiece
        /// Byte-level BPE with ranked merges (`gpt2`, `gemma4`).
        case bpe
    }

    public let vocabulary: TokenizerVocabulary
    public let kind: Kind
    public var vocabSize: Int { table.count }
    public let bosID: Int32?
    public let eosID: Int32?
    public let unknownID: Int32?
    public let paddingID: Int32?
    /// End-of-turn token (explicit in the file, or found by name as llama.cpp does).
    public let eotID: Int32?
    /// Whether `encode` adds BOS / EOS by default (file flags, else llama.cpp's default).
    public let addBOS: Bool
    public let addEOS: Bool
    public let addSpacePrefix: Bool
    /// Tokens that end generation (EOS, EOT, and the names llama.cpp lists).
    public let endOfGenerationIDs: Set<Int32>

    // Token attributes, llama.cpp `llama_token_attr` bits.
    struct Attr {
        static let unknown: UInt16 = 1 << 0
        static let unused: UInt16 = 1 << 1
        static let normal: UInt16 = 1 << 2
        static let control: UInt16 = 1 << 3
        static let userDefined: UInt16 = 1 << 4
        static let byte: UInt16 = 1 << 5
        static let lstrip: UInt16 = 1 << 7
        static let rstrip: UInt16 = 1 << 8
    }

    let table: TokenTable
    let attrs: [UInt16]
    let scores: [Float]
    let pre: PreTokenizerConfig
    let cleanSpaces: Bool
    /// Control / user-defined / unknown tokens in partition order (longest first, then by id).
    let specialOrder: [Int32]
    let specialTrie: SpecialTrie
    /// Token ids for raw bytes: SentencePiece `<0xNN>` (or the byte itself); BPE the single-byte
    /// text llama.cpp looks up when a merged word is not a token.
    let byteFallback: [Int32?]
    /// BPE: merge-part texts (token texts first, then parts that are no token) and ranks keyed by
    /// (left part index << 32 | right part index).
    let parts: TokenTable
    let ranks: [UInt64: Int32]

    /// Builds the tokenizer; throws on an inconsistent or unsupported vocabulary.
    public init(_ v: TokenizerVocabulary) throws {
        try v.validate()
        vocabulary = v
        let n = v.tokens.count

        // Token texts as bytes; an empty text becomes "[EMPTY_i]" (llama.cpp does the same so
        // that every id keeps a distinct text).
        var texts: [[UInt8]] = []
        texts.reserveCapacity(n)
        for (i, t) in v.tokens.enumerated() {
            texts.append(t.isEmpty ? Array("[EMPTY_\(i)]".utf8) : Array(t.utf8))
        }
        table = TokenTable(texts)
        scores = v.scores.map { Array($0.prefix(n)) } ?? [Float](repeating: 0, count: n)

        var a = [UInt16](repeating: Attr.normal, count: n)
        if let types = v.tokenTypes {
            for i in 0..<n {
                switch types[i] {
                case 1: a[i] = Attr.normal
                case 2: a[i] = Attr.unknown
                case 3: a[i] = Attr.control
                case 4: a[i] = Attr.userDefined
                case 5: a[i] = Attr.unused
                case 6: a[i] = Attr.byte
                default: a[i] = 0
                }
            }
        }

        // Model defaults (llama-vocab.cpp `load`), then the file's keys.
        var bos: Int32?, eos: Int32?, unk: Int32?
        var addBOS = false, addEOS = false, addSpacePrefix = false
        var preConfig = PreTokenizerConfig(steps: [])
        switch v.model {
        case "llama":
            kind = .sentencePiece
            bos = 1; eos = 2; unk = 0
            addBOS = true; addSpacePrefix = true
            preConfig.cleanSpaces = false
        default:
            kind = .bpe
            let preName = v.model == "gemma4" ? "gemma4" : (v.pre ?? "default")
            guard let c = PreTokenizerConfig.forPre(preName) else {
                throw SmolError(.unsupported, at: "tokenizer.ggml.pre", "pre-tokenizer '\(preName)' is not implemented")
            }
            preConfig = c
            if v.model == "gpt2" { bos = 11; eos = 11 }
            addBOS = c.defaultAddBOS
        }
        func inRange(_ id: Int32?) -> Int32? { id.flatMap { $0 >= 0 && Int($0) < n ? $0 : nil } }
        bos = inRange(bos); eos = inRange(eos); unk = inRange(unk)
        bos = inRange(v.bosID) ?? bos
        eos = inRange(v.eosID) ?? eos
        unk = inRange(v.unknownID) ?? unk
        if let b = v.addBOS { addBOS = b }
        if let e = v.addEOS { addEOS = e }
        if let s = v.addSpacePrefix { addSpacePrefix = s }
        if v.model == "gemma4" { addBOS = true } // llama.cpp forces it for Gemma 4 (PR 21500)
        pre = preConfig
        cleanSpaces = preConfig.cleanSpaces

        // Special tokens recognised by name (llama.cpp marks them control when the converter
        // did not). See formats/tokenizers.md for the simplifications.
        let table = self.table
        func idOf(_ s: String) -> Int32? { table.id(Array(s.utf8)) }
        func promote(_ names: [String]) -> Int32? {
            var first: Int32?
            for name in names { if let id = idOf(name) { a[Int(id)] |= Attr.control; first = first ?? id } }
            return first
        }
        var eot = inRange(v.eotID)
        if eot == nil {
            eot = promote(["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                           "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"])
        }
        var eom = inRange(v.eomID)
        if eom == nil { eom = promote(["<|eom_id|>"]) }
        _ = promote(["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"])
        _ = promote(["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"])
        _ = promote(["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"])
        let fimPad = promote(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"])
        let fimRep = promote(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"])
        let fimSep = promote(["<|file_sep|>"])
        var eog = Set<Int32>([fimPad, fimRep, fimSep].compactMap { $0 })
        let eogNames = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                        "<｜end▁of▁sentence｜>", "[e~["]
        for name in eogNames { if let id = idOf(name) { eog.insert(id); a[Int(id)] |= Attr.control } }
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = idOf(name) { a[Int(id)] = Attr.userDefined }
        }
        for id in [eos, eot, eom] { if let id { eog.insert(id) } }
        let eogTexts = Set(eog.map { String(decoding: table.text(Int($0)), as: UTF8.self) })
        if let end = idOf("<|end|>"), eog.contains(end),
           (eogTexts.contains("<|return|>") && (eogTexts.contains("<|call|>") || eogTexts.contains("<|calls|>")))
            || ((eogTexts.contains("<|call|>") || eogTexts.contains("<|calls|>")) && eogTexts.contains("<|flush|>")) {
            eog.remove(end)
            a[Int(end)] = Attr.userDefined
        }
        if let s = idOf("</s>"), eog.contains(s),
           eogTexts.contains("<|tool_response>") || eogTexts.contains("<|plamo:eos|>") {
            eog.remove(s)
            a[Int(s)] = Attr.normal
        }

        // Partition order: llama.cpp sorts by text length, longest first, with std::sort (not
        // stable); equal lengths are ordered by id here.
        var special: [Int32] = []
        for i in 0..<n where a[i] & (Attr.control | Attr.userDefined | Attr.unknown) != 0 { special.append(Int32(i)) }
        special.sort { x, y in
            let lx = table.textLength(Int(x)), ly = table.textLength(Int(y))
            return lx != ly ? lx > ly : x < y
        }

        // Phi-3: special tokens swallow the spaces after them (llama.cpp sets RSTRIP by model name).
        let lname = (v.modelName ?? "").lowercased()
        if lname.contains("phi-3") || lname.contains("phi3") {
            for id in special { a[Int(id)] |= Attr.rstrip }
            if let id = idOf("</s>") { a[Int(id)] |= Attr.rstrip }
            for name in ["<unk>", "<s>", "<|endoftext|>"] { if let id = idOf(name) { a[Int(id)] &= ~Attr.rstrip } }
        }
        attrs = a
        specialOrder = special
        specialTrie = SpecialTrie(special.map { Array(table.text(Int($0))) }, ids: special)

        // Byte fallback ids.
        var fallback = [Int32?](repeating: nil, count: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            let spelled = [UInt8(ascii: "<"), UInt8(ascii: "0"), UInt8(ascii: "x"), hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
            if kind == .sentencePiece {
                fallback[b] = table.id(spelled) ?? table.id([UInt8(b)])
            } else if preConfig.byteEncode {
                fallback[b] = table.id([UInt8(b)])
            } else {
                fallback[b] = table.id(spelled)
            }
        }
        byteFallback = fallback

        // BPE merge ranks; the first occurrence of a pair keeps its rank (std::map::emplace).
        if kind == .bpe, let merges = v.merges {
            var extra: [[UInt8]] = []
            var extraIndex: [[UInt8]: Int32] = [:]
            var r: [UInt64: Int32] = [:]
            r.reserveCapacity(merges.count)
            func partID(_ s: ArraySlice<UInt8>) -> Int32 {
                if let id = s.withUnsafeBufferPointer({ table.id($0) }) { return id }
                let key = Array(s)
                if let e = extraIndex[key] { return e }
                let e = Int32(n + extra.count)
                extra.append(key)
                extraIndex[key] = e
                return e
            }
            for (rank, m) in merges.enumerated() {
                let bytes = Array(m.utf8)
                // Split at the first space after the first byte (llama.cpp `word.find(' ', 1)`);
                // a merge without one pairs "" with "" and can never apply.
                guard bytes.count > 1, let sp = bytes[1...].firstIndex(of: 0x20) else { continue }
                let key = UInt64(UInt32(bitPattern: partID(bytes[..<sp]))) << 32
                    | UInt64(UInt32(bitPattern: partID(bytes[(sp + 1)...])))
                if r[key] == nil { r[key] = Int32(rank) }
            }
            var all = texts
            all.append(contentsOf: extra)
            parts = extra.isEmpty ? table : TokenTable(all)
            ranks = r
        } else {
            parts = table
            ranks = [:]
        }

        bosID = bos
        eosID = eos
        unknownID = unk
        paddingID = inRange(v.paddingID)
        eotID = eot
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        endOfGenerationIDs = eog
    }

    // MARK: - Lookup

    /// The token's text as stored in the vocabulary (SentencePiece "▁", GPT-2 "Ġ" spellings).
    public func tokenText(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return String(decoding: table.text(Int(id)), as: UTF8.self)
    }

    /// The id whose text is exactly `text` (byte-exact), or nil.
    public func tokenID(_ text: String) -> Int32? { table.id(Array(text.utf8)) }

    /// True for control and unknown tokens (rendered empty unless asked for).
    public func isControl(_ id: Int32) -> Bool {
        guard id >= 0, Int(id) < vocabSize else { return false }
        return attrs[Int(id)] & (Attr.control | Attr.unknown) != 0
    }

    // MARK: - Encoding

    /// Token ids of `text`, as llama.cpp `llama_tokenize` gives them.
    /// - Parameters:
    ///   - addBOS: nil adds BOS/EOS as the file says (`add_bos_token`, `add_eos_token`; llama.cpp
    ///     `add_special = true`); true adds BOS even when the file does not ask for it (EOS as the
    ///     file says); false adds neither (`add_special = false`).
    ///   - parseSpecial: control tokens written in the text (`<start_of_turn>`) become their ids;
    ///     false treats them as plain text. User-defined tokens are always matched.
    public func encode(_ text: String, addBOS: Bool? = nil, parseSpecial: Bool = true) -> [Int32] {
        encode(bytes: Array(text.utf8), addBOS: addBOS, parseSpecial: parseSpecial)
    }

    /// `encode` on UTF-8 bytes (invalid sequences are read as U+FFFD per byte, as llama.cpp does).
    public func encode(bytes: [UInt8], addBOS: Bool? = nil, parseSpecial: Bool = true) -> [Int32] {
        let addSpecial = addBOS ?? true
        let withBOS = addBOS ?? self.addBOS
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 4)
        let fragments = partition(bytes, parseSpecial: parseSpecial)
        if withBOS, let b = bosID { out.append(b) }
        bytes.withUnsafeBufferPointer { buf in
            var isPrevSpecial = true
            var scratch: [UInt8] = []
            for f in fragments {
                switch f {
                case .token(let id):
                    out.append(id)
                    isPrevSpecial = true
                case .text(let lo, let hi):
                    let raw = UnsafeBufferPointer(rebasing: buf[lo..<hi])
                    if kind == .sentencePiece {
                        scratch.removeAll(keepingCapacity: true)
                        if addSpacePrefix && isPrevSpecial { scratch.append(contentsOf: Tokenizer.spaceMark) }
                        Tokenizer.appendEscapingSpaces(raw, to: &scratch)
                        scratch.withUnsafeBufferPointer { encodeSentencePiece($0, into: &out) }
                    } else if pre.escapeWhitespace {
                        scratch.removeAll(keepingCapacity: true)
                        Tokenizer.appendEscapingSpaces(raw, to: &scratch)
                        scratch.withUnsafeBufferPointer { encodeBPE($0, into: &out) }
                    } else {
                        encodeBPE(raw, into: &out)
                    }
                    isPrevSpecial = false
                }
            }
        }
        if addSpecial && self.addEOS, let e = eosID { out.append(e) }
        return out
    }

    /// "▁" (U+2581), SentencePiece's visible space.
    static let spaceMark: [UInt8] = [0xE2, 0x96, 0x81]

    static func appendEscapingSpaces(_ raw: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        for b in raw {
            if b == 0x20 { out.append(contentsOf: spaceMark) } else { out.append(b) }
        }
    }

    enum Fragment: Equatable {
        case text(Int, Int)   // byte range of the input
        case token(Int32)
    }

    /// llama.cpp `tokenizer_st_partition`: for each special token, longest first, cut every
    /// occurrence out of the remaining text fragments.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0, bytes.count)]
        // Only tokens that occur somewhere can split anything; the trie finds them in one pass.
        let present = specialTrie.tokensOccurring(in: bytes)
        if present.isEmpty { return fragments }
        let skip = Attr.control | Attr.unknown
        bytes.withUnsafeBufferPointer { buf in
            for id in specialOrder where present.contains(id) {
                let attr = attrs[Int(id)]
                if !parseSpecial && attr & skip != 0 { continue }
                let tokenBytes = table.text(Int(id))
                var next: [Fragment] = []
                next.reserveCapacity(fragments.count + 4)
                for f in fragments {
                    guard case .text(var lo, let hi) = f else { next.append(f); continue }
                    while lo < hi {
                        guard let m = Tokenizer.find(tokenBytes, in: buf, from: lo, to: hi) else {
                            next.append(.text(lo, hi)); lo = hi; break
                        }
                        var leftEnd = m
                        if attr & Attr.lstrip != 0 { while leftEnd > lo && Tokenizer.isCSpace(buf[leftEnd - 1]) { leftEnd -= 1 } }
                        if leftEnd > lo { next.append(.text(lo, leftEnd)) }
                        next.append(.token(id))
                        lo = m + tokenBytes.count
                        if attr & Attr.rstrip != 0 { while lo < hi && Tokenizer.isCSpace(buf[lo]) { lo += 1 } }
                    }
                }
                fragments = next
            }
        }
        return fragments
    }

    @inline(__always) static func isCSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    static func find(_ needle: ArraySlice<UInt8>, in hay: UnsafeBufferPointer<UInt8>, from lo: Int, to hi: Int) -> Int? {
        let n = needle.count
        guard n > 0, hi - lo >= n else { return nil }
        let first = needle[needle.startIndex]
        var i = lo
        let last = hi - n
        while i <= last {
            if hay[i] == first {
                var k = 1
                while k < n && hay[i + k] == needle[needle.startIndex + k] { k += 1 }
                if k == n { return i }
            }
            i += 1
        }
        return nil
    }

    // MARK: SentencePiece

    struct Symbol {
        var start: Int32
        var length: Int32
        var prev: Int32
        var next: Int32
    }

    struct SPMBigram: HeapElement {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32
        /// Higher score first; equal scores: leftmost first (llama.cpp `llm_bigram_spm::comparator`).
        @inline(__always) static func before(_ a: Self, _ b: Self) -> Bool {
            a.score > b.score || (a.score == b.score && a.left < b.left)
        }
    }

    /// llama.cpp `llm_tokenizer_spm_session::tokenize`.
    func encodeSentencePiece(_ text: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        var symbols = Tokenizer.utf8Symbols(text, from: 0, to: text.count)
        guard !symbols.isEmpty else { return }
        var heap = Heap<SPMBigram>()
        func tryAdd(_ l: Int32, _ r: Int32) {
            if l < 0 || r < 0 { return }
            let s = symbols[Int(l)].start
            let len = symbols[Int(l)].length + symbols[Int(r)].length
            guard let id = table.id(UnsafeBufferPointer(rebasing: text[Int(s)..<Int(s + len)])) else { return }
            heap.push(SPMBigram(score: scores[Int(id)], left: l, right: r, size: len))
        }
        for i in 1..<symbols.count { tryAdd(Int32(i - 1), Int32(i)) }
        while let bg = heap.pop() {
            let l = Int(bg.left), r = Int(bg.right)
            if symbols[l].length == 0 || symbols[r].length == 0 || symbols[l].length + symbols[r].length != bg.size { continue }
            symbols[l].length += symbols[r].length
            symbols[r].length = 0
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[Int(symbols[r].next)].prev = bg.left }
            tryAdd(symbols[l].prev, bg.left)
            tryAdd(bg.left, symbols[l].next)
        }
        var i: Int32 = 0
        while i != -1 {
            let s = symbols[Int(i)]
            let piece = UnsafeBufferPointer(rebasing: text[Int(s.start)..<Int(s.start + s.length)])
            if let id = table.id(piece) {
                out.append(id)
            } else {
                // A symbol that is no token is a single character (merges only ever form tokens):
                // spell it as bytes.
                for b in piece { if let id = byteFallback[Int(b)] ?? unknownID { out.append(id) } }
            }
            i = s.next
        }
    }

    /// One symbol per UTF-8 character of text[lo..<hi] (length from the lead byte, clipped).
    static func utf8Symbols(_ text: UnsafeBufferPointer<UInt8>, from lo: Int, to hi: Int) -> [Symbol] {
        var symbols: [Symbol] = []
        symbols.reserveCapacity(hi - lo)
        var offs = lo
        var index: Int32 = 0
        while offs < hi {
            let len = min(UTF8Bytes.sequenceLength(text[offs]), hi - offs)
            let start = offs
            offs += len
            symbols.append(Symbol(start: Int32(start), length: Int32(len), prev: index - 1, next: offs == hi ? -1 : index + 1))
            index += 1
        }
        return symbols
    }

    // MARK: BPE

    struct BPEBigram: HeapElement {
        var rank: Int32
        var left: Int32
        var right: Int32
        var size: Int32
        /// Lower rank first; equal ranks: leftmost first (llama.cpp `llm_bigram_bpe::comparator`).
        @inline(__always) static func before(_ a: Self, _ b: Self) -> Bool {
            a.rank < b.rank || (a.rank == b.rank && a.left < b.left)
        }
    }

    /// llama.cpp `llm_tokenizer_bpe_session::tokenize` on one text fragment.
    func encodeBPE(_ text: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let cps = UTF8Bytes.codepoints(text)
        let lengths = PreTokenizer.split(cps, steps: pre.steps)
        var word: [UInt8] = []
        var pos = 0
        for len in lengths {
            word.removeAll(keepingCapacity: true)
            for k in pos..<(pos + len) {
                if pre.byteEncode {
                    var tmp: [UInt8] = []
                    UTF8Bytes.append(cps[k], to: &tmp)
                    for b in tmp { word.append(contentsOf: ByteLevel.byteToUTF8[Int(b)]) }
                } else {
                    UTF8Bytes.append(cps[k], to: &word)
                }
            }
            pos += len
            word.withUnsafeBufferPointer { encodeBPEWord($0, into: &out) }
        }
    }

    func encodeBPEWord(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        var symbols: [Symbol]
        if pre.ignoreMerges, let id = table.id(word) {
            out.append(id)
            return
        } else if !pre.byteEncode && pre.escapeWhitespace && word.allSatisfy({ $0 == 0x0A }) && table.id(word) != nil {
            // Gemma 4: a run of newlines that is a token stays whole (llama.cpp PR 21343).
            symbols = [Symbol(start: 0, length: Int32(word.count), prev: -1, next: -1)]
        } else {
            symbols = Tokenizer.utf8Symbols(word, from: 0, to: word.count)
        }
        var heap = Heap<BPEBigram>()
        func partIndex(_ s: Symbol) -> Int32? {
            parts.id(UnsafeBufferPointer(rebasing: word[Int(s.start)..<Int(s.start + s.length)]))
        }
        func tryAdd(_ l: Int32, _ r: Int32) {
            if l < 0 || r < 0 { return }
            guard let a = partIndex(symbols[Int(l)]), let b = partIndex(symbols[Int(r)]) else { return }
            let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
            guard let rank = ranks[key] else { return }
            heap.push(BPEBigram(rank: rank, left: l, right: r, size: symbols[Int(l)].length + symbols[Int(r)].length))
        }
        for i in stride(from: 1, to: symbols.count, by: 1) { tryAdd(Int32(i - 1), Int32(i)) }
        while let bg = heap.pop() {
            let l = Int(bg.left), r = Int(bg.right)
            if symbols[l].length == 0 || symbols[r].length == 0 || symbols[l].length + symbols[r].length != bg.size { continue }
            symbols[l].length += symbols[r].length
            symbols[r].length = 0
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[Int(symbols[r].next)].prev = bg.left }
            tryAdd(symbols[l].prev, bg.left)
            tryAdd(bg.left, symbols[l].next)
        }
        for s in symbols where s.length > 0 {
            let piece = UnsafeBufferPointer(rebasing: word[Int(s.start)..<Int(s.start + s.length)])
            if let id = table.id(piece) {
                out.append(id)
            } else {
                // llama.cpp looks each byte up alone and drops the ones that are no token.
                for b in piece { if let id = byteFallback[Int(b)] { out.append(id) } }
            }
        }
    }

    // MARK: - Decoding

    /// Text of `ids`, as llama.cpp `llama_detokenize` gives it (invalid UTF-8 from split byte
    /// tokens becomes U+FFFD).
    /// - Parameters:
    ///   - removeSpecial: drop a leading BOS / trailing EOS the file would add.
    ///   - renderSpecial: write control tokens' text (`<end_of_turn>`) instead of nothing.
    ///   - cleanSpaces: remove the space before `. , ! ?` and in contractions (nil: the vocabulary's
    ///     `clean_up_tokenization_spaces` default, true for GPT-2 and Llama 3 style BPE).
    public func decode(_ ids: [Int32], removeSpecial: Bool = true, renderSpecial: Bool = false,
                       cleanSpaces: Bool? = nil) -> String {
        String(decoding: decodeBytes(ids, removeSpecial: removeSpecial, renderSpecial: renderSpecial,
                                     cleanSpaces: cleanSpaces), as: UTF8.self)
    }

    /// `decode` as raw bytes (byte tokens reassembled, nothing repaired).
    public func decodeBytes(_ ids: [Int32], removeSpecial: Bool = true, renderSpecial: Bool = false,
                            cleanSpaces: Bool? = nil) -> [UInt8] {
        var ids = ids[...]
        var removeSpace = addSpacePrefix
        if removeSpecial && addBOS, let b = bosID, ids.first == b {
            removeSpace = false
            ids = ids.dropFirst()
        }
        if removeSpecial && addEOS, let e = eosID, ids.last == e { ids = ids.dropLast() }
        var text: [UInt8] = []
        for id in ids {
            let p = piece(id, renderSpecial: renderSpecial)
            if removeSpace, p.first == 0x20 { text.append(contentsOf: p.dropFirst()) } else { text.append(contentsOf: p) }
            removeSpace = false
        }
        if cleanSpaces ?? self.cleanSpaces { Tokenizer.cleanUpSpaces(&text) }
        return text
    }

    /// The bytes one token stands for (llama.cpp `token_to_piece`).
    public func piece(_ id: Int32, renderSpecial: Bool = true) -> [UInt8] {
        guard id >= 0, Int(id) < vocabSize else { return [] }
        let attr = attrs[Int(id)]
        if !renderSpecial && attr & (Attr.control | Attr.unknown) != 0 { return [] }
        let text = table.text(Int(id))
        if attr & (Attr.control | Attr.unknown | Attr.userDefined) != 0 { return Array(text) }
        if attr & Attr.normal != 0 {
            if kind == .sentencePiece || pre.escapeWhitespace { return Tokenizer.unescapeSpaces(text) }
            return Tokenizer.byteLevelDecode(text)
        }
        if attr & Attr.byte != 0 {
            // "<0xNN>"
            let t = Array(text)
            if t.count == 6, let v = UInt8(String(decoding: t[3..<5], as: UTF8.self), radix: 16) { return [v] }
            return []
        }
        return []
    }

    static func unescapeSpaces(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == 0xE2 && i + 2 < text.endIndex && text[i + 1] == 0x96 && text[i + 2] == 0x81 {
                out.append(0x20); i += 3
            } else {
                out.append(text[i]); i += 1
            }
        }
        return out
    }

    /// GPT-2 stand-in characters back to bytes (llama.cpp `llama_decode_text`, including its
    /// "[UNK_BYTE_0x…]" spelling for characters outside the mapping).
    static func byteLevelDecode(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        let cps = Array(text).withUnsafeBufferPointer { UTF8Bytes.codepoints($0) }
        for cp in cps {
            if let b = ByteLevel.byte(forCodepoint: cp) {
                out.append(b)
            } else {
                var utf8: [UInt8] = []
                UTF8Bytes.append(cp, to: &utf8)
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for b in utf8 {
                    let h = String(b, radix: 16)
                    out.append(contentsOf: Array((h.count == 1 ? "0" + h : h).utf8))
                }
                out.append(contentsOf: text)
                out.append(UInt8(ascii: "]"))
            }
        }
        return out
    }

    /// llama.cpp's three `clean_spaces` passes in `detokenize`.
    static func cleanUpSpaces(_ t: inout [UInt8]) {
        let sp = UInt8(ascii: " "), ap = UInt8(ascii: "'")
        // 1: " ?", " !", " .", " ," lose the space.
        var r: [UInt8] = []
        r.reserveCapacity(t.count)
        for (i, x) in t.enumerated() {
            if i > 0 && t[i - 1] == sp && (x == UInt8(ascii: "?") || x == UInt8(ascii: "!") || x == UInt8(ascii: ".") || x == UInt8(ascii: ",")) {
                r.removeLast()
            }
            r.append(x)
        }
        t = r
        // 2: " ' " becomes "'".
        r = []
        var i = 0
        while i < t.count {
            let x = t[i]
            if i > 0 && x == ap && i + 1 < t.count && t[i - 1] == sp && t[i + 1] == sp {
                r.removeLast()
                r.append(x)
                i += 2
                continue
            }
            r.append(x)
            i += 1
        }
        t = r
        // 3: " 's", " 'm", " 're", " 've" lose the space.
        r = []
        for (i, x) in t.enumerated() {
            if i > 0 && t[i - 1] == sp && x == ap && i + 1 < t.count {
                let x1 = t[i + 1]
                if x1 == UInt8(ascii: "s") || x1 == UInt8(ascii: "m") {
                    r.removeLast()
                } else if i + 2 < t.count {
                    let x2 = t[i + 2]
                    if (x1 == UInt8(ascii: "r") && x2 == UInt8(ascii: "e")) || (x1 == UInt8(ascii: "v") && x2 == UInt8(ascii: "e")) {
                        r.removeLast()
                    }
                }
            }
            r.append(x)
        }
        t = r
    }
}

// MARK: - Support

protocol HeapElement {
    /// True when `a` must come out of the queue before `b`.
    static func before(_ a: Self, _ b: Self) -> Bool
}

/// A binary heap (priority queue) ordered by `Element.before`.
struct Heap<Element: HeapElement> {
    private var items: [Element] = []

    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if !Element.before(items[i], items[p]) { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < n && Element.before(items[l], items[best]) { best = l }
                if r < n && Element.before(items[r], items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}

/// A byte trie over special-token texts: finds, in one pass, which of them occur in a text.
struct SpecialTrie: Sendable {
    /// (node << 8 | byte) → child node.
    private var children: [Int: Int32] = [:]
    /// Token ids ending at each node.
    private var terminals: [[Int32]] = [[]]

    init(_ texts: [[UInt8]], ids: [Int32]) {
        for (t, id) in zip(texts, ids) {
            var node = 0
            for b in t {
                let key = node << 8 | Int(b)
                if let c = children[key] {
                    node = Int(c)
                } else {
                    terminals.append([])
                    let c = terminals.count - 1
                    children[key] = Int32(c)
                    node = c
                }
            }
            terminals[node].append(id)
        }
    }

    func tokensOccurring(in bytes: [UInt8]) -> Set<Int32> {
        var found = Set<Int32>()
        if children.isEmpty { return found }
        bytes.withUnsafeBufferPointer { buf in
            for start in 0..<buf.count {
                var node = 0
                var i = start
                while i < buf.count, let c = children[node << 8 | Int(buf[i])] {
                    node = Int(c)
                    for id in terminals[node] { found.insert(id) }
                    i += 1
                }
            }
        }
        return found
    }
}
