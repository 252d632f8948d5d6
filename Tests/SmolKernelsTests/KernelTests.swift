import Foundation
import Testing
import SmolTestSupport
import SmolTensor
@testable import SmolKernels

/// Fast kernels vs their reference twins. The fast kernels accumulate in Float32 in a different
/// order (BLAS blocking, 8-lane SIMD) than the Double reference, so they agree to a few Float32
/// ulps of the largest magnitude involved: 1e-5 relative leaves room for sums over a few hundred
/// terms without hiding a real indexing or masking bug (which shows up as O(1) differences).
let kernelTolerance: Float = 1e-5

/// Deterministic pseudo-random numbers (SplitMix64), so failures reproduce.
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    }
}

@Suite struct KernelTests {
    @Test(arguments: [(1, 64, 64), (7, 33, 5), (32, 128, 512)])
    func matmulMatchesReference(shape: (Int, Int, Int)) {
        let (rows, inDim, outDim) = shape
        var rng = SeededRandom(1)
        let x = rng.floats(rows * inDim), w = rng.floats(outDim * inDim)
        let fast = Kernels.matmul(x, rows: rows, inDim: inDim, weight: w, outDim: outDim)
        let ref = ReferenceKernels.matmul(x, rows: rows, inDim: inDim, weight: w, outDim: outDim)
        #expect(relativeError(fast, ref) < kernelTolerance)
    }

    @Test func matmulKnownValues() {
        // [[1,2],[3,4]] · [[1,0],[0,1],[1,1]]ᵀ = [[1,2,3],[3,4,7]]
        let y = Kernels.matmul([1, 2, 3, 4], rows: 2, inDim: 2, weight: [1, 0, 0, 1, 1, 1], outDim: 3)
        #expect(y == [1, 2, 3, 3, 4, 7])
    }

    @Test(arguments: [RMSNormWeighting.multiply, .onePlus])
    func rmsNormMatchesReference(weighting: RMSNormWeighting) {
        var rng = SeededRandom(2)
        let rows = 9, dim = 67
        let x = rng.floats(rows * dim, scale: 3), w = rng.floats(dim)
        var fast = x, ref = x
        Kernels.rmsNorm(&fast, rows: rows, dim: dim, weight: w, eps: 1e-6, weighting: weighting)
        ReferenceKernels.rmsNorm(&ref, rows: rows, dim: dim, weight: w, eps: 1e-6, weighting: weighting)
        #expect(relativeError(fast, ref) < kernelTolerance)
        var fastNoW = x, refNoW = x
        Kernels.rmsNorm(&fastNoW, rows: rows, dim: dim, weight: nil, eps: 1e-6)
        ReferenceKernels.rmsNorm(&refNoW, rows: rows, dim: dim, weight: nil, eps: 1e-6)
        #expect(relativeError(fastNoW, refNoW) < kernelTolerance)
    }

    @Test func rmsNormUnitRows() {
        // A row of equal values c normalizes to ±1 (eps negligible): the definition, not our code.
        var x: [Float] = [2, 2, 2, 2, -3, -3, -3, -3]
        Kernels.rmsNorm(&x, rows: 2, dim: 4, weight: nil, eps: 0)
        #expect(x == [1, 1, 1, 1, -1, -1, -1, -1])
    }

    @Test(arguments: [16, 12])
    func ropeMatchesReference(rotaryDim: Int) {
        var rng = SeededRandom(3)
        let tokens = 11, heads = 3, headDim = 16
        let x = rng.floats(tokens * heads * headDim)
        let inv = RopeTables.defaultInvFreq(base: 10000, dim: rotaryDim)
        let positions = (0..<tokens).map { $0 * 3 + 2 }
        var fast = x, ref = x
        Kernels.rope(&fast, tokens: tokens, heads: heads, headDim: headDim, rotaryDim: rotaryDim, invFreq: inv, positions: positions)
        ReferenceKernels.rope(&ref, tokens: tokens, heads: heads, headDim: headDim, rotaryDim: rotaryDim, invFreq: inv, positions: positions)
        #expect(relativeError(fast, ref) < kernelTolerance)
        // Dims past rotaryDim pass through unchanged.
        for t in 0..<tokens { for h in 0..<heads { for d in rotaryDim..<headDim {
            let i = (t * heads + h) * headDim + d
            #expect(fast[i] == x[i])
        } } }
    }

    @Test func ropeTables() {
        // inv_freq[i] = base^(-2i/dim): i = 0 → 1, i = 1 with base 10000, dim 4 → 0.01.
        let inv = RopeTables.defaultInvFreq(base: 10000, dim: 4)
        #expect(inv[0] == 1)
        #expect(abs(inv[1] - 0.01) < 1e-9)
        // Proportional (Gemma 4 global layers): 512-dim head, factor 0.25 → 64 rotating pairs of 256.
        let p = RopeTables.proportionalInvFreq(base: 1_000_000, headDim: 512, partialRotaryFactor: 0.25)
        #expect(p.count == 256)
        #expect(p[0] == 1 && p[63] > 0 && p[64] == 0 && p[255] == 0)
        #expect(abs(p[1] - Float(pow(1_000_000.0, -2.0 / 512))) < 1e-7)
    }

    @Test func softmaxMatchesReference() {
        var rng = SeededRandom(4)
        let x = rng.floats(5 * 100, scale: 20)
        var fast = x, ref = x
        Kernels.softmax(&fast, rows: 5, n: 100)
        ReferenceKernels.softmax(&ref, rows: 5, n: 100)
        #expect(relativeError(fast, ref) < kernelTolerance)
    }

    @Test(arguments: [
        AttentionOptions(scale: 0.25),
        AttentionOptions(scale: 0.25, window: 4),
        AttentionOptions(scale: 0.25, softcap: 2),
        AttentionOptions(scale: 1, softcap: 50, window: 1),
    ])
    func attentionMatchesReference(options: AttentionOptions) {
        var rng = SeededRandom(5)
        let heads = 4, kvHeads = 2, headDim = 16
        // Prefill (T = S; 150 rows take the BLAS path in three blocks) and decode-like (T = 3 rows
        // at the end of S = 13 keys; 40 rows at the end of 90 keys, BLAS).
        for (tokens, keys) in [(13, 13), (3, 13), (150, 150), (40, 90)] {
            let q = rng.floats(tokens * heads * headDim, scale: 2)
            let k = rng.floats(keys * kvHeads * headDim, scale: 2)
            let v = rng.floats(keys * kvHeads * headDim)
            let start = keys - tokens
            let fast = Kernels.attention(q: q, k: k, v: v, tokens: tokens, keys: keys, heads: heads, kvHeads: kvHeads,
                                         headDim: headDim, queryStart: start, options: options)
            let ref = ReferenceKernels.attention(q: q, k: k, v: v, tokens: tokens, keys: keys, heads: heads, kvHeads: kvHeads,
                                                 headDim: headDim, queryStart: start, options: options)
            #expect(relativeError(fast, ref) < kernelTolerance)
        }
    }

    @Test func attentionFirstTokenSeesOnlyItself() {
        // Causality: at position 0 the output is exactly v[0] whatever q and k are.
        var rng = SeededRandom(6)
        let q = rng.floats(2 * 8), k = rng.floats(2 * 8), v = rng.floats(2 * 8)
        let out = Kernels.attention(q: q, k: k, v: v, tokens: 2, keys: 2, heads: 1, kvHeads: 1, headDim: 8,
                                    queryStart: 0, options: AttentionOptions(scale: 1))
        #expect(Array(out[0..<8]) == Array(v[0..<8]))
    }

    @Test(arguments: [Activation.silu, .geluTanh])
    func activationsMatchReference(act: Activation) {
        var rng = SeededRandom(7)
        let g = rng.floats(1000, scale: 6), u = rng.floats(1000)
        var fast = g, ref = g
        Kernels.gatedActivation(gate: &fast, up: u, act)
        ReferenceKernels.gatedActivation(gate: &ref, up: u, act)
        #expect(relativeError(fast, ref) < kernelTolerance)
        var a = g, b = g
        Kernels.activate(&a, act)
        ReferenceKernels.activate(&b, act)
        #expect(relativeError(a, b) < kernelTolerance)
    }

    @Test func activationKnownValues() {
        // torch.nn.functional.silu(1.0) = 0.7310586; gelu(1.0, approximate='tanh') = 0.8411920
        #expect(abs(Kernels.activation(1, .silu) - 0.7310586) < 1e-6)
        #expect(abs(Kernels.activation(1, .geluTanh) - 0.8411920) < 1e-6)
        #expect(Activation(hfName: "gelu_pytorch_tanh") == .geluTanh)
        #expect(Activation(hfName: "silu") == .silu)
    }

    @Test func softcapMatchesReference() {
        var rng = SeededRandom(8)
        let x = rng.floats(500, scale: 100)
        var fast = x, ref = x
        Kernels.softcap(&fast, cap: 30)
        ReferenceKernels.softcap(&ref, cap: 30)
        #expect(relativeError(fast, ref) < kernelTolerance)
        #expect(fast.allSatisfy { abs($0) < 30 })
    }

    @Test func crossEntropyMatchesReference() {
        var rng = SeededRandom(9)
        let rows = 6, vocab = 50
        let logits = rng.floats(rows * vocab, scale: 5)
        let labels = [3, 49, -100, 0, 7, 20]
        let fast = Kernels.crossEntropy(logits: logits, rows: rows, vocab: vocab, labels: labels)!
        let ref = ReferenceKernels.crossEntropy(logits: logits, rows: rows, vocab: vocab, labels: labels)!
        #expect(abs(fast - ref) / ref < kernelTolerance)
        // Uniform logits: the loss is log V.
        let uniform = Kernels.crossEntropy(logits: [Float](repeating: 0.5, count: vocab), rows: 1, vocab: vocab, labels: [1])!
        #expect(abs(uniform - Float(log(50.0))) < 1e-6)
        #expect(Kernels.crossEntropy(logits: logits, rows: rows, vocab: vocab, labels: [Int](repeating: -100, count: rows)) == nil)
    }

    @Test func embedScalesAndRejectsBadIds() throws {
        let table: [Float] = [1, 2, 3, 4, 5, 6] // V = 3, D = 2
        #expect(try Kernels.embed(tokens: [2, 0], table: table, vocab: 3, dim: 2, scale: 2) == [10, 12, 2, 4])
        #expect(throws: SmolError.self) { try Kernels.embed(tokens: [3], table: table, vocab: 3, dim: 2, scale: nil) }
    }
}

/// FastMath against the C library (expf/tanhf, correctly rounded in practice): exp within 2 ulp over
/// its normal range, 0 below, +∞ above; tanh within 2e-7 absolute.
@Suite struct FastMathTests {
    static let maxUlps: Float = 2
    static let tanhAbsolute: Float = 2e-7

    @Test func expMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87.3
        while x <= 88 {
            let ref = Foundation.exp(x)
            worst = max(worst, abs(FastMath.exp(x) - ref) / ref.ulp)
            x += 0.00117
        }
        #expect(worst <= Self.maxUlps, "worst error \(worst) ulp")
        #expect(FastMath.exp(-100) == 0)
        #expect(FastMath.exp(-Float.infinity) == 0)
        #expect(FastMath.exp(89) == .infinity)
        #expect(FastMath.exp(0) == 1)
        #expect(FastMath.exp(.nan).isNaN)
    }

    /// The loop kernels (vectorized) give FastMath.exp's value for every element, in place or not.
    @Test func expLoopsMatchScalar() {
        var rng = SeededRandom(5)
        let x = rng.floats(1031).map { $0 * 40 }
        let shift: Float = 3.5
        var out = [Float](repeating: 0, count: x.count), inPlace = x
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
            FastMath.expShifted(xp.baseAddress!, shift, op.baseAddress!, x.count)
        } }
        inPlace.withUnsafeMutableBufferPointer { FastMath.expShiftedInPlace($0.baseAddress!, shift, x.count) }
        let scalar = x.map { FastMath.exp($0 - shift) }
        #expect(out == scalar)
        #expect(inPlace == scalar)
    }

    @Test func tanhMatchesLibm() {
        var worst: Float = 0
        var y: Float = -12
        while y <= 12 {
            worst = max(worst, abs(FastMath.tanh(y) - Foundation.tanh(y)))
            y += 0.000731
        }
        #expect(worst <= Self.tanhAbsolute, "worst error \(worst)")
        #expect(FastMath.tanh(0) == 0 && FastMath.tanh(30) == 1 && FastMath.tanh(-30) == -1)
    }
}

/// The few-row expert product (CSmolKernels/gemm_rows.c, AVX2 tiles of 6 × 16 and 6 × 8, 16-wide
/// column panels for x · w) against its plain twin, over sizes that hit every tail: rows not a
/// multiple of 6, 8 or 16, output widths not a multiple of 6 or 16, reductions shorter and longer
/// than one 128-row panel, row strides wider than the matrices, overwrite and accumulate.
/// Tolerance: each element is a Float32 FMA chain against a Double sum, 1e-5 of Σ|x·w| for k ≤ 300.
@Suite struct RowGemmTests {
    @Test(arguments: [(1, 1, 1), (5, 7, 9), (8, 16, 130), (13, 30, 300), (16, 37, 128), (33, 48, 257), (6, 12, 64)])
    func fewRowProductMatchesReference(shape: (Int, Int, Int)) {
        let (n, outDim, k) = shape
        var rng = SeededRandom(UInt64(n * 1000 + outDim * 10 + k))
        for transposed in [true, false] {
            for accumulate in [false, true] {
                let ldx = k + 3, ldc = outDim + 2
                let ldw = transposed ? k + 5 : outDim + 5
                let x = rng.floats(n * ldx), w = rng.floats((transposed ? outDim : k) * ldw)
                let c0 = rng.floats(n * ldc)
                var fast = c0, ref = c0
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
                    fast.withUnsafeMutableBufferPointer { cp in
                        Kernels.gemmRows(transposedWeight: transposed, n: n, outDim: outDim, k: k, xp.baseAddress!, ldx: ldx,
                                         wp.baseAddress!, ldw: ldw, accumulate: accumulate, cp.baseAddress!, ldc: ldc)
                    }
                    ref.withUnsafeMutableBufferPointer { cp in
                        ReferenceKernels.gemmRows(transposedWeight: transposed, n: n, outDim: outDim, k: k, xp.baseAddress!, ldx: ldx,
                                                  wp.baseAddress!, ldw: ldw, accumulate: accumulate, cp.baseAddress!, ldc: ldc)
                    }
                } }
                for t in 0..<n {
                    for o in 0..<ldc {
                        let i = t * ldc + o
                        if o >= outDim { #expect(fast[i] == c0[i], "column \(o) past outDim was written"); continue }
                        var mag: Double = accumulate ? Double(abs(c0[i])) : 0
                        for j in 0..<k { mag += Double(abs(x[t * ldx + j] * (transposed ? w[o * ldw + j] : w[j * ldw + o]))) }
                        #expect(Double(abs(fast[i] - ref[i])) <= 1e-5 * mag + 1e-30,
                                "n \(n) out \(outDim) k \(k) transposed \(transposed) accumulate \(accumulate) [\(t), \(o)]: \(fast[i]) vs \(ref[i])")
                    }
                }
            }
        }
    }
}
