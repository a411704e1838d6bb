#!/usr/bin/env bash
# The validation run of the CUDA kernels on a GPU machine (docs/gpu.md, "Kernels awaiting
# validation on a GPU"): the GPU tests against the float64 reference, the backend conformance
# table, every variant on every backend, compute-sanitizer over the GPU tests, then short
# suite runs with --device cuda. Run it from the repository root next to a portable build:
#   scripts/gpu-validate.sh [BUILD_DIR] [OUT_DIR]        (defaults: build-portable, gpu-validate)
# Exit 0 when every test stage passed; each stage's log is kept in OUT_DIR.
set -uo pipefail
build=${1:-build-portable}
out=${2:-gpu-validate}
mkdir -p "$out"
tests=$build/tests/attn_tests
bin=$build/attn-bench
export PATH=$PATH:/usr/local/cuda/bin
nvidia-smi -L || { echo "gpu-validate: no GPU (nvidia-smi -L failed)" >&2; exit 2; }
status=0
stage() {  # name, command...
  local name=$1; shift
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc ($(grep -E '^\[doctest\] (test cases|assertions)' "$out/$name.log" | tr -s ' ' | tr '\n' ' '))"
  grep -E "ERROR|FATAL" -A6 "$out/$name.log" | cut -c1-200 | head -30
  [ $rc -eq 0 ] || status=1
}
stage cuda-tests "$tests" --test-case='cuda*'
stage conformance "$tests" --source-file='*test_backend_conformance.cpp'
grep -E '^  [a-z_0-9]+: cpu=' "$out/conformance.log" | grep -v 'cuda=[1-9]' | sed 's/^/   no cuda run: /'
stage every-backend "$tests" --source-file='*test_variants_every_backend.cpp'
if command -v compute-sanitizer >/dev/null; then
  stage memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$tests" --test-case='cuda*'
fi
# Suites at small sizes, with the kernels under validation enabled.
export ATTN_CUDA_UNVERIFIED=1
for s in modified masks sparse-prefill linear decode; do
  "$bin" run "suites/$s.yaml" --device cuda --set dtype=bf16 --set 'problem.seq_len=[4096]' \
    -o "$out/$s.json" >"$out/$s.log" 2>&1
  echo "== suite $s: exit $? ($(grep -cE ' ok\*? ' "$out/$s.log") ok, $(grep -c ' skipped ' "$out/$s.log") skipped, $(grep -c ' failed ' "$out/$s.log") failed)"
done
# The energy metric's NVML counter (docs/report-schema.md, energy): one bf16 prefill case.
"$bin" run configs/quick.yaml --device cuda --set dtype=bf16 --set 'problem.seq_len=[8192]' \
  --set 'problem.mode=[prefill]' --set 'variants=[mha]' --set 'metrics={flops: {}, energy: {min_time: 2}}' \
  -o "$out/energy.json" >"$out/energy.log" 2>&1
echo "== energy: exit $? $(python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['cases'][0]['metrics']['energy']; print({k: e.get(k) for k in ('available','reason','watts','joules_per_call','tflop_per_joule','calls','window_s')})" "$out/energy.json" 2>&1)"
exit $status
