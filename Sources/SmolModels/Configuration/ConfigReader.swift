import SmolFormats
import SmolTensor

/// Typed, error-reporting access to one JSON object of a `config.json`. A key that is missing or
/// `null` reads as "absent" (transformers treats both the same); a key of the wrong type throws a
/// `SmolError` naming the file and the key.
struct ConfigReader: Sendable {
    /// The object read (the `text_config` of a multimodal wrapper, or the whole file).
    public let object: JSONValue
    /// For error messages.
    public let file: String?
    /// Prepended to key names in error messages ("text_config.").
    public let keyPrefix: String

    public init(_ object: JSONValue, file: String?, keyPrefix: String = "") {
        self.object = object
        self.file = file
        self.keyPrefix = keyPrefix
    }

    func error(_ key: String, _ message: String) -> SmolError {
        SmolError.malformed(file, at: "key '\(keyPrefix)\(key)'", message)
    }

    /// The raw value, nil when missing or null.
    public func value(_ key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    public func int(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.looseIntValue else { throw error(key, "expected an integer, found \(v.compactText)") }
        return i
    }

    public func int(_ key: String, default d: Int) throws -> Int { try int(key) ?? d }

    /// A positive integer (sizes and counts); zero or negative throws.
    public func positiveInt(_ key: String, default d: Int?) throws -> Int {
        guard let v = try int(key) ?? d else { throw error(key, "required and missing") }
        guard v > 0 else { throw error(key, "must be positive, found \(v)") }
        return v
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue else { throw error(key, "expected a number, found \(v.compactText)") }
        return d
    }

    public func double(_ key: String, default d: Double) throws -> Double { try double(key) ?? d }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw error(key, "expected true or false, found \(v.compactText)") }
        return b
    }

    public func bool(_ key: String, default d: Bool) throws -> Bool { try bool(key) ?? d }

    public func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw error(key, "expected a string, found \(v.compactText)") }
        return s
    }

    public func intArray(_ key: String) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue else { throw error(key, "expected a list of integers, found \(v.compactText)") }
        return try a.map { e in
            guard let i = e.looseIntValue else { throw error(key, "expected a list of integers, found element \(e.compactText)") }
            return i
        }
    }

    public func stringArray(_ key: String) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue else { throw error(key, "expected a list of strings, found \(v.compactText)") }
        return try a.map { e in
            guard let s = e.stringValue else { throw error(key, "expected a list of strings, found element \(e.compactText)") }
            return s
        }
    }

    /// An int or a list of ints (`eos_token_id` may be either); empty when absent.
    public func intOrIntArray(_ key: String) throws -> [Int] {
        guard let v = value(key) else { return [] }
        if let i = v.looseIntValue { return [i] }
        return try intArray(key) ?? []
    }
}
