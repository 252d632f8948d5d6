import SmolFormats
import SmolTensor

/// The attention kind of one decoder layer, as transformers 5 `layer_types` names it.
public enum AttentionKind: String, Sendable, Hashable, CaseIterable {
    case full = "full_attention"
    case sliding = "sliding_attention"
}

/// One RoPE parameter set as transformers 5 writes it in `rope_parameters` (or, for a model with
/// per-layer-type RoPE, in `rope_parameters["full_attention"]` / `["sliding_attention"]`).
///
/// Files written by transformers 4 carry `rope_theta` and `rope_scaling` (with `type` or
/// `rope_type`) instead; `ModelConfig` folds them into this form the way transformers 5's
/// `standardize_rope_params` does.
public struct RoPEParameters: Sendable, Equatable {
    /// "default", "linear", "dynamic", "yarn", "longrope", "llama3", "proportional", …
    public var ropeType: String
    /// The base θ (`rope_theta`).
    public var theta: Double
    public var factor: Double?
    /// Fraction of each head's dimensions that rotate (gemma4 full attention: 0.25).
    public var partialRotaryFactor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var attentionFactor: Double?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    /// yarn: whether the correction range is truncated to integers (gpt_oss writes false).
    public var truncate: Bool?
    /// The object this was read from (with every key, also ones not typed here).
    public var raw: JSONValue

    public init(ropeType: String = "default", theta: Double) {
        self.ropeType = ropeType
        self.theta = theta
        raw = .object(JSONObject([("rope_theta", .double(theta)), ("rope_type", .string(ropeType))]))
    }

    /// Reads one parameter object; `defaultTheta` fills a missing `rope_theta`.
    static func parse(_ obj: JSONValue, defaultTheta: Double, reader: ConfigReader, key: String) throws -> RoPEParameters {
        guard obj.objectValue != nil else { throw reader.error(key, "expected an object, found \(obj.compactText)") }
        let r = ConfigReader(obj, file: reader.file, keyPrefix: reader.keyPrefix + key + ".")
        // transformers 4 files wrote `type`; transformers 5 reads it as `rope_type`.
        let type = try r.string("rope_type") ?? r.string("type") ?? "default"
        var p = RoPEParameters(ropeType: type, theta: try r.double("rope_theta", default: defaultTheta))
        guard p.theta > 0 else { throw r.error("rope_theta", "must be positive, found \(p.theta)") }
        p.factor = try r.double("factor")
        p.partialRotaryFactor = try r.double("partial_rotary_factor")
        p.originalMaxPositionEmbeddings = try r.int("original_max_position_embeddings")
        p.attentionFactor = try r.double("attention_factor")
        p.betaFast = try r.double("beta_fast")
        p.betaSlow = try r.double("beta_slow")
        p.lowFreqFactor = try r.double("low_freq_factor")
        p.highFreqFactor = try r.double("high_freq_factor")
        p.truncate = try r.bool("truncate")
        p.raw = obj
        return p
    }
}

extension ModelConfig {
    /// RoPE parameters per attention kind, from `rope_parameters` (transformers 5) or from
    /// `rope_theta` + `rope_scaling` (transformers 4). `perKindLegacy` handles gemma3-style files
    /// whose sliding layers take `rope_local_base_freq` and no scaling.
    static func readRoPE(_ r: ConfigReader, defaultTheta: Double, defaultParameters: JSONValue? = nil,
                         legacySlidingTheta: (key: String, default: Double)? = nil) throws -> [AttentionKind: RoPEParameters] {
        // A top-level partial_rotary_factor (older files) folds into the parameters.
        let partial = try r.double("partial_rotary_factor")
        func withPartial(_ p: RoPEParameters) -> RoPEParameters {
            var p = p
            if p.partialRotaryFactor == nil, let partial { p.partialRotaryFactor = partial }
            return p
        }
        let topTheta = try r.double("rope_theta")
        if let params = r.value("rope_parameters") ?? defaultParametersIfNoLegacy(r, defaultParameters) {
            guard let obj = params.objectValue else { throw r.error("rope_parameters", "expected an object, found \(params.compactText)") }
            let kinds = obj.keys.compactMap { AttentionKind(rawValue: $0) }
            if !kinds.isEmpty {
                // Keyed by layer type.
                var out: [AttentionKind: RoPEParameters] = [:]
                for kind in AttentionKind.allCases {
                    if let sub = params[kind.rawValue] {
                        out[kind] = withPartial(try RoPEParameters.parse(sub, defaultTheta: topTheta ?? defaultTheta, reader: r, key: "rope_parameters.\(kind.rawValue)"))
                    }
                }
                // A model that declares only one kind uses it for both.
                for kind in AttentionKind.allCases where out[kind] == nil { out[kind] = out.values.first }
                return out
            }
            let p = withPartial(try RoPEParameters.parse(params, defaultTheta: topTheta ?? defaultTheta, reader: r, key: "rope_parameters"))
            return [.full: p, .sliding: p]
        }
        // transformers 4 layout.
        var full: RoPEParameters
        if let scaling = r.value("rope_scaling") {
            full = try RoPEParameters.parse(scaling, defaultTheta: topTheta ?? defaultTheta, reader: r, key: "rope_scaling")
            if topTheta != nil || scaling["rope_theta"] == nil { full.theta = topTheta ?? defaultTheta }
        } else {
            full = RoPEParameters(theta: topTheta ?? defaultTheta)
        }
        full = withPartial(full)
        var sliding = full
        if let legacySlidingTheta {
            sliding = withPartial(RoPEParameters(theta: try r.double(legacySlidingTheta.key, default: legacySlidingTheta.default)))
        }
        return [.full: full, .sliding: sliding]
    }

    /// Architectures whose class supplies default `rope_parameters` (gemma4, gpt_oss) use them only
    /// when the file has no transformers 4 keys either.
    private static func defaultParametersIfNoLegacy(_ r: ConfigReader, _ d: JSONValue?) -> JSONValue? {
        if r.has("rope_theta") || r.has("rope_scaling") { return nil }
        return d
    }
}
