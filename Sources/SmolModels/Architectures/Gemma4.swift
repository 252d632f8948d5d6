import Foundation
import SmolKernels
import SmolTensor

/// Gemma 4 (text, dense): like Gemma 3 but with x·w RMSNorms (not 1+w), a weightless RMSNorm on
/// v, attention scale 1 (q/k are normalized), wider heads on full-attention layers
/// (`per_layer_config`), "proportional" partial RoPE on full layers, per-layer input embeddings
/// (PLE) added after the MLP, a stored `layer_scalar` multiplying each layer's output, optional
/// keys-as-values on full layers (`attention_k_eq_v`) and optional KV sharing for the last
/// `num_kv_shared_layers` layers. With `enable_moe_block`, each layer also has an expert block
/// (`MoEBlockSpec.gemma4Style`).
public enum Gemma4Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma4_text", "gemma4"]

    public static func spec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        guard let g = c.gemma4 else {
            throw SmolError(.malformed, file: c.file, "gemma4 configuration without its Gemma 4 options")
        }
        var s = try DenseDecoderSpec.base(c)
        s.embedScale = DenseDecoderSpec.gemmaEmbedScale(c)
        for i in s.layers.indices {
            s.layers[i].attention.scale = 1
            s.layers[i].attention.softcap = nil
            s.layers[i].qkNorm = true
            s.layers[i].vNorm = true
            s.layers[i].sandwichNorms = true
            s.layers[i].hasLayerScalar = true
            s.layers[i].valueIsKey = g.attentionKEqV && c.attentionKind(i) == .full
            s.layers[i].kvSharedFrom = c.kvSourceLayer(i)
        }
        if let m = c.moe {
            // enable_moe_block: the dense MLP stays; the expert block (GeGLU experts, router on the
            // residual stream with scale and per_expert_scale, softmax → top-k → renormalise) is added.
            s.applyMoE(c, MoEBlockSpec(experts: m.numExperts, topK: m.numExpertsPerToken,
                                       intermediateSize: m.expertIntermediateSize,
                                       scoring: .softmaxThenTopK(renormalize: true), activation: .gated(s.activation),
                                       gemma4Style: true, expertPrefix: "", routerName: "router.proj.weight"))
        }
        if g.hiddenSizePerLayerInput > 0 {
            s.perLayerInput = PerLayerInputSpec(dim: g.hiddenSizePerLayerInput, vocabSize: g.vocabSizePerLayerInput)
        }
        return s
    }
}
