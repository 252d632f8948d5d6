import SmolTensor

// HF ↔ GGUF names of the Mixture-of-Experts architectures, for every tensor except the expert
// weights themselves (SmolMoE merges, splits and transposes those; see formats/moe-trainable.md).
//
// HF names are those of the *trainable* layout (transformers 5's in-memory names: mixtral's router
// is `mlp.gate`, not `block_sparse_moe.gate`), which is the layout SmolMoE converts to and from
// GGUF. Names are gguf-py 0.19.0's `TensorNameMap` restricted to each architecture's
// `MODEL_TENSORS` (qwen2moe, qwen3moe, llama for mixtral, olmoe, gpt-oss, gemma4); the suffix-less
// HF tensors follow llama.cpp's converter (`conversion/gemma.py` `Gemma4Model.modify_tensors`:
// `router.scale` → `ffn_gate_inp.scale`, `router.per_expert_scale` → `ffn_down_exps.scale`,
// `filter_tensors` appends ".weight" to `layer_scalar`; `conversion/gpt_oss.py` appends ".weight" to
// `sinks`). Tests/Fixtures/gguf-names/<moe fixture>.json holds the golden names.
//
// These mappings are kept out of `byModelType` (the dense converter's registry) on purpose: a
// per-expert checkpoint must go through SmolMoE's rewrite, never through the dense name table.
extension GGUFArchitectureMapping {
    /// The mapping for an MoE `model_type` (trainable-layout names), or nil.
    public static func forMoEModelType(_ modelType: String) -> GGUFArchitectureMapping? { moeByModelType[modelType] }

    /// HF `model_type` → mapping for the MoE architectures.
    public static let moeByModelType: [String: GGUFArchitectureMapping] = {
        let attention: [(hf: String, gguf: String)] = [
            ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
        ]
        let qkNorm: [(hf: String, gguf: String)] = [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]
        // Dense MLP: qwen MoE layers listed in `mlp_only_layers` (or off the sparse step), gemma4's
        // MLP that runs beside the experts.
        let mlp: [(hf: String, gguf: String)] = [("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]
        let llamaNorms: [(hf: String, gguf: String)] = [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]
        let global: [(hf: String, gguf: String)] = [("model.embed_tokens", "token_embd"), ("model.norm", "output_norm"), ("lm_head", "output")]
        let router: [(hf: String, gguf: String)] = [("mlp.gate", "ffn_gate_inp")]
        let sharedExpert: [(hf: String, gguf: String)] = [
            ("mlp.shared_expert.gate_proj", "ffn_gate_shexp"), ("mlp.shared_expert.up_proj", "ffn_up_shexp"),
            ("mlp.shared_expert.down_proj", "ffn_down_shexp"), ("mlp.shared_expert_gate", "ffn_gate_inp_shexp"),
        ]
        let gemma4Norms: [(hf: String, gguf: String)] = [
            ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
            ("pre_feedforward_layernorm_2", "pre_ffw_norm_2"), ("post_feedforward_layernorm_1", "post_ffw_norm_1"),
            ("post_feedforward_layernorm_2", "post_ffw_norm_2"), ("post_per_layer_input_norm", "post_norm"),
            ("per_layer_input_gate", "inp_gate"), ("per_layer_projection", "proj"),
        ]
        let all = [
            GGUFArchitectureMapping(modelType: "qwen2_moe", ggufArchitecture: "qwen2moe",
                                    blockNames: llamaNorms + attention + router + sharedExpert + mlp,
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "qwen3_moe", ggufArchitecture: "qwen3moe",
                                    blockNames: llamaNorms + attention + qkNorm + router + mlp,
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: false),
            // llama.cpp converts Mixtral with LlamaModel (general.architecture "llama"), Q/K permuted.
            // The per-expert checkpoint's `block_sparse_moe.gate` maps too (gguf-py lists it).
            GGUFArchitectureMapping(modelType: "mixtral", ggufArchitecture: "llama",
                                    blockNames: llamaNorms + attention + router + [("block_sparse_moe.gate", "ffn_gate_inp")],
                                    globalNames: global, dropped: [], permutesQK: true, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "olmoe", ggufArchitecture: "olmoe",
                                    blockNames: llamaNorms + attention + qkNorm + router,
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "gpt_oss", ggufArchitecture: "gpt-oss",
                                    blockNames: [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm")]
                                        + attention + [("mlp.router", "ffn_gate_inp")],
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: false,
                                    exactBlockNames: [("self_attn.sinks", "attn_sinks.weight")]),
            // Gemma4Model.norm_shift is 0: gemma4 norms are stored as they are (no 1 + w).
            GGUFArchitectureMapping(modelType: "gemma4_text", ggufArchitecture: "gemma4",
                                    blockNames: gemma4Norms + attention + qkNorm + mlp + [("router.proj", "ffn_gate_inp")],
                                    globalNames: global + [
                                        ("model.embed_tokens_per_layer", "per_layer_token_embd"),
                                        ("model.per_layer_model_projection", "per_layer_model_proj"),
                                        ("model.per_layer_projection_norm", "per_layer_proj_norm"),
                                    ],
                                    dropped: [], permutesQK: false, normPlusOne: false,
                                    exactBlockNames: [
                                        ("router.scale", "ffn_gate_inp.scale"),
                                        ("router.per_expert_scale", "ffn_down_exps.scale"),
                                        ("layer_scalar", "layer_output_scale.weight"),
                                    ]),
        ]
        return Dictionary(uniqueKeysWithValues: all.map { ($0.modelType, $0) })
    }()

    /// Whether Q and K rows are permuted for llama-style RoPE on the way into GGUF (mixtral).
    public var permutesQueryKey: Bool { permutesQK }
}
