#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Pages are loaded on demand, so reading a 1 GB
/// checkpoint tensor by tensor never needs 1 GB of RAM. Every access is bounds-checked against the
/// file's real size, so a header that lies about offsets produces an error, not a fault.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeRawPointer?
    /// Kept open for in-kernel copies (`OutputFile.write` copies mapped views with sendfile).
    let descriptor: Int32

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SmolError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        var keep = false
        defer { if !keep { close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SmolError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SmolError(.invalidArgument, file: path, "not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            descriptor = -1
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw SmolError(.io, file: path, "cannot mmap \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        descriptor = fd
        keep = true
    }

    /// The file offset of a view into this map, or nil if it is not one.
    func offset(of view: UnsafeRawBufferPointer) -> Int? {
        guard let base, let p = view.baseAddress, p >= base, p + view.count <= base + size else { return nil }
        return p - base
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// A bounds-checked view of `count` bytes at `offset`.
    public func bytes(at offset: Int, count: Int) throws -> UnsafeRawBufferPointer {
        guard offset >= 0, count >= 0, let end = Checked.add(offset, count), end <= size else {
            throw SmolError.malformed(path, at: "offset \(offset)",
                                      "\(count) bytes requested but the file has \(size) bytes")
        }
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// The whole file.
    public var all: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : size)
    }

    /// Tells the kernel the given range will be read sequentially and then not needed, which keeps
    /// resident memory low when streaming a large file.
    public func adviseSequential(offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset - offset % page
        madvise(UnsafeMutableRawPointer(mutating: base + start), count + (offset - start), MADV_SEQUENTIAL)
    }

    /// Asks the kernel to read the pages under `pointer` ahead (before they are touched), which turns
    /// hundreds of thousands of page faults into a few large reads when streaming.
    public func prefetch(pointer: UnsafeRawBufferPointer) {
        guard let base, let p = pointer.baseAddress, p >= base, p + pointer.count <= base + size else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let offset = p - base
        let start = offset - offset % page
        madvise(UnsafeMutableRawPointer(mutating: base + start), pointer.count + (offset - start), MADV_WILLNEED)
    }

    /// Drops the pages under `pointer` (a view into this map) once consumed.
    public func release(pointer: UnsafeRawBufferPointer) {
        guard let base, let p = pointer.baseAddress, p >= base, p + pointer.count <= base + size else { return }
        release(offset: p - base, count: pointer.count)
    }

    /// Drops the pages of a range already consumed (they stay valid; the kernel re-reads if touched).
    public func release(offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset - offset % page
        madvise(UnsafeMutableRawPointer(mutating: base + start), count + (offset - start), MADV_DONTNEED)
    }
}

/// A little-endian cursor over bytes, for parsing headers. Every read checks the remaining length.
public struct ByteReader {
    public let buffer: UnsafeRawBufferPointer
    public var offset: Int
    /// Names the file in errors.
    public let file: String?

    public init(_ buffer: UnsafeRawBufferPointer, offset: Int = 0, file: String? = nil) {
        self.buffer = buffer
        self.offset = offset
        self.file = file
    }

    public var remaining: Int { buffer.count - offset }

    public mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            throw SmolError.malformed(file, at: "offset \(offset)",
                                      "\(what()) needs \(n) bytes but only \(remaining) remain (truncated file?)")
        }
    }

    public mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = buffer.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    public mutating func readFloat(_ what: @autoclosure () -> String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    public mutating func readDouble(_ what: @autoclosure () -> String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    public mutating func readBytes(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try need(n, what())
        let r = UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)])
        offset += n
        return r
    }
}
