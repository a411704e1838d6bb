#!/usr/bin/env bash
# Submits a sweep to Slurm (docs/cluster.md): an array job of N tasks, each running one shard
# of the suite (sweep.sbatch), and a merge job that runs after all of them (merge.sbatch).
#
# usage: scripts/slurm/submit.sh [options] SPEC N OUTDIR [-- more sbatch options for the tasks]
#   --gpus-per-task G   request G GPUs per task (--gres=gpu:G) and run on CUDA
#   --time T            time limit of each task (default 02:00:00)
#   --cpus C            CPUs per task (default 1)
#   --partition P       the partition of both jobs
#   --bin PATH          the attn-bench binary (default: attn-bench on PATH, else scripts/attn-bench)
#   --run-args "ARGS"   more `attn-bench run` options, the same for every task
# Prints the two job ids; the merged report is OUTDIR/merged.json.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gpus=0 time=02:00:00 cpus=1 partition="" bin="" run_args=""
while [ $# -gt 0 ]; do
  case $1 in
    --gpus-per-task) gpus=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --partition) partition=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --run-args) run_args=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
spec=$(realpath "$1") n=$2 out=$(realpath -m "$3"); shift 3
[ "${1:-}" = "--" ] && shift
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "submit: N must be a positive integer, not '$n'" >&2; exit 2; }
[ -f "$spec" ] || { echo "submit: no spec '$spec'" >&2; exit 2; }
[ -n "$bin" ] && bin=$(realpath "$bin")
mkdir -p "$out"
common=(--parsable --chdir "$out")
[ -n "$partition" ] && common+=(--partition "$partition")
# The jobs inherit these from this shell (--export=ALL: values may hold commas, which
# --export=NAME=VALUE lists cannot).
export ATTN_SPEC=$spec ATTN_OUT=$out ATTN_SHARDS=$n ATTN_BIN=$bin ATTN_RUN_ARGS=$run_args
task=(--array "0-$((n - 1))" --time "$time" --cpus-per-task "$cpus" --output "$out/sweep-%A_%a.out")
if [ "$gpus" -gt 0 ]; then task+=(--gres "gpu:$gpus"); export ATTN_DEVICE=cuda; fi
array=$(sbatch "${common[@]}" "${task[@]}" --export ALL "$@" "$here/sweep.sbatch")
array=${array%%;*}
merge=$(sbatch "${common[@]}" --dependency "afterany:$array" --output "$out/merge-%j.out" --export ALL \
        "$here/merge.sbatch")
merge=${merge%%;*}
echo "array job $array ($n tasks), merge job $merge -> $out/merged.json"
