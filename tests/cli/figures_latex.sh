#!/usr/bin/env bash
# The LaTeX outputs compile: a PGFPlots figure of each kind (`attn-bench plot --format
# pgfplots`) and a table float (`attn-bench table --format latex --float`), \input into an
# article with pdflatex. Skips (77) when pdflatex, booktabs or pgfplots is missing: scripts/
# test.sh installs texlive-latex-base, -latex-recommended (booktabs) and -pictures (pgfplots).
# Run by CTest as: bash figures_latex.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: figures_latex.sh <attn-bench> <source-dir>}
BIN=$(realpath "$BIN")
SRC=${2:?usage: figures_latex.sh <attn-bench> <source-dir>}
SRC=$(realpath "$SRC")
. "$SRC/tests/cli/common.bash"
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
command -v pdflatex >/dev/null || { echo "SKIP: pdflatex is not installed (texlive-latex-base)"; exit 77; }
for sty in booktabs.sty pgfplots.sty; do
  kpsewhich "$sty" >/dev/null || { echo "SKIP: $sty is not installed (texlive-latex-recommended, texlive-pictures)"; exit 77; }
done
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
SP="$SRC/results/cpu/sparse-prefill.json"

cd "$TMP" || exit 1
"$BIN" plot "$SP" --kind pareto --format pgfplots -o pareto.tex 2>/dev/null || fail "plot pareto"
"$BIN" plot "$SP" --kind speedup --format pgfplots -o speedup.tex 2>/dev/null || fail "plot speedup"
"$BIN" plot "$SP" --kind latency --format pgfplots -o latency.tex 2>/dev/null || fail "plot latency"
"$BIN" plot "$SP" --kind roofline --format pgfplots -o roofline.tex 2>/dev/null || fail "plot roofline"
"$BIN" plot "$SRC/results/cpu/niah.json" --kind niah --format pgfplots -o niah.tex 2>/dev/null || fail "plot niah"
"$BIN" table "$SP" -m recall,speedup --format latex --float >table.tex || fail "table latex"
"$BIN" table "$SRC/tests/data/report_a.json" --format latex --significance >table_a.tex || fail "table latex a"
{
  printf '%s\n' '\documentclass{article}' '\usepackage[margin=2cm]{geometry}' '\usepackage{booktabs}' \
    '\usepackage{pgfplots}' '\pgfplotsset{compat=1.16}' '\begin{document}'
  for f in pareto-1 speedup latency roofline niah; do printf '\\input{%s.tex}\n\n\\clearpage\n' "$f"; done
  printf '%s\n' '{\tiny\input{table.tex}}' '\input{table_a.tex}' '\end{document}'
} >paper.tex
if pdflatex -interaction=nonstopmode -halt-on-error paper.tex >latex.out 2>&1; then
  pages=$(grep -o 'Output written on paper.pdf ([0-9]* pages' paper.log | grep -o '[0-9]* pages')
  echo "ok: pdflatex compiles 5 PGFPlots figures and 2 tables ($pages)"
else
  fail "pdflatex failed: $(grep -A4 '^!' paper.log | head -12)"
fi
