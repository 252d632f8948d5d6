import COpenBLAS
import Dispatch
import Foundation
import SmolKernels

// Forward helpers and backward passes of every op the LoRA training forward uses. Shapes follow the
// SmolKernels legend: T tokens, D hidden, H / Hkv heads, Dh head dim, F ffn size, V vocab, r rank.
// All tensors are row-major Float32. Gradients are only ever taken with respect to activations
// and LoRA matrices: the base weights are read, never differentiated.
//
// Each backward here has a Float64 finite-difference check in SmolTrainTests (TrainOpsTests).

/// The training ops, on Float32 arrays. Every matrix product goes through `cblas_sgemm`.
public enum TrainOps {
    /// C[m, n] = alpha · op(A) · op(B) + beta · C with leading dimensions (row-major cblas_sgemm).
    /// op(A) is [m, k], op(B) is [k, n].
    @inlinable
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                            _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS with k = 0 only scales C; do it here so beta = 0 clears it (as sgemm specifies).
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y = x · Wᵀ. x: [T, inDim], w: [outDim, inDim] → [T, outDim].
    public static func linear(_ x: [Float], rows: Int, inDim: Int, weight: [Float], outDim: Int) -> [Float] {
        Kernels.matmul(x, rows: rows, inDim: inDim, weight: weight, outDim: outDim)
    }

    /// dx += dy · W (the input gradient of y = x · Wᵀ). dy: [T, outDim], w: [outDim, inDim],
    /// dx: [T, inDim].
    public static func linearBackward(_ dy: [Float], rows: Int, outDim: Int, weight: [Float], inDim: Int,
                                      into dx: inout [Float]) {
        precondition(dy.count == rows * outDim && weight.count == outDim * inDim && dx.count == rows * inDim,
                     "linearBackward shape mismatch")
        dy.withUnsafeBufferPointer { d in weight.withUnsafeBufferPointer { w in dx.withUnsafeMutableBufferPointer { o in
            gemm(transA: false, transB: false, m: rows, n: inDim, k: outDim, d.baseAddress!, lda: outDim,
                 w.baseAddress!, ldb: inDim, beta: 1, o.baseAddress!, ldc: inDim)
        } } }
    }

    /// The LoRA branch: y += scale · (x · Aᵀ) · Bᵀ. Returns u = x · Aᵀ [T, r] (kept for backward).
    /// x: [T, in], a: [r, in], b: [out, r], y: [T, out].
    public static func loraForward(_ x: [Float], rows: Int, inDim: Int, outDim: Int, rank: Int, scale: Float,
                                   a: [Float], b: [Float], into y: inout [Float]) -> [Float] {
        precondition(x.count == rows * inDim && a.count == rank * inDim && b.count == outDim * rank
                     && y.count == rows * outDim, "loraForward shape mismatch")
        let u = Kernels.matmul(x, rows: rows, inDim: inDim, weight: a, outDim: rank)
        u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
            gemm(transA: false, transB: true, m: rows, n: outDim, k: rank, alpha: scale, up.baseAddress!, lda: rank,
                 bp.baseAddress!, ldb: rank, beta: 1, yp.baseAddress!, ldc: outDim)
        } } }
        return u
    }

    /// Backward of the LoRA branch, given dy [T, out]: dB += scale · dyᵀ·u, du = scale · dy·B,
    /// dA += duᵀ·x, dx += du·A (skipped when not `inputGradient`). (The frozen W's share, dx += dy·W, is `linearBackward`.)
    public static func loraBackward(_ dy: [Float], x: [Float], u: [Float], rows: Int, inDim: Int, outDim: Int,
                                    rank: Int, scale: Float, a: [Float], b: [Float],
                                    gradA: inout [Float], gradB: inout [Float], dx: inout [Float],
                                    inputGradient: Bool = true) {
        precondition(dy.count == rows * outDim && x.count == rows * inDim && u.count == rows * rank
                     && gradA.count == a.count && gradB.count == b.count && (dx.count == x.count || !inputGradient),
                     "loraBackward shape mismatch")
        var du = [Float](repeating: 0, count: rows * rank)
        dy.withUnsafeBufferPointer { dyp in u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in
            gradB.withUnsafeMutableBufferPointer { gb in
                gemm(transA: true, transB: false, m: outDim, n: rank, k: rows, alpha: scale, dyp.baseAddress!, lda: outDim,
                     up.baseAddress!, ldb: rank, beta: 1, gb.baseAddress!, ldc: rank)
            }
            du.withUnsafeMutableBufferPointer { dup in
                gemm(transA: false, transB: false, m: rows, n: rank, k: outDim, alpha: scale, dyp.baseAddress!, lda: outDim,
                     bp.baseAddress!, ldb: rank, beta: 0, dup.baseAddress!, ldc: rank)
            }
        } } }
        du.withUnsafeBufferPointer { dup in x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in
            gradA.withUnsafeMutableBufferPointer { ga in
                gemm(transA: true, transB: false, m: rank, n: inDim, k: rows, dup.baseAddress!, lda: rank,
                     xp.baseAddress!, ldb: inDim, beta: 1, ga.baseAddress!, ldc: inDim)
            }
            if inputGradient {
                dx.withUnsafeMutableBufferPointer { dxp in
                    gemm(transA: false, transB: false, m: rows, n: inDim, k: rank, dup.baseAddress!, lda: rank,
                         ap.baseAddress!, ldb: inDim, beta: 1, dxp.baseAddress!, ldc: inDim)
                }
            }
        } } }
    }

    /// Backward of `Kernels.rmsNorm` (y = x / √(mean(x²) + eps) · w'), w' = w, 1 + w, or 1 without
    /// a weight: dx = inv · (g − x̂ · mean(g · x̂)), g = dy · w', x̂ = x · inv.
    /// x: the norm's input [rows, dim], dy: [rows, dim] → dx [rows, dim].
    public static func rmsNormBackward(_ dy: [Float], input x: [Float], rows: Int, dim: Int, weight: [Float]?,
                                       eps: Float, weighting: RMSNormWeighting = .multiply) -> [Float] {
        precondition(x.count == rows * dim && dy.count == x.count && (weight == nil || weight!.count == dim),
                     "rmsNormBackward shape mismatch")
        let w: [Float]? = weight.map { wt in weighting == .onePlus ? wt.map { 1 + $0 } : wt }
        var dx = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in dx.withUnsafeMutableBufferPointer { op in
            let xb = xp.baseAddress!, db = dp.baseAddress!, ob = op.baseAddress!
            parallelFor(rows, grain: max(1, 16384 / max(dim, 1))) { r in
                let xr = xb + r * dim, dr = db + r * dim, o = ob + r * dim
                var ss: Float = 0
                for i in 0..<dim { ss += xr[i] * xr[i] }
                let inv = 1 / (ss / Float(dim) + eps).squareRoot()
                var dot: Double = 0
                for i in 0..<dim {
                    let g = dr[i] * (w?[i] ?? 1)
                    dot += Double(g) * Double(xr[i] * inv)
                }
                let mean = Float(dot / Double(dim))
                for i in 0..<dim {
                    let g = dr[i] * (w?[i] ?? 1)
                    o[i] = inv * (g - xr[i] * inv * mean)
                }
            }
        } } }
        return dx
    }

    /// Backward of `Kernels.rope`: the rotation is orthogonal, so its transpose is the rotation by
    /// the opposite angle. `Kernels.rope` computes the angle as Float(position) · invFreq, and
    /// Float(−p) · f = −(Float(p) · f) exactly, so negated positions give exactly cos(θ), −sin(θ).
    public static func ropeBackward(_ g: inout [Float], tokens: Int, heads: Int, headDim: Int, rotaryDim: Int,
                                    invFreq: [Float], positions: [Int]) {
        Kernels.rope(&g, tokens: tokens, heads: heads, headDim: headDim, rotaryDim: rotaryDim,
                     invFreq: invFreq, positions: positions.map { -$0 })
    }

    /// Derivative of one activation (as `Kernels.activation` defines it), in Float.
    @inlinable
    public static func activationDerivative(_ x: Float, _ act: Activation) -> Float {
        switch act {
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 + x * (1 - s))
        case .geluTanh:
            let k: Float = 0.7978845608028654
            let inner = k * (x + 0.044715 * x * x * x)
            let t = Foundation.tanh(inner)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
        }
    }

    /// act(x) and act'(x) together (one exp or tanh, SmolKernels' FastMath as the engine's kernels), in Float.
    @inlinable
    public static func activationAndDerivative(_ x: Float, _ act: Activation) -> (Float, Float) {
        switch act {
        case .silu:
            let s = 1 / (1 + FastMath.exp(-x))
            return (x * s, s * (1 + x * (1 - s)))
        case .geluTanh:
            let k: Float = 0.7978845608028654
            let t = FastMath.tanh(k * (x + 0.044715 * x * x * x))
            return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
        }
    }

    /// Backward of out = act(gate) · up: dgate = dout · up · act'(gate), dup = dout · act(gate).
    public static func gatedActivationBackward(_ dout: [Float], gate: [Float], up: [Float], _ act: Activation)
        -> (dgate: [Float], dup: [Float]) {
        precondition(dout.count == gate.count && gate.count == up.count, "gatedActivationBackward shape mismatch")
        var dg = [Float](repeating: 0, count: gate.count), du = dg
        dout.withUnsafeBufferPointer { dp in gate.withUnsafeBufferPointer { gp in up.withUnsafeBufferPointer { upp in
            dg.withUnsafeMutableBufferPointer { dgp in du.withUnsafeMutableBufferPointer { dup in
                let d = dp.baseAddress!, g = gp.baseAddress!, u = upp.baseAddress!
                let og = dgp.baseAddress!, ou = dup.baseAddress!
                let chunk = 16384, n = gp.count
                parallelFor((n + chunk - 1) / chunk) { c in
                    let start = c * chunk
                    gatedBackwardLoop(d + start, g + start, u + start, og + start, ou + start, min(chunk, n - start), act)
                }
            } }
        } } }
        return (dg, du)
    }

    /// One counted loop per activation, so LLVM vectorizes it (called per element through the
    /// parallel-for closure, the same arithmetic stayed scalar: 3.4 % of a dense training step).
    @inline(never)
    static func gatedBackwardLoop(_ d: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>,
                                  _ og: UnsafeMutablePointer<Float>, _ ou: UnsafeMutablePointer<Float>, _ n: Int,
                                  _ act: Activation) {
        switch act {
        case .silu:
            for i in 0..<n {
                let (a, da) = activationAndDerivative(g[i], .silu)
                og[i] = d[i] * u[i] * da
                ou[i] = d[i] * a
            }
        case .geluTanh:
            for i in 0..<n {
                let (a, da) = activationAndDerivative(g[i], .geluTanh)
                og[i] = d[i] * u[i] * da
                ou[i] = d[i] * a
            }
        }
    }

    /// Backward of c = cap · tanh(x / cap) given the capped values: dx = dc · (1 − (c / cap)²).
    public static func softcapBackward(_ dc: inout [Float], capped c: [Float], cap: Float) {
        precondition(dc.count == c.count, "softcapBackward shape mismatch")
        for i in dc.indices { let t = c[i] / cap; dc[i] *= 1 - t * t }
    }

    // MARK: Attention

    /// Scores of one head, [T, S] for queries at positions queryStart… and keys 0..<S: scaled,
    /// soft-capped, masked (−∞) and turned into probabilities (with the head's sink when given).
    /// Masked entries are 0. Also returns the capped scores when soft-capping (needed by backward).
    static func attentionProbabilities(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int,
                                       tokens T: Int, keys S: Int, headDim Dh: Int, queryStart: Int,
                                       options: AttentionOptions, sink: Float?,
                                       into p: UnsafeMutablePointer<Float>, capped: UnsafeMutablePointer<Float>?) {
        gemm(transA: false, transB: true, m: T, n: S, k: Dh, q, lda: ldq, k, ldb: ldk, beta: 0, p, ldc: S)
        parallelFor(T, grain: max(1, 8192 / max(S, 1))) { t in
            let row = p + t * S
            let (lo, hi) = Kernels.visibleRange(position: queryStart + t, keys: S, window: options.window)
            for j in 0..<S {
                // Scale as the engine does: (q·k) · scale, then the cap.
                var x = row[j] * options.scale
                if let cap = options.softcap { x = Foundation.tanh(x / cap) * cap }
                capped?[t * S + j] = x
                row[j] = x
            }
            if lo >= hi { for j in 0..<S { row[j] = 0 }; return }
            var m = sink ?? -Float.infinity
            for j in lo..<hi where row[j] > m { m = row[j] }
            var sum: Float = sink.map { Foundation.exp($0 - m) } ?? 0
            for j in lo..<hi { let e = FastMath.exp(row[j] - m); row[j] = e; sum += e }
            let inv = 1 / sum
            for j in 0..<S { row[j] = (j >= lo && j < hi) ? row[j] * inv : 0 }
        }
    }

    /// Causal (optionally sliding-window) grouped-query attention, as `Kernels.attention`, with the
    /// products done per head by sgemm. q: [T, H, Dh], k, v: [S, Hkv, Dh] → [T, H, Dh].
    public static func attentionForward(q: [Float], k: [Float], v: [Float], tokens T: Int, keys S: Int,
                                        heads H: Int, kvHeads Hkv: Int, headDim Dh: Int, queryStart: Int = 0,
                                        options: AttentionOptions) -> [Float] {
        precondition(q.count == T * H * Dh && k.count == S * Hkv * Dh && v.count == k.count && H % Hkv == 0,
                     "attentionForward shape mismatch")
        let group = H / Hkv
        var out = [Float](repeating: 0, count: q.count)
        var p = [Float](repeating: 0, count: T * S)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in p.withUnsafeMutableBufferPointer { pp in
                for h in 0..<H {
                    let kvh = h / group
                    attentionProbabilities(q: qp.baseAddress! + h * Dh, ldq: H * Dh, k: kp.baseAddress! + kvh * Dh,
                                           ldk: Hkv * Dh, tokens: T, keys: S, headDim: Dh, queryStart: queryStart,
                                           options: options, sink: options.sinks?[h], into: pp.baseAddress!, capped: nil)
                    gemm(transA: false, transB: false, m: T, n: Dh, k: S, pp.baseAddress!, lda: S,
                         vp.baseAddress! + kvh * Dh, ldb: Hkv * Dh, beta: 0, op.baseAddress! + h * Dh, ldc: H * Dh)
                }
            } }
        } } }
        return out
    }

    /// Backward of `attentionForward`, recomputing the probabilities per head (nothing [T, S] is
    /// kept between forward and backward). Returns dq [T, H, Dh]; adds into dk, dv [S, Hkv, Dh].
    /// dS = P ⊙ (dP − rowsum(P ⊙ dP)) holds with a sink too (the sink carries no value).
    public static func attentionBackward(_ dout: [Float], q: [Float], k: [Float], v: [Float], tokens T: Int,
                                         keys S: Int, heads H: Int, kvHeads Hkv: Int, headDim Dh: Int,
                                         queryStart: Int = 0, options: AttentionOptions,
                                         dk: inout [Float], dv: inout [Float]) -> [Float] {
        precondition(q.count == T * H * Dh && k.count == S * Hkv * Dh && v.count == k.count && dout.count == q.count
                     && dk.count == k.count && dv.count == v.count, "attentionBackward shape mismatch")
        let group = H / Hkv
        var dq = [Float](repeating: 0, count: q.count)
        var p = [Float](repeating: 0, count: T * S), dp = p
        var capped = options.softcap == nil ? [] : p
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        dout.withUnsafeBufferPointer { dop in dq.withUnsafeMutableBufferPointer { dqp in
        dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
        p.withUnsafeMutableBufferPointer { pp in dp.withUnsafeMutableBufferPointer { dpp in
        capped.withUnsafeMutableBufferPointer { cp in
            let P = pp.baseAddress!, dP = dpp.baseAddress!
            for h in 0..<H {
                let kvh = h / group
                let qh = qp.baseAddress! + h * Dh, kh = kp.baseAddress! + kvh * Dh, vh = vp.baseAddress! + kvh * Dh
                let doh = dop.baseAddress! + h * Dh
                attentionProbabilities(q: qh, ldq: H * Dh, k: kh, ldk: Hkv * Dh, tokens: T, keys: S, headDim: Dh,
                                       queryStart: queryStart, options: options, sink: options.sinks?[h],
                                       into: P, capped: options.softcap == nil ? nil : cp.baseAddress)
                // dP = dO · Vᵀ  [T, S]
                gemm(transA: false, transB: true, m: T, n: S, k: Dh, doh, lda: H * Dh, vh, ldb: Hkv * Dh,
                     beta: 0, dP, ldc: S)
                // dV += Pᵀ · dO  [S, Dh]
                gemm(transA: true, transB: false, m: S, n: Dh, k: T, P, lda: S, doh, ldb: H * Dh,
                     beta: 1, dvp.baseAddress! + kvh * Dh, ldc: Hkv * Dh)
                // dS (in place in dP), then through the cap, into d(q·k) (the scale goes into the gemms).
                let cap = options.softcap, cb = cap == nil ? nil : cp.baseAddress
                parallelFor(T, grain: max(1, 8192 / max(S, 1))) { t in
                    let pr = P + t * S, dr = dP + t * S
                    var dot: Float = 0
                    for j in 0..<S { dot += pr[j] * dr[j] }
                    for j in 0..<S {
                        var g = pr[j] * (dr[j] - dot)
                        if let cap, let cb { let c = cb[t * S + j] / cap; g *= 1 - c * c }
                        dr[j] = g
                    }
                }
                // dQ = scale · dS · K  [T, Dh];  dK += scale · dSᵀ · Q  [S, Dh]
                gemm(transA: false, transB: false, m: T, n: Dh, k: S, alpha: options.scale, dP, lda: S, kh,
                     ldb: Hkv * Dh, beta: 0, dqp.baseAddress! + h * Dh, ldc: H * Dh)
                gemm(transA: true, transB: false, m: S, n: Dh, k: T, alpha: options.scale, dP, lda: S, qh,
                     ldb: H * Dh, beta: 1, dkp.baseAddress! + kvh * Dh, ldc: Hkv * Dh)
            }
        } } } } } } } } } }
        return dq
    }

    // MARK: Loss

    /// max x[0..<n] (8 lanes).
    @inlinable
    static func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { acc = pointwiseMax(acc, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)); i += 8 }
        var m = acc.max()
        while i < n { m = Swift.max(m, x[i]); i += 1 }
        return m
    }

    /// Σ x[0..<n]: 8 Float lanes within blocks of 1024 (vectorized), the blocks added in Double.
    @inlinable
    static func blockSum(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        var total = 0.0, start = 0
        while start < n {
            let end = min(n, start + 1024)
            var acc = SIMD8<Float>(repeating: 0)
            var i = start
            while i + 8 <= end {
                acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
                i += 8
            }
            var tail: Float = 0
            while i < end { tail += x[i]; i += 1 }
            total += Double(acc.sum()) + Double(tail)
            start = end
        }
        return total
    }

    /// Sum of next-token negative log-likelihoods over the rows with a label (labels[r] in 0..<V;
    /// anything else is ignored), and d(gradScale · sum)/dlogits written over `logits`.
    /// logits: [R, V] (already soft-capped when the model caps), labels: [R].
    public static func crossEntropyBackward(_ logits: inout [Float], rows R: Int, vocab V: Int, labels: [Int],
                                            gradScale: Float) -> (nll: Double, count: Int) {
        precondition(logits.count == R * V && labels.count == R, "crossEntropyBackward shape mismatch")
        var perRow = [Double](repeating: 0, count: R)
        logits.withUnsafeMutableBufferPointer { lp in perRow.withUnsafeMutableBufferPointer { pr in
            let base = lp.baseAddress!, prb = pr.baseAddress!
            parallelFor(R, grain: max(1, 65536 / max(V, 1))) { r in
                let row = base + r * V
                let label = labels[r]
                guard label >= 0 && label < V else { for i in 0..<V { row[i] = 0 }; return }
                let m = rowMax(row, V)
                let target = row[label]
                // One exp per logit: e = exp(x − m) kept in place (FastMath's vectorized loop), summed
                // in 8 Float lanes per block of 1024 and the blocks in Double.
                FastMath.expShiftedInPlace(row, m, V)
                let s = blockSum(row, V)
                prb[r] = Double(m) + Foundation.log(s) - Double(target)
                let k = Float(1 / s) * gradScale
                for i in 0..<V { row[i] *= k }
                row[label] -= gradScale
            }
        } }
        var total = 0.0, n = 0
        for r in 0..<R where labels[r] >= 0 && labels[r] < V { total += perRow[r]; n += 1 }
        return (total, n)
    }
}
