# Helpers for the CLI tests (tests/cli/*.sh source this file).
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE PATTERN -- command...: the command exits with CODE and its stderr+stdout
# contains PATTERN (a grep -E regex).
expect_exit() {
  local code=$1 pattern=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  [ "$rc" -eq "$code" ] || fail "expected exit $code, got $rc from: $*
$out"
  if [ -n "$pattern" ]; then
    echo "$out" | grep -Eq -- "$pattern" || fail "output of '$*' lacks /$pattern/:
$out"
  fi
  echo "ok: exit $rc: $*"
}
