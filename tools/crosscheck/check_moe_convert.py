#!/usr/bin/env python3
"""`smolconv convert` of the MoE fixtures to GGUF agrees with llama.cpp's converter, read by gguf-py.

For each MoE fixture and --outtype f32 / f16 / bf16, the GGUF smolconv writes is opened with gguf-py
0.19.0's GGUFReader and compared with:
  - metadata: every key, value type and value that convert_hf_to_gguf.py's set_gguf_parameters
    writes (tools/golden_moe_convert.py replays those calls on gguf-py's GGUFWriter), in its order;
  - tensors: names and shapes of the numpy re-implementation of the converter's expert stacking,
    splitting, transposing and Q/K permutation (tools/golden_moe_gguf.py `expected`); types by
    prepare_tensors' rule (F32 for 1-D, norms, routers, non-".weight"; the outtype otherwise);
    values: equal to numpy's, exactly for f32 (and for BF16 inputs kept BF16), and after numpy's own
    float16 / bfloat16 rounding (round to nearest even) for f16 / bf16;
  - gemma4's generated rope_freqs.weight.
Then `smolconv convert OUT.gguf back/` (config.json beside the GGUF) must give back, for f32, the
original checkpoint's tensors bit for bit.
"""
import json, os, shutil, subprocess, sys, tempfile

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "tools"))
import golden_moe_convert  # noqa: E402
import golden_moe_gguf  # noqa: E402
from gguf import GGUFReader, GGUFValueType  # noqa: E402

SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
FIX = os.path.join(root, "Tests", "Fixtures", "hf")
FIXTURES = ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss", "qwen3_moe_bf16_sharded"]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def run(*args):
    r = subprocess.run([SMOLCONV, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv {' '.join(args)} failed:\n{r.stderr}")
    return r


def field_value(f):
    t = GGUFValueType(f.types[0])
    if t == GGUFValueType.STRING:
        return t.name, bytes(f.parts[f.data[0]]).decode()
    if t == GGUFValueType.ARRAY:
        sub = GGUFValueType(f.types[1])
        return t.name, [sub.name, [f.parts[i].tolist()[0] for i in f.data]]
    v = f.parts[f.data[0]].tolist()[0]
    return t.name, float(v) if t in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64) else v


def bf16_round(a32):
    """float32 → bfloat16 bits, round to nearest even (torch's and smolconv's rule; no NaNs here)."""
    u = a32.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def main():
    tmp = tempfile.mkdtemp(prefix="check_moe_convert")
    try:
        for fixture in FIXTURES:
            mt, arch, _, expected = golden_moe_gguf.expected(fixture)
            golden = json.load(open(os.path.join(root, "Tests", "Fixtures", "gguf-convert", f"moe-{fixture}.json")))
            for outtype in ["f32", "f16", "bf16"]:
                out = os.path.join(tmp, f"{fixture}-{outtype}.gguf")
                run("convert", os.path.join(FIX, fixture), out, "--outtype", outtype)
                r = GGUFReader(out)
                got_meta = [[k, *field_value(f)] for k, f in r.fields.items() if not k.startswith("GGUF.")]
                want_meta = [[k, t, golden["file_type"][outtype] if k == "general.file_type" else v]
                             for k, t, v in golden["metadata"]]
                # float32 values compare as float32
                def norm(m):
                    return [[k, t, float(np.float32(v)) if t == "FLOAT32" else v] for k, t, v in m]
                if norm(got_meta) != norm(want_meta):
                    fail(f"{fixture} {outtype}: metadata\n  got  {got_meta}\n  want {want_meta}")
                tensors = {t.name: t for t in r.tensors}
                want_names = set(expected) | set(golden["generated"])
                if set(tensors) != want_names:
                    fail(f"{fixture} {outtype}: names differ: extra {sorted(set(tensors) - want_names)}, missing {sorted(want_names - set(tensors))}")
                    continue
                for name, g in golden["generated"].items():
                    t = tensors[name]
                    if t.tensor_type.name != g["type"] or not np.array_equal(np.asarray(t.data), np.array(g["values"], dtype=np.float32)):
                        fail(f"{fixture} {outtype}: generated {name} differs")
                for name, (arr, dt) in expected.items():
                    t = tensors[name]
                    shape = list(reversed([int(x) for x in t.shape]))
                    if shape != list(arr.shape):
                        fail(f"{fixture} {outtype}: {name} shape {shape} != {list(arr.shape)}")
                        continue
                    want_type = golden_moe_convert.tensor_type(name, list(arr.shape), outtype.upper())
                    if outtype == "f32":
                        want_type = "F32"
                    if t.tensor_type.name != want_type:
                        fail(f"{fixture} {outtype}: {name} is {t.tensor_type.name}, the converter writes {want_type}")
                        continue
                    src32 = bf16_to_f32(arr) if dt == "BF16" else arr.astype(np.float32)
                    raw = np.asarray(t.data).tobytes()  # gguf-py gives BF16 as bytes, F16/F32 as floats
                    if want_type == "F32":
                        ok = np.array_equal(np.frombuffer(raw, np.uint32).reshape(arr.shape), src32.view(np.uint32))
                    elif want_type == "F16":
                        ok = np.array_equal(np.frombuffer(raw, np.uint16).reshape(arr.shape), src32.astype(np.float16).view(np.uint16))
                    else:
                        ok = np.array_equal(np.frombuffer(raw, np.uint16).reshape(arr.shape), arr if dt == "BF16" else bf16_round(src32))
                    if not ok:
                        fail(f"{fixture} {outtype}: {name} values differ from numpy's")
            # Back to Hugging Face through the same rewrite: the F32 GGUF gives the checkpoint back.
            folder = os.path.join(tmp, f"{fixture}-dir")
            os.makedirs(folder)
            shutil.copy(os.path.join(tmp, f"{fixture}-f32.gguf"), os.path.join(folder, "m.gguf"))
            shutil.copy(os.path.join(FIX, fixture, "config.json"), os.path.join(folder, "config.json"))
            back = os.path.join(tmp, f"{fixture}-back")
            run("convert", os.path.join(folder, "m.gguf"), back, "--outtype", "f32")
            orig = golden_moe_gguf.load(os.path.join(FIX, fixture))
            got = golden_moe_gguf.load(back)
            if set(orig) != set(got):
                fail(f"{fixture}: back to HF, names differ: {sorted(set(orig) ^ set(got))[:6]}")
                continue
            for n, (a, dt) in orig.items():
                b, _ = got[n]
                a32 = bf16_to_f32(a) if dt == "BF16" else a
                if a.shape != b.shape or not np.array_equal(a32.view(np.uint32), b.view(np.uint32)):
                    fail(f"{fixture}: back to HF, {n} differs")
                    break
            print(f"{fixture}: ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("all MoE conversions agree with llama.cpp's converter (numpy + gguf-py)")


if __name__ == "__main__":
    main()
