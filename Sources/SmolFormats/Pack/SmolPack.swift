import Foundation
import SmolTensor

/// Options of `smolconv pack`.
public struct PackOptions: Sendable {
    /// zstd level of the planes that keep zstd's matches (exponent planes are coded entropy-only
    /// whatever the level). 3 by measurement (formats/smolpack.md, level sweep): level 1 is 0.1–1.5
    /// points larger, level 5 0.1–0.7 points smaller for 1.6× the pack CPU; unpack speed is the same.
    public var level: Int = PackOptions.defaultLevel
    public static let defaultLevel = 3
    /// Raw bytes per chunk (rounded down to whole records): the unit of parallelism and of random
    /// access inside a tensor.
    public var chunkSize: Int = 4 << 20
    /// Regroup bytes into planes where the first chunk shows it helps (off: plain zstd per chunk).
    public var byteLayouts = true
    /// Allow layouts that rotate float elements (container version 2); off, packs stay version 1.
    public var rotate = true
    /// Compress each byte plane as its own zstd frame, entropy-only where the trial finds that
    /// smaller (container version 3); off, a chunk is one frame (versions 1–2).
    public var planeCodings = true

    public init() {}
}

/// What packing or unpacking did.
public struct PackSummary: Sendable {
    public var input: String
    public var output: String
    public var kind: PackIndex.Kind
    public var files: Int
    public var tensors: Int
    /// Bytes of the original file(s).
    public var rawBytes: Int
    /// Bytes of the pack file.
    public var packedBytes: Int
    public var seconds: Double
}

/// Packing checkpoints into smolpack files and restoring them byte for byte.
public enum SmolPack {
    public typealias Progress = (_ doneBytes: Int, _ totalBytes: Int) -> Void

    /// Bytes of the first chunk compressed both ways to decide whether a tensor's byte layout helps.
    static let layoutTrialBytes = 256 << 10

    // MARK: - Pack

    public static func pack(input: String, output: String, options: PackOptions = PackOptions(),
                            progress: Progress? = nil) throws -> PackSummary {
        let start = Date()
        guard options.level >= Zstd.minLevel, options.level <= Zstd.maxLevel else {
            throw SmolError(.invalidArgument, "zstd level \(options.level) outside \(Zstd.minLevel)…\(Zstd.maxLevel)")
        }
        guard options.chunkSize >= 4096, options.chunkSize <= PackIndex.maxChunkSize else {
            throw SmolError(.invalidArgument, "chunk size \(options.chunkSize) outside 4096…\(PackIndex.maxChunkSize)")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else {
            throw SmolError(.io, file: input, "no such file or folder")
        }
        if PackedCheckpoint.isPacked(input) {
            throw SmolError(.invalidArgument, file: input, "already a packed checkpoint")
        }
        let kind: PackIndex.Kind = isDir.boolValue ? .folder : .file
        let plans: [MemberPlan]
        if isDir.boolValue {
            // The model's shards, as transformers finds them (model.safetensors, or the index's).
            let st = try SafetensorsCheckpoint(path: input)
            let modelPaths = Set(st.shards.map { standardized($0.path) })
            plans = try listFiles(input).map { rel in
                let p = (input as NSString).appendingPathComponent(rel)
                return try plan(path: p, name: rel, isModel: modelPaths.contains(standardized(p)))
            }
        } else {
            plans = [try plan(path: input, name: (input as NSString).lastPathComponent, isModel: true)]
        }

        let total = plans.reduce(0) { $0 + $1.size }
        let out = try OutputFile(path: output, protecting: [input] + plans.map(\.source))
        // Layouts first: the container version depends on them (3 when a segment codes its planes
        // apart, 2 when a layout rotates, else 1).
        let layouts = try plans.map { try chooseLayouts($0, options: options) }
        let codings = layouts.joined()
        let version: UInt32 = codings.contains { !$0.planes.isEmpty } ? 3
            : codings.contains { $0.layout.rotate && !$0.layout.isIdentity } ? 2 : 1
        var header = PackIndex.magic
        withUnsafeBytes(of: version.littleEndian) { header += $0 }
        header += [0, 0, 0, 0]
        try out.write(header)
        var members: [PackIndex.Member] = []
        var done = 0
        for (p, l) in zip(plans, layouts) {
            members.append(try packMember(p, layouts: l, into: out, options: options) { n in
                done += n
                progress?(done, total)
            })
        }
        let index = PackIndex(kind: kind, members: members).encoded(version: version)
        let indexOffset = out.bytesWritten
        try out.write(index)
        try out.write(PackIndex.trailer(indexOffset: indexOffset, indexLength: index.count, checksum: XXHash64.hash(index)))
        let packed = out.bytesWritten
        try out.commit()
        return PackSummary(input: input, output: output, kind: kind, files: plans.count,
                           tensors: members.filter(\.isModel).reduce(0) { $0 + $1.segments.filter { $0.tensor != nil }.count },
                           rawBytes: total, packedBytes: packed, seconds: Date().timeIntervalSince(start))
    }

    /// One input file cut into segments.
    struct MemberPlan {
        var name: String
        var source: String
        var size: Int
        var format: PackIndex.Format
        var isModel: Bool
        var segments: [(offset: Int, length: Int, tensor: TensorInfo?)]
    }

    static func plan(path: String, name: String, isModel: Bool) throws -> MemberPlan {
        let f = try MappedFile(path: path)
        let head = f.size >= 4 ? Array(try f.bytes(at: 0, count: 4)) : []
        var segments: [(offset: Int, length: Int, tensor: TensorInfo?)] = []
        func add(_ offset: Int, _ length: Int, _ t: TensorInfo?) {
            if length > 0 || t != nil { segments.append((offset, length, t)) }
        }
        var format = PackIndex.Format.other
        do {
            if head == Array("GGUF".utf8) {
                let g = try GGUFFile(path: path)
                var at = 0
                for t in g.tensors.sorted(by: { $0.relativeOffset < $1.relativeOffset }) {
                    let o = g.dataOffset + t.relativeOffset
                    add(at, o - at, nil)           // header or padding
                    add(o, t.byteCount, t.tensorInfo)
                    at = o + t.byteCount
                }
                add(at, f.size - at, nil)
                format = .gguf
            } else if isModel || name.hasSuffix(".safetensors") {
                let s = try SafetensorsFile(path: path)
                add(0, s.dataSectionOffset, nil)
                for t in s.tensorInfos {
                    let (b, e) = try s.dataOffsets(of: t.name)
                    add(s.dataSectionOffset + b, e - b, t)
                }
                format = .safetensors
            }
        } catch where !isModel {
            // A side file that only looks like a checkpoint is kept as plain bytes.
            segments = []
            format = .other
        }
        if format == .other { add(0, f.size, nil) }
        return MemberPlan(name: name, source: path, size: f.size, format: format, isModel: isModel && format != .other,
                          segments: segments)
    }

    /// Regular files under `dir`, recursively, as relative paths in byte order.
    static func listFiles(_ dir: String) throws -> [String] {
        var out: [String] = []
        func walk(_ rel: String) throws {
            let full = rel.isEmpty ? dir : (dir as NSString).appendingPathComponent(rel)
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: full) } catch {
                throw SmolError(.io, file: full, "cannot list the folder: \(error.localizedDescription)")
            }
            for n in names.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                let r = rel.isEmpty ? n : rel + "/" + n
                var isDir: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(r), isDirectory: &isDir)
                if isDir.boolValue { try walk(r) } else { out.append(r) }
            }
        }
        try walk("")
        return out
    }

    static func standardized(_ p: String) -> String { (p as NSString).standardizingPath }

    /// How a segment is cut and compressed: its byte layout and, when the planes are coded apart
    /// (version 3), one coding per plane.
    struct SegmentCoding {
        var layout: ByteLayout
        var planes: [PackIndex.PlaneCoding]
        static let identity = SegmentCoding(layout: .identity, planes: [])
    }

    /// Layouts and plane codings of a member's segments, decided per tensor by compressing its
    /// first 256 KiB with each candidate layout (the preferred one, for floats also without the
    /// rotation, and none) and keeping the smallest; with `planeCodings`, each plane of a
    /// candidate is compressed both at the level and entropy-only, and the smaller counts.
    /// Tensors in parallel.
    static func chooseLayouts(_ p: MemberPlan, options: PackOptions) throws -> [SegmentCoding] {
        let f = try MappedFile(path: p.source)
        guard f.size == p.size else { throw SmolError(.io, file: p.source, "file changed size while packing") }
        return try parallelMap(p.segments.count) { si in
            let s = p.segments[si]
            guard options.byteLayouts, let t = s.tensor, s.length > 0 else { return .identity }
            let preferred = ByteLayout.preferred(for: t.type)
            var candidates = [ByteLayout.identity]
            if !preferred.isIdentity { candidates.append(preferred) }
            if preferred.rotate { candidates.append(preferred.unrotated) }
            if !options.rotate { candidates.removeAll { $0.rotate } }
            let r = preferred.recordSize
            let n = min(s.length, max(r, layoutTrialBytes / r * r))
            let raw = try f.bytes(at: s.offset, count: n)
            var best = SegmentCoding.identity
            var bestSize = Int.max
            for c in candidates {
                let (coding, size) = try withSplit(raw, c) { try trial($0, layout: c, options: options) }
                if size < bestSize { (best, bestSize) = (coding, size) }
            }
            return best
        }
    }

    /// Compressed size of a sample already split by `layout`, and its coding: one frame at the
    /// level, or (with `planeCodings`) each plane at the level or entropy-only, whichever is smaller.
    static func trial(_ grouped: UnsafeRawBufferPointer, layout: ByteLayout, options: PackOptions) throws -> (SegmentCoding, Int) {
        let whole = try Zstd.compress(grouped, level: options.level).count
        guard options.planeCodings, layout.planeCount <= 255 else { return (SegmentCoding(layout: layout, planes: []), whole) }
        var planes: [PackIndex.PlaneCoding] = []
        var total = 0
        var at = 0
        for size in layout.planeSizes(bytes: grouped.count) {
            let plane = UnsafeRawBufferPointer(rebasing: grouped[at..<(at + size)])
            let atLevel = try Zstd.compress(plane, level: options.level).count
            let entropy = try Zstd.compress(plane, level: options.level, entropyOnly: true).count
            planes.append(entropy <= atLevel ? .entropyOnly : .level)
            total += min(entropy, atLevel)
            at += size
        }
        // Separate frames only when some plane gains from its own coding; else one frame, as in versions 1–2.
        if !planes.contains(.entropyOnly) || whole <= total { return (SegmentCoding(layout: layout, planes: []), whole) }
        return (SegmentCoding(layout: layout, planes: planes), total)
    }

    /// The stored bytes of one chunk already split by `coding.layout`: one zstd frame, or one per
    /// plane back to back; stored as they are when zstd does not shrink them.
    static func compressChunk(_ grouped: UnsafeRawBufferPointer, _ coding: SegmentCoding, level: Int) throws -> (PackIndex.Codec, [UInt8]) {
        var z: [UInt8]
        if coding.planes.isEmpty {
            z = try Zstd.compress(grouped, level: level)
        } else {
            z = []
            var at = 0
            for (size, c) in zip(coding.layout.planeSizes(bytes: grouped.count), coding.planes) {
                z += try Zstd.compress(UnsafeRawBufferPointer(rebasing: grouped[at..<(at + size)]), level: level,
                                       entropyOnly: c == .entropyOnly)
                at += size
            }
        }
        return z.count < grouped.count ? (.zstd, z) : (.stored, Array(grouped))
    }

    static func packMember(_ p: MemberPlan, layouts: [SegmentCoding], into out: OutputFile, options: PackOptions,
                           progress: (Int) -> Void) throws -> PackIndex.Member {
        let f = try MappedFile(path: p.source)
        guard f.size == p.size else { throw SmolError(.io, file: p.source, "file changed size while packing") }
        struct Job { var segment: Int; var offset: Int; var length: Int }
        var jobs: [Job] = []
        for (si, s) in p.segments.enumerated() {
            let r = layouts[si].layout.recordSize
            let step = max(r, options.chunkSize / r * r)
            var at = 0
            while at < s.length {
                let n = min(step, s.length - at)
                jobs.append(Job(segment: si, offset: s.offset + at, length: n))
                at += n
            }
        }
        var chunks = [[PackIndex.Chunk]](repeating: [], count: p.segments.count)
        let window = 8
        var start = 0
        while start < jobs.count {
            let batch = Array(jobs[start..<min(jobs.count, start + window)])
            let results = try parallelMap(batch.count) { j -> (PackIndex.Codec, [UInt8], UInt64) in
                let job = batch[j]
                let raw = try f.bytes(at: job.offset, count: job.length)
                let sum = XXHash64.hash(raw)
                let coding = layouts[job.segment]
                let (codec, bytes) = try withSplit(raw, coding.layout) { try compressChunk($0, coding, level: options.level) }
                return (codec, bytes, sum)
            }
            for (j, (codec, bytes, sum)) in results.enumerated() {
                let job = batch[j]
                chunks[job.segment].append(PackIndex.Chunk(offset: out.bytesWritten, storedSize: bytes.count,
                                                           rawSize: job.length, codec: codec, checksum: sum))
                try out.write(bytes)
                f.release(offset: job.offset, count: job.length)
                progress(job.length)
            }
            start += batch.count
        }
        let segments = p.segments.enumerated().map { si, s in
            PackIndex.Segment(length: s.length, tensor: s.tensor, layout: layouts[si].layout, planeCodings: layouts[si].planes,
                              chunks: chunks[si])
        }
        return PackIndex.Member(path: p.name, size: p.size, format: p.format, isModel: p.isModel, segments: segments)
    }

    /// Calls `body` with `raw` regrouped by `layout` (or `raw` itself for the identity).
    static func withSplit<R>(_ raw: UnsafeRawBufferPointer, _ layout: ByteLayout,
                             _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if layout.isIdentity { return try body(raw) }
        let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count, alignment: 16)
        defer { tmp.deallocate() }
        layout.split(raw, into: tmp)
        return try body(UnsafeRawBufferPointer(tmp))
    }

    // MARK: - Unpack

    /// Decodes every chunk of a pack and checks it against its checksum, writing nothing (the
    /// decoding cost of `unpack` without the disk). `rawBytes` is what an unpack would write.
    public static func verify(input: String, progress: Progress? = nil) throws -> PackSummary {
        let start = Date()
        let pack = try PackedCheckpoint(path: input)
        let total = pack.originalSize
        var done = 0
        for mi in pack.index.members.indices {
            try pack.write(member: mi, to: nil) { n in done += n; progress?(done, total) }
        }
        return PackSummary(input: input, output: "", kind: pack.index.kind, files: pack.index.members.count,
                           tensors: pack.tensorInfos.count, rawBytes: total, packedBytes: pack.file.size,
                           seconds: Date().timeIntervalSince(start))
    }

    /// Restores the packed file or folder at `output`, byte for byte. `output` must not exist.
    public static func unpack(input: String, output: String, progress: Progress? = nil) throws -> PackSummary {
        let start = Date()
        let pack = try PackedCheckpoint(path: input)
        if FileManager.default.fileExists(atPath: output) {
            if OutputFile.sameFile(input, output) {
                throw SmolError(.invalidArgument, file: output, "output would overwrite the input; choose another name")
            }
            if pack.isFolder { throw SmolError(.invalidArgument, file: output, "already exists; remove it or choose another folder") }
        }
        let total = pack.originalSize
        var done = 0
        let report: (Int) -> Void = { n in done += n; progress?(done, total) }
        if pack.isFolder {
            // Written under a temporary name, renamed into place when complete.
            let tmp = "\(output).tmp-\(getpid())"
            try? FileManager.default.removeItem(atPath: tmp)
            do {
                try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
                for (mi, m) in pack.index.members.enumerated() {
                    let target = (tmp as NSString).appendingPathComponent(m.path)
                    try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    let out = try OutputFile(path: target)
                    try pack.write(member: mi, to: out, progress: report)
                    try out.commit()
                }
                guard rename(tmp, output) == 0 else {
                    throw SmolError(.io, file: output, "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
                }
            } catch {
                try? FileManager.default.removeItem(atPath: tmp)
                if error is SmolError { throw error }
                throw SmolError(.io, file: output, "\(error.localizedDescription)")
            }
        } else {
            let out = try OutputFile(path: output, protecting: [input])
            try pack.write(member: 0, to: out, progress: report)
            try out.commit()
        }
        return PackSummary(input: input, output: output, kind: pack.index.kind, files: pack.index.members.count,
                           tensors: pack.tensorInfos.count, rawBytes: total, packedBytes: pack.file.size,
                           seconds: Date().timeIntervalSince(start))
    }
}
