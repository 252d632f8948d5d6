#!/usr/bin/env python3
"""`smolconv quantize --format mlx` agrees with mlx-lm (needs `pip install mlx[cpu] mlx-lm`; skipped,
saying so, when they are missing).

For the llama fixture in F32 and in BF16 (made with smolconv convert --outtype bf16), and for
bits 2, 3, 4, 5, 6, 8 with group sizes 32, 64, 128 (a spread of pairs):
  1. mlx-lm quantizes the same folder with its own functions (load_model, quantize_model,
     save_model, save_config — mlx_lm.convert without the tokenizer step); every tensor of
     smolconv's folder equals mlx-lm's (names, dtypes, shapes, bytes); config.json and
     model.safetensors.index.json are equal byte for byte.
  2. mlx-lm loads smolconv's folder (load_model) and its logits for the fixture's input_ids agree
     with `smolconv logits` on the same folder (1e-4 of the largest logit: the same Float32
     weights, different kernels).
"""
import importlib.abc, importlib.machinery, json, os, shutil, subprocess, sys, tempfile, types

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
SRC = os.path.join(root, "Tests", "Fixtures", "hf", "llama")

try:
    import transformers  # noqa: F401
except ImportError:
    # mlx-lm imports transformers for its tokenizer helpers only; none are used here.
    class _Stub(types.ModuleType):
        __path__ = []
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__getattr__": lambda self, n: None,
                                   "register": classmethod(lambda cls, *a, **k: None)})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "transformers" or name.startswith("transformers."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None
        def create_module(self, spec):
            return _Stub(spec.name)
        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Finder())

try:
    import mlx.core as mx
    from mlx_lm import utils
except ImportError as e:
    print(f"skipped: mlx / mlx-lm not installed ({e})")
    sys.exit(0)
import numpy as np
from pathlib import Path
from safetensors.numpy import load_file

failures = []


def run(*args):
    r = subprocess.run([SMOLCONV, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv {' '.join(args)} failed: {r.stderr.strip()}")


def mlx_lm_quantize(src, dst, bits, gs):
    model, config = utils.load_model(Path(src), lazy=True)
    model, config = utils.quantize_model(model, config, gs, bits)
    utils.save_model(Path(dst), model)
    utils.save_config(config, Path(dst) / "config.json")


def tensors(path):
    # mlx reads every dtype (numpy has no bfloat16): compare raw bytes through uint views.
    out = {}
    for k, v in mx.load(os.path.join(path, "model.safetensors")).items():
        view = v.view(mx.uint16) if v.dtype in (mx.bfloat16, mx.float16) else v
        out[k] = (str(v.dtype), tuple(v.shape), np.array(view).tobytes())
    return out


ids = load_file(os.path.join(SRC, "reference.safetensors"))["input_ids"]
with tempfile.TemporaryDirectory() as tmp:
    bf16 = os.path.join(tmp, "llama-bf16")
    run("convert", SRC, bf16, "--outtype", "bf16")
    cases = [(SRC, 4, 64), (SRC, 2, 32), (SRC, 3, 64), (SRC, 5, 128), (SRC, 6, 64), (SRC, 8, 128),
             (bf16, 4, 64), (bf16, 3, 32), (bf16, 8, 64)]
    for src, bits, gs in cases:
        label = f"{os.path.basename(src)} {bits}-bit g{gs}"
        ours, theirs = os.path.join(tmp, f"ours-{len(failures)}-{bits}-{gs}-{os.path.basename(src)}"), os.path.join(tmp, f"theirs-{bits}-{gs}-{os.path.basename(src)}")
        run("quantize", src, ours, "--format", "mlx", "--bits", str(bits), "--group-size", str(gs))
        mlx_lm_quantize(src, theirs, bits, gs)
        before = len(failures)
        a, b = tensors(ours), tensors(theirs)
        if set(a) != set(b):
            failures.append(f"{label}: tensor names differ: {sorted(set(a) ^ set(b))[:6]}")
        for k in sorted(set(a) & set(b)):
            if a[k] != b[k]:
                failures.append(f"{label}: {k}: {a[k][:2]} vs {b[k][:2]}{'' if a[k][:2] != b[k][:2] else ' (bytes differ)'}")
        for f in ["config.json", "model.safetensors.index.json"]:
            if open(os.path.join(ours, f), "rb").read() != open(os.path.join(theirs, f), "rb").read():
                failures.append(f"{label}: {f} differs")
        # mlx-lm reads smolconv's folder; its logits vs smolconv's engine on the same folder.
        model, _ = utils.load_model(Path(ours))
        # In Float32 (BF16 scales and norms widen exactly), as smolconv's engine computes.
        from mlx.utils import tree_map
        model.update(tree_map(lambda v: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v, model.parameters()))
        theirs_logits = np.array(model(mx.array(ids.astype(np.int32))).astype(mx.float32)).reshape(-1)
        out = os.path.join(tmp, "logits.safetensors")
        run("logits", ours, "--tokens", ",".join(str(int(i)) for i in ids.reshape(-1)), "--output", out)
        ours_logits = load_file(out)["logits"].reshape(-1)
        err = np.abs(ours_logits - theirs_logits).max() / np.abs(theirs_logits).max()
        before = min(before, len(failures))
        if not err < 1e-4:
            failures.append(f"{label}: logits differ from mlx-lm's by {err:.2e} of the largest")
        print(f"{label}: files {'equal' if len(failures) == before else 'DIFFER'}, logits {err:.1e}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok")
