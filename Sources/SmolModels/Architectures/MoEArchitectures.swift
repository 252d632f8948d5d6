import Foundation
import SmolKernels
import SmolTensor

extension DenseDecoderSpec {
    /// Puts `block` on every layer the configuration makes MoE (`isMoELayer`), dropping the dense
    /// MLP where the layer has none (`hasDenseMLP`).
    mutating func applyMoE(_ c: ModelConfig, _ block: MoEBlockSpec) {
        for i in layers.indices where c.isMoELayer(i) {
            layers[i].moe = block
            if !c.hasDenseMLP(i) { layers[i].intermediateSize = 0 }
        }
    }

    static func moeConfig(_ c: ModelConfig) throws -> MoEConfig {
        guard let m = c.moe else {
            throw SmolError(.malformed, file: c.file, "\(c.modelType) configuration without its expert settings")
        }
        return m
    }
}

/// Qwen 3 MoE: Qwen 3 attention (per-head q/k norm) and, on the layers `decoder_sparse_step` /
/// `mlp_only_layers` make sparse, a SwiGLU expert block: softmax over all experts, top-k,
/// renormalised when `norm_topk_prob`.
public enum Qwen3MoEArchitecture: DenseArchitecture {
    public static let modelTypes = ["qwen3_moe"]
    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        let m = try DenseDecoderSpec.moeConfig(c)
        var s = try DenseDecoderSpec.base(c)
        s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken, intermediateSize: m.expertIntermediateSize,
                                   scoring: .softmaxThenTopK(renormalize: m.normTopKProb), activation: .gated(s.activation)))
        return s
    }
}

/// Qwen 2 MoE: biases on q/k/v, no q/k norm; experts as Qwen 3 MoE plus an always-on shared expert
/// whose output is scaled by σ(x · shared_expert_gate) and added.
public enum Qwen2MoEArchitecture: DenseArchitecture {
    public static let modelTypes = ["qwen2_moe"]
    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        let m = try DenseDecoderSpec.moeConfig(c)
        var s = try DenseDecoderSpec.base(c, allowBiases: true)
        s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken, intermediateSize: m.expertIntermediateSize,
                                   scoring: .softmaxThenTopK(renormalize: m.normTopKProb), activation: .gated(s.activation),
                                   sharedExpertSize: m.sharedExpertIntermediateSize))
        return s
    }
}

/// Mixtral: Llama attention; every layer an expert block whose top-k softmax weights are always
/// renormalised (transformers' MixtralTopKRouter). On disk `block_sparse_moe.experts.N.w1/w3/w2`;
/// transformers 5 (and the trainable layout) name the block `mlp`.
public enum MixtralArchitecture: DenseArchitecture {
    public static let modelTypes = ["mixtral"]
    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        let m = try DenseDecoderSpec.moeConfig(c)
        var s = try DenseDecoderSpec.base(c)
        s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken, intermediateSize: m.expertIntermediateSize,
                                   scoring: .softmaxThenTopK(renormalize: true), activation: .gated(s.activation)))
        return s
    }
}

/// OLMoE: Llama attention with RMSNorm over the whole q and k projections (weights [H·Dh] and
/// [Hkv·Dh], applied before splitting into heads); experts with softmax, top-k, renormalised
/// only when `norm_topk_prob`.
public enum OlmoeArchitecture: DenseArchitecture {
    public static let modelTypes = ["olmoe"]
    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        let m = try DenseDecoderSpec.moeConfig(c)
        var s = try DenseDecoderSpec.base(c)
        guard s.layers.allSatisfy({ $0.qkNormAcrossHeads }) else {
            throw SmolError(.mismatch, file: c.file, "olmoe configuration without its whole-projection q/k norm")
        }
        s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken, intermediateSize: m.expertIntermediateSize,
                                   scoring: .softmaxThenTopK(renormalize: m.normTopKProb), activation: .gated(s.activation)))
        return s
    }
}

/// gpt_oss: biases on q/k/v/o, a learned sink logit per head in the attention softmax, sliding
/// window on alternate layers (`layer_types`), YaRN RoPE; every layer an expert block: router
/// with bias, softmax over the top-k logits, experts with biases and the clamped SwiGLU
/// (alpha 1.702, `swiglu_limit`), gate/up interleaved in `gate_up_proj` [E, D, 2I].
public enum GptOssArchitecture: DenseArchitecture {
    public static let modelTypes = ["gpt_oss"]
    /// transformers' GptOssExperts.alpha (not in the configuration).
    public static let swigluAlpha: Float = 1.702

    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        let m = try DenseDecoderSpec.moeConfig(c)
        guard let g = c.gptOss else {
            throw SmolError(.malformed, file: c.file, "gpt_oss configuration without its gpt_oss options")
        }
        var s = try DenseDecoderSpec.base(c, allowBiases: true)
        for i in s.layers.indices { s.layers[i].attentionSinks = true }
        s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken, intermediateSize: m.expertIntermediateSize,
                                   scoring: .topKThenSoftmax,
                                   activation: .clampedSwiGLU(alpha: swigluAlpha, limit: Float(g.swigluLimit)),
                                   routerBias: true, routerName: "mlp.router.weight", interleavedGateUp: true))
        return s
    }
}
