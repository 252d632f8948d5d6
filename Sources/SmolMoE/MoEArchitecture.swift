import SmolModels
import SmolTensor

/// The three ways MoE experts are laid out (formats/moe-trainable.md).
public enum MoELayout: String, CaseIterable, Sendable {
    /// One tensor per expert and projection, as qwen2_moe / qwen3_moe / mixtral / olmoe checkpoints
    /// ship on disk (`mlp.experts.3.gate_proj.weight`, mixtral `block_sparse_moe.experts.3.w1.weight`).
    /// For gemma4 and gpt_oss, whose checkpoints ship fused, the on-disk layout is the trainable one.
    case perExpert = "per-expert"
    /// transformers 5's in-memory layout: stacked `experts.gate_up_proj` and `experts.down_proj`.
    case trainable
    /// llama.cpp's: `blk.N.ffn_{gate,up,down}_exps` (gemma4: `ffn_gate_up_exps`), GGUF names throughout.
    case gguf
}

/// How an architecture's stacked gate/up projection is laid out in the trainable layout.
public enum GateUpLayout: Sendable, Equatable {
    /// `[E, 2I, H]`: rows 0..<I are the gate projection, I..<2I the up projection (transformers 5
    /// `MixtralExperts`, `Qwen3MoeExperts`, …, gemma4 on disk).
    case gateRowsFirst
    /// `[E, H, 2I]` with column 2j the gate and 2j+1 the up projection of unit j; down `[E, I, H]`
    /// (gpt_oss, on disk and in memory).
    case interleavedColumns
}

/// One MoE architecture's expert naming in every layout: the table the rewrites read.
public struct MoEArchitecture: Sendable {
    /// HF `model_type`.
    public let modelType: String
    /// `general.architecture` of the GGUF layout.
    public let ggufArchitecture: String
    /// What precedes `experts.` after "model.layers.N." in the trainable layout ("mlp." or "" for gemma4).
    public let expertPrefix: String
    /// Per-expert on-disk names; nil when the checkpoint ships fused (gemma4, gpt_oss).
    public let perExpert: PerExpertNames?
    public let gateUp: GateUpLayout
    /// gpt_oss: `experts.gate_up_proj_bias` [E, 2I] (interleaved like the weight) and `down_proj_bias` [E, H].
    public let expertBiases: Bool
    /// GGUF keeps gate and up fused as `ffn_gate_up_exps` (gemma4) instead of two stacks.
    public let ggufFusedGateUp: Bool
    /// The router weight after "model.layers.N." in the trainable layout.
    public let router: String
    /// Whether llama.cpp's converter writes `{arch}.expert_feed_forward_length` for it.
    let writesExpertFeedForwardLength: Bool

    /// Per-expert names: "model.layers.N.\(block).experts.E.\(gate|up|down).weight".
    public struct PerExpertNames: Sendable {
        public let block: String
        public let gate: String
        public let up: String
        public let down: String
    }

    // MARK: Names

    public func gateUpName(_ layer: Int) -> String { "model.layers.\(layer).\(expertPrefix)experts.gate_up_proj" }
    public func downName(_ layer: Int) -> String { "model.layers.\(layer).\(expertPrefix)experts.down_proj" }
    public func gateUpBiasName(_ layer: Int) -> String { gateUpName(layer) + "_bias" }
    public func downBiasName(_ layer: Int) -> String { downName(layer) + "_bias" }
    public func routerName(_ layer: Int) -> String { "model.layers.\(layer).\(router)" }

    func perExpertName(_ layer: Int, _ expert: Int, _ projection: String) -> String {
        "model.layers.\(layer).\(perExpert!.block).experts.\(expert).\(projection).weight"
    }

    /// The HF → GGUF table for every non-expert tensor (SmolModels).
    public var mapping: GGUFArchitectureMapping {
        GGUFArchitectureMapping.forMoEModelType(modelType)!
    }

    // MARK: Registry

    /// Every MoE architecture, by HF `model_type`: the one table of rewrites.
    public static let all: [MoEArchitecture] = [
        MoEArchitecture(modelType: "qwen2_moe", ggufArchitecture: "qwen2moe", expertPrefix: "mlp.",
                        perExpert: PerExpertNames(block: "mlp", gate: "gate_proj", up: "up_proj", down: "down_proj"),
                        gateUp: .gateRowsFirst, expertBiases: false, ggufFusedGateUp: false, router: "mlp.gate.weight",
                        writesExpertFeedForwardLength: true),
        MoEArchitecture(modelType: "qwen3_moe", ggufArchitecture: "qwen3moe", expertPrefix: "mlp.",
                        perExpert: PerExpertNames(block: "mlp", gate: "gate_proj", up: "up_proj", down: "down_proj"),
                        gateUp: .gateRowsFirst, expertBiases: false, ggufFusedGateUp: false, router: "mlp.gate.weight",
                        writesExpertFeedForwardLength: true),
        // transformers 5 renames Mixtral's `block_sparse_moe` to `mlp` in memory.
        MoEArchitecture(modelType: "mixtral", ggufArchitecture: "llama", expertPrefix: "mlp.",
                        perExpert: PerExpertNames(block: "block_sparse_moe", gate: "w1", up: "w3", down: "w2"),
                        gateUp: .gateRowsFirst, expertBiases: false, ggufFusedGateUp: false, router: "mlp.gate.weight",
                        writesExpertFeedForwardLength: false),
        MoEArchitecture(modelType: "olmoe", ggufArchitecture: "olmoe", expertPrefix: "mlp.",
                        perExpert: PerExpertNames(block: "mlp", gate: "gate_proj", up: "up_proj", down: "down_proj"),
                        gateUp: .gateRowsFirst, expertBiases: false, ggufFusedGateUp: false, router: "mlp.gate.weight",
                        writesExpertFeedForwardLength: false),
        MoEArchitecture(modelType: "gemma4_text", ggufArchitecture: "gemma4", expertPrefix: "",
                        perExpert: nil, gateUp: .gateRowsFirst, expertBiases: false, ggufFusedGateUp: true,
                        router: "router.proj.weight", writesExpertFeedForwardLength: true),
        MoEArchitecture(modelType: "gpt_oss", ggufArchitecture: "gpt-oss", expertPrefix: "mlp.",
                        perExpert: nil, gateUp: .interleavedColumns, expertBiases: true, ggufFusedGateUp: false,
                        router: "mlp.router.weight", writesExpertFeedForwardLength: true),
    ]

    /// The architecture of an HF `model_type`, or nil for a dense one.
    public static func forModelType(_ modelType: String) -> MoEArchitecture? {
        all.first { $0.modelType == modelType }
    }
}
