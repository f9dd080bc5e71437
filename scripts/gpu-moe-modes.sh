#!/usr/bin/env bash
# gpu-moe-modes.sh — one batched GPU run for the MoE compute modes (BENCHMARKS.md "MoE compute modes"):
# the cuda suite, the golden fixtures on CUDA in fp8 mode (and dequant), bench-ops decode steps of the
# 4-layer R1 model at batch 32 and 128 in both modes, and a short serving sweep of an R1-geometry EP8-rank
# model (32 experts, FP8, FP8 KV). Logs under $OUT (default /tmp/moe-modes). Needs gpu-bundle/.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
B=$root/gpu-bundle R=$B/run.sh O=${OUT:-/tmp/moe-modes} W=/tmp/moe-modes-work
mkdir -p "$O" "$W"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$O/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$O/summary.txt"
# 1. cuda suite and golden fixtures side by side
(timeout 120 $R cuda-tests >"$O/cuda_tests.log" 2>&1; echo "cuda-tests rc=$?" >>"$O/cuda_tests.log") &
tp=$!
for fx in tiny_fp8 tiny_bf16; do
    for m in fp8 dequant; do
        timeout 60 $R python3 "$root/tests/golden/run_golden.py" "$root/tests/fixtures/golden/$fx.json" \
            "$B/bin/moeserve-mkmodel" "$B/bin/moeserve" --device cuda --moe-compute $m $([ $m = fp8 ] && echo --tolerance ${FP8_TOL:-0.5}) \
            >"$O/golden_${fx}_$m.log" 2>&1
        el "golden $fx $m: rc=$? $(grep -E 'max \|logit diff\| over|passed|FAILED' "$O/golden_${fx}_$m.log" | tr '\n' ' ')"
    done
done
wait $tp
el "cuda-tests: $(grep -cE '^PASS' "$O/cuda_tests.log") PASS, $(grep -cE '^FAIL' "$O/cuda_tests.log") FAIL; $(tail -1 "$O/cuda_tests.log")"
# 2. bench-ops: experts table both modes, then the 4-layer step at batch 32 and 128 in both modes
d=$W/r1x4
$R moeserve-mkmodel --preset r1 --dtype fp8 --layers 4 --config-only --out "$d" >/dev/null
timeout 40 $R moeserve-bench-ops --reps 10 --batch '' --rows 4,32,128 >"$O/bench_experts.md" 2>&1
el "experts table: rc=$?"
for b in 32 128; do
    for m in dequant fp8; do
        timeout 45 $R moeserve-bench-ops --reps 5 --batch '' --rows '' --model "$d" --step-batch $b --step-ctx 1024 \
            --step-tokens $((b * 8 > 1024 ? b * 8 : 1024)) --moe-cap 512 --moe-compute $m >"$O/step_${b}_$m.md" 2>&1
        el "step batch $b $m: rc=$? $(grep -E 'moe_experts|total' "$O/step_${b}_$m.md" | tr '\n' ' ')"
    done
done
# 3. serving: R1 geometry standing for one EP8 rank (scripts/gpu-serve.sh)
OUT=$O SERVE_WORK=$W bash "$root/scripts/gpu-serve.sh"
el done
