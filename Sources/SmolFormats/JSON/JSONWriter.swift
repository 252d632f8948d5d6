/// Serializes `JSONValue`s in the two styles checkpoint files use, byte for byte:
/// - `compact`: serde_json's `to_string` (the safetensors header): no whitespace, non-ASCII
///   written raw, `"` `\` and control characters escaped (`\b \f \n \r \t`, others `\u00xx`).
/// - `python(indent:sortKeys:)`: Python's `json.dumps(v, indent=2, sort_keys=True)` with the
///   default `ensure_ascii=True` (transformers' `model.safetensors.index.json`): `", "`-free item
///   separator with newlines, `": "` key separator, everything outside printable ASCII as `\uxxxx`
///   (UTF-16 surrogate pairs above U+FFFF), keys sorted by code point.
public enum JSONWriter {
    public static func compact(_ value: JSONValue) -> String {
        var out = ""
        writeCompact(value, into: &out)
        return out
    }

    public static func python(_ value: JSONValue, indent: Int = 2, sortKeys: Bool = true) -> String {
        var out = ""
        writePython(value, indent: indent, level: 0, sortKeys: sortKeys, into: &out)
        return out
    }

    private static let hexDigits = Array("0123456789abcdef")

    private static func hex4(_ v: UInt32, into out: inout String) {
        out += "\\u"
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(hexDigits[Int((v >> UInt32(shift)) & 0xF)])
        }
    }

    /// serde_json's escaping.
    static func serdeEscaped(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { hex4(u.value, into: &out) } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }

    /// Python json's escaping with ensure_ascii=True.
    static func pythonEscaped(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value >= 0x20 && u.value < 0x7f {
                    out.unicodeScalars.append(u)
                } else if u.value > 0xFFFF {
                    let v = u.value - 0x10000
                    hex4(0xD800 | (v >> 10), into: &out)
                    hex4(0xDC00 | (v & 0x3FF), into: &out)
                } else {
                    hex4(u.value, into: &out)
                }
            }
        }
        out += "\""
    }

    private static func writeCompact(_ v: JSONValue, into out: inout String) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.text
        case .string(let s): serdeEscaped(s, into: &out)
        case .array(let a):
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += "," }
                writeCompact(x, into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, m) in o.members.enumerated() {
                if i > 0 { out += "," }
                serdeEscaped(m.key, into: &out)
                out += ":"
                writeCompact(m.value, into: &out)
            }
            out += "}"
        }
    }

    /// Python orders str keys by code point, which is UTF-8 byte order.
    static func codePointLess(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    private static func writePython(_ v: JSONValue, indent: Int, level: Int, sortKeys: Bool, into out: inout String) {
        let pad = String(repeating: " ", count: indent * (level + 1))
        let closePad = String(repeating: " ", count: indent * level)
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.text
        case .string(let s): pythonEscaped(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "[\n"
            for (i, x) in a.enumerated() {
                if i > 0 { out += ",\n" }
                out += pad
                writePython(x, indent: indent, level: level + 1, sortKeys: sortKeys, into: &out)
            }
            out += "\n" + closePad + "]"
        case .object(let o):
            if o.members.isEmpty { out += "{}"; return }
            let members = sortKeys ? o.members.sorted { codePointLess($0.key, $1.key) } : o.members
            out += "{\n"
            for (i, m) in members.enumerated() {
                if i > 0 { out += ",\n" }
                out += pad
                pythonEscaped(m.key, into: &out)
                out += ": "
                writePython(m.value, indent: indent, level: level + 1, sortKeys: sortKeys, into: &out)
            }
            out += "\n" + closePad + "}"
        }
    }
}
