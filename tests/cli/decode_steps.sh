#!/usr/bin/env bash
# Multi-step decode and the decode selection variants through the real binary (docs/decode.md):
# every case ok with accuracy in tolerance, per-step latency and FLOPs, plan stats, recall, the
# ecost metric; `steps` refused outside decode with the field named (exit 2).
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/s.yaml" <<'YAML'
name: decode-steps
seed: 3
input: {kind: structured}
problem: {heads: 8, kv_heads: 2, head_dim: 64, seq_len: 3001, mode: decode, steps: 6}
variants:
  - gqa
  - {name: tokenselect, top_k: 256, n_local: 64, n_init: 16}
  - {name: recycled, recycle_k: 256, stride: 3}
  - {name: spatten, important: 128, recent: 64, msb_bits: 4}
  - {name: landmark, block_size: 32, top_k: 8}
  - {name: kinetics, topk_blocks: 16}
  - {name: retrieval, index_queries: 64}
  - {name: infiniretri, chunk: 512, keep: 256}
metrics:
  flops: {}
  accuracy: {rows: 48}
  recall: {queries: all}
  latency: {warmup: 0, min_samples: 2, max_samples: 2}
  ecost: {}
baseline: gqa
YAML
"$bin" run "$tmp/s.yaml" -o "$tmp/r.json" --quiet >/dev/null 2>"$tmp/err" || fail "run exited $?: $(cat "$tmp/err")"
python3 - "$tmp/r.json" <<'PY' || fail "report check failed"
import json, sys
r = json.load(open(sys.argv[1]))
cases = r["cases"]
assert len(cases) == 8, len(cases)
for c in cases:
    assert c["status"] == "ok", (c["id"], c["status"], c["reason"])
    assert c["id"].endswith("_s6"), c["id"]
    assert c["problem"]["steps"] == 6 and c["shape"]["q_len"] == 6, c["id"]
    m = c["metrics"]
    assert m["accuracy"]["pass"] is True, c["id"]
    ps = m["latency"]["per_step"]
    assert ps["steps"] == 6 and abs(ps["median"] * 6 - m["latency"]["median"]) < 1e-12, c["id"]
    assert m["flops"]["per_step"]["steps"] == 6
    assert 0 < m["recall"]["mass_recall"]["mean"] <= 1 + 1e-9, c["id"]
    assert m["ecost"]["case"]["ratio"] > 0
    if c["variant"] != "gqa":
        assert m["flops"]["plan_stats"]["keys_per_step_per_kv_head"] > 0, c["id"]
        assert m["recall"]["density"] < 1, c["id"]
retr = [c for c in cases if c["variant"] == "retrieval"][0]
assert retr["metrics"]["flops"]["plan_stats"]["index_queries"] == 64
assert 0 < retr["metrics"]["flops"]["plan_stats"]["scanned_fraction"] < 1
print("report ok:", len(cases), "cases")
PY
expect_exit 2 "problem.steps.*needs mode: decode" -- "$bin" validate "$tmp/s.yaml" --set problem.mode=prefill
expect_exit 2 "recycled.stride = 0: must be >= 1" -- "$bin" validate "$tmp/s.yaml" --set 'variants=[gqa, {name: recycled, stride: 0}]'
echo "ok"
