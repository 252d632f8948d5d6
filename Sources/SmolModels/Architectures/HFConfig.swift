import Foundation
import SmolKernels
import SmolTensor

/// The few config.json facts the dense architectures read. Minimal on purpose: it stands in until
/// SmolModels' typed `ModelConfig` lands, and then the architecture files switch to that.
/// Multimodal configs are read through their `text_config`.
public struct HFConfig: @unchecked Sendable {   // holds only JSONSerialization values (immutable)
    public let file: String?
    let root: [String: Any]

    public init(directory: URL) throws {
        let url = directory.appendingPathComponent("config.json")
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SmolError(.io, file: url.path, "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, file: url.path)
    }

    public init(data: Data, file: String? = nil) throws {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SmolError.malformed(file, "not a JSON object")
        }
        self.file = file
        if let text = obj["text_config"] as? [String: Any] {
            var merged = text
            if merged["model_type"] == nil { merged["model_type"] = obj["model_type"] }
            root = merged
        } else {
            root = obj
        }
    }

    init(root: [String: Any], file: String?) { self.root = root; self.file = file }

    public var modelType: String { (root["model_type"] as? String) ?? "" }

    func has(_ key: String) -> Bool { root[key] != nil && !(root[key] is NSNull) }

    func int(_ key: String) throws -> Int? {
        guard has(key) else { return nil }
        if let n = root[key] as? Int { return n }
        if let d = root[key] as? Double, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        throw SmolError(.malformed, file: file, at: "key '\(key)'", "expected an integer")
    }

    func int(_ key: String, default d: Int? = nil) throws -> Int {
        if let v = try int(key) { return v }
        if let d { return d }
        throw SmolError(.malformed, file: file, at: "key '\(key)'", "missing")
    }

    func double(_ key: String) throws -> Double? {
        guard has(key) else { return nil }
        if let d = root[key] as? Double { return d }
        if let n = root[key] as? Int { return Double(n) }
        throw SmolError(.malformed, file: file, at: "key '\(key)'", "expected a number")
    }

    func bool(_ key: String, default d: Bool) -> Bool { (root[key] as? Bool) ?? d }
    func string(_ key: String) -> String? { root[key] as? String }
    func object(_ key: String) -> [String: Any]? { root[key] as? [String: Any] }
    func array(_ key: String) -> [Any]? { root[key] as? [Any] }

    // MARK: facts shared by the architectures

    var hiddenSize: Int { get throws { try int("hidden_size") } }
    var vocabSize: Int { get throws { try int("vocab_size") } }
    var layerCount: Int { get throws { try int("num_hidden_layers") } }
    var heads: Int { get throws { try int("num_attention_heads") } }
    var kvHeads: Int { get throws { try int("num_key_value_heads", default: try heads) } }
    var headDim: Int { get throws { try int("head_dim", default: try hiddenSize / heads) } }
    var eps: Float { get throws { Float(try double("rms_norm_eps") ?? 1e-6) } }
    var tied: Bool { bool("tie_word_embeddings", default: false) }

    /// intermediate_size, an integer or one per layer.
    func intermediateSize(layer: Int) throws -> Int {
        if let list = array("intermediate_size") {
            guard layer < list.count, let v = list[layer] as? Int else {
                throw SmolError(.malformed, file: file, at: "key 'intermediate_size'", "no entry for layer \(layer)")
            }
            return v
        }
        return try int("intermediate_size")
    }

    func activation(_ keys: [String]) throws -> Activation {
        for k in keys { if let name = string(k) {
            guard let a = Activation(hfName: name) else {
                throw SmolError(.unsupported, file: file, at: "key '\(k)'", "activation '\(name)'")
            }
            return a
        } }
        throw SmolError(.malformed, file: file, at: "key '\(keys[0])'", "missing")
    }

    /// `layer_types` ("full_attention" / "sliding_attention"), or `fallback(i)` when absent.
    func layerTypes(_ fallback: (Int) -> String) throws -> [String] {
        let n = try layerCount
        if let list = array("layer_types") as? [String] {
            guard list.count == n else {
                throw SmolError(.malformed, file: file, at: "key 'layer_types'", "\(list.count) entries for \(n) layers")
            }
            return list
        }
        return (0..<n).map(fallback)
    }

    /// RoPE parameters for a layer type: transformers 5's `rope_parameters` (flat, or keyed by layer
    /// type), else the older `rope_theta` / `rope_scaling` keys.
    func ropeParameters(layerType: String, legacyTheta: Double? = nil) throws -> [String: Any] {
        if let rp = object("rope_parameters") {
            if let perType = rp[layerType] as? [String: Any] { return perType }
            if rp["rope_theta"] != nil { return rp }
        }
        var p: [String: Any] = ["rope_type": "default", "rope_theta": try legacyTheta ?? double("rope_theta") ?? 10000]
        if let scaling = object("rope_scaling") {
            for (k, v) in scaling { p[k] = v }
            if let t = scaling["type"] { p["rope_type"] = t }
        }
        if let f = try double("partial_rotary_factor") { p["partial_rotary_factor"] = f }
        return p
    }

    /// The RoPE of a layer with head dimension `headDim`.
    func rope(layerType: String, headDim: Int, legacyTheta: Double? = nil) throws -> RopeSpec {
        let p = try ropeParameters(layerType: layerType, legacyTheta: legacyTheta)
        let type = (p["rope_type"] as? String) ?? "default"
        let theta = (p["rope_theta"] as? NSNumber)?.doubleValue ?? 10000
        let partial = (p["partial_rotary_factor"] as? NSNumber)?.doubleValue ?? 1
        let factor = (p["factor"] as? NSNumber)?.doubleValue ?? 1
        switch type {
        case "default", "linear":
            let dim = Int(Double(headDim) * partial)
            var inv = RopeTables.defaultInvFreq(base: theta, dim: dim)
            if type == "linear" { inv = inv.map { $0 / Float(factor) } }
            return RopeSpec(rotaryDim: dim, invFreq: inv)
        case "proportional":
            return RopeSpec(rotaryDim: headDim,
                            invFreq: RopeTables.proportionalInvFreq(base: theta, headDim: headDim,
                                                                    partialRotaryFactor: partial, factor: factor))
        default:
            throw SmolError(.unsupported, file: file, at: "key 'rope_parameters'", "rope_type '\(type)'")
        }
    }
}
