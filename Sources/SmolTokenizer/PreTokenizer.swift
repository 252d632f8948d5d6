/// Byte-level BPE pre-tokenization: splitting text into words before merges, per GGUF
/// `tokenizer.ggml.pre`, without a regex engine.
///
/// llama.cpp applies a list of regexes one after another; each regex splits every current piece
/// into its matches and the gaps between them (both kept). The big GPT-2 / Llama 3 / Qwen2 /
/// Qwen3.5 patterns are hand-written state machines in llama.cpp (unicode.cpp
/// `unicode_regex_split_custom_*`); the small ones run through std::regex on a "collapsed" text
/// where each non-ASCII code point is replaced by a byte naming its category. Both are
/// reproduced here as functions over code points; the patterns are listed per `pre` value in
/// formats/tokenizers.md.
enum PreTokenizerStep: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with N = 3 (Llama 3) or 1 (Qwen2); `marks` adds \p{M} to the letter runs (Qwen3.5).
    case llama3(maxDigits: Int, marks: Bool)
    /// `[\p{P}\$\+<=>\^~\|]+`
    case punctuationRun
    /// `\p{N}+`
    case numberRun
    /// `\p{N}`
    case singleNumber
    /// `[0-9][0-9][0-9]`
    case asciiDigitTriples
    /// `[^\n]+|[\n]+` (Gemma 4: only newline runs are split off)
    case newlineRuns
}

/// What a `tokenizer.ggml.pre` value selects in llama.cpp (llama-vocab.cpp, `load`).
struct PreTokenizerConfig: Sendable, Equatable {
    var steps: [PreTokenizerStep]
    /// Map bytes to GPT-2's printable stand-ins before merging (false for Gemma 4's raw UTF-8).
    var byteEncode = true
    /// Replace " " with "▁" before merging (Gemma 4).
    var escapeWhitespace = false
    /// A word that is itself a token is emitted whole, merges skipped (Llama 3).
    var ignoreMerges = false
    /// Decoding removes spaces before punctuation (`clean_up_tokenization_spaces`).
    var cleanSpaces = true
    /// llama.cpp's default `add_bos` for this pre value when the file does not say.
    var defaultAddBOS = false

    /// The configuration for a `pre` value, or nil for values we do not implement.
    static func forPre(_ pre: String) -> PreTokenizerConfig? {
        let llama3Pattern: [PreTokenizerStep] = [.llama3(maxDigits: 3, marks: false)]
        let qwen2Pattern: [PreTokenizerStep] = [.llama3(maxDigits: 1, marks: false)]
        let starcoderPattern: [PreTokenizerStep] = [.singleNumber, .gpt2]
        switch pre {
        case "default":
            return PreTokenizerConfig(steps: [.punctuationRun, .gpt2, .numberRun, .asciiDigitTriples])
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            return PreTokenizerConfig(steps: llama3Pattern, ignoreMerges: true, defaultAddBOS: true)
        case "dbrx", "smaug-bpe":
            return PreTokenizerConfig(steps: llama3Pattern)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
             "modern-bert", "mpt", "olmo", "jais", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe":
            return PreTokenizerConfig(steps: [.gpt2])
        case "trillion", "granite-docling":
            return PreTokenizerConfig(steps: [.gpt2], cleanSpaces: false)
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2":
            return PreTokenizerConfig(steps: qwen2Pattern, cleanSpaces: false)
        case "stablelm2", "megrez":
            return PreTokenizerConfig(steps: qwen2Pattern)
        case "qwen35":
            return PreTokenizerConfig(steps: [.llama3(maxDigits: 1, marks: true)], cleanSpaces: false)
        case "smollm", "command-r":
            return PreTokenizerConfig(steps: starcoderPattern, cleanSpaces: false)
        case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
            return PreTokenizerConfig(steps: starcoderPattern)
        case "gemma4", "granite-embed-multi-311m":
            return PreTokenizerConfig(steps: [.newlineRuns], byteEncode: false, escapeWhitespace: true,
                                      defaultAddBOS: true)
        default:
            return nil
        }
    }
}

enum PreTokenizer {
    /// Splits `cps` into words: returns word lengths in code points, summing to `cps.count`.
    static func split(_ cps: [UInt32], steps: [PreTokenizerStep]) -> [Int] {
        var lengths = cps.isEmpty ? [] : [cps.count]
        for step in steps {
            var next: [Int] = []
            next.reserveCapacity(lengths.count * 2)
            var start = 0
            for len in lengths {
                apply(step, cps, start, start + len, &next)
                start += len
            }
            lengths = next
        }
        return lengths
    }

    private static func apply(_ step: PreTokenizerStep, _ cps: [UInt32], _ lo: Int, _ hi: Int, _ out: inout [Int]) {
        switch step {
        case .gpt2: gpt2(cps, lo, hi, &out)
        case .llama3(let maxDigits, let marks): llama3(cps, lo, hi, maxDigits: maxDigits, marks: marks, &out)
        case .punctuationRun: isolateRuns(cps, lo, hi, &out, single: false) { cp in
            let f = CodepointFlags.of(cp)
            if f.isWhitespace { return false }
            if f.category == .punctuation { return true }
            switch cp { case 0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x7E, 0x7C: return true; default: return false }
        }
        case .numberRun: isolateRuns(cps, lo, hi, &out, single: false) { cp in
            let f = CodepointFlags.of(cp)
            return !f.isWhitespace && f.category == .number
        }
        case .singleNumber: isolateRuns(cps, lo, hi, &out, single: true) { cp in
            let f = CodepointFlags.of(cp)
            return !f.isWhitespace && f.category == .number
        }
        case .asciiDigitTriples: asciiDigitTriples(cps, lo, hi, &out)
        case .newlineRuns:
            var pos = lo
            while pos < hi {
                let isNL = cps[pos] == 0x0A
                let runStart = pos
                while pos < hi && (cps[pos] == 0x0A) == isNL { pos += 1 }
                out.append(pos - runStart)
            }
        }
    }

    /// Matches of a one-character class (each character alone, or maximal runs) and the gaps
    /// between them, as std::regex_iterator finds them.
    private static func isolateRuns(_ cps: [UInt32], _ lo: Int, _ hi: Int, _ out: inout [Int], single: Bool,
                                    _ member: (UInt32) -> Bool) {
        var pos = lo
        var gapStart = lo
        while pos < hi {
            if member(cps[pos]) {
                if pos > gapStart { out.append(pos - gapStart) }
                let s = pos
                pos += 1
                if !single { while pos < hi && member(cps[pos]) { pos += 1 } }
                out.append(pos - s)
                gapStart = pos
            } else {
                pos += 1
            }
        }
        if hi > gapStart { out.append(hi - gapStart) }
    }

    private static func asciiDigitTriples(_ cps: [UInt32], _ lo: Int, _ hi: Int, _ out: inout [Int]) {
        @inline(__always) func digit(_ i: Int) -> Bool { i < hi && cps[i] >= 0x30 && cps[i] <= 0x39 }
        var pos = lo
        var gapStart = lo
        while pos < hi {
            if digit(pos) && digit(pos + 1) && digit(pos + 2) {
                if pos > gapStart { out.append(pos - gapStart) }
                out.append(3)
                pos += 3
                gapStart = pos
            } else {
                pos += 1
            }
        }
        if hi > gapStart { out.append(hi - gapStart) }
    }

    /// ASCII-only case folding is enough for the contraction letters: the only code points whose
    /// simple lowercase mapping is one of s, t, m, d, r, v, e, l are their ASCII capitals.
    @inline(__always)
    private static func lowerASCII(_ cp: UInt32) -> UInt32 { (cp >= 0x41 && cp <= 0x5A) ? cp + 0x20 : cp }

    /// Length (2 or 3) of a contraction `'s 't 'm 'd 're 've 'll` at `pos`, or 0.
    @inline(__always)
    private static func contraction(_ cps: [UInt32], _ pos: Int, _ hi: Int, caseInsensitive: Bool) -> Int {
        guard cps[pos] == 0x27, pos + 1 < hi else { return 0 }
        let n1 = caseInsensitive ? lowerASCII(cps[pos + 1]) : cps[pos + 1]
        switch n1 {
        case 0x73, 0x74, 0x6D, 0x64: return 2 // s t m d
        default: break
        }
        guard pos + 2 < hi else { return 0 }
        let n2 = caseInsensitive ? lowerASCII(cps[pos + 2]) : cps[pos + 2]
        if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) { return 3 }
        return 0
    }

    /// GPT-2's pattern (llama.cpp `unicode_regex_split_custom_gpt2`).
    private static func gpt2(_ cps: [UInt32], _ lo: Int, _ hi: Int, _ out: inout [Int]) {
        // Flags past the piece's end are empty: no class matches there, and `(?!\S)` sees the end.
        @inline(__always) func flags(_ i: Int) -> CodepointFlags { i < hi ? CodepointFlags.of(cps[i]) : [] }
        var prevEnd = lo
        @inline(__always) func emit(_ end: Int) { if end > prevEnd { out.append(end - prevEnd) }; prevEnd = end }
        var pos = lo
        while pos < hi {
            let cp = cps[pos]
            let c = contraction(cps, pos, hi, caseInsensitive: false)
            if c > 0 { pos += c; emit(pos); continue }
            var f2 = cp == 0x20 ? flags(pos + 1) : flags(pos)
            if f2.isLetter {
                if cp == 0x20 { pos += 1 }
                while f2.isLetter { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            if f2.isNumber {
                if cp == 0x20 { pos += 1 }
                while f2.isNumber { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            if !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.rawValue != 0 {
                if cp == 0x20 { pos += 1 }
                while !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.rawValue != 0 { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            var nws = 0
            while flags(pos + nws).isWhitespace { nws += 1 }
            if nws > 1 && pos + nws < hi { pos += nws - 1; emit(pos); continue } // \s+(?!\S)
            if nws > 0 { pos += nws; emit(pos); continue }
            pos += 1; emit(pos)
        }
    }

    /// The Llama 3 / Qwen2 / Qwen3.5 pattern (llama.cpp `unicode_regex_split_custom_llama3`,
    /// `_qwen2`, `_qwen35`).
    private static func llama3(_ cps: [UInt32], _ lo: Int, _ hi: Int, maxDigits: Int, marks: Bool, _ out: inout [Int]) {
        @inline(__always) func flags(_ i: Int) -> CodepointFlags { i < hi ? CodepointFlags.of(cps[i]) : [] }
        @inline(__always) func cpAt(_ i: Int) -> UInt32 { i < hi ? cps[i] : 0xFFFF_FFFF }
        @inline(__always) func wordish(_ f: CodepointFlags) -> Bool { f.isLetter || (marks && f.isMark) }
        var prevEnd = lo
        @inline(__always) func emit(_ end: Int) { if end > prevEnd { out.append(end - prevEnd) }; prevEnd = end }
        var pos = lo
        while pos < hi {
            let cp = cps[pos]
            let f = flags(pos)
            let c = contraction(cps, pos, hi, caseInsensitive: true)
            if c > 0 { pos += c; emit(pos); continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+   (Qwen3.5: [\p{L}\p{M}]+)
            if !(cp == 0x0D || cp == 0x0A || f.isNumber) {
                if wordish(f) || wordish(flags(pos + 1)) {
                    pos += 1
                    while wordish(flags(pos)) { pos += 1 }
                    emit(pos); continue
                }
            }
            // \p{N}{1,maxDigits}
            if f.isNumber {
                if maxDigits == 1 {
                    pos += 1; emit(pos); continue
                }
                var ini = pos
                while flags(pos).isNumber {
                    pos += 1
                    if pos - ini >= maxDigits { emit(pos); ini = pos }
                }
                emit(pos); continue
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*   (Qwen3.5 also excludes \p{M})
            var f2 = cp == 0x20 ? flags(pos + 1) : f
            if !(f2.isWhitespace || wordish(f2) || f2.isLetter || f2.isNumber) && f.rawValue != 0 {
                if cp == 0x20 { pos += 1 }
                while !(f2.isWhitespace || wordish(f2) || f2.isLetter || f2.isNumber) && f2.rawValue != 0 {
                    pos += 1; f2 = flags(pos)
                }
                var c2 = cpAt(pos)
                while c2 == 0x0D || c2 == 0x0A { pos += 1; c2 = cpAt(pos) }
                emit(pos); continue
            }
            var nws = 0
            var lastNL = 0
            while flags(pos + nws).isWhitespace {
                let c2 = cpAt(pos + nws)
                if c2 == 0x0D || c2 == 0x0A { lastNL = pos + nws + 1 }
                nws += 1
            }
            if lastNL > 0 { pos = lastNL; emit(pos); continue }             // \s*[\r\n]+
            if nws > 1 && pos + nws < hi { pos += nws - 1; emit(pos); continue } // \s+(?!\S)
            if nws > 0 { pos += nws; emit(pos); continue }                  // \s+
            pos += 1; emit(pos)
        }
    }
}
