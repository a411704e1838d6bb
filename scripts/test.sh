#!/usr/bin/env bash
# Set-up, build, and run every test (doctest units and CLI tests of the real binary) with
# CTest. GPU tests skip, with their reason, where no GPU is present. Then the reliability jobs
# (docs/reliability.md): the fuzz harnesses replay their committed corpus, and the CPU tests
# that exercise input handling run again under AddressSanitizer + UBSan (preset `asan`).
# ATTN_SANITIZE=0 skips the sanitizer build; ATTN_FUZZ_REPLAY=0 the corpus replay.
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
(cd "$build" && ctest --output-on-failure -j "${ATTN_TEST_JOBS:-1}" "$@")

if [ "${ATTN_FUZZ_REPLAY:-1}" = 1 ]; then
  # The parsers under libFuzzer + ASan + UBSan, every committed input once (seconds); the rest
  # of attn-bench is linked from the build above.
  ATTN_FUZZ_BASE=$build "$root/scripts/fuzz.sh" --replay
fi

if [ "${ATTN_SANITIZE:-1}" = 1 ]; then
  # The sanitizer build leaves out -march=native and CUDA; the subset is the tests of input
  # handling, the runner and the report (the kernels' long numerical tests run above).
  cd "$root"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "${ATTN_JOBS:-$(nproc)}"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "$root/build-asan" && ctest --output-on-failure -j "${ATTN_TEST_JOBS:-1}" \
    -R '^(unit\.test_(spec|spec_strict|tensor_files|report|table_compare|stats|masks|registry_flops|workloads)|cli\.(input_errors|compare_exit_codes|table_formats))$')
  # cli.reliability and cli.run_interrupt are left out here: they wait for slow cases with
  # wall-clock limits that an -O1 sanitized build does not meet.
fi
