#!/usr/bin/env bash
# The masks attn-bench hands to a peer: `run --emit-cases` writes each library predicate's
# program (core/mask.hpp) and the pairs it allows; scripts/peers/mask_program.py rebuilds the
# mask from the program (the FlexAttention peer's mask_mod uses the same function) and must
# count the same pairs, for diag, blockrank (causal) and mixformer (not), Nq = Nkv and not.
# Run by CTest as: bash mask_program_peer.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: mask_program_peer.sh <attn-bench> <source-dir>}
SRC=${2:?usage: mask_program_peer.sh <attn-bench> <source-dir>}
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/causal.yaml" <<'YAML'
problem: {heads: 2, head_dim: 64, seq_len: [300, 517], causal: true}
variants:
  - {name: diag, block: [50, 64]}
  - {name: blockrank, documents: 3}
YAML
cat > "$TMP/full.yaml" <<'YAML'
problem: {heads: 2, head_dim: 64, seq_len: [257], causal: false}
variants:
  - {name: mixformer, templates: 100}
YAML
fails=0
for spec in causal full; do
  "$BIN" run "$TMP/$spec.yaml" --emit-cases "$TMP/$spec.json" 2>"$TMP/err" ||
    { echo "FAIL: --emit-cases $spec: $(cat "$TMP/err")"; fails=$((fails + 1)); continue; }
  out=$(python3 "$SRC/scripts/peers/mask_program.py" --check "$TMP/$spec.json" 2>&1)
  rc=$?
  echo "$spec: $out"
  [ $rc -eq 0 ] || { echo "FAIL: $spec: the programs' pairs differ from attn-bench's"; fails=$((fails + 1)); }
done
[ $fails -eq 0 ] && echo ok
exit $fails
