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
    public init(rotaryDim: Int, invFreq: [Float]) { self.rotaryDim = rotaryDim; self.invFreq = invFreq }
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
/// pre-MLP norm, Gemma's is the attention-output norm). Matrices in HF layout [out, in], held as
/// `QuantizedLinear` in the checkpoint's own encoding (or F32, see `LinearStorage`); norms in F32.
public struct DecoderLayerWeights: Sendable {
    public var attnNorm: [Float]            // [D]
    public var attnOutNorm: [Float]?        // [D] sandwich
    public var mlpNorm: [Float]             // [D]
    public var mlpOutNorm: [Float]?         // [D] sandwich
    public var q: QuantizedLinear           // [H·Dh, D]
    public var k: QuantizedLinear?          // [Hkv·Dh, D] (nil for KV-shared layers)
    public var v: QuantizedLinear?          // [Hkv·Dh, D] (nil when shared or value = key)
    public var o: QuantizedLinear           // [D, H·Dh]
    public var qNorm: [Float]?              // [Dh]
    public var kNorm: [Float]?              // [Dh]
    public var gate: QuantizedLinear        // [F, D]
    public var up: QuantizedLinear          // [F, D]
    public var down: QuantizedLinear        // [D, F]
    public var perLayerGate: QuantizedLinear?       // [P, D]
    public var perLayerProjection: QuantizedLinear? // [D, P]
    public var perLayerNorm: [Float]?       // [D]
    public var layerScalar: Float
}

public struct DecoderWeights: Sendable {
    /// [V, D]; looked up with `gatherRows`. For tied models the same value as `lmHead` (one copy
    /// of the bytes: a QuantizedLinear shares its storage).
    public var embed: QuantizedLinear
    public var lmHead: QuantizedLinear      // [V, D] (the embedding when tied)
    public var finalNorm: [Float]           // [D]
    public var layers: [DecoderLayerWeights]
    public var perLayerEmbed: QuantizedLinear?           // [V_ple, L·P]
    public var perLayerModelProjection: QuantizedLinear? // [L·P, D]
    public var perLayerProjectionNorm: [Float]?  // [P]
}

/// How the loader holds linear weights (and embeddings). Both compute exactly in F32 (activations
/// F32, weights dequantized exactly); they differ only in summation order and memory.
public enum LinearStorage: Sendable, Equatable {
    /// In the checkpoint's encoding (GGUF block types, F16, BF16, F32), as views into the mapped
    /// file where the layout allows: no F32 copy; dequantized on the fly by `QuantizedLinear`.
    case stored
    /// Dequantized to F32 arrays at load time (the original reference path; more memory).
    case float32
}

/// A dense decoder with its weights resolved, ready for `SmolEngine`.
public struct DenseDecoderModel: Sendable {
    public var spec: DenseDecoderSpec
    public var weights: DecoderWeights

    public init(spec: DenseDecoderSpec, weights: DecoderWeights) {
        self.spec = spec
        self.weights = weights
    }

    /// Reads `config.json` in `directory` and the weights from `source` (by HF names).
    public static func load(configDirectory directory: URL, source: TensorSource,
                            storage: LinearStorage = .stored) throws -> DenseDecoderModel {
        try load(config: try ModelConfig.load(folder: directory), source: source, storage: storage)
    }

    public static func load(config: ModelConfig, source: TensorSource,
                            storage: LinearStorage = .stored) throws -> DenseDecoderModel {
        try load(config: config, weights: DirectWeightReader(source), storage: storage)
    }

    /// The configuration's architecture, with weights read by HF name from `weights` (a GGUF file
    /// is read through `GGUFWeightReader`, which may also pick the norm convention).
    public static func load(config: ModelConfig, weights reader: HFWeightReader,
                            storage: LinearStorage = .stored) throws -> DenseDecoderModel {
        guard let arch = DenseArchitectures.table[config.modelType] else {
            throw SmolError(.unsupported, file: config.file, at: "model_type",
                            "no dense architecture for model_type '\(config.modelType)' (known: \(DenseArchitectures.table.keys.sorted().joined(separator: ", ")))")
        }
        var spec = try arch.spec(config)
        spec.normWeighting = try reader.normWeighting(for: spec.normWeighting)
        let weights = try DecoderWeightLoader(spec: spec, reader: reader, names: arch.names, storage: storage).load()
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
    let storage: LinearStorage

    func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
        try checkShape(name, shape)
        return try reader.floats(hf: name)
    }

    /// A matrix [rows, cols] as a linear weight (in the file's encoding for `.stored`).
    func linear(_ name: String, _ shape: [Int]) throws -> QuantizedLinear {
        try checkShape(name, shape)
        switch storage {
        case .stored: return try reader.linear(hf: name)
        case .float32: return QuantizedLinear(f32: try reader.floats(hf: name), rows: shape[0], cols: shape[1])
        }
    }

    func optionalLinear(_ name: String, _ shape: [Int]) throws -> QuantizedLinear? {
        reader.shape(hf: name) == nil ? nil : try linear(name, shape)
    }

    func checkShape(_ name: String, _ shape: [Int]) throws {
        guard let found = reader.shape(hf: name) else {
            throw SmolError(.malformed, file: reader.path, at: "tensor '\(reader.displayName(hf: name))'",
                            "tensor not found (needed by \(spec.modelType))")
        }
        guard found == shape else {
            throw SmolError(.mismatch, file: reader.path, at: "tensor '\(reader.displayName(hf: name))'",
                            "shape \(found), the configuration implies \(shape)")
        }
    }

    func optional(_ name: String, _ shape: [Int]) throws -> [Float]? {
        reader.shape(hf: name) == nil ? nil : try tensor(name, shape)
    }

    func load() throws -> DecoderWeights {
        let D = spec.hiddenSize, V = spec.vocabSize
        let embed = try linear(names.embed, [V, D])
        let lmHead: QuantizedLinear
        if !spec.tiedEmbeddings, let head = try optionalLinear(names.lmHead, [V, D]) {
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
            let shared = l.kvSharedFrom != nil
            var w = DecoderLayerWeights(
                attnNorm: try tensor(n("input_layernorm.weight"), [D]),
                attnOutNorm: nil,
                mlpNorm: try tensor(n(l.sandwichNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), [D]),
                mlpOutNorm: nil,
                q: try linear(n("self_attn.q_proj.weight"), [qDim, D]),
                k: shared ? nil : try linear(n("self_attn.k_proj.weight"), [kvDim, D]),
                v: (shared || l.valueIsKey) ? nil : try linear(n("self_attn.v_proj.weight"), [kvDim, D]),
                o: try linear(n("self_attn.o_proj.weight"), [D, qDim]),
                qNorm: l.qkNorm ? try tensor(n("self_attn.q_norm.weight"), [l.headDim]) : nil,
                kNorm: (l.qkNorm && !shared) ? try tensor(n("self_attn.k_norm.weight"), [l.headDim]) : nil,
                gate: try linear(n("mlp.gate_proj.weight"), [F, D]),
                up: try linear(n("mlp.up_proj.weight"), [F, D]),
                down: try linear(n("mlp.down_proj.weight"), [D, F]),
                perLayerGate: nil, perLayerProjection: nil, perLayerNorm: nil,
                layerScalar: 1)
            if l.sandwichNorms {
                w.attnOutNorm = try tensor(n("post_attention_layernorm.weight"), [D])
                w.mlpOutNorm = try tensor(n("post_feedforward_layernorm.weight"), [D])
            }
            if let ple = spec.perLayerInput {
                w.perLayerGate = try linear(n("per_layer_input_gate.weight"), [ple.dim, D])
                w.perLayerProjection = try linear(n("per_layer_projection.weight"), [D, ple.dim])
                w.perLayerNorm = try tensor(n("post_per_layer_input_norm.weight"), [D])
            }
            if l.hasLayerScalar, let s = try optional(n("layer_scalar"), [1]) { w.layerScalar = s[0] }
            layers.append(w)
        }
        var weights = DecoderWeights(embed: embed, lmHead: lmHead, finalNorm: finalNorm, layers: layers)
        if let ple = spec.perLayerInput {
            let L = spec.layers.count
            weights.perLayerEmbed = try linear(names.prefix + "embed_tokens_per_layer.weight", [ple.vocabSize, L * ple.dim])
            weights.perLayerModelProjection = try linear(names.prefix + "per_layer_model_projection.weight", [L * ple.dim, D])
            weights.perLayerProjectionNorm = try tensor(names.prefix + "per_layer_projection_norm.weight", [ple.dim])
        }
        return weights
    }
}
