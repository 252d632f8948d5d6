#!/usr/bin/env python3
"""`smolconv convert` agrees with outside readers.

For every dense fixture (llama, smollm3, qwen3, gemma2, gemma3) in F32 and BF16:
  1. HF → GGUF with smolconv; gguf-py's GGUFReader reads the file; every tensor equals what
     llama.cpp's converter would store, computed here independently with numpy from the
     safetensors source (read with Python `safetensors`): gguf-py's TensorNameMap for names,
     LlamaModel.permute for Q/K of llama-style models, `+ 1` for Gemma norms, F32 for 1-D tensors.
  2. GGUF → HF with smolconv; Python `safetensors` reads it; every tensor equals the source bit for
     bit (Gemma norms within one F32 step of 1.0 for F32 sources, as the issue allows).
The BF16 variants are made from the F32 fixtures with smolconv convert --outtype bf16 and checked
against torch-free numpy rounding of the same values.
"""
import json, os, shutil, subprocess, sys, tempfile

import numpy as np
import gguf
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
FIX = os.path.join(root, "Tests", "Fixtures", "hf")
ARCH = {"llama": "llama", "smollm3": "smollm3", "qwen3": "qwen3", "gemma2": "gemma2", "gemma3_text": "gemma3", "gemma3": "gemma3"}
failures = []


def run(*args):
    r = subprocess.run([SMOLCONV, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv {' '.join(args)} failed: {r.stderr.strip()}")


def bf16_round(a):
    """float32 -> bfloat16 (round to nearest even) -> float32, as torch does."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def permute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_gguf(name, data, cfg, model_type):
    if model_type in ("llama", "smollm3"):
        if name.endswith("q_proj.weight"):
            data = permute(data, cfg["num_attention_heads"], cfg["num_attention_heads"])
        if name.endswith("k_proj.weight"):
            data = permute(data, cfg["num_attention_heads"], cfg.get("num_key_value_heads"))
    if model_type.startswith("gemma") and name.endswith("norm.weight"):
        data = data.astype(np.float32) + 1
    return data


def check(name, source_dir, bf16):
    cfg = json.load(open(os.path.join(source_dir, "config.json")))
    model_type = cfg["model_type"]
    arch = ARCH[model_type]
    tmp = tempfile.mkdtemp(prefix="smolconv-crosscheck-")
    try:
        src_dir = source_dir
        src = load_file(os.path.join(source_dir, "model.safetensors"))
        if bf16:
            src_dir = os.path.join(tmp, "bf16")
            run("convert", source_dir, src_dir, "--outtype", "bf16")
            # The BF16 copy holds exactly torch's rounding of the F32 values.
            raw = raw_bf16(os.path.join(src_dir, "model.safetensors"))
            src = {k: bf16_round(v) for k, v in src.items()}
            for k, v in src.items():
                want = (v.view(np.uint32) >> 16).astype("<u2").tobytes()
                assert raw[k] == ("BF16", want), f"{k}: --outtype bf16 is not round-to-nearest-even"
        out = os.path.join(tmp, "model.gguf")
        run("convert", src_dir, out)
        reader = gguf.GGUFReader(out)
        assert reader.fields["general.architecture"].contents() == arch, "general.architecture"
        n_blocks = cfg["num_hidden_layers"]
        arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
        tmap = gguf.get_tensor_name_map(arch_enum, n_blocks)
        tensors = {t.name: t for t in reader.tensors}
        seen = set()
        for hf_name, data in src.items():
            gname = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gname is None:
                if model_type == "gemma2" and hf_name == "lm_head.weight":
                    continue
                raise AssertionError(f"gguf-py has no name for {hf_name}")
            assert gname in tensors, f"{gname} missing from the GGUF"
            seen.add(gname)
            t = tensors[gname]
            want = expected_gguf(hf_name, data.astype(np.float32), cfg, model_type)
            got = np.asarray(t.data)
            if t.tensor_type == gguf.GGMLQuantizationType.BF16:  # gguf-py returns BF16 as raw bytes
                got = np.frombuffer(np.ascontiguousarray(got).tobytes(), dtype="<u2")
                got = (got.astype(np.uint32) << 16).view(np.float32)
            got = got.astype(np.float32).reshape(want.shape)
            if data.ndim == 1:
                assert t.tensor_type == gguf.GGMLQuantizationType.F32, f"{gname}: 1-D tensors are F32 in GGUF"
            else:
                wt = gguf.GGMLQuantizationType.BF16 if bf16 else gguf.GGMLQuantizationType.F32
                assert t.tensor_type == wt, f"{gname}: {t.tensor_type.name}, expected {wt.name}"
            if not np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32)):
                d = np.max(np.abs(got - want))
                raise AssertionError(f"{gname}: values differ from the converter's rule (max |d| {d})")
        extra = set(tensors) - seen
        assert not extra, f"unexpected GGUF tensors {sorted(extra)}"
        # Metadata that llama.cpp needs to load the model.
        f = reader.fields
        assert f[f"{arch}.block_count"].contents() == n_blocks
        assert f[f"{arch}.embedding_length"].contents() == cfg["hidden_size"]
        assert f[f"{arch}.attention.head_count"].contents() == cfg["num_attention_heads"]

        # Back to HF: bit-identical (Gemma norms of F32 sources: within 2^-23 of the source).
        back = os.path.join(tmp, "back")
        run("convert", out, back)
        got = load_file(os.path.join(back, "model.safetensors")) if not bf16 else None
        if bf16:
            raw_src = raw_bf16(os.path.join(src_dir, "model.safetensors"))
            raw_back = raw_bf16(os.path.join(back, "model.safetensors"))
            for k, v in raw_src.items():
                if model_type == "gemma2" and k == "lm_head.weight":
                    continue
                assert k in raw_back, f"{k} missing after GGUF -> HF"
                assert raw_back[k][0] == v[0], f"{k}: dtype {raw_back[k][0]} != {v[0]}"
                assert raw_back[k][1] == v[1], f"{k}: bytes differ after HF -> GGUF -> HF"
        else:
            for k, v in src.items():
                if model_type == "gemma2" and k == "lm_head.weight":
                    continue
                assert k in got, f"{k} missing after GGUF -> HF"
                b = got[k]
                if model_type.startswith("gemma") and k.endswith("norm.weight"):
                    assert np.max(np.abs(b - v)) <= 2.0 ** -23 * 2, f"{k}: beyond one F32 step of 1.0"
                else:
                    assert b.dtype == v.dtype and np.array_equal(b.view(np.uint32), v.view(np.uint32)), f"{k} differs"
        back_cfg = json.load(open(os.path.join(back, "config.json")))
        for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"):
            assert back_cfg.get(key) == cfg.get(key), f"config.json {key}: {back_cfg.get(key)} != {cfg.get(key)}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def raw_bf16(path):
    """name -> (dtype, raw bytes) straight from the file, independent of numpy's dtypes."""
    import struct
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        base = 8 + n
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            fh.seek(base + v["data_offsets"][0])
            out[k] = (v["dtype"], fh.read(v["data_offsets"][1] - v["data_offsets"][0]))
        return out


def check_f16(name, source_dir):
    """--outtype f16 from F16-representable data: HF (F16) -> GGUF -> HF is bit-identical."""
    cfg = json.load(open(os.path.join(source_dir, "config.json")))
    model_type = cfg["model_type"]
    tmp = tempfile.mkdtemp(prefix="smolconv-crosscheck-")
    try:
        f32 = load_file(os.path.join(source_dir, "model.safetensors"))
        h = os.path.join(tmp, "f16")
        run("convert", source_dir, h, "--outtype", "f16")
        src = load_file(os.path.join(h, "model.safetensors"))
        for k, v in f32.items():
            assert src[k].dtype == np.float16, f"{k}: {src[k].dtype}"
            assert np.array_equal(src[k].view(np.uint16), v.astype(np.float16).view(np.uint16)), f"{k}: F16 rounding differs from numpy"
        out = os.path.join(tmp, "m.gguf")
        run("convert", h, out)
        types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
        assert all(t in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32) for t in types.values())
        assert sum(t == gguf.GGMLQuantizationType.F16 for t in types.values()) > 0, "matrices should stay F16"
        back = os.path.join(tmp, "back")
        run("convert", out, back)
        got = load_file(os.path.join(back, "model.safetensors"))
        for k, v in src.items():
            if model_type == "gemma2" and k == "lm_head.weight":
                continue
            b = got[k]
            assert b.dtype == np.float16, f"{k}: came back as {b.dtype}"
            if model_type.startswith("gemma") and k.endswith("norm.weight"):
                # stored as 1 + w rounded to F16 (as the converter does): back within one F16 step of 1.0
                assert np.max(np.abs(b.astype(np.float32) - v.astype(np.float32))) <= 2.0 ** -10, f"{k}: beyond one F16 step"
            else:
                assert np.array_equal(b.view(np.uint16), v.view(np.uint16)), f"{k} differs after HF -> GGUF -> HF"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


total = 0
for name in ["llama", "smollm3", "qwen3", "gemma2", "gemma3"]:
    total += 1
    try:
        check_f16(name, os.path.join(FIX, name))
        print(f"ok   {name} f16")
    except Exception as e:  # noqa: BLE001
        failures.append(f"{name} f16")
        print(f"FAIL {name} f16: {e}")
    for bf16 in (False, True):
        total += 1
        label = f"{name} {'bf16' if bf16 else 'f32'}"
        try:
            check(label, os.path.join(FIX, name), bf16)
            print(f"ok   {label}")
        except Exception as e:  # noqa: BLE001
            failures.append(label)
            print(f"FAIL {label}: {e}")
print(f"convert crosscheck: {total - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
