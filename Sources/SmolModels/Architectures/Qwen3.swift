import Foundation
import SmolTensor

/// Qwen 3: Llama with an RMSNorm (x·w) over each head of q and k before RoPE (`qkNorm`, set by
/// `base` from the configuration).
public enum Qwen3Architecture: DenseArchitecture {
    public static let modelTypes = ["qwen3"]
    public static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec {
        let s = try DenseDecoderSpec.base(config)
        guard s.layers.allSatisfy(\.qkNorm) else {
            throw SmolError(.mismatch, file: config.file, "qwen3 configuration without per-head q/k norm")
        }
        return s
    }
}
