import Foundation
import SmolTensor

/// SmolLM3: Llama with NoPE layers. `no_rope_layers[i]` is 1 where layer i *uses* RoPE and 0
/// where it does not (transformers: `self.use_rope = config.no_rope_layers[layer_idx]`).
public enum SmolLM3Architecture: DenseArchitecture {
    public static let modelTypes = ["smollm3"]

    public static func spec(_ config: HFConfig) throws -> DenseDecoderSpec {
        let n = try config.layerCount
        var useRope = [Bool](repeating: true, count: n)
        if let flags = config.array("no_rope_layers") as? [Int] {
            guard flags.count == n else {
                throw SmolError(.malformed, file: config.file, at: "key 'no_rope_layers'", "\(flags.count) entries for \(n) layers")
            }
            useRope = flags.map { $0 != 0 }
        } else if let interval = try config.int("no_rope_layer_interval"), interval > 0 {
            // transformers' default: every interval-th layer (1-based) skips RoPE.
            useRope = (0..<n).map { ($0 + 1) % interval != 0 }
        }
        return try LlamaArchitecture.llamaLikeSpec(config, usesRope: { useRope[$0] })
    }
}
