#!/usr/bin/env bash
# Benchmark (release build): `smolconv quantize` of the real model's F32 base against llama.cpp's
# llama-quantize in the same run: wall, CPU (user + sys) and peak RSS per type, runs alternating
# (llama, smolconv, llama, …) so that other load hits both alike; best of ROUNDS. Also compares the
# outputs: same tensor types, same file size, and whether the files are byte-identical.
#   LLAMA_BIN=path/to/llama.cpp/build/bin bash tools/bench_quantize.sh
#   TYPES="Q4_K_M Q4_0 Q8_0" ROUNDS=3 ...
# Without LLAMA_BIN (or llama-quantize on PATH) only smolconv runs, next to the figures in
# shared/references (llama-quantize 2.1 / 1.2 / 1.4 s, 879 MB on this kind of machine).
# llama.cpp: `pip download llama-cpp-python` holds its source (vendor/llama.cpp); build with
# cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build build --target llama-quantize llama-perplexity llama-bench
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product smolconv >/dev/null
BIN=$PWD/.build/release/smolconv
BASE=${BASE:-.cache/models/gemma-3-270m-f32.gguf}
[ -f "$BASE" ] || { echo "making the F32 base $BASE"; python3 tools/make_f32_base.py .cache/models/gemma-3-270m-q4_k_m.gguf "$BASE"; }
LQ=""
if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-quantize" ]; then LQ=$LLAMA_BIN/llama-quantize
elif command -v llama-quantize >/dev/null; then LQ=$(command -v llama-quantize); fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolconv-bench-quant.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "cores: $(nproc)   load: $(uptime | sed 's/.*load average: //')   llama-quantize: ${LQ:-not found}"
run() { # label out command... → appends "label wall cpu rssMB" to $WORK/all
  local label=$1 out=$2; shift 2
  rm -f "$out"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$@" >/dev/null 2>&1
  read -r wall user sys rss < "$WORK/t"
  echo "$label $wall $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') $((rss / 1024))" >> "$WORK/all"
}
for type in ${TYPES:-Q4_K_M Q4_0 Q8_0}; do
  : > "$WORK/all"
  for r in $(seq "${ROUNDS:-3}"); do
    [ -n "$LQ" ] && run llama "$WORK/l.gguf" "$LQ" "$BASE" "$WORK/l.gguf" "$type" "$(nproc)"
    run smolconv "$WORK/s.gguf" "$BIN" quantize "$BASE" "$WORK/s.gguf" --type "$type"
  done
  python3 - "$WORK" "$type" "$LQ" <<'PY'
import sys, os
work, typ, lq = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split() for l in open(os.path.join(work, "all"))]
def best(k):
    r = [x for x in rows if x[0] == k]
    return (min(float(x[1]) for x in r), min(float(x[2]) for x in r), max(int(x[3]) for x in r)) if r else None
s, l = best("smolconv"), best("llama")
line = f"{typ:7} smolconv {s[0]:6.2f} s wall {s[1]:6.2f} s cpu {s[2]:5d} MB  {os.path.getsize(os.path.join(work, 's.gguf')):,} B"
if l:
    same = open(os.path.join(work, "s.gguf"), "rb").read() == open(os.path.join(work, "l.gguf"), "rb").read()
    line += (f" | llama-quantize {l[0]:6.2f} s wall {l[1]:6.2f} s cpu {l[2]:5d} MB  {os.path.getsize(os.path.join(work, 'l.gguf')):,} B"
             f" | wall ratio {l[0] / s[0]:.2f}× cpu ratio {l[1] / s[1]:.2f}× | files {'byte-identical' if same else 'differ'}")
print(line)
PY
  if [ -n "$LQ" ]; then
    python3 - "$WORK/s.gguf" "$WORK/l.gguf" <<'PY'
import sys
from gguf import GGUFReader
a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
ta = {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in a.tensors}
tb = {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in b.tensors}
types = sum(ta[n][0] != tb[n][0] for n in ta if n in tb)
data = sum(ta[n][1] != tb[n][1] for n in ta if n in tb)
print(f"        tensors: {len(ta)} vs {len(tb)}, types differing {types}, data differing {data}"
      + (f" (e.g. {[n for n in ta if n in tb and ta[n][1] != tb[n][1]][:3]})" if data else ""))
PY
  fi
done
