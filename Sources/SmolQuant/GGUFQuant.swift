import SmolTensor

/// GGUF (ggml) block quantization: dequantize bytes to F32 and quantize F32 to bytes.
///
/// Dequantization is bit-identical to gguf-py's `gguf.quants.dequantize` (numpy float32, whose
/// arithmetic order we reproduce: e.g. Q4_K is `(d * sc) * q - (dmin * m)`, each step rounded to
/// float32, no fused multiply-add), which is also ggml's `dequantize_row_*` order.
/// Each type has a plain reference implementation (`dequantizeReference`) and a fast one
/// (`dequantize`: per-block lookup tables, unrolled loops, several threads for large tensors);
/// tests require the two to agree bit for bit.
public enum GGUFQuant {
    /// Types `dequantize` can decode.
    public static let dequantizableTypes: [GGMLType] = [
        .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
        .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_NL, .iq4_XS,
    ]

    /// Types `quantize` can encode.
    public static let quantizableTypes: [GGMLType] = [
        .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
        .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K,
    ]

    /// Elements at or above which `dequantize` splits the work over threads.
    static let parallelThreshold = 1 << 16
    /// Elements per threaded work item (a multiple of every block size).
    static let parallelChunk = 1 << 15

    /// Checks `count` against the type's block size and `src` against the bytes `count` needs;
    /// returns the number of blocks.
    static func checkedBlocks(_ type: GGMLType, byteCount: Int, count: Int) throws -> Int {
        guard dequantizableTypes.contains(type) else {
            throw SmolError(.unsupported, "dequantizing \(type.name) is not supported yet")
        }
        let (elements, bytes) = type.blockLayout
        guard count >= 0, count % elements == 0 else {
            throw SmolError(.invalidArgument, "\(count) elements is not a whole number of \(type.name) blocks of \(elements)")
        }
        let blocks = count / elements
        guard let need = Checked.multiply(blocks, bytes), need <= byteCount else {
            throw SmolError(.malformed, "\(type.name) data of \(count) elements needs \(blocks) blocks of \(bytes) bytes, got \(byteCount) bytes")
        }
        return blocks
    }

    /// Decodes `count` elements of `type` from `src` into `into` (fast path: lookup tables, unrolled
    /// loops, threads for large tensors). Bit-identical to `dequantizeReference` and to gguf-py.
    /// Throws for types not supported yet, a count that is not a whole number of blocks, or a
    /// source shorter than the count needs.
    public static func dequantize(_ type: GGMLType, _ src: UnsafeRawBufferPointer, count: Int,
                                  into dst: UnsafeMutablePointer<Float>) throws {
        let blocks = try checkedBlocks(type, byteCount: src.count, count: count)
        guard blocks > 0, let base = src.baseAddress else { return }
        let (elements, bytes) = type.blockLayout
        let kernel = FastDequant.kernel(type)
        if count < parallelThreshold {
            kernel(base, dst, blocks)
            return
        }
        let blocksPerChunk = max(1, parallelChunk / elements)
        let s = UnsafeShared(base), d = UnsafeShared(dst)
        parallelChunks(count: blocks, chunk: blocksPerChunk) { b0, b1 in
            kernel(s.value + b0 * bytes, d.value + b0 * elements, b1 - b0)
        }
    }

    /// The plain one-block-at-a-time twin of `dequantize`, written to mirror ggml's
    /// `dequantize_row_*` loops; single-threaded.
    public static func dequantizeReference(_ type: GGMLType, _ src: UnsafeRawBufferPointer, count: Int,
                                           into dst: UnsafeMutablePointer<Float>) throws {
        let blocks = try checkedBlocks(type, byteCount: src.count, count: count)
        guard blocks > 0, let base = src.baseAddress else { return }
        let (elements, bytes) = type.blockLayout
        let block = RefDequant.block(type)
        for b in 0..<blocks {
            block(base + b * bytes, dst + b * elements)
        }
    }

    /// Convenience: decodes a whole byte array into a new float array.
    public static func dequantize(_ type: GGMLType, _ src: [UInt8], count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try src.withUnsafeBytes { s in
            try out.withUnsafeMutableBufferPointer { o in
                try dequantize(type, s, count: count, into: o.baseAddress!)
            }
        }
        return out
    }

    /// Convenience: `dequantizeReference` into a new float array.
    public static func dequantizeReference(_ type: GGMLType, _ src: [UInt8], count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try src.withUnsafeBytes { s in
            try out.withUnsafeMutableBufferPointer { o in
                try dequantizeReference(type, s, count: count, into: o.baseAddress!)
            }
        }
        return out
    }
}

// MARK: - Half floats, bit for bit as numpy converts them

/// numpy's float16 → float32 (`npy_halfbits_to_floatbits`): exact for every finite value and keeps a
/// NaN's payload bits as they are (no quieting), which hardware conversions do not all do.
@inline(__always)
func halfBitsToFloatBits(_ h: UInt16) -> UInt32 {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1f
    let man = UInt32(h & 0x03ff)
    if exp == 0x1f { return sign | 0x7f80_0000 | (man << 13) }
    if exp == 0 {
        if man == 0 { return sign }
        // Subnormal: man · 2⁻²⁴, exact in float32.
        return sign | (Float(man) * 0x1p-24).bitPattern
    }
    return sign | ((exp + 112) << 23) | (man << 13)
}

/// All 65 536 half floats decoded once (256 KiB): a table lookup is the fast F16 path.
let halfToFloatTable: [Float] = (0..<65536).map { Float(bitPattern: halfBitsToFloatBits(UInt16($0))) }

@inline(__always)
func halfToFloat(_ h: UInt16) -> Float { Float(bitPattern: halfBitsToFloatBits(h)) }

/// float32 → float16 bits, round to nearest even (numpy's `astype(np.float16)` and ggml's
/// `GGML_FP32_TO_FP16` agree on every finite value; infinities and NaN are kept).
@inline(__always)
func floatToHalfBits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

@inline(__always)
func loadU16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

@inline(__always)
func loadU32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

@inline(__always)
func loadHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float { halfToFloat(loadU16(p, offset)) }

/// IQ4_NL / IQ4_XS non-linear 4-bit levels (ggml `kvalues_iq4nl`).
let kvaluesIQ4NL: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

/// Q4_K / Q5_K: the 6-bit scale and min of sub-block `j` (0..<8) from the 12 packed scale bytes.
@inline(__always)
func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (sc: UInt8, m: UInt8) {
    if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
    return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
}

/// Q3_K: the 6-bit signed (biased by 32) scale of sub-block `j` (0..<16).
@inline(__always)
func scaleQ3K(_ j: Int, _ s: UnsafePointer<UInt8>) -> Int8 {
    let low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3
    return Int8(bitPattern: low | (high << 4)) &- 32
}
