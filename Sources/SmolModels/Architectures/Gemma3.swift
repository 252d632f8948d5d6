import Foundation
import SmolKernels

/// Gemma 3 (text): Gemma 2's sandwich of (1+w) norms and √D embedding scale, plus (1+w) RMSNorm
/// over each q and k head, no attention soft-capping by default, a local RoPE base on sliding
/// layers and a global one on full layers (from `ModelConfig.rope(layer:)`).
public enum Gemma3Architecture: DenseArchitecture {
    public static let modelTypes = ["gemma3_text", "gemma3"]
    public static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec {
        try Gemma2Architecture.gemmaSpec(config)
    }
}
