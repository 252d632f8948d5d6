import COpenBLAS
import Foundation
import SmolTensor

/// How an RMSNorm applies its learned weight.
public enum RMSNormWeighting: Sendable, Equatable {
    /// `x̂ · w` (Llama, Qwen, SmolLM3, Gemma 4).
    case multiply
    /// `x̂ · (1 + w)` (Gemma 1–3: the checkpoint stores w − 1).
    case onePlus
}

/// Gated-MLP activations, named as transformers' `ACT2FN` names them.
public enum Activation: String, Sendable {
    case silu
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, also `gelu_new`).
    case geluTanh = "gelu_pytorch_tanh"

    /// transformers' `hidden_act` / `hidden_activation` string.
    public init?(hfName: String) {
        switch hfName {
        case "silu", "swish": self = .silu
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": self = .geluTanh
        default: return nil
        }
    }
}

/// Attention options that differ between architectures.
public struct AttentionOptions: Sendable, Equatable {
    /// Multiplies q·k before soft-capping and masking (1/√Dh, or 1/√query_pre_attn_scalar, or 1).
    public var scale: Float
    /// Gemma 2: scores = cap · tanh(scores / cap), applied after `scale`.
    public var softcap: Float?
    /// Sliding window: a query at position p sees keys at positions p−window+1 … p
    /// (transformers' `kv_idx > q_idx − sliding_window`). nil: full causal attention.
    public var window: Int?
    /// gpt_oss attention sinks: one learned logit per query head [H] that joins each row's softmax
    /// (it takes probability mass but contributes no value). nil: none.
    public var sinks: [Float]?

    public init(scale: Float, softcap: Float? = nil, window: Int? = nil, sinks: [Float]? = nil) {
        self.scale = scale
        self.softcap = softcap
        self.window = window
        self.sinks = sinks
    }
}

/// The optimized CPU kernels: BLAS for matrix products, SIMD and multithreading elsewhere. Every
/// function has a plain twin in `ReferenceKernels` with the same signature; tests compare them.
public enum Kernels {
    /// y = x · Wᵀ through `cblas_sgemm` (PyTorch's `nn.Linear` without bias).
    /// x: [T, inDim], weight: [outDim, inDim] (HF layout) → y: [T, outDim].
    /// Up to this many rows, `matmul` runs matrix-vector products (each reads the weight once at
    /// memory bandwidth); above, one sgemm (whose packing of the weight is amortized over the rows).
    public static let matvecMaxRows = 2

    public static func matmul(_ x: [Float], rows: Int, inDim: Int, weight: [Float], outDim: Int) -> [Float] {
        precondition(x.count == rows * inDim && weight.count == outDim * inDim, "matmul shape mismatch")
        if rows == 0 || outDim == 0 || inDim == 0 { return [Float](repeating: 0, count: rows * outDim) }
        // BLAS writes every element (beta = 0), so the result is not zero-filled first: for the
        // perplexity output layer that is 268 MB a chunk of memset and page clearing.
        return [Float](unsafeUninitializedCapacity: rows * outDim) { yp, count in
            x.withUnsafeBufferPointer { xp in
                weight.withUnsafeBufferPointer { wp in
                    if rows <= matvecMaxRows {
                        // A few rows (decode, the last row of a prefill's output layer): one
                        // matrix-vector product per row. sgemm packs the whole weight into its
                        // panel layout on every call, which for one row costs more than the
                        // product itself (profiled: sgemm_incopy took 57 % of decoding).
                        for r in 0..<rows {
                            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outDim), Int32(inDim),
                                        1, wp.baseAddress, Int32(inDim), xp.baseAddress! + r * inDim, 1,
                                        0, yp.baseAddress! + r * outDim, 1)
                        }
                    } else {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                                    Int32(rows), Int32(outDim), Int32(inDim),
                                    1, xp.baseAddress, Int32(inDim),
                                    wp.baseAddress, Int32(inDim),
                                    0, yp.baseAddress, Int32(outDim))
                    }
                }
            }
            count = rows * outDim
        }
    }

    /// In-place RMSNorm of each row: x ← x / √(mean(x²) + eps) · w (or · (1 + w)); `weight` nil
    /// normalizes without a weight (Gemma 4's v_norm). x: [rows, dim], weight: [dim].
    public static func rmsNorm(_ x: inout [Float], rows: Int, dim: Int, weight: [Float]?,
                               eps: Float, weighting: RMSNormWeighting = .multiply) {
        precondition(x.count == rows * dim && (weight == nil || weight!.count == dim), "rmsNorm shape mismatch")
        // Fold the weighting into one effective weight so the inner loop is a single multiply.
        let w: [Float]? = weight.map { wt in weighting == .onePlus ? wt.map { 1 + $0 } : wt }
        x.withUnsafeMutableBufferPointer { xp in
            let base = xp.baseAddress!
            parallelFor(rows, grain: max(1, 16384 / max(dim, 1))) { r in
                let row = base + r * dim
                let ms = simdDot(row, row, dim) / Float(dim)
                let inv = 1 / (ms + eps).squareRoot()
                if let w {
                    w.withUnsafeBufferPointer { wp in
                        for i in 0..<dim { row[i] = (row[i] * inv) * wp[i] }
                    }
                } else {
                    for i in 0..<dim { row[i] *= inv }
                }
            }
        }
    }

    /// In-place rotary embedding, rotate-half (NeoX / HF) style, on the first `rotaryDim` dims of
    /// each head; dims rotaryDim… pass through. Pair i is (i, i + rotaryDim/2) with angle
    /// positions[t] · invFreq[i]. x: [T, H, Dh], invFreq: [rotaryDim/2], positions: [T].
    public static func rope(_ x: inout [Float], tokens: Int, heads: Int, headDim: Int, rotaryDim: Int,
                            invFreq: [Float], positions: [Int]) {
        precondition(x.count == tokens * heads * headDim && rotaryDim <= headDim && rotaryDim % 2 == 0
                     && invFreq.count == rotaryDim / 2 && positions.count == tokens, "rope shape mismatch")
        rope(&x, tokens: tokens, heads: heads, headDim: headDim, rotaryDim: rotaryDim,
             table: RopeTable(invFreq: invFreq, positions: positions))
    }

    /// cos/sin of every (position, frequency) pair, [T, rotaryDim/2] each: computed once per
    /// forward and shared by the layers with the same RoPE (q and k of 18 layers of Gemma 3 use two
    /// tables), instead of once per `rope` call. Same values as `rope` computes (`RopeTables.cosSin`).
    public struct RopeTable: Sendable {
        public let cos: [Float], sin: [Float]
        public let half: Int

        public init(invFreq: [Float], positions: [Int]) {
            let half = invFreq.count, T = positions.count
            var c = [Float](repeating: 0, count: T * half), s = c
            c.withUnsafeMutableBufferPointer { cp in
                s.withUnsafeMutableBufferPointer { sp in
                    let cb = cp.baseAddress!, sb = sp.baseAddress!
                    parallelFor(T, grain: max(1, 2048 / max(half, 1))) { t in
                        for i in 0..<half {
                            (cb[t * half + i], sb[t * half + i]) = RopeTables.cosSin(position: positions[t], invFreq: invFreq[i])
                        }
                    }
                }
            }
            cos = c; sin = s; self.half = half
        }
    }

    /// `rope` with precomputed cos/sin (bit-identical results).
    public static func rope(_ x: inout [Float], tokens: Int, heads: Int, headDim: Int, rotaryDim: Int, table: RopeTable) {
        let half = rotaryDim / 2
        precondition(x.count == tokens * heads * headDim && rotaryDim <= headDim && rotaryDim % 2 == 0
                     && table.half == half && table.cos.count == tokens * half, "rope shape mismatch")
        if half == 0 { return }
        x.withUnsafeMutableBufferPointer { xp in
            table.cos.withUnsafeBufferPointer { cp in
                table.sin.withUnsafeBufferPointer { sp in
                    let base = xp.baseAddress!, cb = cp.baseAddress!, sb = sp.baseAddress!
                    parallelFor(tokens, grain: max(1, 8192 / max(heads * headDim, 1))) { t in
                        let cs = cb + t * half, sn = sb + t * half
                        for h in 0..<heads {
                            let v = base + (t * heads + h) * headDim
                            for i in 0..<half {
                                let a = v[i], b = v[i + half]
                                v[i] = a * cs[i] - b * sn[i]
                                v[i + half] = b * cs[i] + a * sn[i]
                            }
                        }
                    }
                }
            }
        }
    }

    /// In-place softmax of each row (max-subtracted). x: [rows, n].
    public static func softmax(_ x: inout [Float], rows: Int, n: Int) {
        precondition(x.count == rows * n, "softmax shape mismatch")
        x.withUnsafeMutableBufferPointer { xp in
            let base = xp.baseAddress!
            parallelFor(rows, grain: max(1, 16384 / max(n, 1))) { r in
                softmaxRow(base + r * n, n)
            }
        }
    }

    @inlinable
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int) {
        var m = -Float.infinity
        for i in 0..<n where row[i] > m { m = row[i] }
        if m == -.infinity { for i in 0..<n { row[i] = 0 }; return }
        var sum: Float = 0
        for i in 0..<n { row[i] = FastMath.exp(row[i] - m) }
        for i in 0..<n { sum += row[i] }
        let inv = 1 / sum
        for i in 0..<n { row[i] *= inv }
    }

    /// softmax over the row and one extra logit `sink` whose probability is dropped:
    /// p_j = e^(x_j − m) / (Σ e^(x_i − m) + e^(sink − m)), m = max(max x, sink).
    @inlinable
    static func softmaxRowWithSink(_ row: UnsafeMutablePointer<Float>, _ n: Int, sink: Float) {
        var m = sink
        for i in 0..<n where row[i] > m { m = row[i] }
        var sum = FastMath.exp(sink - m)
        for i in 0..<n { row[i] = FastMath.exp(row[i] - m) }
        for i in 0..<n { sum += row[i] }
        let inv = 1 / sum
        for i in 0..<n { row[i] *= inv }
    }

    /// Causal grouped-query attention. Query row t is at absolute position `queryStart + t`; key
    /// row s at position s. Query head h reads key/value head h / (H / Hkv).
    /// q: [T, H, Dh], k, v: [S, Hkv, Dh] → out: [T, H, Dh].
    public static func attention(q: [Float], k: [Float], v: [Float], tokens: Int, keys: Int,
                                 heads: Int, kvHeads: Int, headDim: Int, queryStart: Int,
                                 options: AttentionOptions) -> [Float] {
        precondition(q.count == tokens * heads * headDim && k.count == keys * kvHeads * headDim
                     && v.count == k.count && kvHeads > 0 && heads % kvHeads == 0, "attention shape mismatch")
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: q.count)
        if tokens >= attentionBLASMinTokens {
            attentionBLAS(q: q, k: k, v: v, out: &out, tokens: tokens, keys: keys, heads: heads, kvHeads: kvHeads,
                          headDim: headDim, queryStart: queryStart, options: options)
            return out
        }
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        let qb = qp.baseAddress!, kb = kp.baseAddress!, vb = vp.baseAddress!, ob = op.baseAddress!
                        // One task per (query row, head): independent rows of the output.
                        parallelFor(tokens * heads, grain: max(1, 4096 / max(keys * headDim, 1))) { job in
                            let t = job / heads, h = job % heads, kvh = h / group
                            let pos = queryStart + t
                            let (lo, hi) = visibleRange(position: pos, keys: keys, window: options.window)
                            let qv = qb + (t * heads + h) * headDim
                            let o = ob + (t * heads + h) * headDim
                            if lo >= hi { return }
                            var scores = [Float](repeating: 0, count: hi - lo)
                            scores.withUnsafeMutableBufferPointer { sp in
                                let s = sp.baseAddress!
                                for j in lo..<hi {
                                    var x = simdDot(qv, kb + (j * kvHeads + kvh) * headDim, headDim) * options.scale
                                    if let cap = options.softcap { x = Foundation.tanh(x / cap) * cap }
                                    s[j - lo] = x
                                }
                                if let sinks = options.sinks {
                                    softmaxRowWithSink(s, hi - lo, sink: sinks[h])
                                } else {
                                    softmaxRow(s, hi - lo)
                                }
                                for j in lo..<hi {
                                    simdAxpy(s[j - lo], vb + (j * kvHeads + kvh) * headDim, o, headDim)
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// From this many query rows on (prefill), attention runs as BLAS products per head and block
    /// of query rows; below (decode), as dot products per row. Profiled on the real model, the dot
    /// and axpy loops took 13 % of a perplexity run.
    public static let attentionBLASMinTokens = 16
    /// Query rows per block: a block multiplies by every key one of its rows can see, so the causal
    /// mask wastes about blockRows / 2 keys per row.
    static let attentionBlockRows = 64

    /// Prefill attention: per block of query rows and query head, scores = Q·Kᵀ (sgemm over the
    /// keys the block sees), scale / soft-cap / mask / softmax (with the sink) per row on all cores,
    /// then out = P·V (sgemm). The products run one after another and OpenBLAS threads each:
    /// calling it from several threads at once made its pool spin (exec_blas_async took 38 % of a
    /// perplexity run).
    static func attentionBLAS(q: [Float], k: [Float], v: [Float], out: inout [Float], tokens: Int, keys: Int,
                              heads: Int, kvHeads: Int, headDim: Int, queryStart: Int, options: AttentionOptions) {
        let group = heads / kvHeads, Dh = headDim, B = attentionBlockRows
        let qStride = heads * Dh, kvStride = kvHeads * Dh
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: B * max(keys, 1))
        defer { scores.deallocate() }
        nonisolated(unsafe) let sb = scores
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        let qb = qp.baseAddress!, kb = kp.baseAddress!, vb = vp.baseAddress!, ob = op.baseAddress!
                        var t0 = 0
                        while t0 < tokens {
                            let m = min(B, tokens - t0)
                            let lo = visibleRange(position: queryStart + t0, keys: keys, window: options.window).0
                            let hi = visibleRange(position: queryStart + t0 + m - 1, keys: keys, window: options.window).1
                            let n = hi - lo
                            if n > 0 {
                                for h in 0..<heads {
                                    let kvh = h / group
                                    // scores[m, n] = Q[t0..<t0+m, h] · K[lo..<hi, kvh]ᵀ
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(Dh),
                                                1, qb + (t0 * heads + h) * Dh, Int32(qStride),
                                                kb + (lo * kvHeads + kvh) * Dh, Int32(kvStride), 0, scores, Int32(n))
                                    let rowStart = queryStart + t0
                                    parallelFor(m, grain: max(1, 8192 / n)) { r in
                                        let row = sb + r * n
                                        let (a, b) = visibleRange(position: rowStart + r, keys: keys, window: options.window)
                                        for j in 0..<n {
                                            if j + lo < a || j + lo >= b { row[j] = -.infinity; continue }
                                            var x = row[j] * options.scale
                                            if let cap = options.softcap { x = Foundation.tanh(x / cap) * cap }
                                            row[j] = x
                                        }
                                        if let sinks = options.sinks { softmaxRowWithSink(row, n, sink: sinks[h]) } else { softmaxRow(row, n) }
                                    }
                                    // out[t0..<t0+m, h] = P[m, n] · V[lo..<hi, kvh]
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(Dh), Int32(n),
                                                1, scores, Int32(n), vb + (lo * kvHeads + kvh) * Dh, Int32(kvStride),
                                                0, ob + (t0 * heads + h) * Dh, Int32(qStride))
                                }
                            }
                            t0 += m
                        }
                    }
                }
            }
        }
    }

    /// The key positions [lo, hi) a query at `position` may attend to.
    @inlinable
    public static func visibleRange(position: Int, keys: Int, window: Int?) -> (Int, Int) {
        let hi = min(position + 1, keys)
        var lo = 0
        if let window { lo = max(0, position - window + 1) }
        return (lo, hi)
    }

    /// One activation value in Float32: SiLU x·σ(x); GELU-tanh ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    @inlinable
    public static func activation(_ x: Float, _ act: Activation) -> Float {
        switch act {
        case .silu:
            return x / (1 + FastMath.exp(-x))
        case .geluTanh:
            // ½x(1 + tanh z) = x / (1 + e^(−2z)): the same function, without tanh's cancellation.
            let z = Float(0.7978845608028654) * (x + 0.044715 * x * x * x)
            return x / (1 + FastMath.exp(-2 * z))
        }
    }

    /// In-place activation.
    public static func activate(_ x: inout [Float], _ act: Activation) {
        x.withUnsafeMutableBufferPointer { xp in
            let base = xp.baseAddress!
            parallelFor(xp.count, grain: 16384) { i in base[i] = activation(base[i], act) }
        }
    }

    /// gate ← act(gate) · up (SwiGLU with .silu, GeGLU with .geluTanh). gate, up: [T, F].
    public static func gatedActivation(gate: inout [Float], up: [Float], _ act: Activation) {
        precondition(gate.count == up.count, "gatedActivation shape mismatch")
        gate.withUnsafeMutableBufferPointer { gp in
            up.withUnsafeBufferPointer { upp in
                let g = gp.baseAddress!, u = upp.baseAddress!, n = gp.count
                // Blocks of 16384 through the loop kernels (vectorized; `activation` per element is not).
                parallelFor((n + 16383) / 16384) { b in
                    let lo = b * 16384, k = min(16384, n - lo)
                    switch act {
                    case .silu: FastMath.swiglu(g + lo, u + lo, k)
                    case .geluTanh: FastMath.geglu(g + lo, u + lo, k)
                    }
                }
            }
        }
    }

    /// In-place logit soft-capping: x ← cap · tanh(x / cap).
    /// y = x · Wᵀ into caller memory through sgemm. x: [rows, inDim], w: [outDim, inDim],
    /// y: [rows, outDim] (overwritten). For tiles of a large output (the perplexity output layer).
    public static func matmul(_ x: UnsafePointer<Float>, rows: Int, inDim: Int, weight w: UnsafePointer<Float>,
                              outDim: Int, into y: UnsafeMutablePointer<Float>) {
        if rows == 0 || outDim == 0 { return }
        if inDim == 0 { y.update(repeating: 0, count: rows * outDim); return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outDim), Int32(inDim),
                    1, x, Int32(inDim), w, Int32(inDim), 0, y, Int32(outDim))
    }

    /// `softcap` over `n` values in place (cap · tanh(x / cap), the same arithmetic).
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count n: Int, cap: Float) {
        parallelFor(n, grain: 16384) { i in x[i] = Foundation.tanh(x[i] / cap) * cap }
    }

    public static func softcap(_ x: inout [Float], cap: Float) {
        x.withUnsafeMutableBufferPointer { xp in
            let base = xp.baseAddress!
            parallelFor(xp.count, grain: 16384) { i in base[i] = Foundation.tanh(base[i] / cap) * cap }
        }
    }

    /// Embedding rows for `tokens`, each multiplied by `scale` when given.
    /// table: [V, D] → [T, D]. Throws for a token outside the vocabulary.
    public static func embed(tokens: [Int], table: [Float], vocab: Int, dim: Int, scale: Float?) throws -> [Float] {
        precondition(table.count == vocab * dim, "embedding table shape mismatch")
        var out = [Float](repeating: 0, count: tokens.count * dim)
        for (t, id) in tokens.enumerated() {
            guard id >= 0 && id < vocab else {
                throw SmolError(.invalidArgument, at: "token \(t)", "token id \(id) outside the vocabulary (size \(vocab))")
            }
            for d in 0..<dim {
                let e = table[id * dim + d]
                out[t * dim + d] = scale.map { e * $0 } ?? e
            }
        }
        return out
    }

    /// Mean cross-entropy over the rows whose label is not `ignoreIndex` (PyTorch's
    /// `cross_entropy(reduction="mean", ignore_index=-100)`). logits: [T, V], labels: [T].
    /// Returns nil when no row counts.
    public static func crossEntropy(logits: [Float], rows: Int, vocab: Int, labels: [Int],
                                    ignoreIndex: Int = -100) -> Float? {
        precondition(logits.count == rows * vocab && labels.count == rows, "crossEntropy shape mismatch")
        var perRow = [Double](repeating: 0, count: rows)
        logits.withUnsafeBufferPointer { lp in
            let base = lp.baseAddress!
            perRow.withUnsafeMutableBufferPointer { pp in
                let pr = pp.baseAddress!
                parallelFor(rows, grain: max(1, 65536 / max(vocab, 1))) { r in
                    let label = labels[r]
                    guard label != ignoreIndex, label >= 0, label < vocab else { return }
                    let row = base + r * vocab
                    var m = -Float.infinity
                    for i in 0..<vocab where row[i] > m { m = row[i] }
                    var s = 0.0
                    for i in 0..<vocab { s += Foundation.exp(Double(row[i] - m)) }
                    pr[r] = Double(m) + Foundation.log(s) - Double(row[label])
                }
            }
        }
        var total = 0.0, n = 0
        for r in 0..<rows where labels[r] != ignoreIndex && labels[r] >= 0 && labels[r] < vocab {
            total += perRow[r]; n += 1
        }
        return n == 0 ? nil : Float(total / Double(n))
    }

    /// a ← a + b (residual connection).
    public static func add(_ a: inout [Float], _ b: [Float]) {
        precondition(a.count == b.count, "add shape mismatch")
        a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in simdAxpy(1, bp.baseAddress!, ap.baseAddress!, ap.count) }
        }
    }

    /// a ← a · s
    public static func scale(_ a: inout [Float], by s: Float) {
        for i in a.indices { a[i] *= s }
    }
}

/// RoPE frequency tables as transformers computes them (`modeling_rope_utils`).
public enum RopeTables {
    /// Default RoPE: invFreq[i] = 1 / base^(2i / dim), i < dim/2, computed in Float32 like
    /// `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`.
    public static func defaultInvFreq(base: Double, dim: Int) -> [Float] {
        (0..<(dim / 2)).map { i in
            let exponent = Float(2 * i) / Float(dim)
            return 1 / Float(Foundation.pow(base, Double(exponent)))
        }
    }

    /// Gemma 4's "proportional" RoPE: the first ⌊factor·headDim/2⌋ pairs use 1 / base^(2i / headDim)
    /// (exponent over the whole head), the remaining pairs get frequency 0 (no rotation). The
    /// rotation spans the whole head (rotaryDim = headDim).
    public static func proportionalInvFreq(base: Double, headDim: Int, partialRotaryFactor: Double,
                                           factor: Double = 1) -> [Float] {
        let ropeAngles = Int(partialRotaryFactor * Double(headDim)) / 2
        return (0..<(headDim / 2)).map { i in
            guard i < ropeAngles else { return 0 }
            let exponent = Float(2 * i) / Float(headDim)
            return 1 / Float(Foundation.pow(base, Double(exponent))) / Float(factor)
        }
    }

    /// cos and sin of position · invFreq, the product rounded to Float32 first as transformers does
    /// (`inv_freq.float() @ position_ids.float()`), the cos/sin then correctly rounded.
    @inlinable
    public static func cosSin(position: Int, invFreq: Float) -> (Float, Float) {
        let angle = Double(Float(position) * invFreq)
        return (Float(Foundation.cos(angle)), Float(Foundation.sin(angle)))
    }
}
