import Foundation
import SmolKernels

/// Llama: pre-norm blocks (x·w RMSNorm), SwiGLU, full causal attention scaled by 1/√Dh, RoPE on
/// every layer. SmolLM3 and Qwen 3 reuse this with their differences.
public enum LlamaArchitecture: DenseArchitecture {
    public static let modelTypes = ["llama", "mistral"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        try llamaLikeSpec(config)
    }

    /// The shared Llama-shaped spec. `usesRope(i)` lets SmolLM3 switch RoPE off per layer;
    /// `qkNorm` is Qwen 3's per-head q/k RMSNorm.
    static func llamaLikeSpec(_ config: HFConfig, qkNorm: Bool = false,
                              usesRope: (Int) -> Bool = { _ in true }) throws -> DenseDecoderSpec {
        let headDim = try config.headDim
        let slidingEnabled = config.bool("use_sliding_window", default: config.modelType == "mistral")
        let window = try config.int("sliding_window")
        let types = try config.layerTypes { _ in slidingEnabled && window != nil ? "sliding_attention" : "full_attention" }
        var layers: [DecoderLayerSpec] = []
        for i in 0..<(try config.layerCount) {
            let sliding = types[i] == "sliding_attention" && slidingEnabled
            layers.append(DecoderLayerSpec(
                heads: try config.heads, kvHeads: try config.kvHeads, headDim: headDim,
                intermediateSize: try config.intermediateSize(layer: i),
                attention: AttentionOptions(scale: Float(pow(Double(headDim), -0.5)), window: sliding ? window : nil),
                rope: usesRope(i) ? try config.rope(layerType: types[i], headDim: headDim) : nil,
                qkNorm: qkNorm))
        }
        return DenseDecoderSpec(
            modelType: config.modelType, vocabSize: try config.vocabSize, hiddenSize: try config.hiddenSize,
            normEps: try config.eps, normWeighting: .multiply,
            activation: try config.activation(["hidden_act", "hidden_activation"]),
            embedScale: nil, finalLogitSoftcap: nil, tiedEmbeddings: config.tied, perLayerInput: nil, layers: layers)
    }
}
