"""Makes Tests/Fixtures/quant/llama-mlx4/ (and -mlx8-g32/): Tests/Fixtures/hf/llama quantized by mlx-lm's own
code path (mlx_lm.convert without the tokenizer step: load_model, the dtype rule of convert, quantize_model,
save_model, save_config), so smolconv's `quantize --format mlx` can be compared with it byte for byte.

Needs: pip install mlx[cpu] mlx-lm (--no-deps is enough). transformers is only imported by mlx-lm's tokenizer
helpers, which this script does not use, so a stub stands in for it when it is missing.
"""
import sys, types, json, shutil
from pathlib import Path

try:
    import transformers  # noqa: F401
except ImportError:
    import importlib.abc, importlib.machinery

    class _Stub(types.ModuleType):
        __path__ = []
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            # Classes whose class-level calls (AutoTokenizer.register, …) do nothing.
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

import mlx.core as mx
from mlx.utils import tree_map_with_path
from mlx_lm import utils
from mlx_lm.convert import MODEL_CONVERSION_DTYPES

root = Path(__file__).resolve().parent.parent
src = root / "Tests/Fixtures/hf/llama"

for bits, gs, name in [(4, 64, "llama-mlx4"), (8, 32, "llama-mlx8-g32")]:
    dst = root / "Tests/Fixtures/quant" / name
    if dst.exists():
        shutil.rmtree(dst)
    model, config = utils.load_model(src, lazy=True)
    # mlx_lm.convert's dtype rule.
    dtype = config.get("torch_dtype", None)
    if dtype in MODEL_CONVERSION_DTYPES:
        dt = getattr(mx, dtype)
        model.update(tree_map_with_path(lambda k, v: v.astype(dt) if mx.issubdtype(v.dtype, mx.floating) else v,
                                        model.parameters()))
    model, config = utils.quantize_model(model, config, gs, bits)
    utils.save_model(dst, model)
    utils.save_config(config, dst / "config.json")
    shutil.copy(src / "generation_config.json", dst)
    print("wrote", dst)

# The quantized model's logits as mlx-lm computes them (mlx CPU, quantized matmuls), for the
# fixture's input_ids: what an engine reading the folder should reproduce.
from safetensors.numpy import load_file, save_file
import numpy as np

ids = load_file(str(src / "reference.safetensors"))["input_ids"]
for name in ["llama-mlx4", "llama-mlx8-g32"]:
    dst = root / "Tests/Fixtures/quant" / name
    model, _ = utils.load_model(dst)
    logits = model(mx.array(ids.astype(np.int32)))
    mx.eval(logits)
    save_file({"input_ids": ids, "logits": np.array(logits.astype(mx.float32))}, str(dst / "reference.safetensors"))
    print("wrote", dst / "reference.safetensors")
