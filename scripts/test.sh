#!/usr/bin/env bash
# Set-up (with the test-only packages), build, and run every test (doctest units and CLI tests
# of the real binary) with CTest. GPU tests skip, with their reason, where no GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ATTN_BUILD_DIR:-$root/build}
ATTN_TEST_PACKAGES=1 "$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "${ATTN_TEST_JOBS:-1}" "$@"
