import Foundation
import SmolTensor

/// llama.cpp's file types (`llama_ftype`): the named quantization mixes `llama-quantize` accepts,
/// with the values written to `general.file_type`.
public enum QuantMix: String, CaseIterable, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    case q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1", q8_0 = "Q8_0"
    case q2_K = "Q2_K", q2_K_S = "Q2_K_S"
    case q3_K_S = "Q3_K_S", q3_K_M = "Q3_K_M", q3_K_L = "Q3_K_L"
    case q4_K_S = "Q4_K_S", q4_K_M = "Q4_K_M"
    case q5_K_S = "Q5_K_S", q5_K_M = "Q5_K_M"
    case q6_K = "Q6_K"

    /// `general.file_type`.
    public var fileType: Int {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q2_K: return 10
        case .q3_K_S: return 11
        case .q3_K_M: return 12
        case .q3_K_L: return 13
        case .q4_K_S: return 14
        case .q4_K_M: return 15
        case .q5_K_S: return 16
        case .q5_K_M: return 17
        case .q6_K: return 18
        case .q2_K_S: return 21
        case .bf16: return 32
        }
    }

    /// The type most tensors get (`default_type` in llama-quantize).
    public var defaultType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q8_0: return .q8_0
        case .q2_K, .q2_K_S: return .q2_K
        case .q3_K_S, .q3_K_M, .q3_K_L: return .q3_K
        case .q4_K_S, .q4_K_M: return .q4_K
        case .q5_K_S, .q5_K_M: return .q5_K
        case .q6_K: return .q6_K
        }
    }

    public init?(name: String) {
        guard let m = QuantMix.allCases.first(where: { $0.rawValue == name.uppercased() }) else { return nil }
        self = m
    }
}

/// The facts about a model that llama-quantize's type choice looks at.
public struct QuantModelFacts: Sendable {
    public var layerCount: Int
    public var headCount: Int
    public var headCountKV: Int
    public var expertCount: Int
    public var architecture: String

    public init(layerCount: Int, headCount: Int, headCountKV: Int, expertCount: Int = 0, architecture: String) {
        self.layerCount = layerCount
        self.headCount = headCount
        self.headCountKV = headCountKV
        self.expertCount = expertCount
        self.architecture = architecture
    }

    var gqa: Int { headCountKV > 0 ? headCount / headCountKV : 0 }
}

/// User overrides, as llama-quantize's `--tensor-type`, `--output-tensor-type`,
/// `--token-embedding-type` and `--pure`.
public struct QuantOverrides: Sendable {
    /// (regular expression, type): the last match wins; not applied where a fallback was needed.
    public var tensorTypes: [(pattern: String, type: GGMLType)] = []
    public var outputTensorType: GGMLType?
    public var tokenEmbeddingType: GGMLType?
    /// Every quantized tensor gets the mix's default type (no bumps, no output/embedding rule).
    public var pure = false
    /// Whether an importance matrix is used (changes a few rules, as in llama.cpp).
    public var hasImatrix = false

    public init() {}
}

/// What happens to one tensor.
public struct QuantChoice: Sendable, Equatable {
    public var name: String
    /// The output type (the input type when the tensor is copied).
    public var type: GGMLType
    /// False for tensors copied as they are (norms, routers, 1-D tensors, or already of `type`).
    public var quantize: Bool
    /// The type asked for fell back because the row length is not a multiple of its block
    /// (e.g. Gemma 3 270M's 640-wide rows: Q4_K → Q5_0, Q6_K → Q8_0).
    public var fallbackFrom: GGMLType?
}

/// llama-quantize's per-tensor type choice (`llama_tensor_get_type` and the loop around it in
/// llama-quant.cpp), for the non-IQ mixes. Tensors are visited in the order of llama.cpp's
/// `weights_map` (a `std::map` with `weight_name_comparer`: by the N of `blk.N.`, tensors without
/// one first, then by name): the attn_v / ffn_down counters, and so which layers get more bits,
/// follow that order.
public enum QuantMixPlanner {
    public static func plan(_ tensors: [(name: String, type: GGMLType, shape: [Int])], mix: QuantMix,
                            facts: QuantModelFacts, overrides: QuantOverrides = QuantOverrides()) throws -> [QuantChoice] {
        let ordered = tensors.sorted { a, b in
            let la = layerOf(a.name), lb = layerOf(b.name)
            return la != lb ? la < lb : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var state = State(facts: facts)
        for t in ordered {
            if t.name.contains("attn_v.weight") || t.name.contains("attn_qkv.weight") || t.name.contains("attn_kv_b.weight") {
                state.nAttentionWV += 1
            } else if t.name == "output.weight" {
                state.hasOutput = true
            }
        }
        state.nFFNDown = facts.layerCount
        var choices: [String: QuantChoice] = [:]
        for t in ordered {
            choices[t.name] = try choose(t, mix: mix, overrides: overrides, state: &state)
        }
        return tensors.map { choices[$0.name]! }
    }

    /// The N of a `blk.N.` prefix, -1 without one (as sscanf leaves it).
    public static func layerOf(_ name: String) -> Int {
        guard name.hasPrefix("blk.") else { return -1 }
        return Int(name.dropFirst(4).prefix { $0 != "." }) ?? -1
    }

    struct State {
        let facts: QuantModelFacts
        var nAttentionWV = 0
        var iAttentionWV = 0
        var nFFNDown = 0
        var iFFNDown = 0
        var hasOutput = false
    }

    /// Which tensors llama-quantize quantizes at all.
    public static func isQuantizable(name: String, shape: [Int]) -> Bool {
        guard name.hasSuffix("weight"), ggmlDimensions(shape) >= 2 else { return false }
        for skip in ["_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
                     "ssm_conv1d.weight", "shortconv.conv.weight", "attn_rel_b.weight", "time_mix_"] where name.contains(skip) {
            return false
        }
        return name != "position_embd.weight" && name != "token_types.weight"
    }

    /// `ggml_n_dims`: the dimensions up to the last one larger than 1, counted in ggml's order
    /// (innermost first). A row-major [1, 64] tensor (qwen2moe's `ffn_gate_inp_shexp`, ne = {64, 1})
    /// is 1-D to llama-quantize, so it is not quantized.
    public static func ggmlDimensions(_ shape: [Int]) -> Int {
        let ne = Array(shape.reversed())
        return (ne.lastIndex { $0 > 1 }.map { $0 + 1 }) ?? 1
    }

    static func useMoreBits(_ i: Int, _ n: Int) -> Bool {
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    static func choose(_ t: (name: String, type: GGMLType, shape: [Int]), mix: QuantMix,
                       overrides: QuantOverrides, state: inout State) throws -> QuantChoice {
        guard isQuantizable(name: t.name, shape: t.shape) else {
            return QuantChoice(name: t.name, type: t.type, quantize: false, fallbackFrom: nil)
        }
        var newType = mix.defaultType
        var fallbackFrom: GGMLType?
        if !overrides.pure && newType.isQuantized {
            let before = newType
            (newType, fallbackFrom) = try typeFor(t, mix: mix, start: newType, overrides: overrides, state: &state)
            if fallbackFrom == nil {
                for (pattern, type) in overrides.tensorTypes where t.name.range(of: pattern, options: .regularExpression) != nil {
                    newType = type
                }
            }
            _ = before
        }
        if let e = overrides.tokenEmbeddingType, t.name == "token_embd.weight" { newType = e }
        if let o = overrides.outputTensorType, t.name == "output.weight" { newType = o }
        let row = t.shape.last ?? 0
        if row % newType.blockLayout.elements != 0 {
            throw SmolError(.invalidArgument, at: "tensor '\(t.name)'",
                            "rows of \(row) are not a multiple of \(newType.name)'s block of \(newType.blockLayout.elements)")
        }
        return QuantChoice(name: t.name, type: newType, quantize: newType != t.type, fallbackFrom: fallbackFrom)
    }

    /// `llama_tensor_get_type` for the non-IQ file types, then the fallback for incompatible rows.
    static func typeFor(_ t: (name: String, type: GGMLType, shape: [Int]), mix: QuantMix, start: GGMLType,
                        overrides: QuantOverrides, state: inout State) throws -> (GGMLType, GGMLType?) {
        let name = t.name
        let nx = t.shape.last ?? 0
        let facts = state.facts
        var newType = start
        func layer(_ counter: Int, _ n: Int) throws -> (Int, Int) {
            guard facts.expertCount > 1 else { return (counter, n) }
            // Expert tensors are not in layer order: read the layer from the name.
            guard name.hasPrefix("blk."), let i = Int(name.dropFirst(4).prefix { $0 != "." }), i >= 0, i < n else {
                throw SmolError(.invalidArgument, at: "tensor '\(name)'", "cannot tell the layer of this tensor")
            }
            return (i, n)
        }
        // `category == OUTPUT || (has_tied_embeddings && category == TOKEN_EMBD)`: without an
        // output.weight, both token-embedding tables (gemma4's per_layer_token_embd too) take the
        // output rule.
        let isTokenEmbedding = name == "token_embd.weight" || name == "per_layer_token_embd.weight"
        if name == "output.weight" || (!state.hasOutput && isTokenEmbedding) {
            if let o = overrides.outputTensorType {
                newType = o
            } else if nx % newType.blockLayout.elements != 0 {
                newType = .q8_0
            } else if newType != .q8_0 {
                newType = .q6_K
            }
        } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            if let e = overrides.tokenEmbeddingType { newType = e }
        } else if name.contains("attn_v.weight") {
            let i = state.iAttentionWV, n = state.nAttentionWV
            switch mix {
            case .q2_K: newType = facts.gqa >= 4 ? .q4_K : .q3_K
            case .q2_K_S where facts.gqa >= 4: newType = .q4_K
            case .q3_K_M: newType = i < 2 ? .q5_K : .q4_K
            case .q3_K_L: newType = .q5_K
            case .q4_K_M, .q5_K_M: if useMoreBits(i, n) { newType = .q6_K }
            case .q4_K_S: if i < 4 { newType = .q5_K }
            default: break
            }
            if facts.expertCount == 8 { newType = .q8_0 }
            state.iAttentionWV += 1
        } else if name.contains("attn_k.weight") {
            if facts.expertCount == 8 { newType = .q8_0 }
        } else if name.contains("ffn_down") {
            let (i, n) = try layer(state.iFFNDown, state.nFFNDown)
            switch mix {
            case .q2_K: newType = .q3_K
            case .q2_K_S: if i < n / 8 { newType = .q4_K }
            case .q3_K_M:
                newType = i < n / 16 ? .q5_K : (facts.architecture != "falcon" || useMoreBits(i, n)) ? .q4_K : .q3_K
            case .q3_K_L: newType = facts.architecture == "falcon" ? .q4_K : .q5_K
            case .q4_K_M:
                if facts.architecture == "falcon" {
                    newType = i < n / 16 ? .q6_K : useMoreBits(i, n) ? .q5_K : .q4_K
                } else if useMoreBits(i, n) {
                    newType = .q6_K
                }
            case .q5_K_M: if useMoreBits(i, n) { newType = .q6_K }
            case .q4_K_S: if facts.architecture != "falcon" && i < n / 8 { newType = .q5_K }
            case .q4_0, .q5_0:
                if overrides.hasImatrix && i < n / 8 { newType = mix == .q4_0 ? .q4_1 : .q5_1 }
            default: break
            }
            state.iFFNDown += 1
        } else if name.contains("attn_output.weight") {
            if facts.architecture != "falcon" {
                if facts.expertCount == 8 {
                    if [.q2_K, .q3_K_S, .q3_K_M, .q4_K_S, .q4_K_M].contains(mix) { newType = .q5_K }
                } else {
                    switch mix {
                    case .q2_K: newType = .q3_K
                    case .q3_K_M: newType = .q4_K
                    case .q3_K_L: newType = .q5_K
                    default: break
                    }
                }
            } else if mix == .q3_K_L {
                newType = .q4_K
            }
        } else if name.contains("attn_qkv.weight") {
            switch mix {
            case .q3_K_M, .q3_K_L: newType = .q4_K
            case .q4_K_M: newType = .q5_K
            case .q5_K_M: newType = .q6_K
            default: break
            }
        }
        // Rows that are not a whole number of blocks: the fallback types of llama.cpp
        // (at the commit the project's reference figures were measured with, Q2_K/Q3_K → Q4_0).
        guard nx % newType.blockLayout.elements != 0 else { return (newType, nil) }
        let asked = newType
        switch newType {
        case .q2_K, .q3_K, .tq1_0, .tq2_0: newType = .q4_0
        case .q4_K: newType = .q5_0
        case .q5_K: newType = .q5_1
        case .q6_K: newType = .q8_0
        case _ where newType.blockLayout.elements <= 32:
            // Already a 32-element block (Q4_0 … Q8_0): no smaller block to demote to; F16 below
            // (llama.cpp `tensor_type_fallback`, e.g. mixtral's 48-wide expert down rows).
            break
        default:
            throw SmolError(.unsupported, at: "tensor '\(name)'", "rows of \(nx) fit no block of \(newType.name) and it has no fallback")
        }
        if nx % newType.blockLayout.elements != 0 { newType = .f16 }
        return (newType, asked)
    }
}
