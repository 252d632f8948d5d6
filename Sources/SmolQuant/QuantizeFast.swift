import SmolTensor

// Fast twins of the simple quantizers (Quantize.swift holds the plain references, which tests
// compare these against bit for bit). Branch-free scalar loops over a block, which LLVM
// vectorizes at the baseline (SSE2). Swift's SIMD types were tried first and measured 3× slower
// than the scalar reference: their float → integer conversions and pointwiseMax are not
// specialized for the concrete types in the standard library on Linux (generic calls per lane).

extension Quantizers {
    /// roundf (half away from zero) for |v| < 2²²: ggml's round-half-even trick (add 1.5·2²³,
    /// read the mantissa), then ties (v − r = ±0.5 exactly, an exact difference here) moved away
    /// from zero. Equal to `roundToInt(v)` on that range.
    @inline(__always)
    static func roundHalfAwaySmall(_ v: Float) -> Int32 {
        let r = Int32(bitPattern: (v + 12582912).bitPattern & 0x007f_ffff) &- 0x0040_0000
        let d = v - Float(r)
        let up: Int32 = d == 0.5 && v > 0 ? 1 : 0
        let down: Int32 = d == -0.5 && v < 0 ? 1 : 0
        return r &+ up &- down
    }

    /// `q8_0Ref` without branches in the element loops: identical output for every block of
    /// finite values with a finite 1/d; blocks holding an infinity or NaN, or subnormal ones, go
    /// to the reference.
    static func q8_0Fast(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, sum: Float = 0
        for j in 0..<32 {
            let a = abs(x[j])
            amax = a > amax ? a : amax
            sum += x[j]
        }
        // NaN or ±inf anywhere makes the sum non-finite (a finite overflow only costs the fast path).
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        // 1/d overflows for subnormal d: the reference defines what inf·x gives.
        guard sum.isFinite, id.isFinite else { return q8_0Ref(x, y) }
        storeHalf(y, 0, d)
        let q = (y + 2).assumingMemoryBound(to: Int8.self)
        for j in 0..<32 { q[j] = Int8(truncatingIfNeeded: roundHalfAwaySmall(x[j] * id)) }
    }

    /// floor(v) for 0 ≤ v < 2²² (there equal to C's truncating conversion): round half to even by
    /// the 1.5·2²³ trick, then one down where that rounded up.
    @inline(__always)
    static func floorSmall(_ v: Float) -> Int32 {
        let r = Int32(bitPattern: (v + 12582912).bitPattern & 0x007f_ffff) &- 0x0040_0000
        return r &- (Float(r) > v ? 1 : 0)
    }

    /// The value with the largest magnitude (the first one on ties), without branches; also
    /// whether the block is finite (a NaN or infinity makes the sum non-finite).
    @inline(__always)
    static func signedAbsMaxFast(_ x: UnsafePointer<Float>) -> (Float, Bool) {
        var amax: Float = 0, max: Float = 0, sum: Float = 0
        for j in 0..<32 {
            let a = abs(x[j])
            let gt = a > amax
            max = gt ? x[j] : max
            amax = gt ? a : amax
            sum += x[j]
        }
        return (max, sum.isFinite)
    }

    /// `q4_0Ref` (nmax 8: codes ⌊x·id + 8.5⌋ capped at 15) and `q5_0Ref` (nmax 16, cap 31) without
    /// branches in the element loops. Finite blocks with a finite 1/d only (then x·id ∈ [−nmax, nmax]
    /// up to rounding, so x·id + nmax + 0.5 ≥ 0 and truncation is floor); others go to the reference.
    static func q4_0Fast(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let (m, finite) = signedAbsMaxFast(x)
        let d = m / -8
        let id: Float = d != 0 ? 1 / d : 0
        guard finite, id.isFinite else { return q4_0Ref(x, y) }
        storeHalf(y, 0, d)
        let q = (y + 2).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            let q0 = Swift.min(15, floorSmall(x[j] * id + 8.5)), q1 = Swift.min(15, floorSmall(x[j + 16] * id + 8.5))
            q[j] = UInt8(truncatingIfNeeded: q0 | q1 << 4)
        }
    }

    static func q5_0Fast(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        let (m, finite) = signedAbsMaxFast(x)
        let d = m / -16
        let id: Float = d != 0 ? 1 / d : 0
        guard finite, id.isFinite else { return q5_0Ref(x, y) }
        storeHalf(y, 0, d)
        let q = (y + 6).assumingMemoryBound(to: UInt8.self)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let q0 = Swift.min(31, floorSmall(x[j] * id + 16.5)), q1 = Swift.min(31, floorSmall(x[j + 16] * id + 16.5))
            q[j] = UInt8(truncatingIfNeeded: (q0 & 0xF) | (q1 & 0xF) << 4)
            qh |= UInt32(truncatingIfNeeded: (q0 >> 4) & 1) << UInt32(j)
            qh |= UInt32(truncatingIfNeeded: (q1 >> 4) & 1) << UInt32(j + 16)
        }
        storeU32(y, 2, qh)
    }
}
