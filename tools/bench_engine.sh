#!/usr/bin/env bash
# Engine speed against llama.cpp in the same run (or, without it, the figures in shared/references):
#   - perplexity, GPL-3 text, ctx 512, 14 chunks, 2 threads: F32 base (llama.cpp 27.1 s) and the
#     shipped Q4_K_M file (23.7 s): wall, CPU (user + sys), peak RSS and PPL;
#   - prefill tokens/s (pp128) and decode tokens/s (tg32) on the Q4_K_M file, as llama-bench -p 128 -n 32.
# Runs alternate (llama.cpp, smolconv, …) so that other load hits both alike.
#   LLAMA_BIN=path/to/llama.cpp/build/bin bash tools/bench_engine.sh [--skip-perplexity]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product smolconv >/dev/null
BIN=$PWD/.build/release/smolconv
MODEL=${MODEL:-.cache/models/gemma-3-270m-q4_k_m.gguf}
BASE=${BASE:-.cache/models/gemma-3-270m-f32.gguf}
TEXT=${TEXT:-Tests/Fixtures/tokenizer/GPL-3}
[ -f "$BASE" ] || python3 tools/make_f32_base.py "$MODEL" "$BASE"
LB=${LLAMA_BIN:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolconv-bench-engine.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "cores: $(nproc)   load: $(uptime | sed 's/.*load average: //')   llama.cpp: ${LB:-not given (figures from shared/references)}"
timed() { /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$@" > "$WORK/out" 2>&1 || { cat "$WORK/out"; exit 1; }; read -r W U S M < "$WORK/t"; }
cpu() { awk -v u="$U" -v s="$S" 'BEGIN{printf "%.1f", u+s}'; }
if [ "${1:-}" != "--skip-perplexity" ]; then
  for pair in "F32 base:$BASE:27.1" "Q4_K_M:$MODEL:23.7"; do
    IFS=: read -r name path ref <<<"$pair"
    if [ -n "$LB" ]; then
      timed "$LB/llama-perplexity" -m "$path" -f "$TEXT" -c 512 -t 2
      lppl=$(grep -o "Final estimate: PPL = [0-9.]*" "$WORK/out" | awk '{print $NF}')
      lw=$W; echo "perplexity $name  llama.cpp: PPL $lppl, wall $W s, cpu $(cpu) s, peak RSS $((M / 1024)) MB"
    else lw=$ref; fi
    timed "$BIN" perplexity "$path" --text-file "$TEXT" --ctx 512 --json
    ppl=$(python3 -c "import json,sys; t=open('$WORK/out').read(); j=json.loads(t[t.index('{'):t.rindex('}')+1]); print(f\"{j['ppl']:.4f}\")")
    echo "perplexity $name  smolconv:  PPL $ppl, wall $W s, cpu $(cpu) s, peak RSS $((M / 1024)) MB  → wall ratio smolconv/llama.cpp $(awk -v a="$W" -v b="$lw" 'BEGIN{printf "%.2f", a/b}')"
  done
fi
if [ -n "$LB" ]; then
  "$LB/llama-bench" -m "$MODEL" -t 2 -p 128 -n 32 -r 3 2>/dev/null | grep -E "pp128|tg32" | sed 's/^/llama-bench /'
else
  echo "llama-bench (shared/references): pp128 680–800, tg32 77–84 tokens/s"
fi
"$BIN" bench "$MODEL" -p 128 -n 32 --reps 3 2>/dev/null | sed 's/^/smolconv bench /'
# The same decode on the Float32 copy of every weight (before the stored-encoding kernels).
"$BIN" bench "$MODEL" -p 0 -n 32 --reps 3 --f32-weights 2>/dev/null | sed 's/^/smolconv bench --f32-weights /'
echo "load after: $(uptime | sed 's/.*load average: //')"
