import Foundation
import SmolKernels

/// Gemma 2: (1+w) RMSNorms in a sandwich (input, post-attention, pre- and post-feedforward),
/// embeddings × √D, GeGLU (gelu tanh), attention scaled by 1/√query_pre_attn_scalar and
/// soft-capped (attn_logit_softcapping), sliding window on the sliding layers, final logits
/// soft-capped.
public enum Gemma2Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma2"]

    public static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec {
        try gemmaSpec(config)
    }

    /// Gemma 2 and 3 differ only in what `ModelConfig` already says (q/k norms, soft-capping,
    /// per-kind RoPE bases).
    static func gemmaSpec(_ c: ModelConfig) throws -> DenseDecoderSpec {
        var s = try DenseDecoderSpec.base(c)
        s.normWeighting = .onePlus
        s.embedScale = DenseDecoderSpec.gemmaEmbedScale(c)
        let scale = Float(pow(c.queryPreAttnScalar ?? Double(c.headDim), -0.5))
        for i in s.layers.indices {
            s.layers[i].attention.scale = scale
            s.layers[i].attention.softcap = c.attnLogitSoftcapping.map { Float($0) }
            s.layers[i].sandwichNorms = true
        }
        return s
    }
}
