import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written under a temporary name in the destination's folder and renamed into place only
/// by `commit()`, so a failed or interrupted conversion never leaves a partial output behind and
/// never touches an existing file of the same name until the new one is complete.
public final class OutputFile {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    public private(set) var bytesWritten = 0
    /// Early write-back: every `writebackStep` bytes an `fdatasync` starts on a background queue
    /// (one at a time), so the disk writes while the producer computes and the final `fsync` in
    /// `commit` has little left (a quantize of the real model spent most of its wall time there).
    private let writeback = DispatchGroup()
    private var lastWriteback = 0
    private let writebackStep = 64 << 20
    /// Positioned writes since the last early write-back, guarded by `positionedState`.
    private var positionedPending = 0
    private let positionedState = DispatchQueue(label: "OutputFile.positioned")

    /// - Parameter inputs: paths this output must not overwrite (the conversion's inputs).
    public init(path: String, protecting inputs: [String] = []) throws {
        for input in inputs where OutputFile.sameFile(input, path) {
            throw SmolError(.invalidArgument, file: path, "output would overwrite the input \(input); choose another name")
        }
        self.path = path
        let pid = getpid()
        var tmp = ""
        var attempt = 0
        var opened: Int32 = -1
        repeat {
            tmp = "\(path).tmp-\(pid)-\(attempt)"
            opened = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            attempt += 1
        } while opened < 0 && errno == EEXIST && attempt < 100
        guard opened >= 0 else {
            throw SmolError(.io, file: path, "cannot create a temporary file next to it: \(String(cString: strerror(errno)))")
        }
        fd = opened
        temporaryPath = tmp
    }

    deinit {
        writeback.wait()
        if !committed {
            if fd >= 0 { close(fd) }
            unlink(temporaryPath)
        }
    }

    /// True when both paths name the same existing file (also through links).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if bytes.count >= bufferLimit {
            try flushBuffer()
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
            if buffer.count >= bufferLimit { try flushBuffer() }
        }
        bytesWritten += bytes.count
        kickWriteback()
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes a tensor's bytes chunk by chunk (mapped views drop their pages as they go; streamed
    /// tensors are produced as they are written).
    public func write(_ bytes: TensorBytes) throws {
        if let src = bytes.mappedSource, src.count >= bufferLimit, try copyInKernel(src.file, offset: src.offset, count: src.count) {
            return
        }
        try bytes.forEachChunk { try write($0) }
    }

    /// Copies a range of a mapped input file with sendfile(2) (an in-kernel copy, as cp does): the bytes never
    /// pass through this process's memory. Returns false (nothing written) where the kernel or the
    /// file systems cannot, so the caller falls back to ordinary writes.
    private func copyInKernel(_ file: MappedFile, offset: Int, count: Int) throws -> Bool {
        #if os(Linux)
        try flushBuffer()
        var inOff = off_t(offset)
        var done = 0
        while done < count {
            let n = sendfile(fd, file.descriptor, &inOff, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                if done == 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL || errno == EBADF) {
                    return false
                }
                throw SmolError(.io, file: path, "copy failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                throw SmolError(.io, file: path, "copy stopped after \(done) of \(count) bytes (input truncated?)")
            }
            done += n
        }
        bytesWritten += count
        kickWriteback()
        return true
        #else
        return false
        #endif
    }

    // MARK: - Positioned writes

    /// Sets the file's final size before `write(_:at:)` fills it out of order (ftruncate: no blocks
    /// are written; a range never written reads as zeros). Call once, before any positioned write
    /// and after all sequential ones; `bytesWritten` becomes `size`.
    public func preallocate(_ size: Int) throws {
        try flushBuffer()
        guard ftruncate(fd, off_t(size)) == 0 else {
            throw SmolError(.io, file: path, "cannot set the size to \(size) bytes: \(String(cString: strerror(errno)))")
        }
        bytesWritten = size
        lastWriteback = size
    }

    /// Writes `bytes` at `offset` (pwrite), for producers that decode parts of the file on several
    /// threads and write each part where it belongs, straight from a buffer still in cache. Safe to
    /// call from several threads at once for disjoint ranges (it touches no state of this object
    /// but the descriptor); do not mix with `write(_:)` after `preallocate`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SmolError(.io, file: path, "write of \(bytes.count) bytes at offset \(offset) failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Reports `count` more bytes written with `write(_:at:)`: every `writebackStep` bytes an
    /// asynchronous `fdatasync` starts (as for sequential writes), so the disk works while the
    /// producers compute and `commit`'s fsync has little left. Safe from several threads.
    public func positionedBytesWritten(_ count: Int) {
        let start: Bool = positionedState.sync {
            positionedPending += count
            guard positionedPending >= writebackStep, writeback.wait(timeout: .now()) == .success else { return false }
            positionedPending = 0
            return true
        }
        guard start else { return }
        let fd = self.fd
        // `commit` and `deinit` wait for the group before the descriptor is closed.
        DispatchQueue.global(qos: .utility).async(group: writeback) { _ = fdatasync(fd) }
    }

    public func writeZeros(_ n: Int) throws {
        guard n > 0 else { return }
        try write([UInt8](repeating: 0, count: n))
    }

    private func flushBuffer() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw SmolError(.io, file: path, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Starts an asynchronous `fdatasync` when another `writebackStep` bytes have been written and
    /// none is running. Failures are not reported here: the `fsync` in `commit` reports them.
    private func kickWriteback() {
        guard bytesWritten - lastWriteback >= writebackStep, writeback.wait(timeout: .now()) == .success else { return }
        lastWriteback = bytesWritten
        let fd = self.fd
        // `commit` and `deinit` wait for the group before the descriptor is closed.
        DispatchQueue.global(qos: .utility).async(group: writeback) { _ = fdatasync(fd) }
    }

    /// Flushes, syncs and renames the temporary file to `path`.
    public func commit() throws {
        try flushBuffer()
        writeback.wait()
        guard fsync(fd) == 0 else {
            throw SmolError(.io, file: path, "fsync failed: \(String(cString: strerror(errno)))")
        }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            throw SmolError(.io, file: path, "cannot rename the finished file into place: \(String(cString: strerror(errno)))")
        }
        committed = true
    }
}
