#!/usr/bin/env bash
# Installs what attn-bench needs from Debian's packages (ccache: CMake uses it when present, so
# rebuilds after a pull or a branch switch reuse what was compiled), idempotently: only missing packages
# are installed, and the script says which. Safe to run again.
set -euo pipefail

packages=(build-essential cmake ninja-build git pkg-config
          libcli11-dev libyaml-cpp-dev libeigen3-dev nlohmann-json3-dev doctest-dev
          libbenchmark-dev libfmt-dev python3 ccache
          clang-14 libclang-rt-14-dev)  # the fuzz harnesses (libFuzzer) and their corpus replay
# Test-only packages, installed when the tests will run (scripts/test.sh sets
# ATTN_TEST_PACKAGES=1): headless Chromium renders the HTML report (tests/cli/report_chromium.sh)
# and pdflatex with booktabs and pgfplots compiles the LaTeX tables and figures
# (tests/cli/figures_latex.sh); Slurm and munge bring up a one-node cluster on localhost for the
# sharded sweep (tests/cli/slurm_array.sh). Each test skips, saying why, where its tool is missing.
if [ "${ATTN_TEST_PACKAGES:-0}" = 1 ]; then
  packages+=(chromium texlive-latex-base texlive-latex-recommended texlive-pictures slurm-wlm munge)
fi
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} dependencies are installed"
else
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages used only by the file-format tests (independent .npy/.safetensors writers);
# the tests fall back to a C++ writer when they are missing, so failure here is not fatal.
# `setup.sh --build-only` (scripts/attn-bench's first run) leaves them out.
if [ "${1:-}" != "--build-only" ] && command -v python3 >/dev/null && ! python3 -c "import numpy, safetensors" 2>/dev/null; then
  echo "setup: installing numpy and safetensors for python3 (optional)"
  python3 -m pip install -q numpy safetensors 2>/dev/null || \
    echo "setup: pip install failed; the file-format tests will use their C++ writer"
fi
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ "${1:-}" = "--build-only" ]; then
    echo "setup: nvcc found: scripts/attn-bench builds the CUDA backend only where a GPU is present; scripts/test.sh builds it"
  else
    echo "setup: nvcc found: the CUDA backend will be built (ATTN_CUDA=AUTO)"
  fi
else
  echo "setup: no nvcc: building the CPU backend only"
fi
