import SmolTensor

// GGUF byte layout (versions 2 and 3; everything little-endian; see formats/gguf.md):
//
//  1. magic: the 4 bytes "GGUF" (0x47 0x47 0x55 0x46).
//  2. version: UInt32. 3 is current; 2 is the same layout (v3 only added big-endian files, which
//     keep the magic bytes but store every number byte-swapped: we detect and reject those).
//     1 used UInt32 counts and lengths and is rejected.
//  3. tensor_count: UInt64.
//  4. metadata_kv_count: UInt64.
//  5. metadata_kv_count key–value pairs, each:
//       key: string (UInt64 byte length, then that many UTF-8 bytes, no terminator);
//       value_type: UInt32 (GGUFValueType);
//       value: UINT8/INT8/BOOL 1 byte, (U)INT16 2, (U)INT32/FLOAT32 4, (U)INT64/FLOAT64 8,
//              STRING as above, ARRAY = element type UInt32, count UInt64, then count values of
//              that type without their own type tags (arrays of arrays nest this).
//  6. tensor_count tensor infos, each:
//       name: string;
//       n_dims: UInt32 (1 … 4);
//       ne: n_dims × UInt64, fastest-varying dimension first (ne[0] is the row length), i.e. the
//           reverse of the row-major shape: ne = [640, 262144] is shape [262144, 640];
//       type: UInt32 (ggml type id);
//       offset: UInt64, relative to the start of the data section, a multiple of the alignment.
//  7. zero padding up to the next multiple of `alignment` (metadata `general.alignment`, a UInt32,
//     default 32); the data section starts there.
//  8. tensor data at data start + offset; writers pad each tensor with zeros to a multiple of the
//     alignment, so offsets are the running sum of the padded sizes.

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Hashable {
    public var name: String
    public var ggmlType: GGMLType
    /// ggml order, as stored: `ne[0]` is the contiguous (row) dimension.
    public var ne: [Int]
    /// Row-major (PyTorch) order: `ne` reversed.
    public var shape: [Int] { ne.reversed() }
    /// Offset from the start of the data section, as stored.
    public var relativeOffset: Int
    /// Bytes of the encoded tensor (without padding).
    public var byteCount: Int

    public var tensorInfo: TensorInfo { TensorInfo(name: name, type: TensorType(ggml: ggmlType), shape: shape) }
}

/// A GGUF file (v2 or v3), memory-mapped. Parsing validates the whole header and every tensor's
/// extent up front, so every later access is within the file.
public final class GGUFFile: TensorSource, @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; MappedFile is read-only.
    public let path: String
    public let version: UInt32
    public let metadata: GGUFMetadata
    /// `general.alignment`, or 32 when the key is absent.
    public let alignment: Int
    /// Absolute file offset where the data section starts.
    public let dataOffset: Int
    /// Tensor entries in file order.
    public let tensors: [GGUFTensorInfo]
    /// Row-major shapes, in file order (the TensorSource view of `tensors`).
    public let tensorInfos: [TensorInfo]
    private let index: [String: Int]
    private let storage: Storage

    /// Where the tensor bytes are: the mapped file itself, or another source with the same tensors
    /// (a packed checkpoint, which decompresses them on demand).
    private enum Storage {
        case mapped(MappedFile)
        case source(TensorSource)
    }

    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// Arrays of arrays deeper than this are rejected (llama.cpp reads none; the limit keeps a
    /// hostile file from recursing the parser off the stack).
    public static let maxArrayNesting = 8

    public convenience init(path: String) throws {
        let file = try MappedFile(path: path)
        try self.init(path: path, header: file.all, fileSize: file.size, storage: .mapped(file))
    }

    /// A GGUF file whose header (everything before the tensor data) is `header` and whose tensor bytes
    /// come from `tensors` (a packed checkpoint holding the same file): the header is validated as
    /// for a mapped file, with tensor extents checked against the original `fileSize`.
    convenience init(path: String, header: UnsafeRawBufferPointer, fileSize: Int, tensors: TensorSource) throws {
        try self.init(path: path, header: header, fileSize: fileSize, storage: .source(tensors))
    }

    private init(path: String, header: UnsafeRawBufferPointer, fileSize: Int, storage: Storage) throws {
        self.storage = storage
        self.path = path
        self.fileSize = fileSize
        var p = Parser(buffer: header, path: path, size: fileSize)
        version = try p.header()
        let tensorCount = try p.count("tensor count", minimumEach: 32)  // name len 8 + n_dims 4 + ne 8 + type 4 + offset 8
        let kvCount = try p.count("metadata key-value count", minimumEach: 13)  // key len 8 + type 4 + 1 byte
        var meta = GGUFMetadata()
        for _ in 0..<kvCount {
            let at = p.r.offset
            let key = try p.string { "metadata key" }
            guard !meta.contains(key) else {
                throw p.error("metadata key '\(key)' (offset \(at))", "duplicate metadata key")
            }
            meta[key] = try p.value(key: key)
        }
        metadata = meta

        var alignment = GGUFFile.defaultAlignment
        if let a = meta["general.alignment"] {
            guard case .uint32(let v) = a else {
                throw p.error("metadata key 'general.alignment'", "must be UINT32, found \(a.type.name)")
            }
            guard v != 0, v & (v - 1) == 0 else {
                throw p.error("metadata key 'general.alignment'", "alignment \(v) is not a non-zero power of two")
            }
            alignment = Int(v)
        }
        self.alignment = alignment

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(tensorCount)
        var index: [String: Int] = [:]
        for i in 0..<tensorCount {
            let t = try p.tensorInfo(number: i)
            guard index[t.name] == nil else { throw p.error("tensor '\(t.name)'", "duplicate tensor name") }
            index[t.name] = tensors.count
            tensors.append(t)
        }
        guard let dataOffset = Checked.alignUp(p.r.offset, alignment) else {
            throw p.error("offset \(p.r.offset)", "data section offset overflows")
        }
        self.dataOffset = dataOffset

        // Each tensor aligned, inside the file, and not overlapping another.
        for t in tensors {
            guard t.relativeOffset % alignment == 0 else {
                throw p.error("tensor '\(t.name)'", "data offset \(t.relativeOffset) is not a multiple of the alignment \(alignment)")
            }
            guard let start = Checked.add(dataOffset, t.relativeOffset),
                  let end = Checked.add(start, t.byteCount), end <= fileSize else {
                throw p.error("tensor '\(t.name)'",
                              "data (\(t.byteCount) bytes at data offset \(t.relativeOffset), file offset \(dataOffset) + \(t.relativeOffset)) extends beyond the end of the file (\(fileSize) bytes; truncated?)")
            }
        }
        let byOffset = tensors.sorted { $0.relativeOffset < $1.relativeOffset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.relativeOffset + a.byteCount > b.relativeOffset {
            throw p.error("tensor '\(b.name)'",
                          "data at data offset \(b.relativeOffset) overlaps tensor '\(a.name)' (\(a.byteCount) bytes at \(a.relativeOffset))")
        }

        self.tensors = tensors
        self.index = index
        tensorInfos = tensors.map(\.tensorInfo)
    }

    /// The tensor entry named `name`, or nil.
    public func tensor(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// Absolute file offset of a tensor's data, or nil when there is no such tensor.
    public func tensorOffset(_ name: String) -> Int? { tensor(name).map { dataOffset + $0.relativeOffset } }

    /// The tensor's encoded bytes, as a view into the mapped file (no copy).
    public func tensorBytes(_ name: String) throws -> TensorBytes {
        guard let t = tensor(name) else {
            throw SmolError(.invalidArgument, file: path, at: "tensor '\(name)'", "no such tensor in the file")
        }
        switch storage {
        case .mapped(let file):
            return TensorBytes(view: try file.bytes(at: dataOffset + t.relativeOffset, count: t.byteCount), owner: file)
        case .source(let source):
            return try source.tensorBytes(name)
        }
    }

    public func release(_ name: String) {
        guard let t = tensor(name) else { return }
        switch storage {
        case .mapped(let file): file.release(offset: dataOffset + t.relativeOffset, count: t.byteCount)
        case .source(let source): source.release(name)
        }
    }

    /// File size in bytes (of the original file, for one read from a packed checkpoint).
    public let fileSize: Int
}

/// The header parser: a bounds-checked cursor plus GGUF's rules. Every count read from the file is
/// checked against the bytes that remain before anything is allocated for it.
private struct Parser {
    let path: String
    /// The whole file's size (the buffer may hold only its header).
    let size: Int
    var r: ByteReader

    init(buffer: UnsafeRawBufferPointer, path: String, size: Int) {
        self.path = path
        self.size = size
        r = ByteReader(buffer, file: path)
    }

    func error(_ location: String, _ message: String) -> SmolError {
        .malformed(path, at: location, message)
    }

    mutating func header() throws -> UInt32 {
        guard r.buffer.count >= 4 else { throw error("offset 0", "file of \(size) bytes is too short for a GGUF header") }
        let magic = try r.readBytes(4, "magic")
        guard Array(magic) == Array("GGUF".utf8) else {
            let hex = magic.map { String($0, radix: 16) }.joined(separator: " ")
            throw error("offset 0", "bad magic (\(hex)): not a GGUF file")
        }
        let version = try u32("version")
        if version == 2 || version == 3 { return version }
        if version & 0xffff == 0, version != 0, version.byteSwapped <= 0xffff {
            throw error("offset 4", "big-endian GGUF (version \(version.byteSwapped) byte-swapped): only little-endian files are supported")
        }
        if version == 1 {
            throw error("offset 4", "GGUF version 1 (32-bit counts, from 2023) is not supported; convert it to v3 with a current llama.cpp")
        }
        throw error("offset 4", "unsupported GGUF version \(version) (smolconv reads versions 2 and 3)")
    }

    /// A UInt64 count of items each taking at least `minimumEach` bytes.
    mutating func count(_ what: String, minimumEach: Int) throws -> Int {
        let at = r.offset
        let n = try u64(what)
        guard n <= UInt64(r.remaining / minimumEach) else {
            throw error("offset \(at)", "\(what) \(n) is impossible: \(r.remaining) bytes remain in the file")
        }
        return Int(n)
    }

    // Concrete reads for the hot paths (a vocabulary is 262,144 strings): ByteReader's generic
    // read is not specialisable across the module boundary.
    @inline(__always) mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        if r.remaining < 8 { try r.need(8, what()) }
        defer { r.offset += 8 }
        return UInt64(littleEndian: r.buffer.loadUnaligned(fromByteOffset: r.offset, as: UInt64.self))
    }

    @inline(__always) mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        if r.remaining < 4 { try r.need(4, what()) }
        defer { r.offset += 4 }
        return UInt32(littleEndian: r.buffer.loadUnaligned(fromByteOffset: r.offset, as: UInt32.self))
    }

    mutating func string(_ what: () -> String) throws -> String {
        let at = r.offset
        let n64 = try u64("\(what()) length")
        guard n64 <= UInt64(r.remaining) else {
            throw error("offset \(at)", "\(what()): string length \(n64) exceeds the \(r.remaining) bytes left in the file (truncated?)")
        }
        let n = Int(n64)
        let bytes = UnsafeRawBufferPointer(rebasing: r.buffer[r.offset..<(r.offset + n)]).assumingMemoryBound(to: UInt8.self)
        r.offset += n
        // Decoding replaces invalid UTF-8 with U+FFFD, so the result has the input's bytes exactly
        // when the input was valid. (Faster than String(validating:), which is generic.)
        var s = String(decoding: bytes, as: UTF8.self)
        guard s.withUTF8({ $0.elementsEqual(bytes) }) else {
            throw error("offset \(at)", "\(what()): string is not valid UTF-8")
        }
        return s
    }

    mutating func valueType(_ what: () -> String) throws -> GGUFValueType {
        let at = r.offset
        let raw = try u32("\(what()) type")
        guard let t = GGUFValueType(rawValue: raw) else {
            throw error("offset \(at)", "\(what()): unknown value type \(raw)")
        }
        return t
    }

    mutating func value(key: String) throws -> GGUFValue {
        let what = { "metadata key '\(key)'" }
        let type = try valueType(what)
        switch type {
        case .uint8: return .uint8(try r.read(UInt8.self, what()))
        case .int8: return .int8(try r.read(Int8.self, what()))
        case .uint16: return .uint16(try r.read(UInt16.self, what()))
        case .int16: return .int16(try r.read(Int16.self, what()))
        case .uint32: return .uint32(try u32(what()))
        case .int32: return .int32(try r.read(Int32.self, what()))
        case .uint64: return .uint64(try u64(what()))
        case .int64: return .int64(try r.read(Int64.self, what()))
        case .float32: return .float32(Float(bitPattern: try u32(what())))
        case .float64: return .float64(Double(bitPattern: try u64(what())))
        // Any non-zero byte is true, as in llama.cpp (which reads the byte as a C bool).
        case .bool: return .bool(try r.read(UInt8.self, what()) != 0)
        case .string: return .string(try string(what))
        case .array: return .array(try array(what, depth: 1))
        }
    }

    mutating func array(_ what: () -> String, depth: Int) throws -> GGUFArray {
        guard depth <= GGUFFile.maxArrayNesting else {
            throw error("offset \(r.offset)", "\(what()): arrays nested deeper than \(GGUFFile.maxArrayNesting) levels")
        }
        let type = try valueType { "\(what()) array element" }
        let at = r.offset
        let n64 = try u64("\(what()) array length")
        guard n64 <= UInt64(r.remaining / type.minimumEncodedSize) else {
            throw error("offset \(at)", "\(what()): array length \(n64) of \(type.name) cannot fit in the \(r.remaining) bytes left in the file")
        }
        let n = Int(n64)
        switch type {
        case .uint8: return .uint8(try scalars(n, what))
        case .int8: return .int8(try scalars(n, what))
        case .uint16: return .uint16(try scalars(n, what))
        case .int16: return .int16(try scalars(n, what))
        case .uint32: return .uint32(try scalars(n, what))
        case .int32: return .int32(try scalars(n, what))
        case .uint64: return .uint64(try scalars(n, what))
        case .int64: return .int64(try scalars(n, what))
        case .float32: return .float32(try scalars(n, what, as: UInt32.self).map { Float(bitPattern: $0) })
        case .float64: return .float64(try scalars(n, what, as: UInt64.self).map { Double(bitPattern: $0) })
        case .bool: return .bool(try scalars(n, what, as: UInt8.self).map { $0 != 0 })
        case .string:
            var a: [String] = []
            a.reserveCapacity(n)
            for i in 0..<n { a.append(try string { "\(what()) element \(i)" }) }
            return .string(a)
        case .array:
            var a: [GGUFArray] = []
            a.reserveCapacity(n)
            for i in 0..<n { a.append(try array({ "\(what()) element \(i)" }, depth: depth + 1)) }
            return .array(a)
        }
    }

    mutating func scalars<T: FixedWidthInteger>(_ n: Int, _ what: () -> String, as _: T.Type = T.self) throws -> [T] {
        let size = MemoryLayout<T>.size
        let bytes = try r.readBytes(n * size, "\(what()) array")  // n * size ≤ remaining: checked by the caller
        return [T](unsafeUninitializedCapacity: n) { buf, initialized in
            #if _endian(little)
            UnsafeMutableRawBufferPointer(buf).copyMemory(from: bytes)
            #else
            for i in 0..<n { buf[i] = T(littleEndian: bytes.loadUnaligned(fromByteOffset: i * size, as: T.self)) }
            #endif
            initialized = n
        }
    }

    mutating func tensorInfo(number i: Int) throws -> GGUFTensorInfo {
        let at = r.offset
        let name = try string { "tensor info \(i) name" }
        let loc = "tensor '\(name)' (info at offset \(at))"
        let nDims = try u32("\(loc) n_dims")
        guard nDims >= 1, nDims <= UInt32(GGUFFile.maxDimensions) else {
            throw error(loc, "n_dims \(nDims) is outside 1…\(GGUFFile.maxDimensions)")
        }
        var ne: [Int] = []
        for d in 0..<Int(nDims) {
            let v = try u64("\(loc) ne[\(d)]")
            guard v > 0, let n = Checked.int(v) else {
                throw error(loc, "dimension ne[\(d)] = \(v) is not a positive size")
            }
            ne.append(n)
        }
        let typeAt = r.offset
        let rawType = try u32("\(loc) type")
        guard let type = GGMLType(rawValue: rawType) else {
            throw error(loc, "unknown ggml type id \(rawType) (at offset \(typeAt))")
        }
        let offset64 = try u64("\(loc) offset")
        guard let offset = Checked.int(offset64) else {
            throw error(loc, "data offset \(offset64) is beyond any file")
        }
        guard let elements = Checked.product(ne) else {
            throw error(loc, "dimensions \(ne) overflow: the element count does not fit in 64 bits")
        }
        let (blockElements, blockBytes) = type.blockLayout
        guard ne[0] % blockElements == 0 else {
            throw error(loc, "row length ne[0] = \(ne[0]) is not a multiple of the \(type.name) block size \(blockElements)")
        }
        guard let bytes = Checked.multiply(elements / blockElements, blockBytes) else {
            throw error(loc, "dimensions \(ne) overflow: the byte size does not fit in 64 bits")
        }
        return GGUFTensorInfo(name: name, ggmlType: type, ne: ne, relativeOffset: offset, byteCount: bytes)
    }
}
