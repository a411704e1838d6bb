#!/usr/bin/env bash
# `attn-bench ab` on a tiny spec with two given binaries: A/A passes and writes a noise
# calibration, a real (test-only) 10x slowdown of one variant is flagged, bad input exits 2.
# The slowdown is large, and the cases are milliseconds long and run on one thread, because a
# loaded machine moves the run median of a sub-millisecond case by up to 10x.
# Also `run --filter` matching nothing and `run --shuffle`. Building commits is not run here
# (a full build); docs/ci.md shows that path.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/tiny.yaml" <<'YAML'
name: tiny-ab
seed: 3
device: cpu
problem: {batch: 1, heads: 4, head_dim: 64, seq_len: 1024, causal: true, mode: prefill}
variants: [mha, {name: gqa, kv_heads: 2}, sqa]
metrics:
  flops: {}
  latency: {warmup: 1, min_samples: 5, max_samples: 15, target_rse: 0.01, max_time: 0.2}
YAML

expect_exit 2 "matches none of the spec's 3 case ids" -- "$bin" run "$tmp/tiny.yaml" --filter nosuchcase -o "$tmp/f.json"
[ ! -e "$tmp/f.json" ] || fail "a report was written for a filter that matches nothing"
expect_exit 2 "ATTN_TEST_SLOWDOWN='mha': expected VARIANT:FRACTION" -- env ATTN_TEST_SLOWDOWN=mha "$bin" run "$tmp/tiny.yaml" -o "$tmp/s.json"
expect_exit 0 "" -- "$bin" run "$tmp/tiny.yaml" --shuffle 5 -q -o "$tmp/shuffled.json"
python3 - "$tmp/shuffled.json" <<'PY' || fail "shuffle seed not recorded"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["meta"]["run"]["shuffle_seed"] == 5 and len(r["cases"]) == 3
PY

expect_exit 2 "neither an executable" -- "$bin" ab "$tmp/no-such-binary" "$bin" "$tmp/tiny.yaml" -o "$tmp/x"
expect_exit 2 "usage: attn-bench ab A B SPEC" -- "$bin" ab "$bin" "$tmp/tiny.yaml"
expect_exit 2 "spec .* not found" -- "$bin" ab "$bin" "$bin" "$tmp/missing.yaml"

# A/A: the same binary twice; no regression, and a calibration of the noise per case.
expect_exit 0 "result: no regression in 3 compared case" -- "$bin" ab --aa "$bin" "$tmp/tiny.yaml" --rounds 2 --threads 1 \
  -o "$tmp/aa" --save-noise "$tmp/noise.json"
for f in A/run-01.json A/run-02.json B/run-01.json B/run-02.json verdict.md verdict.json noise.json; do
  [ -s "$tmp/aa/$f" ] || fail "ab --aa did not write $f"
done
python3 - "$tmp/noise.json" <<'PY' || fail "noise calibration"
import json, sys
n = json.load(open(sys.argv[1]))
assert n["kind"] == "attn-bench noise calibration", n.get("kind")
assert len(n["cases"]) == 3
for c in n["cases"].values():
    assert c["df"] == 2 and c["sigma"] >= 0
PY
expect_exit 2 "already holds runs" -- "$bin" ab --aa "$bin" "$tmp/tiny.yaml" --rounds 1 -o "$tmp/aa"
# The runs of an ab are directories compare reads; the calibration feeds it.
expect_exit 0 "paired by round.*pooled with the calibration" -- "$bin" compare "$tmp/aa/A" "$tmp/aa/B" --noise "$tmp/noise.json"

# A real slowdown: B is the same binary with every mha kernel call busy-waiting nine times
# as long again (ATTN_TEST_SLOWDOWN, test-only). mha is flagged; gqa is not.
printf '#!/bin/sh\nATTN_TEST_SLOWDOWN=mha:9 exec "%s" "$@"\n' "$bin" >"$tmp/slow.sh"
chmod +x "$tmp/slow.sh"
expect_exit 1 "mha/prefill_.* REGRESSED" -- "$bin" ab "$bin" "$tmp/slow.sh" "$tmp/tiny.yaml" --rounds 4 --threads 1 \
  -o "$tmp/slow" --markdown "$tmp/slow.md" --metric latency --metric flops
grep -q "gqa(kv_heads=2)/prefill_.*REGRESSED" "$tmp/slow/verdict.txt" && fail "gqa was not slowed: $(cat "$tmp/slow/verdict.txt")"
grep -q '\*\*REGRESSED\*\*' "$tmp/slow.md" || fail "no REGRESSED in the markdown"
grep -q "attn-bench flops: no regression" "$tmp/slow.md" || fail "the flops gate should pass"
python3 - "$tmp/slow/B/run-01.json" <<'PY' || fail "a slowed report must say so"
import json, sys
assert json.load(open(sys.argv[1]))["meta"]["run"]["test_slowdown"].startswith("mha:9")
PY
echo "ok"
