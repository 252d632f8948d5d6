import SmolFormats
import SmolQuant
import SmolTensor

/// Decoding any tensor to Float32 values and encoding them back, for conversions that must touch
/// values (dtype changes, Q/K permutation, Gemma's norm offset). Block types dequantize exactly as
/// ggml / gguf-py do.
enum TensorValues {
    /// The tensor's values as Float32, row-major.
    static func decode(_ bytes: TensorBytes, _ info: TensorInfo) throws -> [Float] {
        let n = info.elementCount
        var out = [Float](repeating: 0, count: n)
        try bytes.withUnsafeBytes { src in
            try out.withUnsafeMutableBufferPointer { dst in
                guard let d = dst.baseAddress else { return }
                switch info.type {
                case .dense(let dt):
                    try ElementCodec.decode(dt, src, count: n, into: d)
                case .block(let g):
                    try GGUFQuant.dequantize(g, src, count: n, into: d)
                }
            }
        }
        return out
    }

    static func encode(_ values: [Float], as type: TensorType) throws -> TensorBytes {
        switch type {
        case .dense(let dt): return TensorBytes(try ElementCodec.encode(values, as: dt))
        case .block(let g):
            throw SmolError(.unsupported, "convert writes float types only; quantize to \(g.name) with `smolconv quantize`")
        }
    }
}
