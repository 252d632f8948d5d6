import SmolFormats
import SmolTensor

// qwen3, qwen3_moe, qwen2_moe (transformers 5 `Qwen3Config`, `Qwen3MoeConfig`, `Qwen2MoeConfig`).
//
// Sliding attention is off unless `use_sliding_window`; then qwen3/qwen3_moe use it from layer
// `max_window_layers` on, qwen2_moe on even layers below `max_window_layers` (its class's rule,
// kept as written). qwen3 and qwen3_moe normalise q and k per head (q_norm/k_norm [head_dim]).
// MoE layers: `(i + 1) % decoder_sparse_step == 0` and i not in `mlp_only_layers`; others dense.
// qwen3_moe's transformers 5 name for the expert count is `num_local_experts`
// (`attribute_map = {"num_experts": "num_local_experts"}`), older files write `num_experts`.
extension ModelConfig {
    static let qwenFamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "qwen3", family: .qwen3) { c in
            var m = try ModelConfig(common: c, family: .qwen3, defaults: CommonDefaults(
                vocabSize: 151936, hiddenSize: 4096, intermediateSize: 22016, numHiddenLayers: 32,
                numAttentionHeads: 32, numKeyValueHeads: 32, headDim: 128, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 32768, tieWordEmbeddings: false, bos: nil, eos: nil, pad: nil, ropeTheta: 10000))
            m.qkNorm = .perHead
            try m.readQwenSliding(c.reader, evenLayersBelowMax: false)
            return m
        },
        ArchitectureEntry(modelType: "qwen3_moe", family: .qwen3MoE) { c in
            var m = try ModelConfig(common: c, family: .qwen3MoE, defaults: CommonDefaults(
                vocabSize: 151936, hiddenSize: 2048, intermediateSize: 6144, numHiddenLayers: 24,
                numAttentionHeads: 32, numKeyValueHeads: 4, headDim: nil, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 32768, tieWordEmbeddings: false, bos: nil, eos: nil, pad: nil, ropeTheta: 10000))
            m.qkNorm = .perHead
            try m.readQwenSliding(c.reader, evenLayersBelowMax: false)
            m.moe = try m.readQwenMoE(c.reader, defaultExperts: 128, defaultTopK: 8, defaultExpertSize: 768, shared: false)
            return m
        },
        ArchitectureEntry(modelType: "qwen2_moe", family: .qwen2MoE) { c in
            var m = try ModelConfig(common: c, family: .qwen2MoE, defaults: CommonDefaults(
                vocabSize: 151936, hiddenSize: 2048, intermediateSize: 5632, numHiddenLayers: 24,
                numAttentionHeads: 16, numKeyValueHeads: 16, headDim: nil, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 32768, tieWordEmbeddings: false, bos: nil, eos: nil, pad: nil, ropeTheta: 10000))
            // Qwen2-MoE has biases on q/k/v only (`qkv_bias`, default true), none on o_proj.
            m.qkvBias = try c.reader.bool("qkv_bias", default: true)
            m.outputProjectionBias = false
            try m.readQwenSliding(c.reader, evenLayersBelowMax: true)
            m.moe = try m.readQwenMoE(c.reader, defaultExperts: 60, defaultTopK: 4, defaultExpertSize: 1408, shared: true)
            return m
        },
    ]

    mutating func readQwenSliding(_ r: ConfigReader, evenLayersBelowMax: Bool) throws {
        let use = try r.bool("use_sliding_window", default: false)
        let window = use ? try ModelConfig.readWindow(r, default: 4096) : nil
        let maxWindowLayers = try r.int("max_window_layers", default: 28)
        try setLayerTypes(r) { i in
            guard window != nil else { return .full }
            if evenLayersBelowMax { return (i + 1) % 2 != 0 && i < maxWindowLayers ? .sliding : .full }
            return i >= maxWindowLayers ? .sliding : .full
        }
        slidingWindow = window
    }

    func readQwenMoE(_ r: ConfigReader, defaultExperts: Int, defaultTopK: Int, defaultExpertSize: Int, shared: Bool) throws -> MoEConfig {
        let experts = try r.int("num_local_experts") ?? r.int("num_experts") ?? defaultExperts
        guard experts > 0 else { throw r.error("num_experts", "must be positive, found \(experts)") }
        let topK = try r.positiveInt("num_experts_per_tok", default: defaultTopK)
        guard topK <= experts else { throw r.error("num_experts_per_tok", "\(topK) exceeds the \(experts) experts") }
        let mlpOnly = try r.intArray("mlp_only_layers") ?? []
        for l in mlpOnly where l < 0 || l >= numHiddenLayers {
            throw r.error("mlp_only_layers", "layer \(l) out of range 0..<\(numHiddenLayers)")
        }
        return MoEConfig(
            numExperts: experts, numExpertsPerToken: topK,
            expertIntermediateSize: try r.positiveInt("moe_intermediate_size", default: defaultExpertSize),
            sharedExpertIntermediateSize: shared ? try r.positiveInt("shared_expert_intermediate_size", default: 5632) : nil,
            decoderSparseStep: try r.positiveInt("decoder_sparse_step", default: 1),
            mlpOnlyLayers: mlpOnly,
            normTopKProb: try r.bool("norm_topk_prob", default: false),
            routerAuxLossCoef: try r.double("router_aux_loss_coef", default: 0.001))
    }
}
