#!/usr/bin/env bash
# LoRA training throughput and peak memory, smolconv against PyTorch + PEFT in the same run.
#
# Dense: Gemma 3 270M (the real model's configuration), Float32 base weights, one sequence of SEQ
# (256) random tokens per step, LoRA r=16 alpha=32 on q k v o gate up down, AdamW, 2 threads.
#   smolconv: `smolconv train .cache/models/gemma-3-270m-f32.gguf` (the real weights in F32; made
#             from the Q4_K_M model by `smolconv convert --outtype f32` when missing), tokens/s of
#             steps 2… from --log, peak RSS from /usr/bin/time.
#   PyTorch:  tools/bench_lora_torch.py dense (random F32 weights of the same shapes; the compute
#             is the same), torch.set_num_threads(THREADS).
# MoE (MOE=1): one Qwen3-30B-A3B MoE block (E=128, top-8, H=2048, I=768), 512 random tokens, LoRA r=16
# on the experts, forward + backward (+ AdamW for smolconv, which only trains whole steps).
#   smolconv: `smolconv train` on a one-layer qwen3_moe checkpoint with that block (small attention,
#             vocab 512; made by tools/bench_lora_torch.py moe-model), --targets
#             experts.gate_up_proj,experts.down_proj, F32 experts (safetensors) and Q4_0 experts
#             (`smolconv quantize --type Q4_0 --pure`, kept encoded); wall time of the step, peak RSS.
#   PyTorch:  transformers' Qwen3MoeSparseMoeBlock alone + PEFT target_parameters, F32,
#             experts_implementation grouped_mm (EXPERTS_IMPL).
# Needs torch, transformers and peft (`pip install torch transformers peft`; not in CI / tools/setup).
#   tools/bench_lora.sh                 # STEPS=6 SEQ=256 THREADS=2, dense only
#   MOE=1 DENSE=0 tools/bench_lora.sh   # the MoE block only
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-6}" SEQ="${SEQ:-256}" THREADS="${THREADS:-2}"
swift build -c release -Xswiftc -enable-testing 2>&1 | grep -E "error|Build" | tail -2   # the flags tools/test builds with
BIN=.build/release/smolconv
F32=.cache/models/gemma-3-270m-f32.gguf
[ -f "$F32" ] || "$BIN" convert .cache/models/gemma-3-270m-q4_k_m.gguf "$F32" --outtype f32 >/dev/null
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
python3 -c "import random; random.seed(0); print([random.randrange(262144) for _ in range($SEQ * ($STEPS + 1))])" > "$TMP/tokens.json"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
if [ "${DENSE:-1}" = 1 ]; then

OPENBLAS_NUM_THREADS=$THREADS /usr/bin/time -v "$BIN" train "$F32" --tokens "$TMP/tokens.json" --seq-len "$SEQ" \
  --batch-tokens "$SEQ" --steps $((STEPS + 1)) --rank 16 --alpha 32 --lr 1e-4 --log "$TMP/log.jsonl" \
  --output "$TMP/adapter" 2> "$TMP/smol.err" >/dev/null || { cat "$TMP/smol.err"; exit 1; }
python3 - "$TMP/log.jsonl" "$TMP/smol.err" "$SEQ" <<'EOF'
import json, re, sys
steps = [json.loads(l) for l in open(sys.argv[1])][1:]
secs = sum(s["seconds"] for s in steps) / len(steps)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1)) / 1024
print(json.dumps({"impl": "smolconv", "mode": "dense", "seq": int(sys.argv[3]), "steps_timed": len(steps),
                  "seconds_per_step": secs, "tokens_per_second": int(sys.argv[3]) / secs, "peak_rss_mb": rss}))
EOF
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
STEPS=$STEPS SEQ=$SEQ THREADS=$THREADS /usr/bin/time -v python3 tools/bench_lora_torch.py dense 2> "$TMP/torch.err" \
  || { cat "$TMP/torch.err"; exit 1; }
echo "torch peak RSS (time -v): $(( $(grep -oP 'Maximum resident set size \(kbytes\): \K\d+' "$TMP/torch.err") / 1024 )) MB"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

if [ "${MOE:-0}" = 1 ]; then
  MOEDIR=${MOEDIR:-.cache/bench-lora-moe}
  [ -f "$MOEDIR/f32/model.safetensors" ] || python3 tools/bench_lora_torch.py moe-model "$MOEDIR/f32"
  [ -f "$MOEDIR/q4_0.gguf" ] || "$BIN" quantize "$MOEDIR/f32" "$MOEDIR/q4_0.gguf" --type Q4_0 --pure >/dev/null
  cp "$MOEDIR/f32/config.json" "$MOEDIR/config.json"   # a MoE GGUF is read with the config.json beside it
  python3 -c "import random; random.seed(1); print([random.randrange(512) for _ in range(513)])" > "$TMP/moe.json"
  for model in "$MOEDIR/f32" "$MOEDIR/q4_0.gguf"; do
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -v "$BIN" train "$model" --tokens "$TMP/moe.json" --seq-len 513 --batch-tokens 513 --steps 6 \
      --rank 16 --alpha 32 --targets experts.gate_up_proj,experts.down_proj --log "$TMP/moe.jsonl" \
      --output "$TMP/moe-adapter" 2> "$TMP/moe.err" >/dev/null || { cat "$TMP/moe.err"; exit 1; }
    python3 - "$TMP/moe.jsonl" "$TMP/moe.err" "$model" <<'EOF2'
import json, re, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1)) / 1024
secs = sorted(s["seconds"] for s in steps[1:])   # the first step also faults in the tape's pages
print(json.dumps({"impl": "smolconv", "mode": "moe", "model": sys.argv[3], "tokens": 512,
                  "seconds_per_step": [round(s["seconds"], 3) for s in steps], "median_after_first": round(secs[len(secs) // 2], 3),
                  "peak_rss_mb": rss}))
EOF2
  done
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  RUNS=${RUNS:-3} EXPERTS_IMPL=${EXPERTS_IMPL:-grouped_mm} THREADS=$THREADS /usr/bin/time -v python3 tools/bench_lora_torch.py moe 2> "$TMP/torch-moe.err" \
    || { cat "$TMP/torch-moe.err"; exit 1; }
  echo "torch peak RSS (time -v): $(( $(grep -oP 'Maximum resident set size \(kbytes\): \K\d+' "$TMP/torch-moe.err") / 1024 )) MB"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
