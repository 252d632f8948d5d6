#!/usr/bin/env python3
"""Expected GGUF tensor names for the dense HF fixtures, from gguf-py's TensorNameMap.

For each fixture in Tests/Fixtures/hf/{llama,smollm3,qwen3,gemma2,gemma3} this writes
Tests/Fixtures/gguf-names/<fixture>.json:

    {"model_type": ..., "architecture": <general.architecture>, "block_count": n,
     "names": {<hf tensor name>: <gguf tensor name or null when the converter drops it>}}

The GGUF name is what llama.cpp's convert_hf_to_gguf.py writes: `TextModel.map_tensor_name`
= `gguf.get_tensor_name_map(arch, block_count).get_name(name, try_suffixes=(".weight", ".bias"))`.
For llama and smollm3 it also writes "q_row_order"/"k_row_order": row i of the GGUF attn_q/attn_k
tensor is HF row order[i], from `LlamaModel.permute(w, n_head, n_kv_head)` (= w.reshape(n, 2,
rows // n // 2, *rest).swapaxes(1, 2).reshape(w.shape), n = n_kv_head for k) applied to the row
indices with numpy.

The only converter rule outside TensorNameMap that touches these fixtures is
`Gemma2Model.filter_tensors`, which drops `lm_head.weight` (stated below, not guessed).

Run: python3 tools/golden_gguf_names.py   (needs gguf==0.19.0 and safetensors)
"""
import json
import os

import gguf
import numpy as np
from safetensors import safe_open

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "hf")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "gguf-names")

# HF model_type -> gguf-py architecture, as convert_hf_to_gguf.py registers the HF class.
ARCH = {
    "llama": gguf.MODEL_ARCH.LLAMA,       # LlamaForCausalLM -> LlamaModel
    "smollm3": gguf.MODEL_ARCH.SMOLLM3,   # SmolLM3ForCausalLM -> SmolLM3Model
    "qwen3": gguf.MODEL_ARCH.QWEN3,       # Qwen3ForCausalLM -> Qwen3Model
    "gemma2": gguf.MODEL_ARCH.GEMMA2,     # Gemma2ForCausalLM -> Gemma2Model
    "gemma3_text": gguf.MODEL_ARCH.GEMMA3,  # Gemma3ForCausalLM -> Gemma3Model
}
DROPPED = {"gemma2": {"lm_head.weight"}}


def permute_rows(rows, n_head):
    w = np.arange(rows)
    return w.reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(rows)


def main():
    os.makedirs(OUT, exist_ok=True)
    for fixture in ["llama", "smollm3", "qwen3", "gemma2", "gemma3"]:
        d = os.path.join(FIXTURES, fixture)
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        model_type = config["model_type"]
        arch = ARCH[model_type]
        n = config["num_hidden_layers"]
        tmap = gguf.get_tensor_name_map(arch, n)
        with safe_open(os.path.join(d, "model.safetensors"), "np") as st:
            hf_names = sorted(st.keys())
        names = {}
        for name in hf_names:
            if name in DROPPED.get(model_type, set()):
                names[name] = None
                continue
            mapped = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
            if mapped is None:
                raise SystemExit(f"{fixture}: gguf-py cannot map {name}")
            names[name] = mapped
        out = {
            "model_type": model_type,
            "architecture": gguf.MODEL_ARCH_NAMES[arch],
            "block_count": n,
            "names": names,
        }
        if model_type in ("llama", "smollm3"):
            heads = config["num_attention_heads"]
            kv = config.get("num_key_value_heads", heads)
            hd = config.get("head_dim") or config["hidden_size"] // heads
            out["q_row_order"] = permute_rows(heads * hd, heads).tolist()
            out["k_row_order"] = permute_rows(kv * hd, kv).tolist()
        with open(os.path.join(OUT, fixture + ".json"), "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        print(fixture, len(names), "tensors")


if __name__ == "__main__":
    main()
