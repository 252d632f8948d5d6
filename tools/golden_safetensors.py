#!/usr/bin/env python3
"""Dumps what Python `safetensors` reads from every .safetensors fixture into
Tests/Fixtures/safetensors/golden.json, the reference the Swift reader tests compare against.

For each file (path relative to Tests/Fixtures): the header length, `__metadata__`, and every tensor
in data-offset order as [name, dtype, shape, begin, end, zlib.crc32 of its bytes] (only the count for
lora_reference.safetensors, to keep the file small); for a few tensors the
hex of the first and last element's bytes. Also huggingface_hub's shard split of the llama fixture
at a few maximum shard sizes (what transformers' save_pretrained uses), for the sharded writer. Values come from `safetensors.safe_open` (numpy framework),
offsets from the crate's own header parse (`safetensors.deserialize` does not expose them, so the
header JSON is read with the standard library and cross-checked against safe_open's shapes/dtypes).

Run from the repository root: python3 tools/golden_safetensors.py
"""
import glob
import json
import os
import struct
import zlib

import numpy as np
import safetensors
from safetensors import safe_open

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")

# numpy has no bfloat16 / float8: for those only the raw bytes at the header's offsets are recorded;
# every other tensor is also decoded by safe_open and checked to equal those bytes.
NP_NAMES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
            "I8": "i1", "U8": "u1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "BOOL": "?"}


def dump(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = raw[8 + n:]
    order = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    tensors = []
    samples = {}
    with safe_open(path, framework="np") as f:
        assert sorted(f.keys()) == sorted(header.keys()), path
        assert (f.metadata() or None) == meta, path
        for name, info in order:
            b, e = info["data_offsets"]
            blob = data[b:e]
            if info["dtype"] in NP_NAMES:
                # Let safetensors decode the tensor and check it agrees with the raw bytes.
                arr = f.get_tensor(name)
                assert list(arr.shape) == info["shape"], (path, name)
                assert arr.astype(np.dtype(NP_NAMES[info["dtype"]])).tobytes() == blob, (path, name)
            tensors.append([name, info["dtype"], info["shape"], b, e, zlib.crc32(blob)])
    # First/last element bytes of the first, last and two middle tensors (by data offset).
    picks = sorted({0, len(order) // 3, 2 * len(order) // 3, len(order) - 1}) if order else []
    if "/safetensors/" in path:
        picks = range(len(order))
    for i in picks:
        name, info = order[i]
        b, e = info["data_offsets"]
        if e == b:
            continue
        size = {"BOOL": 1, "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4,
                "F16": 2, "BF16": 2, "I16": 2, "U16": 2}.get(info["dtype"], 1)
        samples[name] = {"first": data[b:b + size].hex(), "last": data[e - size:e].hex()}
    out = {"header_size": n, "metadata": meta, "tensor_count": len(tensors), "samples": samples}
    if os.path.basename(path) != "lora_reference.safetensors":
        # lora_reference files (long PEFT names, ~180 KB of listing) keep only the count and samples.
        out["tensors"] = tensors
    return out


def make_all_dtypes(path):
    """A file with every dtype smolconv reads (incl. BF16 and the F8s, which numpy lacks, through
    the crate's TensorSpec), a scalar, an empty tensor, and non-ASCII metadata and names."""
    from safetensors import TensorSpec, serialize_file
    rng = np.random.default_rng(7)
    arrays = {
        "f64": rng.standard_normal((2, 3)).astype("<f8"),
        "f32": rng.standard_normal((3, 2, 2)).astype("<f4"),
        "f16": rng.standard_normal((5,)).astype("<f2"),
        "i64": np.array([-(1 << 62), -1, 0, (1 << 63) - 1], dtype="<i8"),
        "i32": np.array([[-7, 8], [2**31 - 1, -2**31]], dtype="<i4"),
        "i16": np.array([-32768, 32767, 5], dtype="<i2"),
        "i8": np.array([-128, 127, 0], dtype="i1"),
        "u64": np.array([2**64 - 1, 1], dtype="<u8"),
        "u32": np.array([2**32 - 1, 3], dtype="<u4"),
        "u16": np.array([65535, 9], dtype="<u2"),
        "u8": np.arange(7, dtype="u1"),
        "bool": np.array([True, False, True]),
        "scalar.f32": np.array(3.5, dtype="<f4"),
        "empty.f32": np.zeros((0, 4), dtype="<f4"),
        "名前.f32": np.array([1.0, -2.0], dtype="<f4"),
    }
    raw = {  # dtype name for TensorSpec, shape, bytes
        "bf16": ("bfloat16", (2, 2), bytes.fromhex("803f0040c0bf7f7f")),
        "f8_e4m3": ("float8_e4m3fn", (4,), bytes.fromhex("38b87e01")),
        "f8_e5m2": ("float8_e5m2", (3,), bytes.fromhex("3cbc7b")),
    }
    keep = []
    specs = {}
    for k, a in arrays.items():
        assert a.flags["C_CONTIGUOUS"]  # (np.ascontiguousarray would turn the scalar into shape [1])
        keep.append(a)
        specs[k] = TensorSpec(dtype=a.dtype.name, shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
    for k, (dt, shape, b) in raw.items():
        a = np.frombuffer(b, dtype="u1").copy()
        keep.append(a)
        specs[k] = TensorSpec(dtype=dt, shape=shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
    serialize_file(specs, path, metadata={"format": "pt", "note": "all dtypes ✓"})


def shard_plans():
    """huggingface_hub's split of the llama fixture (tensors in data-offset order) at a few sizes."""
    # huggingface_hub 2.x dropped the numpy wrapper; the factory is what the torch wrapper calls.
    from huggingface_hub.serialization import split_state_dict_into_shards_factory
    import huggingface_hub
    path = os.path.join(ROOT, "hf", "llama", "model.safetensors")
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    order = [k for k, _ in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))]
    with safe_open(path, framework="np") as f:
        state = {k: f.get_tensor(k) for k in order}
    plans = {}
    for size in (1000, 100_000, 140_000, 300_000, 10_000_000):
        split = split_state_dict_into_shards_factory(
            state, max_shard_size=size, filename_pattern="model{suffix}.safetensors",
            get_storage_size=lambda a: a.nbytes, get_storage_id=lambda a: None)
        plans[str(size)] = {"filename_to_tensors": split.filename_to_tensors, "metadata": split.metadata}
    return {"source": "hf/llama/model.safetensors", "order": order,
            "huggingface_hub": huggingface_hub.__version__, "plans": plans}


def main():
    files = {}
    make_all_dtypes(os.path.join(ROOT, "safetensors", "all_dtypes.safetensors"))
    for path in [os.path.join(ROOT, "safetensors", "all_dtypes.safetensors")] + sorted(glob.glob(os.path.join(ROOT, "hf", "**", "*.safetensors"), recursive=True)
                       + glob.glob(os.path.join(ROOT, "quant", "**", "*.safetensors"), recursive=True)):
        files[os.path.relpath(path, ROOT)] = dump(path)
    out = {"generator": "tools/golden_safetensors.py", "safetensors": safetensors.__version__,
           "numpy": np.__version__, "files": files, "shard_plans": shard_plans()}
    dst = os.path.normpath(os.path.join(ROOT, "safetensors", "golden.json"))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as fh:
        json.dump(out, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"{dst}: {len(files)} files, {sum(v['tensor_count'] for v in files.values())} tensors")


if __name__ == "__main__":
    main()
