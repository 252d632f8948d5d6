import Foundation

/// Which MoE expert weight a tensor name is, and where its calibration statistics live.
///
/// The engine reports expert inputs under the trainable layout's stacked names
/// (`model.layers.N.<prefix>experts.gate_up_proj` for the gate/up input x, `….experts.down_proj`
/// for the down input act(x·gateᵀ)·(x·upᵀ)), one [E, …] statistics entry each. Checkpoints name the
/// same weights differently:
/// - GGUF stacks (llama.cpp's layout, [E, out, in], input columns last): `blk.N.ffn_gate_exps.weight`,
///   `blk.N.ffn_up_exps.weight`, `blk.N.ffn_gate_up_exps.weight` (gemma4, gate rows then up rows per
///   expert) read x; `blk.N.ffn_down_exps.weight` reads the down input. A llama.cpp imatrix names its
///   [E, in] statistics by these GGUF names.
/// - Per-expert Hugging Face tensors ([out, in]): `model.layers.N.<prefix>experts.E.{gate_proj,
///   up_proj,down_proj}.weight` (qwen2/3 MoE, OLMoE) or `….block_sparse_moe.experts.E.{w1,w3,w2}.weight`
///   (Mixtral: w1 gate, w3 up, w2 down).
public enum ExpertWeightName {
    public enum Kind: String, Sendable {
        /// gate and up projections: input x [in = hidden]
        case gateUp = "gate_up_proj"
        /// down projection: input [in = intermediate]
        case down = "down_proj"
    }

    /// "blk.N.ffn_{gate,up,gate_up,down}_exps.weight" → (N, kind).
    public static func ggufStack(_ name: String) -> (layer: Int, kind: Kind)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", parts[3] == "weight", let layer = canonicalIndex(parts[1]) else { return nil }
        switch parts[2] {
        case "ffn_gate_exps", "ffn_up_exps", "ffn_gate_up_exps": return (layer, .gateUp)
        case "ffn_down_exps": return (layer, .down)
        default: return nil
        }
    }

    /// "model.layers.N.….experts.E.<proj>.weight" → (N, E, kind).
    public static func hfPerExpert(_ name: String) -> (layer: Int, expert: Int, kind: Kind)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 7, parts[0] == "model", parts[1] == "layers", let layer = canonicalIndex(parts[2]),
              parts[parts.count - 1] == "weight", parts[parts.count - 4] == "experts",
              let expert = canonicalIndex(parts[parts.count - 3]) else { return nil }
        switch parts[parts.count - 2] {
        case "gate_proj", "up_proj", "w1", "w3": return (layer, expert, .gateUp)
        case "down_proj", "w2": return (layer, expert, .down)
        default: return nil
        }
    }

    /// A decimal index without leading zeros.
    static func canonicalIndex(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }), s == "0" || s.first != "0" else { return nil }
        return Int(s)
    }
}

/// Maps tensor names to the [E, …] statistics entry of their expert stack.
public struct ExpertStatisticsIndex: Sendable {
    /// (layer, kind) → the engine's stacked name present in the statistics.
    private var stacked: [String: String] = [:]
    private let names: Set<String>

    public init(_ source: any CalibrationStatisticsSource) {
        names = Set(source.tensorNames)
        for n in source.tensorNames {
            if let (layer, kind) = ExpertWeightName.ggufStack(n) {
                // A GGUF-named file (or imatrix) holds the gate/up input under one of its stacks.
                if stacked["\(layer)/\(kind.rawValue)"] == nil { stacked["\(layer)/\(kind.rawValue)"] = n }
                continue
            }
            guard n.hasPrefix("model.layers.") else { continue }
            for kind in [ExpertWeightName.Kind.gateUp, .down] where n.hasSuffix("experts." + kind.rawValue) {
                let parts = n.split(separator: ".", omittingEmptySubsequences: false)
                if parts.count >= 4, let layer = ExpertWeightName.canonicalIndex(parts[2]) {
                    stacked["\(layer)/\(kind.rawValue)"] = n
                }
            }
        }
    }

    /// The statistics name for layer `layer`'s `kind` experts; `exact` (a GGUF stack name, which a
    /// llama.cpp imatrix or a GGUF-named file uses) is preferred when present.
    public func statisticsName(layer: Int, kind: ExpertWeightName.Kind, exact: String? = nil) -> String? {
        if let exact, names.contains(exact) { return exact }
        return stacked["\(layer)/\(kind.rawValue)"]
    }

    /// For a GGUF expert stack [E, out, in]: its statistics name, or nil.
    public func forStack(_ gguf: String) -> String? {
        guard let (layer, kind) = ExpertWeightName.ggufStack(gguf) else { return nil }
        return statisticsName(layer: layer, kind: kind, exact: gguf)
    }

    /// For a per-expert HF tensor [out, in]: its stack's statistics name and the expert, or nil.
    public func forPerExpert(_ hf: String) -> (name: String, expert: Int)? {
        guard let (layer, expert, kind) = ExpertWeightName.hfPerExpert(hf),
              let n = statisticsName(layer: layer, kind: kind) else { return nil }
        return (n, expert)
    }
}
