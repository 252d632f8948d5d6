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
