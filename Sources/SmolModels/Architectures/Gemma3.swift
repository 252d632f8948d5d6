import Foundation
import SmolKernels

/// Gemma 3 (text): Gemma 2's sandwich of (1+w) norms and √D embedding scale, plus (1+w) RMSNorm
/// over each q and k head, no attention soft-capping by default, a local RoPE base on sliding
/// layers and a global one on full layers, and sliding window on all but every
/// `sliding_window_pattern`-th layer when `layer_types` is absent.
public enum Gemma3Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma3_text", "gemma3"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        let pattern = try config.int("sliding_window_pattern") ?? config.int("_sliding_window_pattern") ?? 6
        let types = try config.layerTypes { ($0 + 1) % pattern == 0 ? "full_attention" : "sliding_attention" }
        // Pre-5.x configs: rope_theta for global layers, rope_local_base_freq for sliding ones.
        let local = try config.double("rope_local_base_freq") ?? 10000
        return try Gemma2Architecture.gemmaSpec(
            config, layerTypes: types, qkNorm: true,
            attnSoftcap: try config.double("attn_logit_softcapping").map { Float($0) },
            ropeTheta: { type in type == "sliding_attention" ? local : nil })
    }
}
