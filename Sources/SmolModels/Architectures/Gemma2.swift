import Foundation
import SmolKernels

/// Gemma 2: (1+w) RMSNorms in a sandwich (input, post-attention, pre- and post-feedforward),
/// embeddings × √D, GeGLU (gelu tanh), attention scaled by 1/√query_pre_attn_scalar and
/// soft-capped (attn_logit_softcapping), sliding window on the "sliding_attention" layers (even
/// layers when layer_types is absent), final logits soft-capped.
public enum Gemma2Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma2"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        let types = try config.layerTypes { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
        return try gemmaSpec(config, layerTypes: types, qkNorm: false,
                             attnSoftcap: try config.double("attn_logit_softcapping").map { Float($0) })
    }

    /// Shared by Gemma 2 and 3 (they differ in q/k norms, soft-capping and RoPE bases).
    static func gemmaSpec(_ config: HFConfig, layerTypes types: [String], qkNorm: Bool, attnSoftcap: Float?,
                          ropeTheta: (String) throws -> Double? = { _ in nil }) throws -> DenseDecoderSpec {
        let headDim = try config.headDim
        let D = try config.hiddenSize
        let scalar = try config.double("query_pre_attn_scalar") ?? Double(headDim)
        let window = try config.int("sliding_window")
        var layers: [DecoderLayerSpec] = []
        for i in 0..<(try config.layerCount) {
            let sliding = types[i] == "sliding_attention"
            layers.append(DecoderLayerSpec(
                heads: try config.heads, kvHeads: try config.kvHeads, headDim: headDim,
                intermediateSize: try config.intermediateSize(layer: i),
                attention: AttentionOptions(scale: Float(pow(scalar, -0.5)), softcap: attnSoftcap,
                                            window: sliding ? window : nil),
                rope: try config.rope(layerType: types[i], headDim: headDim, legacyTheta: try ropeTheta(types[i])),
                qkNorm: qkNorm, sandwichNorms: true))
        }
        return DenseDecoderSpec(
            modelType: config.modelType, vocabSize: try config.vocabSize, hiddenSize: D,
            normEps: try config.eps, normWeighting: .onePlus,
            activation: try config.activation(["hidden_activation", "hidden_act"]),
            // transformers: torch.tensor(hidden_size ** 0.5, dtype=float32)
            embedScale: Float(Double(D).squareRoot()),
            finalLogitSoftcap: try config.double("final_logit_softcapping").map { Float($0) },
            tiedEmbeddings: config.has("tie_word_embeddings") ? config.tied : true,
            perLayerInput: nil, layers: layers)
    }
}
