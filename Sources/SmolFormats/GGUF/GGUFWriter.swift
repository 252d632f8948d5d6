import SmolTensor

/// Writes GGUF version 3 files in the layout of llama.cpp's and gguf-py's writers (see the byte
/// layout at the top of GGUFFile.swift): header, metadata in the given order, tensor infos, zero
/// padding to the alignment, then each tensor's data padded with zeros to a multiple of the
/// alignment, the last one included. Tensor offsets are the running sum of those padded sizes.
/// Because both reference writers do exactly this, reading a file they wrote and writing it back
/// with the same metadata and tensor order reproduces it byte for byte.
///
/// Tensor data is streamed: each tensor's producer is called once, in order, its bytes written and
/// dropped before the next, so a conversion holds one tensor in memory at a time. The output goes
/// through `OutputFile` and appears under its name only once complete.
public enum GGUFWriter {
    /// One tensor to write.
    public struct Tensor {
        public var name: String
        public var type: GGMLType
        /// Row-major (PyTorch) shape; the file stores it reversed, as `ne`.
        public var shape: [Int]
        /// Produces the encoded bytes (exactly `type.byteCount(shape)` of them); called once.
        public var bytes: () throws -> TensorBytes
        /// Called after the bytes have been written (e.g. to release a mapped source's pages).
        public var didWrite: (() -> Void)?

        public init(name: String, type: GGMLType, shape: [Int], didWrite: (() -> Void)? = nil,
                    bytes: @escaping () throws -> TensorBytes) {
            self.name = name
            self.type = type
            self.shape = shape
            self.bytes = bytes
            self.didWrite = didWrite
        }

        /// From a `TensorInfo` (row-major shape); fails for dense types GGUF cannot hold (F8, U8, BOOL, …).
        public init(_ info: TensorInfo, didWrite: (() -> Void)? = nil,
                    bytes: @escaping () throws -> TensorBytes) throws {
            guard let type = info.type.ggmlType else {
                throw SmolError(.unsupported, at: "tensor '\(info.name)'", "\(info.type.name) has no GGUF (ggml) type")
            }
            self.init(name: info.name, type: type, shape: info.shape, didWrite: didWrite, bytes: bytes)
        }
    }

    /// The GGUF version written.
    public static let version: UInt32 = 3

    /// Writes `metadata` and `tensors` to `path` (never over one of `inputs`).
    public static func write(to path: String, metadata: GGUFMetadata, tensors: [Tensor],
                             protecting inputs: [String] = []) throws {
        let plan = try layout(metadata: metadata, tensors: tensors.map { ($0.name, $0.type, $0.shape) }, file: path)
        let out = try OutputFile(path: path, protecting: inputs)
        try out.write(plan.header)
        for (i, t) in tensors.enumerated() {
            let bytes = try t.bytes()
            guard bytes.count == plan.byteCounts[i] else {
                throw SmolError(.mismatch, file: path, at: "tensor '\(t.name)'",
                                "producer returned \(bytes.count) bytes; \(t.type.name) \(t.shape) needs \(plan.byteCounts[i])")
            }
            try out.write(bytes)
            try out.writeZeros(plan.paddedCounts[i] - bytes.count)
            t.didWrite?()
        }
        try out.commit()
    }

    /// What `write` will produce before the tensor data: the header bytes (through the padding
    /// before the data section), each tensor's size, padded size and offset from the data start.
    public struct Layout: Sendable {
        public var header: [UInt8]
        public var alignment: Int
        public var byteCounts: [Int]
        public var paddedCounts: [Int]
        public var offsets: [Int]
        /// The size of the whole file.
        public var fileSize: Int { header.count + paddedCounts.reduce(0, +) }
    }

    /// Validates and encodes the header. `file` names the output in errors.
    public static func layout(metadata: GGUFMetadata, tensors: [(name: String, type: GGMLType, shape: [Int])],
                              file: String? = nil) throws -> Layout {
        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard case .uint32(let v) = a, v != 0, v & (v - 1) == 0 else {
                throw SmolError(.invalidArgument, file: file, at: "metadata key 'general.alignment'",
                                "must be a UINT32 non-zero power of two, got \(a)")
            }
            alignment = Int(v)
        }

        var byteCounts: [Int] = [], padded: [Int] = [], offsets: [Int] = []
        var seen = Set<String>()
        var offset = 0
        for t in tensors {
            let loc = "tensor '\(t.name)'"
            guard seen.insert(t.name).inserted else {
                throw SmolError(.invalidArgument, file: file, at: loc, "duplicate tensor name")
            }
            guard (1...GGUFFile.maxDimensions).contains(t.shape.count), t.shape.allSatisfy({ $0 > 0 }) else {
                throw SmolError(.invalidArgument, file: file, at: loc,
                                "shape \(t.shape) must have 1…\(GGUFFile.maxDimensions) positive dimensions")
            }
            guard let n = TensorType.block(t.type).byteCount(shape: t.shape),
                  let p = Checked.alignUp(n, alignment), let next = Checked.add(offset, p) else {
                throw SmolError(.invalidArgument, file: file, at: loc,
                                "shape \(t.shape) does not fit \(t.type.name): the row length must be a multiple of \(t.type.blockLayout.elements) and the size must fit in 64 bits")
            }
            byteCounts.append(n)
            padded.append(p)
            offsets.append(offset)
            offset = next
        }

        var out: [UInt8] = []
        out.append(contentsOf: Array("GGUF".utf8))
        appendLE(version, to: &out)
        appendLE(UInt64(tensors.count), to: &out)
        appendLE(UInt64(metadata.count), to: &out)
        for (key, value) in metadata {
            appendString(key, to: &out)
            appendLE(value.type.rawValue, to: &out)
            appendValue(value, to: &out)
        }
        for (i, t) in tensors.enumerated() {
            appendString(t.name, to: &out)
            appendLE(UInt32(t.shape.count), to: &out)
            for d in t.shape.reversed() { appendLE(UInt64(d), to: &out) }
            appendLE(t.type.rawValue, to: &out)
            appendLE(UInt64(offsets[i]), to: &out)
        }
        out.append(contentsOf: repeatElement(0, count: Checked.alignUp(out.count, alignment)! - out.count))
        return Layout(header: out, alignment: alignment, byteCounts: byteCounts, paddedCounts: padded, offsets: offsets)
    }

    /// The encoding of one value without its type tag.
    public static func encode(_ value: GGUFValue) -> [UInt8] {
        var out: [UInt8] = []
        appendValue(value, to: &out)
        return out
    }

    private static func appendLE<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func appendString(_ s: String, to out: inout [UInt8]) {
        appendLE(UInt64(s.utf8.count), to: &out)
        out.append(contentsOf: s.utf8)
    }

    private static func appendValue(_ v: GGUFValue, to out: inout [UInt8]) {
        switch v {
        case .uint8(let x): out.append(x)
        case .int8(let x): appendLE(x, to: &out)
        case .uint16(let x): appendLE(x, to: &out)
        case .int16(let x): appendLE(x, to: &out)
        case .uint32(let x): appendLE(x, to: &out)
        case .int32(let x): appendLE(x, to: &out)
        case .uint64(let x): appendLE(x, to: &out)
        case .int64(let x): appendLE(x, to: &out)
        case .float32(let x): appendLE(x.bitPattern, to: &out)
        case .float64(let x): appendLE(x.bitPattern, to: &out)
        case .bool(let x): out.append(x ? 1 : 0)
        case .string(let s): appendString(s, to: &out)
        case .array(let a): appendArray(a, to: &out)
        }
    }

    private static func appendArray(_ a: GGUFArray, to out: inout [UInt8]) {
        appendLE(a.elementType.rawValue, to: &out)
        appendLE(UInt64(a.count), to: &out)
        switch a {
        case .uint8(let xs): out.append(contentsOf: xs)
        case .int8(let xs): appendAll(xs, to: &out)
        case .uint16(let xs): appendAll(xs, to: &out)
        case .int16(let xs): appendAll(xs, to: &out)
        case .uint32(let xs): appendAll(xs, to: &out)
        case .int32(let xs): appendAll(xs, to: &out)
        case .uint64(let xs): appendAll(xs, to: &out)
        case .int64(let xs): appendAll(xs, to: &out)
        case .float32(let xs): appendAll(xs.map(\.bitPattern), to: &out)
        case .float64(let xs): appendAll(xs.map(\.bitPattern), to: &out)
        case .bool(let xs): out.append(contentsOf: xs.map { $0 ? 1 : 0 })
        case .string(let xs): for s in xs { appendString(s, to: &out) }
        case .array(let xs): for x in xs { appendArray(x, to: &out) }
        }
    }

    private static func appendAll<T: FixedWidthInteger>(_ xs: [T], to out: inout [UInt8]) {
        #if _endian(little)
        xs.withUnsafeBytes { out.append(contentsOf: $0) }
        #else
        for x in xs { appendLE(x, to: &out) }
        #endif
    }
}

extension GGUFFile {
    /// This file's tensors as writer input: bytes straight from the map, pages released once
    /// written. `GGUFWriter.write(to:metadata: file.metadata, tensors: file.writerTensors)` copies
    /// the file.
    public var writerTensors: [GGUFWriter.Tensor] {
        tensors.map { t in
            GGUFWriter.Tensor(name: t.name, type: t.ggmlType, shape: t.shape,
                              didWrite: { [self] in self.release(t.name) },
                              bytes: { [self] in try self.tensorBytes(t.name) })
        }
    }
}
