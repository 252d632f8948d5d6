// smolpack container (formats/smolpack.md has the full description and measurements).
// Everything little-endian.
//
//   offset 0      8  magic "SMOLPACK"
//   offset 8      4  u32 version (1, 2 or 3; 2 adds the layout's rotate byte, 3 the plane codings; a pack is
//                    written with the lowest version its segments need)
//   offset 12     4  u32 flags (0; a reader rejects any other value)
//   offset 16        chunk data: each chunk a zstd frame or stored bytes, back to back
//   offset I      L  index (below)
//   end - 32     32  trailer: u64 I, u64 L, u64 XXH64(index bytes, seed 0), 8 bytes "SMOLPEND"
//
//   index   = u8 kind (0 = one file, 1 = a folder), u32 member count, members
//   member  = str path (the file's name, or for a folder its relative path with '/' separators),
//             u64 size, u8 format (0 other, 1 safetensors, 2 GGUF), u8 role (1 = holds the model's
//             tensors, 0 = side file), u32 segment count, segments
//             (the segments tile the member's bytes in order: their lengths add up to its size)
//   segment = u8 kind (0 = bytes: headers, metadata, padding, side files; 1 = tensor), u64 length,
//             tensor only: str name, str type ("BF16", "Q4_K", …), u8 rank, rank × u64 dims (row-major),
//             layout: u32 record size, u8 group count, groups × (u32 start, u32 length, u8 width),
//             [version ≥ 2: u8 rotate (0 no, 1 = rotate every element of width ≥ 2 left by one bit)],
//             [version 3: u8 plane coding count P (0, or the layout's plane count), P × u8 coding
//              (1 = zstd at the pack's level, 2 = zstd entropy only); P > 0: each zstd chunk is one
//              frame per plane, back to back, in plane order],
//             u32 chunk count, chunks
//   chunk   = u64 offset in the pack, u64 stored size, u64 raw size, u8 codec (0 stored, 1 zstd),
//             u64 XXH64 (seed 0) of the chunk's original bytes
//   str     = u32 byte length, UTF-8 bytes
//
// A chunk holds a run of whole records of its segment: the original bytes are
// merge(layout, decompress(stored)). The raw sizes of a segment's chunks add up to its length.
import SmolTensor

/// The table of contents of a packed checkpoint: the original files, each cut into segments
/// (non-tensor bytes, tensors), each segment into independently compressed chunks.
public struct PackIndex: Sendable {
    public static let magic = Array("SMOLPACK".utf8)
    public static let endMagic = Array("SMOLPEND".utf8)
    /// The newest container version (2: layouts may rotate elements; 3: a chunk may hold one zstd
    /// frame per byte plane, each coded its own way). The writer uses the lowest version the
    /// segments need, so packs without those features stay readable by older smolconv.
    public static let version: UInt32 = 3
    public static let supportedVersions: ClosedRange<UInt32> = 1...3
    public static let headerSize = 16
    public static let trailerSize = 32
    /// Largest raw chunk a reader accepts (the writer uses 4 MiB by default): bounds the memory one
    /// chunk can make the reader allocate.
    public static let maxChunkSize = 64 << 20

    public enum Kind: UInt8, Sendable { case file = 0, folder = 1 }
    public enum Format: UInt8, Sendable { case other = 0, safetensors = 1, gguf = 2 }
    public enum Codec: UInt8, Sendable { case stored = 0, zstd = 1 }
    /// How one byte plane of a chunk is compressed (version 3), recorded so that `inspect` and the
    /// reader know the chunk's frame structure; decoding needs no parameter (zstd frames describe
    /// themselves).
    public enum PlaneCoding: UInt8, Sendable { case level = 1, entropyOnly = 2 }

    public struct Chunk: Sendable {
        /// Absolute offset of the stored bytes in the pack file.
        public var offset: Int
        public var storedSize: Int
        public var rawSize: Int
        public var codec: Codec
        /// XXH64 of the original (un-regrouped, uncompressed) bytes.
        public var checksum: UInt64
    }

    public struct Segment: Sendable {
        public var length: Int
        /// Set for tensor segments.
        public var tensor: TensorInfo?
        public var layout: ByteLayout
        /// Empty: each zstd chunk is one frame. Else one coding per plane of the layout, and each
        /// zstd chunk is that many frames back to back (version 3).
        public var planeCodings: [PlaneCoding] = []
        public var chunks: [Chunk]
    }

    public struct Member: Sendable {
        public var path: String
        public var size: Int
        public var format: Format
        public var isModel: Bool
        public var segments: [Segment]
    }

    public var kind: Kind
    public var members: [Member]

    /// The container version this index needs: 3 when a segment has plane codings, 2 when a
    /// layout rotates, else 1.
    public var requiredVersion: UInt32 {
        let segments = members.lazy.flatMap(\.segments)
        if segments.contains(where: { !$0.planeCodings.isEmpty }) { return 3 }
        return segments.contains { $0.layout.rotate && !$0.layout.isIdentity } ? 2 : 1
    }

    // MARK: - Writing

    /// The index bytes for container `version` (`requiredVersion` by default).
    public func encoded(version: UInt32? = nil) -> [UInt8] {
        let version = version ?? requiredVersion
        precondition(version >= requiredVersion && Self.supportedVersions.contains(version))
        var w = ByteWriter()
        w.u8(kind.rawValue)
        w.u32(members.count)
        for m in members {
            w.str(m.path); w.u64(m.size); w.u8(m.format.rawValue); w.u8(m.isModel ? 1 : 0)
            w.u32(m.segments.count)
            for s in m.segments {
                w.u8(s.tensor == nil ? 0 : 1)
                w.u64(s.length)
                if let t = s.tensor {
                    w.str(t.name); w.str(t.type.name); w.u8(t.shape.count)
                    for d in t.shape { w.u64(d) }
                }
                w.u32(s.layout.recordSize); w.u8(s.layout.groups.count)
                for g in s.layout.groups { w.u32(g.start); w.u32(g.length); w.u8(g.width) }
                if version >= 2 { w.u8(s.layout.rotate && !s.layout.isIdentity ? 1 : 0) }
                if version >= 3 {
                    w.u8(s.planeCodings.count)
                    for c in s.planeCodings { w.u8(c.rawValue) }
                }
                w.u32(s.chunks.count)
                for c in s.chunks {
                    w.u64(c.offset); w.u64(c.storedSize); w.u64(c.rawSize); w.u8(c.codec.rawValue)
                    w.bytes.append(contentsOf: withUnsafeBytes(of: c.checksum.littleEndian) { Array($0) })
                }
            }
        }
        return w.bytes
    }

    /// The trailer for an index of `length` bytes at `offset`.
    public static func trailer(indexOffset: Int, indexLength: Int, checksum: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.u64(indexOffset); w.u64(indexLength)
        w.bytes.append(contentsOf: withUnsafeBytes(of: checksum.littleEndian) { Array($0) })
        w.bytes.append(contentsOf: endMagic)
        return w.bytes
    }

    // MARK: - Reading

    /// Reads and validates the index of a pack file: header, trailer, index checksum, and every
    /// structural rule (segments tile members, chunks tile segments and lie in the data area, sizes
    /// bounded by what the stored bytes can hold), so later reads only need the chunk checksums.
    public static func read(_ file: MappedFile) throws -> PackIndex {
        let path = file.path
        func bad(_ at: String, _ msg: String) -> SmolError { .malformed(path, at: at, msg) }
        guard file.size >= headerSize + trailerSize else {
            throw bad("offset 0", "file of \(file.size) bytes is too short for a smolpack header and trailer (truncated?)")
        }
        var h = ByteReader(try file.bytes(at: 0, count: headerSize), file: path)
        guard Array(try h.readBytes(8, "magic")) == magic else { throw bad("offset 0", "bad magic: not a smolpack file") }
        let version = try h.read(UInt32.self, "version")
        guard supportedVersions.contains(version) else {
            throw SmolError(.unsupported, file: path, at: "offset 8",
                            "smolpack version \(version) (this smolconv reads versions \(supportedVersions.lowerBound)–\(supportedVersions.upperBound))")
        }
        let flags = try h.read(UInt32.self, "flags")
        guard flags == 0 else { throw bad("offset 12", "unknown flags \(flags)") }

        let trailerAt = file.size - trailerSize
        var t = ByteReader(try file.bytes(at: trailerAt, count: trailerSize), file: path)
        let indexOffset64 = try t.read(UInt64.self, "index offset")
        let indexLength64 = try t.read(UInt64.self, "index length")
        let checksum = try t.read(UInt64.self, "index checksum")
        guard Array(try t.readBytes(8, "end magic")) == endMagic else {
            throw bad("offset \(trailerAt)", "no smolpack trailer at the end of the file (truncated or incomplete?)")
        }
        guard indexOffset64 >= UInt64(headerSize), indexLength64 <= UInt64(trailerAt),
              indexOffset64 <= UInt64(trailerAt) - indexLength64 else {
            throw bad("offset \(trailerAt)", "index (\(indexLength64) bytes at \(indexOffset64)) does not lie between the header and the trailer")
        }
        let indexOffset = Int(indexOffset64), indexLength = Int(indexLength64)
        let indexBytes = try file.bytes(at: indexOffset, count: indexLength)
        guard XXHash64.hash(indexBytes) == checksum else {
            throw bad("offset \(indexOffset)", "index checksum mismatch: the index is corrupted")
        }
        let dataEnd = indexOffset
        var r = ByteReader(indexBytes, file: path)

        func count(_ what: String, minimumEach: Int) throws -> Int {
            let n = try r.read(UInt32.self, what)
            guard Int(n) <= r.remaining / minimumEach else {
                throw bad("index offset \(r.offset)", "\(what) \(n) cannot fit in the \(r.remaining) index bytes left")
            }
            return Int(n)
        }
        func size(_ what: String) throws -> Int {
            let v = try r.read(UInt64.self, what)
            guard let i = Checked.int(v) else { throw bad("index offset \(r.offset - 8)", "\(what) \(v) is too large") }
            return i
        }
        func str(_ what: String) throws -> String {
            let n = try count("\(what) length", minimumEach: 1)
            let b = try r.readBytes(n, what)
            guard let s = String(validating: b, as: UTF8.self) else { throw bad("index offset \(r.offset - n)", "\(what) is not valid UTF-8") }
            return s
        }

        guard let kind = Kind(rawValue: try r.read(UInt8.self, "kind")) else { throw bad("index", "unknown pack kind") }
        let memberCount = try count("member count", minimumEach: 18)
        guard kind == .folder || memberCount == 1 else { throw bad("index", "a single-file pack must have one member, found \(memberCount)") }
        var members: [Member] = []
        var paths = Set<String>()
        var modelTensors = Set<String>()
        for _ in 0..<memberCount {
            let mpath = try str("member path")
            let mloc = "member '\(mpath)'"
            if kind == .folder { try validateRelativePath(mpath, file: path) }
            guard paths.insert(mpath).inserted else { throw bad(mloc, "duplicate member path") }
            let msize = try size("\(mloc) size")
            guard let format = Format(rawValue: try r.read(UInt8.self, "format")) else { throw bad(mloc, "unknown member format") }
            let role = try r.read(UInt8.self, "role")
            guard role <= 1 else { throw bad(mloc, "unknown member role \(role)") }
            let segCount = try count("\(mloc) segment count", minimumEach: 18)
            var segments: [Segment] = []
            var covered = 0
            for si in 0..<segCount {
                let skind = try r.read(UInt8.self, "segment kind")
                guard skind <= 1 else { throw bad("\(mloc) segment \(si)", "unknown segment kind \(skind)") }
                let length = try size("segment length")
                var info: TensorInfo?
                var sloc = "\(mloc) segment \(si)"
                if skind == 1 {
                    let name = try str("tensor name")
                    sloc = "tensor '\(name)' (\(mloc))"
                    let typeName = try str("tensor type")
                    let type: TensorType
                    if let d = DType(rawValue: typeName) { type = .dense(d) }
                    else if let g = GGMLType(name: typeName), g.name == typeName { type = TensorType(ggml: g) }
                    else { throw bad(sloc, "unknown tensor type '\(typeName)'") }
                    let rank = Int(try r.read(UInt8.self, "rank"))
                    var shape: [Int] = []
                    for _ in 0..<rank { shape.append(try size("dimension")) }
                    let ti = TensorInfo(name: name, type: type, shape: shape)
                    guard let bytes = type.byteCount(shape: shape), bytes == length else {
                        throw bad(sloc, "\(typeName) \(shape) does not take the segment's \(length) bytes")
                    }
                    if role == 1 { guard modelTensors.insert(name).inserted else { throw bad(sloc, "duplicate tensor name") } }
                    info = ti
                }
                let recordSize = Int(try r.read(UInt32.self, "record size"))
                let groupCount = Int(try r.read(UInt8.self, "group count"))
                var groups: [ByteLayout.Group] = []
                for _ in 0..<groupCount {
                    let s = Int(try r.read(UInt32.self, "group start")), l = Int(try r.read(UInt32.self, "group length"))
                    let w = Int(try r.read(UInt8.self, "group width"))
                    groups.append(.init(s, l, w))
                }
                var rotate = false
                if version >= 2 {
                    let flag = try r.read(UInt8.self, "rotate")
                    guard flag <= 1 else { throw bad(sloc, "unknown rotate value \(flag)") }
                    rotate = flag == 1
                }
                let layout = ByteLayout(recordSize: recordSize, groups: groups, rotate: rotate)
                if let p = layout.problem { throw bad(sloc, "bad byte layout: \(p)") }
                var planeCodings: [PlaneCoding] = []
                if version >= 3 {
                    let n = Int(try r.read(UInt8.self, "plane coding count"))
                    guard n == 0 || n == layout.planeCount else {
                        throw bad(sloc, "\(n) plane codings for a layout of \(layout.planeCount) planes")
                    }
                    for _ in 0..<n {
                        let v = try r.read(UInt8.self, "plane coding")
                        guard let c = PlaneCoding(rawValue: v) else { throw bad(sloc, "unknown plane coding \(v)") }
                        planeCodings.append(c)
                    }
                }
                let chunkCount = try count("chunk count", minimumEach: 33)
                var chunks: [Chunk] = []
                chunks.reserveCapacity(chunkCount)
                var raw = 0
                for ci in 0..<chunkCount {
                    let cloc = "\(sloc) chunk \(ci)"
                    let off = try size("chunk offset"), stored = try size("stored size"), rawSize = try size("raw size")
                    guard let codec = Codec(rawValue: try r.read(UInt8.self, "codec")) else { throw bad(cloc, "unknown codec") }
                    let sum = try r.read(UInt64.self, "checksum")
                    guard off >= headerSize, stored <= dataEnd - off else {
                        throw bad(cloc, "\(stored) stored bytes at offset \(off) lie outside the data area (\(headerSize)…\(dataEnd))")
                    }
                    guard rawSize >= 1, rawSize <= maxChunkSize, rawSize % recordSize == 0 else {
                        throw bad(cloc, "raw size \(rawSize) is not a positive multiple of the record size \(recordSize) up to \(maxChunkSize)")
                    }
                    switch codec {
                    case .stored:
                        guard stored == rawSize else { throw bad(cloc, "stored chunk of \(stored) bytes claims \(rawSize) raw bytes") }
                    case .zstd:
                        guard rawSize <= Zstd.decompressedBound(compressedSize: stored) else {
                            throw bad(cloc, "\(stored) bytes of zstd cannot hold \(rawSize) bytes")
                        }
                    }
                    raw += rawSize
                    chunks.append(Chunk(offset: off, storedSize: stored, rawSize: rawSize, codec: codec, checksum: sum))
                }
                guard raw == length else { throw bad(sloc, "chunks hold \(raw) bytes but the segment has \(length)") }
                guard let c = Checked.add(covered, length), c <= msize else {
                    throw bad(sloc, "segments extend past the member's size \(msize)")
                }
                covered = c
                segments.append(Segment(length: length, tensor: info, layout: layout, planeCodings: planeCodings, chunks: chunks))
            }
            guard covered == msize else { throw bad(mloc, "segments cover \(covered) of the member's \(msize) bytes") }
            members.append(Member(path: mpath, size: msize, format: format, isModel: role == 1, segments: segments))
        }
        guard r.remaining == 0 else { throw bad("index offset \(r.offset)", "\(r.remaining) unexpected bytes after the index") }
        return PackIndex(kind: kind, members: members)
    }

    /// A folder member's path: relative, '/'-separated, no empty, '.' or '..' components.
    static func validateRelativePath(_ p: String, file: String) throws {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        guard !p.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }), !p.contains("\0") else {
            throw SmolError.malformed(file, at: "member '\(p)'", "member path is not a plain relative path inside the folder")
        }
    }
}

/// Little-endian appends for the index.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u8(_ v: Int) { bytes.append(UInt8(v)) }
    mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: Int) { withUnsafeBytes(of: UInt64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func str(_ s: String) { u32(s.utf8.count); bytes.append(contentsOf: s.utf8) }
}
