#!/usr/bin/env bash
# Ctrl-C keeps the finished cases: the report on disk parses, is marked incomplete and holds
# every case that finished before the signal.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/slow.yaml" <<'YAML'
problem: {heads: 4, head_dim: 64, seq_len: [512, 513, 514, 515, 516, 517, 518, 519]}
variants: [mha]
metrics: {latency: {min_samples: 200, max_samples: 200, target_rse: 0.0, max_time: 100}}
YAML
"$bin" run "$tmp/slow.yaml" -o "$tmp/r.json" --quiet >/dev/null 2>&1 &
pid=$!
# Wait for at least one finished case, then interrupt.
for _ in $(seq 1 100); do
  if [ -f "$tmp/r.json" ] && python3 -c "import json,sys; sys.exit(0 if len(json.load(open('$tmp/r.json'))['cases'])>=1 else 1)" 2>/dev/null; then break; fi
  sleep 0.1
done
kill -INT $pid
wait $pid; rc=$?
[ "$rc" -eq 130 ] || fail "expected exit 130 after SIGINT, got $rc"
python3 - "$tmp/r.json" <<'PY' || fail "report after interrupt is not valid"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["complete"] is False
assert 1 <= len(r["cases"]) < 8, len(r["cases"])
assert all(c["status"] == "ok" for c in r["cases"])
print("kept", len(r["cases"]), "finished cases")
PY
[ ! -e "$tmp/r.json.tmp" ] || fail "temp file left behind"
echo "ok"
