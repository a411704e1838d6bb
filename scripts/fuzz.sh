#!/usr/bin/env bash
# Fuzz the input parsers with libFuzzer (clang-14 from Debian; docs/reliability.md).
#   scripts/fuzz.sh HARNESS SECONDS   fuzz one harness for SECONDS (spec | npy | safetensors | report)
#   scripts/fuzz.sh all SECONDS       every harness, one after the other
#   scripts/fuzz.sh --replay          run every committed input (fuzz/corpus, fuzz/regressions)
#                                     once through every harness: seconds, for CI
# The harnesses and the parser sources they exercise (spec, tensor files, report reader) are
# compiled with -fsanitize=fuzzer,address,undefined; the rest of attn-bench (variants,
# kernels) comes uninstrumented from a CPU build, $ATTN_FUZZ_BASE (default build-fuzz/base,
# configured here). Findings land in build-fuzz/findings/HARNESS/; a fresh corpus grows in
# build-fuzz/corpus/HARNESS/ from the committed seeds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-fuzz
harnesses=(spec npy safetensors report)
usage() { echo "usage: scripts/fuzz.sh {spec|npy|safetensors|report|all} SECONDS | --replay" >&2; exit 2; }
[ $# -ge 1 ] || usage

# clang-14 and its runtime (libFuzzer, ASan, UBSan) from Debian, installed when missing.
need=()
command -v clang++-14 >/dev/null || need+=(clang-14)
[ -n "$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] || need+=(libclang-rt-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz: installing ${need[*]}"
  sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The uninstrumented rest of attn-bench: a CPU-only library build.
base=${ATTN_FUZZ_BASE:-$out/base}
if [ ! -f "$base/libattn_harness.a" ] || [ -z "${ATTN_FUZZ_BASE:-}" ]; then
  if [ ! -f "$base/build.ninja" ]; then
    cmake -S "$root" -B "$base" -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTN_CUDA=OFF \
      -DATTN_NATIVE=OFF -DATTN_BUILD_TESTS=OFF >/dev/null
  fi
  cmake --build "$base" --target attn_harness -j "${ATTN_JOBS:-$(nproc)}"
fi

# Instrumented: the harness and the parsers it fuzzes (these objects take precedence over the
# library's copies at link time).
parsers=(src/spec/spec.cpp src/core/params.cpp src/core/problem.cpp src/core/errors.cpp
         src/workloads/tensor_file.cpp src/analysis/table.cpp src/analysis/compare.cpp src/analysis/stats.cpp)
flags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I"$root/src" -I"$root/kernels" -I"$root/fuzz" -I/usr/include/eigen3)
mkdir -p "$out/bin" "$out/obj"
build_harness() {
  local h=$1 objs=() src obj
  for src in "${parsers[@]}"; do
    obj=$out/obj/$(echo "$src" | tr / _).o
    if [ ! -f "$obj" ] || [ "$root/$src" -nt "$obj" ]; then
      clang++-14 "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" -c "$root/$src" -o "$obj"
    fi
    objs+=("$obj")
  done
  local bin=$out/bin/fuzz_$h
  # One static library per layer (docs/architecture.md); a base built with CUDA has its backend.
  local libs=() lib
  for lib in harness variants backends cuda kernels_cpu workloads reference core; do
    [ -f "$base/libattn_$lib.a" ] && libs+=("$base/libattn_$lib.a")
  done
  if [ ! -x "$bin" ] || [ "$root/fuzz/fuzz_$h.cpp" -nt "$bin" ] || [ -n "$(find "${objs[@]}" "${libs[@]}" -newer "$bin" 2>/dev/null)" ]; then
    local cuda=()
    [ -f "$base/libattn_cuda.a" ] && cuda=(-L/usr/local/cuda/lib64 -lcudart)
    clang++-14 "${flags[@]}" "$root/fuzz/fuzz_$h.cpp" "${objs[@]}" -Wl,--start-group "${libs[@]}" -Wl,--end-group "${cuda[@]}" \
      -lyaml-cpp -lfmt -lgomp -lpthread -ldl -o "$bin"
  fi
}

# One harness's committed inputs: its seed corpus and the regressions (every finding, fixed).
committed() { echo "$root/fuzz/corpus/$1"; [ -d "$root/fuzz/regressions/$1" ] && echo "$root/fuzz/regressions/$1"; return 0; }

if [ "$1" = "--replay" ]; then
  for h in "${harnesses[@]}"; do
    build_harness "$h"
    mapfile -t dirs < <(committed "$h")
    n=$(find "${dirs[@]}" -type f | wc -l)
    # -runs=0 over directories: every file once. Exit non-zero on any crash, leak or timeout.
    mkdir -p "$out/findings/$h"
    "$out/bin/fuzz_$h" -runs=0 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/findings/$h/" \
      "${dirs[@]}" 2>"$out/replay_$h.log" ||
      { tail -40 "$out/replay_$h.log"; echo "fuzz replay: $h FAILED" >&2; exit 1; }
    echo "fuzz replay: $h: $n committed inputs, no crash, leak or timeout"
  done
  exit 0
fi

[ $# -eq 2 ] || usage
secs=$2
case $1 in all) run=("${harnesses[@]}") ;; spec|npy|safetensors|report) run=("$1") ;; *) usage ;; esac
for h in "${run[@]}"; do
  build_harness "$h"
  mkdir -p "$out/corpus/$h" "$out/findings/$h"
  mapfile -t dirs < <(committed "$h")
  dict=(); [ -f "$root/fuzz/$h.dict" ] && dict=(-dict="$root/fuzz/$h.dict")
  echo "fuzz: $h for ${secs}s (corpus $out/corpus/$h, findings $out/findings/$h)"
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: unbounded growth is a finding.
  (cd "$out/findings/$h" && "$out/bin/fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$out/findings/$h/" \
    -max_len=8192 -print_final_stats=1 "${dict[@]}" "$out/corpus/$h" "${dirs[@]}") 2>&1 | tail -25
done
