import SmolFormats
import SmolTensor

/// gpt_oss-only facts (transformers 5 `GptOssConfig`).
public struct GptOssOptions: Sendable, Equatable {
    /// Clamp of the expert SwiGLU: gate ≤ limit, −limit ≤ up ≤ limit (`swiglu_limit`, default 7).
    public var swigluLimit: Double
}

// gpt_oss: attention with biases on q/k/v/o and a learned per-head sink logit
// (`self_attn.sinks`); `layer_types` default alternates sliding (even i) / full, window 128;
// yarn RoPE (θ 150000, factor 32, original 4096, β 32/1, truncate false); every layer MoE with
// `num_local_experts` experts of `intermediate_size`, router with bias, softmax over the top-k
// logits (normalised), experts' gate/up interleaved in `gate_up_proj`.
extension ModelConfig {
    static let gptOssFamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "gpt_oss", family: .gptOss) { c in
            let ropeDefaults = JSONValue.literal(
                #"{"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": false, "original_max_position_embeddings": 4096, "rope_theta": 150000.0}"#)
            var m = try ModelConfig(common: c, family: .gptOss, defaults: CommonDefaults(
                vocabSize: 201_088, hiddenSize: 2880, intermediateSize: 2880, numHiddenLayers: 36,
                numAttentionHeads: 64, numKeyValueHeads: 8, headDim: 64, rmsNormEps: 1e-5,
                maxPositionEmbeddings: 131_072, tieWordEmbeddings: false, bos: nil, eos: nil, pad: nil,
                ropeTheta: 150_000, attentionBias: true),
                ropeDefaults: ropeDefaults)
            let r = c.reader
            try m.setLayerTypes(r) { i in (i + 1) % 2 != 0 ? .sliding : .full }
            m.slidingWindow = try ModelConfig.readWindow(r, default: 128)
            let experts = try r.positiveInt("num_local_experts", default: 128)
            let topK = try r.positiveInt("num_experts_per_tok", default: 4)
            guard topK <= experts else { throw r.error("num_experts_per_tok", "\(topK) exceeds the \(experts) experts") }
            m.moe = MoEConfig(numExperts: experts, numExpertsPerToken: topK, expertIntermediateSize: m.intermediateSize,
                              normTopKProb: true, routerAuxLossCoef: try r.double("router_aux_loss_coef", default: 0.9))
            m.gptOss = GptOssOptions(swigluLimit: try r.double("swiglu_limit", default: 7.0))
            return m
        },
    ]
}
