import SmolTensor

/// Conveniences for reading and editing configuration files (config.json, tokenizer_config.json).
extension JSONValue: CustomStringConvertible {
    public static func int(_ i: Int) -> JSONValue { .number(JSONNumber(i)) }
    /// A float; NaN and infinities become null (JSON has neither).
    public static func double(_ d: Double) -> JSONValue { JSONValue(double: d) }

    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// The members of an object in file order.
    public var objectPairs: [(String, JSONValue)]? { objectValue?.members.map { ($0.key, $0.value) } }

    /// A copy with `key` set (replaced in place, or appended); non-objects are returned unchanged.
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard var o = objectValue else { return self }
        if let i = o.members.firstIndex(where: { $0.key == key }) { o.members[i].value = value } else { o.append(key, value) }
        return .object(o)
    }

    /// A copy without `key`; non-objects are returned unchanged.
    public func removing(_ key: String) -> JSONValue {
        guard var o = objectValue else { return self }
        o.members.removeAll { $0.key == key }
        return .object(o)
    }

    /// Parses strict JSON, duplicate keys rejected; errors name `file` and the offset.
    public static func parse(_ bytes: [UInt8], file: String? = nil) throws -> JSONValue {
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw SmolError.malformed(file, at: "offset \(error.offset)", "invalid JSON: \(error.message)")
        }
    }

    public static func parse(_ text: String, file: String? = nil) throws -> JSONValue {
        try parse(Array(text.utf8), file: file)
    }

    /// Python's `json.dumps(v, indent=indent, sort_keys=sortKeys)` (ensure_ascii): with an indent,
    /// the layout transformers writes config.json in; without one, the single-line form with
    /// `", "` and `": "` separators.
    public func serialized(indent: Int? = 2, sortKeys: Bool = false) -> String {
        if let indent { return JSONWriter.python(self, indent: indent, sortKeys: sortKeys) }
        var out = ""
        JSONValue.writeInline(self, sortKeys: sortKeys, into: &out)
        return out
    }

    public var description: String { serialized(indent: nil) }

    private static func writeInline(_ v: JSONValue, sortKeys: Bool, into out: inout String) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.text
        case .string(let s): JSONWriter.pythonEscaped(s, into: &out)
        case .array(let a):
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += ", " }
                writeInline(x, sortKeys: sortKeys, into: &out)
            }
            out += "]"
        case .object(let o):
            let members = sortKeys ? o.members.sorted { JSONWriter.codePointLess($0.key, $1.key) } : o.members
            out += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { out += ", " }
                JSONWriter.pythonEscaped(m.key, into: &out)
                out += ": "
                writeInline(m.value, sortKeys: sortKeys, into: &out)
            }
            out += "}"
        }
    }
}
