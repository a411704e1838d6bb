#!/usr/bin/env bash
# Scale out (docs/cluster.md): run --shard over 4 shards of suites/masks.yaml (shortened with
# --set) plus merge equals the single run; merge refuses what it must, naming why; --shard auto
# reads the Slurm array variables; --workers 2 gives the same results as a plain run; --gpus
# without a GPU is an input error saying why; a 100,000-case spec validates in seconds.
set -u
bin=$1 src=$2 tbin=${3:-}
. "$src/tests/cli/common.bash"
command -v python3 >/dev/null || { echo "skip: python3 is needed to read the JSON"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
same() { python3 "$src/scripts/compare_deterministic.py" "$1" "$2" || fail "$2 differs from $1"; }

spec=$src/suites/masks.yaml
set_=(--set 'problem.seq_len=[512]' --set 'metrics.latency.max_time=0.2')
"$bin" run "$spec" "${set_[@]}" -o "$tmp/single.json" --quiet >/dev/null || fail "single run"
for i in 0 1 2 3; do
  "$bin" run "$spec" "${set_[@]}" --shard "$i/4" -o "$tmp/shard$i.json" --quiet >/dev/null || fail "shard $i"
done
python3 - "$tmp" <<'PY' || fail "shards"
import json, sys
t = sys.argv[1]
ids, costs = [], []
for i in range(4):
    d = json.load(open(f"{t}/shard{i}.json"))
    sh = d["meta"]["run"]["shard"]
    assert sh["index"] == i and sh["count"] == 4 and sh["of_cases"] == 6, sh
    assert sh["cases"] == len(d["cases"]), sh
    ids += [c["id"] for c in d["cases"]]
    costs.append(sh["cost_us"])
single = [c["id"] for c in json.load(open(f"{t}/single.json"))["cases"]]
assert sorted(ids) == sorted(single), (ids, single)
assert sum(costs) == sh["total_cost_us"]
PY
echo "ok: 4 shards cover the 6 cases once, each recording its shard and cost"
expect_exit 0 'merged 4 reports \(4 shards\)' -- "$bin" merge "$tmp"/shard{3,1,0,2}.json -o "$tmp/merged.json"
same "$tmp/single.json" "$tmp/merged.json"
for m in recall error; do
  expect_exit 0 'no regression|no change|identical' -- "$bin" compare "$tmp/single.json" "$tmp/merged.json" --metric $m
done
expect_exit 0 'streaming' -- "$bin" table "$tmp/merged.json"
expect_exit 0 'wrote' -- "$bin" report "$tmp/merged.json" -o "$tmp/merged.html"
python3 - "$tmp/merged.json" "$tmp/single.json" <<'PY' || fail "merged order or provenance"
import json, sys
m, s = (json.load(open(p)) for p in sys.argv[1:])
assert [c["id"] for c in m["cases"]] == [c["id"] for c in s["cases"]], "not in the spec's order"
src = m["meta"]["merge"]["sources"]
assert len(src) == 4 and all(len(x["sha256"]) == 64 and "shard" in x for x in src)
assert m["schema_version"] == s["schema_version"] and "shard" not in m["meta"]["run"]
PY
echo "ok: merge == single run, in the spec's order, with each source's provenance"

# What merge refuses.
expect_exit 2 'missing shard 2 of 4' -- "$bin" merge "$tmp"/shard{0,1,3}.json -o "$tmp/m.json"
expect_exit 2 'shard 1/4 is given twice' -- "$bin" merge "$tmp"/shard{0,1,1,2,3}.json -o "$tmp/m.json"
expect_exit 2 'is a shard but .* is not' -- "$bin" merge "$tmp/single.json" "$tmp/shard0.json" -o "$tmp/m.json"
"$bin" run "$spec" --set 'problem.seq_len=[256]' --set 'metrics.latency.max_time=0.2' --shard 0/4 \
  -o "$tmp/other.json" --quiet >/dev/null || fail "other shard"
expect_exit 2 'not the same cases' -- "$bin" merge "$tmp"/shard{0,1,2}.json "$tmp/other.json" -o "$tmp/m.json"
printf 'problem: {heads: 2, head_dim: 16, seq_len: [32, 64]}\nvariants: [mha]\nmetrics: [flops]\n' > "$tmp/small.yaml"
"$bin" run "$tmp/small.yaml" --shard 0/2 -o "$tmp/small0.json" --quiet >/dev/null || fail "small shard"
expect_exit 2 'of another spec' -- "$bin" merge "$tmp/shard0.json" "$tmp/small0.json" -o "$tmp/m.json"
python3 - "$tmp/shard3.json" "$tmp/v3.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["meta"]["tool"]["version"] = "0.0.9"; json.dump(d, open(sys.argv[2], "w"))
PY
expect_exit 2 'written by attn-bench 0.0.9.*--allow-mixed' -- "$bin" merge "$tmp"/shard{0,1,2}.json "$tmp/v3.json" -o "$tmp/m.json"
expect_exit 0 'merged 4' -- "$bin" merge --allow-mixed "$tmp"/shard{0,1,2}.json "$tmp/v3.json" -o "$tmp/mixed.json"
python3 - "$tmp/shard2.json" "$tmp/dup.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["cases"].append(d["cases"][0]); json.dump(d, open(sys.argv[2], "w"))
PY
expect_exit 2 "case '.*' is in both" -- "$bin" merge "$tmp"/shard{0,1}.json "$tmp/dup.json" "$tmp/shard3.json" -o "$tmp/m.json"
python3 - "$tmp/shard2.json" "$tmp/inc.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["complete"] = False; json.dump(d, open(sys.argv[2], "w"))
PY
expect_exit 2 'is incomplete' -- "$bin" merge "$tmp"/shard{0,1}.json "$tmp/inc.json" "$tmp/shard3.json" -o "$tmp/m.json"
expect_exit 2 'is one of the inputs' -- "$bin" merge "$tmp"/shard{0,1,2,3}.json -o "$tmp/shard0.json"

# --shard errors and --shard auto.
expect_exit 2 'below the count' -- "$bin" run "$tmp/small.yaml" --shard 2/2 --dry-run
expect_exit 2 'expected I/N' -- "$bin" run "$tmp/small.yaml" --shard x --dry-run
expect_exit 2 'not inside a Slurm array job' -- env -u SLURM_ARRAY_TASK_ID "$bin" run "$tmp/small.yaml" --shard auto --dry-run
expect_exit 0 'shard 1/2: 1 of 2 cases' -- env SLURM_ARRAY_TASK_ID=8 SLURM_ARRAY_TASK_MIN=7 SLURM_ARRAY_TASK_MAX=8 \
  SLURM_ARRAY_TASK_COUNT=2 "$bin" run "$tmp/small.yaml" --shard auto --dry-run
expect_exit 2 'not with --shard' -- "$bin" run "$tmp/small.yaml" --shard 0/2 --shuffle 3 --dry-run

# The worker pool on the CPU: the same results as a plain run, in the spec's order.
"$bin" run "$spec" "${set_[@]}" --workers 2 -o "$tmp/pool.json" --quiet >/dev/null || fail "--workers 2"
same "$tmp/single.json" "$tmp/pool.json"
python3 - "$tmp/pool.json" "$tmp/single.json" <<'PY' || fail "pool report"
import json, sys
p, s = (json.load(open(x)) for x in sys.argv[1:])
assert [c["id"] for c in p["cases"]] == [c["id"] for c in s["cases"]]
pool = p["meta"]["run"]["pool"]
assert pool["kind"] == "cpu" and len(pool["workers"]) == 2, pool
assert all(c["isolation"]["worker"] in pool["workers"] for c in p["cases"])
PY
echo "ok: --workers 2 == plain run"
# A crash or a hang in one worker fails that case only; the other worker goes on.
if [ -n "$tbin" ] && [ -x "$tbin" ] && [ "$(nproc)" -ge 2 ]; then
  cat > "$tmp/fault.yaml" <<'YAML'
problem: {heads: 2, head_dim: 16, seq_len: [32, 64]}
variants:
  - mha
  - {name: fault, label: segv, fault: segv, at_kv_len: 64}
  - {name: fault, label: hang, fault: hang, at_kv_len: 32}
metrics: [flops, accuracy]
YAML
  expect_exit 1 '' -- "$tbin" run "$tmp/fault.yaml" --workers 2 --timeout 3 -o "$tmp/fault.json" --quiet
  python3 - "$tmp/fault.json" <<'PY' || fail "--workers fault report"
import json, sys
r = json.load(open(sys.argv[1]))
by = {c["id"].split("/")[0] + "@" + str(c["problem"]["kv_len"]): c for c in r["cases"]}
assert r["complete"] and len(by) == 6, sorted(by)
assert by["mha@32"]["status"] == by["mha@64"]["status"] == by["segv@32"]["status"] == by["hang@64"]["status"] == "ok"
assert by["segv@64"]["status"] == "failed" and "signal 11" in by["segv@64"]["reason"]
assert by["hang@32"]["status"] == "failed" and "timed out after 3 s" in by["hang@32"]["reason"]
assert [c["index"] for c in r["cases"]] == list(range(6))
PY
  echo "ok: --workers 2: a segfault and a hang fail their own cases only"
fi
ncpu=$(nproc)
expect_exit 2 'each worker needs its own' -- "$bin" run "$tmp/small.yaml" --workers $((ncpu + 1)) -o "$tmp/w.json"
expect_exit 2 'CPU workers need --device cpu' -- "$bin" run "$tmp/small.yaml" --workers 2 --device cuda -o "$tmp/w.json"

# --gpus without a usable GPU (this build or this machine): exit 2, naming why.
if "$bin" env 2>/dev/null | grep -q '^gpu: *none usable'; then
  expect_exit 2 '--gpus all: no usable CUDA device: ' -- "$bin" run "$tmp/small.yaml" --gpus all -o "$tmp/g.json"
  expect_exit 2 '--gpus 0,1: no usable CUDA device: ' -- "$bin" run "$tmp/small.yaml" --gpus 0,1 -o "$tmp/g.json"
fi
expect_exit 2 'not with --device cpu' -- "$bin" run "$tmp/small.yaml" --gpus all --device cpu -o "$tmp/g.json"

# A 100,000-case spec validates in seconds (lazy expansion; the bound is loose for a busy machine).
python3 - "$tmp/big.yaml" <<'PY'
import sys
seq = ",".join(str(256 + i) for i in range(5000))
open(sys.argv[1], "w").write(f"""name: big
problem: {{heads: 8, head_dim: 64, seq_len: [{seq}], causal: [false, true]}}
dtype: [f32, bf16]
variants: [mha, mqa, {{name: gqa, kv_heads: [1, 2, 4]}}]
metrics: [flops, accuracy]
""")
PY
start=$(date +%s.%N)
expect_exit 0 'valid, 100000 cases' -- "$bin" validate "$tmp/big.yaml" --show 1
took=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
python3 -c "import sys; sys.exit(0 if $took < 30 else 1)" || fail "validate of 100,000 cases took ${took}s"
expect_exit 0 'shard 5/16: 6250 of 100000 cases' -- "$bin" run "$tmp/big.yaml" --shard 5/16 --dry-run
echo "ok: 100,000 cases validated in ${took}s"
