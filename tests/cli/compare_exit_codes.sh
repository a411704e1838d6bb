#!/usr/bin/env bash
# `attn-bench compare` exit codes (docs/architecture.md): 0 no regression, 1 regression, 2 bad input.
# Run by CTest as: bash compare_exit_codes.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: compare_exit_codes.sh <attn-bench> <source-dir>}
SRC=${2:?usage: compare_exit_codes.sh <attn-bench> <source-dir>}
DATA="$SRC/tests/data"
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
fails=0

# expect NAME WANTED_RC [PATTERN] -- ARGS... : run the binary, check its exit code and that
# stdout+stderr contain PATTERN (a grep -E regex; "" for none).
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  "$BIN" "$@" >"$TMP/out" 2>&1
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $name: exit $rc, expected $want; command: $BIN $*"
    sed 's/^/    | /' "$TMP/out" | head -40
    fails=$((fails + 1))
    return
  fi
  if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$TMP/out"; then
    echo "FAIL: $name: exit $rc as expected, but the output lacks /$pattern/"
    sed 's/^/    | /' "$TMP/out" | head -40
    fails=$((fails + 1))
    return
  fi
  echo "ok: $name (exit $rc)"
}

A="$DATA/report_a.json"
SLOW="$DATA/report_slow.json"

expect "a vs a: no regression" 0 "result: no regression" -- compare "$A" "$A"
# One report per side: run-to-run variance is unknown, so 1.3x is within the noise floor.
expect "a vs slow, one run each: floor" 0 "run-to-run variance is unknown" -- compare "$A" "$SLOW"
expect "a vs slow without the floor: regression" 1 \
  "gqa\(kv_heads=4\)/prefill_b1_h16_kv16_d64_q4096_k4096_full_f32 .*REGRESSED" \
  -- compare "$A" "$SLOW" --noise-floor 0
expect "slow vs a: faster, exit 0" 0 "faster" -- compare "$SLOW" "$A" --noise-floor 0
expect "a vs slow with --max-slowdown 50%" 0 "" -- compare "$A" "$SLOW" --max-slowdown 50% --noise-floor 0
expect "recall a vs a" 0 "no significance test" -- compare "$A" "$A" --metric recall
expect "error a vs a" 0 "no significance test" -- compare "$A" "$A" --metric error
expect "missing file" 2 "cannot read report" -- compare "$A" "$TMP/missing.json"

printf '{"schema_version": "1.0.0", "cases": [' >"$TMP/garbage.json"
expect "garbage json" 2 "not valid JSON" -- compare "$A" "$TMP/garbage.json"
echo '{"hello": "world"}' >"$TMP/not_report.json"
expect "json that is not a report" 2 "not an attn-bench report" -- compare "$TMP/not_report.json" "$A"
sed 's/"schema_version": "1.0.0"/"schema_version": "2.0.0"/' "$A" >"$TMP/v2.json"
expect "schema major mismatch" 2 "schema_version 2.0.0" -- compare "$A" "$TMP/v2.json"
expect "unknown metric" 2 "did you mean 'latency'" -- compare "$A" "$A" --metric latncy
expect "ambiguous --max-slowdown" 2 "ambiguous" -- compare "$A" "$A" --max-slowdown 5
expect "missing operand" 2 "" -- compare "$A"

# No case id in common: nothing was checked, which is not a pass.
sed 's/"id": "/"id": "renamed\//' "$A" >"$TMP/renamed.json"
expect "no matched cases" 2 "no case was compared" -- compare "$A" "$TMP/renamed.json"

# Reports made under other conditions are refused, or compared with loud warnings.
sed 's/"threads": 2/"threads": 1/' "$A" >"$TMP/threads1.json"
expect "threads differ: refused" 2 "meta.run.threads: .2. in BASE" -- compare "$A" "$TMP/threads1.json"
expect "threads differ: allowed" 0 "WARNING: not comparable: meta.run.threads" \
  -- compare "$A" "$TMP/threads1.json" --allow-mismatch

# Directories of runs; markdown and JSON for a pull-request comment.
mkdir -p "$TMP/base" "$TMP/new"
for i in 1 2 3; do cp "$A" "$TMP/base/run-$i.json"; cp "$A" "$TMP/new/run-$i.json"; done
expect "three runs a side" 0 "3/3 +24/24" -- compare "$TMP/base" "$TMP/new" --markdown "$TMP/c.md" --json "$TMP/c.json"
grep -q "| case | runs | n |" "$TMP/c.md" || { echo "FAIL: no markdown table"; fails=$((fails + 1)); }
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['exit_code'] == 0 and len(j['rows']) == 6" \
  "$TMP/c.json" || { echo "FAIL: JSON comparison"; fails=$((fails + 1)); }
mkdir -p "$TMP/empty"
expect "empty directory" 2 "without \*.json reports" -- compare "$TMP/empty" "$A"

# Deterministic metrics.
expect "flops a vs a" 0 "no regression" -- compare "$A" "$A" --metric flops
sed 's/"executed": 4294967296.0/"executed": 4300000000.0/' "$A" >"$TMP/flops.json"
expect "flops rise" 1 "REGRESSED" -- compare "$A" "$TMP/flops.json" --metric flops
expect "density a vs a" 0 "" -- compare "$A" "$A" --metric density

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all compare exit-code checks passed"
exit 0
