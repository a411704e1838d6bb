#!/usr/bin/env bash
# The variant catalogue's parameters refused at `validate`, before any case runs, with
# the field and the rule; `list` shows every catalogue variant with its paper.
set -u
bin=$1 src=$2
. "$src/tests/cli/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
spec() { printf 'problem: {heads: 4, head_dim: 64, seq_len: 1024, causal: %s}\nvariants: [%s]\n' "$1" "$2" > "$tmp/s.yaml"; }

spec true '{name: streaming, window: 0}'
expect_exit 2 'streaming.window = 0: must be >= 1' -- "$bin" validate "$tmp/s.yaml"
spec false 'streaming'
expect_exit 2 'streaming: problem.causal = false' -- "$bin" validate "$tmp/s.yaml"
spec true '{name: diag, weights: gelu}'
expect_exit 2 "parameter 'weights' = 'gelu' is not allowed" -- "$bin" validate "$tmp/s.yaml"
spec true '{name: blockrank, documents: 2000}'
expect_exit 2 'blockrank.documents = 2000: must be at most N - 2 = 1022' -- "$bin" validate "$tmp/s.yaml"
spec false '{name: mixformer, templates: 100, search: 100}'
expect_exit 2 'templates \+ search = 200 must equal N = 1024' -- "$bin" validate "$tmp/s.yaml"
spec true '{name: act, heads: "0-7"}'
expect_exit 2 "act.heads = '0-7': head 7 does not exist" -- "$bin" validate "$tmp/s.yaml"
spec true '{name: gated, gate_file: /nonexistent/gate.npy}'
expect_exit 2 "gated.gate_file = '/nonexistent/gate.npy': no such file" -- "$bin" validate "$tmp/s.yaml"
spec true '{name: lightning, block: 4096}'
expect_exit 2 'lightning.block = 4096: must be in \[1, 1024\]' -- "$bin" validate "$tmp/s.yaml"
spec false 'lightning'
expect_exit 2 'lightning: problem.causal = false' -- "$bin" validate "$tmp/s.yaml"
spec true '{name: positional, pe_dim: 5}'
expect_exit 2 'positional.pe_dim = 5: must be even and >= 2' -- "$bin" validate "$tmp/s.yaml"
spec true 'streaming, diag, blockrank, gated, sigmoid, positional, act, lama, linear, transnormer, lightning, mala'
expect_exit 0 'valid, 12 cases' -- "$bin" validate "$tmp/s.yaml"

out=$("$bin" list 2>&1)
for v in streaming diag blockrank mixformer gated sigmoid positional act lama linear transnormer lightning mala; do
  echo "$out" | grep -Eq "^$v +\[" || fail "list lacks $v"
done
echo "$out" | grep -q 'arXiv 2401.04658' || fail "list lacks the Lightning-2 paper"
echo "ok"
