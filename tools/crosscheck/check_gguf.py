#!/usr/bin/env python3
"""gguf-py reads what smolconv's GGUF writer writes.

The writer has no CLI command of its own, so this runs the Swift test
GGUFWriterTests/writesFilesForCrosscheck (already built by `swift build --build-tests`) with
SMOLCONV_GGUF_CROSSCHECK_DIR set: it rewrites Tests/Fixtures/gguf/all-types.gguf with its metadata
and tensors in reverse order and alignment 256. Then gguf.GGUFReader must see the same metadata
values (Tests/Fixtures/gguf/all-types.json, flat arrays only: gguf-py flattens nested ones), the
same tensors with the same bytes, and offsets that follow the 256-byte alignment.
"""
import json, os, struct, subprocess, sys, tempfile

import numpy as np
import gguf

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, SMOLCONV_GGUF_CROSSCHECK_DIR=tmp)
    # The build configuration tools/test built (SMOLCONV_SWIFT_TEST_FLAGS overrides).
    flags = os.environ.get("SMOLCONV_SWIFT_TEST_FLAGS", "-c release -Xswiftc -enable-testing").split()
    r = subprocess.run(["swift", "test", *flags, "--skip-build", "--filter", "GGUFWriterTests/writesFilesForCrosscheck"],
                       cwd=root, env=env, capture_output=True, text=True)
    path = os.path.join(tmp, "smolconv-all-types.gguf")
    if r.returncode != 0 or not os.path.exists(path):
        print(r.stdout[-3000:], r.stderr[-3000:])
        sys.exit("the Swift writer test failed or wrote nothing")

    ours = gguf.GGUFReader(path)
    theirs = gguf.GGUFReader(os.path.join(root, "Tests", "Fixtures", "gguf", "all-types.gguf"))
    golden = json.load(open(os.path.join(root, "Tests", "Fixtures", "gguf", "all-types.json")))
    errors = []

    assert ours.alignment == 256, ours.alignment
    keys = [k for k in ours.fields if not k.startswith("GGUF.")]
    expected_keys = ["general.alignment"] + [m["key"] for m in reversed(golden["metadata"]) if m["key"] != "general.alignment"]
    if keys != expected_keys:
        errors.append(f"key order {keys[:5]}…")

    def scalar(field_type, v):
        if field_type == gguf.GGUFValueType.FLOAT32:
            return "%08x" % struct.unpack("<I", struct.pack("<f", v))[0]
        if field_type == gguf.GGUFValueType.FLOAT64:
            return "%016x" % struct.unpack("<Q", struct.pack("<d", v))[0]
        if field_type in (gguf.GGUFValueType.STRING, gguf.GGUFValueType.BOOL):
            return v
        return str(int(v))

    def golden_scalar(m):
        return m["bits"] if "bits" in m else m["value"]

    for m in golden["metadata"]:
        key = m["key"]
        if key == "general.alignment":
            continue
        f = ours.fields.get(key)
        if f is None:
            errors.append(f"{key}: missing")
            continue
        if f.types[0].name != m["type"]:
            errors.append(f"{key}: type {f.types[0].name}")
            continue
        if m["type"] == "ARRAY":
            if m["element_type"] == "ARRAY":
                # gguf-py flattens nested arrays: compare with its reading of the gguf-py-written file.
                if f.types != theirs.fields[key].types or f.contents() != theirs.fields[key].contents():
                    errors.append(f"{key}: nested array differs")
                continue
            got = [scalar(f.types[-1], v) for v in f.contents()]
            want = [golden_scalar(e) for e in m["values"]]
            if got != want:
                errors.append(f"{key}: {got} != {want}")
        elif scalar(f.types[0], f.contents()) != golden_scalar(m):
            errors.append(f"{key}: {f.contents()!r} != {golden_scalar(m)!r}")

    want_t = {t["name"]: t for t in golden["tensors"]}
    got_names = [t.name for t in ours.tensors]
    if got_names != list(reversed(list(want_t))):
        errors.append(f"tensor order {got_names}")
    for t in ours.tensors:
        w = want_t[t.name]
        if t.tensor_type.name != w["type"] or [int(x) for x in t.shape] != w["ne"]:
            errors.append(f"{t.name}: {t.tensor_type.name} {t.shape}")
        if (t.data_offset - ours.data_offset) % 256 != 0:
            errors.append(f"{t.name}: offset {t.data_offset} not aligned")
        if bytes(np.asarray(t.data).tobytes()).hex() != w["hex"]:
            errors.append(f"{t.name}: bytes differ")

    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"gguf-py read {len(keys)} keys and {len(ours.tensors)} tensors as written")
