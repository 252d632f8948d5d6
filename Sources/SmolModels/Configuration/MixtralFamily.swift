import SmolFormats
import SmolTensor

// mixtral and olmoe (transformers 5 `MixtralConfig`, `OlmoeConfig`): every layer is MoE.
//
// mixtral: experts are `intermediate_size` wide; routing is softmax → top-k → renormalise
// (always, there is no `norm_topk_prob`). A non-null `sliding_window` applies to every layer.
// olmoe: `norm_topk_prob` (default false); q_norm/k_norm span all heads ([heads * head_dim]);
// `clip_qkv` clamps q/k/v when set.
extension ModelConfig {
    static let mixtralFamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "mixtral", family: .mixtral) { c in
            var m = try ModelConfig(common: c, family: .mixtral, defaults: CommonDefaults(
                vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32,
                numAttentionHeads: 32, numKeyValueHeads: 8, headDim: nil, rmsNormEps: 1e-5,
                maxPositionEmbeddings: 4096 * 32, tieWordEmbeddings: false, bos: 1, eos: 2, pad: nil, ropeTheta: 1e6))
            let r = c.reader
            let window = try ModelConfig.readWindow(r, default: nil)
            try m.setLayerTypes(r) { _ in window == nil ? .full : .sliding }
            m.slidingWindow = window
            let experts = try r.positiveInt("num_local_experts", default: 8)
            let topK = try r.positiveInt("num_experts_per_tok", default: 2)
            guard topK <= experts else { throw r.error("num_experts_per_tok", "\(topK) exceeds the \(experts) experts") }
            m.moe = MoEConfig(numExperts: experts, numExpertsPerToken: topK, expertIntermediateSize: m.intermediateSize,
                              normTopKProb: true, routerAuxLossCoef: try r.double("router_aux_loss_coef", default: 0.001))
            return m
        },
        ArchitectureEntry(modelType: "olmoe", family: .olmoe) { c in
            var m = try ModelConfig(common: c, family: .olmoe, defaults: CommonDefaults(
                vocabSize: 50304, hiddenSize: 2048, intermediateSize: 2048, numHiddenLayers: 16,
                numAttentionHeads: 16, numKeyValueHeads: nil, headDim: nil, rmsNormEps: 1e-5,
                maxPositionEmbeddings: 4096, tieWordEmbeddings: false, bos: nil, eos: 50279, pad: 1, ropeTheta: 10000))
            let r = c.reader
            m.qkNorm = .acrossHeads
            let experts = try r.positiveInt("num_experts", default: 64)
            let topK = try r.positiveInt("num_experts_per_tok", default: 8)
            guard topK <= experts else { throw r.error("num_experts_per_tok", "\(topK) exceeds the \(experts) experts") }
            m.moe = MoEConfig(numExperts: experts, numExpertsPerToken: topK, expertIntermediateSize: m.intermediateSize,
                              normTopKProb: try r.bool("norm_topk_prob", default: false),
                              routerAuxLossCoef: try r.double("router_aux_loss_coef", default: 0.01))
            return m
        },
    ]

    /// olmoe `clip_qkv`: q, k and v are clamped to ±this after projection (nil: no clamp).
    public var clipQKV: Double? { (try? ConfigReader(text, file: file).double("clip_qkv")) ?? nil }
}
