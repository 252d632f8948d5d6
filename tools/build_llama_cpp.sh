#!/usr/bin/env bash
# Builds llama.cpp's llama-quantize, llama-perplexity and llama-bench for same-run comparisons in the
# benchmark scripts (LLAMA_BIN=…). The source comes from PyPI: the llama-cpp-python sdist vendors
# llama.cpp (0.3.36 vendors commit 0c1e57098, the commit shared/references was measured with).
# Not part of CI. Takes about 10 minutes on 2 cores. Prints the LLAMA_BIN to use.
#   bash tools/build_llama_cpp.sh [DIR]     (default .cache/llama.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/llama.cpp}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$DIR"
command -v cmake >/dev/null || python3 -m pip install -q cmake
if [ ! -d "$DIR/llama_cpp_python-$VERSION" ]; then
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DIR"
  tar xzf "$DIR/llama_cpp_python-$VERSION.tar.gz" -C "$DIR"
fi
SRC="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$SRC/build" -j"$(nproc)" --target llama-quantize llama-perplexity llama-bench >/dev/null
echo "LLAMA_BIN=$(cd "$SRC/build/bin" && pwd)"
