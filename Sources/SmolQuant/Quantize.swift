import SmolTensor

extension GGUFQuant {
    /// Quantizes a row-major [rows, rowLength] F32 matrix to `type`, one row after another (rows are
    /// independent, so large inputs are split over threads; the result does not depend on it).
    ///
    /// - Without `importance`: llama.cpp's `quantize_row_*_ref` (what `llama-quantize` does without
    ///   an imatrix). For F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 this is bit-identical to gguf-py's
    ///   `gguf.quants.quantize`.
    /// - With `importance` (one weight per column, as llama-imatrix produces): llama.cpp's
    ///   `quantize_*_impl` variants. Q8_0, Q8_K, F16, BF16 and F32 ignore it, as llama.cpp does.
    ///
    /// Throws for types not supported yet, a row length that is not a whole number of blocks, or an
    /// importance vector of the wrong length.
    public static func quantize(_ type: GGMLType, _ src: UnsafePointer<Float>, rows: Int, rowLength: Int,
                                importance: [Float]? = nil) throws -> [UInt8] {
        try quantize(type, src, rows: rows, rowLength: rowLength, importance: importance, reference: false)
    }

    /// The plain reference twin of `quantize`: the same bytes, without the fast (SIMD) block kernels.
    public static func quantizeReference(_ type: GGMLType, _ src: UnsafePointer<Float>, rows: Int, rowLength: Int,
                                         importance: [Float]? = nil) throws -> [UInt8] {
        try quantize(type, src, rows: rows, rowLength: rowLength, importance: importance, reference: true)
    }

    static func quantize(_ type: GGMLType, _ src: UnsafePointer<Float>, rows: Int, rowLength: Int,
                         importance: [Float]?, reference: Bool) throws -> [UInt8] {
        guard let kernel = Quantizers.row(type, reference: reference) else {
            throw SmolError(.unsupported, "quantizing to \(type.name) is not supported yet")
        }
        let (elements, bytes) = type.blockLayout
        guard rows >= 0, rowLength >= 0, rowLength % elements == 0 else {
            throw SmolError(.invalidArgument, "row length \(rowLength) is not a whole number of \(type.name) blocks of \(elements)")
        }
        if let importance, importance.count != rowLength {
            throw SmolError(.invalidArgument, "importance has \(importance.count) values for rows of \(rowLength)")
        }
        let rowBytes = rowLength / elements * bytes
        guard let total = Checked.multiply(rows, rowBytes), Checked.multiply(rows, rowLength) != nil else {
            throw SmolError(.invalidArgument, "\(rows) × \(rowLength) is too large")
        }
        var out = [UInt8](repeating: 0, count: total)
        if total == 0 { return out }
        let qw = importance ?? []
        qw.withUnsafeBufferPointer { qwb in
            out.withUnsafeMutableBytes { ob in
                let s = UnsafeShared(src), o = UnsafeShared(ob.baseAddress!)
                let w = UnsafeShared(importance == nil ? nil : qwb.baseAddress)
                let rowsPerChunk = max(1, parallelChunk / max(1, rowLength))
                let work = { (r0: Int, r1: Int) in
                    for r in r0..<r1 {
                        kernel(s.value + r * rowLength, rowLength, o.value + r * rowBytes, w.value)
                    }
                }
                if rows * rowLength < parallelThreshold { work(0, rows) } else {
                    parallelChunks(count: rows, chunk: rowsPerChunk, work)
                }
            }
        }
        return out
    }

    /// Convenience over an array holding `rows · rowLength` floats.
    public static func quantize(_ type: GGMLType, _ src: [Float], rows: Int, rowLength: Int,
                                importance: [Float]? = nil) throws -> [UInt8] {
        guard let n = Checked.multiply(rows, rowLength), n == src.count else {
            throw SmolError(.invalidArgument, "\(src.count) values are not \(rows) rows of \(rowLength)")
        }
        return try src.withUnsafeBufferPointer { b in
            try quantize(type, b.baseAddress ?? UnsafePointer(bitPattern: 4)!, rows: rows, rowLength: rowLength, importance: importance)
        }
    }
}

/// Quantizes one row of `n` floats into the row's bytes, with optional per-column weights.
typealias RowQuant = (UnsafePointer<Float>, Int, UnsafeMutableRawPointer, UnsafePointer<Float>?) -> Void

@inline(__always)
func storeHalf(_ p: UnsafeMutableRawPointer, _ off: Int, _ x: Float) {
    p.storeBytes(of: floatToHalfBits(x).littleEndian, toByteOffset: off, as: UInt16.self)
}

@inline(__always)
func storeU32(_ p: UnsafeMutableRawPointer, _ off: Int, _ v: UInt32) {
    p.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt32.self)
}

/// C's float → int conversion (truncation toward zero) without Swift's trap: NaN gives 0 and
/// out-of-range values saturate (C leaves both undefined; they only arise from inf/NaN inputs).
@inline(__always)
func truncToInt(_ v: Float) -> Int {
    if v.isNaN { return 0 }
    return Int(max(-2_147_483_648, min(2_147_483_520, v)))
}

/// `truncToInt(roundf(v))` without the libm call (which no x86 rounding mode does in one
/// instruction): truncate, then step away from zero when the dropped fraction is at least one
/// half. `c − Float(t)` is exact (Sterbenz for |c| ≥ 1; t = 0 below), so this equals roundf's
/// half-away-from-zero for every float; NaN gives 0 and out-of-range values saturate as in
/// `truncToInt`.
@inline(__always)
func roundToInt(_ v: Float) -> Int {
    if v.isNaN { return 0 }
    let c = max(-2_147_483_648, min(2_147_483_520, v))
    let t = Int(c)
    let frac = c - Float(t)
    return frac >= 0.5 ? t + 1 : (frac <= -0.5 ? t - 1 : t)
}

/// Halves a float to f16 and back, as ggml does when it reuses a stored scale.
@inline(__always)
func roundTripHalf(_ x: Float) -> Float { halfToFloat(floatToHalfBits(x)) }

enum Quantizers {
    static func row(_ type: GGMLType, reference: Bool = false) -> RowQuant? {
        switch type {
        case .q8_0 where !reference: return { x, n, y, _ in blocks(x, n, 32, y, 34, q8_0Fast) }
        case .q4_0 where !reference: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 18, q4_0Fast) : q4_0Impl(x, n, y, qw!, nmax: 8) }
        case .q5_0 where !reference: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 22, q5_0Fast) : q4_0Impl(x, n, y, qw!, nmax: 16) }
        case .f32: return { x, n, y, _ in y.copyMemory(from: x, byteCount: 4 * n) }
        case .f16: return { x, n, y, _ in for i in 0..<n { y.storeBytes(of: floatToHalfBits(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) } }
        case .bf16: return { x, n, y, _ in for i in 0..<n { y.storeBytes(of: FloatBits.f32ToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) } }
        case .q4_0: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 18, q4_0Ref) : q4_0Impl(x, n, y, qw!, nmax: 8) }
        case .q5_0: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 22, q5_0Ref) : q4_0Impl(x, n, y, qw!, nmax: 16) }
        case .q4_1: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 20, q4_1Ref) : q4_1Impl(x, n, y, qw!, nmax: 15) }
        case .q5_1: return { x, n, y, qw in qw == nil ? blocks(x, n, 32, y, 24, q5_1Ref) : q4_1Impl(x, n, y, qw!, nmax: 31) }
        case .q8_0: return { x, n, y, _ in blocks(x, n, 32, y, 34, q8_0Ref) }
        case .q8_K: return { x, n, y, _ in blocks(x, n, 256, y, 292, q8_K) }
        case .q2_K: return { x, n, y, qw in qw == nil ? blocks(x, n, 256, y, 84, q2_KRef) : blocksW(x, n, 256, y, 84, qw!, q2_KImpl) }
        case .q3_K: return { x, n, y, qw in qw == nil ? blocks(x, n, 256, y, 110, q3_KRef) : blocksW(x, n, 256, y, 110, qw!, q3_KImpl) }
        case .q4_K: return { x, n, y, qw in qw == nil ? blocks(x, n, 256, y, 144, { q45_KRef($0, $1, nmax: 15) }) : blocksW(x, n, 256, y, 144, qw!, { q45_KImpl($0, $1, $2, nmax: 15) }) }
        case .q5_K: return { x, n, y, qw in qw == nil ? blocks(x, n, 256, y, 176, { q45_KRef($0, $1, nmax: 31) }) : blocksW(x, n, 256, y, 176, qw!, { q45_KImpl($0, $1, $2, nmax: 31) }) }
        case .q6_K: return { x, n, y, qw in blocksW(x, n, 256, y, 210, qw, q6_K) }
        default: return nil
        }
    }

    @inline(__always)
    static func blocks(_ x: UnsafePointer<Float>, _ n: Int, _ qk: Int, _ y: UnsafeMutableRawPointer, _ bytes: Int,
                       _ f: (UnsafePointer<Float>, UnsafeMutableRawPointer) -> Void) {
        for b in 0..<(n / qk) { f(x + b * qk, y + b * bytes) }
    }

    /// Blocks with the importance weights of the block's columns.
    @inline(__always)
    static func blocksW(_ x: UnsafePointer<Float>, _ n: Int, _ qk: Int, _ y: UnsafeMutableRawPointer, _ bytes: Int,
                        _ qw: UnsafePointer<Float>?, _ f: (UnsafePointer<Float>, UnsafeMutableRawPointer, UnsafePointer<Float>?) -> Void) {
        for b in 0..<(n / qk) { f(x + b * qk, y + b * bytes, qw.map { $0 + b * qk }) }
    }

    // MARK: simple types, llama.cpp quantize_row_*_ref (= gguf-py)

    /// The value with the largest magnitude (the first one on ties).
    @inline(__always)
    static func signedAbsMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var amax: Float = 0, max: Float = 0
        for j in 0..<n where amax < abs(x[j]) { amax = abs(x[j]); max = x[j] }
        return max
    }

    static func q4_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let d = signedAbsMax(x, 32) / -8
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        for j in 0..<16 {
            let q0 = min(15, Int8(truncatingIfNeeded: truncToInt(x[j] * id + 8.5)))
            let q1 = min(15, Int8(truncatingIfNeeded: truncToInt(x[j + 16] * id + 8.5)))
            y.storeBytes(of: UInt8(truncatingIfNeeded: q0) | UInt8(truncatingIfNeeded: q1) << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    static func q5_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let d = signedAbsMax(x, 32) / -16
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let q0 = UInt8(truncatingIfNeeded: min(31, Int8(truncatingIfNeeded: truncToInt(x[j] * id + 16.5))))
            let q1 = UInt8(truncatingIfNeeded: min(31, Int8(truncatingIfNeeded: truncToInt(x[j + 16] * id + 16.5))))
            y.storeBytes(of: (q0 & 0xF) | (q1 & 0xF) << 4, toByteOffset: 6 + j, as: UInt8.self)
            qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
            qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
        }
        storeU32(y, 2, qh)
    }

    @inline(__always)
    static func minMax(_ x: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
        var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
        for j in 0..<n {
            if x[j] < mn { mn = x[j] }
            if x[j] > mx { mx = x[j] }
        }
        return (mn, mx)
    }

    static func q4_1Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let (mn, mx) = minMax(x, 32)
        let d = (mx - mn) / 15
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        storeHalf(y, 2, mn)
        for j in 0..<16 {
            let q0 = min(15, Int8(truncatingIfNeeded: truncToInt((x[j] - mn) * id + 0.5)))
            let q1 = min(15, Int8(truncatingIfNeeded: truncToInt((x[j + 16] - mn) * id + 0.5)))
            y.storeBytes(of: UInt8(truncatingIfNeeded: q0) | UInt8(truncatingIfNeeded: q1) << 4, toByteOffset: 4 + j, as: UInt8.self)
        }
    }

    static func q5_1Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let (mn, mx) = minMax(x, 32)
        let d = (mx - mn) / 31
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        storeHalf(y, 2, mn)
        var qh: UInt32 = 0
        for j in 0..<16 {
            // C converts to uint8 without clamping; gguf-py clips to 31. They agree because
            // (x − min)·id + 0.5 < 31.5 for every x of the block.
            let q0 = UInt8(truncatingIfNeeded: min(31, truncToInt((x[j] - mn) * id + 0.5)))
            let q1 = UInt8(truncatingIfNeeded: min(31, truncToInt((x[j + 16] - mn) * id + 0.5)))
            y.storeBytes(of: (q0 & 0xF) | (q1 & 0xF) << 4, toByteOffset: 8 + j, as: UInt8.self)
            qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
            qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
        }
        storeU32(y, 4, qh)
    }

    static func q8_0Ref(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        for j in 0..<32 {
            // roundf: half away from zero.
            y.storeBytes(of: Int8(truncatingIfNeeded: roundToInt(x[j] * id)), toByteOffset: 2 + j, as: Int8.self)
        }
    }

    // MARK: simple types with importance (quantize_row_q4_0_impl / q5_0 / q4_1 / q5_1)

    /// Q4_0 (nmax 8) and Q5_0 (nmax 16) with per-column weights: make_qx_quants per block, weights
    /// qw·sqrt(σ² + x²) with σ² the row's mean square.
    static func q4_0Impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>, nmax: Int) {
        var sumX2: Float = 0
        for j in 0..<n { sumX2 += x[j] * x[j] }
        let sigma2 = sumX2 / Float(n)
        let bytes = nmax == 8 ? 18 : 22
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { wb in
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: 32) { lb in
                let weight = wb.baseAddress!, L = lb.baseAddress!
                for ib in 0..<(n / 32) {
                    let xb = x + 32 * ib, qb = qw + 32 * ib, yb = y + bytes * ib
                    for j in 0..<32 { weight[j] = qb[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    let d = makeQxQuants(32, nmax, xb, L, weight)
                    storeHalf(yb, 0, d)
                    if nmax == 8 {
                        for j in 0..<16 { yb.storeBytes(of: UInt8(L[j]) | UInt8(L[j + 16]) << 4, toByteOffset: 2 + j, as: UInt8.self) }
                    } else {
                        var qh: UInt32 = 0
                        for j in 0..<16 {
                            let q0 = UInt8(L[j]), q1 = UInt8(L[j + 16])
                            yb.storeBytes(of: (q0 & 0xF) | (q1 & 0xF) << 4, toByteOffset: 6 + j, as: UInt8.self)
                            qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
                            qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
                        }
                        storeU32(yb, 2, qh)
                    }
                }
            }
        }
    }

    /// Q4_1 (nmax 15) and Q5_1 (nmax 31) with per-column weights: make_qkx3_quants per block.
    static func q4_1Impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>, nmax: Int) {
        var sumX2: Float = 0
        for j in 0..<n { sumX2 += x[j] * x[j] }
        let sigma2 = sumX2 / Float(n)
        let bytes = nmax == 15 ? 20 : 24
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { wb in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { lb in
                let weight = wb.baseAddress!, L = lb.baseAddress!, Laux = L + 32
                for ib in 0..<(n / 32) {
                    let xb = x + 32 * ib, qb = qw + 32 * ib, yb = y + bytes * ib
                    for j in 0..<32 { weight[j] = qb[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    var theMin: Float = 0
                    let d = makeQkx3Quants(32, nmax, xb, weight, L, &theMin, Laux, -0.9, 0.05, 36, false)
                    storeHalf(yb, 0, d)
                    storeHalf(yb, 2, -theMin)
                    if nmax == 15 {
                        for j in 0..<16 { yb.storeBytes(of: L[j] | L[j + 16] << 4, toByteOffset: 4 + j, as: UInt8.self) }
                    } else {
                        var qh: UInt32 = 0
                        for j in 0..<16 {
                            let q0 = L[j], q1 = L[j + 16]
                            yb.storeBytes(of: (q0 & 0xF) | (q1 & 0xF) << 4, toByteOffset: 8 + j, as: UInt8.self)
                            qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
                            qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
                        }
                        storeU32(yb, 4, qh)
                    }
                }
            }
        }
    }

    // MARK: Q8_K

    static func q8_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, max: Float = 0
        for j in 0..<256 where abs(x[j]) > amax { amax = abs(x[j]); max = x[j] }
        if amax == 0 {
            y.initializeMemory(as: UInt8.self, repeating: 0, count: 292)
            return
        }
        let iscale = -127 / max
        var qs = [Int8](repeating: 0, count: 256)
        for j in 0..<256 {
            qs[j] = Int8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * x[j])))
            y.storeBytes(of: qs[j], toByteOffset: 4 + j, as: Int8.self)
        }
        for g in 0..<16 {
            var sum = 0
            for i in 0..<16 { sum += Int(qs[16 * g + i]) }
            y.storeBytes(of: Int16(sum).littleEndian, toByteOffset: 260 + 2 * g, as: Int16.self)
        }
        storeU32(y, 0, (1 / iscale).bitPattern)
    }
}
