import Foundation
import SmolFormats
import SmolModels
import SmolMoE
import SmolTensor

/// Loads a model for the engine from a checkpoint in any expert layout: per-expert (as qwen/mixtral/
/// olmoe checkpoints ship), trainable (transformers 5's stacked experts, gemma4/gpt_oss on disk) or
/// GGUF (SmolMoE's GGUF layout; the configuration comes from config.json). Non-trainable layouts
/// are read through SmolMoE's restructure plan, lazily: each tensor's bytes are assembled when the
/// loader asks for it. Block-quantized experts stay quantized (`QuantizedExpertStore`).
public enum ModelLoader {
    public static func load(config: ModelConfig, source: TensorSource) throws -> DenseDecoderModel {
        if let arch = MoEArchitecture.forModelType(config.modelType), config.moe != nil {
            let layout = MoERestructure.detectLayout(source.tensorInfos.map(\.name), arch)
            if layout != .trainable {
                var source = source
                if layout == .gguf, arch.gateUp == .interleavedColumns,
                   source.tensorInfos.contains(where: { $0.name.contains("_exps.") && $0.type.denseDType == nil }) {
                    // gpt_oss's trainable layout interleaves gate and up columns: element moves that
                    // quantized blocks cannot make, so its quantized expert stacks are decoded first.
                    source = DequantizedView(source) { $0.name.contains("_exps.") }
                }
                let plan = try MoERestructure.plan(source.tensorInfos, config: config, to: .trainable, from: layout)
                return try DenseDecoderModel.load(config: config, source: MoEPlanSource(plan: plan, source: source))
            }
        }
        return try DenseDecoderModel.load(config: config, source: source)
    }

    /// Loads any checkpoint `Checkpoint.open` gives: dense ones as `DenseDecoderModel.load`
    /// does; MoE ones in any expert layout (a GGUF file with SmolMoE's expert layout needs the
    /// model's config.json beside it, since GGUF metadata does not say everything the HF model
    /// needs); the quantized trainable layout's NF4/int4 expert stacks are dequantized exactly.
    public static func load(checkpoint ckpt: Checkpoint) throws -> DenseDecoderModel {
        switch ckpt.format {
        case .huggingFace, .safetensors:
            guard let json = ckpt.config else { return try DenseDecoderModel.load(checkpoint: ckpt) }
            let configPath = ((ckpt.folder ?? ckpt.path) as NSString).appendingPathComponent("config.json")
            let config = try ModelConfig(json: json, file: configPath)
            if let arch = MoEArchitecture.forModelType(config.modelType), config.moe != nil,
               MoERestructure.detectLayout(ckpt.source.tensorInfos.map(\.name), arch) != .trainable {
                return try load(config: config, source: ckpt.source)
            }
            return try DenseDecoderModel.load(checkpoint: ckpt)
        case .gguf:
            let beside = URL(fileURLWithPath: ckpt.path).deletingLastPathComponent().appendingPathComponent("config.json")
            if ckpt.source.tensorInfos.contains(where: { $0.name.contains("_exps.") }),
               FileManager.default.fileExists(atPath: beside.path) {
                let config = try ModelConfig.load(folder: beside.deletingLastPathComponent())
                if MoEArchitecture.forModelType(config.modelType) != nil, config.moe != nil {
                    return try load(config: config, source: ckpt.source)
                }
            }
            return try DenseDecoderModel.load(checkpoint: ckpt)
        }
    }

    /// `config.json` from `configDirectory`, weights from `source`.
    public static func load(configDirectory: URL, source: TensorSource) throws -> DenseDecoderModel {
        try load(config: try ModelConfig.load(folder: configDirectory), source: source)
    }
}
