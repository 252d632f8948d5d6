import SmolTensor

/// A strict RFC 8259 JSON parser over bytes.
///
/// Why not Foundation's `JSONSerialization`: it silently keeps one of two duplicate keys, loses
/// member order, turns integers above 2^53 into rounded Doubles and accepts some non-standard
/// input. Checkpoint headers are untrusted input whose keys are tensor names, so this parser:
/// - requires the whole text to be valid UTF-8 (checked first, the error names the byte offset);
/// - accepts exactly the RFC grammar: no comments, trailing commas, NaN, leading zeros, single
///   quotes, raw control characters in strings or lone UTF-16 surrogates in `\u` escapes;
/// - allows whitespace (space, tab, LF, CR) around the value, as every JSON parser does;
/// - limits nesting to `maxDepth` (128, serde_json's limit) so a hostile file cannot overflow the stack;
/// - keeps numbers as text (`JSONNumber`) and members in order, and handles duplicate keys as told.
public struct JSONParser {
    public enum DuplicateKeys: Sendable {
        /// Throw, naming the key (what checkpoint readers want).
        case reject
        /// Keep every member in order; `JSONObject` lookups return the first.
        case keepAll
        /// Keep only the last member of a name, at the position of the first, as Python's `json` does.
        case keepLast
    }

    /// A syntax error at a byte offset (already including `baseOffset`).
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "offset \(offset): \(message)" }
    }

    public static let defaultMaxDepth = 128

    /// Parses `bytes` as one JSON text. Offsets in errors (and `JSONObject.Member.offset`) are
    /// `baseOffset` + the position in `bytes`, so a header parsed out of a larger file reports file offsets.
    public static func parse(_ bytes: UnsafeRawBufferPointer, baseOffset: Int = 0,
                             duplicateKeys: DuplicateKeys = .reject,
                             maxDepth: Int = defaultMaxDepth) throws(ParseError) -> JSONValue {
        if let bad = UTF8Validation.firstInvalidOffset(bytes) {
            throw ParseError(offset: baseOffset + bad, message: "not valid UTF-8")
        }
        var p = JSONParser(bytes: bytes, base: baseOffset, duplicateKeys: duplicateKeys, maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.pos < bytes.count {
            throw p.error("unexpected \(p.describe(p.pos)) after the JSON value")
        }
        return v
    }

    public static func parse(_ bytes: [UInt8], baseOffset: Int = 0, duplicateKeys: DuplicateKeys = .reject,
                             maxDepth: Int = defaultMaxDepth) throws(ParseError) -> JSONValue {
        let r: Result<JSONValue, ParseError> = bytes.withUnsafeBytes { buf in
            Result { () throws(ParseError) -> JSONValue in
                try parse(buf, baseOffset: baseOffset, duplicateKeys: duplicateKeys, maxDepth: maxDepth)
            }
        }
        return try r.get()
    }

    public static func parse(_ text: String, duplicateKeys: DuplicateKeys = .reject) throws(ParseError) -> JSONValue {
        try parse(Array(text.utf8), duplicateKeys: duplicateKeys)
    }

    /// Reads and parses a whole file; errors are `SmolError`s naming the file and byte offset.
    public static func parse(contentsOf path: String, duplicateKeys: DuplicateKeys = .reject) throws -> JSONValue {
        let file = try MappedFile(path: path)
        do {
            return try parse(file.all, duplicateKeys: duplicateKeys)
        } catch {
            throw SmolError.malformed(path, at: "offset \(error.offset)", "invalid JSON: \(error.message)")
        }
    }

    // MARK: - Implementation

    private let bytes: UnsafeRawBufferPointer
    private let base: Int
    private let duplicateKeys: DuplicateKeys
    private let maxDepth: Int
    private var pos = 0

    private init(bytes: UnsafeRawBufferPointer, base: Int, duplicateKeys: DuplicateKeys, maxDepth: Int) {
        self.bytes = bytes
        self.base = base
        self.duplicateKeys = duplicateKeys
        self.maxDepth = maxDepth
    }

    private func error(_ message: String, at offset: Int? = nil) -> ParseError {
        ParseError(offset: base + (offset ?? pos), message: message)
    }

    private func describe(_ i: Int) -> String {
        guard i < bytes.count else { return "end of input" }
        let b = bytes[i]
        if b >= 0x21 && b < 0x7f { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x\(String(b, radix: 16))"
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0a, 0x0d: pos += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(ParseError) -> JSONValue {
        guard pos < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("unexpected \(describe(pos)), expected a value")
        }
    }

    private mutating func literal(_ word: StaticString) throws(ParseError) {
        let n = word.utf8CodeUnitCount
        let start = pos
        guard pos + n <= bytes.count else { throw error("invalid literal", at: start) }
        for i in 0..<n where bytes[pos + i] != word.utf8Start[i] {
            throw error("invalid literal", at: start)
        }
        pos += n
    }

    private mutating func expect(_ c: UInt8, _ what: String) throws(ParseError) {
        guard pos < bytes.count, bytes[pos] == c else {
            throw error("unexpected \(describe(pos)), expected \(what)")
        }
        pos += 1
    }

    private mutating func parseObject(depth: Int) throws(ParseError) -> JSONValue {
        guard depth <= maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        pos += 1  // {
        var members: [JSONObject.Member] = []
        var index: [String: Int] = [:]
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object(JSONObject(members))
        }
        while true {
            skipWhitespace()
            let keyOffset = pos
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                throw error("unexpected \(describe(pos)), expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after an object key")
            skipWhitespace()
            let value = try parseValue(depth: depth)
            let member = JSONObject.Member(key: key, value: value, offset: base + keyOffset)
            if let first = index[key] {
                switch duplicateKeys {
                case .reject: throw error("duplicate key '\(key)'", at: keyOffset)
                case .keepAll: members.append(member)
                case .keepLast: members[first].value = value
                }
            } else {
                index[key] = members.count
                members.append(member)
            }
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; break }
            throw error("unexpected \(describe(pos)), expected ',' or '}'")
        }
        return .object(JSONObject(members))
    }

    private mutating func parseArray(depth: Int) throws(ParseError) -> JSONValue {
        guard depth <= maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        pos += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < bytes.count else { throw error("unexpected end of input inside an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; break }
            throw error("unexpected \(describe(pos)), expected ',' or ']'")
        }
        return .array(items)
    }

    private mutating func parseNumber() throws(ParseError) -> JSONNumber {
        let start = pos
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard isDigit(pos) else { throw error("invalid number: expected a digit", at: pos) }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) { throw error("invalid number: leading zero", at: start) }
        } else {
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard isDigit(pos) else { throw error("invalid number: expected a digit after '.'", at: pos) }
            while isDigit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard isDigit(pos) else { throw error("invalid number: expected a digit in the exponent", at: pos) }
            while isDigit(pos) { pos += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        return JSONNumber(validatedText: text)
    }

    private func hex4(_ at: Int) throws(ParseError) -> UInt32 {
        guard at + 4 <= bytes.count else { throw error("truncated \\u escape", at: at) }
        var v: UInt32 = 0
        for i in 0..<4 {
            let c = bytes[at + i]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw error("invalid hex digit in \\u escape", at: at + i)
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// Parses a string starting at the opening quote. The text is already known to be valid UTF-8.
    private mutating func parseString() throws(ParseError) -> String {
        let open = pos
        pos += 1
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count else { throw error("unterminated string", at: open) }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") { pos += 1; break }
            if b < 0x20 { throw error("unescaped control character 0x\(String(b, radix: 16)) in a string") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                pos += 1
                continue
            }
            guard pos + 1 < bytes.count else { throw error("unterminated string", at: open) }
            let e = bytes[pos + 1]
            pos += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5c)
            case UInt8(ascii: "/"): out.append(0x2f)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let escapeStart = pos - 2
                var scalar = try hex4(pos)
                pos += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                    else { throw error("lone UTF-16 surrogate in \\u escape", at: escapeStart) }
                    let low = try hex4(pos + 2)
                    guard low >= 0xDC00 && low < 0xE000 else {
                        throw error("lone UTF-16 surrogate in \\u escape", at: escapeStart)
                    }
                    pos += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw error("lone UTF-16 surrogate in \\u escape", at: escapeStart)
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
            default:
                throw error("invalid escape '\\\(describe(pos - 1))' in a string", at: pos - 2)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// UTF-8 well-formedness as the Unicode standard defines it (Table 3-7): no overlong forms, no
/// surrogates, nothing above U+10FFFF, no truncated sequences.
public enum UTF8Validation {
    /// The offset of the first byte that starts an ill-formed sequence, or nil when all is valid.
    public static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            let len: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range of the second byte
            switch b0 {
            case 0xC2...0xDF: len = 2
            case 0xE0: len = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: len = 3
            case 0xED: len = 3; hi = 0x9F
            case 0xF0: len = 4; lo = 0x90
            case 0xF1...0xF3: len = 4
            case 0xF4: len = 4; hi = 0x8F
            default: return i
            }
            guard i + len <= n else { return i }
            let b1 = bytes[i + 1]
            guard b1 >= lo && b1 <= hi else { return i }
            for k in 2..<max(2, len) where bytes[i + k] & 0xC0 != 0x80 { return i }
            i += len
        }
        return nil
    }
}
