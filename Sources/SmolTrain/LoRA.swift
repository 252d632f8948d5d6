import Foundation
import SmolModels
import SmolTensor

/// A linear layer of a dense decoder layer that LoRA can adapt, named as PEFT's `target_modules`.
public enum LoRAModule: String, CaseIterable, Sendable, Hashable, Comparable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"
    /// MoE experts' stacked parameters (PEFT `target_parameters`): one LoRA pair per parameter,
    /// A [E·r, in] and B [out, E·r] (expert e: rows e·r… of A, columns j·E + e of B).
    case expertsGateUp = "experts.gate_up_proj", expertsDown = "experts.down_proj"

    /// The submodule holding it (`self_attn` or `mlp`), as in HF tensor names.
    public var parent: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn"
        case .gate, .up, .down, .expertsGateUp, .expertsDown: return "mlp"
        }
    }

    /// A stacked-experts parameter (not a linear module).
    public var isExperts: Bool { self == .expertsGateUp || self == .expertsDown }

    /// The linear modules (PEFT `target_modules` names).
    public static let linears: [LoRAModule] = [.q, .k, .v, .o, .gate, .up, .down]

    var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: LoRAModule, b: LoRAModule) -> Bool { a.order < b.order }
}

/// Where one LoRA pair sits: a layer and a module.
public struct LoRAKey: Sendable, Hashable, Comparable {
    public var layer: Int
    public var module: LoRAModule
    public init(layer: Int, module: LoRAModule) { self.layer = layer; self.module = module }
    public static func < (a: LoRAKey, b: LoRAKey) -> Bool { (a.layer, a.module.order) < (b.layer, b.module.order) }
}

/// One adapted linear: y = x·Wᵀ + scale · (x·Aᵀ)·Bᵀ with A: [rank, inDim], B: [outDim, rank]
/// (PEFT's lora_A.weight / lora_B.weight layouts). Also used for their gradients and optimizer moments.
public struct LoRAPair: Sendable, Equatable {
    public var a: [Float]      // [rank, inDim]
    public var b: [Float]      // [outDim, rank]
    public let rank: Int
    public let inDim: Int
    public let outDim: Int

    public init(a: [Float], b: [Float], rank: Int, inDim: Int, outDim: Int) {
        precondition(a.count == rank * inDim && b.count == outDim * rank, "LoRA pair shape mismatch")
        self.a = a; self.b = b; self.rank = rank; self.inDim = inDim; self.outDim = outDim
    }

    /// Zeros of the same shapes (gradient / moment buffers).
    public func zeros() -> LoRAPair {
        LoRAPair(a: [Float](repeating: 0, count: a.count), b: [Float](repeating: 0, count: b.count),
                 rank: rank, inDim: inDim, outDim: outDim)
    }
}

/// A LoRA adapter's hyper-parameters, as PEFT's `LoraConfig` holds them.
public struct LoRAConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var targets: [LoRAModule]
    /// rsLoRA: scale = alpha / √rank instead of alpha / rank.
    public var useRSLoRA: Bool = false
    /// PEFT's `base_model_name_or_path` (nil when unknown).
    public var baseModel: String? = nil

    public init(rank: Int, alpha: Double, targets: [LoRAModule], useRSLoRA: Bool = false, baseModel: String? = nil) {
        self.rank = rank; self.alpha = alpha; self.targets = targets; self.useRSLoRA = useRSLoRA
        self.baseModel = baseModel
    }

    /// The factor on the LoRA branch (PEFT's `scaling`).
    public var scale: Float {
        Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }
}

/// The trainable LoRA parameters of a dense model: one pair per adapted (layer, module).
public struct LoRAAdapter: Sendable {
    public var config: LoRAConfig
    public var pairs: [LoRAKey: LoRAPair]
    /// HF name prefix of the decoder (`model.`), for PEFT names.
    public var namePrefix: String
    /// PEFT's module path (after `layers.N.`) of each adapted experts parameter. PEFT wraps the
    /// parameters in `target_parameters` order, each wrapper around the previous one, so with both
    /// targeted the first is `mlp.experts.base_layer` and the second `mlp.experts`.
    public var expertPaths: [LoRAModule: String]

    public init(config: LoRAConfig, pairs: [LoRAKey: LoRAPair], namePrefix: String = "model.",
                expertPaths: [LoRAModule: String] = [:]) {
        self.config = config; self.pairs = pairs; self.namePrefix = namePrefix; self.expertPaths = expertPaths
    }

    /// `expertPaths` for experts parameters listed in `targetParameters` order; `expertPrefix` is
    /// what precedes `experts.` in the model's names ("mlp." or "" for gemma4).
    public static func expertPaths(_ targetParameters: [LoRAModule], expertPrefix: String = "mlp.") -> [LoRAModule: String] {
        var out: [LoRAModule: String] = [:]
        for (i, m) in targetParameters.enumerated() {
            let wrappersAround = targetParameters.count - 1 - i   // later parameters wrap this one
            out[m] = expertPrefix + "experts" + String(repeating: ".base_layer", count: wrappersAround)
        }
        return out
    }

    /// The adapted positions in a fixed order (layer, then q k v o gate up down).
    public var keys: [LoRAKey] { pairs.keys.sorted() }

    /// (inDim, outDim) of a module in a layer of `spec`, or nil when the layer has no such linear
    /// (KV-shared layers have no k/v, keys-as-values layers no v, expert-only layers no dense MLP).
    public static func shape(of module: LoRAModule, layer: DecoderLayerSpec, hidden D: Int) -> (inDim: Int, outDim: Int)? {
        let q = layer.heads * layer.headDim, kv = layer.kvHeads * layer.headDim, F = layer.intermediateSize
        switch module {
        case .expertsGateUp: return layer.moe.map { (D, 2 * $0.intermediateSize) }
        case .expertsDown: return layer.moe.map { ($0.intermediateSize, D) }
        case .q: return (D, q)
        case .k: return layer.kvSharedFrom == nil ? (D, kv) : nil
        case .v: return (layer.kvSharedFrom == nil && !layer.valueIsKey) ? (D, kv) : nil
        case .o: return (q, D)
        case .gate, .up: return F > 0 ? (D, F) : nil
        case .down: return F > 0 ? (F, D) : nil
        }
    }

    /// A fresh adapter as PEFT initialises one (`init_lora_weights=True`): A ~ kaiming_uniform(a=√5)
    /// = U(−1/√in, 1/√in), B = 0, so the adapted model starts equal to the base. Seeded.
    public static func initialized(spec: DenseDecoderSpec, config: LoRAConfig, seed: UInt64 = 0,
                                   namePrefix: String = "model.") -> LoRAAdapter {
        var rng = SplitMix64(seed: seed)
        var pairs: [LoRAKey: LoRAPair] = [:]
        for (i, layer) in spec.layers.enumerated() {
            for m in config.targets.sorted() {
                guard let (inDim, outDim) = shape(of: m, layer: layer, hidden: spec.hiddenSize) else { continue }
                let bound = 1 / Double(inDim).squareRoot()
                let rank = config.rank * (m.isExperts ? layer.moe!.experts : 1)   // experts: E·r rows
                let a = (0..<(rank * inDim)).map { _ in Float((rng.nextDouble() * 2 - 1) * bound) }
                pairs[LoRAKey(layer: i, module: m)] = LoRAPair(a: a, b: [Float](repeating: 0, count: outDim * rank),
                                                                rank: rank, inDim: inDim, outDim: outDim)
            }
        }
        let expertPrefix = spec.layers.compactMap(\.moe).first?.expertPrefix ?? "mlp."
        return LoRAAdapter(config: config, pairs: pairs, namePrefix: namePrefix,
                           expertPaths: expertPaths(config.targets.filter { m in m.isExperts && pairs.keys.contains { $0.module == m } },
                                                    expertPrefix: expertPrefix))
    }

    /// Zeros in every pair (a gradient accumulator).
    public func zeros() -> LoRAAdapter {
        LoRAAdapter(config: config, pairs: pairs.mapValues { $0.zeros() }, namePrefix: namePrefix, expertPaths: expertPaths)
    }

    /// PEFT's saved name of a matrix: `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
    /// `adapterName` inserts PEFT's in-memory adapter name (`…lora_A.default.weight`).
    public func peftName(_ key: LoRAKey, _ matrix: LoRAMatrix, adapterName: String? = nil) -> String {
        let mid = adapterName.map { ".\($0)" } ?? ""
        let path = expertPaths[key.module] ?? "\(key.module.parent).\(key.module.rawValue)"
        return "base_model.model.\(namePrefix)layers.\(key.layer).\(path).lora_\(matrix.rawValue)\(mid).weight"
    }

    /// Every LoRA matrix with its PEFT name and shape, in `keys` order (A before B).
    public func namedTensors(adapterName: String? = nil) -> [(name: String, shape: [Int], values: [Float])] {
        keys.flatMap { key -> [(name: String, shape: [Int], values: [Float])] in
            let p = pairs[key]!
            return [(peftName(key, .a, adapterName: adapterName), [p.rank, p.inDim], p.a),
                    (peftName(key, .b, adapterName: adapterName), [p.outDim, p.rank], p.b)]
        }
    }

    /// Total number of trainable parameters.
    public var parameterCount: Int { pairs.values.reduce(0) { $0 + $1.a.count + $1.b.count } }
}

public enum LoRAMatrix: String, Sendable { case a = "A", b = "B" }

/// Small deterministic generator (SplitMix64) for adapter initialisation and data shuffling.
public struct SplitMix64: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }
}
