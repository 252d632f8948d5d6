#!/usr/bin/env python3
"""llama.cpp itself loads and runs `smolconv convert` / `smolconv quantize` outputs of the MoE fixtures.

Uses libllama.so from llama-cpp-python 0.3.36's vendored llama.cpp build (LIBLLAMA, default
/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/libllama.so) through ctypes; skipped
when it is not there. The fixtures ship no tokenizer, and llama.cpp refuses a GGUF without
`tokenizer.ggml.model`; so, for this check only, a copy of each output gets llama.cpp's own
"no vocabulary" marker (`tokenizer.ggml.model = "none"`, LLAMA_VOCAB_TYPE_NONE) and `{arch}.vocab_size`
(llama.cpp's n_vocab without a vocabulary) — no token data is invented, and smolconv's files are
not changed. Then llama_decode on the fixture's input ids gives last-token logits that must match
transformers' reference (max relative error below 1e-2: llama.cpp's CPU path keeps the KV cache in
F16; measured 3e-4 … 3.8e-3, gpt_oss the largest) with the same argmax.
olmoe is left out: llama.cpp's OLMoE graph sizes attn_k_norm as n_embd (no GQA), and the fixture
has 2 KV heads of 4, so llama.cpp refuses its k_norm [32] — a llama.cpp limitation, not a layout one.
ctypes passes llama.cpp's parameter structs as opaque 512-byte blocks (x86-64 SysV: by memory).
"""
import ctypes, os, shutil, subprocess, sys, tempfile

import gguf
import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
LIB = os.environ.get("LIBLLAMA", "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/libllama.so")
FIX = os.path.join(root, "Tests", "Fixtures", "hf")
TOLERANCE = 1e-2


def no_vocab_copy(src, dst):
    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    w = GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        t = GGUFValueType(f.types[0])
        if t == GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[f.data[0]]).decode())
        elif t == GGUFValueType.ARRAY:
            w.add_array(k, [f.parts[i].tolist()[0] for i in f.data])
        elif t == GGUFValueType.FLOAT32:
            w.add_float32(k, float(f.parts[f.data[0]][0]))
        elif t == GGUFValueType.UINT32:
            w.add_uint32(k, int(f.parts[f.data[0]][0]))
        else:
            raise SystemExit(f"type {t} for {k}")
    w.add_string("tokenizer.ggml.model", "none")
    if f"{arch}.vocab_size" not in r.fields:
        w.add_uint32(f"{arch}.vocab_size", [int(t.shape[1]) for t in r.tensors if t.name == "token_embd.weight"][0])
    for t in r.tensors:
        q = t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16)
        shape = list(reversed([int(x) for x in t.shape]))
        if q:  # gguf-py takes quantized data by its byte shape
            bs, ts = gguf.GGML_QUANT_SIZES[t.tensor_type]
            shape = shape[:-1] + [shape[-1] // bs * ts]
        w.add_tensor(t.name, t.data.reshape(shape) if q else t.data, raw_shape=shape, raw_dtype=t.tensor_type)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


class Opaque(ctypes.Structure):
    _fields_ = [("raw", ctypes.c_char * 512)]


def llama_last_logits(lib, path, ids):
    lib.llama_model_load_from_file.restype = ctypes.c_void_p
    lib.llama_model_load_from_file.argtypes = [ctypes.c_char_p, Opaque]
    lib.llama_model_default_params.restype = Opaque
    m = lib.llama_model_load_from_file(path.encode(), lib.llama_model_default_params())
    if not m:
        raise RuntimeError(f"llama.cpp cannot load {path}")
    lib.llama_context_default_params.restype = Opaque
    lib.llama_init_from_model.restype = ctypes.c_void_p
    lib.llama_init_from_model.argtypes = [ctypes.c_void_p, Opaque]
    ctx = lib.llama_init_from_model(m, lib.llama_context_default_params())
    toks = (ctypes.c_int32 * len(ids))(*ids)
    lib.llama_batch_get_one.restype = Opaque
    lib.llama_batch_get_one.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.llama_decode.argtypes = [ctypes.c_void_p, Opaque]
    if lib.llama_decode(ctx, lib.llama_batch_get_one(toks, len(ids))) != 0:
        raise RuntimeError("llama_decode failed")
    lib.llama_get_logits_ith.restype = ctypes.POINTER(ctypes.c_float)
    lib.llama_get_logits_ith.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.llama_model_n_vocab = None
    return lib.llama_get_logits_ith(ctx, -1)


def main():
    if not os.path.exists(LIB):
        print(f"skipped: no {LIB}")
        return
    lib = ctypes.CDLL(LIB)
    lib.llama_backend_init()
    tmp = tempfile.mkdtemp(prefix="check_moe_llamacpp")
    failures = 0
    try:
        for fixture in ["qwen2_moe", "qwen3_moe", "mixtral", "gemma4_moe", "gpt_oss"]:
            ref = load_file(os.path.join(FIX, fixture, "reference.safetensors"))
            ids = [int(x) for x in ref["input_ids"].ravel()]
            want = ref["logits"].reshape(len(ids), -1)[-1].astype(np.float32)
            for how in [("convert", "--outtype", "f32"), ("convert", "--outtype", "f16"), ("quantize", "--type", "Q4_K_M")]:
                out = os.path.join(tmp, f"{fixture}-{how[2]}.gguf")
                subprocess.run([SMOLCONV, how[0], os.path.join(FIX, fixture), out, *how[1:]], check=True, capture_output=True)
                nv = out + ".novocab.gguf"
                no_vocab_copy(out, nv)
                p = llama_last_logits(lib, nv, ids)
                got = np.ctypeslib.as_array(p, shape=(want.size,)).copy()
                err = float(np.abs(got - want).max() / np.abs(want).max())
                line = f"{fixture} {how[0]} {how[2]}: llama.cpp logits max rel err {err:.3g} vs transformers"
                if how[2] == "Q4_K_M":
                    # Quantized: llama.cpp runs it; the bound is the quantization's, not the layout's.
                    ok = np.isfinite(got).all() and err < 1.0
                else:
                    ok = err < TOLERANCE and got.argmax() == want.argmax()
                print(("ok   " if ok else "FAIL ") + line)
                failures += 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
