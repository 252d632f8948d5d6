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
    /// finite values; blocks holding an infinity or NaN go to the reference.
    static func q8_0Fast(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, sum: Float = 0
        for j in 0..<32 {
            let a = abs(x[j])
            amax = a > amax ? a : amax
            sum += x[j]
        }
        // NaN or ±inf anywhere makes the sum non-finite (a finite overflow only costs the fast path).
        guard sum.isFinite else { return q8_0Ref(x, y) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        let q = (y + 2).assumingMemoryBound(to: Int8.self)
        for j in 0..<32 { q[j] = Int8(truncatingIfNeeded: roundHalfAwaySmall(x[j] * id)) }
    }
}
