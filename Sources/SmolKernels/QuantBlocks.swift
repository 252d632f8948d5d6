import SmolTensor

// Block layouts of the weight types the quantized matmul kernels read (ggml's, as GGUF stores
// them; all multi-byte fields little-endian, f16 = IEEE half). A row of `cols` elements is
// cols / blockElements consecutive blocks.
//
//   F32   4 bytes/element                 F16 2 bytes/element     BF16 2 bytes/element (top half of an f32)
//   Q8_0  34 bytes / 32:  f16 d; i8 qs[32]                         w[i] = d·qs[i]
//   Q4_0  18 bytes / 32:  f16 d; u8 qs[16]                         w[j] = d·((qs[j] & 15) − 8), w[j+16] = d·((qs[j] >> 4) − 8)
//   Q5_0  22 bytes / 32:  f16 d; u8 qh[4] (u32 LE); u8 qs[16]
//         h(i) = bit i of qh;  w[j] = d·(((qs[j] & 15) | h(j)<<4) − 16), w[j+16] = d·(((qs[j] >> 4) | h(j+16)<<4) − 16)
//   Q4_K  144 bytes / 256: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
//         8 sub-blocks of 32 with 6-bit (scale, min) pairs packed in `scales` (see `q4KScaleMin`);
//         chunk c (0..3) of 64 elements reads qs[32c ..< 32c+32]: low nibbles are sub-block 2c,
//         high nibbles sub-block 2c+1;  w = (d·sc)·q − (dmin·m)
//   Q6_K  210 bytes / 256: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
//         half h (0, 1) of 128 elements reads ql[64h..], qh[32h..], scales[8h..]; for l in 0..<32:
//           q1 = (ql[l] & 15)    | ((qh[l] >> 0) & 3) << 4   → element l       scale sc[l/16]
//           q2 = (ql[l+32] & 15) | ((qh[l] >> 2) & 3) << 4   → element l + 32  scale sc[l/16 + 2]
//           q3 = (ql[l] >> 4)    | ((qh[l] >> 4) & 3) << 4   → element l + 64  scale sc[l/16 + 4]
//           q4 = (ql[l+32] >> 4) | ((qh[l] >> 6) & 3) << 4   → element l + 96  scale sc[l/16 + 6]
//         w = (d·sc)·(q − 32)
//
// Every product above is exact in Float32 (an f16 times an integer of at most 8 bits fits in 24
// bits of mantissa), so dequantization is exact except for Q4_K's one rounding in the subtraction,
// which the reference and fast kernels perform identically.

/// The weight types `QuantizedLinear` and the quantized kernels compute with.
public enum QuantKernelTypes {
    public static let supported: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K]
}

/// Half → single, exact for every input (normals, subnormals, ±0, ±∞, NaN payload kept), without
/// the compiler runtime call that `Float(Float16)` becomes on baseline x86-64.
@inlinable @inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    // Shift exponent and mantissa into f32 position, then rescale the exponent bias (15 → 127) by
    // multiplying with 2^112: exact for normals and subnormals alike.
    let magnitude = UInt32(h & 0x7fff) << 13
    let sign = UInt32(h & 0x8000) << 16
    if h & 0x7c00 == 0x7c00 {  // ∞ / NaN: all-ones exponent
        return Float(bitPattern: sign | 0x7f80_0000 | magnitude)
    }
    let scaled = Float(bitPattern: magnitude) * Float(bitPattern: 0x7780_0000)  // 2^112
    return Float(bitPattern: scaled.bitPattern | sign)
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
@inlinable @inline(__always)
func q4KScaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    let b = q.assumingMemoryBound(to: UInt8.self)
    if j < 4 {
        return (b[j] & 63, b[j + 4] & 63)
    }
    return ((b[j + 4] & 0x0f) | ((b[j - 4] >> 6) << 4), (b[j + 4] >> 4) | ((b[j] >> 6) << 4))
}

@inlinable @inline(__always)
func loadHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    halfToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

extension ReferenceKernels {
    /// Dequantizes `count` elements (a whole number of blocks) starting at `src`: plain scalar
    /// loops written after ggml's `dequantize_row_*`. The fast kernels must match it bit for bit.
    public static func dequantizeRow(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int,
                                     into dst: UnsafeMutablePointer<Float>) {
        let u8 = src.assumingMemoryBound(to: UInt8.self)
        switch type {
        case .f32:
            for i in 0..<count { dst[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in 0..<count { dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bf16:
            for i in 0..<count { dst[i] = FloatBits.bf16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .q8_0:
            for b in 0..<(count / 32) {
                let p = 34 * b
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p, as: UInt16.self)))
                for i in 0..<32 { dst[32 * b + i] = d * Float(Int8(bitPattern: u8[p + 2 + i])) }
            }
        case .q4_0:
            for b in 0..<(count / 32) {
                let p = 18 * b
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p, as: UInt16.self)))
                for j in 0..<16 {
                    let q = u8[p + 2 + j]
                    dst[32 * b + j] = d * Float(Int(q & 15) - 8)
                    dst[32 * b + j + 16] = d * Float(Int(q >> 4) - 8)
                }
            }
        case .q5_0:
            for b in 0..<(count / 32) {
                let p = 22 * b
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p, as: UInt16.self)))
                let qh = src.loadUnaligned(fromByteOffset: p + 2, as: UInt32.self)
                for j in 0..<16 {
                    let q = u8[p + 6 + j]
                    let h0 = Int((qh >> UInt32(j)) & 1) << 4, h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
                    dst[32 * b + j] = d * Float((Int(q & 15) | h0) - 16)
                    dst[32 * b + j + 16] = d * Float((Int(q >> 4) | h1) - 16)
                }
            }
        case .q4_K:
            for b in 0..<(count / 256) {
                let p = 144 * b
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p, as: UInt16.self)))
                let dmin = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p + 2, as: UInt16.self)))
                for c in 0..<4 {
                    let (sc1, m1) = q4KScaleMin(2 * c, src + p + 4)
                    let (sc2, m2) = q4KScaleMin(2 * c + 1, src + p + 4)
                    let d1 = d * Float(sc1), mm1 = dmin * Float(m1)
                    let d2 = d * Float(sc2), mm2 = dmin * Float(m2)
                    for l in 0..<32 {
                        let q = u8[p + 16 + 32 * c + l]
                        dst[256 * b + 64 * c + l] = d1 * Float(q & 15) - mm1
                        dst[256 * b + 64 * c + 32 + l] = d2 * Float(q >> 4) - mm2
                    }
                }
            }
        case .q6_K:
            for b in 0..<(count / 256) {
                let p = 210 * b
                let d = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: p + 208, as: UInt16.self)))
                for h in 0..<2 {
                    let ql = p + 64 * h, qh = p + 128 + 32 * h, sc = p + 192 + 8 * h
                    let y = 256 * b + 128 * h
                    for l in 0..<32 {
                        let s = l / 16
                        let a = u8[ql + l], c = u8[ql + l + 32], hb = u8[qh + l]
                        let q1 = Int((a & 15) | ((hb >> 0) & 3) << 4) - 32
                        let q2 = Int((c & 15) | ((hb >> 2) & 3) << 4) - 32
                        let q3 = Int((a >> 4) | ((hb >> 4) & 3) << 4) - 32
                        let q4 = Int((c >> 4) | ((hb >> 6) & 3) << 4) - 32
                        func scale(_ k: Int) -> Float { d * Float(Int8(bitPattern: u8[sc + k])) }
                        dst[y + l] = scale(s) * Float(q1)
                        dst[y + l + 32] = scale(s + 2) * Float(q2)
                        dst[y + l + 64] = scale(s + 4) * Float(q3)
                        dst[y + l + 96] = scale(s + 6) * Float(q4)
                    }
                }
            }
        default:
            preconditionFailure("dequantizeRow: \(type.name) is not a kernel type")
        }
    }

    /// y = x · Wᵀ for a quantized weight: the whole weight dequantized with `dequantizeRow`, then
    /// the Double-accumulating `matmul`. x: [T, cols] → [T, rows].
    public static func matmul(_ x: [Float], tokens: Int, weight: QuantizedLinear) -> [Float] {
        matmul(x, rows: tokens, inDim: weight.cols, weight: weight.dequantizedReference(), outDim: weight.rows)
    }
}

extension QuantKernels {
    /// Q5_0 rows re-encoded as Q8_0, losslessly: a Q5_0 block (22 bytes: f16 d, u32 high bits,
    /// 16 bytes of nibbles) holds d · (q − 16) with q in 0…31; the Q8_0 block (34 bytes: f16 d,
    /// 32 int8) with the same d and q − 16 holds the same values bit for bit. Decode reads 1.55×
    /// the bytes but runs the Q8_0 dot, which unpacks with a third of the instructions (measured on
    /// this 2-core Zen 4, one core: Q5_0 dot 6.2 G elements/s, Q8_0 12.8 in cache and 8 streamed
    /// from memory), so the Q5_0 layers of the real model decode faster this way.
    public static func q5_0AsQ8_0(_ q5: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(q5.count % 22 == 0, "Q5_0 data is whole blocks of 22 bytes")
        let blocks = q5.count / 22
        return [UInt8](unsafeUninitializedCapacity: blocks * 34) { out, count in
            for b in 0..<blocks {
                let src = q5.baseAddress! + 22 * b, dst = out.baseAddress! + 34 * b
                dst[0] = src.load(fromByteOffset: 0, as: UInt8.self)
                dst[1] = src.load(fromByteOffset: 1, as: UInt8.self)
                let qh = UInt32(src.load(fromByteOffset: 2, as: UInt8.self))
                    | UInt32(src.load(fromByteOffset: 3, as: UInt8.self)) << 8
                    | UInt32(src.load(fromByteOffset: 4, as: UInt8.self)) << 16
                    | UInt32(src.load(fromByteOffset: 5, as: UInt8.self)) << 24
                for j in 0..<16 {
                    let byte = src.load(fromByteOffset: 6 + j, as: UInt8.self)
                    let lo = Int(byte & 15) | Int((qh >> UInt32(j)) & 1) << 4
                    let hi = Int(byte >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
                    dst[2 + j] = UInt8(bitPattern: Int8(lo - 16))
                    dst[18 + j] = UInt8(bitPattern: Int8(hi - 16))
                }
            }
            count = blocks * 34
        }
    }
}
