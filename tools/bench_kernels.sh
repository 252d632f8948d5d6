#!/usr/bin/env bash
# Quantized matmul kernel benchmark (release build of the nested tools/benchmarks package):
# GFLOP/s and weight GB/s of QuantizedLinear.apply on the real Gemma 3 270M Q4_K_M tensors for
# T = 1, 4, 16, 128, 512, next to OpenBLAS sgemm on the same weights in F32, then whole-model
# decode / prefill / F32-perplexity matmul sweeps.
#   bash tools/bench_kernels.sh [--quick]          # SMOLCONV_NO_AVX2=1 measures the portable Swift path
set -euo pipefail
cd "$(dirname "$0")/benchmarks"
swift build -c release --product smolconv-bench >/dev/null
exec .build/release/smolconv-bench "$@"
