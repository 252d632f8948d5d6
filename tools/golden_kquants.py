#!/usr/bin/env python3
"""Writes Tests/Fixtures/quant-golden/llamacpp_quantize.safetensors: llama.cpp's own quantizers
(ggml/src/ggml-quants.c, compiled here) applied to test matrices, with and without importance
weights, for the Swift tests to compare bit for bit. gguf-py cannot quantize k-quants, so this is
the only outside reference for them.

  python3 tools/golden_kquants.py LLAMA_CPP_DIR [--contract]

LLAMA_CPP_DIR is a llama.cpp source tree (the one committed fixture was made from the copy vendored
in the PyPI sdist llama-cpp-python 0.3.36: `pip download --no-deps --no-binary llama-cpp-python
llama-cpp-python==0.3.36`, vendor/llama.cpp). Nothing of it is copied into this repository: it is
compiled into a temporary shared library (with small stubs for the few ggml.c functions the file
calls) and called through ctypes.

The file is compiled with -ffp-contract=off, i.e. plain C float semantics, one rounding per
operation. A llama.cpp built with FMA contraction (GCC's default with -march=native) can round some
intermediate sums differently and pick a different scale in rare blocks; --contract builds that way
to measure how often (printed, not written).

Tensors: `input` (F32 [rows, cols]), `importance` (F32 [cols]), and per type `<T>.plain` (U8,
quantized without importance) and `<T>.imatrix` (U8, quantized with the importance vector).
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "quant-golden", "llamacpp_quantize.safetensors")

# ggml type id: (name, block elements, block bytes)
TYPES = {2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34),
         10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
         14: ("Q6_K", 256, 210)}

STUBS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
static const int64_t blck[] = {1,1,32,32,0,0,32,32,32,32,256,256,256,256,256,256};
static const size_t  tsz[]  = {4,2,18,20,0,0,22,24,34,36,84,110,144,176,210,292};
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "abort %s:%d\n", file, line); abort(); }
size_t ggml_type_size(int t) { return tsz[t]; }
int64_t ggml_blck_size(int t) { return blck[t]; }
size_t ggml_row_size(int t, int64_t ne) { return tsz[t] * ne / blck[t]; }
const char * ggml_type_name(int t) { return "?"; }
"""


def build(src_dir, contract):
    ggml = os.path.join(src_dir, "ggml")
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "stubs.c"), "w") as f:
        f.write(STUBS)
    flags = ["-O2", "-fPIC", "-shared"] + (["-march=x86-64-v3", "-ffp-contract=fast"] if contract else ["-ffp-contract=off"])
    lib = os.path.join(tmp, "libq.so")
    subprocess.check_call(["gcc", *flags, "-o", lib, os.path.join(ggml, "src", "ggml-quants.c"), os.path.join(tmp, "stubs.c"),
                           "-I", os.path.join(ggml, "include"), "-I", os.path.join(ggml, "src"),
                           "-I", os.path.join(ggml, "src", "ggml-cpu"), "-lm"])
    return ctypes.CDLL(lib)


def quantize(lib, tid, x, imatrix):
    name, be, bb = TYPES[tid]
    rows, cols = x.shape
    out = np.zeros(rows * cols // be * bb, dtype=np.uint8)
    fn = getattr(lib, "quantize_" + name.lower().replace("_k", "_K"))
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    x = np.ascontiguousarray(x, dtype=np.float32)
    qw = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    n = fn(x.ctypes.data, out.ctypes.data, rows, cols, None if qw is None else qw.ctypes.data)
    assert n == out.size
    return out


def inputs(rng, rows, cols):
    """Gaussian weights with the shapes real tensors have: a few outlier columns, a row of zeros,
    a near-constant row, heavy tails."""
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x[:, rng.integers(0, cols, 3)] *= 20
    x[1] = 0
    x[2] = 0.01 + 1e-4 * rng.standard_normal(cols).astype(np.float32)
    x[3] = (rng.standard_t(3, cols) * 0.02).astype(np.float32)
    x[4, ::7] = 0
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("llama_cpp_dir")
    ap.add_argument("--contract", action="store_true", help="build with FMA contraction and report differences only")
    a = ap.parse_args()
    lib = build(a.llama_cpp_dir, contract=False)
    rng = np.random.default_rng(424242)
    rows, cols = 12, 512
    x = inputs(rng, rows, cols)
    imp = (rng.gamma(0.5, 2.0, cols) + 1e-3).astype(np.float32)  # imatrix-like: skewed, positive
    tensors = {"input": x, "importance": imp}
    for tid, (name, be, bb) in TYPES.items():
        tensors[f"{name}.plain"] = quantize(lib, tid, x, None)
        tensors[f"{name}.imatrix"] = quantize(lib, tid, x, imp)
    if a.contract:
        libc = build(a.llama_cpp_dir, contract=True)
        for tid, (name, be, bb) in TYPES.items():
            for kind, w in (("plain", None), ("imatrix", imp)):
                ref = tensors[f"{name}.{kind}"].reshape(-1, bb)
                c = quantize(libc, tid, x, w).reshape(-1, bb)
                print(f"{name} {kind}: {int((ref != c).any(axis=1).sum())} of {len(ref)} blocks differ with FMA contraction")
        return
    save_file(tensors, OUT)
    print("wrote", OUT)


if __name__ == "__main__":
    sys.exit(main())
