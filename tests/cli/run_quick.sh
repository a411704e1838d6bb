#!/usr/bin/env bash
# The main job end to end: configs/quick.yaml on the CPU gives a valid report whose cases are ok.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
out=$("$bin" run "$src/configs/quick.yaml" -o "$tmp/r.json" --quiet 2>"$tmp/err") || fail "run exited $?: $(cat "$tmp/err")"
echo "$out" | grep -q "speedup" || fail "no summary table on stdout: $out"
echo "$out" | grep -Eq "^mha +prefill_" || fail "no mha row: $out"
python3 - "$tmp/r.json" <<'PY' || fail "report check failed"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["schema_version"].startswith("1."), r["schema_version"]
assert r["complete"] is True
cases = r["cases"]
assert len(cases) == 20, len(cases)
for c in cases:
    assert c["status"] == "ok", (c["id"], c["status"], c["reason"])
    m = c["metrics"]
    assert m["accuracy"]["pass"] is True, c["id"]
    assert m["latency"]["median"] > 0 and len(m["latency"]["samples"]) >= 5, c["id"]
    assert m["flops"]["dense_equivalent"] > 0
ids = [c["id"] for c in cases]
assert len(set(ids)) == len(ids)
assert r["meta"]["argv"][1] == "run"
assert len(r["meta"]["spec"]["sha256"]) == 64
print("report ok:", len(cases), "cases")
PY
# The same report feeds table and compare.
"$bin" table "$tmp/r.json" --baseline mha >/dev/null || fail "table failed"
"$bin" compare "$tmp/r.json" "$tmp/r.json" >/dev/null || fail "compare r r exited $?"
echo "ok"
