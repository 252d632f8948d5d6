#!/usr/bin/env bash
# The "int4 g64, MLX layout" rows of calibration/README.md: the F32 base converted to a Hugging Face
# folder (DTYPE f32 or f16: MLX stores scales and biases in the weight's dtype), quantized by
# `quantize --format mlx --bits 4 --group-size 64` (mlx-lm's layout, embedding included) with each
# METHOD, judged by `smolconv verify` against the F32 GGUF base on the GPL-3 text (ctx 512).
# Statistics: the same stats.h5 as run_results.sh (calibrated on the GGUF base, GGUF names; the MLX
# path maps HF names onto them).
#   bash calibration/run_mlx_results.sh [DTYPE] [METHODS]     e.g. f16 "rtn gptq"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SMOLCONV:-.build/release/smolconv}
BASE=.cache/models/gemma-3-270m-f32.gguf
TEXT=Tests/Fixtures/tokenizer/GPL-3
OUT=.cache/calib
DTYPE=${1:-f16}
METHODS=${2:-"rtn imatrix gptq"}
mkdir -p "$OUT"
[ -f "$OUT/stats.h5" ] || /usr/bin/time -v "$BIN" calibrate "$BASE" --calibration default --ctx 512 --max-windows 40 -o "$OUT/stats.h5" 2> "$OUT/calibrate.time"
HF="$OUT/gemma-hf-$DTYPE"
[ -d "$HF" ] || "$BIN" convert "$BASE" "$HF" --outtype "$DTYPE" > /dev/null
for m in $METHODS; do
  q="$OUT/mlx-$DTYPE-$m"
  rm -rf "$q"
  args=(--format mlx --bits 4 --group-size 64)
  [ "$m" = rtn ] || args+=(--calibration "$OUT/stats.h5" --method "$m")
  /usr/bin/time -v "$BIN" quantize "$HF" "$q" "${args[@]}" --json > "$q.quant.json" 2> "$q.quant.time"
  "$BIN" verify "$BASE" "$q" --text-file "$TEXT" --ctx 512 --json > "$q.verify.json" 2> /dev/null
  python3 - "$q" "$DTYPE" "$m" <<'PY'
import json, re, sys
q, dt, m = sys.argv[1:]
s = json.load(open(f"{q}.quant.json")); v = json.load(open(f"{q}.verify.json"))
tm = open(f"{q}.quant.time").read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", tm).group(1); rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tm).group(1))
lin = [r for r in s["tensors"] if r["name"].startswith("model.layers.") and r["to"].startswith("MLX")]
n = sum(r["shape"][0] * r["shape"][1] for r in lin); b = sum(r["bytes"] for r in lin)
print(f"| int4 g64, MLX layout ({dt}) | {m} | {v['ppl_converted']:.4f} | {v['kld_mean']:.6f} | {100*v['top1_agreement']:.2f} | {8*b/n:.3f} | {s['bits_per_weight_quantized']:.3f} | {s['file_bytes']:,} | {wall} | {rss/1024:.0f} |")
PY
done | tee -a "$OUT/results-mlx.md"
