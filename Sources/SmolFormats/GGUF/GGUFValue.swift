import SmolTensor

/// The type tag of a GGUF metadata value, as stored in the file (a little-endian UInt32).
public enum GGUFValueType: UInt32, CaseIterable, Sendable, Hashable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5
    case float32 = 6, bool = 7, string = 8, array = 9
    case uint64 = 10, int64 = 11, float64 = 12

    /// The spec's (and gguf-py's) name: "UINT8", "FLOAT32", "ARRAY", …
    public var name: String {
        switch self {
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .uint32: return "UINT32"
        case .int32: return "INT32"
        case .float32: return "FLOAT32"
        case .bool: return "BOOL"
        case .string: return "STRING"
        case .array: return "ARRAY"
        case .uint64: return "UINT64"
        case .int64: return "INT64"
        case .float64: return "FLOAT64"
        }
    }

    /// Bytes of one value of a fixed-size type; nil for STRING and ARRAY.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The fewest bytes one value of this type can take in a file: a string is at least its 8-byte
    /// length, an array at least its 4-byte element type and 8-byte count. Used to reject counts
    /// that cannot fit in the rest of the file before anything is allocated.
    var minimumEncodedSize: Int {
        switch self {
        case .string: return 8
        case .array: return 12
        default: return fixedSize!
        }
    }
}

/// One GGUF metadata value.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), array(GGUFArray)
    case uint64(UInt64), int64(Int64), float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        }
    }

    /// Any integer type as Int; nil for other types and for a UINT64 above Int.max.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// FLOAT32 or FLOAT64 as Double (integers too, converted); nil for other types.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: GGUFArray? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// A GGUF metadata array. GGUF arrays are homogeneous, so each is stored as one typed Swift array
/// (a 262,144-entry vocabulary is one `[String]`, its scores one `[Float]`), not as boxed values.
/// Arrays of arrays hold one `GGUFArray` per element, each with its own element type.
public enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16]), uint32([UInt32]), int32([Int32])
    case float32([Float]), bool([Bool]), string([String]), array([GGUFArray])
    case uint64([UInt64]), int64([Int64]), float64([Double])

    /// The element type written in the file.
    public var elementType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        }
    }

    public var count: Int {
        switch self {
        case .uint8(let a): return a.count
        case .int8(let a): return a.count
        case .uint16(let a): return a.count
        case .int16(let a): return a.count
        case .uint32(let a): return a.count
        case .int32(let a): return a.count
        case .float32(let a): return a.count
        case .bool(let a): return a.count
        case .string(let a): return a.count
        case .array(let a): return a.count
        case .uint64(let a): return a.count
        case .int64(let a): return a.count
        case .float64(let a): return a.count
        }
    }

    /// Element `i` as a value (boxes it: for bulk access use the typed case or the metadata accessors).
    public subscript(i: Int) -> GGUFValue {
        switch self {
        case .uint8(let a): return .uint8(a[i])
        case .int8(let a): return .int8(a[i])
        case .uint16(let a): return .uint16(a[i])
        case .int16(let a): return .int16(a[i])
        case .uint32(let a): return .uint32(a[i])
        case .int32(let a): return .int32(a[i])
        case .float32(let a): return .float32(a[i])
        case .bool(let a): return .bool(a[i])
        case .string(let a): return .string(a[i])
        case .array(let a): return .array(a[i])
        case .uint64(let a): return .uint64(a[i])
        case .int64(let a): return .int64(a[i])
        case .float64(let a): return .float64(a[i])
        }
    }

    /// Integer elements as Int; nil for non-integer element types or a UINT64 above Int.max.
    public var intValues: [Int]? {
        switch self {
        case .uint8(let a): return a.map { Int($0) }
        case .int8(let a): return a.map { Int($0) }
        case .uint16(let a): return a.map { Int($0) }
        case .int16(let a): return a.map { Int($0) }
        case .uint32(let a): return a.map { Int($0) }
        case .int32(let a): return a.map { Int($0) }
        case .int64(let a): return a.map { Int($0) }
        case .uint64(let a):
            var r: [Int] = []
            r.reserveCapacity(a.count)
            for v in a {
                guard let i = Int(exactly: v) else { return nil }
                r.append(i)
            }
            return r
        default: return nil
        }
    }

    /// FLOAT32 elements as they are, FLOAT64 rounded to Float; nil for other element types.
    public var floatValues: [Float]? {
        switch self {
        case .float32(let a): return a
        case .float64(let a): return a.map { Float($0) }
        default: return nil
        }
    }

    public var stringValues: [String]? {
        if case .string(let a) = self { return a }
        return nil
    }
}

/// The key–value metadata of a GGUF file, in file order (a writer writes it back in this order,
/// which is what makes read → write byte-identical).
///
/// The typed accessors return nil when the key is missing or holds another type, so callers can
/// write `meta.int("gemma3.block_count") ?? default` or turn nil into their own error.
public struct GGUFMetadata: Sendable, Equatable, Sequence {
    /// Keys in order.
    public private(set) var keys: [String] = []
    private var values: [String: GGUFValue] = [:]

    public init() {}

    /// Entries in order; a repeated key keeps its first position and its last value.
    public init(_ entries: [(String, GGUFValue)]) {
        for (k, v) in entries { self[k] = v }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public func contains(_ key: String) -> Bool { values[key] != nil }

    /// Reads a value; setting one replaces it in place, or appends a new key at the end; setting nil
    /// removes the key.
    public subscript(key: String) -> GGUFValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Key–value pairs in order.
    public func makeIterator() -> AnyIterator<(key: String, value: GGUFValue)> {
        var i = 0
        return AnyIterator {
            guard i < keys.count else { return nil }
            defer { i += 1 }
            return (keys[i], values[keys[i]]!)
        }
    }

    /// A STRING value.
    public func string(_ key: String) -> String? { values[key]?.stringValue }

    /// Any integer type (UINT8 … INT64) as Int; nil if missing, not an integer, or a UINT64 above Int.max.
    public func int(_ key: String) -> Int? { values[key]?.intValue }

    /// FLOAT32 (exact) or FLOAT64 (rounded) as Float; integer values are converted too.
    public func float(_ key: String) -> Float? { values[key]?.doubleValue.map { Float($0) } }

    /// FLOAT32 or FLOAT64 (exact) as Double; integer values are converted too.
    public func double(_ key: String) -> Double? { values[key]?.doubleValue }

    /// A BOOL value.
    public func bool(_ key: String) -> Bool? { values[key]?.boolValue }

    /// An ARRAY value as it is stored.
    public func array(_ key: String) -> GGUFArray? { values[key]?.arrayValue }

    /// An ARRAY of STRING.
    public func stringArray(_ key: String) -> [String]? { array(key)?.stringValues }

    /// An ARRAY of any integer type, as Int.
    public func intArray(_ key: String) -> [Int]? { array(key)?.intValues }

    /// An ARRAY of FLOAT32 (or FLOAT64, rounded), as Float.
    public func floatArray(_ key: String) -> [Float]? { array(key)?.floatValues }
}
