import Foundation
import SmolFormats
import SmolTensor

/// Which parser family a `model_type` belongs to.
public enum ArchitectureFamily: String, Sendable {
    case llama, smollm3, qwen3, qwen3MoE, qwen2MoE, mixtral, olmoe, gemma2, gemma3, gemma4, gptOss
}

/// How the attention normalises queries and keys before RoPE.
public enum QKNorm: Sendable, Equatable {
    case none
    /// RMSNorm over each head (`q_norm.weight` of shape [head_dim]): qwen3, gemma3, gemma4.
    case perHead
    /// RMSNorm over all heads together (`q_norm.weight` of shape [heads * head_dim]): olmoe.
    case acrossHeads
}

/// Mixture-of-experts facts.
public struct MoEConfig: Sendable, Equatable {
    /// Routed experts per MoE layer (`num_experts` / `num_local_experts`).
    public var numExperts: Int
    /// Experts chosen per token (`num_experts_per_tok` / gemma4 `top_k_experts`).
    public var numExpertsPerToken: Int
    /// Hidden size of one expert's FFN (`moe_intermediate_size`; mixtral, gpt_oss: `intermediate_size`).
    public var expertIntermediateSize: Int
    /// qwen2_moe's always-on shared expert (`shared_expert_intermediate_size`), with its sigmoid gate.
    public var sharedExpertIntermediateSize: Int?
    /// qwen MoE: a layer is MoE when `(i + 1) % decoderSparseStep == 0` and not in `mlpOnlyLayers`.
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    /// Whether the chosen top-k weights are renormalised to sum to 1.
    public var normTopKProb: Bool
    public var routerAuxLossCoef: Double?
    /// gemma4: every layer keeps its dense MLP and adds the MoE block (outputs summed).
    public var denseMLPAlongside: Bool

    public init(numExperts: Int, numExpertsPerToken: Int, expertIntermediateSize: Int,
                sharedExpertIntermediateSize: Int? = nil, decoderSparseStep: Int = 1, mlpOnlyLayers: [Int] = [],
                normTopKProb: Bool, routerAuxLossCoef: Double? = nil, denseMLPAlongside: Bool = false) {
        self.numExperts = numExperts
        self.numExpertsPerToken = numExpertsPerToken
        self.expertIntermediateSize = expertIntermediateSize
        self.sharedExpertIntermediateSize = sharedExpertIntermediateSize
        self.decoderSparseStep = decoderSparseStep
        self.mlpOnlyLayers = mlpOnlyLayers
        self.normTopKProb = normTopKProb
        self.routerAuxLossCoef = routerAuxLossCoef
        self.denseMLPAlongside = denseMLPAlongside
    }
}

/// A Hugging Face `config.json` read into typed fields.
///
/// The raw JSON is kept whole (`json`; `text` is the object the fields came from — the
/// `text_config` of a multimodal wrapper such as `Gemma3ForConditionalGeneration`, or `json`
/// itself), so unknown keys survive a read/write round trip. Typed fields are transformers 5's
/// values after its `__post_init__`: defaults of the model's configuration class filled in,
/// `layer_types` derived where the file has none, RoPE folded into `rope_parameters` form.
///
/// Per-layer facts (`isSlidingLayer`, `usesRoPE`, `ropeBase`, `isMoELayer`, `headDim(layer:)`,
/// …) are methods so the engine does not re-derive the architecture's rules.
public struct ModelConfig: Sendable {
    /// The whole file as read.
    public let json: JSONValue
    /// The object the fields were read from (`json["text_config"]` or `json`).
    public let text: JSONValue
    /// `config.json` path, for messages.
    public let file: String?

    public var modelType: String
    public var family: ArchitectureFamily
    /// `architectures` (e.g. ["LlamaForCausalLM"]); empty if absent.
    public var architectures: [String]

    public var vocabSize: Int
    public var hiddenSize: Int
    /// Dense MLP hidden size (for mixtral and gpt_oss also the expert size).
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// `head_dim`, default `hiddenSize / numAttentionHeads` (qwen3, gemma: the class default).
    /// Layers may override it: use `headDim(layer:)`.
    public var headDim: Int
    public var rmsNormEps: Double
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    /// `eos_token_id` as a list (files write an int or a list).
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    /// `hidden_act` / `hidden_activation`: "silu", "gelu_pytorch_tanh", …
    public var hiddenActivation: String
    /// Biases on q/k/v projections (`attention_bias`; qwen2_moe: `qkv_bias`).
    public var qkvBias: Bool
    /// Bias on the output projection (`attention_bias` for llama-likes and gpt_oss; qwen2_moe: none).
    public var outputProjectionBias: Bool
    public var mlpBias: Bool
    public var qkNorm: QKNorm
    /// The sliding window of sliding layers (nil: none).
    public var slidingWindow: Int?
    /// One entry per layer.
    public var layerTypes: [AttentionKind]
    /// RoPE per attention kind (both kinds always present).
    public var rope: [AttentionKind: RoPEParameters]
    /// Per layer: whether the layer applies RoPE (smollm3 `no_rope_layers`: 1 = RoPE, 0 = NoPE).
    public var ropeLayers: [Bool]

    // Gemma2/3/4.
    /// Attention scores are scaled by `queryPreAttnScalar^-0.5` instead of `headDim^-0.5` (gemma2/3).
    public var queryPreAttnScalar: Double?
    public var attnLogitSoftcapping: Double?
    public var finalLogitSoftcapping: Double?

    public var moe: MoEConfig?
    public var gemma4: Gemma4Options?
    public var gptOss: GptOssOptions?

    /// transformers 5 `per_layer_config`: layer index → overridden keys (gemma4: full-attention
    /// layers' `head_dim`, and `num_key_value_heads` with `attention_k_eq_v`).
    public var perLayerOverrides: [Int: JSONValue]

    // MARK: Loading

    /// Reads `folder/config.json`.
    public static func load(folder: URL) throws -> ModelConfig {
        let url = folder.appendingPathComponent("config.json")
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SmolError(.io, file: url.path, "cannot read: \(error.localizedDescription)")
        }
        // A config.json is small; refuse absurd ones rather than parse gigabytes.
        guard data.count <= 64 << 20 else { throw SmolError.malformed(url.path, "config.json larger than 64 MiB") }
        return try ModelConfig(json: try parseJSON(Array(data), file: url.path), file: url.path)
    }

    /// Parses JSON text.
    public init(jsonText: String, file: String? = nil) throws {
        try self.init(json: try ModelConfig.parseJSON(Array(jsonText.utf8), file: file), file: file)
    }

    /// Types a parsed config. Dispatches on `model_type` (of `text_config` when present).
    public init(json: JSONValue, file: String? = nil) throws {
        guard json.objectValue != nil else { throw SmolError.malformed(file, "config.json is not a JSON object") }
        let top = ConfigReader(json, file: file)
        var reader = top
        var modelType = try top.string("model_type")
        if let textConfig = top.value("text_config") {
            guard textConfig.objectValue != nil else { throw top.error("text_config", "expected an object, found \(textConfig.compactText)") }
            reader = ConfigReader(textConfig, file: file, keyPrefix: "text_config.")
            let wrapper = modelType
            modelType = try reader.string("model_type") ?? wrapper.flatMap { ModelConfig.textModelTypeOfWrapper[$0] }
        }
        guard let modelType else { throw SmolError.malformed(file, at: "key 'model_type'", "missing: cannot tell the architecture") }
        guard let entry = ModelConfig.registry[modelType] else {
            throw SmolError(.unsupported, file: file, at: "key '\(reader === top ? "" : "text_config.")model_type'",
                            "unknown model_type '\(modelType)' (supported: \(ModelConfig.supportedModelTypes.joined(separator: ", ")))")
        }
        self = try entry.parse(ParseContext(reader: reader, top: top, json: json, file: file, modelType: modelType))
    }

    /// Multimodal wrappers whose `text_config` may omit its own `model_type`.
    /// Parses config.json text strictly (RFC 8259, duplicate keys rejected), errors naming the file.
    static func parseJSON(_ bytes: [UInt8], file: String?) throws -> JSONValue {
        do { return try JSONParser.parse(bytes) } catch {
            throw SmolError.malformed(file, at: "offset \(error.offset)", "invalid JSON: \(error.message)")
        }
    }

    static let textModelTypeOfWrapper = ["gemma3": "gemma3_text", "gemma4": "gemma4_text"]

    /// Every `model_type` this reader understands, sorted.
    public static var supportedModelTypes: [String] { registry.keys.sorted() }

    /// `model_type` → parser (mlx-swift-lm `LLMModelFactory` style: one table, one entry per type).
    static let registry: [String: ArchitectureEntry] = {
        var table: [String: ArchitectureEntry] = [:]
        for e in llamaFamilyEntries + qwenFamilyEntries + mixtralFamilyEntries + gemmaFamilyEntries + gemma4FamilyEntries + gptOssFamilyEntries {
            table[e.modelType] = e
        }
        return table
    }()

    // MARK: Per-layer facts

    func checkLayer(_ i: Int) {
        precondition(i >= 0 && i < numHiddenLayers, "layer \(i) out of range 0..<\(numHiddenLayers)")
    }

    public func attentionKind(_ layer: Int) -> AttentionKind { checkLayer(layer); return layerTypes[layer] }

    /// Whether the layer attends only to the last `slidingWindow` positions.
    public func isSlidingLayer(_ layer: Int) -> Bool { attentionKind(layer) == .sliding && slidingWindow != nil }

    /// The window of a sliding layer, nil for a full-attention layer.
    public func slidingWindow(layer: Int) -> Int? { isSlidingLayer(layer) ? slidingWindow : nil }

    /// Whether the layer applies rotary position embeddings (smollm3: every 4th layer is NoPE).
    public func usesRoPE(_ layer: Int) -> Bool { checkLayer(layer); return ropeLayers[layer] }

    /// The RoPE parameters of a layer (by its attention kind).
    public func rope(layer: Int) -> RoPEParameters { rope[attentionKind(layer)]! }

    /// The RoPE base θ of a layer (gemma3: 1e6 for full, 1e4 for sliding layers).
    public func ropeBase(_ layer: Int) -> Double { rope(layer: layer).theta }

    /// Whether the layer's FFN is a mixture of experts (gemma4: in addition to its dense MLP).
    public func isMoELayer(_ layer: Int) -> Bool {
        checkLayer(layer)
        guard let moe, moe.numExperts > 0 else { return false }
        switch family {
        case .qwen3MoE, .qwen2MoE:
            return !moe.mlpOnlyLayers.contains(layer) && (layer + 1) % moe.decoderSparseStep == 0
        default:
            return true
        }
    }

    /// Whether the layer has a dense (gate/up/down) MLP.
    public func hasDenseMLP(_ layer: Int) -> Bool {
        guard isMoELayer(layer) else { return true }
        return moe?.denseMLPAlongside ?? false
    }

    /// `head_dim` of a layer (gemma4 full-attention layers: `per_layer_config`, 512 by default).
    public func headDim(layer: Int) -> Int {
        checkLayer(layer)
        return perLayerOverrides[layer]?["head_dim"]?.looseIntValue ?? headDim
    }

    /// Key/value heads of a layer (gemma4 with `attention_k_eq_v`: full layers may have their own).
    public func numKeyValueHeads(layer: Int) -> Int {
        checkLayer(layer)
        return perLayerOverrides[layer]?["num_key_value_heads"]?.looseIntValue ?? numKeyValueHeads
    }

    /// gemma4: the earlier layer whose keys/values this layer reuses (nil: computes its own).
    /// A KV-shared layer takes the last non-shared layer of the same attention kind.
    public func kvSourceLayer(_ layer: Int) -> Int? {
        checkLayer(layer)
        guard let g = gemma4, g.numKVSharedLayers > 0 else { return nil }
        let firstShared = numHiddenLayers - g.numKVSharedLayers
        guard layer >= firstShared else { return nil }
        return (0..<firstShared).last { layerTypes[$0] == layerTypes[layer] }
    }

    /// Dense MLP hidden size of a layer (gemma4 `use_double_wide_mlp`: doubled on KV-shared layers).
    public func intermediateSize(layer: Int) -> Int {
        checkLayer(layer)
        if let g = gemma4, g.useDoubleWideMLP, g.numKVSharedLayers > 0, layer >= numHiddenLayers - g.numKVSharedLayers {
            return intermediateSize * 2
        }
        return intermediateSize
    }
}

/// What a family parser receives.
struct ParseContext {
    /// The object the typed fields come from (text_config or the file).
    let reader: ConfigReader
    /// The whole file (for wrapper-level keys such as `tie_word_embeddings`).
    let top: ConfigReader
    let json: JSONValue
    let file: String?
    let modelType: String
}

/// One registry row.
struct ArchitectureEntry: Sendable {
    let modelType: String
    let family: ArchitectureFamily
    let parse: @Sendable (ParseContext) throws -> ModelConfig
}

/// transformers' class defaults for the common fields of one `model_type`.
struct CommonDefaults {
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    /// nil: equal to the number of attention heads.
    var numKeyValueHeads: Int?
    /// nil: hidden / heads.
    var headDim: Int?
    var rmsNormEps: Double
    var maxPositionEmbeddings: Int
    var tieWordEmbeddings: Bool
    var bos: Int?
    var eos: Int?
    var pad: Int?
    var ropeTheta: Double
    /// "hidden_act" or "hidden_activation".
    var activationKey: String = "hidden_act"
    var activation: String = "silu"
    var attentionBias: Bool = false
}

extension ModelConfig {
    /// Reads the fields every architecture has. Family parsers adjust the result.
    init(common c: ParseContext, family: ArchitectureFamily, defaults d: CommonDefaults,
         ropeDefaults: JSONValue? = nil, legacySlidingTheta: (key: String, default: Double)? = nil) throws {
        let r = c.reader
        json = c.json
        text = r.object
        file = c.file
        modelType = c.modelType
        self.family = family
        architectures = try c.top.stringArray("architectures") ?? []
        vocabSize = try r.positiveInt("vocab_size", default: d.vocabSize)
        hiddenSize = try r.positiveInt("hidden_size", default: d.hiddenSize)
        intermediateSize = try r.positiveInt("intermediate_size", default: d.intermediateSize)
        numHiddenLayers = try r.positiveInt("num_hidden_layers", default: d.numHiddenLayers)
        numAttentionHeads = try r.positiveInt("num_attention_heads", default: d.numAttentionHeads)
        numKeyValueHeads = try r.positiveInt("num_key_value_heads", default: d.numKeyValueHeads ?? numAttentionHeads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw r.error("num_key_value_heads", "\(numKeyValueHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if let hd = try r.int("head_dim") {
            guard hd > 0 else { throw r.error("head_dim", "must be positive, found \(hd)") }
            headDim = hd
        } else if let hd = d.headDim {
            headDim = hd
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw r.error("head_dim", "missing, and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
            }
            headDim = hiddenSize / numAttentionHeads
        }
        rmsNormEps = try r.double("rms_norm_eps", default: d.rmsNormEps)
        maxPositionEmbeddings = try r.positiveInt("max_position_embeddings", default: d.maxPositionEmbeddings)
        // A wrapper may write tie_word_embeddings at the top level only.
        tieWordEmbeddings = try r.bool("tie_word_embeddings") ?? c.top.bool("tie_word_embeddings") ?? d.tieWordEmbeddings
        bosTokenId = r.object["bos_token_id"] == nil ? d.bos : try r.int("bos_token_id")
        eosTokenIds = r.object["eos_token_id"] == nil ? (d.eos.map { [$0] } ?? []) : try r.intOrIntArray("eos_token_id")
        padTokenId = r.object["pad_token_id"] == nil ? d.pad : try r.int("pad_token_id")
        hiddenActivation = try r.string(d.activationKey) ?? r.string("hidden_act") ?? d.activation
        qkvBias = try r.bool("attention_bias", default: d.attentionBias)
        outputProjectionBias = qkvBias
        mlpBias = try r.bool("mlp_bias", default: false)
        qkNorm = .none
        slidingWindow = nil
        layerTypes = Array(repeating: .full, count: numHiddenLayers)
        rope = try ModelConfig.readRoPE(r, defaultTheta: d.ropeTheta, defaultParameters: ropeDefaults, legacySlidingTheta: legacySlidingTheta)
        ropeLayers = Array(repeating: true, count: numHiddenLayers)
        queryPreAttnScalar = nil
        attnLogitSoftcapping = nil
        finalLogitSoftcapping = nil
        moe = nil
        gemma4 = nil
        gptOss = nil
        perLayerOverrides = [:]
        if let plc = r.value("per_layer_config") {
            guard let obj = plc.objectValue else { throw r.error("per_layer_config", "expected an object, found \(plc.compactText)") }
            for member in obj.members {
                let (k, v) = (member.key, member.value)
                guard let i = Int(k), i >= 0, i < numHiddenLayers, v.objectValue != nil else {
                    throw r.error("per_layer_config", "entry '\(k)' is not a layer index 0..<\(numHiddenLayers) with an object")
                }
                perLayerOverrides[i] = v
            }
        }
    }

    /// `layer_types` from the file (checked against the layer count), or nil when absent.
    func readLayerTypes(_ r: ConfigReader) throws -> [AttentionKind]? {
        guard let names = try r.stringArray("layer_types") else { return nil }
        guard names.count == numHiddenLayers else {
            throw r.error("layer_types", "has \(names.count) entries for \(numHiddenLayers) layers")
        }
        return try names.map { n in
            guard let k = AttentionKind(rawValue: n) else { throw r.error("layer_types", "unknown layer type '\(n)'") }
            return k
        }
    }

    /// Layer types from the file, or `rule(i)` when absent.
    mutating func setLayerTypes(_ r: ConfigReader, rule: (Int) -> AttentionKind) throws {
        layerTypes = try readLayerTypes(r) ?? (0..<numHiddenLayers).map(rule)
    }

    /// A positive sliding window, or nil (absent, null, or 0 — qwen2_moe writes 0 when disabled).
    static func readWindow(_ r: ConfigReader, default d: Int?) throws -> Int? {
        let w = r.object["sliding_window"] == nil ? d : try r.int("sliding_window")
        guard let w, w > 0 else { return nil }
        return w
    }
}

extension ConfigReader {
    static func === (a: ConfigReader, b: ConfigReader) -> Bool { a.keyPrefix == b.keyPrefix }
}
