// exp for the hot elementwise kernels (softmax rows, SiLU, GELU-tanh, the perplexity normalizer).
// `Foundation.exp` is a libm call (10–30 ns an element here, never vectorized): profiled on the
// real model, libm's exp/expm1/tanh took 9 % of a perplexity run and the log-softmax over the
// 262,144-entry vocabulary another 6 %. This one is branch-free straight-line code, so loops that
// call it vectorize. Swift's SIMD types were not used: their conversions and min/max are generic
// calls on Linux (measured 3× slower than scalar code for the Q8_0 quantizer).
//
// Accuracy: ≤ 2 ulp against libm's expf on [-87.3, 88] (FastMathTests): Cody–Waite reduction
// x = n·ln2 + r with ln 2 split in two, |r| ≤ ln2/2, degree-7 Taylor polynomial (truncation
// |r|⁸/8! < 6e-9), scaled by 2ⁿ through the exponent bits. Below -87.3 the result is 0 (the true
// value is under 2⁻¹²⁶), above 88 it is +∞; NaN gives NaN. The plain reference kernels
// (ReferenceKernels.swift) keep libm.

public enum FastMath {
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let xc = Swift.min(Swift.max(x, -87.3), 88)
        // n = round(x / ln 2) by the 1.5·2²³ trick: the sum's low mantissa bits hold n.
        let t = xc * 1.44269504088896341 + 12582912
        let n = t - 12582912
        let r = (xc - n * 0.693359375) - n * -2.12194440e-4
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let ni = Int32(bitPattern: t.bitPattern) &- Int32(bitPattern: Float(12582912).bitPattern)
        let scale = Float(bitPattern: UInt32(bitPattern: (ni &+ 127) &<< 23))
        let y = p * scale
        // Out of range and NaN (min/max above map NaN to a bound, so it is restored here).
        return x < -87.3 ? 0 : (x > 88 ? .infinity : (x.isNaN ? x : y))
    }

    /// tanh through `exp`: sign(y)·(1 − 2/(e^{2|y|} + 1)); |y| ≥ 10 gives ±1 (as libm: tanh(10) rounds to 1).
    /// Absolute error ≤ 2e-7 (relative error grows near 0, where GELU adds it to 1).
    @inlinable @inline(__always)
    public static func tanh(_ y: Float) -> Float {
        let a = Swift.min(abs(y), 10)
        let v = 1 - 2 / (exp(2 * a) + 1)
        return y < 0 ? -v : v
    }

    // Loop kernels: one function per loop, so that LLVM sees a plain counted loop over pointers and
    // vectorizes it (called per element through a closure, the same code stayed scalar).

    /// dst[i] = exp(src[i] − shift).
    @inline(never)
    public static func expShifted(_ src: UnsafePointer<Float>, _ shift: Float, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { dst[i] = exp(src[i] - shift) }
    }

    /// x[i] = exp(x[i] − shift). `expShifted(x, s, x, n)` computes the same but runs scalar: LLVM's
    /// vectorized loop is guarded by a check that source and destination do not overlap, which an
    /// in-place call fails (perf: the training cross-entropy's exps ran scalar, 9 % of a step).
    @inline(never)
    public static func expShiftedInPlace(_ x: UnsafeMutablePointer<Float>, _ shift: Float, _ n: Int) {
        for i in 0..<n { x[i] = exp(x[i] - shift) }
    }

    /// g[i] ← silu(g[i]) · u[i] = g / (1 + e^(−g)) · u.
    @inline(never)
    public static func swiglu(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n { let x = g[i]; g[i] = x / (1 + exp(-x)) * u[i] }
    }

    /// g[i] ← gelu_tanh(g[i]) · u[i], GELU-tanh written as the logistic x / (1 + e^(−2z)),
    /// z = √(2/π)(x + 0.044715x³) (the same function, without tanh's cancellation).
    @inline(never)
    public static func geglu(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let x = g[i]
            let z = Float(0.7978845608028654) * (x + 0.044715 * x * x * x)
            g[i] = x / (1 + exp(-2 * z)) * u[i]
        }
    }
}
