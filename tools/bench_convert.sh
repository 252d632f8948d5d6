#!/usr/bin/env bash
# Benchmark (release build): convert a ≥1 GB checkpoint and report wall time and peak RSS, next to
# copying the same bytes with cp in the same run.
#   bash tools/bench_convert.sh            # uses the real model's F32 base, made once by convert
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_BUILD:-}" ] || swift build -c release --product smolconv >/dev/null
BIN=.build/release/smolconv
MODEL=.cache/models/gemma-3-270m-q4_k_m.gguf
BASE=.cache/models/gemma-3-270m-f32.gguf
WORK=$(mktemp -d /tmp/smolconv-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ ! -f "$BASE" ]; then
  echo "making the F32 base (dequantized real model) at $BASE"
  $BIN convert "$MODEL" "$BASE" --outtype f32
fi
size=$(stat -c %s "$BASE")
echo "input: $BASE ($size bytes)"

measure() { # label, command...
  local label=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
  read -r wall rss < "$WORK/time"
  printf "%-40s wall %6.2f s   peak RSS %7.1f MB\n" "$label" "$wall" "$(awk -v r="$rss" 'BEGIN{print r/1024}')"
  echo "$wall" > "$WORK/wall.$label"
}
measure cp cp "$BASE" "$WORK/copy.gguf"
rm -f "$WORK/copy.gguf"
measure "convert gguf f32 -> hf f32" $BIN convert "$BASE" "$WORK/hf"
measure "convert hf f32 -> gguf f32" $BIN convert "$WORK/hf" "$WORK/back.gguf"
measure "convert gguf f32 -> gguf bf16" $BIN convert "$BASE" "$WORK/bf16.gguf" --outtype bf16
