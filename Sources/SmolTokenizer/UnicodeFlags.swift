/// Per-code-point category flags, as llama.cpp's unicode tables define them (unicode.h,
/// gen-unicode-data.py): one category bit from the Unicode general category (Cn → undefined,
/// Cc/Cf/Co/Cs → control, L* → letter, M* → mark, N* → number, P* → punctuation, S* → symbol,
/// Z* → separator) plus the whitespace bit from PropList's White_Space list.
///
/// We take the general category from Swift's `Unicode.Scalar.Properties` instead of a copied
/// table; the two agree except for code points assigned in a Unicode version only one of them
/// knows (see formats/tokenizers.md).
struct CodepointFlags: OptionSet, Sendable {
    let rawValue: UInt16
    static let undefined = CodepointFlags(rawValue: 0x0001)
    static let number = CodepointFlags(rawValue: 0x0002)
    static let letter = CodepointFlags(rawValue: 0x0004)
    static let separator = CodepointFlags(rawValue: 0x0008)
    static let mark = CodepointFlags(rawValue: 0x0010)
    static let punctuation = CodepointFlags(rawValue: 0x0020)
    static let symbol = CodepointFlags(rawValue: 0x0040)
    static let control = CodepointFlags(rawValue: 0x0080)
    static let whitespace = CodepointFlags(rawValue: 0x0100)

    /// The category bits only (what llama.cpp calls `category_flag()`).
    var category: CodepointFlags { CodepointFlags(rawValue: rawValue & 0x00FF) }

    var isLetter: Bool { contains(.letter) }
    var isNumber: Bool { contains(.number) }
    var isMark: Bool { contains(.mark) }
    var isWhitespace: Bool { contains(.whitespace) }
    var isPunctuation: Bool { contains(.punctuation) }

    /// Flags computed from the Swift standard library's Unicode data.
    static func compute(_ cp: UInt32) -> CodepointFlags {
        if isUnassignedInLlamaTable(cp) { return .undefined }
        guard let scalar = Unicode.Scalar(cp) else {
            // Surrogate code points (only reachable from invalid input) are category Cs.
            return (0xD800...0xDFFF).contains(cp) ? .control : .undefined
        }
        var f: CodepointFlags
        switch scalar.properties.generalCategory {
        case .unassigned: f = .undefined
        case .control, .format, .privateUse, .surrogate: f = .control
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f = .letter
        case .nonspacingMark, .spacingMark, .enclosingMark: f = .mark
        case .decimalNumber, .letterNumber, .otherNumber: f = .number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: f = .punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: f = .symbol
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: f = .separator
        @unknown default: f = .undefined
        }
        if isWhiteSpace(cp) { f.insert(.whitespace) }
        return f
    }

    /// Code points assigned by the (newer) Unicode version of Swift 6.3's standard library but not by
    /// the UnicodeData.txt llama.cpp generated its table from (unicode-data.cpp): llama.cpp treats
    /// them as undefined, so we do too. Found by UnicodeFlagsTests comparing every code point with
    /// llama.cpp's table (Tests/Fixtures/tokenizer/llama-unicode-flags.json).
    static let llamaUnassigned: [ClosedRange<UInt32>] = [
        0x0088F...0x0088F, 0x00897...0x00897, 0x00C5C...0x00C5C, 0x00CDC...0x00CDC,
        0x01ACF...0x01ADD, 0x01AE0...0x01AEB, 0x01B4E...0x01B4F, 0x01B7F...0x01B7F,
        0x01C89...0x01C8A, 0x020C1...0x020C1, 0x02427...0x02429, 0x02B96...0x02B96,
        0x031E4...0x031E5, 0x0A7CB...0x0A7CF, 0x0A7D2...0x0A7D2, 0x0A7D4...0x0A7D4,
        0x0A7DA...0x0A7DC, 0x0A7F1...0x0A7F1, 0x0FBC3...0x0FBD2, 0x0FD90...0x0FD91,
        0x0FDC8...0x0FDCE, 0x105C0...0x105F3, 0x10940...0x10959, 0x10D40...0x10D65,
        0x10D69...0x10D85, 0x10D8E...0x10D8F, 0x10EC2...0x10EC7, 0x10ED0...0x10ED8,
        0x10EFA...0x10EFC, 0x11380...0x11389, 0x1138B...0x1138B, 0x1138E...0x1138E,
        0x11390...0x113B5, 0x113B7...0x113C0, 0x113C2...0x113C2, 0x113C5...0x113C5,
        0x113C7...0x113CA, 0x113CC...0x113D5, 0x113D7...0x113D8, 0x113E1...0x113E2,
        0x116D0...0x116E3, 0x11B60...0x11B67, 0x11BC0...0x11BE1, 0x11BF0...0x11BF9,
        0x11DB0...0x11DDB, 0x11DE0...0x11DE9, 0x11F5A...0x11F5A, 0x13460...0x143FA,
        0x16100...0x16139, 0x16D40...0x16D79, 0x16EA0...0x16EB8, 0x16EBB...0x16ED3,
        0x16FF2...0x16FF6, 0x187F8...0x187FF, 0x18CFF...0x18CFF, 0x18D09...0x18D1E,
        0x18D80...0x18DF2, 0x1CC00...0x1CCFC, 0x1CD00...0x1CEB3, 0x1CEBA...0x1CED0,
        0x1CEE0...0x1CEF0, 0x1E5D0...0x1E5FA, 0x1E5FF...0x1E5FF, 0x1E6C0...0x1E6DE,
        0x1E6E0...0x1E6F5, 0x1E6FE...0x1E6FF, 0x1F6D8...0x1F6D8, 0x1F777...0x1F77A,
        0x1F8B2...0x1F8BB, 0x1F8C0...0x1F8C1, 0x1F8D0...0x1F8D8, 0x1FA54...0x1FA57,
        0x1FA89...0x1FA8A, 0x1FA8E...0x1FA8F, 0x1FABE...0x1FABE, 0x1FAC6...0x1FAC6,
        0x1FAC8...0x1FAC8, 0x1FACD...0x1FACD, 0x1FADC...0x1FADC, 0x1FADF...0x1FADF,
        0x1FAE9...0x1FAEA, 0x1FAEF...0x1FAEF, 0x1FBCB...0x1FBEF, 0x1FBFA...0x1FBFA,
        0x2B73A...0x2B73F, 0x2CEA2...0x2CEAD, 0x323B0...0x33479
    ]

    static func isUnassignedInLlamaTable(_ cp: UInt32) -> Bool {
        // Binary search over the sorted, disjoint ranges.
        var lo = 0, hi = llamaUnassigned.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let r = llamaUnassigned[mid]
            if cp < r.lowerBound { hi = mid } else if cp > r.upperBound { lo = mid + 1 } else { return true }
        }
        return false
    }

    /// The White_Space property list llama.cpp uses (gen-unicode-data.py: PropList White_Space).
    static func isWhiteSpace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// Flags for the Basic Multilingual Plane, computed once (65,536 lookups, a few ms) because
    /// the pre-tokenizers ask for them several times per code point.
    private static let bmp: [UInt16] = (0..<0x10000).map { compute(UInt32($0)).rawValue }

    @inline(__always)
    static func of(_ cp: UInt32) -> CodepointFlags {
        if cp < 0x10000 { return CodepointFlags(rawValue: bmp[Int(cp)]) }
        if cp > 0x10FFFF { return .undefined }
        return compute(cp)
    }
}

/// UTF-8 helpers working on bytes, as llama.cpp does (it never sees Swift's grapheme clusters).
enum UTF8Bytes {
    /// Length of the UTF-8 sequence a lead byte announces (llama.cpp `unicode_len_utf8`): 1 for
    /// ASCII and stray continuation bytes, 2, 3 or 4 otherwise.
    @inline(__always)
    static func sequenceLength(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// Code points of `bytes`; an invalid sequence becomes U+FFFD for its first byte and decoding
    /// resumes at the next byte (llama.cpp `unicode_cpts_from_utf8`).
    static func codepoints(_ bytes: UnsafeBufferPointer<UInt8>) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { out.append(UInt32(b0)); i += 1; continue }
            var len = 0
            var cp: UInt32 = 0
            if b0 & 0xE0 == 0xC0 { len = 2; cp = UInt32(b0 & 0x1F) }
            else if b0 & 0xF0 == 0xE0 { len = 3; cp = UInt32(b0 & 0x0F) }
            else if b0 & 0xF8 == 0xF0 { len = 4; cp = UInt32(b0 & 0x07) }
            var ok = len > 0 && i + len <= n
            if ok {
                for k in 1..<len {
                    let b = bytes[i + k]
                    if b & 0xC0 != 0x80 { ok = false; break }
                    cp = (cp << 6) | UInt32(b & 0x3F)
                }
            }
            if ok { out.append(cp); i += len } else { out.append(0xFFFD); i += 1 }
        }
        return out
    }

    @inline(__always)
    static func append(_ cp: UInt32, to out: inout [UInt8]) {
        if cp < 0x80 {
            out.append(UInt8(cp))
        } else if cp < 0x800 {
            out.append(UInt8(0xC0 | (cp >> 6)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        } else if cp < 0x10000 {
            out.append(UInt8(0xE0 | (cp >> 12)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (cp >> 18)))
            out.append(UInt8(0x80 | ((cp >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        }
    }
}

/// GPT-2's byte ↔ unicode mapping: the 188 printable bytes (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) map to
/// themselves, the other 68 to U+0100, U+0101, … in byte order. Byte-level BPE vocabularies
/// spell every token in these characters.
enum ByteLevel {
    static let byteToCodepoint: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable { map[b] = UInt32(b) } else { map[b] = 256 + n; n += 1 }
        }
        return map
    }()

    /// UTF-8 of each byte's stand-in character.
    static let byteToUTF8: [[UInt8]] = byteToCodepoint.map { cp in
        var out: [UInt8] = []
        UTF8Bytes.append(cp, to: &out)
        return out
    }

    /// Stand-in code point → byte (nil for characters outside the mapping).
    static func byte(forCodepoint cp: UInt32) -> UInt8? {
        if cp < 256 {
            let b = Int(cp)
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            return printable ? UInt8(b) : nil
        }
        return codepointToByte[cp]
    }

    private static let codepointToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, cp) in byteToCodepoint.enumerated() where cp >= 256 { d[cp] = UInt8(b) }
        return d
    }()
}
