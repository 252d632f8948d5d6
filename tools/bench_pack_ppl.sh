#!/usr/bin/env bash
# Benchmark (release build): `smolconv perplexity` on a packed checkpoint against the same checkpoint
# unpacked (issue: packed perplexity within 5 % of the unpacked run). The runs alternate
# (plain, packed, plain, packed, …) so that load from other processes hits both alike; the minimum of
# each column is reported, for wall time and for CPU time (user + sys, steadier on a busy machine).
#   bash tools/bench_pack_ppl.sh                 # the real Q4_K_M model, 3 rounds
#   MODEL=path ROUNDS=5 bash tools/bench_pack_ppl.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product smolconv >/dev/null
BIN=$PWD/.build/release/smolconv
MODEL=${MODEL:-.cache/models/gemma-3-270m-q4_k_m.gguf}
TEXT=${TEXT:-Tests/Fixtures/tokenizer/GPL-3}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolconv-bench-packppl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
$BIN pack "$MODEL" "$WORK/m.smolpack" >/dev/null 2>&1
echo "model: $MODEL ($(stat -c %s "$MODEL") bytes, packed $(stat -c %s "$WORK/m.smolpack"))   cores: $(nproc)   load: $(uptime | sed 's/.*load average: //')"
run() { # file label round
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" $BIN perplexity "$1" --text-file "$TEXT" --json >"$WORK/out.json" 2>/dev/null
  read -r wall user sys rss < "$WORK/time"
  ppl=$(python3 -c "import json;print(json.load(open('$WORK/out.json'))['ppl'])")
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  printf "%-8s round %s  wall %7.2f s  cpu %7.2f s  rss %6d MB  ppl %s\n" "$2" "$3" "$wall" "$cpu" $((rss/1024)) "$ppl"
  echo "$2 $wall $cpu $ppl" >> "$WORK/all"
}
for r in $(seq "$ROUNDS"); do run "$MODEL" plain "$r"; run "$WORK/m.smolpack" packed "$r"; done
python3 - "$WORK/all" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
best = {k: (min(float(r[1]) for r in rows if r[0] == k), min(float(r[2]) for r in rows if r[0] == k)) for k in ("plain", "packed")}
ppls = {r[3] for r in rows}
print(f"min wall: plain {best['plain'][0]:.2f} s, packed {best['packed'][0]:.2f} s  → packed/plain {best['packed'][0]/best['plain'][0]:.3f}")
print(f"min cpu:  plain {best['plain'][1]:.2f} s, packed {best['packed'][1]:.2f} s  → packed/plain {best['packed'][1]/best['plain'][1]:.3f}")
print("perplexity identical in every run" if len(ppls) == 1 else f"PERPLEXITY DIFFERS: {sorted(ppls)}")
PY
