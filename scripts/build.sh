#!/usr/bin/env bash
# Configure (once) and build attn-bench in build/ (or $ATTN_BUILD_DIR). Extra arguments go to
# the CMake configure step, e.g. scripts/build.sh -DATTN_CUDA=OFF.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}
jobs=${ATTN_JOBS:-$(nproc)}
if [ ! -f "$build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$build" -j "$jobs"
