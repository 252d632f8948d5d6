#!/usr/bin/env python3
"""Writes the malformed safetensors corpus into Tests/Fixtures/malformed/safetensors/.

Each case is a small file (or, for sharded checkpoints, a folder) that breaks one rule of the format,
plus cases.json (path, expected error substring, the file the error must name, Python's verdict)
and README.md listing them. For every single-file case the script also opens the file with Python
`safetensors` (the crate smolconv follows) and records whether it is rejected too, so the corpus
documents where smolconv is deliberately stricter. smolconv must throw an error (never crash)
whose message contains the substring and the file.

Run from anywhere: python3 tools/make_malformed_safetensors.py
"""
import json
import os
import shutil
import struct

import numpy as np
import safetensors
from safetensors.numpy import save

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                     "Tests", "Fixtures", "malformed", "safetensors"))


def st(header, data=b"", n=None, pad=True):
    """A file with `header` (a dict → compact JSON, or raw str/bytes) and `data`."""
    if isinstance(header, dict):
        h = json.dumps(header, separators=(",", ":")).encode()
    elif isinstance(header, str):
        h = header.encode()
    else:
        h = header
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


VALID = save({"a": np.arange(4, dtype=np.float32), "b": np.arange(6, dtype=np.int16).reshape(2, 3)},
             metadata={"format": "pt"})
(VALID_N,) = struct.unpack("<Q", VALID[:8])

# (file name, bytes, expected substring, explanation)
SINGLE = [
    ("empty.safetensors", b"", "shorter than the 8-byte header length", "0-byte file"),
    ("too_short.safetensors", b"\x10\x00\x00\x00\x00", "shorter than the 8-byte header length",
     "5 bytes: not even the header length"),
    ("header_len_past_eof.safetensors", st({"__metadata__": {}}, n=1000), "extends past the end of the file",
     "header length 1000 in a 32-byte file"),
    ("header_len_absurd.safetensors", struct.pack("<Q", 1 << 63) + b"{}      ", "exceeds the 100000000-byte limit",
     "header length 2^63"),
    ("header_len_above_limit.safetensors", struct.pack("<Q", 100_000_001) + b"{}      ",
     "exceeds the 100000000-byte limit", "header length one above the crate's 100 MB limit"),
    ("truncated_header.safetensors", VALID[:8 + VALID_N // 2], "extends past the end of the file",
     "a valid file cut in the middle of its header"),
    ("truncated_data.safetensors", VALID[:-5], "lie outside the data section",
     "a valid file missing its last 5 data bytes"),
    ("offsets_out_of_range.safetensors", st({"a": t("F32", [2], 0, 8), "b": t("F32", [((1 << 40) - 8) // 4], 8, 1 << 40)}, bytes(16)),
     "lie outside the data section", "b claims bytes [8, 2^40) (shape agrees) of a 16-byte data section"),
    ("overlapping_offsets.safetensors", st({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)),
     "overlap the previous tensor 'a'", "b starts inside a"),
    ("gap_between_tensors.safetensors", st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
     "gap in the data section", "4 unused bytes between a and b"),
    ("begin_after_end.safetensors", st({"a": t("F32", [1], 4, 0)}, bytes(4)), "begin 4 is after end 0",
     "data_offsets [4, 0]"),
    ("size_mismatch.safetensors", st({"a": t("F32", [2, 2], 0, 12)}, bytes(12)),
     "needs 16 bytes but data_offsets [0, 12] span 12", "shape [2, 2] F32 in 12 bytes"),
    ("trailing_bytes.safetensors", st({"a": t("F32", [1], 0, 4)}, bytes(12)), "not covered",
     "8 data bytes after the last tensor (the crate: file not fully covered)"),
    ("unknown_dtype.safetensors", st({"a": t("F17", [1], 0, 2)}, bytes(2)), "unknown dtype 'F17'",
     "dtype F17"),
    ("unsupported_dtype.safetensors", st({"a": t("F8_E8M0", [1], 0, 1)}, bytes(1)),
     "dtype 'F8_E8M0' is valid safetensors but smolconv does not support it",
     "a dtype the crate knows (E8M0 scales) that smolconv cannot represent"),
    ("dtype_not_string.safetensors", st({"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
     "'dtype' must be a string", "dtype 7"),
    ("negative_dim.safetensors", st({"a": t("F32", [-1, 4], 0, 16)}, bytes(16)), "dimension -1 in 'shape' is negative",
     "shape [-1, 4]"),
    ("dim_not_integer.safetensors", st({"a": t("F32", [2.5], 0, 10)}, bytes(10)), "is not an integer",
     "shape [2.5]"),
    ("dim_too_large.safetensors", st('{"a":{"dtype":"U8","shape":[100000000000000000000000],"data_offsets":[0,1]}}', bytes(1)),
     "is too large", "a dimension of 10^23 (beyond 64 bits)"),
    ("dims_overflow.safetensors", st({"a": t("F32", [1 << 62, 1 << 62], 0, 0)}), "overflows",
     "shape [2^62, 2^62]: the element count overflows 64 bits"),
    ("shape_not_array.safetensors", st({"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, bytes(8)),
     "'shape' must be an array of non-negative integers", "shape \"2\""),
    ("offsets_three_elements.safetensors", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, bytes(8)),
     "'data_offsets' must be an array of two", "data_offsets [0, 4, 8]"),
    ("offsets_negative.safetensors", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, bytes(4)),
     "'data_offsets' must be two non-negative integers", "data_offsets [-4, 0]"),
    ("missing_dtype.safetensors", st({"a": {"shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "missing 'dtype'",
     "entry without dtype"),
    ("missing_shape.safetensors", st({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, bytes(4)), "missing 'shape'",
     "entry without shape"),
    ("missing_data_offsets.safetensors", st({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "missing 'data_offsets'",
     "entry without data_offsets"),
    ("entry_not_object.safetensors", st({"a": [1, 2, 3]}), "entry must be an object", "tensor entry is an array"),
    ("duplicate_names.safetensors",
     st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
     "duplicate tensor name 'a'", "the same name twice (serde keeps one silently; smolconv refuses)"),
    ("non_utf8_header.safetensors", st(b'{"a\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
     "header is not valid UTF-8", "bytes FF FE inside a tensor name"),
    ("json_not_object.safetensors", st("[]"), "header is not a JSON object", "header is []"),
    ("invalid_json.safetensors", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},}', bytes(4)),
     "header is not valid JSON", "trailing comma"),
    ("lone_surrogate.safetensors", st('{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)),
     "lone UTF-16 surrogate", "a tensor name with an unpaired \\ud800 escape"),
    ("deep_nesting.safetensors", st('{"__metadata__":' + "[" * 5000 + "]" * 5000 + "}"),
     "nesting deeper than 128 levels", "5000 nested arrays (a stack-overflow attempt)"),
    ("metadata_not_strings.safetensors", st({"__metadata__": {"format": 1}}), "'__metadata__' values must be strings",
     "__metadata__ {\"format\": 1}"),
    ("metadata_not_object.safetensors", st({"__metadata__": "pt"}), "'__metadata__' must be an object",
     "__metadata__ \"pt\""),
]


def python_verdict(path):
    try:
        with safetensors.safe_open(path, framework="np") as f:
            for k in f.keys():
                pass
        return "accepts"
    except Exception as e:  # noqa: BLE001 - any rejection counts
        return "rejects: " + str(e).splitlines()[0][:160]


def shard_bytes(tensors):
    return save({k: np.full(v, 1, dtype=np.float32) for k, v in tensors.items()}, metadata={"format": "pt"})


def index(weight_map, total=0):
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n"


S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
IDX = "model.safetensors.index.json"

# (folder, {file: bytes or str}, expected substring, file the error names, explanation)
SHARDED = [
    ("sharded_missing_shard", {IDX: index({"a": S1, "b": S2}), S1: shard_bytes({"a": 2})},
     f"shard file '{S2}' is listed in the index but missing", IDX, "the index names a shard that is not there"),
    ("sharded_tensor_not_in_shard", {IDX: index({"a": S1, "b": S2, "c": S2}), S1: shard_bytes({"a": 2}),
                                     S2: shard_bytes({"b": 2})},
     "the shard does not contain it", S2, "the index puts c in shard 2, which lacks it"),
    ("sharded_unlisted_tensor", {IDX: index({"a": S1, "b": S2}), S1: shard_bytes({"a": 2}),
                                 S2: shard_bytes({"b": 2, "extra": 1})},
     "not listed in the index's weight_map", S2, "shard 2 holds a tensor the index does not list"),
    ("sharded_tensor_in_two_shards", {IDX: index({"a": S1, "b": S2}), S1: shard_bytes({"a": 2, "b": 2}),
                                      S2: shard_bytes({"b": 2})},
     "tensor is in two shards", S2, "b is in both shards"),
    ("sharded_wrong_shard", {IDX: index({"a": S1, "b": S2, "c": S2}), S1: shard_bytes({"a": 2, "b": 2}),
                             S2: shard_bytes({"c": 2})},
     f"tensor is in shard {S1} but the index's weight_map says {S2}", S1, "the index puts b in the wrong shard"),
    ("sharded_index_invalid_json", {IDX: '{"weight_map": {"a": "' + S1 + '",}}', S1: shard_bytes({"a": 2})},
     "invalid JSON", IDX, "trailing comma in the index"),
    ("sharded_index_duplicate_key", {IDX: '{"weight_map": {"a": "' + S1 + '", "a": "' + S1 + '"}}', S1: shard_bytes({"a": 2})},
     "duplicate key 'a'", IDX, "a tensor listed twice in weight_map"),
    ("sharded_weight_map_missing", {IDX: '{"metadata": {}}', S1: shard_bytes({"a": 2})},
     "missing 'weight_map'", IDX, "index without weight_map"),
    ("sharded_path_traversal", {IDX: index({"a": "../model-00001-of-00001.safetensors"})},
     "is not a plain file name", IDX, "a shard name that leaves the folder"),
    ("sharded_bad_shard", {IDX: index({"a": S1, "b": S2}), S1: shard_bytes({"a": 2}),
                           S2: shard_bytes({"b": 2})[:-3]},
     "lie outside the data section", S2, "shard 2 is truncated"),
]


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    cases = []
    for name, data, expect, why in SINGLE:
        path = os.path.join(ROOT, name)
        with open(path, "wb") as fh:
            fh.write(data)
        cases.append({"path": name, "expect": expect, "names_file": name, "what": why,
                      "python_safetensors": python_verdict(path)})
    for folder, files, expect, names, why in SHARDED:
        os.makedirs(os.path.join(ROOT, folder))
        for fname, content in files.items():
            with open(os.path.join(ROOT, folder, fname), "wb") as fh:
                fh.write(content.encode() if isinstance(content, str) else content)
        cases.append({"path": folder, "expect": expect, "names_file": f"{folder}/{names}", "what": why,
                      "python_safetensors": "n/a (sharding is transformers' convention)"})
    with open(os.path.join(ROOT, "cases.json"), "w") as fh:
        json.dump({"generator": "tools/make_malformed_safetensors.py", "safetensors": safetensors.__version__,
                   "cases": cases}, fh, indent=1)
        fh.write("\n")
    lines = [
        "# Malformed safetensors corpus",
        "",
        "Generated by `tools/make_malformed_safetensors.py` (do not edit by hand; rerun it). Each file or folder",
        "breaks one rule (see `formats/safetensors.md`). Opening it (`SafetensorsFile` / `SafetensorsCheckpoint`, or",
        "the CLI) must fail with an error whose message contains **expected** and names **file**, never crash.",
        "`cases.json` holds the same table for tests. The last column is what Python `safetensors`",
        f"{safetensors.__version__} (`safe_open`) does with the file.",
        "",
        "| path | what | expected substring | file named | Python safetensors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        lines.append(f"| `{c['path']}` | {c['what']} | `{c['expect']}` | `{c['names_file']}` | "
                     f"{c['python_safetensors'].replace('|', '/')} |")
    with open(os.path.join(ROOT, "README.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"{len(cases)} cases in {ROOT}")
    for c in cases:
        if c["python_safetensors"] == "accepts":
            print("  python accepts:", c["path"])


if __name__ == "__main__":
    main()
