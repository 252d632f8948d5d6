/// What a checkpoint says about one tensor. `shape` is always row-major (PyTorch order), also for
/// GGUF, whose files store the reversed `ne` order.
public struct TensorInfo: Sendable, Hashable {
    public var name: String
    public var type: TensorType
    public var shape: [Int]

    public init(name: String, type: TensorType, shape: [Int]) {
        self.name = name
        self.type = type
        self.shape = shape
    }

    public var elementCount: Int { Checked.product(shape) ?? 0 }
    /// Bytes of the encoded tensor (0 if the shape is invalid for the type; readers reject those).
    public var byteCount: Int { type.byteCount(shape: shape) ?? 0 }
}

/// A tensor's encoded bytes: a view into a memory-mapped file (kept alive by `owner`), an owned
/// array produced by a conversion, or a stream of chunks produced on demand (so converting a 1 GB
/// tensor never holds it whole in memory).
public struct TensorBytes: @unchecked Sendable {
    /// Emits the bytes in order, in chunks of any size.
    public typealias Stream = (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    private let owner: AnyObject?
    private let view: UnsafeRawBufferPointer?
    private let owned: [UInt8]?
    private let stream: Stream?
    private let streamCount: Int

    /// A view into `owner`'s memory; `owner` keeps it valid.
    public init(view: UnsafeRawBufferPointer, owner: AnyObject) {
        self.owner = owner
        self.view = view
        self.owned = nil
        self.stream = nil
        self.streamCount = 0
    }

    public init(_ bytes: [UInt8]) {
        owner = nil
        view = nil
        owned = bytes
        stream = nil
        streamCount = 0
    }

    public init<T>(elements: [T]) {
        self.init(elements.withUnsafeBytes { Array($0) })
    }

    /// Bytes produced chunk by chunk when written; `count` must be what `stream` emits in total.
    public init(count: Int, stream: @escaping Stream) {
        owner = nil
        view = nil
        owned = nil
        self.stream = stream
        streamCount = count
    }

    public var count: Int { view?.count ?? owned?.count ?? streamCount }

    /// Whether the bytes are produced on demand (writers should prefer `forEachChunk`).
    public var isStreamed: Bool { stream != nil }

    /// Contiguous access; a streamed tensor is gathered into memory first.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let view { return try withExtendedLifetime(owner) { try body(view) } }
        if let owned { return try owned.withUnsafeBytes(body) }
        var all: [UInt8] = []
        all.reserveCapacity(streamCount)
        try! stream!({ all.append(contentsOf: $0) })
        return try all.withUnsafeBytes(body)
    }

    /// Visits the bytes in order in chunks of at most `chunk` bytes (mapped views: then drops the
    /// pages of each chunk from memory, so streaming a large tensor keeps resident memory bounded).
    public func forEachChunk(_ chunk: Int = 16 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if let stream {
            var emitted = 0
            try stream { b in
                emitted += b.count
                try body(b)
            }
            guard emitted == streamCount else {
                throw SmolError(.mismatch, "a streamed tensor produced \(emitted) bytes, \(streamCount) expected")
            }
            return
        }
        if let view {
            try withExtendedLifetime(owner) {
                let file = owner as? MappedFile
                var o = 0
                while o < view.count {
                    let n = min(chunk, view.count - o)
                    let part = UnsafeRawBufferPointer(rebasing: view[o..<(o + n)])
                    if o + n < view.count {
                        let m = min(chunk, view.count - o - n)
                        file?.prefetch(pointer: UnsafeRawBufferPointer(rebasing: view[(o + n)..<(o + n + m)]))
                    } else if o == 0 {
                        file?.prefetch(pointer: part)
                    }
                    try body(part)
                    file?.release(pointer: part)
                    o += n
                }
            }
            return
        }
        try owned!.withUnsafeBytes { try body($0) }
    }

    /// For a view into a memory-mapped file: the file and the view's offset in it (for in-kernel copies).
    var mappedSource: (file: MappedFile, offset: Int, count: Int)? {
        guard let view, let file = owner as? MappedFile, let o = file.offset(of: view) else { return nil }
        return (file, o, view.count)
    }

    /// Copies into an array (small tensors, tests).
    public var array: [UInt8] { withUnsafeBytes { Array($0) } }
}

/// Anything that holds named tensors: a safetensors file, a sharded folder, a GGUF file.
public protocol TensorSource: AnyObject, Sendable {
    /// For error messages: the file or folder.
    var path: String { get }
    /// In file order.
    var tensorInfos: [TensorInfo] { get }
    func tensorBytes(_ name: String) throws -> TensorBytes
    /// Says the tensor's bytes have been consumed: a memory-mapped source drops their pages, so that
    /// streaming a large checkpoint keeps resident memory bounded. The bytes stay readable.
    func release(_ name: String)
}

extension TensorSource {
    public func release(_ name: String) {}

    public func info(_ name: String) -> TensorInfo? { tensorInfos.first { $0.name == name } }
}
