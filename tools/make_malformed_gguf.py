#!/usr/bin/env python3
"""Malformed GGUF files for Tests/SmolFormatsTests/GGUFMalformedTests.swift.

    python3 tools/make_malformed_gguf.py

Writes Tests/Fixtures/malformed/gguf/*.gguf, cases.json (file → expected error substring) and
README.md (the same as a table). Each file is a small valid GGUF (built byte by byte by
tools/gguf_pack.py from the spec) with one thing broken. The reader must throw a SmolError that
names the file and contains the substring, and must not crash or allocate by a lying count.
"""
import json, os, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_pack import *  # noqa: E402,F403

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "malformed", "gguf")
HUGE = 2**64 - 1
F32, Q8_0 = 0, 8

KVS = [kv("general.architecture", STRING, "test"), kv("test.count", UINT32, 7)]
DATA = struct.pack("<4f", 1, 2, 3, 4) + b"\0" * 16 + struct.pack("<8f", *range(8))   # a at 0, b at 32


def infos(a=("a", [4], F32, 0), b=("b", [4, 2], F32, 32)):
    return [tensor_info(*a), tensor_info(*b)]


def base(**kw):
    return gguf(kw.pop("kvs", KVS), kw.pop("infos", infos()), kw.pop("data", DATA), **kw)


def nested(depth):
    """An array of arrays `depth` levels deep, innermost one UINT8 element."""
    body = u32(UINT8) + u64(1) + b"\x07"
    for _ in range(depth - 1):
        body = u32(ARRAY) + u64(1) + body
    return body


def raw_kv(key_bytes, type_id, payload):
    return u64(len(key_bytes)) + key_bytes + u32(type_id) + payload


VALID = base()
CASES = [
    ("bad-magic", "magic is not GGUF", base(magic=b"GGUX"), "bad magic"),
    ("empty", "empty file", b"", "too short"),
    ("version-1", "version 1 (32-bit counts)", base(version=1), "version 1"),
    ("version-99", "version 99", base(version=99), "unsupported GGUF version 99"),
    ("version-0", "version 0", base(version=0), "unsupported GGUF version 0"),
    ("big-endian", "version 3 stored big-endian", b"GGUF" + struct.pack(">I", 3) + VALID[8:], "big-endian"),
    ("truncated-header", "ends inside the tensor count", VALID[:10], "truncated"),
    # Counts of 0 tensors and 1 key, so that the count checks pass and the string read is what fails.
    ("truncated-in-string", "ends inside the first key", b"GGUF" + u32(3) + u64(0) + u64(1) + KVS[0][:8 + 13],
     "string length 20 exceeds"),
    ("truncated-in-value", "ends inside a UINT32 value", VALID[:24 + len(KVS[0]) + 8 + 10 + 4 + 2], "truncated"),
    ("string-length-huge", "key length 2^64-1", base(kvs=[u64(HUGE) + b"general.architecture"] + KVS[1:]),
     "string length 18446744073709551615"),
    ("array-count-huge", "string array claiming 2^64-1 elements",
     base(kvs=KVS + [raw_kv(b"tokenizer.ggml.tokens", ARRAY, u32(STRING) + u64(HUGE) + string("a"))]),
     "array length 18446744073709551615"),
    ("array-count-too-big", "UINT32 array claiming 1,000,000 elements in a small file",
     base(kvs=KVS + [raw_kv(b"x", ARRAY, u32(UINT32) + u64(1_000_000) + u32(1))]), "array length 1000000"),
    ("tensor-count-huge", "tensor count 2^64-1", base(n_tensors=HUGE), "tensor count 18446744073709551615"),
    ("kv-count-huge", "metadata count 2^64-1", base(n_kv=HUGE), "metadata key-value count 18446744073709551615"),
    ("n-dims-5", "a tensor with 5 dimensions", base(infos=infos(a=("a", [4, 1, 1, 1, 1], F32, 0))), "n_dims 5"),
    ("n-dims-0", "a tensor with 0 dimensions", base(infos=infos(a=("a", [], F32, 0))), "n_dims 0"),
    ("zero-dim", "a dimension of 0", base(infos=infos(b=("b", [4, 0], F32, 32))), "ne[1] = 0 is not a positive size"),
    ("negative-dim", "a dimension of 2^63 (negative as int64)", base(infos=infos(b=("b", [4, 2**63], F32, 32))),
     "ne[1] = 9223372036854775808 is not a positive size"),
    ("dims-overflow", "dimensions whose product overflows 64 bits",
     base(infos=infos(b=("b", [2**32, 2**32, 2**32], F32, 32))), "overflow"),
    ("bytes-overflow", "element count fits, byte size does not",
     base(infos=infos(b=("b", [2**31, 2**31], F32, 32))), "byte size does not fit"),
    ("alignment-0", "general.alignment = 0", base(kvs=KVS + [kv("general.alignment", UINT32, 0)]), "alignment 0 is not"),
    ("alignment-3", "general.alignment = 3", base(kvs=KVS + [kv("general.alignment", UINT32, 3)]), "alignment 3 is not"),
    ("alignment-wrong-type", "general.alignment stored as UINT64",
     base(kvs=KVS + [kv("general.alignment", UINT64, 32)]), "must be UINT32, found UINT64"),
    ("data-beyond-file", "tensor offset past the end", base(infos=infos(b=("b", [4, 2], F32, 1 << 20))),
     "extends beyond the end of the file"),
    ("offset-huge", "tensor offset 2^64-32", base(infos=infos(b=("b", [4, 2], F32, 2**64 - 32))), "beyond any file"),
    ("unaligned-offset", "tensor offset 16 with alignment 32", base(infos=infos(b=("b", [4, 2], F32, 16))),
     "not a multiple of the alignment 32"),
    ("overlapping-tensors", "two tensors at offset 0", base(infos=infos(b=("b", [4, 2], F32, 0))), "overlaps"),
    ("duplicate-tensor-names", "two tensors named a", base(infos=infos(b=("a", [4, 2], F32, 32))), "duplicate tensor name"),
    ("duplicate-keys", "test.count twice", base(kvs=KVS + [kv("test.count", UINT32, 8)]), "duplicate metadata key"),
    ("unknown-ggml-type", "ggml type 4 (the removed Q4_2)", base(infos=infos(b=("b", [32, 2], 4, 32))),
     "unknown ggml type id 4"),
    ("unknown-ggml-type-big", "ggml type 1000", base(infos=infos(b=("b", [4, 2], 1000, 32))), "unknown ggml type id 1000"),
    ("unknown-value-type", "value type 13", base(kvs=KVS + [raw_kv(b"x", 13, u32(0))]), "unknown value type 13"),
    ("unknown-array-element-type", "array of value type 99",
     base(kvs=KVS + [raw_kv(b"x", ARRAY, u32(99) + u64(1) + u32(0))]), "unknown value type 99"),
    ("non-utf8-key", "a key with byte 0xff", base(kvs=KVS + [raw_kv(b"bad\xff", UINT8, b"\x01")]), "not valid UTF-8"),
    ("non-utf8-string", "a STRING value with an overlong encoding",
     base(kvs=KVS + [raw_kv(b"x", STRING, u64(2) + b"\xc0\xaf")]), "not valid UTF-8"),
    ("non-utf8-tensor-name", "a tensor name with a lone surrogate",
     base(infos=[tensor_info(b"\xed\xa0\x80", [4], F32, 0), tensor_info("b", [4, 2], F32, 32)]), "not valid UTF-8"),
    ("truncated-tensor-data", "the last tensor cut short by 8 bytes", VALID[:-8], "extends beyond the end of the file"),
    ("row-not-multiple-of-block", "a Q8_0 row of 33 elements", base(infos=infos(b=("b", [33], Q8_0, 32))),
     "not a multiple of the Q8_0 block size 32"),
    ("array-nesting-too-deep", "arrays nested 9 deep", base(kvs=KVS + [raw_kv(b"x", ARRAY, nested(9))]), "nested deeper"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".gguf"):
            os.remove(os.path.join(OUT, f))
    cases = []
    for name, what, blob, expect in CASES:
        with open(os.path.join(OUT, name + ".gguf"), "wb") as f:
            f.write(blob)
        cases.append({"file": name + ".gguf", "broken": what, "error": expect})
    with open(os.path.join(OUT, "valid.gguf"), "wb") as f:
        f.write(VALID)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    lines = ["# Malformed GGUF files", "",
             "Made by `tools/make_malformed_gguf.py` (bytes packed from the spec by `tools/gguf_pack.py`).",
             "`valid.gguf` is the well-formed file the others break; reading each broken file must throw a",
             "`SmolError` naming the file and containing the expected text (also in `cases.json`).", "",
             "| file | what is broken | expected error contains |", "| --- | --- | --- |"]
    lines += [f"| `{c['file']}` | {c['broken']} | `{c['error']}` |" for c in cases]
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(cases)} malformed files in {OUT}")


if __name__ == "__main__":
    main()
