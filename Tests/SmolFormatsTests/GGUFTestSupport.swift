import Foundation
import SmolFormats
import SmolTensor
import SmolTestSupport

/// Reading the golden JSON written by tools/golden_gguf.py (gguf-py's view of each file).
enum GGUFGolden {
    static let dir = Fixtures.root.appendingPathComponent("gguf")

    static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SmolError(.malformed, file: name, "golden JSON is not an object")
        }
        return obj
    }

    static func int(_ any: Any?) -> Int? {
        if let s = any as? String { return Int(s) }
        if let n = any as? NSNumber { return n.intValue }
        return nil
    }

    static func hexBytes(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// Nil when `value` equals the golden JSON value `j`, else what differs. Arrays in the layout
    /// JSON carry only their first and last elements ("first"/"last"); in the all-types JSON all of
    /// them ("values").
    static func mismatch(_ value: GGUFValue?, _ j: [String: Any], path: String) -> String? {
        guard let value else { return "\(path): missing" }
        guard let type = j["type"] as? String else { return "\(path): golden has no type" }
        guard value.type.name == type else { return "\(path): type \(value.type.name), expected \(type)" }
        switch value {
        case .uint8(let v): return compare(String(v), j["value"] as? String, path)
        case .int8(let v): return compare(String(v), j["value"] as? String, path)
        case .uint16(let v): return compare(String(v), j["value"] as? String, path)
        case .int16(let v): return compare(String(v), j["value"] as? String, path)
        case .uint32(let v): return compare(String(v), j["value"] as? String, path)
        case .int32(let v): return compare(String(v), j["value"] as? String, path)
        case .uint64(let v): return compare(String(v), j["value"] as? String, path)
        case .int64(let v): return compare(String(v), j["value"] as? String, path)
        case .float32(let v): return compare(hex(v.bitPattern, 8), j["bits"] as? String, path)
        case .float64(let v): return compare(hex(v.bitPattern, 16), j["bits"] as? String, path)
        case .bool(let v): return compare(String(v), (j["value"] as? Bool).map { String($0) }, path)
        case .string(let v): return compare(v, j["value"] as? String, path)
        case .array(let a):
            guard a.elementType.name == (j["element_type"] as? String) else {
                return "\(path): element type \(a.elementType.name), expected \(j["element_type"] ?? "?")"
            }
            guard a.count == int(j["count"]) else { return "\(path): count \(a.count), expected \(j["count"] ?? "?")" }
            var pairs: [(Int, [String: Any])] = []
            if let values = j["values"] as? [[String: Any]] {
                pairs = Array(zip(0..., values))
            } else {
                let first = j["first"] as? [[String: Any]] ?? []
                let last = j["last"] as? [[String: Any]] ?? []
                pairs = Array(zip(0..., first)) + Array(zip((a.count - last.count)..., last))
            }
            for (i, e) in pairs {
                if let m = mismatch(a[i], e, path: "\(path)[\(i)]") { return m }
            }
            return nil
        }
    }

    private static func compare(_ got: String, _ expected: String?, _ path: String) -> String? {
        got == expected ? nil : "\(path): \(got.debugDescription), expected \(expected?.debugDescription ?? "nil")"
    }

    private static func hex<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// Nil when the file's tensor list equals the golden list (names, types, ne, row-major shapes,
    /// absolute offsets, sizes; and bytes where the golden has them).
    static func tensorMismatch(_ file: GGUFFile, _ golden: [[String: Any]]) throws -> String? {
        guard file.tensors.count == golden.count else { return "tensor count \(file.tensors.count), expected \(golden.count)" }
        for (t, g) in zip(file.tensors, golden) {
            let name = g["name"] as? String
            guard t.name == name else { return "tensor \(t.name), expected \(name ?? "?")" }
            guard t.ggmlType.name == g["type"] as? String else { return "\(t.name): type \(t.ggmlType.name), expected \(g["type"] ?? "?")" }
            let ne = (g["ne"] as? [Any])?.compactMap(int) ?? []
            let shape = (g["shape"] as? [Any])?.compactMap(int) ?? []
            guard t.ne == ne, t.shape == shape, file.tensorInfos.first(where: { $0.name == t.name })?.shape == shape else {
                return "\(t.name): ne \(t.ne) shape \(t.shape), expected ne \(ne) shape \(shape)"
            }
            guard file.tensorOffset(t.name) == int(g["offset"]) else {
                return "\(t.name): offset \(file.tensorOffset(t.name) ?? -1), expected \(g["offset"] ?? "?")"
            }
            guard t.byteCount == int(g["bytes"]), try file.tensorBytes(t.name).count == t.byteCount else {
                return "\(t.name): \(t.byteCount) bytes, expected \(g["bytes"] ?? "?")"
            }
            if let hex = g["hex"] as? String, try file.tensorBytes(t.name).array != hexBytes(hex) {
                return "\(t.name): bytes differ"
            }
        }
        return nil
    }
}
