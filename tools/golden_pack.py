"""Golden XXH64 values for the smolpack tests, taken from the zstd command-line tool: a zstd frame
written with --check ends with the low 32 bits of XXH64(content, seed 0) (RFC 8878 §3.1.1), so
zstd is an outside reference for smolconv's XXH64. Writes Tests/Fixtures/pack/xxh64_zstd.json.
Inputs are the deterministic bytes (i * 131 + 7) mod 256, i = 0..n-1, for lengths that exercise
every path (empty, < 4, < 8, < 32, exactly 32, stripes plus tails)."""
import json, pathlib, struct, subprocess

LENGTHS = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 35, 63, 64, 65, 100, 1000, 4097, 1 << 20]


def data(n):
    return bytes((i * 131 + 7) & 255 for i in range(n))


out = []
for n in LENGTHS:
    frame = subprocess.run(["zstd", "-q", "-c", "-1", "--check"], input=data(n), capture_output=True, check=True).stdout
    (low32,) = struct.unpack("<I", frame[-4:])
    out.append({"length": n, "xxh64_low32": low32})
root = pathlib.Path(__file__).resolve().parent.parent
path = root / "Tests/Fixtures/pack/xxh64_zstd.json"
version = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
path.write_text(json.dumps({"generator": "tools/golden_pack.py", "zstd": version, "cases": out}, indent=1) + "\n")
print(f"wrote {path} ({len(out)} cases)")
