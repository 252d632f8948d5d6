import Foundation
import SmolTensor

/// A packed checkpoint (smolpack, see PackIndex.swift and formats/smolpack.md) read as the
/// checkpoint it holds: the original tensors with their names, types and shapes, each decompressed
/// on demand (its chunks on all cores) and checked against its chunk checksums. Opening reads only
/// the index.
public final class PackedCheckpoint: TensorSource, @unchecked Sendable {
    // @unchecked: immutable after init except `sideFolder`, which is guarded by `lock`.
    public let path: String
    public let file: MappedFile
    public let index: PackIndex
    /// The model members' tensors, member after member, each in file (data-offset) order.
    public let tensorInfos: [TensorInfo]
    /// Where each member's segments start in the original file.
    public let segmentOffsets: [[Int]]
    private let location: [String: (member: Int, segment: Int)]
    private let lock = NSLock()
    private var sideFolder: String?
    /// Decoding buffers and zstd contexts, reused across chunks (fresh 4 MiB buffers per chunk
    /// cost page faults, and a decoded chunk written from a reused buffer is still in cache).
    private let scratch = ScratchPool()

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        index = try PackIndex.read(file)
        var infos: [TensorInfo] = []
        var loc: [String: (Int, Int)] = [:]
        var offsets: [[Int]] = []
        for (mi, m) in index.members.enumerated() {
            var at = 0
            var o: [Int] = []
            for (si, s) in m.segments.enumerated() {
                o.append(at)
                at += s.length
                if m.isModel, let t = s.tensor {
                    infos.append(t)
                    loc[t.name] = (mi, si)
                }
            }
            offsets.append(o)
        }
        tensorInfos = infos
        location = loc
        segmentOffsets = offsets
    }

    deinit {
        if let sideFolder { try? FileManager.default.removeItem(atPath: sideFolder) }
    }

    /// True when the file at `path` starts with the smolpack magic.
    public static func isPacked(_ path: String) -> Bool {
        guard let f = try? MappedFile(path: path), f.size >= PackIndex.magic.count,
              let head = try? f.bytes(at: 0, count: PackIndex.magic.count) else { return false }
        return Array(head) == PackIndex.magic
    }

    /// Whether the pack holds a folder (sharded checkpoint and side files) or one file.
    public var isFolder: Bool { index.kind == .folder }
    /// The format of the model member(s).
    public var modelFormat: PackIndex.Format { index.members.first { $0.isModel }?.format ?? .other }
    /// Bytes of the original file(s).
    public var originalSize: Int { index.members.reduce(0) { $0 + $1.size } }

    // MARK: - Reading

    public func tensorBytes(_ name: String) throws -> TensorBytes {
        guard let (mi, si) = location[name] else {
            throw SmolError(.invalidArgument, file: path, at: "tensor '\(name)'", "no such tensor in this packed checkpoint")
        }
        return TensorBytes(try segmentBytes(member: mi, segment: si))
    }

    /// One segment's original bytes (a tensor, a header), its chunks decoded in parallel.
    public func segmentBytes(member mi: Int, segment si: Int) throws -> [UInt8] {
        let s = index.members[mi].segments[si]
        let where_ = describe(member: mi, segment: si)
        return try [UInt8](unsafeUninitializedCapacity: s.length) { buffer, initialized in
            let dst = UnsafeMutableRawBufferPointer(buffer)
            var starts: [Int] = []
            var at = 0
            for c in s.chunks { starts.append(at); at += c.rawSize }
            _ = try parallelMap(s.chunks.count) { ci in
                let c = s.chunks[ci]
                try self.decode(c, in: s,
                                into: UnsafeMutableRawBufferPointer(rebasing: dst[starts[ci]..<(starts[ci] + c.rawSize)]),
                                at: "\(where_) chunk \(ci)")
            }
            initialized = s.length
        }
    }

    /// A whole member's bytes (side files such as config.json; headers).
    public func memberBytes(_ mi: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(index.members[mi].size)
        for si in index.members[mi].segments.indices { out += try segmentBytes(member: mi, segment: si) }
        return out
    }

    /// "tensor 'x'" or "member 'config.json' bytes at offset N".
    func describe(member mi: Int, segment si: Int) -> String {
        let m = index.members[mi]
        if let t = m.segments[si].tensor {
            return isFolder ? "tensor '\(t.name)' in \(m.path)" : "tensor '\(t.name)'"
        }
        return "\(isFolder ? "member '\(m.path)' " : "")bytes at original offset \(segmentOffsets[mi][si])"
    }

    /// Decodes one chunk into `dst` (its raw size) and verifies its checksum.
    func decode(_ c: PackIndex.Chunk, in seg: PackIndex.Segment, into dst: UnsafeMutableRawBufferPointer, at location: String) throws {
        let s = try scratch.take()
        defer { scratch.give(s) }
        try decode(c, in: seg, into: dst, at: location, scratch: s)
    }

    func decode(_ c: PackIndex.Chunk, in seg: PackIndex.Segment, into dst: UnsafeMutableRawBufferPointer, at location: String,
                scratch s: Scratch) throws {
        let layout = seg.layout, frames = max(1, seg.planeCodings.count)
        let stored = try file.bytes(at: c.offset, count: c.storedSize)
        do {
            if layout.isIdentity {
                try expand(c, stored, into: dst, frames: frames, s)
            } else {
                let tmp = s.planes(c.rawSize)
                try expand(c, stored, into: tmp, frames: frames, s)
                layout.merge(UnsafeRawBufferPointer(tmp), into: dst)
            }
        } catch let e as SmolError {
            throw SmolError(e.kind, file: path, at: location, "\(e.message) (corrupted chunk at pack offset \(c.offset))")
        }
        guard XXHash64.hash(UnsafeRawBufferPointer(dst)) == c.checksum else {
            throw SmolError.malformed(path, at: location,
                                      "checksum mismatch: the chunk at pack offset \(c.offset) (\(c.storedSize) bytes) is corrupted")
        }
    }

    /// `frames`: zstd frames the chunk must hold (1, or one per plane when the segment has plane codings).
    private func expand(_ c: PackIndex.Chunk, _ stored: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer,
                        frames: Int, _ s: Scratch) throws {
        switch c.codec {
        case .stored: dst.copyMemory(from: stored)
        case .zstd: try s.decoder.decompress(stored, into: dst, frames: frames)
        }
    }

    /// Bytes of original data merged, checksummed and written at a time when unpacking: small
    /// enough to stay in a core's L2 cache (1 MiB here) beside zstd's tables, so the checksum and
    /// the copy into the output read it from cache, not from memory.
    static let tileBytes = 128 << 10

    /// Decodes one chunk and hands its original bytes to `emit` tile by tile (bytes, offset in the
    /// chunk), checksumming each tile while it is in cache; throws after the last tile when the
    /// checksum does not match (an unpack then discards its temporary output).
    func decodeTiles(_ c: PackIndex.Chunk, in seg: PackIndex.Segment, at location: String, scratch s: Scratch,
                     emit: (UnsafeRawBufferPointer, Int) throws -> Void) throws {
        let layout = seg.layout
        let stored = try file.bytes(at: c.offset, count: c.storedSize)
        let planes = s.planes(c.rawSize)
        do {
            try expand(c, stored, into: planes, frames: max(1, seg.planeCodings.count), s)
        } catch let e as SmolError {
            throw SmolError(e.kind, file: path, at: location, "\(e.message) (corrupted chunk at pack offset \(c.offset))")
        }
        var hasher = XXHash64Stream()
        let r = layout.isIdentity ? 1 : layout.recordSize
        let tileRecords = max(1, Self.tileBytes / r)
        let records = c.rawSize / r
        let tile = layout.isIdentity ? planes : s.output(min(records, tileRecords) * r)
        var first = 0
        while first < records {
            let k = min(tileRecords, records - first)
            let bytes: UnsafeRawBufferPointer
            if layout.isIdentity {
                // The decoded bytes are the original ones.
                bytes = UnsafeRawBufferPointer(rebasing: planes[(first * r)..<((first + k) * r)])
            } else {
                let dst = UnsafeMutableRawBufferPointer(rebasing: tile[0..<(k * r)])
                layout.mergeRecords(UnsafeRawBufferPointer(planes), from: first, into: dst)
                bytes = UnsafeRawBufferPointer(dst)
            }
            hasher.update(bytes)
            try emit(bytes, first * r)
            first += k
        }
        guard hasher.digest() == c.checksum else {
            throw SmolError.malformed(path, at: location,
                                      "checksum mismatch: the chunk at pack offset \(c.offset) (\(c.storedSize) bytes) is corrupted")
        }
    }

    /// Chunks of member `mi` in file order: segment, chunk, offset in the member.
    private func chunkJobs(member mi: Int) -> [(segment: Int, chunk: Int, offset: Int)] {
        var jobs: [(segment: Int, chunk: Int, offset: Int)] = []
        for (si, s) in index.members[mi].segments.enumerated() {
            var at = segmentOffsets[mi][si]
            for (ci, c) in s.chunks.enumerated() {
                jobs.append((si, ci, at))
                at += c.rawSize
            }
        }
        return jobs
    }

    /// Writes member `mi`'s original bytes to `out` (nil: only decodes and checks them). Every
    /// chunk is decoded by whichever core is free into a reused buffer, then merged, checksummed
    /// and written at its place in the file (pwrite) one cache-sized tile at a time; no core waits
    /// for another's chunk or for a writer. Memory: one chunk and one tile buffer per core.
    /// `writeSequential` is the plain twin.
    func write(member mi: Int, to out: OutputFile?, progress: (Int) -> Void) throws {
        let jobs = chunkJobs(member: mi)
        try out?.preallocate(index.members[mi].size)
        try withoutActuallyEscaping(progress) { progress in
            let done = ProgressRelay(progress)
            try parallelForEach(jobs.count) { j in
                let job = jobs[j]
                let seg = self.index.members[mi].segments[job.segment]
                let c = seg.chunks[job.chunk]
                let s = try self.scratch.take()
                defer { self.scratch.give(s) }
                try self.decodeTiles(c, in: seg, at: "\(self.describe(member: mi, segment: job.segment)) chunk \(job.chunk)",
                                     scratch: s) { bytes, at in
                    try out?.write(bytes, at: job.offset + at)
                }
                out?.positionedBytesWritten(c.rawSize)
                // The stored bytes are consumed: drop their pages so resident memory stays bounded.
                self.file.release(offset: c.offset, count: c.storedSize)
                done.add(c.rawSize)
            }
        }
    }

    /// The plain twin of `write`: decodes `window` chunks at a time on all cores, then appends them
    /// in order with `OutputFile.write` (for outputs written front to back; the tests compare both).
    func writeSequential(member mi: Int, to out: OutputFile?, window: Int = 8, progress: (Int) -> Void) throws {
        let jobs = chunkJobs(member: mi)
        var start = 0
        while start < jobs.count {
            let batch = Array(jobs[start..<min(jobs.count, start + window)])
            let results = try parallelMap(batch.count) { j -> [UInt8] in
                let job = batch[j]
                let s = self.index.members[mi].segments[job.segment]
                let c = s.chunks[job.chunk]
                return try [UInt8](unsafeUninitializedCapacity: c.rawSize) { b, n in
                    try self.decode(c, in: s, into: UnsafeMutableRawBufferPointer(b),
                                    at: "\(self.describe(member: mi, segment: job.segment)) chunk \(job.chunk)")
                    n = c.rawSize
                }
            }
            for b in results {
                try out?.write(b)
                progress(b.count)
            }
            start += batch.count
        }
    }

    // MARK: - Side files and metadata

    /// A temporary folder holding the pack's side files (config.json, tokenizer files, …: the
    /// members that are neither model shards nor other checkpoints), so that code reading a Hugging
    /// Face folder finds them. Made on first use; removed when this object goes away.
    public func extractedSideFiles() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let sideFolder { return sideFolder }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smolpack-\(getpid())-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        sideFolder = dir
        for (mi, m) in index.members.enumerated() where !m.isModel && m.format == .other {
            let target = (dir as NSString).appendingPathComponent(m.path)
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let out = try OutputFile(path: target)
            try out.write(try memberBytes(mi))
            try out.commit()
        }
        return dir
    }

    /// The original header of the first model member (GGUF: everything before the tensor data;
    /// safetensors: the length and JSON header).
    public func modelHeader() throws -> (member: Int, bytes: [UInt8])? {
        guard let mi = index.members.firstIndex(where: { $0.isModel }),
              let first = index.members[mi].segments.first, first.tensor == nil else { return nil }
        return (mi, try segmentBytes(member: mi, segment: 0))
    }
}

/// One worker's reusable decoding state: a zstd context and two buffers that grow to the largest
/// chunk seen (bounded by PackIndex.maxChunkSize, which the index reader enforces).
final class Scratch: @unchecked Sendable {
    // @unchecked: a Scratch is used by one thread at a time (ScratchPool hands it out).
    let decoder: ZstdDecoder
    private var planeBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var outputBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init() throws { decoder = try ZstdDecoder() }

    deinit {
        planeBuffer.deallocate()
        outputBuffer.deallocate()
    }

    /// A buffer of `n` bytes for the regrouped (compressed-side) bytes of a chunk.
    func planes(_ n: Int) -> UnsafeMutableRawBufferPointer { Self.grow(&planeBuffer, n) }
    /// A buffer of `n` bytes for a chunk's original bytes.
    func output(_ n: Int) -> UnsafeMutableRawBufferPointer { Self.grow(&outputBuffer, n) }

    private static func grow(_ b: inout UnsafeMutableRawBufferPointer, _ n: Int) -> UnsafeMutableRawBufferPointer {
        if b.count < n {
            b.deallocate()
            b = .allocate(byteCount: n, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
    }
}

/// A lock-guarded stack of `Scratch`es: a worker takes one per chunk and gives it back, so there
/// are never more than the number of threads decoding at once.
final class ScratchPool: @unchecked Sendable {
    // @unchecked: `free` is only touched under `lock`.
    private let lock = NSLock()
    private var free: [Scratch] = []

    func take() throws -> Scratch {
        lock.lock()
        let s = free.popLast()
        lock.unlock()
        return try s ?? Scratch()
    }

    func give(_ s: Scratch) {
        lock.lock()
        free.append(s)
        lock.unlock()
    }
}

/// Calls a progress closure from worker threads one at a time.
final class ProgressRelay: @unchecked Sendable {
    // @unchecked: `report` is only called under `lock`.
    private let lock = NSLock()
    private let report: (Int) -> Void
    init(_ report: @escaping (Int) -> Void) { self.report = report }
    func add(_ n: Int) {
        lock.lock()
        report(n)
        lock.unlock()
    }
}
