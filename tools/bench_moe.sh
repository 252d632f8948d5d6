#!/usr/bin/env bash
# One MoE layer with Qwen3-30B-A3B expert shapes (E=128, top-8, H=2048, I=768), random weights,
# 512 tokens: grouped expert kernel vs the per-token reference loop, F32 and Q4_0 experts; wall
# time, CPU/wall (cores busy) and peak RSS above the start of each run.
#   tools/bench_moe.sh                  # T = 512, reference on all 512 tokens (slow: minutes)
#   REF_TOKENS=64 tools/bench_moe.sh    # reference on 64 tokens, its time scaled to 512
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --build-tests -Xswiftc -enable-testing 2>&1 | grep -E "error|Compiling|Build" | tail -3
SMOLCONV_BENCH_MOE=1 SMOLCONV_BENCH_MOE_TOKENS="${TOKENS:-512}" SMOLCONV_BENCH_MOE_REF_TOKENS="${REF_TOKENS:-${TOKENS:-512}}" \
  swift test -c release -Xswiftc -enable-testing --skip-build --filter MoEBenchmark 2>&1 | grep -E "MoE layer|experts:|✘|passed|failed"
