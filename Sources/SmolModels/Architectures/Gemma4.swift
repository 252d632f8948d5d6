import Foundation
import SmolKernels
import SmolTensor

/// Gemma 4 (text, dense): like Gemma 3 but with x·w RMSNorms (not 1+w), a weightless RMSNorm on
/// v, attention scale 1 (q/k are normalized), wider heads on full-attention layers
/// (`per_layer_config` in transformers ≥ 5.15, `global_head_dim` before), "proportional" partial
/// RoPE on full layers, per-layer input embeddings (PLE) added after the MLP, a stored
/// `layer_scalar` multiplying each layer's output, optional keys-as-values on full layers
/// (`attention_k_eq_v`) and optional KV sharing for the last `num_kv_shared_layers` layers.
public enum Gemma4Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma4_text", "gemma4"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        if config.bool("enable_moe_block", default: false) {
            throw SmolError(.unsupported, file: config.file, at: "key 'enable_moe_block'", "Gemma 4 MoE is not a dense model")
        }
        let n = try config.layerCount
        let D = try config.hiddenSize
        let types = try config.layerTypes { ($0 + 1) % 6 == 0 ? "full_attention" : "sliding_attention" }
        let window = try config.int("sliding_window")
        let perLayer = config.object("per_layer_config") ?? [:]
        let kEqV = config.bool("attention_k_eq_v", default: false)
        let shared = try config.int("num_kv_shared_layers") ?? 0
        let firstShared = n - shared
        let doubleWide = config.bool("use_double_wide_mlp", default: false)

        var layers: [DecoderLayerSpec] = []
        for i in 0..<n {
            let full = types[i] != "sliding_attention"
            let override = perLayer[String(i)] as? [String: Any] ?? [:]
            func overridden(_ key: String) -> Int? { (override[key] as? NSNumber)?.intValue }
            var headDim = try config.headDim
            var kvHeads = try config.kvHeads
            if full, let g = try config.int("global_head_dim") { headDim = g }
            let valueIsKey = kEqV && full
            if valueIsKey, let g = try config.int("num_global_key_value_heads") { kvHeads = g }
            headDim = overridden("head_dim") ?? headDim
            kvHeads = overridden("num_key_value_heads") ?? kvHeads
            let heads = try overridden("num_attention_heads") ?? config.heads

            // KV sharing: a shared layer reads the last non-shared layer of its own type.
            var source: Int? = nil
            if i >= firstShared && firstShared > 0 {
                guard let s = (0..<firstShared).last(where: { types[$0] == types[i] }) else {
                    throw SmolError(.malformed, file: config.file, at: "key 'num_kv_shared_layers'",
                                    "layer \(i) has no earlier \(types[i]) layer to share keys and values with")
                }
                source = s
            }
            var ffn = try config.intermediateSize(layer: i)
            if doubleWide && source != nil { ffn *= 2 }
            layers.append(DecoderLayerSpec(
                heads: heads, kvHeads: kvHeads, headDim: headDim, intermediateSize: ffn,
                attention: AttentionOptions(scale: 1, softcap: nil, window: full ? nil : window),
                rope: try config.rope(layerType: types[i], headDim: headDim),
                qkNorm: true, vNorm: true, sandwichNorms: true, valueIsKey: valueIsKey,
                kvSharedFrom: source, hasLayerScalar: true))
        }
        var ple: PerLayerInputSpec? = nil
        if let p = try config.int("hidden_size_per_layer_input"), p > 0 {
            ple = PerLayerInputSpec(dim: p, vocabSize: try config.int("vocab_size_per_layer_input", default: try config.vocabSize))
        }
        return DenseDecoderSpec(
            modelType: config.modelType, vocabSize: try config.vocabSize, hiddenSize: D,
            normEps: try config.eps, normWeighting: .multiply,
            activation: try config.activation(["hidden_activation", "hidden_act"]),
            embedScale: Float(Double(D).squareRoot()),
            finalLogitSoftcap: try config.double("final_logit_softcapping").map { Float($0) },
            tiedEmbeddings: config.has("tie_word_embeddings") ? config.tied : true,
            perLayerInput: ple, layers: layers)
    }
}
