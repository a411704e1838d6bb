#!/usr/bin/env bash
# `attn-bench report`, `plot`, the paper-table additions of `table` and the fidelity of `list`,
# on the committed CPU results (docs/figures.md, docs/tables.md). Textual checks and XML
# well-formedness; tests/cli/report_chromium.sh renders the page in a browser.
# Run by CTest as: bash report_plot.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: report_plot.sh <attn-bench> <source-dir>}
SRC=${2:?usage: report_plot.sh <attn-bench> <source-dir>}
. "$SRC/tests/cli/common.bash"
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
SP="$SRC/results/cpu/sparse-prefill.json"
NIAH="$SRC/results/cpu/niah.json"

"$BIN" report "$SP" "$NIAH" -o "$TMP/r.html" 2>"$TMP/err" || fail "report exited $?: $(cat "$TMP/err")"
H="$TMP/r.html"
grep -q '^<!DOCTYPE html>' "$H" || fail "report: not an HTML document"
# Self-contained: no script, nothing fetched (the only URL is the SVG namespace).
! grep -q '<script' "$H" || fail "report: has a script"
urls=$(grep -o 'https\?://[^"]*' "$H" | sort -u)
[ "$urls" = "http://www.w3.org/2000/svg" ] || fail "report: refers to $urls"
for id in provenance fidelity latency speedup pareto niah roofline not-ok; do
  grep -q "id=\"$id\"" "$H" || fail "report: no section $id"
done
n_svg=$(grep -c '^<svg ' "$H")
[ "$n_svg" -eq 6 ] || fail "report: expected 6 figures (latency, speedup, pareto 8k and 32k, niah, roofline), got $n_svg"
grep -q 'Pareto front' "$H" || fail "report: no Pareto front"
grep -q 'class="heatmap"' "$H" || fail "report: no heat map"
grep -q '<td>sea†</td><td>stand-in</td>' "$H" || fail "report: sea is not shown as a stand-in"
grep -q 'registry (the report predates the field)' "$H" || fail "report: old reports' fidelity should come from the registry"
grep -q 'Every case finished with status ok' "$H" || fail "report: the failed/skipped section is missing"
grep -q '<th>git</th>' "$H" && grep -q '<th>host</th>' "$H" && grep -q '<th>devices</th>' "$H" || fail "report: provenance rows"
echo "ok: report ($(wc -c <"$H") bytes, $n_svg figures)"

# A report with failed and skipped cases lists each with its reason.
"$BIN" report "$SRC/tests/data/report_a.json" -o "$TMP/a.html" 2>/dev/null || fail "report of report_a.json"
grep -q 'class="st-failed">failed' "$TMP/a.html" && grep -q 'class="st-skipped">skipped' "$TMP/a.html" ||
  fail "report: failed/skipped cases not listed"
echo "ok: failed and skipped cases listed"

# Every SVG the plot command writes is well-formed XML.
for kind in latency speedup pareto roofline; do
  "$BIN" plot "$SP" --kind "$kind" -o "$TMP/$kind.svg" 2>"$TMP/err" || fail "plot --kind $kind: $(cat "$TMP/err")"
done
"$BIN" plot "$NIAH" --kind niah -o "$TMP/niah.svg" 2>"$TMP/err" || fail "plot --kind niah: $(cat "$TMP/err")"
for f in "$TMP"/*.svg; do
  python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$f" || fail "not well-formed XML: $f"
done
ls "$TMP"/pareto-1.svg "$TMP"/pareto-2.svg >/dev/null || fail "plot: two Pareto figures (8k, 32k) expected as pareto-1/-2"
echo "ok: plot writes well-formed SVG"
"$BIN" plot "$SP" --kind pareto --format pgfplots >"$TMP/p.tex" || fail "plot pgfplots"
grep -q '\\begin{tikzpicture}' "$TMP/p.tex" && grep -q '\\addlegendentry{sea\\textsuperscript{\\dag}}' "$TMP/p.tex" ||
  fail "pgfplots: tikzpicture and the stand-in mark"

expect_exit 2 "did you mean 'pareto'" -- "$BIN" plot "$SP" --kind paretto
expect_exit 2 "nothing to draw: no case with a .niah. metric" -- "$BIN" plot "$SP" --kind niah
expect_exit 2 "unknown --format 'png'" -- "$BIN" plot "$SP" --kind pareto --format png
expect_exit 2 "" -- "$BIN" report "$SP"

# Tables: the NIAH heat map, the long CSV, --aggregate, fidelity marks.
"$BIN" table "$NIAH" -m niah >"$TMP/niah.md" || fail "table -m niah"
grep -q '^| gqa | 100 | 100 |' "$TMP/niah.md" || fail "table -m niah: gqa row"
grep -q '| 4k d=0 | 4k d=0.25 |' "$TMP/niah.md" || fail "table -m niah: header"
"$BIN" table "$SP" --format long >"$TMP/long.csv" || fail "table --format long"
rows=$(($(wc -l <"$TMP/long.csv") - 1))
[ "$rows" -gt 62 ] || fail "long CSV: only $rows rows for 62 cases"
grep -q ',sea,' "$TMP/long.csv" && grep -q ',stand-in,' "$TMP/long.csv" || fail "long CSV: fidelity column"
"$BIN" table "$SP" -m recall,speedup >"$TMP/sp.md" || fail "table recall,speedup"
grep -q '^| sea(k=8)† |' "$TMP/sp.md" || fail "table: stand-in row without its mark"
grep -q '^† stand-in' "$TMP/sp.md" || fail "table: no legend line for the mark"
"$BIN" table "$SP" "$SP" --aggregate -m latency >"$TMP/agg.md" || fail "table --aggregate"
expect_exit 2 "ran another spec" -- "$BIN" table "$SP" "$NIAH" --aggregate

# list: fidelity in text and JSON.
"$BIN" list >"$TMP/list.txt" || fail "list"
grep -A3 '^sea ' "$TMP/list.txt" | grep -q 'fidelity: stand-in' || fail "list: sea's fidelity"
"$BIN" list --json | python3 -c '
import json, sys
v = {x["name"]: x["fidelity"] for x in json.load(sys.stdin)}
assert v["landmark"]["level"] == "stand-in" and v["landmark"]["reason"], v["landmark"]
assert v["mha"]["level"] == "faithful"
assert sum(1 for f in v.values() if f["level"] == "stand-in") == 9, v
' || fail "list --json: fidelity"
echo "all report/plot/table checks passed"
