import Foundation

/// Qwen 3: Llama with an RMSNorm (x·w) over each head of q and k before RoPE.
public enum Qwen3Architecture: DenseArchitecture {
    public static let modelTypes = ["qwen3"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        try LlamaArchitecture.llamaLikeSpec(config, qkNorm: true)
    }
}
