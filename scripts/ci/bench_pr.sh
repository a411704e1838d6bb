#!/usr/bin/env bash
# The pull-request latency gate (docs/ci.md): build this checkout (the head), then let
# `attn-bench ab` build the base commit in a temporary worktree and run base and head in
# interleaved ABBA rounds on a small CPU spec. The markdown verdict goes to the job summary
# ($GITHUB_STEP_SUMMARY when set, else $ATTN_AB_OUT/verdict.md); the exit code is ab's:
# 0 no regression, 1 a regression, 2 bad input, 3 a build or run failed.
#
#   scripts/ci/bench_pr.sh [BASE_REF] [SPEC]
#     BASE_REF  default: origin/$GITHUB_BASE_REF on a pull request, else HEAD~1
#     SPEC      default: configs/ci.yaml
#   Environment: ATTN_AB_ARGS extra arguments for ab (e.g. "--rounds 4 --max-slowdown 10%"),
#   ATTN_AB_OUT the output directory (default results/ab-pr).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ -n "${1:-}" ]; then base=$1
elif [ -n "${GITHUB_BASE_REF:-}" ]; then base=origin/$GITHUB_BASE_REF
else base=HEAD~1
fi
spec=${2:-configs/ci.yaml}
out=${ATTN_AB_OUT:-results/ab-pr}
base_sha=$(git rev-parse --verify "$base^{commit}") || { echo "bench_pr: '$base' is not a commit" >&2; exit 2; }

# The head is this checkout: build it once and use that binary as ab's B side.
scripts/build.sh -DATTN_CUDA=OFF -DATTN_BUILD_TESTS=OFF >&2
head_bin=${ATTN_BUILD_DIR:-$root/build}/attn-bench

rm -rf "$out"
rc=0
# shellcheck disable=SC2086
"$head_bin" ab "$base_sha" "$head_bin" "$spec" -o "$out" --metric latency --metric flops \
  ${ATTN_AB_ARGS:-} || rc=$?
if [ -f "$out/verdict.md" ]; then
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$out/verdict.md" >>"$GITHUB_STEP_SUMMARY"
  else
    echo "bench_pr: markdown verdict in $out/verdict.md" >&2
  fi
fi
exit $rc
