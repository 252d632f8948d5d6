import SmolQuant
import SmolTensor

/// A tensor source with some block-quantized tensors seen as F32, dequantized exactly (ggml's
/// dequantization) when read. The rewrites move bytes; where a layout change moves single elements
/// (gpt_oss's transposes), a quantized stack has to be decoded first.
public final class DequantizedView: TensorSource, @unchecked Sendable {   // immutable after init
    public let source: TensorSource
    public let tensorInfos: [TensorInfo]
    /// How many tensors the view dequantizes.
    public let dequantized: Int
    private let original: [String: TensorInfo]
    private let decoded: Set<String>

    /// `which` picks the block-quantized tensors to dequantize (all of them by default).
    public init(_ source: TensorSource, which: (TensorInfo) -> Bool = { _ in true }) {
        self.source = source
        var n = 0
        tensorInfos = source.tensorInfos.map { t in
            guard case .block(let g) = t.type, g.denseType == nil, which(t) else { return t }
            n += 1
            return TensorInfo(name: t.name, type: .dense(.f32), shape: t.shape)
        }
        dequantized = n
        decoded = Set(zip(source.tensorInfos, tensorInfos).filter { $0.0.type != $0.1.type }.map(\.0.name))
        original = Dictionary(source.tensorInfos.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public var path: String { source.path }

    public func tensorBytes(_ name: String) throws -> TensorBytes {
        let bytes = try source.tensorBytes(name)
        guard decoded.contains(name), let t = original[name], case .block(let g) = t.type else { return bytes }
        var values = [Float](repeating: 0, count: t.elementCount)
        try bytes.withUnsafeBytes { raw in
            try values.withUnsafeMutableBufferPointer { try GGUFQuant.dequantize(g, raw, count: t.elementCount, into: $0.baseAddress!) }
        }
        return TensorBytes(try ElementCodec.encode(values, as: .f32))
    }

    public func release(_ name: String) { source.release(name) }
}
