/// Scalar conversions between float formats, exact where the target can hold the value and
/// round-to-nearest-even otherwise (as PyTorch, numpy and ggml do).
public enum FloatBits {
    @inlinable public static func f16ToF32(_ bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    @inlinable public static func f32ToF16(_ x: Float) -> UInt16 {
        Float16(x).bitPattern
    }

    @inlinable public static func bf16ToF32(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Round-to-nearest-even; NaN stays a quiet NaN with its sign (torch and gguf-py agree).
    @inlinable public static func f32ToBF16(_ x: Float) -> UInt16 {
        let n = x.bitPattern
        if n & 0x7fff_ffff > 0x7f80_0000 {
            return UInt16(truncatingIfNeeded: ((n & 0xffff_0000) | 0x0040_0000) >> 16)
        }
        let rounded = n &+ (0x7fff &+ ((n >> 16) & 1))
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// OCP FP8 E4M3 (the "fn" variant PyTorch and safetensors use): no infinities, 0x7f/0xff are NaN.
    public static func f8e4m3ToF32(_ b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let exp = Int((b >> 3) & 0x0f)
        let man = Float(b & 0x07)
        if exp == 0x0f && b & 0x07 == 0x07 { return .nan }
        if exp == 0 { return sign * man / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + man / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
    }

    /// FP8 E5M2: IEEE-like, the top byte of an F16.
    public static func f8e5m2ToF32(_ b: UInt8) -> Float {
        f16ToF32(UInt16(b) << 8)
    }
}
