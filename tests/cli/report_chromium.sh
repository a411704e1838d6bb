#!/usr/bin/env bash
# The HTML report in a real browser: headless Chromium loads the report of two committed
# results (sparse-prefill and NIAH) and a checking script appended to a copy (the report
# itself carries none) measures every figure's rendered SVG. Fails on any script or console
# error, a missing or empty figure. Skips (77) when Chromium is not installed: scripts/test.sh
# installs Debian's `chromium` through scripts/setup.sh.
# Run by CTest as: bash report_chromium.sh <path-to-attn-bench> <source-dir>
set -u
BIN=${1:?usage: report_chromium.sh <attn-bench> <source-dir>}
SRC=${2:?usage: report_chromium.sh <attn-bench> <source-dir>}
. "$SRC/tests/cli/common.bash"
[ -x "$BIN" ] || { echo "SKIP: no executable at $BIN"; exit 77; }
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || { echo "SKIP: chromium is not installed (scripts/setup.sh installs it when run from scripts/test.sh)"; exit 77; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT

"$BIN" report "$SRC/results/cpu/sparse-prefill.json" "$SRC/results/cpu/niah.json" -o "$TMP/r.html" 2>/dev/null ||
  fail "report exited $?"
# Per figure: id, rendered width x height, number of drawn elements; then any error seen.
cat >"$TMP/check.js" <<'JS'
<script>
var abErrors = [];
window.addEventListener('error', function (e) { abErrors.push('error: ' + e.message); });
window.addEventListener('load', function () {
  var lines = [];
  document.querySelectorAll('figure').forEach(function (f) {
    var s = f.querySelector('svg');
    if (!s) { lines.push(f.id + ' nosvg'); return; }
    var b = s.getBoundingClientRect();
    var n = s.querySelectorAll('path, rect, circle, text, line').length;
    lines.push(f.id + ' ' + Math.round(b.width) + 'x' + Math.round(b.height) + ' ' + n);
  });
  lines = lines.concat(abErrors);
  var pre = document.createElement('pre');
  pre.id = 'abcheck';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
});
</script>
JS
sed -e "/<\/body>/{r $TMP/check.js" -e 'd}' "$TMP/r.html" >"$TMP/check.html"
echo '</body></html>' >>"$TMP/check.html"
timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TMP/profile" \
  --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom "file://$TMP/check.html" \
  >"$TMP/dom.html" 2>"$TMP/console.log"
rc=$?
[ "$rc" -eq 0 ] || fail "chromium exited $rc: $(tail -5 "$TMP/console.log")"
# The result: the lines of <pre id="abcheck"> (the script's own source is above it).
sed -n '/<pre id="abcheck">/,/<\/pre>/p' "$TMP/dom.html" | sed -e 's/<pre id="abcheck">//' -e 's/<\/pre>.*//' |
  grep -v '^$' >"$TMP/figs.txt"
[ -s "$TMP/figs.txt" ] || fail "the checking script did not run (no result in the DOM)"
cat "$TMP/figs.txt"
! grep -q '^error: ' "$TMP/figs.txt" || fail "script errors in the page"
# Console errors Chromium logs for the page itself (not its own start-up chatter).
if grep -E 'CONSOLE.*(Uncaught|rror)' "$TMP/console.log"; then fail "console errors"; fi
figs=$(grep -c '^fig-' "$TMP/figs.txt")
[ "$figs" -eq 6 ] || fail "expected 6 figures, the browser shows $figs"
for id in fig-pareto- fig-niah- fig-latency- fig-speedup- fig-roofline-; do
  grep -q "^$id" "$TMP/figs.txt" || fail "no figure $id*"
done
while read -r id size n; do
  w=${size%x*} h=${size#*x}
  [ "$w" -gt 300 ] && [ "$h" -gt 150 ] && [ "$n" -gt 20 ] || fail "figure $id is empty or tiny: ${size}, $n elements"
done <"$TMP/figs.txt"
echo "ok: chromium renders $figs non-empty figures without errors"
