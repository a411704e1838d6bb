#!/usr/bin/env bash
# `attn-bench table` in its three formats on tests/data/report_a.json (see docs/tables.md).
# Run by CTest as: bash table_formats.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: table_formats.sh <attn-bench> <source-dir>}
SRC=${2:?usage: table_formats.sh <attn-bench> <source-dir>}
DATA="$SRC/tests/data"
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
fails=0
A="$DATA/report_a.json"

fail() {
  echo "FAIL: $1"
  [ -f "$TMP/out" ] && sed 's/^/    | /' "$TMP/out" | head -40
  fails=$((fails + 1))
}

# run NAME ARGS... : stdout to $TMP/out (CR stripped, for the CSV), stderr to $TMP/err.
run() {
  local name=$1
  shift
  "$BIN" "$@" >"$TMP/raw" 2>"$TMP/err"
  local rc=$?
  tr -d '\r' <"$TMP/raw" >"$TMP/out"
  if [ "$rc" -ne 0 ]; then
    fail "$name: exit $rc; stderr: $(cat "$TMP/err")"
    return 1
  fi
  return 0
}

# has NAME LINE : $TMP/out contains LINE exactly (fixed string, whole line).
has() {
  grep -Fxq -- "$2" "$TMP/out" || fail "$1: missing line: $2"
}

if run "md" table "$A"; then
  has "md title" "**speedup vs baseline mha; rows: label, columns: kv_len**"
  has "md header" "| label | kv_len=1024 | kv_len=4096 |"
  has "md gqa row, ± 95% CI" "| gqa(kv_heads=4) | 1.25 ± 0.05 | 1.60 ± 0.07 |"
  has "md skipped cell" "| block_topk(block=64, keep=0.25) | 2.00 ± 0.08 | skipped |"
  has "md failed cell, best in bold" "| linear(feature=elu) | **2.50 ± 0.10** | failed |"
  has "md baseline row: no interval" "| mha | 1.00 | 1.00 |"
  grep -q "^speedup = baseline median latency / case median latency" "$TMP/out" || fail "md legend line"
fi

if run "csv" table "$A" --format csv; then
  has "csv header" "label,kv_len=1024,kv_len=4096,status"
  has "csv quoted label, empty skipped cell" "\"block_topk(block=64, keep=0.25)\",2.00,,kv_len=4096: skipped"
  has "csv failed" "linear(feature=elu),2.50,,kv_len=4096: failed"
  # RFC 4180: every record ends in CRLF, and nothing but records is on stdout.
  lines=$(wc -l <"$TMP/raw")
  crlf=$(grep -c $'\r$' "$TMP/raw")
  [ "$lines" -eq 5 ] && [ "$crlf" -eq 5 ] || fail "csv: expected 5 CRLF records, got $lines lines, $crlf CRLF"
  grep -q "^speedup = " "$TMP/err" || fail "csv: the legend should go to stderr"
fi

if run "latex" table "$A" --format latex; then
  has "latex tabular" "\\begin{tabular}{lrr}"
  has "latex toprule" "\\toprule"
  has "latex midrule" "\\midrule"
  has "latex bottomrule" "\\bottomrule"
  has "latex escaped row" "block\\_topk(block=64, keep=0.25) & 2.00 \$\\pm\$ 0.08 & skipped \\\\"
  has "latex gqa row" "gqa(kv\\_heads=4) & 1.25 \$\\pm\$ 0.05 & 1.60 \$\\pm\$ 0.07 \\\\"
  has "latex bold" "linear(feature=elu) & \\textbf{2.50 \$\\pm\$ 0.10} & failed \\\\"
  # Outside the tabular, only % comments.
  if grep -v '^%' "$TMP/out" | sed -n '1p' | grep -qv '^\\begin{tabular}'; then
    fail "latex: text before \\begin{tabular} that is not a comment"
  fi
  if command -v pdflatex >/dev/null 2>&1 && kpsewhich booktabs.sty >/dev/null 2>&1; then
    cp "$TMP/out" "$TMP/tab.tex"
    printf '%s\n' '\documentclass{article}' '\usepackage{booktabs}' '\begin{document}' \
      '\input{tab.tex}' '\end{document}' >"$TMP/doc.tex"
    if (cd "$TMP" && pdflatex -interaction=nonstopmode -halt-on-error doc.tex >latex.log 2>&1); then
      echo "ok: latex compiles with pdflatex + booktabs"
    else
      fail "latex: pdflatex failed: $(grep -A3 '^!' "$TMP/latex.log" | head -8)"
    fi
  else
    echo "note: pdflatex or booktabs not installed; the LaTeX was checked textually only"
  fi
fi

# --plain: numbers only, as before the paper decorations.
if run "md plain" table "$A" --plain; then
  has "plain gqa row" "| gqa(kv_heads=4) | 1.25 | 1.60 |"
  has "plain failed" "| linear(feature=elu) | 2.50 | failed |"
fi

# Other metrics and axes.
if run "latency by kv_len rows" table "$A" --metric latency --rows kv_len --cols variant; then
  grep -q "^| 4096 | 32.1 ± 0.7 | 20.1 ± 0.4 |" "$TMP/out" || fail "latency rows=kv_len cols=variant"
fi
if run "recall" table "$A" --metric recall; then
  has "recall row" "| block_topk(block=64, keep=0.25) | 0.962 | skipped |"
  has "recall n/a" "| mha | n/a | n/a |"
fi

# Bad input is exit 2 with a suggestion.
"$BIN" table "$A" --metric speedpu >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q "did you mean 'speedup'" "$TMP/out" || fail "unknown metric: exit $rc"
"$BIN" table "$A" --baseline mah >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q "did you mean 'mha'" "$TMP/out" || fail "unknown baseline: exit $rc"
"$BIN" table "$A" --cols kvlen >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q "did you mean 'kv_len'" "$TMP/out" || fail "unknown axis: exit $rc"
"$BIN" table "$A" --format xlsx >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "unknown format: exit $rc"
"$BIN" table "$TMP/none.json" >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] || fail "missing report: exit $rc"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all table format checks passed"
exit 0
