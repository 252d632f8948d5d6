import SmolFormats
import SmolTensor

// Small conveniences over SmolFormats' order- and text-preserving JSON value, for config.json.
// Internal so they cannot clash with API SmolFormats may add.
extension JSONValue {
    /// An integer, also when written as an integral float (`4096.0`), as Python's `int()` of a
    /// config value would accept.
    var looseIntValue: Int? {
        if let i = intValue { return i }
        guard let d = doubleValue, d.rounded() == d, abs(d) < 9.0e18 else { return nil }
        return Int(d)
    }

    /// The compact text, for error messages.
    var compactText: String { JSONWriter.compact(self) }

    static func object(_ pairs: [(String, JSONValue)]) -> JSONValue { .object(JSONObject(pairs)) }

    /// Parses text known at compile time (class defaults).
    static func literal(_ text: String) -> JSONValue {
        do { return try JSONParser.parse(text) } catch { preconditionFailure("bad JSON literal: \(error)") }
    }
}
