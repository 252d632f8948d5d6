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
                try self.decode(c, layout: s.layout,
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
    func decode(_ c: PackIndex.Chunk, layout: ByteLayout, into dst: UnsafeMutableRawBufferPointer, at location: String) throws {
        let stored = try file.bytes(at: c.offset, count: c.storedSize)
        do {
            if layout.isIdentity {
                try Self.expand(c, stored, into: dst)
            } else {
                let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: c.rawSize, alignment: 16)
                defer { tmp.deallocate() }
                try Self.expand(c, stored, into: tmp)
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

    private static func expand(_ c: PackIndex.Chunk, _ stored: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws {
        switch c.codec {
        case .stored: dst.copyMemory(from: stored)
        case .zstd: try Zstd.decompress(stored, into: dst)
        }
    }

    /// Writes member `mi`'s original bytes to `out` (nil: only decodes and checks them), decoding
    /// `window` chunks at a time on all cores while the previous window is written, so memory stays
    /// bounded by 2 × window × chunk size and the disk writes overlap the decoding.
    func write(member mi: Int, to out: OutputFile?, window: Int = 8, progress: (Int) -> Void) throws {
        struct Job { var segment: Int; var chunk: Int }
        var jobs: [Job] = []
        for (si, s) in index.members[mi].segments.enumerated() {
            for ci in s.chunks.indices { jobs.append(Job(segment: si, chunk: ci)) }
        }
        var pending: [[UInt8]] = []   // decoded, not yet written
        var start = 0
        while start < jobs.count || !pending.isEmpty {
            let batch = Array(jobs[start..<min(jobs.count, start + window)])
            let toWrite = pending
            // Task 0 writes the previous window (concurrentPerform hands out indices in order, so
            // it starts first); tasks 1… decode this one.
            let results = try parallelMap(batch.count + 1) { j -> [UInt8] in
                if j == 0 {
                    if let out { for b in toWrite { try out.write(b) } }
                    return []
                }
                let job = batch[j - 1]
                let s = self.index.members[mi].segments[job.segment]
                let c = s.chunks[job.chunk]
                return try [UInt8](unsafeUninitializedCapacity: c.rawSize) { b, n in
                    try self.decode(c, layout: s.layout, into: UnsafeMutableRawBufferPointer(b),
                                    at: "\(self.describe(member: mi, segment: job.segment)) chunk \(job.chunk)")
                    n = c.rawSize
                }
            }
            for b in toWrite { progress(b.count) }
            // The stored bytes are consumed: drop their pages so resident memory stays bounded.
            for job in batch {
                let c = index.members[mi].segments[job.segment].chunks[job.chunk]
                file.release(offset: c.offset, count: c.storedSize)
            }
            pending = Array(results.dropFirst())
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
