#!/usr/bin/env bash
# Engine speed against llama.cpp's figures (shared/references/README.md, same kind of 2-core machine):
#   - perplexity wall, GPL-3 text, ctx 512, 14 chunks: F32 base (llama.cpp 27.1 s) and the shipped
#     Q4_K_M file (llama.cpp 23.7 s);
#   - prefill tokens/s, 128-token prompt (llama-bench pp128 680–800) and decode tokens/s, 32 tokens
#     (tg32 77–84) on the Q4_K_M file.
# Prints ours next to llama.cpp's with the ratio, plus CPU time (user + sys) and the machine load:
# on a shared machine wall times move with the load, CPU time much less.
#   bash tools/bench_engine.sh [--skip-perplexity]        (SMOLCONV=path overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
SMOLCONV=${SMOLCONV:-.build/release/smolconv}
[ -x "$SMOLCONV" ] || swift build -c release --product smolconv >/dev/null
MODEL=${SMOLCONV_REAL_MODEL:-.cache/models/gemma-3-270m-q4_k_m.gguf}
BASE=.cache/models/gemma-3-270m-f32.gguf
TOKENS=Tests/Fixtures/gemma3-270m-gpl3-tokens.json
[ -f "$MODEL" ] || { echo "real model missing: run tools/setup"; exit 1; }
if [ ! -f "$BASE" ]; then "$SMOLCONV" convert "$MODEL" "$BASE" --outtype f32 >/dev/null; fi
IDS=$(mktemp); trap 'rm -f "$IDS"' EXIT
python3 -c "import json,sys; json.dump(json.load(open('$TOKENS'))['ids_with_bos'], open('$IDS','w'))"

echo "load before: $(uptime)"
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
if [ "${1:-}" != "--skip-perplexity" ]; then
  for pair in "F32 base:$BASE:27.1" "Q4_K_M:$MODEL:23.7"; do
    IFS=: read -r name path ref <<<"$pair"
    out=$( { /usr/bin/time -f "TIME %e %U %S %M" "$SMOLCONV" perplexity "$path" --tokens "$IDS" --ctx 512 --json 2>&1 1>&3 | grep '^TIME' ; } 3>&1 )
    ppl=$(echo "$out" | python3 -c "import json,sys; t=sys.stdin.read(); j=json.loads(t[:t.rindex('}')+1]); print(f\"{j['ppl']:.4f}\")")
    read -r _ wall user sys rss <<<"$(echo "$out" | grep '^TIME')"
    echo "perplexity $name: PPL $ppl, wall ${wall} s (llama.cpp ${ref} s, ratio $(ratio "$wall" "$ref")), cpu $(python3 -c "print(f'{$user+$sys:.1f}')") s, peak RSS $((rss / 1024)) MB"
  done
fi
json=$("$SMOLCONV" bench "$MODEL" -p 128 -n 32 --reps 3 --json 2>/dev/null)
python3 - "$json" <<'PY'
import json, statistics, sys
j = json.loads(sys.argv[1])
for key, name, lo, hi in (("prefill_tps", "pp128", 680, 800), ("decode_tps", "tg32", 77, 84)):
    v = j[key]
    m = statistics.mean(v)
    print(f"{name} Q4_K_M: {m:.1f} tokens/s (runs {', '.join(f'{x:.1f}' for x in v)}); llama-bench {lo}-{hi}: ratio {m/hi:.2f}-{m/lo:.2f}")
PY
echo "load after:  $(uptime)"
