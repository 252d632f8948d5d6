#!/usr/bin/env python3
"""The quantized trainable MoE layout (`smolconv moe restructure --layout trainable --quantize-experts
nf4|int4`, formats/moe-trainable.md) agrees with numpy implementations of the layouts it claims.

For each MoE fixture:
  nf4 (blocks of 64): every expert stack P, flattened, quantized in numpy as bitsandbytes'
      quantize_4bit(P, blocksize=64, quant_type="nf4") does on a CPU (absmax per block;
      clamp(x * (1/absmax), -1, 1); the first nearest of the 16 NF4 code values; two codes per byte,
      first in the high nibble) gives exactly smolconv's `P` and `P.absmax`; `P.quant_map` is the
      NF4 table and the JSON state names the stack's shape.
  int4 (groups of 32): numpy's unpacking of `P` (U32 words, element j of a row in bits 4j..4j+3)
      with `P.scales`/`P.biases` gives values within half a step of the original (round to nearest),
      and re-quantizing those groups in numpy with mx.quantize's affine rule gives the same words.
  Both: a plain F32 trainable folder holding numpy's dequantized stacks gives, in `smolconv logits`,
      exactly the logits of the quantized folder (the engine reads the quantized layout exactly).
The unquantized stacks come from the fixtures' trainable/ folders (written by transformers) or, for
gemma4_moe and gpt_oss, their checkpoints (which ship stacked).
"""
import json, os, shutil, struct, subprocess, sys, tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
FIX = os.path.join(root, "Tests", "Fixtures", "hf")
# bitsandbytes.functional.get_4bit_type("nf4"): the NF4 code, as float32.
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
CASES = [("qwen3_moe", "nf4"), ("qwen3_moe", "int4"), ("mixtral", "nf4"), ("olmoe", "int4"),
         ("gemma4_moe", "nf4"), ("gpt_oss", "nf4"), ("gpt_oss", "int4"), ("qwen2_moe", "nf4"),
         ("qwen3_moe_bf16_sharded", "nf4")]
failures = []


def run(*args):
    r = subprocess.run([SMOLCONV, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv {' '.join(args)} failed: {r.stderr.strip()}")


def read_folder(folder):
    """name -> float32 array (BF16 widened by its bits), over every shard."""
    out = {}
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".safetensors"):
            continue
        path = os.path.join(folder, f)
        blob = open(path, "rb").read()
        n = struct.unpack("<Q", blob[:8])[0]
        header = json.loads(blob[8:8 + n])
        for name, h in header.items():
            if name == "__metadata__":
                continue
            a, b = h["data_offsets"]
            raw = blob[8 + n + a:8 + n + b]
            if h["dtype"] == "BF16":
                v = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                v = np.frombuffer(raw, dtype={"F32": np.float32, "U8": np.uint8, "U32": np.uint32, "I64": np.int64}[h["dtype"]])
            out[name] = (h["dtype"], v.reshape(h["shape"]))
    return out


def stacks(arch):
    t = os.path.join(FIX, arch, "trainable")
    src = read_folder(t if os.path.isdir(t) else os.path.join(FIX, arch))
    return {k: v for k, v in src.items()
            if (k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj")) and v[1].ndim == 3}


def nf4_quantize(w, block=64):
    x = w.astype(np.float32).reshape(-1, block)
    absmax = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip(x * (np.float32(1) / absmax)[:, None], -1, 1)
    q = np.abs(s[..., None] - NF4).argmin(axis=-1).astype(np.uint8)   # first index on ties
    q[np.isnan(s)] = 0
    q = q.reshape(-1)
    return (q[0::2] << 4 | q[1::2]).astype(np.uint8), absmax.astype(np.float32)


def nf4_dequantize(packed, absmax, shape, block=64):
    codes = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)
    return (NF4[codes].reshape(-1, block) * absmax[:, None]).astype(np.float32).reshape(shape)


def int4_unpack(words, scales, biases, shape, group):
    w = words.reshape(-1, words.shape[-1]).astype(np.uint32)
    q = np.stack([(w >> (4 * k)) & 15 for k in range(8)], axis=-1).reshape(w.shape[0], -1).astype(np.float32)
    s = np.repeat(scales.reshape(q.shape[0], -1), group, axis=1)
    b = np.repeat(biases.reshape(q.shape[0], -1), group, axis=1)
    return (s * q + b).astype(np.float32).reshape(shape), q.reshape(shape), s.reshape(shape)


def int4_quantize(w, group):
    """mx.quantize(w, group_size, bits=4), affine mode, in float32."""
    x = w.astype(np.float32).reshape(-1, group)
    n = np.float32(15)
    mx, mn = x.max(axis=1), x.min(axis=1)
    scale = np.maximum((mx - mn) / n, np.float32(1e-7))
    neg = ~(np.abs(mn) > np.abs(mx))
    scale = np.where(neg, -scale, scale)
    edge = np.where(neg, mx, mn)
    q0 = np.rint(edge / scale)
    nz = q0 != 0
    scale = np.where(nz, edge / np.where(nz, q0, 1), scale).astype(np.float32)
    bias = np.where(nz, edge, 0).astype(np.float32)
    q = np.clip(np.rint((x - bias[:, None]) / scale[:, None]), 0, 15).astype(np.uint32).reshape(-1, 8)
    words = np.zeros(q.shape[0], dtype=np.uint32)
    for k in range(8):
        words |= q[:, k] << np.uint32(4 * k)
    return words


def logits(folder, ids, out):
    run("logits", folder, "--tokens", ",".join(map(str, ids)), "--output", out)
    return load_file(out)["logits"]


def check(arch, method, tmp):
    out = os.path.join(tmp, f"{arch}-{method}")
    group = 64 if method == "nf4" else 32
    run("moe", "restructure", os.path.join(FIX, arch), out, "--layout", "trainable", "--quantize-experts", method,
        "--group-size", str(group))
    cfg = json.load(open(os.path.join(out, "config.json")))
    q = cfg.get("smolconv_expert_quantization", {})
    if q.get("method") != method or q.get("version") != 1:
        failures.append(f"{arch} {method}: config.json quantization block {q}")
    got = read_folder(out)
    orig = stacks(arch)
    if sorted(q.get("tensors", [])) != sorted(orig):
        failures.append(f"{arch} {method}: config lists {q.get('tensors')}, stacks are {sorted(orig)}")
    deq = {}
    for name, (dtype, w) in orig.items():
        if method == "nf4":
            packed, absmax = nf4_quantize(w, group)
            gp, ga = got[name][1].reshape(-1), got[name + ".absmax"][1].reshape(-1)
            if got[name][0] != "U8" or not np.array_equal(gp, packed):
                failures.append(f"{arch} nf4 {name}: packed codes differ from numpy's bitsandbytes NF4 "
                                f"({int((gp != packed).sum()) if gp.shape == packed.shape else 'shape'} bytes)")
            if not np.array_equal(ga.view(np.uint32), absmax.view(np.uint32)):
                failures.append(f"{arch} nf4 {name}: absmax differs")
            if not np.array_equal(got[name + ".quant_map"][1].view(np.uint32), NF4.view(np.uint32)):
                failures.append(f"{arch} nf4 {name}: quant_map is not the NF4 table")
            state = json.loads(bytes(got[name + ".quant_state.bitsandbytes__nf4"][1]).decode())
            if state.get("shape") != list(w.shape) or state.get("blocksize") != group or state.get("quant_type") != "nf4":
                failures.append(f"{arch} nf4 {name}: state {state}")
            deq[name] = nf4_dequantize(gp, ga, w.shape, group)
        else:
            words = got[name][1]
            if got[name][0] != "U32" or list(words.shape) != [w.shape[0], w.shape[1], w.shape[2] // 8]:
                failures.append(f"{arch} int4 {name}: stored as {got[name][0]} {list(words.shape)}")
                continue
            d, qv, s = int4_unpack(words, got[name + ".scales"][1], got[name + ".biases"][1], w.shape, group)
            # Rounding to nearest puts values within half a step, except near the end of a group's range
            # opposite the snapped edge (mx.quantize makes the edge exact by adjusting the scale, so the
            # far end may be clamped): within one step everywhere.
            steps = np.abs(d - w) / np.abs(s)
            # Mean error: a quarter step for uniform rounding.
            if steps.max() > 1 + 1e-4 or steps.mean() > 0.3:
                failures.append(f"{arch} int4 {name}: error up to {steps.max():.3f} steps (mean {steps.mean():.3f})")
            mine = int4_quantize(w, group)
            if not np.array_equal(mine, words.reshape(-1)):
                failures.append(f"{arch} int4 {name}: {int((mine != words.reshape(-1)).sum())} words differ from numpy's mx.quantize rule")
            deq[name] = d
    if any(v[0] == "BF16" for v in orig.values()):
        return  # the engine comparison below needs every tensor as F32; the bytes were checked above
    # A plain F32 trainable folder with numpy's dequantized stacks: same logits as the quantized folder.
    plain = os.path.join(tmp, f"{arch}-{method}-plain")
    os.makedirs(plain)
    tensors = {k: v[1] for k, v in read_folder(out).items() if not any(k.startswith(s + ".") or k == s for s in deq)}
    tensors.update(deq)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(plain, "model.safetensors"), {"format": "pt"})
    del cfg["smolconv_expert_quantization"]
    json.dump(cfg, open(os.path.join(plain, "config.json"), "w"), indent=2)
    ids = load_file(os.path.join(FIX, arch, "reference.safetensors"))["input_ids"][0].tolist()
    a = logits(out, ids, os.path.join(tmp, "a.safetensors"))
    b = logits(plain, ids, os.path.join(tmp, "b.safetensors"))
    if not np.array_equal(a, b):
        failures.append(f"{arch} {method}: engine logits of the quantized folder differ from numpy's dequantized "
                        f"weights by {np.abs(a - b).max()}")


def main():
    tmp = tempfile.mkdtemp(prefix="smolconv-moeq-")
    try:
        for arch, method in CASES:
            try:
                check(arch, method, tmp)
            except Exception as e:
                failures.append(f"{arch} {method}: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"quantized trainable layout: {len(CASES)} fixture × method cases agree with numpy")


main()
