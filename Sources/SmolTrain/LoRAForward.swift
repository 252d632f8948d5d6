import Foundation
import SmolKernels
import SmolModels
import SmolTensor

/// Choices of the training forward where transformers' own implementations disagree.
public struct TrainOptions: Sendable, Equatable {
    /// Apply Gemma 2's `attn_logit_softcapping` inside attention. transformers' default SDPA
    /// attention drops it, so reproducing a plain `from_pretrained` model (the fixtures) needs false
    /// (same meaning as `EngineOptions.attentionSoftcapping`).
    public var attentionSoftcapping: Bool
    /// The output layer and loss run over blocks of rows of at most this many logits (Float32
    /// elements; default 2²⁶ = 256 MiB, 256 rows of Gemma 3's 262k vocabulary), so a long
    /// sequence's [rows, vocab] logits never exist whole. Every row's loss and gradient depend on
    /// that row alone: any value gives the same numbers. Each block streams the whole output layer
    /// through sgemm twice, so small blocks cost time: Gemma 3 270M F32, 256-token steps, 2 loaded
    /// cores: 64-row blocks 1.51 GB peak and 5.2–6.9 s a step, one block 1.71 GB and 4.7–5.0 s.
    public var headBlockElements: Int
    /// The same for an output layer kept block-encoded (QLoRA on a GGUF; default 2²⁸ = 1 GiB): each
    /// block dequantizes the whole output layer twice (forward and backward), which on Gemma 3 270M
    /// (Q6_K, 168 M weights) cost more than the blocks saved (5.2 → 10 s a 256-token step).
    public var quantizedHeadBlockElements: Int
    /// Carry the backward down to the embeddings even below the lowest layer with a LoRA pair (the
    /// twin of the default, which stops there as autograd does: the same gradients, for tests).
    public var fullBackward = false
    public init(attentionSoftcapping: Bool = true, headBlockElements: Int = 1 << 26, quantizedHeadBlockElements: Int = 1 << 28) {
        self.attentionSoftcapping = attentionSoftcapping
        self.headBlockElements = headBlockElements
        self.quantizedHeadBlockElements = quantizedHeadBlockElements
    }
    /// What transformers 5 computes with its default attention (SDPA).
    public static let transformersSDPA = TrainOptions(attentionSoftcapping: false)
}

/// What one forward + backward returns: the summed next-token NLL over the labelled rows and how
/// many rows had a label (the loss is nll / count). Gradients go into the caller's accumulator.
public struct LossResult: Sendable {
    public var nll: Double
    public var count: Int
    public var loss: Double { count == 0 ? 0 : nll / Double(count) }
}

/// A frozen dense decoder with LoRA adapters: the exact Float32 forward of `SmolEngine.Engine`
/// (same kernels, same op order), keeping what the backward needs, and a backward that produces
/// gradients for the LoRA matrices only. No base weight gets a gradient and W + ΔW is never formed.
public final class LoRAModel: Sendable {
    public let model: DenseDecoderModel
    public let options: TrainOptions
    /// Weights kept in their stored encoding (QLoRA on a GGUF); nil: all Float32 from `model`.
    public let quantized: QuantizedBase?

    public init(model: DenseDecoderModel, options: TrainOptions = TrainOptions(), quantized: QuantizedBase? = nil) throws {
        self.model = model
        self.options = options
        self.quantized = quantized
    }

    public var spec: DenseDecoderSpec { model.spec }

    /// Next-token labels for `tokens` (row t predicts token t + 1; the last row has none), as
    /// transformers' `labels=input_ids`: −100 marks a row without a label.
    public static func shiftedLabels(_ tokens: [Int], mask: [Bool]? = nil) -> [Int] {
        tokens.indices.map { t in
            guard t + 1 < tokens.count else { return -100 }
            if let mask, !mask[t + 1] { return -100 }
            return tokens[t + 1]
        }
    }

    /// Loss and gradients of one sequence with labels = shifted tokens, the loss averaged over its
    /// labelled rows (what transformers computes for `model(input_ids, labels=input_ids)`).
    public func lossAndGradients(tokens: [Int], adapter: LoRAAdapter) throws -> (loss: Double, gradients: LoRAAdapter) {
        let labels = Self.shiftedLabels(tokens)
        let count = labels.filter { $0 >= 0 }.count
        guard count > 0 else { throw SmolError(.invalidArgument, "a training sequence needs at least two tokens") }
        var grads = adapter.zeros()
        let r = try forwardBackward(tokens: tokens, labels: labels, adapter: adapter, gradScale: 1 / Float(count), into: &grads)
        return (r.loss, grads)
    }

    /// Forward-only loss (no tape kept beyond what a layer needs).
    public func loss(tokens: [Int], labels: [Int], adapter: LoRAAdapter) throws -> LossResult {
        var tapes: [LayerTape] = []
        let hFinalIn = try forwardLayers(tokens: tokens, adapter: adapter, keep: false, tapes: &tapes)
        var h = hFinalIn
        let D = spec.hiddenSize
        Kernels.rmsNorm(&h, rows: tokens.count, dim: D, weight: model.weights.finalNorm, eps: spec.normEps, weighting: spec.normWeighting)
        var dummy: [Float] = []
        return try head(h, labels: labels, gradScale: 0, dh: &dummy, backward: false)
    }

    /// Forward-only logits of rows `fromRow ..< tokens.count` ([rows, V], after the final soft-cap)
    /// with the adapter applied: the model W + (alpha/r)·B·A without forming it (what evaluating a
    /// trained adapter needs, e.g. perplexity).
    public func logits(tokens: [Int], adapter: LoRAAdapter, fromRow: Int = 0) throws -> [Float] {
        let T = tokens.count, D = spec.hiddenSize, V = spec.vocabSize
        guard fromRow >= 0 && fromRow < T else { throw SmolError(.invalidArgument, "row \(fromRow) outside 0..<\(T)") }
        var tapes: [LayerTape] = []
        let hLast = try forwardLayers(tokens: tokens, adapter: adapter, keep: false, tapes: &tapes)
        var h = Array(hLast[(fromRow * D)...])                                   // [R, D]
        let R = T - fromRow
        Kernels.rmsNorm(&h, rows: R, dim: D, weight: model.weights.finalNorm, eps: spec.normEps, weighting: spec.normWeighting)
        var logits = quantized?.lmHead?.apply(h, tokens: R)
            ?? Kernels.matmul(h, rows: R, inDim: D, weight: model.weights.lmHead, outDim: V)   // [R, V]
        if let cap = spec.finalLogitSoftcap { Kernels.softcap(&logits, cap: cap) }
        return logits
    }

    /// One forward and backward over `tokens` with per-row `labels` (−100: no loss at that row).
    /// Adds gradScale · d(Σ NLL)/dθ into `gradients` (pass 1 / total labelled rows of the batch to
    /// get the gradient of the batch's mean loss).
    public func forwardBackward(tokens: [Int], labels: [Int], adapter: LoRAAdapter, gradScale: Float,
                                into gradients: inout LoRAAdapter) throws -> LossResult {
        let T = tokens.count, D = spec.hiddenSize
        guard labels.count == T else { throw SmolError(.invalidArgument, "\(labels.count) labels for \(T) tokens") }
        var tapes: [LayerTape] = []
        let hLast = try forwardLayers(tokens: tokens, adapter: adapter, keep: true, tapes: &tapes)
        var h = hLast
        Kernels.rmsNorm(&h, rows: T, dim: D, weight: model.weights.finalNorm, eps: spec.normEps, weighting: spec.normWeighting)
        var dh = [Float](repeating: 0, count: T * D)
        let result = try head(h, labels: labels, gradScale: gradScale, dh: &dh, backward: true)
        dh = TrainOps.rmsNormBackward(dh, input: hLast, rows: T, dim: D, weight: model.weights.finalNorm,
                                      eps: spec.normEps, weighting: spec.normWeighting)
        var dKV = [Int: (dk: [Float], dv: [Float])]()
        // Layers below the lowest one with a LoRA pair train nothing: as autograd, stop there (and
        // that layer skips its own input gradient).
        let lowest = options.fullBackward ? 0 : adapter.pairs.keys.map(\.layer).min() ?? spec.layers.count
        for i in stride(from: spec.layers.count - 1, through: lowest, by: -1) {
            dh = try layerBackward(i, tape: tapes[i], dh: dh, adapter: adapter, needInput: options.fullBackward || i > lowest,
                                   gradients: &gradients, dKV: &dKV)
            tapes[i] = LayerTape()   // free as we go
        }
        return result
    }

    // MARK: Head and loss

    /// Logits of the labelled rows only (the output layer is the largest matmul), final soft-cap,
    /// loss, and (backward) dh of the final norm's output; a block of rows at a time
    /// (`TrainOptions.headBlockElements`, `quantizedHeadBlockElements`). The [rows, vocab] logits of a whole sequence would be the
    /// largest activation of a step (Gemma 3's 262k vocabulary: 1 MiB a token).
    func head(_ h: [Float], labels: [Int], gradScale: Float, dh: inout [Float], backward: Bool) throws -> LossResult {
        let D = spec.hiddenSize, V = spec.vocabSize
        for (t, l) in labels.enumerated() where l != -100 && (l < 0 || l >= V) {
            throw SmolError(.invalidArgument, at: "label \(t)", "label \(l) outside the vocabulary (size \(V))")
        }
        let rows = labels.indices.filter { labels[$0] >= 0 }
        if rows.isEmpty { return LossResult(nll: 0, count: 0) }
        let qHead = quantized?.lmHead
        let budget = qHead.map { $0.type == .f32 } == false ? options.quantizedHeadBlockElements : options.headBlockElements
        let blockRows = max(1, min(rows.count, budget / max(V, 1)))
        var nll = 0.0, count = 0
        var b0 = 0
        while b0 < rows.count {
            let block = Array(rows[b0..<min(rows.count, b0 + blockRows)])
            let R = block.count
            var hr = [Float](repeating: 0, count: R * D)                       // [R, D]
            for (r, t) in block.enumerated() { for d in 0..<D { hr[r * D + d] = h[t * D + d] } }
            var logits = qHead?.apply(hr, tokens: R)
                ?? Kernels.matmul(hr, rows: R, inDim: D, weight: model.weights.lmHead, outDim: V)   // [R, V]
            if let cap = spec.finalLogitSoftcap { Kernels.softcap(&logits, cap: cap) }
            let capped = spec.finalLogitSoftcap == nil || !backward ? [] : logits
            let r = TrainOps.crossEntropyBackward(&logits, rows: R, vocab: V, labels: block.map { labels[$0] },
                                                  gradScale: gradScale)
            nll += r.nll; count += r.count
            if backward {
                if let cap = spec.finalLogitSoftcap { TrainOps.softcapBackward(&logits, capped: capped, cap: cap) }
                var dhr = [Float](repeating: 0, count: R * D)
                if let qHead {
                    qHead.accumulateTransposed(logits, tokens: R, into: &dhr)
                } else {
                    TrainOps.linearBackward(logits, rows: R, outDim: V, weight: model.weights.lmHead, inDim: D, into: &dhr)
                }
                for (r, t) in block.enumerated() { for d in 0..<D { dh[t * D + d] = dhr[r * D + d] } }
            }
            b0 += R
        }
        return LossResult(nll: nll, count: count)
    }

    // MARK: Forward

    /// What one layer's backward needs from its forward.
    struct LayerTape {
        var hIn: [Float] = []        // [T, D] layer input
        var x1: [Float] = []         // [T, D] attention norm output (input of q/k/v)
        var u: [LoRAModule: [Float]] = [:]   // x · Aᵀ per adapted module [T, r]
        var qRaw: [Float] = []       // [T, H·Dh] projection (+ bias), before q-norm
        var q: [Float] = []          // [T, H·Dh] after q-norm and RoPE
        var kRaw: [Float] = []       // [T, Hkv·Dh] (empty for KV-shared layers)
        var vRaw: [Float] = []       // [T, Hkv·Dh] before v-norm
        var k: [Float] = []          // final keys / values of the layer whose KV this layer reads
        var v: [Float] = []
        var attn: [Float] = []       // [T, H·Dh] attention output (o_proj input)
        var oRaw: [Float] = []       // [T, D] o_proj output before the sandwich norm
        var hMid: [Float] = []       // [T, D] after the attention residual
        var x2: [Float] = []         // [T, D] MLP norm output
        var gRaw: [Float] = []       // [T, F] gate pre-activation
        var up: [Float] = []         // [T, F]
        var act: [Float] = []        // [T, F] act(gate) · up (down_proj input)
        var mRaw: [Float] = []       // [T, D] down_proj output before the sandwich norm
        var hPLE: [Float] = []       // [T, D] input of the per-layer-input gate
        var pgPre: [Float] = []      // [T, P] gate pre-activation
        var pgOut: [Float] = []      // [T, P] act(pre) · per-layer input (projection input)
        var ppRaw: [Float] = []      // [T, D] projection output before its norm
        var pli: [Float] = []        // [T, P] this layer's per-layer input
        var moe: MoETape? = nil      // the layer's mixture-of-experts block
    }

    /// A frozen linear with its optional LoRA branch: y = x·Wᵀ (+ bias) + s·(x·Aᵀ)·Bᵀ.
    func project(_ x: [Float], rows T: Int, inDim: Int, weight: [Float], outDim: Int, bias: [Float]?,
                 key: LoRAKey, adapter: LoRAAdapter, tape: inout LayerTape, keep: Bool) -> [Float] {
        var y = quantized?.linears[key]?.apply(x, tokens: T) ?? Kernels.matmul(x, rows: T, inDim: inDim, weight: weight, outDim: outDim)
        if let bias { for r in 0..<T { for i in 0..<outDim { y[r * outDim + i] += bias[i] } } }
        if let p = adapter.pairs[key] {
            let u = TrainOps.loraForward(x, rows: T, inDim: inDim, outDim: outDim, rank: p.rank, scale: adapter.config.scale,
                                         a: p.a, b: p.b, into: &y)
            if keep { tape.u[key.module] = u }
        }
        return y
    }

    func checkAdapter(_ adapter: LoRAAdapter) throws {
        for (key, p) in adapter.pairs {
            if key.module.isExperts, let moe = spec.layers[safe: key.layer]?.moe {
                guard p.rank % moe.experts == 0 else {
                    throw SmolError(.mismatch, at: "layer \(key.layer) \(key.module.rawValue)", "LoRA rows \(p.rank) are not a multiple of \(moe.experts) experts")
                }
            }
            guard key.layer >= 0 && key.layer < spec.layers.count,
                  let (inDim, outDim) = LoRAAdapter.shape(of: key.module, layer: spec.layers[key.layer], hidden: spec.hiddenSize) else {
                throw SmolError(.mismatch, at: "layer \(key.layer) \(key.module.rawValue)", "the model has no such linear")
            }
            guard p.inDim == inDim && p.outDim == outDim else {
                throw SmolError(.mismatch, at: "layer \(key.layer) \(key.module.rawValue)",
                                "LoRA pair is [\(p.outDim), \(p.inDim)], the model's linear [\(outDim), \(inDim)]")
            }
        }
    }

    /// Runs every layer; returns the last layer's output (before the final norm).
    func forwardLayers(tokens: [Int], adapter: LoRAAdapter, keep: Bool, tapes: inout [LayerTape]) throws -> [Float] {
        try checkAdapter(adapter)
        let w = model.weights
        let T = tokens.count, D = spec.hiddenSize, V = spec.vocabSize
        guard T > 0 else { throw SmolError(.invalidArgument, "forward needs at least one token") }
        let positions = Array(0..<T)
        var h: [Float]   // [T, D]
        if let qe = quantized?.embed {
            h = try qe.gatherRows(tokens)
            if let s = spec.embedScale { Kernels.scale(&h, by: s) }
        } else {
            h = try Kernels.embed(tokens: tokens, table: w.embed, vocab: V, dim: D, scale: spec.embedScale)
        }
        let pli = try model.perLayerInputs(tokens: tokens, embeddings: h)                                           // [T, L, P]
        // Final keys and values per layer (KV sharing reads an earlier layer's).
        var keysOf = [Int: [Float]](), valuesOf = [Int: [Float]]()
        for (i, layer) in spec.layers.enumerated() {
            let lw = w.layers[i]
            let Dh = layer.headDim, H = layer.heads, Hkv = layer.kvHeads
            var tape = LayerTape()
            if keep { tape.hIn = h }
            var x = h
            Kernels.rmsNorm(&x, rows: T, dim: D, weight: lw.attnNorm, eps: spec.normEps, weighting: spec.normWeighting)
            if keep { tape.x1 = x }
            var q = project(x, rows: T, inDim: D, weight: lw.q, outDim: H * Dh, bias: lw.qBias,
                            key: LoRAKey(layer: i, module: .q), adapter: adapter, tape: &tape, keep: keep)   // [T, H, Dh]
            if keep { tape.qRaw = q }
            if let qn = lw.qNorm {
                let across = layer.qkNormAcrossHeads
                Kernels.rmsNorm(&q, rows: across ? T : T * H, dim: across ? H * Dh : Dh, weight: qn, eps: spec.normEps, weighting: spec.normWeighting)
            }
            if let rope = layer.rope {
                Kernels.rope(&q, tokens: T, heads: H, headDim: Dh, rotaryDim: rope.rotaryDim, invFreq: rope.invFreq, positions: positions)
                scaleRotated(&q, headDim: Dh, rope)
            }
            if keep { tape.q = q }
            let kvLayer = layer.kvSharedFrom ?? i
            if layer.kvSharedFrom == nil {
                var k = project(x, rows: T, inDim: D, weight: lw.k!, outDim: Hkv * Dh, bias: lw.kBias,
                                key: LoRAKey(layer: i, module: .k), adapter: adapter, tape: &tape, keep: keep)   // [T, Hkv, Dh]
                var v = layer.valueIsKey ? k : project(x, rows: T, inDim: D, weight: lw.v!, outDim: Hkv * Dh, bias: lw.vBias,
                                                       key: LoRAKey(layer: i, module: .v), adapter: adapter, tape: &tape, keep: keep)
                if keep { tape.kRaw = k; tape.vRaw = v }
                if let kn = lw.kNorm {
                    let across = layer.qkNormAcrossHeads
                    Kernels.rmsNorm(&k, rows: across ? T : T * Hkv, dim: across ? Hkv * Dh : Dh, weight: kn, eps: spec.normEps, weighting: spec.normWeighting)
                }
                if let rope = layer.rope {
                    Kernels.rope(&k, tokens: T, heads: Hkv, headDim: Dh, rotaryDim: rope.rotaryDim, invFreq: rope.invFreq, positions: positions)
                    scaleRotated(&k, headDim: Dh, rope)
                }
                if layer.vNorm { Kernels.rmsNorm(&v, rows: T * Hkv, dim: Dh, weight: nil, eps: spec.normEps) }
                keysOf[i] = k; valuesOf[i] = v
            }
            var attnOptions = layer.attention
            if !options.attentionSoftcapping { attnOptions.softcap = nil }
            attnOptions.sinks = lw.sinks
            let attn = TrainOps.attentionForward(q: q, k: keysOf[kvLayer]!, v: valuesOf[kvLayer]!, tokens: T, keys: T,
                                                 heads: H, kvHeads: Hkv, headDim: Dh, options: attnOptions)   // [T, H, Dh]
            if keep { tape.k = keysOf[kvLayer]!; tape.v = valuesOf[kvLayer]!; tape.attn = attn }
            var o = project(attn, rows: T, inDim: H * Dh, weight: lw.o, outDim: D, bias: lw.oBias,
                            key: LoRAKey(layer: i, module: .o), adapter: adapter, tape: &tape, keep: keep)    // [T, D]
            if let n = lw.attnOutNorm {
                if keep { tape.oRaw = o }
                Kernels.rmsNorm(&o, rows: T, dim: D, weight: n, eps: spec.normEps, weighting: spec.normWeighting)
            }
            Kernels.add(&h, o)
            if keep { tape.hMid = h }

            x = h
            Kernels.rmsNorm(&x, rows: T, dim: D, weight: lw.mlpNorm, eps: spec.normEps, weighting: spec.normWeighting)
            if keep { tape.x2 = x }
            let F = layer.intermediateSize
            var m = [Float](repeating: 0, count: T * D)
            if F > 0 {
                var g = project(x, rows: T, inDim: D, weight: lw.gate, outDim: F, bias: nil,
                                key: LoRAKey(layer: i, module: .gate), adapter: adapter, tape: &tape, keep: keep)   // [T, F]
                let u = project(x, rows: T, inDim: D, weight: lw.up, outDim: F, bias: nil,
                                key: LoRAKey(layer: i, module: .up), adapter: adapter, tape: &tape, keep: keep)
                if keep { tape.gRaw = g; tape.up = u }
                Kernels.gatedActivation(gate: &g, up: u, spec.activation)
                if keep { tape.act = g }
                m = project(g, rows: T, inDim: F, weight: lw.down, outDim: D, bias: nil,
                            key: LoRAKey(layer: i, module: .down), adapter: adapter, tape: &tape, keep: keep)       // [T, D]
            }
            if layer.moe != nil {
                var moeTape = MoETape()
                m = try moeForward(layer: i, residual: h, normed: x, dense: F > 0 ? m : nil, tokens: T,
                                   adapter: adapter, keep: keep, tape: &moeTape)
                if keep { tape.moe = moeTape }
            }
            if let n = lw.mlpOutNorm {
                if keep { tape.mRaw = m }
                Kernels.rmsNorm(&m, rows: T, dim: D, weight: n, eps: spec.normEps, weighting: spec.normWeighting)
            }
            Kernels.add(&h, m)

            if let ple = spec.perLayerInput, let pli {
                let P = ple.dim, L = spec.layers.count
                if keep { tape.hPLE = h }
                var slice = [Float](repeating: 0, count: T * P)          // [T, P]
                for t in 0..<T { for p in 0..<P { slice[t * P + p] = pli[(t * L + i) * P + p] } }
                let pre = Kernels.matmul(h, rows: T, inDim: D, weight: lw.perLayerGate!, outDim: P)   // [T, P]
                var pg = pre
                Kernels.activate(&pg, spec.activation)
                for j in pg.indices { pg[j] *= slice[j] }
                var pp = Kernels.matmul(pg, rows: T, inDim: P, weight: lw.perLayerProjection!, outDim: D)  // [T, D]
                if keep { tape.pgPre = pre; tape.pgOut = pg; tape.ppRaw = pp; tape.pli = slice }
                Kernels.rmsNorm(&pp, rows: T, dim: D, weight: lw.perLayerNorm!, eps: spec.normEps, weighting: spec.normWeighting)
                Kernels.add(&h, pp)
            }
            if layer.hasLayerScalar { Kernels.scale(&h, by: lw.layerScalar) }
            if keep { tapes.append(tape) }
        }
        return h
    }

    // MARK: Backward

    /// The backward of a (maybe adapted) frozen linear: dx += dy·W, plus the LoRA branch's
    /// gradients and its share of dx.
    func projectBackward(_ dy: [Float], x: [Float], rows T: Int, inDim: Int, weight: [Float], outDim: Int,
                         key: LoRAKey, tape: LayerTape, adapter: LoRAAdapter, gradients: inout LoRAAdapter,
                         dx: inout [Float]) {
        if let ql = quantized?.linears[key] {
            ql.accumulateTransposed(dy, tokens: T, into: &dx)
        } else {
            TrainOps.linearBackward(dy, rows: T, outDim: outDim, weight: weight, inDim: inDim, into: &dx)
        }
        if let p = adapter.pairs[key], let u = tape.u[key.module] {
            var g = gradients.pairs.removeValue(forKey: key)!   // moved out: updated in place, not copied
            TrainOps.loraBackward(dy, x: x, u: u, rows: T, inDim: inDim, outDim: outDim, rank: p.rank,
                                  scale: adapter.config.scale, a: p.a, b: p.b, gradA: &g.a, gradB: &g.b, dx: &dx)
            gradients.pairs[key] = g
        }
    }

    /// dh of the layer's output → dh of its input. needInput: whether an earlier layer trains (if
    /// not, the returned dh is not needed, and the parts that only feed it may be skipped).
    func layerBackward(_ i: Int, tape: LayerTape, dh dhOut: [Float], adapter: LoRAAdapter, needInput: Bool = true,
                       gradients: inout LoRAAdapter, dKV: inout [Int: (dk: [Float], dv: [Float])]) throws -> [Float] {
        let layer = spec.layers[i], lw = model.weights.layers[i]
        let T = tape.hIn.count / spec.hiddenSize, D = spec.hiddenSize
        let Dh = layer.headDim, H = layer.heads, Hkv = layer.kvHeads
        let eps = spec.normEps, weighting = spec.normWeighting
        var dh = dhOut
        if layer.hasLayerScalar { Kernels.scale(&dh, by: lw.layerScalar) }

        // Per-layer input: h += norm(proj(act(h·Wgᵀ) ⊙ pli)).
        if let ple = spec.perLayerInput {
            let P = ple.dim
            let dpp = TrainOps.rmsNormBackward(dh, input: tape.ppRaw, rows: T, dim: D, weight: lw.perLayerNorm!, eps: eps, weighting: weighting)
            var dpg = [Float](repeating: 0, count: T * P)
            TrainOps.linearBackward(dpp, rows: T, outDim: D, weight: lw.perLayerProjection!, inDim: P, into: &dpg)
            for j in dpg.indices { dpg[j] *= tape.pli[j] * TrainOps.activationDerivative(tape.pgPre[j], spec.activation) }
            TrainOps.linearBackward(dpg, rows: T, outDim: P, weight: lw.perLayerGate!, inDim: D, into: &dh)
        }

        // MLP block: h += outNorm?(mlp(x2)), x2 = norm(hMid); mlp = down(act(gate(x2)) · up(x2)), or
        // the MoE block (which may read hMid itself and, for gemma4, the dense MLP's output).
        let F = layer.intermediateSize
        let dm = lw.mlpOutNorm.map { TrainOps.rmsNormBackward(dh, input: tape.mRaw, rows: T, dim: D, weight: $0, eps: eps, weighting: weighting) } ?? dh
        var dx2 = [Float](repeating: 0, count: T * D)
        var dDense: [Float]? = dm
        let attentionTrains = [LoRAModule.q, .k, .v, .o].contains { adapter.pairs[LoRAKey(layer: i, module: $0)] != nil }
        if let moeTape = tape.moe {
            let r = try moeBackward(layer: i, tape: moeTape, dout: dm, residual: tape.hMid, tokens: T, adapter: adapter,
                                    needInput: needInput || attentionTrains, gradients: &gradients)
            Kernels.add(&dh, r.dResidual)
            Kernels.add(&dx2, r.dNormed)
            dDense = r.dDense
        }
        if F > 0, let dm = dDense {
            var dact = [Float](repeating: 0, count: T * F)
            projectBackward(dm, x: tape.act, rows: T, inDim: F, weight: lw.down, outDim: D, key: LoRAKey(layer: i, module: .down),
                            tape: tape, adapter: adapter, gradients: &gradients, dx: &dact)
            let (dg, du) = TrainOps.gatedActivationBackward(dact, gate: tape.gRaw, up: tape.up, spec.activation)
            projectBackward(dg, x: tape.x2, rows: T, inDim: D, weight: lw.gate, outDim: F, key: LoRAKey(layer: i, module: .gate),
                            tape: tape, adapter: adapter, gradients: &gradients, dx: &dx2)
            projectBackward(du, x: tape.x2, rows: T, inDim: D, weight: lw.up, outDim: F, key: LoRAKey(layer: i, module: .up),
                            tape: tape, adapter: adapter, gradients: &gradients, dx: &dx2)
        }
        if !needInput && !attentionTrains { return dh }   // nothing below this point trains
        Kernels.add(&dh, TrainOps.rmsNormBackward(dx2, input: tape.hMid, rows: T, dim: D, weight: lw.mlpNorm, eps: eps, weighting: weighting))

        // Attention block: h += outNorm?(o(attention(q, k, v))).
        let dO = lw.attnOutNorm.map { TrainOps.rmsNormBackward(dh, input: tape.oRaw, rows: T, dim: D, weight: $0, eps: eps, weighting: weighting) } ?? dh
        var dattn = [Float](repeating: 0, count: T * H * Dh)
        projectBackward(dO, x: tape.attn, rows: T, inDim: H * Dh, weight: lw.o, outDim: D, key: LoRAKey(layer: i, module: .o),
                        tape: tape, adapter: adapter, gradients: &gradients, dx: &dattn)
        var attnOptions = layer.attention
        if !options.attentionSoftcapping { attnOptions.softcap = nil }
        attnOptions.sinks = lw.sinks
        let kvLayer = layer.kvSharedFrom ?? i
        var acc = dKV[kvLayer] ?? ([Float](repeating: 0, count: tape.k.count), [Float](repeating: 0, count: tape.v.count))
        var dq = TrainOps.attentionBackward(dattn, q: tape.q, k: tape.k, v: tape.v, tokens: T, keys: T, heads: H, kvHeads: Hkv,
                                            headDim: Dh, options: attnOptions, dk: &acc.dk, dv: &acc.dv)
        dKV[kvLayer] = acc
        var dx1 = [Float](repeating: 0, count: T * D)
        let positions = Array(0..<T)
        // q: projection → q-norm → RoPE.
        if let rope = layer.rope {
            scaleRotated(&dq, headDim: Dh, rope)
            TrainOps.ropeBackward(&dq, tokens: T, heads: H, headDim: Dh, rotaryDim: rope.rotaryDim, invFreq: rope.invFreq, positions: positions)
        }
        if let qn = lw.qNorm {
            let across = layer.qkNormAcrossHeads
            dq = TrainOps.rmsNormBackward(dq, input: tape.qRaw, rows: across ? T : T * H, dim: across ? H * Dh : Dh,
                                          weight: qn, eps: eps, weighting: weighting)
        }
        projectBackward(dq, x: tape.x1, rows: T, inDim: D, weight: lw.q, outDim: H * Dh, key: LoRAKey(layer: i, module: .q),
                        tape: tape, adapter: adapter, gradients: &gradients, dx: &dx1)
        // k and v of this layer (their gradient has been collected from every layer that reads them,
        // all of which come later in the model, so all have been processed by now).
        if layer.kvSharedFrom == nil, let g = dKV.removeValue(forKey: i) {
            var dk = g.dk, dv = g.dv
            if layer.vNorm { dv = TrainOps.rmsNormBackward(dv, input: tape.vRaw, rows: T * Hkv, dim: Dh, weight: nil, eps: eps) }
            if let rope = layer.rope {
                scaleRotated(&dk, headDim: Dh, rope)
                TrainOps.ropeBackward(&dk, tokens: T, heads: Hkv, headDim: Dh, rotaryDim: rope.rotaryDim, invFreq: rope.invFreq, positions: positions)
            }
            if let kn = lw.kNorm {
                let across = layer.qkNormAcrossHeads
                dk = TrainOps.rmsNormBackward(dk, input: tape.kRaw, rows: across ? T : T * Hkv, dim: across ? Hkv * Dh : Dh,
                                              weight: kn, eps: eps, weighting: weighting)
            }
            if layer.valueIsKey { Kernels.add(&dk, dv) }   // v is the raw key projection
            projectBackward(dk, x: tape.x1, rows: T, inDim: D, weight: lw.k!, outDim: Hkv * Dh, key: LoRAKey(layer: i, module: .k),
                            tape: tape, adapter: adapter, gradients: &gradients, dx: &dx1)
            if !layer.valueIsKey {
                projectBackward(dv, x: tape.x1, rows: T, inDim: D, weight: lw.v!, outDim: Hkv * Dh, key: LoRAKey(layer: i, module: .v),
                                tape: tape, adapter: adapter, gradients: &gradients, dx: &dx1)
            }
        }
        let dhIn = TrainOps.rmsNormBackward(dx1, input: tape.hIn, rows: T, dim: D, weight: lw.attnNorm, eps: eps, weighting: weighting)
        Kernels.add(&dh, dhIn)
        return dh
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

/// YaRN's attention factor scales the rotated dims of each head (as the engine applies it, after
/// the rotation); the backward is the same scaling. x: [T, heads, Dh].
func scaleRotated(_ x: inout [Float], headDim: Int, _ rope: RopeSpec) {
    guard rope.attentionScaling != 1 else { return }
    let s = rope.attentionScaling
    for row in 0..<(x.count / headDim) {
        for i in 0..<rope.rotaryDim { x[row * headDim + i] *= s }
    }
}
