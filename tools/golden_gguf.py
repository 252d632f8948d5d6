#!/usr/bin/env python3
"""Golden GGUF fixtures for Tests/SmolFormatsTests, made with gguf-py (pip `gguf` 0.19.0).

    python3 tools/golden_gguf.py [MODEL]    (default: .cache/models/gemma-3-270m-q4_k_m.gguf)

Writes into Tests/Fixtures/gguf/:
  gemma3-270m-layout.json  what gguf.GGUFReader sees in the real model: version, data offset, every
                           tensor (name, type, ne, row-major shape, absolute data offset, bytes) and
                           every metadata value; arrays as element type, length, first and last 8.
                           Skipped with a note when the model is not installed.
  ggml-quant-sizes.json    gguf.constants.GGML_QUANT_SIZES: type id → name, block elements, bytes.
  all-types.gguf/.json     every value type, arrays of each, nested arrays and small tensors of
                           several types, written by gguf.GGUFWriter (alignment 64), with the values
                           put in (integers as decimal strings, floats with their exact bit patterns).
  v2.gguf/.json            a version-2 file built byte by byte from the spec (gguf-py writes only v3;
                           v2 has v3's layout: 64-bit counts and lengths, which v1 did not have),
                           checked by reading it back with gguf.GGUFReader.
"""
import hashlib, json, math, os, struct, sys

import numpy as np
import gguf
from gguf import GGUFValueType as VT, GGMLQuantizationType as QT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_pack as P  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "gguf")
EDGE = 8  # first/last array elements kept in the layout JSON


def f32_bits(x):
    return "%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


def enc(vtype, v):
    """A typed JSON form of one scalar or string value that loses nothing."""
    vtype = VT(vtype)
    if vtype in (VT.UINT8, VT.INT8, VT.UINT16, VT.INT16, VT.UINT32, VT.INT32, VT.UINT64, VT.INT64):
        return {"type": vtype.name, "value": str(int(v))}
    if vtype == VT.FLOAT32:
        return {"type": vtype.name, "bits": f32_bits(float(v)), "value": float(np.float32(v)) if math.isfinite(v) else str(v)}
    if vtype == VT.FLOAT64:
        return {"type": vtype.name, "bits": f64_bits(float(v)), "value": float(v) if math.isfinite(v) else str(v)}
    if vtype == VT.BOOL:
        return {"type": vtype.name, "value": bool(v)}
    if vtype == VT.STRING:
        return {"type": vtype.name, "value": v if isinstance(v, str) else bytes(v).decode("utf-8")}
    raise ValueError(vtype)


def enc_array(sub, values):
    """An array: element type and elements (nested arrays as (sub, values) pairs)."""
    sub = VT(sub)
    if sub == VT.ARRAY:
        return {"type": "ARRAY", "element_type": "ARRAY", "count": len(values),
                "values": [enc_array(s, vs) for s, vs in values]}
    return {"type": "ARRAY", "element_type": sub.name, "count": len(values), "values": [enc(sub, x) for x in values]}


# ---------------------------------------------------------------------------------------------
def reader_field(field):
    """gguf-py's view of a metadata field, in enc()'s format (arrays as edges, no nesting)."""
    t = field.types[0]
    if t == VT.ARRAY:
        sub = field.types[-1]
        if len(field.types) > 2:
            raise ValueError("nested array in the real model")
        n = len(field.data)
        idx = list(range(min(EDGE, n))) + list(range(max(EDGE, n - EDGE), n))
        vals = [field.contents(i) for i in idx]
        return {"type": "ARRAY", "element_type": sub.name, "count": n,
                "first": [enc(sub, v) for v in vals[:min(EDGE, n)]],
                "last": [enc(sub, v) for v in vals[min(EDGE, n):]]}
    return enc(t, field.contents())


def layout(model):
    r = gguf.GGUFReader(model)
    meta = []
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # gguf-py's pseudo-fields for the header
        meta.append({"key": name, **reader_field(field)})
    tensors = [{
        "name": t.name, "type": t.tensor_type.name, "type_id": int(t.tensor_type),
        "ne": [int(x) for x in t.shape], "shape": [int(x) for x in reversed(t.shape)],
        "offset": int(t.data_offset), "bytes": int(t.n_bytes),
    } for t in r.tensors]
    with open(model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {
        "origin": f"gguf.GGUFReader (gguf {gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'}) on {os.path.basename(model)}",
        "file_bytes": os.path.getsize(model), "sha256": sha,
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment), "data_offset": int(r.data_offset),
        "tensor_count": len(tensors), "metadata": meta, "tensors": tensors,
    }


# ---------------------------------------------------------------------------------------------
SCALARS = [
    ("t.uint8", VT.UINT8, 255), ("t.int8", VT.INT8, -128), ("t.uint16", VT.UINT16, 65535),
    ("t.int16", VT.INT16, -32768), ("t.uint32", VT.UINT32, 4294967295), ("t.int32", VT.INT32, -2147483648),
    ("t.float32", VT.FLOAT32, 1.5), ("t.float32_neg_zero", VT.FLOAT32, -0.0),
    ("t.float32_max", VT.FLOAT32, 3.4028234663852886e38), ("t.float32_denormal", VT.FLOAT32, 1e-45),
    ("t.float32_inf", VT.FLOAT32, float("-inf")), ("t.float32_eps", VT.FLOAT32, 1e-6),
    ("t.bool_true", VT.BOOL, True), ("t.bool_false", VT.BOOL, False),
    ("t.string", VT.STRING, "héllo wörld 🌍 世界 \t\n"), ("t.string_empty", VT.STRING, ""),
    ("t.string_nul", VT.STRING, "a\0b"),
    ("t.uint64", VT.UINT64, 18446744073709551615), ("t.int64", VT.INT64, -9223372036854775808),
    ("t.float64", VT.FLOAT64, math.pi), ("t.float64_tiny", VT.FLOAT64, 1e-300),
]
ARRAYS = [
    ("a.uint8", VT.UINT8, [0, 1, 254, 255]), ("a.int8", VT.INT8, [-128, -1, 0, 127]),
    ("a.uint16", VT.UINT16, [0, 65535]), ("a.int16", VT.INT16, [-32768, 32767]),
    ("a.uint32", VT.UINT32, [0, 1, 4294967295]), ("a.int32", VT.INT32, [-2147483648, 0, 2147483647]),
    ("a.float32", VT.FLOAT32, [0.0, -1.25, 1e-6, 3.4028234663852886e38, 0.1]),
    ("a.bool", VT.BOOL, [True, False, True]), ("a.string", VT.STRING, ["", "a", "ñ", "<start_of_turn>", "▁the"]),
    ("a.uint64", VT.UINT64, [0, 18446744073709551615]), ("a.int64", VT.INT64, [-9223372036854775808, 9223372036854775807]),
    ("a.float64", VT.FLOAT64, [math.e, -0.0, 1e308]),
]
# gguf-py types the elements of inner arrays itself: int → INT32, str → STRING, float → FLOAT32.
NESTED = [
    ("n.int32", [[1, 2, 3], [4, 5]]),
    ("n.string", [["a", "b"], ["c"]]),
    ("n.float32", [[0.5], [1.5, 2.5]]),
    ("n.depth3", [[[1], [2, 3]], [[4]]]),
]


def nested_pairs(values):
    """Python lists → (sub_type, values) pairs as gguf-py will type them."""
    def typ(v):
        return VT.ARRAY if isinstance(v, list) else VT.STRING if isinstance(v, str) else \
            VT.FLOAT32 if isinstance(v, float) else VT.INT32
    out = []
    for inner in values:
        sub = typ(inner[0])
        out.append((sub, nested_pairs(inner) if sub == VT.ARRAY else inner))
    return out


def tensors():
    rng = np.random.default_rng(7)
    q8 = rng.integers(0, 256, size=(2, 34), dtype=np.uint8)       # 2 rows of one Q8_0 block
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)     # 1 row of one Q4_K block
    bf16 = rng.integers(0, 65536, size=(3,), dtype=np.uint16).view(np.uint8).reshape(1, 6)
    return [
        ("f32.2x3", rng.standard_normal((2, 3)).astype(np.float32), None, None),
        ("f16.5", rng.standard_normal(5).astype(np.float16), None, None),
        ("f64.1", np.array([math.pi], dtype=np.float64), None, None),
        ("i8.3", np.array([-1, 0, 127], dtype=np.int8), None, None),
        ("i16.2", np.array([-300, 300], dtype=np.int16), None, None),
        ("i32.2x2", np.array([[1, -2], [3, -4]], dtype=np.int32), None, None),
        ("i64.1", np.array([-5], dtype=np.int64), None, None),
        ("f32.2x1x3x2", rng.standard_normal((2, 1, 3, 2)).astype(np.float32), None, None),
        ("q8_0.2x32", q8, None, QT.Q8_0),
        ("q4_k.1x256", q4k, None, QT.Q4_K),
        ("bf16.1x3", bf16, None, QT.BF16),
    ]


def all_types():
    path = os.path.join(OUT, "all-types.gguf")
    w = gguf.GGUFWriter(path, "smoltest")
    w.add_custom_alignment(64)
    for key, t, v in SCALARS:
        w.add_key_value(key, v, t)  # add_key_value, not add_string: add_string drops ""
    for key, t, v in ARRAYS:
        w.add_key_value(key, v, VT.ARRAY, sub_type=t)
    for key, v in NESTED:
        w.add_key_value(key, v, VT.ARRAY, sub_type=VT.ARRAY)
    ts = tensors()
    for name, arr, raw_shape, raw_dtype in ts:
        w.add_tensor(name, arr, raw_shape=raw_shape, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    meta = [{"key": "general.architecture", **enc(VT.STRING, "smoltest")},
            {"key": "general.alignment", **enc(VT.UINT32, 64)}]
    meta += [{"key": k, **enc(t, v)} for k, t, v in SCALARS]
    meta += [{"key": k, **enc_array(t, v)} for k, t, v in ARRAYS]
    meta += [{"key": k, **enc_array(VT.ARRAY, nested_pairs(v))} for k, v in NESTED]

    # Tensor layout and bytes as gguf-py's reader sees them; flat metadata checked against it.
    r = gguf.GGUFReader(path)
    for m in meta:
        f = r.fields[m["key"]]
        assert f.types[0].name == m["type"], m["key"]
        if m["type"] == "ARRAY" and m["element_type"] not in ("ARRAY",):
            got = f.contents()
            assert len(got) == m["count"], m["key"]
    tensors_json = [{
        "name": t.name, "type": t.tensor_type.name, "ne": [int(x) for x in t.shape],
        "shape": [int(x) for x in reversed(t.shape)], "offset": int(t.data_offset), "bytes": int(t.n_bytes),
        "hex": bytes(np.asarray(t.data).tobytes()).hex(),
    } for t in r.tensors]
    with open(path, "rb") as f:
        data = f.read()
    doc = {"origin": "gguf.GGUFWriter (gguf 0.19.0) via tools/golden_gguf.py; tensors as gguf.GGUFReader reads them",
           "version": 3, "alignment": 64, "data_offset": int(r.data_offset), "file_bytes": len(data),
           "sha256": hashlib.sha256(data).hexdigest(), "metadata": meta, "tensors": tensors_json}
    with open(os.path.join(OUT, "all-types.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def v2():
    path = os.path.join(OUT, "v2.gguf")
    kvs = [
        P.kv("general.architecture", P.STRING, "llama"),
        P.kv("llama.block_count", P.UINT32, 2),
        P.kv("llama.rope.freq_base", P.FLOAT32, 10000.0),
        P.kv("tokenizer.ggml.tokens", P.ARRAY, ["<unk>", "<s>", "▁a"], P.STRING),
    ]
    f32 = struct.pack("<3f", 1.0, -2.0, 0.5)                  # F32 ne [3]
    q8 = struct.pack("<e", 0.25) + bytes(range(32))            # one Q8_0 block, ne [32]
    infos = [P.tensor_info("a", [3], 0, 0), P.tensor_info("b", [32], 8, 32)]
    data = f32 + b"\0" * P.pad(len(f32), 32) + q8 + b"\0" * P.pad(len(q8), 32)
    blob = P.gguf(kvs, infos, data, version=2)
    with open(path, "wb") as f:
        f.write(blob)
    r = gguf.GGUFReader(path)
    meta = []
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        if field.types[0] == VT.ARRAY:
            meta.append({"key": name, **enc_array(field.types[-1], field.contents())})
        else:
            meta.append({"key": name, **enc(field.types[0], field.contents())})
    doc = {"origin": "built byte by byte by tools/golden_gguf.py (tools/gguf_pack.py); values as gguf.GGUFReader reads them",
           "version": int(r.fields["GGUF.version"].contents()), "alignment": 32, "data_offset": int(r.data_offset),
           "file_bytes": len(blob), "metadata": meta,
           "tensors": [{"name": t.name, "type": t.tensor_type.name, "ne": [int(x) for x in t.shape],
                        "shape": [int(x) for x in reversed(t.shape)], "offset": int(t.data_offset),
                        "bytes": int(t.n_bytes), "hex": bytes(np.asarray(t.data).tobytes()).hex()} for t in r.tensors]}
    assert doc["version"] == 2
    with open(os.path.join(OUT, "v2.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def quant_sizes():
    rows = [{"id": int(t), "name": t.name, "block_elements": b, "block_bytes": s}
            for t, (b, s) in sorted(gguf.constants.GGML_QUANT_SIZES.items(), key=lambda kv: int(kv[0]))]
    with open(os.path.join(OUT, "ggml-quant-sizes.json"), "w") as f:
        json.dump({"origin": "gguf.constants.GGML_QUANT_SIZES (gguf 0.19.0)", "types": rows}, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache", "models", "gemma-3-270m-q4_k_m.gguf")
    quant_sizes()
    all_types()
    v2()
    if os.path.exists(model):
        with open(os.path.join(OUT, "gemma3-270m-layout.json"), "w") as f:
            json.dump(layout(model), f, indent=1, ensure_ascii=False)
            f.write("\n")
    else:
        print(f"note: {model} not found; gemma3-270m-layout.json not regenerated (run tools/setup)")


if __name__ == "__main__":
    main()
