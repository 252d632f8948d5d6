import SmolFormats
import SmolTensor

// gemma2 and gemma3_text (transformers 5 `Gemma2Config`, `Gemma3TextConfig`).
//
// Both: RMSNorm weights used as (1 + w), embeddings scaled by sqrt(hidden_size), scores scaled
// by `query_pre_attn_scalar^-0.5` (default 256), GeGLU (`hidden_activation`), sandwich norms.
// gemma2: `layer_types` default alternates sliding (even i) / full; tanh softcapping of
// attention logits (`attn_logit_softcapping`, default 50) and final logits (default 30); one RoPE.
// gemma3: `layer_types` default sliding unless `(i + 1) % sliding_window_pattern == 0` (pattern 6,
// written `_sliding_window_pattern` by transformers ≥ 4.52); per-head q/k norm; RoPE per layer
// kind — full layers `rope_theta` (default 1e6) with `rope_scaling`, sliding layers
// `rope_local_base_freq` (default 1e4) unscaled (transformers 4 layout), or `rope_parameters`
// keyed by layer kind (transformers 5).
extension ModelConfig {
    static let gemmaFamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "gemma2", family: .gemma2) { c in
            var m = try ModelConfig(common: c, family: .gemma2, defaults: CommonDefaults(
                vocabSize: 256000, hiddenSize: 2304, intermediateSize: 9216, numHiddenLayers: 26,
                numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 256, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 8192, tieWordEmbeddings: true, bos: 2, eos: 1, pad: 0, ropeTheta: 10000,
                activationKey: "hidden_activation", activation: "gelu_pytorch_tanh"))
            let r = c.reader
            try m.setLayerTypes(r) { i in (i + 1) % 2 != 0 ? .sliding : .full }
            m.slidingWindow = try ModelConfig.readWindow(r, default: 4096)
            m.queryPreAttnScalar = try r.double("query_pre_attn_scalar", default: 256)
            m.attnLogitSoftcapping = try r.optionalDouble("attn_logit_softcapping", ifMissing: 50)
            m.finalLogitSoftcapping = try r.optionalDouble("final_logit_softcapping", ifMissing: 30)
            return m
        },
        ArchitectureEntry(modelType: "gemma3_text", family: .gemma3) { c in
            var m = try ModelConfig(common: c, family: .gemma3, defaults: CommonDefaults(
                vocabSize: 262_208, hiddenSize: 2304, intermediateSize: 9216, numHiddenLayers: 26,
                numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 256, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 131_072, tieWordEmbeddings: true, bos: 2, eos: 1, pad: 0, ropeTheta: 1_000_000,
                activationKey: "hidden_activation", activation: "gelu_pytorch_tanh"),
                legacySlidingTheta: ("rope_local_base_freq", 10_000))
            let r = c.reader
            m.qkNorm = .perHead
            let pattern = try r.int("_sliding_window_pattern") ?? r.int("sliding_window_pattern") ?? 6
            guard pattern > 0 else { throw r.error("sliding_window_pattern", "must be positive, found \(pattern)") }
            try m.setLayerTypes(r) { i in (i + 1) % pattern != 0 ? .sliding : .full }
            m.slidingWindow = try ModelConfig.readWindow(r, default: 4096)
            m.queryPreAttnScalar = try r.double("query_pre_attn_scalar", default: 256)
            m.attnLogitSoftcapping = try r.optionalDouble("attn_logit_softcapping", ifMissing: nil)
            m.finalLogitSoftcapping = try r.optionalDouble("final_logit_softcapping", ifMissing: nil)
            return m
        },
    ]
}

extension ConfigReader {
    /// A number whose absence means `ifMissing` but whose explicit `null` means "none"
    /// (gemma2's softcaps default to 50/30, and `null` turns them off).
    func optionalDouble(_ key: String, ifMissing: Double?) throws -> Double? {
        if object[key] == nil { return ifMissing }
        return try double(key)
    }
}
