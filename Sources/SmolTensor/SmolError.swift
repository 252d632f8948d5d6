/// The one error type smolconv's libraries throw: what went wrong, where (file, tensor, offset) and,
/// where it helps, what to do. The CLI prints `description` as a single line.
public struct SmolError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case io            // the operating system refused (open, mmap, write, rename)
        case malformed     // the file's bytes contradict its own format
        case unsupported   // valid, but smolconv cannot handle it (yet)
        case invalidArgument
        case mismatch      // two inputs that must agree do not
    }

    public var kind: Kind
    /// The file the problem is in, when there is one.
    public var file: String?
    /// Where in the file: "tensor 'model.embed_tokens.weight'", "offset 1234", "metadata key 'x'".
    public var location: String?
    public var message: String

    public init(_ kind: Kind, file: String? = nil, at location: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.location = location
        self.message = message
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let location { parts.append(location) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }

    /// The same error with a file name filled in, for errors raised below the layer that knows it.
    public func inFile(_ path: String) -> SmolError {
        var e = self
        if e.file == nil { e.file = path }
        return e
    }

    public static func malformed(_ file: String?, at location: String? = nil, _ message: String) -> SmolError {
        SmolError(.malformed, file: file, at: location, message)
    }
}
