// Vectorized exp for the hot elementwise kernels (softmax, activations, log-softmax). The scalar
// `Foundation.exp` costs 10–30 ns an element here, which made GELU and the perplexity
// normalizer as slow as a third of all matmuls. Accuracy: ≤ 2 ulp against the correctly
// rounded exp on [-87.3, 88] (Cody–Waite reduction with ln 2 split in two, degree-7 Taylor
// polynomial: truncation error |r|⁸/8! < 6e-9 for |r| ≤ ln2/2); below -87.3 the result is 0
// (the true value is < 2⁻¹²⁶, a denormal), above 88 it is +∞. Reference twins keep Foundation.exp.

public enum FastMath {
    /// eˣ per lane (see the top of this file for accuracy).
    @inlinable @inline(__always)
    public static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let lo = SIMD8<Float>(repeating: -87.3), hi = SIMD8<Float>(repeating: 88)
        let xc = x.clamped(lowerBound: lo, upperBound: hi)
        // n = round(x / ln 2) by the 1.5·2²³ trick: the sum's low mantissa bits hold n.
        let magic = SIMD8<Float>(repeating: 12582912)
        let t = xc * SIMD8<Float>(repeating: 1.44269504088896341) + magic
        let n = t - magic
        let r = (xc - n * SIMD8<Float>(repeating: 0.693359375)) - n * SIMD8<Float>(repeating: -2.12194440e-4)
        var p = SIMD8<Float>(repeating: 1.0 / 5040)
        p = p * r + SIMD8<Float>(repeating: 1.0 / 720)
        p = p * r + SIMD8<Float>(repeating: 1.0 / 120)
        p = p * r + SIMD8<Float>(repeating: 1.0 / 24)
        p = p * r + SIMD8<Float>(repeating: 1.0 / 6)
        p = p * r + SIMD8<Float>(repeating: 0.5)
        p = p * r + SIMD8<Float>(repeating: 1)
        p = p * r + SIMD8<Float>(repeating: 1)
        let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
        var y = p * scale
        y.replace(with: 0, where: x .< lo)
        y.replace(with: .infinity, where: x .> hi)
        return y
    }

    /// Scalar through the same code (tails of rows), so a row's elements all use one formula.
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(SIMD8<Float>(repeating: x))[0] }
}
