#!/usr/bin/env python3
"""Golden dequantization data for SmolKernels' quantized matmul kernels, from gguf-py.

For each weight type the kernels read, writes Tests/Fixtures/kernels/<TYPE>.bin (random encoded rows,
[2, cols]) and <TYPE>.f32 (gguf.quants.dequantize of those bytes, little-endian float32), plus
manifest.json (type, rows, cols). The f16 scale fields get finite values of realistic size (one block
per type gets a subnormal scale, to exercise the half→float conversion); every other byte is random.

    python3 tools/golden_kernels.py        # gguf 0.19.0, numpy
"""
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "kernels"
rng = np.random.default_rng(20250601)

# type -> byte offsets of f16 scale fields inside one block
SCALES = {
    T.Q8_0: [0], T.Q4_0: [0], T.Q5_0: [0],
    T.Q4_K: [0, 2],      # d, dmin
    T.Q6_K: [208],       # d (at the end of the block)
}


def f16(x):
    return np.float16(x).view(np.uint16)


def make(qtype, rows, blocks_per_row):
    elems, nbytes = GGML_QUANT_SIZES[qtype]
    cols = elems * blocks_per_row
    if qtype in (T.F16, T.BF16):
        vals = rng.standard_normal(rows * cols).astype(np.float32)
        if qtype == T.F16:
            raw = vals.astype(np.float16).view(np.uint8)
            raw = raw.copy()
            raw.view(np.uint16)[:4] = [0x0001, 0x8200, 0x7bff, 0x0400]  # subnormals, max, min normal
        else:
            raw = (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    else:
        nblocks = rows * blocks_per_row
        raw = rng.integers(0, 256, size=(nblocks, nbytes), dtype=np.uint8)
        for b in range(nblocks):
            for k, off in enumerate(SCALES[qtype]):
                mag = 2.0 ** rng.uniform(-14, -3)
                if b == 1 and k == 0:
                    mag = 2.0 ** -20  # subnormal in f16
                sign = -1 if (qtype != T.Q4_K and rng.random() < 0.3) else 1
                raw[b, off:off + 2] = np.frombuffer(f16(sign * mag).tobytes(), dtype=np.uint8)
        raw = raw.reshape(-1)
    out = dequantize(raw.reshape(rows, -1), qtype).astype(np.float32)
    assert out.shape == (rows, cols), out.shape
    name = qtype.name
    (OUT / f"{name}.bin").write_bytes(raw.tobytes())
    (OUT / f"{name}.f32").write_bytes(out.astype("<f4").tobytes())
    return {"type": name, "rows": rows, "cols": cols}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = [
        make(T.F16, 2, 40), make(T.BF16, 2, 40),
        make(T.Q8_0, 2, 5), make(T.Q4_0, 2, 5), make(T.Q5_0, 2, 5),
        make(T.Q4_K, 2, 3), make(T.Q6_K, 2, 3),
    ]
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
