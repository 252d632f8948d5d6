#!/usr/bin/env bash
# Benchmark (release build) of smolconv pack/unpack: size table (raw / plain `zstd -3` and `zstd -19` of the whole
# file / smolconv pack at its default level) and throughput for the real model (Q4_K_M GGUF), its F32 base and a
# BF16 checkpoint made from that base. Also checks every round trip byte for byte (sha256).
#   bash tools/bench_pack.sh              # LEVELS="1 3 5 7" adds a pack-level sweep (size, pack time, unpack rate)
#   ZSTD19=0 bash tools/bench_pack.sh     # skips plain `zstd -19 -T2` (tens of minutes on 2 busy cores)
#   OLD=/path/to/older/smolconv bash tools/bench_pack.sh   # the same rows for an older build, same run
#   ROUNDS=3 ...                          # repeats the throughput rows (the machine's load varies)
# Inputs (made once when missing): BASE (F32, by tools/make_f32_base.py with gguf-py), BF16
# (`smolconv convert BASE BF16 --outtype bf16`, kept under $TMPDIR). Unpack is measured three ways:
# `unpack --check` (decode + checksums, nothing written), to FAST (tmpfs: decoding plus the copy into
# page cache), and to WORK (disk, fsync included). `cpu s` is user + system seconds of the tmpfs unpack:
# raw / cpu s is the output rate per busy core, which on a loaded machine says more than wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product smolconv >/dev/null
BIN=$PWD/.build/release/smolconv
MODEL=${MODEL:-.cache/models/gemma-3-270m-q4_k_m.gguf}
BASE=${BASE:-.cache/models/gemma-3-270m-f32.gguf}
INPUTS=${INPUTS:-${TMPDIR:-/tmp}/smolconv-bench-inputs}
BF16=${BF16:-$INPUTS/gemma-3-270m-bf16.gguf}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolconv-bench-pack.XXXXXX")
FAST=$(mktemp -d /dev/shm/smolconv-bench-pack.XXXXXX)
trap 'rm -rf "$WORK" "$FAST"' EXIT
mkdir -p "$INPUTS"
[ -f "$BASE" ] || { echo "making the F32 base $BASE (gguf-py dequantize)"; python3 tools/make_f32_base.py "$MODEL" "$BASE"; }
[ -f "$BF16" ] || { echo "making the BF16 checkpoint $BF16"; $BIN convert "$BASE" "$BF16" --outtype bf16 >/dev/null; }
echo "zstd: $(zstd --version)   cores: $(nproc)   load: $(uptime | sed 's/.*load average: //')"

timed() { # command... → "wall user sys" on stdout, command output discarded
  /usr/bin/time -f "%e %U %S" -o "$WORK/time" "$@" >/dev/null 2>&1
  cat "$WORK/time"
}
mb() { awk -v b="$1" -v t="$2" 'BEGIN{ if (t <= 0) t = 0.01; printf "%.0f", b/t/1e6}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", 100*a/b}'; }
cpu() { awk -v u="$1" -v s="$2" 'BEGIN{printf "%.2f", u+s}'; }

# unpack_rates BIN PACK FILE → "check tmpfs disk cpu MB/s-per-core" (MB/s of output), round trips checked
unpack_rates() {
  local bin=$1 pack=$2 file=$3 raw tc tf uf sf tu
  raw=$(stat -c %s "$file")
  read -r tc _ _ < <(timed "$bin" unpack "$pack" --check)
  read -r tf uf sf < <(timed "$bin" unpack "$pack" "$FAST/u")
  [ "$(sha256sum < "$file")" = "$(sha256sum < "$FAST/u")" ] || { echo "$file: ROUND TRIP DIFFERS ($bin)" >&2; exit 1; }
  rm -f "$FAST/u"
  read -r tu _ _ < <(timed "$bin" unpack "$pack" "$WORK/u")
  [ "$(sha256sum < "$file")" = "$(sha256sum < "$WORK/u")" ] || { echo "$file: ROUND TRIP DIFFERS ($bin)" >&2; exit 1; }
  rm -f "$WORK/u"
  echo "$(mb "$raw" "$tc") $(mb "$raw" "$tf") $(mb "$raw" "$tu") $(cpu "$uf" "$sf") $(mb "$raw" "$(cpu "$uf" "$sf")")"
}

printf "\n%-7s %14s %14s %6s %14s %6s %14s %6s %7s | %s\n" input raw "zstd -3" "%" "zstd -19" "%" "smolpack" "%" "pack s" \
  "unpack MB/s: check  tmpfs  disk+fsync  (tmpfs cpu s → MB/s per core)"
for spec in "Q4_K_M:$MODEL" "F32:$BASE" "BF16:$BF16"; do
  label=${spec%%:*}; file=${spec#*:}
  raw=$(stat -c %s "$file")
  z3=$(zstd -3 -T2 -q -c "$file" | wc -c)
  if [ "${ZSTD19:-1}" = 1 ]; then zs=$(zstd -19 -T2 -q -c "$file" | wc -c); zp=$(pct "$zs" "$raw"); else zs=-; zp=-; fi
  for b in "$BIN" ${OLD:-}; do
    tag=$label; [ "$b" = "$BIN" ] || tag="$label old"
    read -r tp pu ps < <(timed "$b" pack "$file" "$WORK/p.smolpack")
    psize=$(stat -c %s "$WORK/p.smolpack")
    for r in $(seq "${ROUNDS:-1}"); do
      read -r rc rf rd c pc < <(unpack_rates "$b" "$WORK/p.smolpack" "$file")
      printf "%-7s %14s %14s %6s %14s %6s %14s %6s %7s | %18s %6s %11s  (%s s → %s)\n" "$tag" "$raw" "$z3" "$(pct "$z3" "$raw")" "$zs" "$zp" \
        "$psize" "$(pct "$psize" "$raw")" "$tp" "$rc" "$rf" "$rd" "$c" "$pc"
    done
    rm -f "$WORK/p.smolpack"
  done
  for lv in ${LEVELS:-}; do
    read -r t pu ps < <(timed $BIN pack "$file" "$WORK/l.smolpack" --level "$lv")
    read -r rc rf rd c pc < <(unpack_rates "$BIN" "$WORK/l.smolpack" "$file")
    printf "    --level %-3s %14s bytes (%s %%), pack %s s (cpu %s s); unpack MB/s: check %s, tmpfs %s (cpu %s s)\n" "$lv" \
      "$(stat -c %s "$WORK/l.smolpack")" "$(pct "$(stat -c %s "$WORK/l.smolpack")" "$raw")" "$t" "$(cpu "$pu" "$ps")" "$rc" "$rf" "$c"
    rm -f "$WORK/l.smolpack"
  done
done
echo "load at the end: $(uptime | sed 's/.*load average: //')"
echo "(pack s = wall seconds of smolconv pack; sha256 of every unpacked file equals the original's)"
