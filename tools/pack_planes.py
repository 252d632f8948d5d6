#!/usr/bin/env python3
"""Writes the rotated byte planes of a BF16 GGUF's BF16 tensors (the way smolpack regroups them, see
formats/smolpack.md) to OUTDIR/E.bin (exponent plane: e7..e0) and OUTDIR/M.bin (m6..m0 s), and the
4 MiB-chunk boundaries smolpack uses to OUTDIR/chunks.bin (int64 pairs: offset, length in each plane),
then prints the order-0 entropy of each plane. tools/pack_plane_sweep.c compresses the planes chunk
by chunk with libzstd settings given on its command line.
    python3 tools/pack_planes.py BF16.gguf OUTDIR
"""
import sys, os
import numpy as np
import gguf

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
r = gguf.GGUFReader(src)
E, M, chunks, at = [], [], [], 0
per_chunk = (4 << 20) // 2  # BF16 elements in a 4 MiB chunk
for t in r.tensors:
    if t.tensor_type != gguf.GGMLQuantizationType.BF16:
        continue
    v = np.frombuffer(t.data.tobytes(), dtype=np.uint16)
    rot = ((v << 1) | (v >> 15)).astype(np.uint16)  # rotate left by one bit: sign to bit 0
    E.append((rot >> 8).astype(np.uint8))
    M.append((rot & 0xFF).astype(np.uint8))
    for s in range(0, len(v), per_chunk):
        n = min(per_chunk, len(v) - s)
        chunks.append((at, n))
        at += n
E, M = np.concatenate(E), np.concatenate(M)
E.tofile(os.path.join(out, "E.bin"))
M.tofile(os.path.join(out, "M.bin"))
np.array(chunks, dtype=np.int64).tofile(os.path.join(out, "chunks.bin"))
print(f"{len(E)} BF16 elements in {len(chunks)} chunks")
for name, p in (("exponent plane", E), ("sign+mantissa plane", M)):
    c = np.bincount(p, minlength=256).astype(float)
    q = c[c > 0] / len(p)
    h = -(q * np.log2(q)).sum()
    print(f"{name}: {int((c > 0).sum())} distinct bytes, order-0 entropy {h:.3f} bits = {100 * h / 16:.2f} % of the BF16 bytes")
