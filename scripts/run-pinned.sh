#!/usr/bin/env bash
# Runs several `attn-bench run` jobs at once, each pinned to its own pair of cores with 2
# threads: the development box's core count, on a larger idle host of the same CPU model.
# Used for results/cpu/*: one job per line of JOBS, "name|spec|extra args...".
#   scripts/run-pinned.sh BIN OUTDIR TIMEOUT_S JOBS_FILE
# Each job writes OUTDIR/name.json (incremental, atomically rewritten after every case, so a
# job stopped by TIMEOUT_S keeps its finished cases) and OUTDIR/name.log.
set -u -f  # -f: no globbing of the --set values
bin=$1 out=$2 limit=$3 jobs=$4
mkdir -p "$out"
ncpu=$(nproc)
i=0
while IFS='|' read -r name spec extra; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  c0=$(( (2 * i) % ncpu )); c1=$(( c0 + 1 ))
  # shellcheck disable=SC2086
  ( start=$(date +%s)
    timeout "$limit" taskset -c "$c0,$c1" "$bin" run "$spec" --threads 2 $extra \
      -o "$out/$name.json" > "$out/$name.log" 2>&1
    echo "$name rc=$? cores=$c0,$c1 $(( $(date +%s) - start ))s" >> "$out/jobs.txt" ) &
  i=$(( i + 1 ))
done < "$jobs"
wait
cat "$out/jobs.txt"
