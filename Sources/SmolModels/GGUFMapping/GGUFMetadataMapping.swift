import SmolFormats
import SmolTensor

// config.json ↔ GGUF metadata for the dense architectures.
//
// HF → GGUF follows convert_hf_to_gguf.py: `TextModel.set_gguf_parameters` (llama, smollm3,
// qwen3, gemma3 via super()), `LlamaModel.set_gguf_parameters` (+ vocab_size, rope.dimension_count),
// `Gemma2Model.set_gguf_parameters` (its own list, no super()), `Gemma3Model.set_gguf_parameters`
// (base list, then its defaults overwrite in place, as gguf-py's writer does for a repeated key).
//
// GGUF → HF writes a transformers-4-layout config.json (`rope_theta`, `rope_scaling`,
// `rope_local_base_freq`), which transformers 4 and 5 both read, with llama.cpp's defaults for
// keys a GGUF may omit (llama-model.cpp / models/<arch>.cpp: rope base 10000, gemma3 SWA base
// 10000 and window pattern 6 or `attention.sliding_window_pattern`, gemma2 window 4096,
// smollm3 NoPE every 4th layer, gemma 27B query scaling by hidden/heads).
extension GGUFArchitectureMapping {
    /// The HF class transformers instantiates for this `model_type` (config.json `architectures`).
    public var hfArchitectureClass: String {
        switch modelType {
        case "llama": return "LlamaForCausalLM"
        case "smollm3": return "SmolLM3ForCausalLM"
        case "qwen3": return "Qwen3ForCausalLM"
        case "gemma2": return "Gemma2ForCausalLM"
        default: return "Gemma3ForCausalLM"
        }
    }

    // MARK: HF → GGUF

    /// The architecture metadata convert_hf_to_gguf.py writes for `config`, in its order, starting
    /// with `general.architecture`. `fileType` (llama.cpp `LlamaFileType`, e.g. 1 = F16) is written
    /// as `general.file_type` when given. Tokenizer and `general.*` naming keys are not included.
    public func metadata(from config: ModelConfig, fileType: Int? = nil) -> GGUFMetadata {
        var m = GGUFMetadata()
        let a = ggufArchitecture
        let hp = config.text  // the converter's hparams (text_config merged to the root)
        func has(_ k: String) -> Bool { if let v = hp[k] { return !v.isNull } else { return false } }
        func u32(_ k: String, _ v: Int) { m["\(a).\(k)"] = .uint32(UInt32(truncatingIfNeeded: v)) }
        func f32(_ k: String, _ v: Double) { m["\(a).\(k)"] = .float32(Float(v)) }
        m["general.architecture"] = .string(a)

        if modelType == "gemma2" {
            u32("context_length", config.maxPositionEmbeddings)
            u32("embedding_length", config.hiddenSize)
            u32("block_count", config.numHiddenLayers)
            u32("feed_forward_length", config.intermediateSize)
            u32("attention.head_count", config.numAttentionHeads)
            u32("attention.head_count_kv", config.numKeyValueHeads)
            f32("attention.layer_norm_rms_epsilon", config.rmsNormEps)
            u32("attention.key_length", config.headDim)
            u32("attention.value_length", config.headDim)
            if let fileType { m["general.file_type"] = .uint32(UInt32(fileType)) }
            // The converter passes these through unchecked; a null would crash it, we skip it.
            if let c = config.attnLogitSoftcapping { f32("attn_logit_softcapping", c) }
            if let c = config.finalLogitSoftcapping { f32("final_logit_softcapping", c) }
            if let w = config.slidingWindow { u32("attention.sliding_window", w) }
            return m
        }

        // TextModel.set_gguf_parameters
        u32("block_count", config.numHiddenLayers)
        if has("max_position_embeddings") { u32("context_length", config.maxPositionEmbeddings) }
        if has("hidden_size") { u32("embedding_length", config.hiddenSize) }
        if has("intermediate_size") { u32("feed_forward_length", config.intermediateSize) }
        if has("num_attention_heads") { u32("attention.head_count", config.numAttentionHeads) }
        if has("num_key_value_heads") { u32("attention.head_count_kv", config.numKeyValueHeads) }
        let full = config.rope[.full]!
        do {
            if full.ropeType == "linear", let f = full.factor {
                m["\(a).rope.scaling.type"] = .string("linear")
                f32("rope.scaling.factor", f)
            } else if full.ropeType == "yarn", let f = full.factor {
                m["\(a).rope.scaling.type"] = .string("yarn")
                f32("rope.scaling.factor", f)
                if let o = full.originalMaxPositionEmbeddings { u32("rope.scaling.original_context_length", o) }
                if let x = full.raw["extrapolation_factor"]?.doubleValue { f32("rope.scaling.yarn_ext_factor", x) }
                if let x = full.attentionFactor ?? full.raw["attn_factor"]?.doubleValue { f32("rope.scaling.yarn_attn_factor", x) }
                if let x = full.betaFast { f32("rope.scaling.yarn_beta_fast", x) }
                if let x = full.betaSlow { f32("rope.scaling.yarn_beta_slow", x) }
            }
        }
        // Every transformers ≥ 4 config states a theta (rope_theta / rope_parameters), which the
        // converter mirrors into rope_parameters and writes.
        f32("rope.freq_base", full.theta)
        // `rope_parameters["sliding_attention"]["rope_theta"]`, or the mirrored `rope_local_base_freq`.
        if config.text["rope_parameters"]?["sliding_attention"] != nil || has("rope_local_base_freq") {
            f32("rope.freq_base_swa", config.rope[.sliding]!.theta)
        }
        if has("rms_norm_eps") { f32("attention.layer_norm_rms_epsilon", config.rmsNormEps) }
        if has("head_dim") {
            u32("attention.key_length", config.headDim)
            u32("attention.value_length", config.headDim)
        }
        if let fileType { m["general.file_type"] = .uint32(UInt32(fileType)) }

        switch modelType {
        case "llama", "smollm3":
            u32("vocab_size", config.vocabSize)
            u32("rope.dimension_count", config.headDim)
        case "gemma3_text":
            u32("context_length", config.maxPositionEmbeddings)
            u32("attention.head_count", config.numAttentionHeads)
            f32("attention.layer_norm_rms_epsilon", config.rmsNormEps)
            u32("attention.key_length", config.headDim)
            u32("attention.value_length", config.headDim)
            f32("rope.freq_base", full.theta)
            if let c = config.finalLogitSoftcapping, c != 0 { f32("final_logit_softcapping", c) }
            // `if hparams.get("sliding_window_pattern") != 1` (transformers ≥ 4.52 writes the
            // underscored name, so this is almost always true).
            if config.text["sliding_window_pattern"]?.intValue != 1, let w = config.slidingWindow {
                u32("attention.sliding_window", w)
            }
            u32("attention.head_count_kv", config.numKeyValueHeads)
        default:
            break
        }
        return m
    }

    // MARK: GGUF → HF

    /// A config.json for the GGUF's metadata. `hasOutputTensor`: whether the file has
    /// `output.weight` (no output tensor = tied embeddings); `vocabSize` overrides the vocabulary
    /// size (else `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`).
    public func config(from metadata: GGUFMetadata, hasOutputTensor: Bool, vocabSize: Int? = nil, file: String? = nil) throws -> JSONValue {
        let a = ggufArchitecture
        guard metadata.string("general.architecture") == a else {
            throw SmolError(.mismatch, file: file, at: "metadata key 'general.architecture'",
                            "is '\(metadata.string("general.architecture") ?? "missing")', expected '\(a)'")
        }
        func int(_ k: String) throws -> Int? {
            guard let v = metadata["\(a).\(k)"] else { return nil }
            guard let i = v.intValue, i >= 0 else {
                throw SmolError.malformed(file, at: "metadata key '\(a).\(k)'", "expected a non-negative integer")
            }
            return i
        }
        func required(_ k: String) throws -> Int {
            guard let v = try int(k) else { throw SmolError.malformed(file, at: "metadata key '\(a).\(k)'", "missing") }
            guard v > 0 else { throw SmolError.malformed(file, at: "metadata key '\(a).\(k)'", "must be positive") }
            return v
        }
        /// A float32 as the shortest decimal that reads back as the same float32 (1e-06, not
        /// 9.999999974752427e-07), which is what the HF config held before conversion.
        func float(_ k: String) throws -> Double? {
            guard let v = metadata["\(a).\(k)"] else { return nil }
            guard let d = v.doubleValue else { throw SmolError.malformed(file, at: "metadata key '\(a).\(k)'", "expected a number") }
            if case .float32(let f) = v { return Double(f.description) ?? d }
            return d
        }

        let layers = try required("block_count")
        let hidden = try required("embedding_length")
        let heads = try required("attention.head_count")
        let kvHeads = try int("attention.head_count_kv") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw SmolError.malformed(file, at: "metadata key '\(a).attention.head_count_kv'", "\(kvHeads) does not divide \(heads) heads")
        }
        let headDim = try int("attention.key_length") ?? int("rope.dimension_count") ?? (hidden / heads)
        guard let vocab = try vocabSize ?? int("vocab_size") ?? metadata.array("tokenizer.ggml.tokens")?.count else {
            throw SmolError.malformed(file, at: "metadata key '\(a).vocab_size'", "missing, and no tokenizer.ggml.tokens to count")
        }

        var c: [(String, JSONValue)] = [
            ("architectures", .array([.string(hfArchitectureClass)])),
            ("model_type", .string(modelType)),
            ("vocab_size", .int(vocab)),
            ("hidden_size", .int(hidden)),
            ("intermediate_size", .int(try required("feed_forward_length"))),
            ("num_hidden_layers", .int(layers)),
            ("num_attention_heads", .int(heads)),
            ("num_key_value_heads", .int(kvHeads)),
            ("head_dim", .int(headDim)),
            ("max_position_embeddings", .int(try required("context_length"))),
            ("rms_norm_eps", .double(try float("attention.layer_norm_rms_epsilon") ?? 1e-6)),
            // llama.cpp's default base when the key is absent.
            ("rope_theta", .double(try float("rope.freq_base") ?? 10_000)),
            ("tie_word_embeddings", .bool(!hasOutputTensor)),
            ("attention_bias", .bool(false)),
        ]
        if let type = metadata.string("\(a).rope.scaling.type"), type != "none" {
            var s: [(String, JSONValue)] = [("rope_type", .string(type))]
            if let f = try float("rope.scaling.factor") { s.append(("factor", .double(f))) }
            if let o = try int("rope.scaling.original_context_length") { s.append(("original_max_position_embeddings", .int(o))) }
            if let x = try float("rope.scaling.yarn_beta_fast") { s.append(("beta_fast", .double(x))) }
            if let x = try float("rope.scaling.yarn_beta_slow") { s.append(("beta_slow", .double(x))) }
            if let x = try float("rope.scaling.yarn_attn_factor") { s.append(("attention_factor", .double(x))) }
            c.append(("rope_scaling", .object(s)))
        }
        for (key, gguf) in [("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")] {
            if let id = metadata.int("tokenizer.ggml.\(gguf)_token_id") { c.append((key, .int(id))) }
        }

        switch modelType {
        case "llama", "smollm3", "qwen3":
            c.append(("hidden_act", .string("silu")))
            if modelType == "smollm3" { c.append(("no_rope_layer_interval", .int(4))) }  // llama.cpp: n_no_rope_layer_step = 4
            if modelType == "qwen3" { c.append(("use_sliding_window", .bool(false))) }
        case "gemma2", "gemma3_text":
            c.append(("hidden_activation", .string("gelu_pytorch_tanh")))
            // llama.cpp scales queries by 1/sqrt(hidden/heads) for the 27B models (46 layers for
            // gemma2, 62 for gemma3) and by 1/sqrt(head_dim) otherwise.
            let is27B = layers == (modelType == "gemma2" ? 46 : 62)
            c.append(("query_pre_attn_scalar", .int(is27B ? hidden / heads : headDim)))
            if let x = try float("final_logit_softcapping") { c.append(("final_logit_softcapping", .double(x))) }
            var window = try int("attention.sliding_window")
            let pattern: [Bool]
            if modelType == "gemma2" {
                if let x = try float("attn_logit_softcapping") { c.append(("attn_logit_softcapping", .double(x))) }
                window = window ?? 4096
                pattern = try swaPattern(metadata, layers: layers, defaultPeriod: 2, file: file)
            } else {
                c.append(("rope_local_base_freq", .double(try float("rope.freq_base_swa") ?? 10_000)))
                if window == 0 { window = nil }
                pattern = window == nil ? Array(repeating: false, count: layers)
                    : try swaPattern(metadata, layers: layers, defaultPeriod: 6, file: file)
            }
            if let window { c.append(("sliding_window", .int(window))) }
            c.append(("layer_types", .array(pattern.map { .string($0 ? "sliding_attention" : "full_attention") })))
        default:
            break
        }
        return .object(c)
    }

    /// llama.cpp `load_swa_pattern`: a bool array `attention.sliding_window_pattern` (per layer), or
    /// a period n (key or default): layer i slides iff `i % n < n - 1` (n = 0: every layer).
    func swaPattern(_ metadata: GGUFMetadata, layers: Int, defaultPeriod: Int, file: String?) throws -> [Bool] {
        let key = "\(ggufArchitecture).attention.sliding_window_pattern"
        if let arr = metadata.array(key) {
            guard case .bool(let flags) = arr, flags.count >= layers else {
                throw SmolError.malformed(file, at: "metadata key '\(key)'", "expected \(layers) booleans")
            }
            return Array(flags.prefix(layers))
        }
        let n = metadata.int(key) ?? defaultPeriod
        guard n >= 0 else { throw SmolError.malformed(file, at: "metadata key '\(key)'", "negative period") }
        return (0..<layers).map { n == 0 || $0 % n < n - 1 }
    }
}

extension ModelConfig {
    /// The typed configuration of a GGUF checkpoint: its metadata turned into a config.json by the
    /// architecture's `GGUFArchitectureMapping`, then read like any config.json. Tied embeddings
    /// and the vocabulary size come from the tensors (`output.weight` absent; `token_embd` rows).
    public init(gguf: GGUFFile) throws {
        guard let arch = gguf.metadata.string("general.architecture") else {
            throw SmolError.malformed(gguf.path, at: "metadata key 'general.architecture'", "missing")
        }
        guard let mapping = GGUFArchitectureMapping.forGGUFArchitecture(arch) else {
            throw SmolError(.unsupported, file: gguf.path, at: "metadata key 'general.architecture'",
                            "no config mapping for GGUF architecture '\(arch)' (supported: \(GGUFArchitectureMapping.byModelType.values.map(\.ggufArchitecture).sorted().joined(separator: ", ")))")
        }
        let vocab = gguf.tensor("token_embd.weight")?.shape.first
        let json = try mapping.config(from: gguf.metadata, hasOutputTensor: gguf.tensor("output.weight") != nil,
                                      vocabSize: vocab, file: gguf.path)
        try self.init(json: json, file: gguf.path)
    }
}
