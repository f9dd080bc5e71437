#!/bin/sh
# nvcc-deps.sh — nvcc that also writes the ninja depfile of each object where meson expects it (<object>.d).
# Why: meson 1.0's CUDA rule declares that depfile but never asks nvcc for it, so editing a .cuh header did
# not rebuild the .cu files that include it (stale objects against a changed struct layout broke GPU runs).
# scripts/setup.sh and gpu-bundle.sh name it meson's CUDA compiler (a native file: meson 1.0 reads no environment
# variable for it) when they configure a build; it runs the nvcc on PATH.
# `nvcc-deps.sh --native-file` writes the meson native file naming it (.cache/nvcc-deps.ini) and prints its path.
if [ "${1:-}" = "--native-file" ]; then
    root=$(cd "$(dirname "$0")/.." && pwd)
    mkdir -p "$root/.cache"
    printf "[binaries]\ncuda = '%s'\n" "$root/scripts/nvcc-deps.sh" >"$root/.cache/nvcc-deps.ini"
    echo "$root/.cache/nvcc-deps.ini"
    exit 0
fi
out= prev= compile=
for a in "$@"; do
    [ "$prev" = "-o" ] && out=$a
    [ "$a" = "-c" ] && compile=1
    prev=$a
done
if [ -n "$compile" ] && [ -n "$out" ]; then exec nvcc -MD -MF "$out.d" "$@"; fi
exec nvcc "$@"
