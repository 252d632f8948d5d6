#!/usr/bin/env python3
"""Expected GGUF tensors of the MoE HF fixtures, as llama.cpp's converter lays them out.

For each fixture in Tests/Fixtures/hf/{qwen2_moe,qwen3_moe,mixtral,olmoe,gemma4_moe,gpt_oss,
qwen3_moe_bf16_sharded} this writes Tests/Fixtures/gguf-names/moe-<fixture>.json:

    {"model_type": ..., "architecture": <general.architecture>, "block_count": n,
     "tensors": {<gguf name>: {"shape": [row-major], "dtype": "F32"|"BF16",
                               "fnv1a64": <hex of FNV-1a 64 over the tensor's bytes>}}}

Names: gguf-py 0.19.0 `TensorNameMap` (`get_tensor_name_map(arch, n).get_name(name,
try_suffixes=(".weight", ".bias"))`) on the names the converter maps. Values: numpy, following
llama.cpp's converter (conversion/*.py at ggml-org/llama.cpp 2bbcf7f):
- qwen2moe / qwen3moe (`Qwen2MoeModel.modify_tensors`), olmoe, mixtral (`LlamaModel`): each
  layer's per-expert gate / up / down matrices `torch.stack`ed into [E, I, H] / [E, I, H] / [E, H, I]
  under `model.layers.{bid}.mlp.experts.{gate,up,down}_proj.weight` (mixtral:
  `layers.{bid}.feed_forward.experts.w{1,3,2}.weight`), mapped by TensorNameMap;
- mixtral: q_proj / k_proj rows permuted by `LlamaModel.permute` (n_head, n_kv_head);
- gpt_oss (`GptOssModel.modify_tensors`, no MXFP4): down_proj transposed to [E, H, I];
  gate_up_proj transposed to [E, 2I, H] then rows ::2 → ffn_gate_exps, 1::2 → ffn_up_exps;
  gate_up_proj_bias columns ::2 / 1::2 → ffn_{gate,up}_exps.bias; sinks → attn_sinks.weight;
- gemma4 (`Gemma4Model`): norm_shift 0 (values unchanged); `router.scale` → ffn_gate_inp.scale,
  `router.per_expert_scale` → ffn_down_exps.scale, `.weight` appended to `layer_scalar` and to
  `experts.*` before mapping (experts.gate_up_proj → ffn_gate_up_exps.weight unchanged).
Dtypes are kept (a layout change, not an --outtype conversion).

Run: python3 tools/golden_moe_gguf.py   (needs gguf==0.19.0, numpy, safetensors)
"""
import glob
import json
import os

import gguf
import numpy as np
from gguf.constants import MODEL_ARCH

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "hf")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "gguf-names")

ARCH = {"qwen2_moe": MODEL_ARCH.QWEN2MOE, "qwen3_moe": MODEL_ARCH.QWEN3MOE, "mixtral": MODEL_ARCH.LLAMA,
        "olmoe": MODEL_ARCH.OLMOE, "gemma4_text": MODEL_ARCH.GEMMA4, "gpt_oss": MODEL_ARCH.GPT_OSS}


def fnv1a64(b: bytes) -> str:
    h = 0xcbf29ce484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def load(folder):
    """name -> (raw uint16/float32 numpy array with the file's dtype kept as bits, dtype name)."""
    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "model*.safetensors"))):
        # Read raw bytes through the header so BF16 needs no torch.
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            data = fh.read()
        for k, v in header.items():
            if k == "__metadata__":
                continue
            a, b = v["data_offsets"]
            dt = {"F32": np.float32, "BF16": np.uint16}[v["dtype"]]
            out[k] = (np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]), v["dtype"])
    return out


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected(fixture):
    """(model_type, general.architecture, block count, {gguf name: (numpy array, dtype name)}): the
    tensors llama.cpp's converter writes for the fixture (values as in the checkpoint; BF16 as uint16 bits)."""
    folder = os.path.join(FIXTURES, fixture)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    mt = cfg["model_type"]
    n_layers = cfg["num_hidden_layers"]
    tmap = gguf.get_tensor_name_map(ARCH[mt], n_layers)
    tensors = load(folder)
    result = {}

    def put(name, arr, dtype):
        assert name not in result, name
        result[name] = (np.ascontiguousarray(arr), dtype)
    def mapped(name):
        g = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        assert g is not None, (fixture, name)
        return g

    experts = {}
    for name, (arr, dt) in tensors.items():
        if mt in ("qwen2_moe", "qwen3_moe", "olmoe") and ".mlp.experts." in name:
            experts[name] = arr
            continue
        if mt == "mixtral" and ".block_sparse_moe.experts." in name:
            experts[name] = arr
            continue
        if mt == "mixtral" and (name.endswith("q_proj.weight") or name.endswith("k_proj.weight")):
            heads = cfg["num_attention_heads"] if "q_proj" in name else cfg["num_key_value_heads"]
            put(mapped(name), permute(arr, heads), dt)
            continue
        if mt == "gpt_oss" and ".mlp.experts." in name:
            bid = name.split(".")[2]
            if name.endswith("down_proj_bias"):
                put(f"blk.{bid}.ffn_down_exps.bias", arr, dt)
            elif name.endswith("down_proj"):
                put(f"blk.{bid}.ffn_down_exps.weight", arr.swapaxes(-1, -2), dt)
            elif name.endswith("gate_up_proj_bias"):
                put(mapped(name.replace("gate_up_proj_bias", "gate_proj.bias")), arr[..., ::2], dt)
                put(mapped(name.replace("gate_up_proj_bias", "up_proj.bias")), arr[..., 1::2], dt)
            else:
                t = arr.swapaxes(-1, -2)
                put(mapped(name.replace("gate_up_proj", "gate_proj.weight")), t[:, ::2, :], dt)
                put(mapped(name.replace("gate_up_proj", "up_proj.weight")), t[:, 1::2, :], dt)
            continue
        if mt == "gpt_oss" and name.endswith("sinks"):
            put(mapped(name + ".weight"), arr, dt)
            continue
        if mt == "gemma4_text":
            bid = name.split(".")[2] if name.startswith("model.layers.") else None
            if name.endswith("router.scale"):
                put(f"blk.{bid}.ffn_gate_inp.scale", arr, dt)
                continue
            if name.endswith("per_expert_scale"):
                put(f"blk.{bid}.ffn_down_exps.scale", arr, dt)
                continue
            if name.endswith("layer_scalar") or (".experts." in name and not name.endswith(".weight")):
                put(mapped(name + ".weight"), arr, dt)
                continue
        put(mapped(name), arr, dt)

    # Per-expert stacks (torch.stack over experts, per projection).
    n_exp = cfg.get("num_experts") or cfg.get("num_local_experts")
    if experts:
        for bid in range(n_layers):
            if mt == "mixtral":
                projs = [("w1", f"layers.{bid}.feed_forward.experts.w1.weight"), ("w2", f"layers.{bid}.feed_forward.experts.w2.weight"),
                         ("w3", f"layers.{bid}.feed_forward.experts.w3.weight")]
                fmt = "model.layers.{bid}.block_sparse_moe.experts.{x}.{w}.weight"
            else:
                projs = [(w, f"model.layers.{bid}.mlp.experts.{w}.weight") for w in ("down_proj", "gate_proj", "up_proj")]
                fmt = "model.layers.{bid}.mlp.experts.{x}.{w}.weight"
            for w, merged in projs:
                names = [fmt.format(bid=bid, x=x, w=w) for x in range(n_exp)]
                if not all(n in experts for n in names):
                    continue
                stacked = np.stack([experts.pop(n) for n in names], axis=0)
                put(mapped(merged), stacked, tensors[names[0]][1])
        assert not experts, list(experts)[:4]

    return mt, gguf.MODEL_ARCH_NAMES[ARCH[mt]], n_layers, result


def main():
    for fixture in ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss", "qwen3_moe_bf16_sharded"]:
        mt, arch, n_layers, arrays = expected(fixture)
        result = {n: {"shape": list(a.shape), "dtype": dt, "fnv1a64": fnv1a64(a.tobytes())} for n, (a, dt) in arrays.items()}
        doc = {"model_type": mt, "architecture": arch, "block_count": n_layers,
               "tensors": dict(sorted(result.items()))}
        path = os.path.join(OUT, f"moe-{fixture}.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(path, len(result), "tensors")


if __name__ == "__main__":
    main()
