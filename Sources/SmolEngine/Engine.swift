import Foundation
import SmolFormats
import SmolKernels
import SmolModels
import SmolTensor

// Shapes below use the SmolKernels legend: T tokens of this call, S cached positions, D hidden,
// H / Hkv heads, Dh head dim, F ffn size, V vocab, L layers, P per-layer-input size.

/// Keys and values of every layer for the positions seen so far. Layers that share another
/// layer's keys and values (Gemma 4) keep nothing of their own.
public final class KVCache: @unchecked Sendable {   // used by one generation at a time
    /// Per layer: [S, Hkv, Dh] after k-norm and RoPE (keys) / v-norm (values).
    var keys: [[Float]]
    var values: [[Float]]
    /// S: positions cached.
    public private(set) var length: Int = 0

    public init(layers: Int) {
        keys = Array(repeating: [], count: layers)
        values = Array(repeating: [], count: layers)
    }

    func advance(by n: Int) { length += n }
}

/// What one forward pass returns.
public struct ForwardOutput: Sendable {
    /// [T, V] (or the rows asked for), soft-capped where the model says so.
    public var logits: [Float]
    /// When requested: L + 1 arrays of [T, D], numbered as transformers' `hidden_states`:
    /// [0] the (scaled) embeddings, [i] the output of layer i − 1, and the last one the final
    /// norm's output (it replaces the last layer's raw output).
    public var hiddenStates: [[Float]]?
}

/// Choices where transformers' own implementations disagree.
public struct EngineOptions: Sendable, Equatable {
    /// Apply `attn_logit_softcapping` (Gemma 2) inside attention, as the model is defined and as
    /// transformers' eager attention and llama.cpp do. transformers' default SDPA attention
    /// silently drops it, so reproducing outputs of a plain `from_pretrained` model (such as the
    /// test fixtures) needs `false`.
    public var attentionSoftcapping: Bool
    /// MoE layers: the grouped expert kernel, or its per-token reference twin (tests, benchmarks).
    public var expertKernel: ExpertKernel
    /// Calls of at most `QuantizedLinear.matvecMaxTokens` tokens (decode) read block-quantized
    /// GGUF linears in their stored encoding (StoredLinears.swift): exact, activations stay
    /// Float32; false computes every matmul on the Float32 copy (the twin, for tests and benchmarks).
    public var storedWeights: Bool

    public init(attentionSoftcapping: Bool = true, expertKernel: ExpertKernel = .grouped, storedWeights: Bool = true) {
        self.attentionSoftcapping = attentionSoftcapping
        self.expertKernel = expertKernel
        self.storedWeights = storedWeights
    }

    /// What transformers 5 computes with its default attention implementation (SDPA).
    public static let transformersSDPA = EngineOptions(attentionSoftcapping: false)
}

/// The exact Float32 CPU reference engine for dense decoders. Matmuls go through BLAS, the other
/// kernels are multithreaded; semantics follow transformers' eager implementation.
public final class Engine: Sendable {
    public let model: DenseDecoderModel
    public let options: EngineOptions
    /// Block-encoded linears for few-token calls (GGUF checkpoints), when `options.storedWeights`.
    let stored: StoredLinears?

    public init(model: DenseDecoderModel, options: EngineOptions = EngineOptions()) {
        self.model = model
        self.options = options
        stored = nil
    }

    init(model: DenseDecoderModel, options: EngineOptions, stored: StoredLinears?) {
        self.model = model
        self.options = options
        self.stored = options.storedWeights ? stored : nil
    }

    /// Whether few-token calls read linears in their stored block encoding.
    public var usesStoredWeights: Bool { stored != nil }

    public var vocabSize: Int { model.spec.vocabSize }

    public func makeCache() -> KVCache { KVCache(layers: model.spec.layers.count) }

    /// Opens any checkpoint (Hugging Face folder, .safetensors with config.json, GGUF, packed) and
    /// loads its weights in Float32 (GGUF block types dequantized exactly; MoE experts in any
    /// layout, see `ModelLoader.load(checkpoint:)`).
    public static func load(_ path: String, options: EngineOptions = EngineOptions()) throws -> Engine {
        try load(checkpoint: try Checkpoint.open(path), options: options)
    }

    /// `load(_:)` for an opened checkpoint.
    public static func load(checkpoint ckpt: Checkpoint, options: EngineOptions = EngineOptions()) throws -> Engine {
        let model = try ModelLoader.load(checkpoint: ckpt)
        let stored = options.storedWeights ? try StoredLinears.from(ckpt, spec: model.spec) : nil
        return Engine(model: model, options: options, stored: stored)
    }

    /// Runs `tokens` (positions cache.length …) through the model, appending to `cache` when given.
    /// `logitsFrom`: logits are computed for rows logitsFrom..<T only (the output then holds
    /// T − logitsFrom rows); the output layer is the largest matmul of small models, so callers
    /// that score part of a window (perplexity) skip the rest.
    /// `observer`: sees the input of every linear (calibration); nil changes nothing.
    public func forward(_ tokens: [Int], cache: KVCache? = nil, captureHiddenStates: Bool = false,
                        logitsFrom: Int = 0, observer: ActivationObserver? = nil) throws -> ForwardOutput {
        let (h, captured) = try decoder(tokens, cache: cache, captureHiddenStates: captureHiddenStates,
                                        logitsFrom: logitsFrom, observer: observer)       // [R, D]
        let R = tokens.count - logitsFrom
        var logits = linear(h, rows: R, inDim: model.spec.hiddenSize, weight: model.weights.lmHead, stored: stored?.lmHead,
                            outDim: model.spec.vocabSize)                                 // [R, V]
        if let cap = model.spec.finalLogitSoftcap { Kernels.softcap(&logits, cap: cap) }
        return ForwardOutput(logits: logits, hiddenStates: captureHiddenStates ? captured : nil)
    }

    /// Everything of `forward` but the output layer: the final-normed hidden states of rows
    /// logitsFrom..<T, [T − logitsFrom, D], and the captured hidden states when asked for.
    func decoder(_ tokens: [Int], cache: KVCache?, captureHiddenStates: Bool, logitsFrom: Int,
                 observer: ActivationObserver?) throws -> (hidden: [Float], captured: [[Float]]) {
        let spec = model.spec, w = model.weights
        let T = tokens.count, D = spec.hiddenSize, V = spec.vocabSize
        guard T > 0 else { throw SmolError(.invalidArgument, "forward needs at least one token") }
        guard logitsFrom >= 0 && logitsFrom < T else {
            throw SmolError(.invalidArgument, "logitsFrom \(logitsFrom) outside 0..<\(T)")
        }
        let cache = cache ?? makeCache()
        let start = cache.length
        let positions = (0..<T).map { start + $0 }

        var h = try Kernels.embed(tokens: tokens, table: w.embed, vocab: V, dim: D, scale: spec.embedScale) // [T, D]
        let perLayerInputs = try model.perLayerInputs(tokens: tokens, embeddings: h)  // [T, L, P]
        var captured: [[Float]] = captureHiddenStates ? [h] : []
        var ropeTables: [[Float]: Kernels.RopeTable] = [:]   // by inverse frequencies: one per distinct RoPE
        func ropeTable(_ rope: RopeSpec) -> Kernels.RopeTable {
            if let t = ropeTables[rope.invFreq] { return t }
            let t = Kernels.RopeTable(invFreq: rope.invFreq, positions: positions)
            ropeTables[rope.invFreq] = t
            return t
        }

        for (i, layer) in spec.layers.enumerated() {
            let lw = w.layers[i]
            let sw = stored?.layers[i]
            let Dh = layer.headDim, H = layer.heads, Hkv = layer.kvHeads
            let names = observer == nil ? nil : LinearNames(spec, layer: i)

            // Attention block.
            var x = h
            Kernels.rmsNorm(&x, rows: T, dim: D, weight: lw.attnNorm, eps: spec.normEps, weighting: spec.normWeighting)
            if let names { observer?.observe(x, rows: T, inDim: D, names.attention, layer: i) }
            var q = linear(x, rows: T, inDim: D, weight: lw.q, stored: sw?.q, outDim: H * Dh)   // [T, H, Dh]
            if let b = lw.qBias { addRowBias(&q, b) }
            if let qn = lw.qNorm {
                let across = layer.qkNormAcrossHeads   // OLMoE: one norm over all heads
                Kernels.rmsNorm(&q, rows: across ? T : T * H, dim: across ? H * Dh : Dh, weight: qn, eps: spec.normEps, weighting: spec.normWeighting)
            }
            if let rope = layer.rope {
                Kernels.rope(&q, tokens: T, heads: H, headDim: Dh, rotaryDim: rope.rotaryDim, table: ropeTable(rope))
                scaleRotated(&q, heads: H, headDim: Dh, rope)
            }
            let kvLayer: Int
            if let source = layer.kvSharedFrom {
                kvLayer = source
            } else {
                kvLayer = i
                var k = linear(x, rows: T, inDim: D, weight: lw.k!, stored: sw?.k, outDim: Hkv * Dh)  // [T, Hkv, Dh]
                if let b = lw.kBias { addRowBias(&k, b) }
                // Keys-as-values: v is the raw key projection, taken before k's norm and RoPE.
                var v = layer.valueIsKey ? k : linear(x, rows: T, inDim: D, weight: lw.v!, stored: sw?.v, outDim: Hkv * Dh)
                if !layer.valueIsKey, let b = lw.vBias { addRowBias(&v, b) }
                if let kn = lw.kNorm {
                    let across = layer.qkNormAcrossHeads
                    Kernels.rmsNorm(&k, rows: across ? T : T * Hkv, dim: across ? Hkv * Dh : Dh, weight: kn, eps: spec.normEps, weighting: spec.normWeighting)
                }
                if let rope = layer.rope {
                    Kernels.rope(&k, tokens: T, heads: Hkv, headDim: Dh, rotaryDim: rope.rotaryDim, table: ropeTable(rope))
                    scaleRotated(&k, heads: Hkv, headDim: Dh, rope)
                }
                if layer.vNorm {
                    Kernels.rmsNorm(&v, rows: T * Hkv, dim: Dh, weight: nil, eps: spec.normEps)
                }
                cache.keys[i] += k
                cache.values[i] += v
            }
            let S = start + T
            var attnOptions = layer.attention
            if !options.attentionSoftcapping { attnOptions.softcap = nil }
            attnOptions.sinks = lw.sinks
            let attn = Kernels.attention(q: q, k: cache.keys[kvLayer], v: cache.values[kvLayer], tokens: T, keys: S,
                                         heads: H, kvHeads: Hkv, headDim: Dh, queryStart: start,
                                         options: attnOptions)                     // [T, H, Dh]
            if let names { observer?.observe(attn, rows: T, inDim: H * Dh, names.output, layer: i) }
            var o = linear(attn, rows: T, inDim: H * Dh, weight: lw.o, stored: sw?.o, outDim: D) // [T, D]
            if let b = lw.oBias { addRowBias(&o, b) }
            if let n = lw.attnOutNorm {
                Kernels.rmsNorm(&o, rows: T, dim: D, weight: n, eps: spec.normEps, weighting: spec.normWeighting)
            }
            Kernels.add(&h, o)

            // MLP block.
            x = h
            Kernels.rmsNorm(&x, rows: T, dim: D, weight: lw.mlpNorm, eps: spec.normEps, weighting: spec.normWeighting)
            let F = layer.intermediateSize   // 0: an MoE layer without a dense MLP
            var m: [Float] = []
            if F > 0 {
                if let names { observer?.observe(x, rows: T, inDim: D, names.gateUp, layer: i) }
                var g = linear(x, rows: T, inDim: D, weight: lw.gate, stored: sw?.gate, outDim: F)    // [T, F]
                let u = linear(x, rows: T, inDim: D, weight: lw.up, stored: sw?.up, outDim: F)
                Kernels.gatedActivation(gate: &g, up: u, spec.activation)
                if let names { observer?.observe(g, rows: T, inDim: F, names.down, layer: i) }
                m = linear(g, rows: T, inDim: F, weight: lw.down, stored: sw?.down, outDim: D)        // [T, D]
            }
            if let moe = layer.moe, let mw = lw.moe {
                m = try moeBlock(moe, mw, residual: h, normed: x, dense: F > 0 ? m : nil, tokens: T,
                                 observer: observer, layer: i)  // [T, D]
            }
            if let n = lw.mlpOutNorm {
                Kernels.rmsNorm(&m, rows: T, dim: D, weight: n, eps: spec.normEps, weighting: spec.normWeighting)
            }
            Kernels.add(&h, m)

            // Gemma 4 per-layer input: gate the hidden state with this layer's PLE slice.
            if let ple = spec.perLayerInput, let pli = perLayerInputs {
                let P = ple.dim, L = spec.layers.count
                if let names { observer?.observe(h, rows: T, inDim: D, names.perLayerGate, layer: i) }
                var pg = Kernels.matmul(h, rows: T, inDim: D, weight: lw.perLayerGate!, outDim: P)  // [T, P]
                Kernels.activate(&pg, spec.activation)
                for t in 0..<T { for p in 0..<P { pg[t * P + p] *= pli[(t * L + i) * P + p] } }
                if let names { observer?.observe(pg, rows: T, inDim: P, names.perLayerProjection, layer: i) }
                var pp = Kernels.matmul(pg, rows: T, inDim: P, weight: lw.perLayerProjection!, outDim: D) // [T, D]
                Kernels.rmsNorm(&pp, rows: T, dim: D, weight: lw.perLayerNorm!, eps: spec.normEps, weighting: spec.normWeighting)
                Kernels.add(&h, pp)
            }
            if layer.hasLayerScalar { Kernels.scale(&h, by: lw.layerScalar) }
            if captureHiddenStates && i < spec.layers.count - 1 { captured.append(h) }
        }
        cache.advance(by: T)

        Kernels.rmsNorm(&h, rows: T, dim: D, weight: w.finalNorm, eps: spec.normEps, weighting: spec.normWeighting)
        if captureHiddenStates { captured.append(h) }
        if let observer { observer.observe(h, rows: T, inDim: D, [LinearNames.outputHead(spec)], layer: spec.layers.count) }
        if logitsFrom > 0 { h = Array(h[(logitsFrom * D)...]) }                          // [R, D]
        return (h, captured)
    }

    /// Mean next-token cross-entropy with labels = tokens, as transformers computes it for
    /// `labels=input_ids` (row t predicts token t + 1; the last row has no label).
    public func loss(_ tokens: [Int]) throws -> Float {
        let out = try forward(tokens)
        return try loss(logits: out.logits, tokens: tokens)
    }

    public func loss(logits: [Float], tokens: [Int]) throws -> Float {
        let labels = tokens.indices.map { $0 + 1 < tokens.count ? tokens[$0 + 1] : -100 }
        guard let l = Kernels.crossEntropy(logits: logits, rows: tokens.count, vocab: vocabSize, labels: labels) else {
            throw SmolError(.invalidArgument, "loss needs at least two tokens")
        }
        return l
    }

    /// Greedy decoding with the KV cache: the prompt, then up to `maxNewTokens` argmax tokens
    /// (first index wins ties, as torch.argmax). Stops after emitting a token in `stopTokens`;
    /// before `minNewTokens` new tokens those are suppressed (transformers' `min_new_tokens`).
    /// Returns prompt + new tokens.
    public func generate(_ prompt: [Int], maxNewTokens: Int, stopTokens: Set<Int> = [],
                         minNewTokens: Int = 0) throws -> [Int] {
        var out = prompt
        guard maxNewTokens > 0 else { return out }
        let cache = makeCache()
        var logits = try forward(prompt, cache: cache).logits
        var rows = prompt.count
        for step in 0..<maxNewTokens {
            let V = vocabSize
            let last = logits[((rows - 1) * V)..<(rows * V)]
            var best = last.startIndex
            let suppress = step < minNewTokens ? stopTokens : []
            best = last.indices.first { !suppress.contains($0 - last.startIndex) } ?? best
            for j in last.indices where last[j] > last[best] && !suppress.contains(j - last.startIndex) { best = j }
            let next = best - last.startIndex
            out.append(next)
            if stopTokens.contains(next) || step == maxNewTokens - 1 { break }
            logits = try forward([next], cache: cache).logits
            rows = 1
        }
        return out
    }
}

extension DenseDecoderModel {
    /// Gemma 4 PLE inputs [T, L, P]: (RMSNorm(embeddings · Wᵀ / √D) + E_ple[token] · √P) / √2.
    /// Shared by the engine and the trainer (frozen there: nothing before it is adapted).
    public func perLayerInputs(tokens: [Int], embeddings: [Float]) throws -> [Float]? {
        let w = weights
        guard let ple = spec.perLayerInput else { return nil }
        let T = tokens.count, D = spec.hiddenSize, L = spec.layers.count, P = ple.dim
        let tokenPart = try Kernels.embed(tokens: tokens, table: w.perLayerEmbed!, vocab: ple.vocabSize, dim: L * P,
                                          scale: Float(Double(P).squareRoot()))               // [T, L·P]
        var proj = Kernels.matmul(embeddings, rows: T, inDim: D, weight: w.perLayerModelProjection!, outDim: L * P)
        Kernels.scale(&proj, by: Float(pow(Double(D), -0.5)))
        Kernels.rmsNorm(&proj, rows: T * L, dim: P, weight: w.perLayerProjectionNorm!, eps: spec.normEps,
                        weighting: spec.normWeighting)
        Kernels.add(&proj, tokenPart)
        Kernels.scale(&proj, by: Float(pow(2.0, -0.5)))
        return proj
    }
}
