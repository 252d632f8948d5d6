import SmolTensor

/// A JSON value that keeps what Foundation's `JSONSerialization` throws away: the order of object
/// members, duplicate keys (so a reader can reject them), and the exact text of numbers (so
/// `1`, `1.0` and `1e0` stay distinguishable and a 64-bit integer is never rounded through Double).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var numberValue: JSONNumber? { if case .number(let n) = self { return n } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// The value as an `Int` when it is written as an integer (no fraction, no exponent) that fits.
    public var intValue: Int? { numberValue?.intValue }
    /// Any number as a Double (rounded as the platform's strtod rounds).
    public var doubleValue: Double? { numberValue?.doubleValue }

    /// For error messages: "a string", "an array", …
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number(let n): return n.isInteger ? "an integer" : "a non-integer number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public init(_ s: String) { self = .string(s) }
    public init(_ i: Int) { self = .number(JSONNumber(i)) }
}

/// A JSON number kept as its source text (validated against RFC 8259's grammar).
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    public let text: String

    /// `text` must already match the JSON number grammar (the parser guarantees it).
    init(validatedText: String) { text = validatedText }

    public init(_ i: Int) { text = String(i) }

    /// True when written without fraction or exponent.
    public var isInteger: Bool { !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) }

    /// The exact integer, or nil when not written as an integer or out of `Int`'s range.
    public var intValue: Int? { isInteger ? Int(text) : nil }

    public var doubleValue: Double { Double(text) ?? .nan }

    public var description: String { text }
}

/// A JSON object with its members in source order. Lookups return the first member of a name;
/// the parser can be told to reject duplicates (`JSONParser.DuplicateKeys.reject`).
public struct JSONObject: Sendable, Hashable {
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: JSONValue
        /// Byte offset of the key's opening quote in the parsed text (plus the parser's base
        /// offset), for error messages; -1 for members built in code.
        public var offset: Int

        /// Equality and hashing ignore `offset`: where a member was parsed is not part of its value.
        public static func == (a: Member, b: Member) -> Bool { a.key == b.key && a.value == b.value }
        public func hash(into h: inout Hasher) {
            h.combine(key)
            h.combine(value)
        }

        public init(key: String, value: JSONValue, offset: Int = -1) {
            self.key = key
            self.value = value
            self.offset = offset
        }
    }

    public var members: [Member]

    public init(_ members: [Member] = []) { self.members = members }

    public init(_ pairs: [(String, JSONValue)]) {
        members = pairs.map { Member(key: $0.0, value: $0.1) }
    }

    public var keys: [String] { members.map(\.key) }
    public var count: Int { members.count }

    public subscript(key: String) -> JSONValue? {
        members.first { $0.key == key }?.value
    }

    public mutating func append(_ key: String, _ value: JSONValue) {
        members.append(Member(key: key, value: value))
    }
}
