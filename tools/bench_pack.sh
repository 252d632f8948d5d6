#!/usr/bin/env bash
# Benchmark (release build) of smolconv pack/unpack: size table (raw / plain `zstd -19` of the whole
# file / smolconv pack) and throughput for the real model (Q4_K_M GGUF), its F32 base and a BF16
# checkpoint made from that base. Also checks every round trip byte for byte (sha256).
#   bash tools/bench_pack.sh              # LEVELS="1 3 9 19" adds a pack-level sweep
# Inputs (made once when missing): BASE (F32, by tools/make_f32_base.py with gguf-py), BF16
# (`smolconv convert BASE BF16 --outtype bf16`). Unpack throughput is measured twice: to WORK (on
# disk, fsync included) and to FAST (tmpfs, so decoding rather than the disk is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product smolconv >/dev/null
BIN=$PWD/.build/release/smolconv
MODEL=${MODEL:-.cache/models/gemma-3-270m-q4_k_m.gguf}
BASE=${BASE:-.cache/models/gemma-3-270m-f32.gguf}
BF16=${BF16:-.cache/models/gemma-3-270m-bf16.gguf}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolconv-bench-pack.XXXXXX")
FAST=$(mktemp -d /dev/shm/smolconv-bench-pack.XXXXXX)
trap 'rm -rf "$WORK" "$FAST"' EXIT
[ -f "$BASE" ] || { echo "making the F32 base $BASE (gguf-py dequantize)"; python3 tools/make_f32_base.py "$MODEL" "$BASE"; }
[ -f "$BF16" ] || { echo "making the BF16 checkpoint $BF16"; $BIN convert "$BASE" "$BF16" --outtype bf16 >/dev/null; }
echo "zstd: $(zstd --version)   cores: $(nproc)"

secs() { # command... → wall seconds on stdout, command output discarded
  local s e
  s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN{printf "%.2f", e-s}'
}
mb() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.0f", b/t/1e6}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", 100*a/b}'; }

printf "\n%-10s %14s %14s %7s %14s %7s %9s %11s %11s\n" input raw "zstd -19" "%" "smolpack" "%" "pack MB/s" "unpack MB/s" "(tmpfs)"
for spec in "Q4_K_M:$MODEL" "F32:$BASE" "BF16:$BF16"; do
  label=${spec%%:*}; file=${spec#*:}
  raw=$(stat -c %s "$file")
  zs=$(zstd -19 -T2 -q -c "$file" | wc -c)
  tp=$(secs $BIN pack "$file" "$WORK/p.smolpack")
  ps=$(stat -c %s "$WORK/p.smolpack")
  tu=$(secs $BIN unpack "$WORK/p.smolpack" "$WORK/u")
  tf=$(secs $BIN unpack "$WORK/p.smolpack" "$FAST/u")
  [ "$(sha256sum < "$file")" = "$(sha256sum < "$WORK/u")" ] || { echo "$label: ROUND TRIP DIFFERS"; exit 1; }
  [ "$(sha256sum < "$file")" = "$(sha256sum < "$FAST/u")" ] || { echo "$label: ROUND TRIP DIFFERS"; exit 1; }
  printf "%-10s %14s %14s %7s %14s %7s %9s %11s %11s\n" "$label" "$raw" "$zs" "$(pct "$zs" "$raw")" "$ps" "$(pct "$ps" "$raw")" \
    "$(mb "$raw" "$tp")" "$(mb "$raw" "$tu")" "$(mb "$raw" "$tf")"
  for lv in ${LEVELS:-}; do
    t=$(secs $BIN pack "$file" "$WORK/l.smolpack" --level "$lv")
    printf "    --level %-3s %14s bytes (%s %%), pack %s MB/s\n" "$lv" "$(stat -c %s "$WORK/l.smolpack")" \
      "$(pct "$(stat -c %s "$WORK/l.smolpack")" "$raw")" "$(mb "$raw" "$t")"
    rm -f "$WORK/l.smolpack"
  done
  rm -rf "$WORK/p.smolpack" "$WORK/u" "$FAST/u"
done
echo "(sha256 of every unpacked file equals the original's)"
