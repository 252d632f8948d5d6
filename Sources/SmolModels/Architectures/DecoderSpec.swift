import Foundation
import SmolKernels
import SmolQuant
import SmolTensor

/// Everything the engine needs to run one dense decoder layer, resolved from the model's
/// configuration (no per-architecture branching left for the engine).
public struct DecoderLayerSpec: Sendable, Equatable {
    public var heads: Int               // H
    public var kvHeads: Int             // Hkv
    public var headDim: Int             // Dh
    public var intermediateSize: Int    // F
    /// Scale, soft-cap and sliding window of this layer's attention.
    public var attention: AttentionOptions
    /// nil: no positional rotation (SmolLM3's NoPE layers).
    public var rope: RopeSpec?
    /// RMSNorm over each head of q and k before RoPE (Qwen 3, Gemma 3, Gemma 4).
    public var qkNorm: Bool
    /// Weightless RMSNorm over each head of v (Gemma 4).
    public var vNorm: Bool
    /// Gemma 2–4 "sandwich": norms on the attention and MLP outputs too.
    public var sandwichNorms: Bool
    /// Gemma 4 attention_k_eq_v: the value is the raw key projection (no v_proj).
    public var valueIsKey: Bool
    /// Gemma 4 KV sharing: reuse the (final) keys and values of this earlier layer.
    public var kvSharedFrom: Int?
    /// Gemma 4: the layer output is multiplied by a stored scalar.
    public var hasLayerScalar: Bool
    /// OLMoE: q/k RMSNorm over the whole projection (weights [H·Dh] / [Hkv·Dh]) instead of per head.
    public var qkNormAcrossHeads: Bool = false
    /// Biases on q/k/v (qwen2_moe, gpt_oss) and on the output projection (gpt_oss).
    public var qkvBias: Bool = false
    public var outputBias: Bool = false
    /// gpt_oss: a learned sink logit per head joins the attention softmax (`self_attn.sinks`).
    public var attentionSinks: Bool = false
    /// The layer's mixture-of-experts block (nil: dense). `intermediateSize` 0 means the layer
    /// has no dense MLP; gemma4 keeps both.
    public var moe: MoEBlockSpec? = nil

    public init(heads: Int, kvHeads: Int, headDim: Int, intermediateSize: Int, attention: AttentionOptions,
                rope: RopeSpec?, qkNorm: Bool = false, vNorm: Bool = false, sandwichNorms: Bool = false,
                valueIsKey: Bool = false, kvSharedFrom: Int? = nil, hasLayerScalar: Bool = false) {
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.intermediateSize = intermediateSize; self.attention = attention; self.rope = rope
        self.qkNorm = qkNorm; self.vNorm = vNorm; self.sandwichNorms = sandwichNorms
        self.valueIsKey = valueIsKey; self.kvSharedFrom = kvSharedFrom; self.hasLayerScalar = hasLayerScalar
    }
}

/// Rotary embedding of one layer: rotate-half over the first `rotaryDim` dims of each head.
public struct RopeSpec: Sendable, Equatable {
    public var rotaryDim: Int
    /// [rotaryDim / 2]
    public var invFreq: [Float]
    /// YaRN's attention factor: cos and sin are multiplied by it (1 for other RoPE types).
    public var attentionScaling: Float = 1
    public init(rotaryDim: Int, invFreq: [Float], attentionScaling: Float = 1) {
        self.rotaryDim = rotaryDim; self.invFreq = invFreq; self.attentionScaling = attentionScaling
    }
}

/// Gemma 4 per-layer input embeddings (PLE).
public struct PerLayerInputSpec: Sendable, Equatable {
    /// P = hidden_size_per_layer_input
    public var dim: Int
    public var vocabSize: Int
}

/// A dense decoder-only transformer, fully resolved.
public struct DenseDecoderSpec: Sendable, Equatable {
    public var modelType: String
    public var vocabSize: Int           // V
    public var hiddenSize: Int          // D
    public var normEps: Float
    public var normWeighting: RMSNormWeighting
    public var activation: Activation
    /// Embeddings are multiplied by this (Gemma: √D rounded to Float32).
    public var embedScale: Float?
    public var finalLogitSoftcap: Float?
    public var tiedEmbeddings: Bool
    public var perLayerInput: PerLayerInputSpec?
    public var layers: [DecoderLayerSpec]
}

/// One layer's weights, named by role (HF names differ: Llama's `post_attention_layernorm` is the
/// pre-MLP norm, Gemma's is the attention-output norm). Matrices in HF layout [out, in].
public struct DecoderLayerWeights: Sendable {
    public var attnNorm: [Float]            // [D]
    public var attnOutNorm: [Float]?        // [D] sandwich
    public var mlpNorm: [Float]             // [D]
    public var mlpOutNorm: [Float]?         // [D] sandwich
    public var q: [Float]                   // [H·Dh, D]
    public var k: [Float]?                  // [Hkv·Dh, D] (nil for KV-shared layers)
    public var v: [Float]?                  // [Hkv·Dh, D] (nil when shared or value = key)
    public var o: [Float]                   // [D, H·Dh]
    public var qNorm: [Float]?              // [Dh]
    public var kNorm: [Float]?              // [Dh]
    public var gate: [Float]                // [F, D]
    public var up: [Float]                  // [F, D]
    public var down: [Float]                // [D, F]
    public var perLayerGate: [Float]?       // [P, D]
    public var perLayerProjection: [Float]? // [D, P]
    public var perLayerNorm: [Float]?       // [D]
    public var layerScalar: Float
    public var qBias: [Float]? = nil        // [H·Dh]
    public var kBias: [Float]? = nil        // [Hkv·Dh]
    public var vBias: [Float]? = nil        // [Hkv·Dh]
    public var oBias: [Float]? = nil        // [D]
    public var sinks: [Float]? = nil        // [H]
    public var moe: MoEBlockWeights? = nil
}

public struct DecoderWeights: Sendable {
    public var embed: [Float]               // [V, D]
    public var lmHead: [Float]              // [V, D] (the embedding when tied)
    public var finalNorm: [Float]           // [D]
    public var layers: [DecoderLayerWeights]
    public var perLayerEmbed: [Float]?      // [V_ple, L·P]
    public var perLayerModelProjection: [Float]? // [L·P, D]
    public var perLayerProjectionNorm: [Float]?  // [P]
}

/// A dense decoder with its weights in Float32, ready for `SmolEngine`.
public struct DenseDecoderModel: Sendable {
    public var spec: DenseDecoderSpec
    public var weights: DecoderWeights

    public init(spec: DenseDecoderSpec, weights: DecoderWeights) {
        self.spec = spec
        self.weights = weights
    }

    /// Reads `config.json` in `directory` and the weights from `source` (by HF names).
    public static func load(configDirectory directory: URL, source: TensorSource) throws -> DenseDecoderModel {
        try load(config: try ModelConfig.load(folder: directory), source: source)
    }

    public static func load(config: ModelConfig, source: TensorSource) throws -> DenseDecoderModel {
        try load(config: config, weights: DirectWeightReader(source))
    }

    /// The configuration's architecture, with weights read by HF name from `weights` (a GGUF file
    /// is read through `GGUFWeightReader`, which may also pick the norm convention).
    public static func load(config: ModelConfig, weights reader: HFWeightReader) throws -> DenseDecoderModel {
        guard let arch = DenseArchitectures.table[config.modelType] else {
            throw SmolError(.unsupported, file: config.file, at: "model_type",
                            "no dense architecture for model_type '\(config.modelType)' (known: \(DenseArchitectures.table.keys.sorted().joined(separator: ", ")))")
        }
        var spec = try arch.spec(config)
        spec.normWeighting = try reader.normWeighting(for: spec.normWeighting)
        let weights = try DecoderWeightLoader(spec: spec, reader: reader, names: arch.names).load()
        return DenseDecoderModel(spec: spec, weights: weights)
    }
}

/// One dense architecture: how its configuration maps to a `DenseDecoderSpec`, and its tensor names.
public protocol DenseArchitecture: Sendable {
    static var modelTypes: [String] { get }
    static func spec(_ config: ModelConfig) throws -> DenseDecoderSpec
    static var names: DecoderTensorNames { get }
}

extension DenseArchitecture {
    public static var names: DecoderTensorNames { DecoderTensorNames() }
}

/// The registry, keyed by config.json's `model_type`.
public enum DenseArchitectures {
    public static let all: [any DenseArchitecture.Type] = [
        LlamaArchitecture.self, SmolLM3Architecture.self, Qwen3Architecture.self,
        Gemma2Architecture.self, Gemma3Architecture.self, Gemma4Architecture.self,
        // Mixture of experts (layers with a `moe` block).
        Qwen3MoEArchitecture.self, Qwen2MoEArchitecture.self, MixtralArchitecture.self,
        OlmoeArchitecture.self, GptOssArchitecture.self,
    ]
    public static let table: [String: any DenseArchitecture.Type] = {
        var t: [String: any DenseArchitecture.Type] = [:]
        for a in all { for m in a.modelTypes { t[m] = a } }
        return t
    }()
}

/// HF tensor names (transformers' checkpoint layout). A GGUF source is read through a name map
/// that presents these names.
public struct DecoderTensorNames: Sendable {
    public var prefix = "model."
    public init() {}
    public var embed: String { prefix + "embed_tokens.weight" }
    public var finalNorm: String { prefix + "norm.weight" }
    public var lmHead: String { "lm_head.weight" }
    public func layer(_ i: Int, _ suffix: String) -> String { "\(prefix)layers.\(i).\(suffix)" }
}

/// Reads a tensor as Float32, exactly: F32 as stored, F16/BF16 (and F64/F8) widened, GGUF block
/// types dequantized by SmolQuant (bit-identical to ggml / gguf-py).
public func loadFloat(_ source: TensorSource, _ name: String) throws -> [Float] {
    guard let info = source.info(name) else {
        throw SmolError(.malformed, file: source.path, at: "tensor '\(name)'", "tensor not found")
    }
    let count = info.elementCount
    let bytes = try source.tensorBytes(name)
    // The values are copied out: the mapped pages can go (keeps resident memory at one copy).
    defer { source.release(name) }
    guard let expected = info.type.byteCount(shape: info.shape), expected == bytes.count else {
        throw SmolError(.malformed, file: source.path, at: "tensor '\(name)'",
                        "\(bytes.count) bytes for \(count) elements of \(info.type.name)")
    }
    var out = [Float](repeating: 0, count: count)
    try bytes.withUnsafeBytes { raw in
        try out.withUnsafeMutableBufferPointer { dst in
            guard let d = dst.baseAddress, count > 0 else { return }
            do {
                switch info.type {
                case .dense(.f32):
                    // Plain copy: fast in debug builds too, where element loops are slow.
                    UnsafeMutableRawPointer(d).copyMemory(from: raw.baseAddress!, byteCount: count * 4)
                case .dense(let dtype):
                    try ElementCodec.decode(dtype, raw, count: count, into: d)
                case .block(let t):
                    try GGUFQuant.dequantize(t, raw, count: count, into: d)
                }
            } catch let e as SmolError where e.file == nil {
                throw SmolError(e.kind, file: source.path, at: "tensor '\(name)'", e.message)
            }
        }
    }
    return out
}

/// Loads every weight a spec needs, checking each shape against the spec.
struct DecoderWeightLoader {
    let spec: DenseDecoderSpec
    let reader: HFWeightReader
    let names: DecoderTensorNames

    func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
        guard let found = reader.shape(hf: name) else {
            throw SmolError(.malformed, file: reader.path, at: "tensor '\(reader.displayName(hf: name))'",
                            "tensor not found (needed by \(spec.modelType))")
        }
        guard found == shape else {
            throw SmolError(.mismatch, file: reader.path, at: "tensor '\(reader.displayName(hf: name))'",
                            "shape \(found), the configuration implies \(shape)")
        }
        return try reader.floats(hf: name)
    }

    func optional(_ name: String, _ shape: [Int]) throws -> [Float]? {
        reader.shape(hf: name) == nil ? nil : try tensor(name, shape)
    }

    func load() throws -> DecoderWeights {
        let D = spec.hiddenSize, V = spec.vocabSize
        let embed = try tensor(names.embed, [V, D])
        let lmHead: [Float]
        if let head = try optional(names.lmHead, [V, D]), !spec.tiedEmbeddings {
            lmHead = head
        } else if spec.tiedEmbeddings {
            lmHead = embed
        } else {
            throw SmolError(.malformed, file: reader.path, at: "tensor '\(reader.displayName(hf: names.lmHead))'", "untied model without lm_head")
        }
        let finalNorm = try tensor(names.finalNorm, [D])
        var layers: [DecoderLayerWeights] = []
        for (i, l) in spec.layers.enumerated() {
            let n = { (s: String) in names.layer(i, s) }
            let qDim = l.heads * l.headDim, kvDim = l.kvHeads * l.headDim, F = l.intermediateSize
            let qnShape = [l.qkNormAcrossHeads ? qDim : l.headDim], knShape = [l.qkNormAcrossHeads ? kvDim : l.headDim]
            let shared = l.kvSharedFrom != nil
            var w = DecoderLayerWeights(
                attnNorm: try tensor(n("input_layernorm.weight"), [D]),
                attnOutNorm: nil,
                mlpNorm: try tensor(n(l.sandwichNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), [D]),
                mlpOutNorm: nil,
                q: try tensor(n("self_attn.q_proj.weight"), [qDim, D]),
                k: shared ? nil : try tensor(n("self_attn.k_proj.weight"), [kvDim, D]),
                v: (shared || l.valueIsKey) ? nil : try tensor(n("self_attn.v_proj.weight"), [kvDim, D]),
                o: try tensor(n("self_attn.o_proj.weight"), [D, qDim]),
                qNorm: l.qkNorm ? try tensor(n("self_attn.q_norm.weight"), qnShape) : nil,
                kNorm: (l.qkNorm && !shared) ? try tensor(n("self_attn.k_norm.weight"), knShape) : nil,
                // F = 0: an MoE layer without a dense MLP.
                gate: F == 0 ? [] : try tensor(n("mlp.gate_proj.weight"), [F, D]),
                up: F == 0 ? [] : try tensor(n("mlp.up_proj.weight"), [F, D]),
                down: F == 0 ? [] : try tensor(n("mlp.down_proj.weight"), [D, F]),
                perLayerGate: nil, perLayerProjection: nil, perLayerNorm: nil,
                layerScalar: 1)
            if l.sandwichNorms {
                w.attnOutNorm = try tensor(n("post_attention_layernorm.weight"), [D])
                w.mlpOutNorm = try tensor(n("post_feedforward_layernorm.weight"), [D])
            }
            if let ple = spec.perLayerInput {
                w.perLayerGate = try tensor(n("per_layer_input_gate.weight"), [ple.dim, D])
                w.perLayerProjection = try tensor(n("per_layer_projection.weight"), [D, ple.dim])
                w.perLayerNorm = try tensor(n("post_per_layer_input_norm.weight"), [D])
            }
            if l.hasLayerScalar, let s = try optional(n("layer_scalar"), [1]) { w.layerScalar = s[0] }
            if l.qkvBias {
                w.qBias = try tensor(n("self_attn.q_proj.bias"), [qDim])
                w.kBias = try tensor(n("self_attn.k_proj.bias"), [kvDim])
                w.vBias = try tensor(n("self_attn.v_proj.bias"), [kvDim])
            }
            if l.outputBias { w.oBias = try tensor(n("self_attn.o_proj.bias"), [D]) }
            if l.attentionSinks { w.sinks = try tensor(n("self_attn.sinks"), [l.heads]) }
            if let moe = l.moe { w.moe = try loadMoEBlock(moe, layer: i) }
            layers.append(w)
        }
        var weights = DecoderWeights(embed: embed, lmHead: lmHead, finalNorm: finalNorm, layers: layers)
        if let ple = spec.perLayerInput {
            let L = spec.layers.count
            weights.perLayerEmbed = try tensor(names.prefix + "embed_tokens_per_layer.weight", [ple.vocabSize, L * ple.dim])
            weights.perLayerModelProjection = try tensor(names.prefix + "per_layer_model_projection.weight", [L * ple.dim, D])
            weights.perLayerProjectionNorm = try tensor(names.prefix + "per_layer_projection_norm.weight", [ple.dim])
        }
        return weights
    }
}
