#!/usr/bin/env bash
# The calibration results table (calibration/README.md): F32 base of the real Gemma 3 270M,
# statistics from the default recipe, then RTN / imatrix / GPTQ / AWQ × Q4_0, Q4_K_M, int4 g64,
# each judged by `smolconv verify` on the GPL-3 text (ctx 512, llama.cpp's protocol).
#   bash calibration/run_results.sh [METHODS] [TYPES]     e.g. "gptq awq" "Q4_0"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SMOLCONV:-.build/release/smolconv}
BASE=.cache/models/gemma-3-270m-f32.gguf
TEXT=Tests/Fixtures/tokenizer/GPL-3
OUT=.cache/calib
METHODS=${1:-"rtn imatrix gptq awq"}
TYPES=${2:-"Q4_0 Q4_K_M int4g64"}
mkdir -p "$OUT"
[ -f "$OUT/stats.h5" ] || /usr/bin/time -v "$BIN" calibrate "$BASE" --calibration default --ctx 512 --max-windows 40 -o "$OUT/stats.h5" 2> "$OUT/calibrate.time"
for type in $TYPES; do
  for m in $METHODS; do
    q="$OUT/$type-$m.gguf"
    args=(--type "$type")
    [ "$type" = int4g64 ] && args=(--type Q4_0 --int4-group 64)
    [ "$m" = rtn ] || args+=(--calibration "$OUT/stats.h5" --method "$m")
    /usr/bin/time -v "$BIN" quantize "$BASE" "$q" "${args[@]}" --json > "$OUT/$type-$m.quant.json" 2> "$OUT/$type-$m.quant.time"
    "$BIN" verify "$BASE" "$q" --text-file "$TEXT" --ctx 512 --json > "$OUT/$type-$m.verify.json" 2> /dev/null
    python3 - "$OUT" "$type" "$m" <<'PY'
import json, re, sys
out, t, m = sys.argv[1:]
q = json.load(open(f"{out}/{t}-{m}.quant.json")); v = json.load(open(f"{out}/{t}-{m}.verify.json"))
tm = open(f"{out}/{t}-{m}.quant.time").read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", tm).group(1); rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tm).group(1))
lin = [r for r in q["tensors"] if r["name"].startswith("blk.") and len(r["shape"]) == 2]
n = sum(r["shape"][0] * r["shape"][1] for r in lin); b = sum(r["bytes"] for r in lin)
print(f"| {t} | {m} | {v['ppl_converted']:.4f} | {v['kld_mean']:.6f} | {100*v['top1_agreement']:.2f} | {8*b/n:.3f} | {q['bits_per_weight_quantized']:.3f} | {q['file_bytes']:,} | {wall} | {rss/1024:.0f} |")
PY
  done
done | tee -a "$OUT/results.md"
