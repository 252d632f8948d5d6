#!/usr/bin/env python3
"""Dequantization of the real model equals gguf-py's, bit for bit, on every tensor.

smolconv converts the shipped Gemma 3 270M Q4_K_M GGUF (types F32, Q8_0, Q5_0, Q4_K, Q6_K) to an
all-F32 GGUF (`convert --outtype f32`); gguf-py's `gguf.quants.dequantize` dequantizes each tensor
of the shipped file independently, and the two must be identical bit for bit. Metadata must be
kept except general.file_type, which becomes 0 (ALL_F32).
"""
import os, subprocess, sys, tempfile

import numpy as np
import gguf
from gguf.quants import dequantize

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
model = os.environ.get("SMOLCONV_REAL_MODEL", os.path.join(root, ".cache", "models", "gemma-3-270m-q4_k_m.gguf"))
if not os.path.exists(model):
    print("real model missing: run tools/setup")
    sys.exit(1)

with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "f32.gguf")
    r = subprocess.run([SMOLCONV, "convert", model, out, "--outtype", "f32"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        sys.exit(1)
    src = gguf.GGUFReader(model)
    dst = gguf.GGUFReader(out)
    dst_t = {t.name: t for t in dst.tensors}
    bad = []
    types = {}
    for t in src.tensors:
        want = dequantize(t.data, t.tensor_type).astype(np.float32)
        got = dst_t[t.name]
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        assert got.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        g = np.asarray(got.data, dtype=np.float32).reshape(want.shape)
        if not np.array_equal(g.view(np.uint32), want.view(np.uint32)):
            bad.append(t.name)
    for k, f in src.fields.items():
        if k.startswith("GGUF."):
            continue
        if k == "general.file_type":
            assert dst.fields[k].contents() == 0, "general.file_type should be 0 (ALL_F32)"
            continue
        assert dst.fields[k].contents() == f.contents(), f"metadata {k} changed"
    print("tensors by source type:", types)
    if bad:
        print(f"{len(bad)} tensors differ from gguf-py: {bad[:10]}")
        sys.exit(1)
    print(f"all {len(src.tensors)} tensors equal gguf-py's dequantization bit for bit")
