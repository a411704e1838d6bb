#!/usr/bin/env bash
# Configure (once) and build attn-bench in build/ (or $ATTN_BUILD_DIR). Extra arguments go to
# the CMake configure step, e.g. scripts/build.sh -DATTN_CUDA=OFF. ATTN_TARGETS="a b" builds
# only those targets (scripts/attn-bench builds just attn-bench); the default is everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}
jobs=${ATTN_JOBS:-$(nproc)}
if [ ! -f "$build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
targets=()
for t in ${ATTN_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
