import Foundation

/// SmolLM3: Llama with NoPE layers. `no_rope_layers[i]` is 1 where layer i *uses* RoPE
/// (transformers: `self.use_rope = config.no_rope_layers[layer_idx]`); `ModelConfig.usesRoPE`
/// carries it, and `base` leaves RoPE out of those layers.
public enum SmolLM3Architecture: DenseArchitecture {
    public static let modelTypes = ["smollm3"]
    public static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec { try .base(config) }
}
