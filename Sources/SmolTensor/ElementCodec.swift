/// Decoding dense tensors to Float and encoding Float back, for the float element types.
/// Widening (F16/BF16/F8 → F32) is exact; narrowing rounds to nearest even, like PyTorch's `.to()`.
public enum ElementCodec {
    /// Decodes `count` elements of a floating-point `dtype` into `out`.
    public static func decode(_ dtype: DType, _ src: UnsafeRawBufferPointer, count: Int,
                              into out: UnsafeMutablePointer<Float>) throws {
        guard src.count >= count * dtype.size else {
            throw SmolError(.invalidArgument, "decode: \(src.count) bytes hold fewer than \(count) \(dtype.rawValue) elements")
        }
        switch dtype {
        case .f32:
            for i in 0..<count { out[i] = Float(bitPattern: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .f16:
            for i in 0..<count { out[i] = FloatBits.f16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<count { out[i] = FloatBits.bf16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .f64:
            for i in 0..<count { out[i] = Float(Double(bitPattern: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))) }
        case .f8e4m3:
            for i in 0..<count { out[i] = FloatBits.f8e4m3ToF32(src[i]) }
        case .f8e5m2:
            for i in 0..<count { out[i] = FloatBits.f8e5m2ToF32(src[i]) }
        default:
            throw SmolError(.unsupported, "cannot decode \(dtype.rawValue) tensors as floating point")
        }
    }

    public static func decode(_ dtype: DType, _ src: UnsafeRawBufferPointer, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { try decode(dtype, src, count: count, into: $0.baseAddress!) }
        return out
    }

    /// Encodes floats as F32, F16 or BF16 bytes.
    public static func encode(_ values: UnsafeBufferPointer<Float>, as dtype: DType) throws -> [UInt8] {
        let n = values.count
        var out = [UInt8](repeating: 0, count: n * dtype.size)
        try out.withUnsafeMutableBytes { dst in
            switch dtype {
            case .f32:
                for i in 0..<n { dst.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .f16:
                for i in 0..<n { dst.storeBytes(of: FloatBits.f32ToF16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .bf16:
                for i in 0..<n { dst.storeBytes(of: FloatBits.f32ToBF16(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            default:
                throw SmolError(.unsupported, "cannot encode floats as \(dtype.rawValue)")
            }
        }
        return out
    }

    public static func encode(_ values: [Float], as dtype: DType) throws -> [UInt8] {
        try values.withUnsafeBufferPointer { try encode($0, as: dtype) }
    }

    /// True when every value survives a round trip through `dtype` unchanged (so narrowing is lossless).
    public static func isExactlyRepresentable(_ values: UnsafeBufferPointer<Float>, in dtype: DType) -> Bool {
        switch dtype {
        case .f32: return true
        case .bf16: return values.allSatisfy { $0.isNaN || FloatBits.bf16ToF32(FloatBits.f32ToBF16($0)) == $0 }
        case .f16: return values.allSatisfy { $0.isNaN || FloatBits.f16ToF32(FloatBits.f32ToF16($0)) == $0 }
        default: return false
        }
    }
}
