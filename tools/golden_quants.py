#!/usr/bin/env python3
"""Writes Tests/Fixtures/quant-golden/: gguf-py's own (de)quantization of random data, for the
Swift tests of SmolQuant to compare bit for bit.

  python3 tools/golden_quants.py            # random blocks and rows (deterministic seed)
  python3 tools/golden_quants.py --model PATH.gguf   # also sha256 of gguf-py's dequantization of
                                                     # every tensor of the real model

Files:
- dequant.safetensors: for each type T, `T.blocks` (U8, random block bytes whose f16 scale fields
  are replaced by sane values) and `T.dequant` (F32, gguf.quants.dequantize of those bytes).
  Q8_K has no gguf-py dequantizer: its `dequant` is numpy's float32 `d * qs`, ggml's
  dequantize_row_q8_K formula (documented in formats/gguf-quants.md).
- f16_all.json: sha256 of numpy's float32 conversion of all 65 536 half floats (bits 0…65535 in
  order, little-endian float32 bytes), and of all 65 536 bfloat16s the same way (gguf-py BF16).
- quantize.safetensors: for each type gguf-py can quantize, `T.input` (F32 [rows, cols]) and
  `T.bytes` (U8, gguf.quants.quantize of it).
- model_sha256.json (with --model): {tensor name: {type, shape (row-major), offset, nbytes, sha256, checksum}}:
  offset/nbytes locate the tensor's data in the file (so the Swift test needs no GGUF parser) and
  sha256 is over the little-endian float32 bytes of gguf.quants.dequantize of that tensor;
  checksum is `weighted_checksum` of the same values (hex), what the debug-built test checks.
"""
import argparse
import hashlib
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants
from gguf.constants import GGML_QUANT_SIZES
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "quant-golden")

# Byte offsets of the f16 scale fields inside one block (random bytes there would give NaN/inf
# scales and overflows, which gguf-py's numpy code handles but is not what we want to compare).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
}
QUANTIZED = list(HALF_FIELDS) + [T.Q8_K]


def sane_halves(rng, n):
    """Random f16 scales over several decades, with a few zeros and subnormals."""
    v = rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 0, n)
    v[::17] = 0
    v[5::23] = rng.integers(1, 1024, len(v[5::23])) * 2.0 ** -24  # subnormal f16
    return v.astype(np.float16)


def dequant_golden(rng):
    tensors = {}
    for t in QUANTIZED:
        block_elems, block_bytes = GGML_QUANT_SIZES[t]
        nblocks = 48 if block_elems == 256 else 384
        raw = rng.integers(0, 256, (nblocks, block_bytes), dtype=np.uint8)
        for off in HALF_FIELDS.get(t, []):
            raw[:, off:off + 2] = sane_halves(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
        if t == T.Q8_K:
            d = (rng.standard_normal(nblocks) * 10.0 ** rng.uniform(-5, 0, nblocks)).astype(np.float32)
            raw[:, 0:4] = d.view(np.uint8).reshape(nblocks, 4)
            qs = raw[:, 4:260].view(np.int8).astype(np.float32)
            deq = (d.reshape(-1, 1) * qs).astype(np.float32)
        else:
            deq = quants.dequantize(raw, t)
        tensors[f"{t.name}.blocks"] = raw.reshape(-1)
        tensors[f"{t.name}.dequant"] = np.ascontiguousarray(deq.reshape(-1), dtype=np.float32)
    # Dense types: random bits (NaN payloads included) through gguf-py.
    raw = rng.integers(0, 256, 4 * 1024, dtype=np.uint8)
    tensors["F32.blocks"] = raw
    tensors["F32.dequant"] = quants.dequantize(raw, T.F32).copy()
    raw = rng.integers(0, 256, 2 * 1024, dtype=np.uint8)
    tensors["F16.blocks"] = raw
    tensors["F16.dequant"] = quants.dequantize(raw, T.F16).astype(np.float32)
    tensors["BF16.blocks"] = raw
    tensors["BF16.dequant"] = quants.dequantize(raw, T.BF16).reshape(-1).astype(np.float32)
    save_file(tensors, os.path.join(OUT, "dequant.safetensors"))

    all_bits = np.arange(65536, dtype=np.uint16).view(np.uint8)
    f16 = quants.dequantize(all_bits, T.F16).astype("<f4").tobytes()
    bf16 = quants.dequantize(all_bits, T.BF16).reshape(-1).astype("<f4").tobytes()
    with open(os.path.join(OUT, "f16_all.json"), "w") as f:
        json.dump({"F16": hashlib.sha256(f16).hexdigest(), "BF16": hashlib.sha256(bf16).hexdigest()}, f, indent=1)


def quant_inputs(rng, rows, cols):
    x = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    x[0, :32] = 0                                                     # an all-zero block
    x[0, 32:64] = 0.25                                                # a constant block
    x[1, :32] = np.arange(32) - 15.5                                  # halves: ties after scaling
    x[1, 32:64] = np.linspace(-127, 127, 32).round() + 0.5 * (np.arange(32) % 2)
    x[2, :] *= 10.0 ** rng.uniform(-3, 3, cols).astype(np.float32)    # wide dynamic range
    x[3, 5] = 1e4                                                     # an outlier
    return x


def quant_golden(rng):
    tensors = {}
    for t in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        x = quant_inputs(rng, 8, 256)
        q = quants.quantize(x, t)
        tensors[f"{t.name}.input"] = x
        tensors[f"{t.name}.bytes"] = np.ascontiguousarray(q).view(np.uint8).reshape(-1)
    save_file(tensors, os.path.join(OUT, "quantize.safetensors"))


def weighted_checksum(values):
    """sum over i of bits(values[i]) * (2i + 1) mod 2**64: any single changed float changes it (odd
    multipliers are invertible mod 2**64), and it is cheap enough for a debug-built Swift test to
    compute over the whole model, where sha256 is not."""
    bits = np.ascontiguousarray(values, dtype="<f4").reshape(-1).view(np.uint32).astype(np.uint64)
    mult = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return int(np.sum(bits * mult, dtype=np.uint64))


def model_golden(path):
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        deq = quants.dequantize(t.data, t.tensor_type)
        b = np.ascontiguousarray(deq, dtype="<f4").tobytes()
        out[t.name] = {"type": t.tensor_type.name, "shape": [int(s) for s in reversed(t.shape)],
                       "offset": int(t.data_offset), "nbytes": int(t.n_bytes),
                       "sha256": hashlib.sha256(b).hexdigest(), "checksum": f"{weighted_checksum(deq):016x}"}
    with open(os.path.join(OUT, "model_sha256.json"), "w") as f:
        f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(out.items())) + "\n}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="the real Gemma 3 270M Q4_K_M GGUF")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    dequant_golden(rng)
    quant_golden(rng)
    if a.model:
        model_golden(a.model)


if __name__ == "__main__":
    main()
