// safetensors file layout (https://github.com/huggingface/safetensors, crate `safetensors` 0.8):
//
//   offset 0        u64 little-endian  N = header length in bytes (≤ 100_000_000 here, as in the crate)
//   offset 8        N bytes            header: UTF-8 JSON object, usually padded with trailing spaces
//                                      so that 8 + N is a multiple of 8
//   offset 8 + N    data section       the tensors' bytes, little-endian, row-major, no padding
//
//   header = {
//     "__metadata__": {"format": "pt", ...},        optional; string → string only
//     "<tensor name>": {
//       "dtype": "F32",                             BOOL U8 I8 U16 I16 U32 I32 U64 I64 F16 BF16 F32 F64
//                                                   F8_E4M3 F8_E5M2 (the crate also knows F4, F6_E2M3,
//                                                   F6_E3M2, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, C64)
//       "shape": [d0, d1, ...],                     row-major, [] for a scalar, dims ≥ 0
//       "data_offsets": [begin, end]                relative to the data section start, end exclusive
//     }, ...
//   }
//
// Validation follows the crate's `SafeTensors::read_metadata` + `Metadata::validate`, so a file
// this reader accepts is one Python `safetensors` accepts, and vice versa, with two deliberate
// differences: duplicate tensor names (serde silently keeps one) are rejected, and dtypes the
// crate knows but smolconv cannot compute are refused with an `.unsupported` error. The checks:
// - the file has at least 8 bytes; N ≤ 100_000_000; 8 + N ≤ file size;
// - the header is valid UTF-8 and one well-formed JSON object (whitespace around it allowed);
// - every entry other than `__metadata__` is an object with `dtype` (a string naming a known dtype),
//   `shape` (array of non-negative integers) and `data_offsets` (array of exactly two non-negative
//   integers); other members of an entry are ignored, as serde ignores unknown fields;
// - sorted by (begin, end), the tensors tile the data section exactly: the first begins at 0, each
//   begins where the previous ends (no gap, no overlap), begin ≤ end, and the last ends at the end
//   of the file (the crate's "incomplete metadata, file not fully covered");
// - end − begin = product(shape) × dtype size, computed with overflow checks.
import SmolTensor

/// A memory-mapped `.safetensors` file. Tensor bytes are views into the map: nothing is copied.
public final class SafetensorsFile: TensorSource {
    /// The crate's `MAX_HEADER_SIZE`.
    public static let maxHeaderSize = 100_000_000

    public let path: String
    public let file: MappedFile
    /// N: the header's length in bytes as the file states it (including padding).
    public let headerSize: Int
    /// Absolute file offset of the data section (8 + N).
    public var dataSectionOffset: Int { 8 + headerSize }
    /// `__metadata__` in file order; nil when the header has none (or null).
    public let metadataEntries: [(key: String, value: String)]?
    /// `__metadata__` as a dictionary.
    public let metadata: [String: String]
    /// In data-offset order.
    public let tensorInfos: [TensorInfo]

    private struct Entry: Sendable {
        var info: TensorInfo
        var begin: Int   // relative to the data section
        var end: Int
    }
    private let entries: [String: Entry]

    /// Tensor names in data-offset order.
    public var names: [String] { tensorInfos.map(\.name) }

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        guard file.size >= 8 else {
            throw SmolError.malformed(path, at: "offset 0",
                                      "file is \(file.size) bytes, shorter than the 8-byte header length")
        }
        var reader = ByteReader(file.all, file: path)
        let n64 = try reader.read(UInt64.self, "header length")
        guard n64 <= UInt64(Self.maxHeaderSize) else {
            throw SmolError.malformed(path, at: "offset 0",
                                      "header length \(n64) exceeds the \(Self.maxHeaderSize)-byte limit (not a safetensors file?)")
        }
        let n = Int(n64)
        guard 8 + n <= file.size else {
            throw SmolError.malformed(path, at: "offset 0",
                                      "header length \(n) extends past the end of the file (\(file.size) bytes; truncated file?)")
        }
        headerSize = n
        let headerBytes = try file.bytes(at: 8, count: n)
        let json: JSONValue
        do {
            // Duplicates are reported below, with a tensor-specific message.
            json = try JSONParser.parse(headerBytes, baseOffset: 8, duplicateKeys: .keepAll)
        } catch {
            if error.message == "not valid UTF-8" {
                throw SmolError.malformed(path, at: "offset \(error.offset)", "header is not valid UTF-8")
            }
            throw SmolError.malformed(path, at: "offset \(error.offset)", "header is not valid JSON: \(error.message)")
        }
        guard let root = json.objectValue else {
            throw SmolError.malformed(path, at: "header", "header is not a JSON object (found \(json.kindName))")
        }

        let dataSize = file.size - 8 - n
        var meta: [(key: String, value: String)]? = nil
        var seen = Set<String>()
        var list: [Entry] = []
        for member in root.members {
            let name = member.key
            let at = "tensor '\(name)'"
            if !seen.insert(name).inserted {
                if name == "__metadata__" {
                    throw SmolError.malformed(path, at: "offset \(member.offset)", "duplicate '__metadata__' in the header")
                }
                throw SmolError.malformed(path, at: "offset \(member.offset)", "duplicate tensor name '\(name)' in the header")
            }
            if name == "__metadata__" {
                if member.value.isNull { continue }
                guard let obj = member.value.objectValue else {
                    throw SmolError.malformed(path, at: "__metadata__",
                                              "'__metadata__' must be an object mapping strings to strings, found \(member.value.kindName)")
                }
                var metaSeen = Set<String>()
                meta = []
                for m in obj.members {
                    guard let s = m.value.stringValue else {
                        throw SmolError.malformed(path, at: "__metadata__ key '\(m.key)'",
                                                  "'__metadata__' values must be strings, found \(m.value.kindName)")
                    }
                    guard metaSeen.insert(m.key).inserted else {
                        throw SmolError.malformed(path, at: "__metadata__ key '\(m.key)'", "duplicate key in '__metadata__'")
                    }
                    meta?.append((m.key, s))
                }
                continue
            }
            guard let obj = member.value.objectValue else {
                throw SmolError.malformed(path, at: at, "entry must be an object with dtype, shape and data_offsets, found \(member.value.kindName)")
            }
            list.append(try Self.parseEntry(obj, name: name, file: path))
        }

        // The tensors must tile the data section exactly, in (begin, end) order.
        list.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        var previous: String?
        for e in list {
            let at = "tensor '\(e.info.name)'"
            guard e.end <= dataSize else {
                throw SmolError.malformed(path, at: at,
                                          "data_offsets [\(e.begin), \(e.end)] lie outside the data section (\(dataSize) bytes; truncated file?)")
            }
            if e.begin < cursor {
                throw SmolError.malformed(path, at: at,
                                          "data_offsets [\(e.begin), \(e.end)] overlap the previous tensor '\(previous ?? "")' (ends at \(cursor))")
            }
            if e.begin > cursor {
                throw SmolError.malformed(path, at: at,
                                          "gap in the data section: tensor begins at \(e.begin) but the previous one ends at \(cursor)")
            }
            cursor = e.end
            previous = e.info.name
        }
        guard cursor == dataSize else {
            throw SmolError.malformed(path, at: "offset \(8 + n + cursor)",
                                      "data section has \(dataSize) bytes but the tensors cover only \(cursor) (trailing bytes not covered by any tensor)")
        }

        metadataEntries = meta
        metadata = Dictionary((meta ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        tensorInfos = list.map(\.info)
        entries = Dictionary(list.map { ($0.info.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Safetensors dtype names the crate defines but smolconv cannot represent.
    public static let knownUnsupportedDTypes: Set<String> = [
        "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64",
    ]

    private static func nonNegativeInt(_ v: JSONValue) -> Int? {
        guard let i = v.intValue, i >= 0 else { return nil }
        return i
    }

    private static func parseEntry(_ obj: JSONObject, name: String, file: String) throws -> Entry {
        let at = "tensor '\(name)'"
        func fail(_ msg: String) -> SmolError { SmolError.malformed(file, at: at, msg) }

        guard let dtypeValue = obj["dtype"] else { throw fail("missing 'dtype'") }
        guard let shapeValue = obj["shape"] else { throw fail("missing 'shape'") }
        guard let offsetsValue = obj["data_offsets"] else { throw fail("missing 'data_offsets'") }

        guard let dtypeName = dtypeValue.stringValue else {
            throw fail("'dtype' must be a string, found \(dtypeValue.kindName)")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            if knownUnsupportedDTypes.contains(dtypeName) {
                throw SmolError(.unsupported, file: file, at: at,
                                "dtype '\(dtypeName)' is valid safetensors but smolconv does not support it")
            }
            throw fail("unknown dtype '\(dtypeName)'")
        }

        guard let dims = shapeValue.arrayValue else {
            throw fail("'shape' must be an array of non-negative integers, found \(shapeValue.kindName)")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard let n = d.numberValue else {
                throw fail("'shape' must be an array of non-negative integers, found \(d.kindName) in it")
            }
            guard n.isInteger else { throw fail("dimension \(n) in 'shape' is not an integer") }
            if n.text.hasPrefix("-") { throw fail("dimension \(n) in 'shape' is negative") }
            guard let i = n.intValue else { throw fail("dimension \(n) in 'shape' is too large") }
            shape.append(i)
        }

        guard let offs = offsetsValue.arrayValue, offs.count == 2 else {
            throw fail("'data_offsets' must be an array of two non-negative integers [begin, end], found \(offsetsValue.arrayValue.map { "\($0.count) elements" } ?? offsetsValue.kindName)")
        }
        guard let begin = nonNegativeInt(offs[0]), let end = nonNegativeInt(offs[1]) else {
            throw fail("'data_offsets' must be two non-negative integers that fit in 64 bits, found [\(JSONWriter.compact(offs[0])), \(JSONWriter.compact(offs[1]))]")
        }
        guard begin <= end else {
            throw fail("data_offsets begin \(begin) is after end \(end)")
        }

        let info = TensorInfo(name: name, type: .dense(dtype), shape: shape)
        guard let elements = Checked.product(shape), let bytes = Checked.multiply(elements, dtype.size) else {
            throw fail("shape \(shape) overflows: its byte size does not fit in 64 bits")
        }
        guard bytes == end - begin else {
            throw fail("shape \(shape) of \(dtypeName) needs \(bytes) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
        }
        return Entry(info: info, begin: begin, end: end)
    }

    // MARK: - Access

    private func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else {
            throw SmolError(.invalidArgument, file: path, at: "tensor '\(name)'", "no such tensor in this file")
        }
        return e
    }

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// Absolute file offset of the tensor's first byte.
    public func dataOffset(of name: String) throws -> Int {
        try dataSectionOffset + entry(name).begin
    }

    /// The tensor's `data_offsets` as written in the header (relative to the data section).
    public func dataOffsets(of name: String) throws -> (begin: Int, end: Int) {
        let e = try entry(name)
        return (e.begin, e.end)
    }

    /// A view into the mapped file; valid as long as the returned value (which retains the map) lives.
    public func tensorBytes(_ name: String) throws -> TensorBytes {
        let e = try entry(name)
        let view = try file.bytes(at: dataSectionOffset + e.begin, count: e.end - e.begin)
        return TensorBytes(view: view, owner: file)
    }

    public func release(_ name: String) {
        guard let e = entries[name] else { return }
        file.release(offset: dataSectionOffset + e.begin, count: e.end - e.begin)
    }
}
