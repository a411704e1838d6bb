#!/usr/bin/env bash
# attn-bench inspect: the structured input shows sinks and locality where its knobs put them;
# the committed slice of the real capture gives its documented statistics; bad files exit 2.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
command -v python3 >/dev/null || { echo "skip: python3 is needed to read the JSON"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
spec=$src/tests/data/specs/inspect_structured.yaml

# Text: one row per head, a mean row and the sink ratio.
out=$("$bin" inspect "$spec" 2>&1) || fail "inspect exited $?: $out"
echo "$out" | grep -Eq "^ +mean " || fail "no mean row: $out"
echo "$out" | grep -q "Sink_0^0.3 = " || fail "no sink ratio: $out"
[ "$(echo "$out" | grep -Ec '^ +[0-3] ')" -eq 4 ] || fail "expected 4 head rows: $out"

# mean STAT under --set overrides, read from --json.
stat() {
  local what=$1; shift
  "$bin" inspect "$spec" --json --rows 64 "$@" | python3 -c "import json,sys; print(json.load(sys.stdin)['problems'][0]['mean']['$what'])"
}
gt() { python3 -c "import sys; sys.exit(0 if float('$1') > float('$2') else 1)"; }
s0=$(stat first_mass --set input.sink_strength=0) || fail "inspect --json failed"
s8=$(stat first_mass --set input.sink_strength=8)
s12=$(stat first_mass --set input.sink_strength=12)
gt "$s8" "$s0" && gt "$s12" "$s8" && gt "$s12" 0.5 || fail "sink strength 0/8/12 gave first-token mass $s0/$s8/$s12"
echo "ok: first-token mass $s0 -> $s8 -> $s12 as sink_strength goes 0 -> 8 -> 12"
l0=$(stat local_mass --set input.locality=0 --set input.sinks=0 --set input.heavy_hitters=0)
l9=$(stat local_mass --set input.locality=9 --set input.sinks=0 --set input.heavy_hitters=0)
gt "$l9" 0.5 && gt "$l9" "$(python3 -c "print(4*$l0)")" || fail "locality 0/9 gave local-128 mass $l0/$l9"
echo "ok: local-128 mass $l0 -> $l9 as locality goes 0 -> 9"

# The real slice (tests/data/real/README.md): every row of the second half.
cd "$src" || fail "no source dir"
"$bin" inspect tests/data/specs/real_slice.yaml --rows 0 --json > "$tmp/real.json" || fail "inspect of the real slice failed"
python3 - "$tmp/real.json" <<'PY' || fail "real slice statistics differ from tests/data/real/README.md"
import json, sys
p = json.load(open(sys.argv[1]))["problems"][0]
m = p["mean"]
want = {"entropy": 3.56, "local_mass": 0.84, "top1_mass": 0.61, "top10_mass": 0.91}
for k, v in want.items():
    assert abs(m[k] - v) < 0.01, (k, m[k], v)
assert m["first_mass"] < 0.01, m
assert p["rows"] == 512 and len(p["heads"]) == 8, p["rows"]
print("ok: real slice", {k: round(m[k], 3) for k in want})
PY

# Bad files exit 2 with the file and the problem named; a head mismatch names the variant.
head -c 100000 tests/data/real/gpt-bytes-layer3-n1024.safetensors > "$tmp/cut.safetensors"
expect_exit 2 "cut.safetensors: tensor '[qkv]': data_offsets end [0-9]+ lies beyond the data buffer" -- \
  "$bin" inspect tests/data/specs/real_slice.yaml --set input.path="$tmp/cut.safetensors"
expect_exit 2 "has shape \[1,8,1024,64\].*2 heads|8 heads.*variant 'gqa'" -- \
  "$bin" inspect tests/data/specs/real_slice.yaml --set 'variants=[gqa]' --set baseline=gqa
expect_exit 2 "set input.slice: true" -- "$bin" inspect tests/data/specs/real_slice.yaml --set problem.seq_len=512
expect_exit 0 "q512_k512" -- "$bin" inspect tests/data/specs/real_slice.yaml --set problem.seq_len=512 --set input.slice=true
echo "ok"
