#!/usr/bin/env bash
# test.sh — set up, build and run every test suite (unit, kernels, golden,
# integration). Extra args go to `meson test` (e.g. --suite unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
meson test -C build --print-errorlogs --num-processes 2 "$@"
