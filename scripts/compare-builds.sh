#!/usr/bin/env bash
# Run every suite (shrunk to minutes) with two attn-bench binaries and check that their
# deterministic results — FLOPs, densities, selections' recall, output errors, accuracy, NIAH —
# are identical, case by case (scripts/compare_deterministic.py), and print what
# `attn-bench compare --metric recall` and `--metric error` say. For refactorings that must not
# change results. Timing is not compared here: use `attn-bench ab --binaries` for speed.
#   scripts/compare-builds.sh OLD_BIN NEW_BIN OUTDIR [SUITE.yaml ...]   (default: suites/*.yaml)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 3 ] || { echo "usage: scripts/compare-builds.sh OLD_BIN NEW_BIN OUTDIR [SUITE.yaml ...]" >&2; exit 2; }
old=$1 new=$2 out=$3
shift 3
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=("$root"/suites/*.yaml)
mkdir -p "$out"
status=0
for suite in "${suites[@]}"; do
  name=$(basename "$suite" .yaml)
  # Shrunk: short sequences, one latency sample, one small NIAH grid. The real-capture suite
  # keeps its file's N.
  set_args=()
  case $name in
    sparse-prefill-real) ;;
    mixformer) set_args+=(--set 'problem.seq_len=[452]') ;;
    decode*) set_args+=(--set 'problem.seq_len=[4096]') ;;
    niah*) set_args+=(--set 'metrics.niah.lengths=[1k,2k]' --set 'metrics.niah.trials=1'
                      --set 'metrics.niah.depths=[0.25,0.75]') ;;
    *) set_args+=(--set 'problem.seq_len=[2048]') ;;
  esac
  if grep -q '^  latency:' "$suite"; then
    set_args+=(--set metrics.latency.warmup=0 --set metrics.latency.min_samples=1
               --set metrics.latency.max_samples=1)
  fi
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    (cd "$root" && "$bin" run "$suite" "${set_args[@]}" -o "$out/$name.$side.json" --quiet --yes \
       >"$out/$name.$side.log" 2>&1) || echo "$name ($side): exit $? (see $out/$name.$side.log)"
  done
  echo "== $name"
  python3 "$root/scripts/compare_deterministic.py" "$out/$name.old.json" "$out/$name.new.json" | tail -5 || status=1
  for metric in recall error; do
    "$new" compare "$out/$name.old.json" "$out/$name.new.json" --metric $metric --allow-mismatch \
      2>&1 | tail -1 | sed "s/^/   compare --metric $metric: /"
  done
done
exit $status
