#!/usr/bin/env bash
# Bad input: exit 2 with the location, the field and the rule; nothing runs, nothing is written.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'problem:\n  heads: [8, 16\nvariants: [mha]\n' > "$tmp/malformed.yaml"
printf 'problem: {heads: 8, seq_len: 64}\nvarients: [mha]\n' > "$tmp/badkey.yaml"
printf 'problem: {heads: 8, seq_len: 64}\nvariants: [mha, gqaa]\n' > "$tmp/badvariant.yaml"
printf 'problem: {heads: 8, seq_len: 64}\nvariants: [{name: gqa, kv_heads: 3}]\n' > "$tmp/badparam.yaml"
printf 'problem: {heads: 8, seq_len: 64}\nvariants: [mha]\n' > "$tmp/good.yaml"

expect_exit 2 'malformed.yaml:3:[0-9]+: YAML syntax error' -- "$bin" validate "$tmp/malformed.yaml"
expect_exit 2 "badkey.yaml:2:1: varients: unknown key: did you mean 'variants'" -- "$bin" validate "$tmp/badkey.yaml"
expect_exit 2 "badvariant.yaml:2:17: .*did you mean 'gqa'" -- "$bin" run "$tmp/badvariant.yaml" -o "$tmp/x.json"
[ ! -e "$tmp/x.json" ] || fail "a report was written for an invalid spec"
expect_exit 2 'kv_heads = 3: must divide the query heads' -- "$bin" validate "$tmp/badparam.yaml"
expect_exit 2 'problem.seq_len: must be a positive integer' -- "$bin" validate "$tmp/good.yaml" --set problem.seq_len=0
expect_exit 2 "unknown dtype 'fp7'" -- "$bin" validate "$tmp/good.yaml" --set dtype=fp7
expect_exit 2 'cannot open the spec file' -- "$bin" validate "$tmp/missing.yaml"
expect_exit 2 'cannot write' -- "$bin" run "$tmp/good.yaml" -o /nonexistent-dir/r.json
expect_exit 2 '' -- "$bin" run
expect_exit 2 '' -- "$bin" frobnicate
expect_exit 0 'valid, 1 cases' -- "$bin" validate "$tmp/good.yaml"
expect_exit 0 'Usage' -- "$bin" --help
expect_exit 2 'not a valid regular expression' -- "$bin" run "$tmp/good.yaml" --filter '(' -o "$tmp/y.json"
# --device cuda without CUDA: a clear error; auto falls back to the CPU with a note.
if ! "$bin" env --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["cuda"]["available"] else 1)'; then
  expect_exit 2 'no usable CUDA device' -- "$bin" run "$tmp/good.yaml" --device cuda -o "$tmp/z.json"
  expect_exit 0 'device auto: using the CPU' -- "$bin" run "$tmp/good.yaml" --device auto -o "$tmp/z.json" --set metrics=[flops]
fi
echo "ok"
