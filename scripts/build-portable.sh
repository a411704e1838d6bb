#!/usr/bin/env bash
# Build a portable attn-bench for NVIDIA Hopper (sm_90a: H100, H200) on any x86-64 Linux
# machine with nvcc, no GPU needed. The CUDA runtime, yaml-cpp and the C++ runtime are linked
# statically, and NVML is loaded at run time, so the binary runs on a machine that has only the
# NVIDIA driver — and still starts (CPU backend, GPU cases skipped with the reason) where no
# driver exists. See docs/gpu.md.
#
#   scripts/build-portable.sh                 # attn-bench, the test binary and the kernel bench
#   scripts/build-portable.sh attn-bench      # only the named targets
#   JOBS=2 scripts/build-portable.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "build-portable: nvcc not found (install the CUDA toolkit, 12.8 or newer; 13.0 tested)" >&2
  exit 2
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(attn-bench attn_tests attn_cuda_bench)
cmake --preset portable
cmake --build build-portable -j"${JOBS:-$(nproc)}" --target "${targets[@]}"
echo
echo "built in build-portable/:"
for t in "${targets[@]}"; do
  f=$(find build-portable -maxdepth 2 -type f -name "$t" -perm -u+x | head -1)
  [ -n "$f" ] && echo "  $f"
done
echo "copy build-portable/attn-bench to the GPU machine and run: ./attn-bench env"
