#!/usr/bin/env python3
"""What llama.cpp's convert_hf_to_gguf.py writes for each MoE HF fixture: metadata and tensor types.

For each fixture in Tests/Fixtures/hf/{qwen2_moe,qwen3_moe,mixtral,olmoe,gemma4_moe,gpt_oss,
qwen3_moe_bf16_sharded} this writes Tests/Fixtures/gguf-convert/moe-<fixture>.json:

    {"model_type", "architecture",
     "metadata": [[key, gguf value type, value (arrays: [elem type, [values]])], ...]   in writer order,
     "file_type": {"f32": 0, "f16": 1, "bf16": 32},       general.file_type per --outtype
     "tensors": {<gguf name>: {"shape": [row-major], "f16": <type with --outtype f16>}},
     "generated": {<gguf name>: {"shape", "type", "values"}}}   tensors the converter makes itself

The tensor names, shapes and bytes of the layout (F32 / --outtype auto) are in
Tests/Fixtures/gguf-names/moe-<fixture>.json (tools/golden_moe_gguf.py); this file adds what the
converter writes beside them.

Metadata: the `set_gguf_parameters` of the converter classes (llama.cpp at
vendor/llama.cpp of llama-cpp-python 0.3.36, conversion/*.py), replayed call for call on gguf-py
0.19.0's own `GGUFWriter` (so key names, value types and the writer's overwrite-in-place of a
repeated key are gguf-py's):
- `TextModel.__init__` (rope_parameters mirroring) and `TextModel.set_gguf_parameters` (base.py);
- qwen2_moe / qwen3_moe: `Qwen2MoeModel` (+ expert_feed_forward_length, expert_shared_feed_forward_length);
- mixtral: `LlamaModel` (+ vocab_size, rope.dimension_count);
- olmoe: `OlmoeModel` (layer_norm_rms_epsilon overwritten with 1e-5 whatever the config says);
- gpt_oss: `GptOssModel` (+ sliding_window, expert_feed_forward_length = intermediate_size);
- gemma4: `Gemma3Model` then `Gemma4Model` (+ shared_kv_layers, embedding_length_per_layer_input,
  sliding_window_pattern, key/value_length of the full layers, *_swa, rope dimension counts) and
  its generated `rope_freqs.weight` (`generate_extra_tensors`: 1.0 for the rotated pairs of the
  full-attention head, 1e30 for the others).
Not replayed: `general.*` naming keys (`prepare_metadata`) and the tokenizer (`set_vocab`): the
fixtures ship no tokenizer, and the real converter stops there (AutoTokenizer finds nothing).

Tensor types (`ModelBase.prepare_tensors`): F32 for n_dims <= 1, names ending "_norm.weight",
ffn_gate_inp / ffn_gate_inp_shexp, and names not ending ".weight"; the --outtype otherwise.

Run: python3 tools/golden_moe_convert.py   (needs gguf==0.19.0, numpy)
"""
import json
import os

import gguf
import numpy as np
from gguf.constants import GGUFValueType, MODEL_ARCH

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "hf")
NAMES = os.path.join(ROOT, "Tests", "Fixtures", "gguf-names")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "gguf-convert")

ARCH = {"qwen2_moe": MODEL_ARCH.QWEN2MOE, "qwen3_moe": MODEL_ARCH.QWEN3MOE, "mixtral": MODEL_ARCH.LLAMA,
        "olmoe": MODEL_ARCH.OLMOE, "gemma4_text": MODEL_ARCH.GEMMA4, "gpt_oss": MODEL_ARCH.GPT_OSS}


class Model:
    """The parts of TextModel the metadata depends on."""

    def __init__(self, hparams, writer):
        self.hparams = dict(hparams)
        if "text_config" in self.hparams:
            self.hparams = {**self.hparams, **self.hparams["text_config"]}
        self.w = writer
        self.block_count = self.find_hparam(["n_layers", "num_hidden_layers", "n_layer", "num_layers"])
        self.rope_parameters = self.hparams.get("rope_parameters", self.hparams.get("rope_scaling")) or {}
        rope_theta = self.find_hparam(["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"], optional=True)
        local_rope_theta = self.find_hparam(["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"], optional=True)
        partial_rotary_factor = self.find_hparam(["partial_rotary_factor", "rope_pct", "rope_percent"], optional=True)
        original_max_position_embeddings = self.find_hparam(["original_max_position_embeddings"], optional=True)
        if "full_attention" not in self.rope_parameters and "sliding_attention" not in self.rope_parameters:
            if local_rope_theta is not None:
                self.rope_parameters["sliding_attention"] = {"rope_theta": local_rope_theta}
            if "rope_theta" not in self.rope_parameters and rope_theta is not None:
                self.rope_parameters["rope_theta"] = rope_theta
            if "rope_type" not in self.rope_parameters and (rope_type := self.rope_parameters.get("type")) is not None:
                self.rope_parameters["rope_type"] = rope_type
            if "partial_rotary_factor" not in self.rope_parameters and partial_rotary_factor is not None:
                self.rope_parameters["partial_rotary_factor"] = partial_rotary_factor
            if "original_max_position_embeddings" not in self.rope_parameters and original_max_position_embeddings is not None:
                self.rope_parameters["original_max_position_embeddings"] = original_max_position_embeddings

    def find_hparam(self, keys, optional=False):
        key = next((k for k in keys if k in self.hparams), None)
        if key is not None:
            return self.hparams[key]
        if optional:
            return None
        raise KeyError(keys)

    def text_model_params(self, ftype):
        w, hp = self.w, self.hparams
        w.add_block_count(self.block_count)
        if (n_ctx := self.find_hparam(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"], optional=True)) is not None:
            w.add_context_length(n_ctx)
        if (n_embd := self.find_hparam(["hidden_size", "n_embd", "dim"], optional=True)) is not None:
            w.add_embedding_length(n_embd)
        if (n_ff := self.find_hparam(["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"], optional=True)) is not None:
            w.add_feed_forward_length(n_ff)
        if (n_head := self.find_hparam(["num_attention_heads", "n_head", "n_heads"], optional=True)) is not None:
            w.add_head_count(n_head)
        if (n_head_kv := self.find_hparam(["num_key_value_heads", "n_kv_heads"], optional=True)) is not None:
            w.add_head_count_kv(n_head_kv)
        assert hp.get("is_causal") is not False
        rope_params = self.rope_parameters.get("full_attention", self.rope_parameters)
        if (rope_type := rope_params.get("rope_type")) is not None:
            rope_factor = rope_params.get("factor")
            if rope_type == "linear" and rope_factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(rope_factor)
            elif rope_type == "yarn" and rope_factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
                w.add_rope_scaling_factor(rope_factor)
                w.add_rope_scaling_orig_ctx_len(rope_params["original_max_position_embeddings"])
                if (x := rope_params.get("extrapolation_factor")) is not None:
                    w.add_rope_scaling_yarn_ext_factor(x)
                if (x := rope_params.get("attention_factor", rope_params.get("attn_factor"))) is not None:
                    w.add_rope_scaling_yarn_attn_factor(x)
                if (x := rope_params.get("beta_fast")) is not None:
                    w.add_rope_scaling_yarn_beta_fast(x)
                if (x := rope_params.get("beta_slow")) is not None:
                    w.add_rope_scaling_yarn_beta_slow(x)
            else:
                # default / proportional: the converter logs a warning and writes nothing.
                assert rope_type in ("default", "proportional"), rope_type
        assert "mrope_section" not in self.rope_parameters
        if (rope_theta := rope_params.get("rope_theta")) is not None:
            w.add_rope_freq_base(rope_theta)
        if (local := self.rope_parameters.get("sliding_attention", {}).get("rope_theta")) is not None:
            w.add_rope_freq_base_swa(local)
        if (eps := self.find_hparam(["rms_norm_eps", "norm_eps"], optional=True)) is not None:
            w.add_layer_norm_rms_eps(eps)
        assert self.find_hparam(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"], optional=True) is None
        if (n := self.find_hparam(["num_local_experts", "num_experts", "n_routed_experts"], optional=True)) is not None:
            w.add_expert_count(n)
        if (n := self.find_hparam(["num_experts_per_tok", "num_experts_per_token", "top_k_experts"], optional=True)) is not None:
            w.add_expert_used_count(n)
        assert hp.get("n_group") is None and hp.get("topk_group") is None
        assert self.find_hparam(["score_function", "scoring_func", "score_func", "moe_router_activation", "moe_router_activation_func", "expert_selection_fn"], optional=True) is None
        if (head_dim := hp.get("head_dim")) is not None:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_file_type(ftype)

    def set_gguf_parameters(self, mt, ftype):
        w, hp = self.w, self.hparams
        if mt == "gemma4_text":
            return self.gemma4(ftype)
        self.text_model_params(ftype)
        if mt in ("qwen2_moe", "qwen3_moe"):  # Qwen2MoeModel (Qwen3MoeModel inherits it)
            if (x := hp.get("moe_intermediate_size")) is not None:
                w.add_expert_feed_forward_length(x)
            if (x := hp.get("shared_expert_intermediate_size")) is not None:
                w.add_expert_shared_feed_forward_length(x)
        elif mt == "mixtral":  # LlamaModel
            w.add_vocab_size(hp["vocab_size"])
            if (rope_dim := hp.get("head_dim")) is None:
                rope_dim = hp["hidden_size"] // hp["num_attention_heads"]
            w.add_rope_dimension_count(rope_dim)
        elif mt == "olmoe":  # OlmoeModel
            w.add_layer_norm_rms_eps(1e-5)
        elif mt == "gpt_oss":  # GptOssModel
            w.add_sliding_window(hp["sliding_window"])
            w.add_expert_feed_forward_length(hp["intermediate_size"])

    def gemma4(self, ftype):
        w, hp = self.w, self.hparams
        self.text_model_params(ftype)
        # Gemma3Model.set_gguf_parameters
        w.add_context_length(hp.get("max_position_embeddings", 131072))
        w.add_head_count(hp.get("num_attention_heads", 8))
        w.add_layer_norm_rms_eps(hp.get("rms_norm_eps", 1e-6))
        w.add_key_length(hp.get("head_dim", 256))
        w.add_value_length(hp.get("head_dim", 256))
        w.add_rope_freq_base(self.rope_parameters.get("full_attention", self.rope_parameters).get("rope_theta", 1_000_000.0))
        assert hp.get("attn_logit_softcapping") is None
        if (cap := hp.get("final_logit_softcapping")):
            w.add_final_logit_softcapping(cap)
        if hp.get("sliding_window_pattern") != 1:
            w.add_sliding_window(hp["sliding_window"])
        w.add_head_count_kv(hp.get("num_key_value_heads", 4))
        # Gemma4Model.set_gguf_parameters
        n_shared = hp["num_kv_shared_layers"]
        w.add_shared_kv_layers(n_shared)
        w.add_embedding_length_per_layer_input(hp.get("hidden_size_per_layer_input") or 0)
        swa_layers = [t == "sliding_attention" for t in hp["layer_types"]]
        w.add_sliding_window_pattern(swa_layers)
        head_dim_full = self.gemma4_full_head_dim()
        head_dim_swa = hp["head_dim"]
        w.add_key_length(head_dim_full)
        w.add_value_length(head_dim_full)
        w.add_key_length_swa(head_dim_swa)
        w.add_value_length_swa(head_dim_swa)
        x = self.find_hparam(["expert_intermediate_size", "moe_intermediate_size"])
        if x is not None:
            w.add_expert_feed_forward_length(x)
        if hp.get("use_double_wide_mlp", False):
            n_ff = hp["intermediate_size"]
            first_shared = self.block_count - n_shared
            w.add_feed_forward_length([n_ff if il < first_shared else n_ff * 2 for il in range(self.block_count)])
        per_layer_config = hp.get("per_layer_config")
        layer_types = hp.get("layer_types", [])
        kv_full = hp.get("num_global_key_value_heads")
        if kv_full is None and per_layer_config is not None:
            for idx, lc in per_layer_config.items():
                idx = int(idx)
                if idx < len(layer_types) and layer_types[idx] == "full_attention" and "num_key_value_heads" in lc:
                    kv_full = lc["num_key_value_heads"]
                    break
        kv_swa = hp.get("num_key_value_heads")
        if kv_full is not None and kv_swa is not None:
            w.add_head_count_kv([kv_swa if s else kv_full for s in swa_layers])
        partial_swa = self.rope_parameters.get("partial_rotary_factor", 1.0)
        w.add_rope_dimension_count(int(head_dim_full))
        w.add_rope_dimension_count_swa(int(head_dim_swa * partial_swa))

    def gemma4_full_head_dim(self):
        hp = self.hparams
        head_dim_full = hp.get("global_head_dim")
        if head_dim_full is None and hp.get("per_layer_config") is not None:
            layer_types = hp.get("layer_types", [])
            for idx, lc in hp["per_layer_config"].items():
                idx = int(idx)
                if idx < len(layer_types) and layer_types[idx] == "full_attention" and "head_dim" in lc:
                    head_dim_full = lc["head_dim"]
                    break
        assert head_dim_full is not None
        return head_dim_full

    def generated(self, mt):
        """generate_extra_tensors: gemma4's rope_freqs (LlamaModel's needs rope_type llama3)."""
        if mt != "gemma4_text":
            assert (self.rope_parameters.get("full_attention", self.rope_parameters).get("rope_type") or "").lower() != "llama3"
            return {}
        full = self.hparams["rope_parameters"]["full_attention"]
        assert full["rope_type"] == "proportional"
        hd = self.gemma4_full_head_dim()
        n_rot = int(hd * full["partial_rotary_factor"] / 2)
        n_unrot = int(hd / 2) - n_rot
        values = np.array([1.0] * n_rot + [1e30] * n_unrot, dtype=np.float32)
        return {"rope_freqs.weight": {"shape": [len(values)], "type": "F32",
                                      "values": [float(v) for v in values]}}


def value_json(v: gguf.GGUFValue):
    t = v.type
    if t == GGUFValueType.ARRAY:
        vals = list(v.value)
        sub = v.sub_type or GGUFValueType.get_type(vals[0])
        return t.name, [sub.name, vals]
    if t in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return t.name, float(v.value)
    return t.name, v.value


def tensor_type(name, shape, outtype):
    n_dims = len(shape)
    if n_dims <= 1 or name.endswith("_norm.weight"):
        return "F32"
    base = name.rsplit(".", 1)[0]
    if base.endswith(".ffn_gate_inp") and name.endswith(".weight") or base.endswith(".ffn_gate_inp_shexp") and name.endswith(".weight"):
        return "F32"
    if name[-7:] not in (".weight", ".lora_a", ".lora_b"):
        return "F32"
    return outtype


def main():
    os.makedirs(OUT, exist_ok=True)
    for fixture in ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss", "qwen3_moe_bf16_sharded"]:
        cfg = json.load(open(os.path.join(FIXTURES, fixture, "config.json")))
        mt = cfg["model_type"]
        arch = gguf.MODEL_ARCH_NAMES[ARCH[mt]]
        file_types = {}
        metadata = None
        rest_seen = None
        for outtype, ftype in [("f32", gguf.LlamaFileType.ALL_F32), ("f16", gguf.LlamaFileType.MOSTLY_F16),
                               ("bf16", gguf.LlamaFileType.MOSTLY_BF16)]:
            w = gguf.GGUFWriter(None, arch)  # writes general.architecture first, as the converter's writer does
            model = Model(cfg, w)
            model.set_gguf_parameters(mt, ftype)
            kv = [[k, *value_json(v)] for k, v in w.kv_data[0].items()]
            file_types[outtype] = int(ftype)
            rest = [e for e in kv if e[0] != "general.file_type"]
            assert rest_seen is None or rest_seen == rest
            rest_seen = rest
            metadata = kv  # the last one (bf16); the test substitutes the file type
        names = json.load(open(os.path.join(NAMES, f"moe-{fixture}.json")))
        tensors = {n: {"shape": t["shape"], "f16": tensor_type(n, t["shape"], "F16")}
                   for n, t in names["tensors"].items()}
        doc = {"model_type": mt, "architecture": arch, "metadata": metadata, "file_type": file_types,
               "tensors": tensors, "generated": Model(cfg, gguf.GGUFWriter(None, arch)).generated(mt)}
        path = os.path.join(OUT, f"moe-{fixture}.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(path, len(metadata), "keys", len(tensors), "tensors")


if __name__ == "__main__":
    main()
