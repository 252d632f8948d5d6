#!/usr/bin/env python3
"""`smolconv quantize` agrees with llama.cpp and gguf-py on the real model.

Input: the shipped Gemma 3 270M Q4_K_M GGUF (smolconv dequantizes it exactly, which is the F32 base).
  * Q4_K_M, Q4_0, Q8_0: the file size equals llama-quantize's output for the F32 base
    (shared/references: 253,113,024 / 241,408,704 / 291,543,744 bytes); Q4_K_M's per-tensor types
    equal the shipped file's (written by llama.cpp); gguf-py's GGUFReader reads every file.
  * For the types gguf-py can quantize (Q8_0, Q4_0, Q5_0): every tensor smolconv quantized to such a
    type equals gguf.quants.quantize of the exact F32 values, byte for byte.
"""
import os, subprocess, sys, tempfile

import numpy as np
import gguf
from gguf.quants import dequantize, quantize

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
model = os.environ.get("SMOLCONV_REAL_MODEL", os.path.join(root, ".cache", "models", "gemma-3-270m-q4_k_m.gguf"))
SIZES = {"Q4_K_M": 253_113_024, "Q4_0": 241_408_704, "Q8_0": 291_543_744}
GGUFPY = {gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q5_0}

shipped = gguf.GGUFReader(model)
base = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in shipped.tensors}
failures = []
with tempfile.TemporaryDirectory() as tmp:
    for mix, size in SIZES.items():
        out = os.path.join(tmp, f"{mix}.gguf")
        r = subprocess.run([SMOLCONV, "quantize", model, out, "--type", mix], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{mix}: {r.stderr.strip()}")
            continue
        got = os.path.getsize(out)
        if got != size:
            failures.append(f"{mix}: {got} bytes, llama-quantize wrote {size}")
        q = gguf.GGUFReader(out)
        if mix == "Q4_K_M":
            want = {t.name: t.tensor_type for t in shipped.tensors}
            wrong = [t.name for t in q.tensors if t.tensor_type != want[t.name]]
            if wrong:
                failures.append(f"Q4_K_M: types differ from llama.cpp's on {wrong[:5]}")
        checked = 0
        for t in q.tensors:
            if t.tensor_type in GGUFPY:
                ref = quantize(base[t.name], t.tensor_type)
                if not np.array_equal(np.asarray(t.data).view(np.uint8).ravel(), ref.view(np.uint8).ravel()):
                    failures.append(f"{mix}: {t.name} ({t.tensor_type.name}) differs from gguf-py's quantize")
                checked += 1
        print(f"{mix}: {got} bytes, {checked} tensors byte-identical to gguf-py's quantize")
for f in failures:
    print("FAIL", f)
print(f"quantize crosscheck: {len(SIZES) - len({f.split(':')[0] for f in failures})} passed, {len({f.split(':')[0] for f in failures})} failed")
sys.exit(1 if failures else 0)
