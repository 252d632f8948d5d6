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

/// A tensor's encoded bytes: either a view into a memory-mapped file (kept alive by `owner`) or an
/// owned array produced by a conversion.
public struct TensorBytes: @unchecked Sendable {
    private let owner: AnyObject?
    private let view: UnsafeRawBufferPointer?
    private let owned: [UInt8]?

    /// A view into `owner`'s memory; `owner` keeps it valid.
    public init(view: UnsafeRawBufferPointer, owner: AnyObject) {
        self.owner = owner
        self.view = view
        self.owned = nil
    }

    public init(_ bytes: [UInt8]) {
        owner = nil
        view = nil
        owned = bytes
    }

    public init<T>(elements: [T]) {
        self.init(elements.withUnsafeBytes { Array($0) })
    }

    public var count: Int { view?.count ?? owned?.count ?? 0 }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let view { return try withExtendedLifetime(owner) { try body(view) } }
        return try owned!.withUnsafeBytes(body)
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
