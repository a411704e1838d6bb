#!/usr/bin/env bash
# Set-up (with the test-only packages), build, and run every test (doctest units and CLI tests
# of the real binary) with CTest. GPU tests skip, with their reason, where no GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}
ATTN_TEST_PACKAGES=1 "$root/scripts/setup.sh"
# A build dir that scripts/attn-bench configured without CUDA for want of a GPU gets the CUDA
# backend back where nvcc exists: the tests cover it (they skip at run time without a GPU).
if grep -q '^ATTN_CUDA_OFF_NO_GPU:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null &&
   { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  "$root/scripts/build.sh" -DATTN_CUDA=AUTO -DATTN_CUDA_OFF_NO_GPU=OFF
else
  "$root/scripts/build.sh"
fi
cd "$build"
ctest --output-on-failure -j "${ATTN_TEST_JOBS:-1}" "$@"
