import SmolFormats
import SmolTensor

// config.json → GGUF metadata for the Mixture-of-Experts architectures, as llama.cpp's
// convert_hf_to_gguf.py writes it (llama-cpp-python 0.3.36's vendor/llama.cpp, conversion/*.py):
//
// - `TextModel.__init__` mirrors rope_theta & co. into `rope_parameters`; `TextModel.set_gguf_parameters`
//   writes block_count, context_length, embedding_length, feed_forward_length, head_count(_kv),
//   rope scaling (linear / yarn), rope.freq_base(_swa), layer_norm_rms_epsilon, expert_count,
//   expert_used_count, key/value_length (when config.json has head_dim), general.file_type —
//   each only when `find_hparam` finds its key (the first key of its list present in config.json;
//   a null there writes nothing);
// - `Qwen2MoeModel` (qwen2_moe, qwen3_moe): + expert_feed_forward_length, expert_shared_feed_forward_length;
// - `LlamaModel` (mixtral): + vocab_size, rope.dimension_count;
// - `OlmoeModel`: layer_norm_rms_epsilon rewritten as 1e-5, whatever config.json says (llama.cpp's
//   OLMoE graph then runs with 1e-5);
// - `GptOssModel`: + attention.sliding_window, expert_feed_forward_length (= intermediate_size);
// - `Gemma3Model` then `Gemma4Model` (gemma4_text): Gemma3's defaults rewritten in place, then
//   shared_kv_layers, embedding_length_per_layer_input, sliding_window_pattern (per layer), the
//   full-attention key/value_length, *_swa lengths, expert_feed_forward_length, rope dimension counts.
//
// A repeated key keeps its first position and takes the new value, as gguf-py's GGUFWriter does.
// Tests/Fixtures/gguf-convert/moe-*.json (tools/golden_moe_convert.py) hold the expected keys.
extension GGUFArchitectureMapping {
    /// The converter's hyperparameters: config.json with `text_config` merged over the root.
    struct HParams {
        let top: JSONValue
        let text: JSONValue?

        init(_ config: ModelConfig) {
            top = config.json
            text = config.json["text_config"]
        }

        /// The value of a present key (`.null` for an explicit null); nil when absent.
        func raw(_ key: String) -> JSONValue? {
            if let t = text?.objectValue?[key] { return t }
            return top.objectValue?[key]
        }

        /// `find_hparam(keys, optional=True)`: the first present key's value, nil when it is null.
        func find(_ keys: [String]) -> JSONValue? {
            for k in keys { if let v = raw(k) { return v.isNull ? nil : v } }
            return nil
        }

        /// `hparams.get(key)` with a non-null value.
        func get(_ key: String) -> JSONValue? {
            guard let v = raw(key), !v.isNull else { return nil }
            return v
        }
    }

    /// The metadata convert_hf_to_gguf.py writes for an MoE configuration (see the file comment).
    /// Tokenizer and `general.*` naming keys are not included.
    public func moeMetadata(from config: ModelConfig, fileType: Int?) throws -> GGUFMetadata {
        let hp = HParams(config)
        var m = GGUFMetadata()
        let a = ggufArchitecture
        let file = "config.json"
        func int(_ v: JSONValue, _ key: String) throws -> UInt32 {
            guard let i = v.intValue, i >= 0, i <= Int(UInt32.max) else {
                throw SmolError.malformed(file, at: "key '\(key)'", "expected a non-negative integer, found \(v.kindName)")
            }
            return UInt32(i)
        }
        func float(_ v: JSONValue, _ key: String) throws -> Float {
            guard let d = v.doubleValue else { throw SmolError.malformed(file, at: "key '\(key)'", "expected a number, found \(v.kindName)") }
            return Float(d)
        }
        func u32(_ k: String, _ v: JSONValue?, _ from: String) throws { if let v { m["\(a).\(k)"] = .uint32(try int(v, from)) } }
        func f32(_ k: String, _ v: JSONValue?, _ from: String) throws { if let v { m["\(a).\(k)"] = .float32(try float(v, from)) } }
        m["general.architecture"] = .string(a)

        // TextModel.__init__: rope_parameters (or rope_scaling), with the flat keys mirrored in when
        // it has no per-attention-type entries.
        var rope: [String: JSONValue] = [:]
        if let r = hp.get("rope_parameters") ?? hp.get("rope_scaling"), let o = r.objectValue {
            for k in o.keys { rope[k] = o[k] }
        }
        if rope["full_attention"] == nil && rope["sliding_attention"] == nil {
            if let local = hp.find(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"]) {
                rope["sliding_attention"] = .object(JSONObject([("rope_theta", local)]))
            }
            if rope["rope_theta"] == nil, let t = hp.find(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"]) {
                rope["rope_theta"] = t
            }
            if rope["rope_type"] == nil, let t = rope["type"], !t.isNull { rope["rope_type"] = t }
            if rope["original_max_position_embeddings"] == nil, let o = hp.find(["original_max_position_embeddings"]) {
                rope["original_max_position_embeddings"] = o
            }
        }
        func ropeGet(_ o: [String: JSONValue], _ k: String) -> JSONValue? {
            guard let v = o[k], !v.isNull else { return nil }
            return v
        }
        var fullRope = rope
        if let f = rope["full_attention"]?.objectValue {
            fullRope = [:]
            for k in f.keys { fullRope[k] = f[k] }
        }

        // TextModel.set_gguf_parameters
        m["\(a).block_count"] = .uint32(UInt32(config.numHiddenLayers))
        try u32("context_length", hp.find(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"]), "max_position_embeddings")
        try u32("embedding_length", hp.find(["hidden_size", "n_embd", "dim"]), "hidden_size")
        try u32("feed_forward_length", hp.find(["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"]), "intermediate_size")
        try u32("attention.head_count", hp.find(["num_attention_heads", "n_head", "n_heads"]), "num_attention_heads")
        try u32("attention.head_count_kv", hp.find(["num_key_value_heads", "n_kv_heads"]), "num_key_value_heads")
        if hp.raw("is_causal")?.boolValue == false { m["\(a).attention.causal"] = .bool(false) }
        if let type = ropeGet(fullRope, "rope_type")?.stringValue {
            let factor = ropeGet(fullRope, "factor")
            if type == "linear", let factor {
                m["\(a).rope.scaling.type"] = .string("linear")
                try f32("rope.scaling.factor", factor, "rope_parameters.factor")
            } else if type == "yarn", let factor {
                m["\(a).rope.scaling.type"] = .string("yarn")
                try f32("rope.scaling.factor", factor, "rope_parameters.factor")
                guard let o = ropeGet(fullRope, "original_max_position_embeddings") else {
                    throw SmolError.malformed(file, at: "key 'rope_parameters.original_max_position_embeddings'", "missing (yarn needs it)")
                }
                try u32("rope.scaling.original_context_length", o, "rope_parameters.original_max_position_embeddings")
                try f32("rope.scaling.yarn_ext_factor", ropeGet(fullRope, "extrapolation_factor"), "rope_parameters.extrapolation_factor")
                try f32("rope.scaling.yarn_attn_factor", ropeGet(fullRope, "attention_factor") ?? ropeGet(fullRope, "attn_factor"), "rope_parameters.attention_factor")
                try f32("rope.scaling.yarn_beta_fast", ropeGet(fullRope, "beta_fast"), "rope_parameters.beta_fast")
                try f32("rope.scaling.yarn_beta_slow", ropeGet(fullRope, "beta_slow"), "rope_parameters.beta_slow")
            } else if type == "su" || type == "longrope" {
                m["\(a).rope.scaling.type"] = .string("longrope")
            }
            // default, proportional, dynamic, llama3: the converter writes no scaling keys.
        }
        try f32("rope.freq_base", ropeGet(fullRope, "rope_theta"), "rope_parameters.rope_theta")
        if let s = rope["sliding_attention"]?.objectValue, let t = s["rope_theta"], !t.isNull {
            try f32("rope.freq_base_swa", t, "rope_parameters.sliding_attention.rope_theta")
        }
        try f32("attention.layer_norm_rms_epsilon", hp.find(["rms_norm_eps", "norm_eps"]), "rms_norm_eps")
        try f32("attention.layer_norm_epsilon", hp.find(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"]), "layer_norm_eps")
        try u32("expert_count", hp.find(["num_local_experts", "num_experts", "n_routed_experts"]), "num_experts")
        try u32("expert_used_count", hp.find(["num_experts_per_tok", "num_experts_per_token", "top_k_experts"]), "num_experts_per_tok")
        try u32("expert_group_count", hp.get("n_group"), "n_group")
        try u32("expert_group_used_count", hp.get("topk_group"), "topk_group")
        if let headDim = hp.get("head_dim") {
            try u32("attention.key_length", headDim, "head_dim")
            try u32("attention.value_length", headDim, "head_dim")
        }
        if let fileType { m["general.file_type"] = .uint32(UInt32(fileType)) }

        switch modelType {
        case "qwen2_moe", "qwen3_moe":
            try u32("expert_feed_forward_length", hp.get("moe_intermediate_size"), "moe_intermediate_size")
            try u32("expert_shared_feed_forward_length", hp.get("shared_expert_intermediate_size"), "shared_expert_intermediate_size")
        case "mixtral":
            try u32("vocab_size", hp.raw("vocab_size") ?? .int(config.vocabSize), "vocab_size")
            m["\(a).rope.dimension_count"] = .uint32(UInt32(hp.get("head_dim")?.intValue ?? config.hiddenSize / max(config.numAttentionHeads, 1)))
        case "olmoe":
            m["\(a).attention.layer_norm_rms_epsilon"] = .float32(1e-5)
        case "gpt_oss":
            guard let w = hp.raw("sliding_window") else { throw SmolError.malformed(file, at: "key 'sliding_window'", "missing") }
            try u32("attention.sliding_window", w, "sliding_window")
            try u32("expert_feed_forward_length", hp.raw("intermediate_size") ?? .int(config.intermediateSize), "intermediate_size")
        case "gemma4_text":
            try gemma4Metadata(&m, hp, config, file: file, rope: rope, fullRope: fullRope)
        default:
            break
        }
        return m
    }

    /// `Gemma3Model.set_gguf_parameters` (after TextModel's) then `Gemma4Model.set_gguf_parameters`.
    func gemma4Metadata(_ m: inout GGUFMetadata, _ hp: HParams, _ config: ModelConfig, file: String,
                        rope: [String: JSONValue], fullRope: [String: JSONValue]) throws {
        let a = ggufArchitecture
        func u32(_ k: String, _ v: Int) { m["\(a).\(k)"] = .uint32(UInt32(truncatingIfNeeded: v)) }
        func intOr(_ key: String, _ d: Int) -> Int { hp.get(key)?.intValue ?? d }
        // Gemma3Model: its defaults for keys a config may omit, rewritten in place.
        u32("context_length", intOr("max_position_embeddings", 131072))
        u32("attention.head_count", intOr("num_attention_heads", 8))
        m["\(a).attention.layer_norm_rms_epsilon"] = .float32(Float(hp.get("rms_norm_eps")?.doubleValue ?? 1e-6))
        u32("attention.key_length", intOr("head_dim", 256))
        u32("attention.value_length", intOr("head_dim", 256))
        m["\(a).rope.freq_base"] = .float32(Float(fullRope["rope_theta"]?.doubleValue ?? 1_000_000))
        if let cap = hp.get("final_logit_softcapping")?.doubleValue, cap != 0 {
            m["\(a).final_logit_softcapping"] = .float32(Float(cap))
        }
        if hp.get("sliding_window_pattern")?.intValue != 1 {
            guard let w = hp.get("sliding_window")?.intValue else {
                throw SmolError.malformed(file, at: "key 'sliding_window'", "missing")
            }
            u32("attention.sliding_window", w)
        }
        u32("attention.head_count_kv", intOr("num_key_value_heads", 4))

        // Gemma4Model
        guard let shared = hp.get("num_kv_shared_layers")?.intValue else {
            throw SmolError.malformed(file, at: "key 'num_kv_shared_layers'", "missing")
        }
        u32("attention.shared_kv_layers", shared)
        u32("embedding_length_per_layer_input", hp.get("hidden_size_per_layer_input")?.intValue ?? 0)
        guard let types = hp.get("layer_types")?.arrayValue?.compactMap(\.stringValue) else {
            throw SmolError.malformed(file, at: "key 'layer_types'", "missing")
        }
        let swa = types.map { $0 == "sliding_attention" }
        m["\(a).attention.sliding_window_pattern"] = .array(.bool(swa))
        guard let headDimFull = gemma4FullHeadDim(hp) else {
            throw SmolError.malformed(file, at: "key 'per_layer_config'", "no head_dim for the full-attention layers (global_head_dim)")
        }
        guard let headDimSWA = hp.get("head_dim")?.intValue else { throw SmolError.malformed(file, at: "key 'head_dim'", "missing") }
        u32("attention.key_length", headDimFull)
        u32("attention.value_length", headDimFull)
        u32("attention.key_length_swa", headDimSWA)
        u32("attention.value_length_swa", headDimSWA)
        if let x = hp.find(["expert_intermediate_size", "moe_intermediate_size"])?.intValue { u32("expert_feed_forward_length", x) }
        if hp.get("use_double_wide_mlp")?.boolValue == true, let nff = hp.get("intermediate_size")?.intValue {
            let first = config.numHiddenLayers - shared
            m["\(a).feed_forward_length"] = .array(.uint32((0..<config.numHiddenLayers).map { UInt32($0 < first ? nff : 2 * nff) }))
        }
        var kvFull = hp.get("num_global_key_value_heads")?.intValue
        if kvFull == nil, let plc = hp.get("per_layer_config")?.objectValue {
            for k in plc.keys {
                if let i = Int(k), i < types.count, types[i] == "full_attention", let v = plc[k]?["num_key_value_heads"]?.intValue {
                    kvFull = v
                    break
                }
            }
        }
        if let kvFull, let kvSWA = hp.get("num_key_value_heads")?.intValue {
            m["\(a).attention.head_count_kv"] = .array(.uint32(swa.map { UInt32($0 ? kvSWA : kvFull) }))
        }
        // `self.rope_parameters.get("partial_rotary_factor", 1.0)`: the top level of rope_parameters
        // (the sliding layers' factor is not looked up there).
        let partialSWA = rope["partial_rotary_factor"]?.doubleValue ?? 1.0
        u32("rope.dimension_count", headDimFull)
        u32("rope.dimension_count_swa", Int(Double(headDimSWA) * partialSWA))
    }

    /// Gemma4's full-attention head size: `global_head_dim`, else the first full-attention entry of
    /// `per_layer_config` (in the file's order) with a head_dim.
    func gemma4FullHeadDim(_ hp: HParams) -> Int? {
        if let g = hp.get("global_head_dim")?.intValue { return g }
        let types = hp.get("layer_types")?.arrayValue?.compactMap(\.stringValue) ?? []
        guard let plc = hp.get("per_layer_config")?.objectValue else { return nil }
        for k in plc.keys {
            if let i = Int(k), i < types.count, types[i] == "full_attention", let v = plc[k]?["head_dim"]?.intValue { return v }
        }
        return nil
    }

    /// Tensors the converter generates rather than converts: gemma4's `rope_freqs.weight`
    /// (`Gemma4Model.generate_extra_tensors`: 1 for the rotated pairs of a full-attention head,
    /// 1e30 for the unrotated ones, which freezes them under "proportional" RoPE). F32 values.
    public func generatedTensors(config: ModelConfig) throws -> [(name: String, values: [Float])] {
        guard modelType == "gemma4_text" else { return [] }
        let hp = HParams(config)
        guard let full = hp.get("rope_parameters")?["full_attention"], full["rope_type"]?.stringValue == "proportional",
              let factor = full["partial_rotary_factor"]?.doubleValue else {
            throw SmolError.malformed("config.json", at: "key 'rope_parameters.full_attention'",
                                      "llama.cpp's gemma4 converter expects rope_type \"proportional\" with a partial_rotary_factor")
        }
        guard let hd = gemma4FullHeadDim(hp) else {
            throw SmolError.malformed("config.json", at: "key 'per_layer_config'", "no head_dim for the full-attention layers")
        }
        // int(hd * factor / 2) and int(hd / 2) - n_rot, as Python truncates.
        let nRot = Int(Double(hd) * factor / 2)
        let nUnrot = hd / 2 - nRot
        return [("rope_freqs.weight", [Float](repeating: 1, count: nRot) + [Float](repeating: 1e30, count: max(nUnrot, 0)))]
    }
}
