import SmolFormats
import SmolTensor

/// gemma4-only facts (transformers 5 `Gemma4TextConfig`).
public struct Gemma4Options: Sendable, Equatable {
    /// Per-layer input embeddings: `embed_tokens_per_layer` is [vocabSizePerLayerInput,
    /// layers * hiddenSizePerLayerInput]; 0 means the model has none.
    public var hiddenSizePerLayerInput: Int
    public var vocabSizePerLayerInput: Int
    /// Full-attention layers reuse the key projection as values (no v_proj).
    public var attentionKEqV: Bool
    /// The last `numKVSharedLayers` layers reuse keys/values of the last earlier layer of their kind.
    public var numKVSharedLayers: Int
    /// KV-shared layers have a dense MLP twice `intermediate_size` wide.
    public var useDoubleWideMLP: Bool
    /// "all", "vision" or nil.
    public var useBidirectionalAttention: String?
}

// gemma4_text. Every decoder layer: q/k per-head RMSNorm, v RMSNorm without weight, attention
// scale 1.0, sandwich norms, a dense GeGLU MLP, with `enable_moe_block` additionally a routed MoE
// block (`num_experts`, `top_k_experts`, `moe_intermediate_size`) whose output is added, then the
// per-layer-input branch, then the output multiplied by the layer's `layer_scalar` buffer.
// `layer_types` default: sliding unless `(i + 1) % 6 == 0`; the last layer is forced to full.
// `per_layer_config` (transformers 5.17) gives full-attention layers their own `head_dim` (the
// `global_head_dim`, default 512) and, with `attention_k_eq_v`, `num_key_value_heads`
// (`num_global_key_value_heads`); files without it get it derived the same way.
// RoPE default: sliding {default, 1e4}, full {proportional, partial 0.25, 1e6}.
// `use_bidirectional_attention == "all"` makes the window `sliding_window / 2 + 1`.
extension ModelConfig {
    static let gemma4FamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "gemma4_text", family: .gemma4) { c in
            let ropeDefaults = JSONValue.literal(
                #"{"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}, "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0}}"#)
            var m = try ModelConfig(common: c, family: .gemma4, defaults: CommonDefaults(
                vocabSize: 262_144, hiddenSize: 2304, intermediateSize: 9216, numHiddenLayers: 30,
                numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 256, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 131_072, tieWordEmbeddings: true, bos: 2, eos: 1, pad: 0, ropeTheta: 10000,
                activationKey: "hidden_activation", activation: "gelu_pytorch_tanh"),
                ropeDefaults: ropeDefaults)
            let r = c.reader
            m.qkNorm = .perHead
            try m.setLayerTypes(r) { i in (i + 1) % 6 != 0 ? .sliding : .full }
            m.layerTypes[m.numHiddenLayers - 1] = .full
            let bidirectional = try r.string("use_bidirectional_attention")
            var window = try ModelConfig.readWindow(r, default: 512)
            if bidirectional == "all", let w = window { window = w / 2 + 1 }
            m.slidingWindow = window
            m.finalLogitSoftcapping = try r.double("final_logit_softcapping")
            let g = Gemma4Options(
                hiddenSizePerLayerInput: try r.int("hidden_size_per_layer_input", default: 256),
                vocabSizePerLayerInput: try r.int("vocab_size_per_layer_input", default: 262_144),
                attentionKEqV: try r.bool("attention_k_eq_v", default: false),
                numKVSharedLayers: try r.int("num_kv_shared_layers", default: 0),
                useDoubleWideMLP: try r.bool("use_double_wide_mlp", default: false),
                useBidirectionalAttention: bidirectional)
            guard g.numKVSharedLayers >= 0, g.numKVSharedLayers < m.numHiddenLayers else {
                throw r.error("num_kv_shared_layers", "must be in 0..<\(m.numHiddenLayers), found \(g.numKVSharedLayers)")
            }
            m.gemma4 = g
            if r.object["per_layer_config"] == nil {
                // transformers derives it from `global_head_dim` / `num_global_key_value_heads`.
                var overrides: [(String, JSONValue)] = [("head_dim", .int(try r.int("global_head_dim", default: 512)))]
                if g.attentionKEqV, let kv = try r.int("num_global_key_value_heads") { overrides.append(("num_key_value_heads", .int(kv))) }
                for i in 0..<m.numHiddenLayers where m.layerTypes[i] == .full { m.perLayerOverrides[i] = .object(JSONObject(overrides)) }
            }
            for i in 0..<m.numHiddenLayers {
                guard m.headDim(layer: i) > 0, m.numKeyValueHeads(layer: i) > 0, m.numAttentionHeads % m.numKeyValueHeads(layer: i) == 0 else {
                    throw r.error("per_layer_config", "layer \(i): head_dim and num_key_value_heads must be positive and divide the heads")
                }
            }
            if try r.bool("enable_moe_block", default: false) {
                let experts = try r.positiveInt("num_experts", default: nil)
                let topK = try r.positiveInt("top_k_experts", default: nil)
                guard topK <= experts else { throw r.error("top_k_experts", "\(topK) exceeds the \(experts) experts") }
                // The router always renormalises the top-k probabilities, then scales by per_expert_scale.
                m.moe = MoEConfig(numExperts: experts, numExpertsPerToken: topK,
                                  expertIntermediateSize: try r.positiveInt("moe_intermediate_size", default: nil),
                                  normTopKProb: true, denseMLPAlongside: true)
            }
            return m
        },
    ]
}
