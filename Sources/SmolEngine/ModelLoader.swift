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
                let plan = try MoERestructure.plan(source.tensorInfos, config: config, to: .trainable, from: layout)
                return try DenseDecoderModel.load(config: config, source: PlannedSource(plan: plan, source: source))
            }
        }
        return try DenseDecoderModel.load(config: config, source: source)
    }

    /// `config.json` from `configDirectory`, weights from `source`.
    public static func load(configDirectory: URL, source: TensorSource) throws -> DenseDecoderModel {
        try load(config: try ModelConfig.load(folder: configDirectory), source: source)
    }
}

/// A restructure plan seen as a tensor source: the plan's output names and infos, bytes evaluated
/// from the underlying source on request.
final class PlannedSource: TensorSource, @unchecked Sendable {   // immutable after init
    let plan: MoEPlan
    let source: TensorSource
    let tensorInfos: [TensorInfo]
    private let byName: [String: TensorRef]

    init(plan: MoEPlan, source: TensorSource) {
        self.plan = plan
        self.source = source
        tensorInfos = plan.tensors.map(\.info)
        byName = Dictionary(plan.tensors.map { ($0.info.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    var path: String { source.path }

    func tensorBytes(_ name: String) throws -> TensorBytes {
        guard let ref = byName[name] else {
            throw SmolError(.malformed, file: source.path, at: "tensor '\(name)'", "not in the restructured (\(plan.to.rawValue)) view")
        }
        return try plan.bytes(ref, from: source)
    }
}
