#!/usr/bin/env python3
"""smolconv's safetensors output agrees with Python `safetensors` (and transformers' conventions).

For every fixture folder in Tests/Fixtures/hf (the trainable/ MoE folders and the 5-shard BF16
checkpoint included):
  1. `smolconv convert <folder> out.safetensors`: the file equals, byte for byte, what the crate's
     own serializer (`safetensors.serialize_file`, metadata {"format": "pt"}) writes for the source's
     tensors; `safe_open` reads it back with the source's names, dtypes, shapes and bytes.
  2. `smolconv convert <folder> out --max-shard-size 100000`: `model.safetensors.index.json` is
     `json.dumps(index, indent=2, sort_keys=True) + "\\n"` as transformers writes it; its weight_map
     lists exactly the source's tensors; metadata.total_size is the sum of tensor bytes; every shard
     is at most the limit (or holds one tensor), opens with `safe_open`, and equals the crate's
     serialization of its own tensors; every tensor's bytes equal the source's.
Source tensors are read with `safe_open` (dtype/shape) and as raw bytes at the header's offsets
(numpy has no bfloat16).
"""
import glob, json, os, shutil, struct, subprocess, sys, tempfile

import numpy as np
from safetensors import TensorSpec, safe_open, serialize_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
FIX = os.path.join(root, "Tests", "Fixtures", "hf")
MAX_SHARD = 100_000
CRATE_DTYPE = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
               "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
failures = []


def run(*args):
    r = subprocess.run([SMOLCONV, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv {' '.join(args)} failed: {r.stderr.strip()}")


def raw_tensors(path):
    """name -> (dtype, shape, bytes), checked against safe_open's view of the same file."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    out = {k: (v["dtype"], list(v["shape"]), blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
           for k, v in header.items()}
    with safe_open(path, framework="np") as f:
        assert sorted(f.keys()) == sorted(out), f"{path}: safe_open sees other tensors"
    return out


def checkpoint_tensors(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    files = [single] if os.path.exists(single) else sorted(set(
        os.path.join(folder, v) for v in json.load(open(index))["weight_map"].values()))
    out = {}
    for f in files:
        out.update(raw_tensors(f))
    return out


def crate_bytes(tensors, metadata):
    """What the crate writes for these tensors (it orders them itself)."""
    keep, specs = [], {}
    for k, (dt, shape, b) in tensors.items():
        a = np.frombuffer(b, dtype=np.uint8).copy()
        keep.append(a)
        specs[k] = TensorSpec(dtype=CRATE_DTYPE[dt], shape=tuple(shape), data_ptr=a.ctypes.data, data_len=len(b))
    fd, p = tempfile.mkstemp(suffix=".safetensors")
    os.close(fd)
    try:
        serialize_file(specs, p, metadata=metadata)
        return open(p, "rb").read()
    finally:
        os.unlink(p)


def check_same(tensors, got, where):
    assert sorted(got) == sorted(tensors), f"{where}: tensor names differ"
    for k, v in tensors.items():
        assert got[k] == v, f"{where}: {k} differs ({got[k][:2]} vs {v[:2]})"


def check(folder):
    name = os.path.relpath(folder, FIX)
    src = checkpoint_tensors(folder)
    tmp = tempfile.mkdtemp(prefix="smolconv-crosscheck-st-")
    try:
        out = os.path.join(tmp, "out.safetensors")
        run("convert", folder, out)
        assert open(out, "rb").read() == crate_bytes(src, {"format": "pt"}), \
            f"{name}: single file differs from safetensors.serialize_file"
        check_same(src, raw_tensors(out), f"{name} single")

        outdir = os.path.join(tmp, "sharded")
        run("convert", folder, outdir, "--max-shard-size", str(MAX_SHARD))
        index_path = os.path.join(outdir, "model.safetensors.index.json")
        text = open(index_path).read()
        index = json.loads(text)
        assert text == json.dumps(index, indent=2, sort_keys=True) + "\n", f"{name}: index is not in transformers' format"
        wm = index["weight_map"]
        assert sorted(wm) == sorted(src), f"{name}: weight_map does not list exactly the source tensors"
        assert index["metadata"]["total_size"] == sum(len(v[2]) for v in src.values()), f"{name}: total_size"
        shards = sorted(set(wm.values()))
        n = len(shards)
        assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)], f"{name}: shard names {shards}"
        got = {}
        for s in shards:
            t = raw_tensors(os.path.join(outdir, s))
            assert sorted(t) == sorted(k for k, v in wm.items() if v == s), f"{name}: {s} holds other tensors than the index says"
            size = sum(len(v[2]) for v in t.values())
            assert size <= MAX_SHARD or len(t) == 1, f"{name}: {s} has {size} bytes > {MAX_SHARD}"
            assert open(os.path.join(outdir, s), "rb").read() == crate_bytes(t, {"format": "pt"}), \
                f"{name}: {s} differs from safetensors.serialize_file"
            got.update(t)
        check_same(src, got, f"{name} sharded")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


folders = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(FIX, "**", "model.safetensors*"), recursive=True)
                 if p.endswith("model.safetensors") or p.endswith("model.safetensors.index.json"))
folders = sorted(set(folders))
for folder in folders:
    try:
        check(folder)
        print(f"ok   {os.path.relpath(folder, FIX)}")
    except Exception as e:  # noqa: BLE001
        failures.append(f"{os.path.relpath(folder, FIX)}: {e}")
        print(f"FAIL {os.path.relpath(folder, FIX)}: {e}")
print(f"check_safetensors: {len(folders) - len(failures)} of {len(folders)} folders ok")
sys.exit(1 if failures else 0)
