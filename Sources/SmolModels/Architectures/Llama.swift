import Foundation
import SmolKernels

/// Llama: pre-norm blocks (x·w RMSNorm), SwiGLU, causal attention scaled by 1/√Dh, RoPE on every
/// layer — `DenseDecoderSpec.base` as is.
public enum LlamaArchitecture: DenseArchitecture {
    public static let modelTypes = ["llama"]
    public static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec { try .base(config) }
}
