#!/usr/bin/env bash
# gpu-check.sh — the CUDA backend's checks on a GPU host, from the folder
# scripts/gpu-bundle.sh wrote (no meson, no pip there: python3 is enough).
#
#   scripts/gpu-check.sh [PHASES] [OUTDIR]     PHASES: comma list of
#     golden    transformers fixtures with `generate --device cuda` (run_golden.py)
#     generate  greedy tokens, CPU vs CUDA, tiny models, naive/auto MLA, BF16/FP8 KV
#     layouts   tests/integration/test_layout.py np1, np2-tp, np2-dp with the server on CUDA
#               (two ranks share the GPU), references from `generate --device cpu`
#     server    the seed's curl and a streamed chat on the tiny model, CUDA
#     r1        an R1-geometry config-only model (load_format dummy, FP8 weights, FP8 KV,
#               R1_LAYERS layers, default 10) serves 64 concurrent requests (moeserve-bench)
#     trace     the first op after which the device fault word is set, per tiny model (bench-ops
#               --trace-faults on a real checkpoint), and compute-sanitizer memcheck of one generate
#     bench     moeserve-bench-ops: every op at R1 decode shapes + one decode step of a
#               4-layer R1-geometry model by op
#     graphs    CUDA graphs (cuda_graph_config): the engine tests (replayed padded steps vs eager, without and
#               with MTP's verify+draft steps), generate
#               with --cuda-graphs on vs off, the server at 1/3/8 concurrent greedy requests with and
#               without graphs, and eager vs graph decode-step time of a 4-layer R1-geometry model at batch
#               GRAPH_BATCHES (default 1,32,128) with the batch-1 graph's kernels timed by ncu when present
#     mtp       test_mtp.py np1/np2-dp with the server on CUDA (greedy = CPU generate without MTP, ...), then
#               MTP on a 4-layer r1-ep8 model (one EP8 rank: 32 experts, all MoE) with its module: one verify+draft step by op (main vs
#               draft passes; bench-ops --mtp MTP_N, default 1) eager and as a graph at MTP_BATCHES (default
#               1,32), and bench-mtp's step times for N = 0, 1, 3 eager and graphed
#     nccl      (2+ GPUs) test_layout.py np2-tp, np2-dp (np4-dp with 4 GPUs) with the server on CUDA over the
#               NCCL data plane (moeserve.data_plane nccl, one GPU a rank), references from the CPU
#     step      one EP8 rank's decode step (r1-ep8: 4 MoE layers of 32 experts, FP8, batch STEP_BATCHES, default
#               1,32,128, context 1k) by op, gemm by weight, eager vs graph, and the replayed step's kernels by
#               ncu (tools/ncu_kernels.py; STEP_NCU=0 skips it) into OUTDIR/step_tables.md; with STEP_AB_ENV="VAR=x VAR2=y" the same
#               step once more with those variables set (e.g. MS_FUSE_COMBINE_ADD=0 ...: the fusions' A/B)
#     sample    the sampler's and logits_adjust's harness cases and the sample op's times (batch 1, 128), beside
#               PyTorch's sampling of the same shapes (tools/bench_sample_torch.py) with the ratios, and the
#               cases once more with MS_SMP_FB_EST=0 (the fallback's exact passes alone) and =redo, and the exact
#               passes' times
#     mla       mla_latent's SIMT kernel (MS_MLA_KERNEL=simt) beside the default tensor-core ones: harness cases,
#               golden fixtures, greedy tokens of both, the three kernels' op times at batch 1/32/128, context 1024;
#               the FP8 fold (the default; MS_MLA_FP8_FOLD=0 dequantizes) under compute-sanitizer, and its A/B times;
#               and batch 32/128 x context 1k-16k beside PyTorch's (tools/bench_mla_torch.py) with the ratios; the
#               persistent grid's A/B (MS_MLA_PERSIST=0) and its batch-128 cases under racecheck
#     prof      ncu (--clock-control none) of the two kernels furthest from issue 10's targets, for their
#               limiters: mw2_kernel (FP8 KV, batch 128 x context 1k) with source-level stall samples
#               (OUTDIR/prof_mw2_src.csv.gz: `--page source --csv --print-source sass`), and the dense o_proj at
#               m = 128 in its default 64x2w tile and in 128x2t (speed of light, memory, warp states)
#   default: all but nccl, mla, mtp, prof, sample and step. OUTDIR (default $OUT or /tmp/gpu-check) gets summary.txt, bench_ops.md and
#   logs.tgz (every log; few files, as the device tool brings back at most 8).
# The correctness phases run concurrently; bench runs alone at the end.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
B=${GPU_BUNDLE:-$root/gpu-bundle} # GPU_BUNDLE: a bundle folder elsewhere (a helper's own)
R=$B/run.sh
phases=${1:-golden,generate,layouts,server,r1,graphs,bench}
final=${2:-${OUT:-/tmp/gpu-check}}
W=${GPU_CHECK_WORK:-/tmp/gpu-check-work}
out=$W/logs
mkdir -p "$final" "$out"
S=$final/summary.txt # written as phases end, so a run cut short still reports
: >"$S"
say() { echo "$*" | tee -a "$S"; }
has() { [[ ",$phases," == *",$1,"* ]]; }
[ -x "$R" ] || { echo "gpu-check: no $R (run scripts/gpu-bundle.sh first)"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$S"

tok=$B/tokenizer
mk() { [ -f "$W/$1/config.json" ] || $R moeserve-mkmodel "${@:2}" --out "$W/$1" >/dev/null; }
mk tiny --preset tiny --dtype bf16 --tokenizer "$tok"
mk tiny8 --preset tiny --dtype fp8 --tokenizer "$tok"
mk tinynoq --preset tiny-noq --dtype bf16 --tokenizer "$tok"

# MoE compute: auto is the fp8 mode on CUDA (act_quant + FP8xFP8, off transformers' numerics by design), so the
# fixtures run in the dequant mode at their tolerance, and tiny_fp8 once more in the fp8 mode at the CPU golden's
# fp8 tolerance (tests/golden/meson.build golden_tiny_fp8_fp8mode)
phase_golden() {
    for fx in tiny_bf16 tiny_noq_bf16 tiny_fp8 tiny_fp8:fp8; do
        local f=${fx%%:*} a=(--moe-compute dequant)
        [ "$fx" != "$f" ] && a=(--moe-compute fp8 --tolerance 0.5)
        timeout 240 $R python3 "$root/tests/golden/run_golden.py" "$root/tests/fixtures/golden/$f.json" \
            "$B/bin/moeserve-mkmodel" "$B/bin/moeserve" --device cuda "${a[@]}" >"$out/golden_${fx/:/_}.log" 2>&1
        echo "golden $fx (cuda, ${a[*]}): exit $? | $(grep -E 'max \|logit diff\| over|: passed|: FAILED' "$out/golden_${fx/:/_}.log" | tr '\n' ' ')"
    done
    for fx in mtp_tiny_bf16 mtp_tiny_fp8; do # the MTP module's draft logits (tests/reference/mtp_fixtures.py)
        timeout 240 $R python3 "$root/tests/golden/run_mtp_golden.py" "$root/tests/fixtures/golden/$fx.json" \
            "$B/bin/moeserve-mkmodel" "$B/bin/moeserve" --device cuda --moe-compute dequant >"$out/golden_$fx.log" 2>&1
        echo "golden $fx (cuda, dequant): exit $? | $(grep -E 'max \|logit diff\||: pass|: FAIL' "$out/golden_$fx.log" | tr '\n' ' ')"
    done
}

phase_generate() {
    local ids=0,100,344,201,440,33,7,19
    for m in tiny tiny8 tinynoq; do
        for mla in naive auto; do
            for kv in bf16 fp8; do
                a=(generate "$W/$m" --prompt-ids $ids --max-tokens 24 --ignore-eos --mla $mla --kv-dtype $kv)
                c=$($R moeserve "${a[@]}" --device cpu 2>>"$out/generate.err" | tail -1)
                g=$($R moeserve "${a[@]}" --device cuda 2>>"$out/generate.err" | tail -1)
                [ -n "$g" ] && [ "$c" = "$g" ] && r=SAME || r=DIFF
                echo "generate $m mla=$mla kv=$kv: $r cpu=[$c] cuda=[$g]"
            done
        done
    done
}

phase_layouts() {
    for L in np1 np2-tp np2-dp; do
        (MS_SERVE_DEVICE=cuda timeout 200 $R python3 "$root/tests/integration/test_layout.py" "$L" \
            --moeserve "$B/bin/moeserve" --mkmodel "$B/bin/moeserve-mkmodel" --tokdir "$tok" \
            --workdir "$W/int" --configs "$root/configs" >"$out/layout_$L.log" 2>&1
         echo "layout $L (server on cuda): exit $? | $(tail -3 "$out/layout_$L.log" | tr '\n' ' ')") &
    done
    wait
}

wait_ready() { # port seconds
    for _ in $(seq 1 "$2"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
        sleep 1
    done
    return 1
}

phase_nccl() {
    local n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    [ "$n" -ge 2 ] || { echo "nccl: $n GPU(s): needs 2 or more, skipped"; return; }
    local ls="np2-tp np2-dp"
    [ "$n" -ge 4 ] && ls="$ls np4-dp"
    for L in $ls; do
        MS_SERVE_DEVICE=cuda MS_SERVE_DATA_PLANE=nccl NCCL_NVLS_ENABLE=0 timeout 300 $R python3 \
            "$root/tests/integration/test_layout.py" "$L" --moeserve "$B/bin/moeserve" --mkmodel "$B/bin/moeserve-mkmodel" \
            --tokdir "$tok" --workdir "$W/nccl" --configs "$root/configs" >"$out/nccl_$L.log" 2>&1
        echo "nccl layout $L (server on cuda, NCCL data plane): exit $? | $(grep -m1 'comm_nccl' "$W/nccl"/*.log 2>/dev/null | head -c 200) $(tail -3 "$out/nccl_$L.log" | tr '\n' ' ')"
    done
}

phase_server() {
    local port=8311 cfg=$W/tiny-cuda.yaml
    sed 's/device: cpu/device: cuda/' "$root/configs/tiny-cpu.yaml" >"$cfg"
    $R moeserve serve "$W/tiny" --served_model_name tiny --host 127.0.0.1 --port $port --extra_llm_api_options "$cfg" \
        >"$out/server.log" 2>&1 &
    local pid=$!
    if wait_ready $port 90; then
        echo "server: $(grep -E 'backend|KV cache|per rank' "$out/server.log" | head -3 | tr '\n' ' ')"
        echo "server curl: $(curl -s http://127.0.0.1:$port/v1/completions -H 'Content-Type: application/json' -d '{
          "model": "tiny", "prompt": "Where is New York?", "max_tokens": 16, "temperature": 0}')"
        echo "server stream chat: $(curl -sN http://127.0.0.1:$port/v1/chat/completions -H 'Content-Type: application/json' \
          -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": true}' |
          grep -c '^data:') data lines, last: $(curl -sN http://127.0.0.1:$port/v1/chat/completions \
          -H 'Content-Type: application/json' -d '{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
          "max_tokens": 8, "stream": true}' | grep '^data:' | tail -2 | tr '\n' ' ')"
        echo "server metrics: $(curl -s http://127.0.0.1:$port/metrics | grep -E '^moeserve_kv_cache' | tr '\n' ' ')"
    else
        echo "server: not ready in 90 s: $(tail -5 "$out/server.log" | tr '\n' ' ')"
    fi
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
}

phase_r1() {
    local n=${R1_LAYERS:-10} port=8312 d=$W/r1 cfg=$W/r1.yaml
    rm -rf "$d"
    $R moeserve-mkmodel --preset r1 --dtype fp8 --layers "$n" --config-only --tokenizer "$tok" --out "$d" >/dev/null
    cat >"$cfg" <<EOF
load_format: dummy
max_batch_size: 64
max_num_tokens: 512
max_seq_len: 4096
enable_chunked_prefill: true
cuda_graph_config: null
kv_cache_config:
  dtype: fp8
  free_gpu_memory_fraction: 0.85
moe_config:
  max_num_tokens: 256
moeserve:
  device: cuda
EOF
    echo "r1 plan-memory: $($R moeserve plan-memory "$d" --world 1 --extra_llm_api_options "$cfg" 2>&1 | tail -1)"
    $R moeserve serve "$d" --served_model_name r1 --host 127.0.0.1 --port $port --extra_llm_api_options "$cfg" \
        >"$out/r1_server.log" 2>&1 &
    local pid=$!
    if wait_ready $port 240; then
        echo "r1 server: $(grep -E 'backend|weights:.*MiB|per rank|loaded in' "$out/r1_server.log" | tr '\n' ' ')"
        echo "r1 curl: $(curl -s http://127.0.0.1:$port/v1/completions -H 'Content-Type: application/json' -d '{
          "model": "r1", "prompt": "Where is New York?", "max_tokens": 16, "temperature": 0}' | head -c 600)"
        timeout 300 $R moeserve-bench --port $port --model "$d" --served-model-name r1 --tokenizer "$d" --num-prompts 64 --max-concurrency 64 \
            --random-input-len 512 --random-output-len 64 --ignore-eos --tokenize-on-client >"$out/r1_bench.log" 2>&1
        echo "r1 bench (64 requests, 64 concurrent, 512 in / 64 out): exit $? | $(grep -iE 'successful|failed|throughput|TTFT|TPOT' "$out/r1_bench.log" | head -9 | tr '\n' ' ')"
        echo "r1 metrics: $(curl -s http://127.0.0.1:$port/metrics | grep -E '^moeserve_(kv_cache|engine_steps)' | tr '\n' ' ')"
    else
        echo "r1 server: not ready in 240 s: $(tail -8 "$out/r1_server.log" | tr '\n' ' ')"
    fi
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
}

phase_trace() {
    for m in tiny8 tinynoq tiny; do
        echo "trace $m: $($R moeserve-bench-ops --batch '' --rows '' --model "$W/$m" --load auto --step-batch 1 \
            --step-ctx 13 --step-tokens 64 --moe-cap 0 --trace-faults 1 2>&1 | grep -E 'trace|error' | head -3 | tr '\n' ' ')"
    done
    local cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -n "$cs" ]; then
        timeout 120 $R "$cs" --tool memcheck --print-limit 5 "$B/bin/moeserve" generate "$W/tiny8" \
            --prompt-ids 0,100,344,201,440,33,7,19 --max-tokens 2 --ignore-eos --device cuda >"$out/memcheck.log" 2>&1
        echo "memcheck tiny8: $(grep -E 'Invalid|ERROR SUMMARY|at 0x|by thread|Address' "$out/memcheck.log" | head -12 | tr '\n' ' ')"
    else
        echo "memcheck: no compute-sanitizer on this host"
    fi
}

phase_bench() {
    local d=$W/r1x4
    [ -f "$d/config.json" ] || $R moeserve-mkmodel --preset r1 --dtype fp8 --layers 4 --config-only --out "$d" >/dev/null
    timeout 300 $R moeserve-bench-ops --reps 20 --model "$d" --step-batch 32 --step-ctx 1024 --step-tokens 1024 \
        --moe-cap 512 ${BENCH_OPS_ARGS:-} >"$out/bench_ops.md" 2>"$out/bench_ops.err"
    echo "bench-ops: exit $? ($(wc -l <"$out/bench_ops.md") lines; stderr: $(tail -2 "$out/bench_ops.err" | tr '\n' ' '))"
    # issue 10 item 6: one EP8 rank (4 MoE layers of 32 experts), batch 128 at 1k context, by op
    local e=$W/r1ep8
    [ -f "$e/config.json" ] || $R moeserve-mkmodel --preset r1-ep8 --dtype fp8 --layers 4 --config-only --out "$e" >/dev/null
    timeout 300 $R moeserve-bench-ops --batch '' --rows '' --model "$e" --step-batch 128 --step-ctx 1024 --step-tokens 1024 \
        --moe-cap 512 --moe-compute fp8 --kv-dtype fp8 >"$out/bench_ep8.md" 2>"$out/bench_ep8.err"
    echo "bench-ops r1-ep8 batch 128: exit $? | $(grep -E '^\| (mla_latent|moe_experts|gemm|\*\*total)' "$out/bench_ep8.md" | tr '\n' ' ')"
    cat "$out/bench_ep8.md" >>"$out/bench_ops.md"
}

phase_step() { # issue 10 item 6: one EP8 rank's decode step (r1-ep8, 4 MoE layers of 32 experts), by op and by kernel
    local e=$W/r1ep8 ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
    [ "${STEP_NCU:-1}" = 0 ] && ncu= # STEP_NCU=0: op and graph tables only
    [ -f "$e/config.json" ] || $R moeserve-mkmodel --preset r1-ep8 --dtype fp8 --layers 4 --config-only --out "$e" >/dev/null
    local a=(--batch '' --rows '' --model "$e" --step-ctx 1024 --step-tokens 1024 --moe-cap 512 --moe-compute fp8
        --kv-dtype fp8 --graphs 1)
    : >"$final/step_tables.md"
    for b in $(echo "${STEP_BATCHES:-1,32,128}" | tr ',' ' '); do
        timeout 150 $R moeserve-bench-ops "${a[@]}" --step-batch $b >"$out/step_$b.md" 2>"$out/step_$b.err"
        echo "step batch $b: exit $? | $(grep -E '^\| (mla_latent|moe_experts|gemm|\*\*total|graph) ' "$out/step_$b.md" | cut -d'|' -f2-5 | tr '\n' ';')"
        cat "$out/step_$b.md" >>"$final/step_tables.md"
        if [ -n "${STEP_AB_ENV:-}" ]; then # the same step with these variables set (e.g. the fusions off): an A/B
            env $STEP_AB_ENV timeout 150 $R moeserve-bench-ops "${a[@]}" --step-batch $b >"$out/step_ab_$b.md" 2>"$out/step_ab_$b.err"
            echo "step batch $b with $STEP_AB_ENV: exit $? | $(grep -E '^\| (\*\*total|graph) ' "$out/step_ab_$b.md" | cut -d'|' -f2-5 | tr '\n' ';')"
            { echo; echo "#### The same step with $STEP_AB_ENV"; cat "$out/step_ab_$b.md"; } >>"$final/step_tables.md"
        fi
        [ -n "$ncu" ] || continue
        MS_BENCH_PROFILE_STEP=1 timeout 200 $R "$ncu" --clock-control none --cache-control none --profile-from-start off \
            --graph-profiling node --metrics gpu__time_duration.sum --csv "$B/bin/moeserve-bench-ops" "${a[@]}" \
            --step-batch $b >"$out/step_ncu_$b.csv" 2>"$out/step_ncu_$b.err"
        { echo; echo "#### ncu, one replayed step at batch $b (tools/ncu_kernels.py)"; echo '```'
          python3 "$root/tools/ncu_kernels.py" "$out/step_ncu_$b.csv" 30; echo '```'; } >>"$final/step_tables.md"
        echo "step batch $b ncu: $(python3 "$root/tools/ncu_kernels.py" "$out/step_ncu_$b.csv" 0)"
    done
}

phase_sample() {
    # the sampler (sample.cu) and logits_adjust: their harness cases and the sample op's times at batch 1 and 128
    # (greedy, logprobs, temperature, top-p, the flat rows of the fallback)
    timeout 200 $R "$B/tests/test_kern_cuda_vs_cpu" sample >"$out/sample_cases.log" 2>&1
    echo "sample cases: exit $? | $(grep -E '^(PASS|FAIL)' "$out/sample_cases.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
    timeout 100 $R "$B/tests/test_kern_cuda_vs_cpu" logits_adjust >"$out/ladj_cases.log" 2>&1
    echo "logits_adjust cases: exit $? | $(grep -E '^(PASS|FAIL)' "$out/ladj_cases.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
    timeout 100 $R moeserve-bench-ops --batch '' --rows '' --sample 1,128 >"$out/sample_ops.md" 2>&1
    echo "sample ops: $(grep -E '^\| sample' "$out/sample_ops.md" | cut -d'|' -f2-4 | tr '\n' ';')"
    # the fallback's exact passes alone (MS_SMP_FB_EST=0; the default estimates first) and the estimates with
    # every select redone exactly (=redo): the same cases, and the exact passes' times beside the default's
    MS_SMP_FB_EST=0 timeout 200 $R "$B/tests/test_kern_cuda_vs_cpu" sample >"$out/sample_cases_exact.log" 2>&1
    echo "sample cases (MS_SMP_FB_EST=0: exact passes): exit $? | $(grep -E '^(PASS|FAIL)' "$out/sample_cases_exact.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
    MS_SMP_FB_EST=redo timeout 300 $R "$B/tests/test_kern_cuda_vs_cpu" sample >"$out/sample_cases_redo.log" 2>&1
    echo "sample cases (MS_SMP_FB_EST=redo: every estimated select redone exactly): exit $? | $(grep -E '^(PASS|FAIL)' "$out/sample_cases_redo.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
    MS_SMP_FB_EST=0 timeout 100 $R moeserve-bench-ops --batch '' --rows '' --sample 1,128 >"$out/sample_ops_exact.md" 2>&1
    echo "sample ops (MS_SMP_FB_EST=0): $(grep -E '^\| sample' "$out/sample_ops_exact.md" | cut -d'|' -f2-4 | tr '\n' ';')"
    # the PyTorch peer on the same shapes and GPU, with ratios torch / ours (needs torch; skipped without it)
    if python3 -c 'import torch' 2>/dev/null; then
        timeout 150 python3 "$root/tools/bench_sample_torch.py" --batch 1,128 --ours "$out/sample_ops.md" \
            >"$out/sample_torch.txt" 2>&1
        echo "sample torch peer: exit $?"; cat "$out/sample_torch.txt"
    else
        echo "sample torch peer: SKIP (no torch)"
    fi
}

phase_mla() {
    # mla_latent's kernels — the default tensor-core ones (mla_latent_wgmma.cu at R1's shapes, mla_latent_mma.cu
    # otherwise, e.g. the tiny models' heads) and the SIMT one (MS_MLA_KERNEL=simt): their harness cases, the
    # golden fixtures on the SIMT one (the default's run in phase golden), greedy tokens of both, and the kernels'
    # op times at R1 decode shapes
    timeout 300 $R "$B/tests/test_kern_cuda_vs_cpu" mla >"$out/mla_cases.log" 2>&1 # the cases set the kernel
    echo "mla cases: exit $? | $(grep -E '^(PASS|FAIL)' "$out/mla_cases.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')"
    for fx in tiny_bf16 tiny_fp8; do
        MS_MLA_KERNEL=simt timeout 240 $R python3 "$root/tests/golden/run_golden.py" "$root/tests/fixtures/golden/$fx.json" \
            "$B/bin/moeserve-mkmodel" "$B/bin/moeserve" --device cuda --moe-compute dequant >"$out/mla_golden_$fx.log" 2>&1
        echo "mla golden $fx (simt): exit $? | $(grep -E 'max \|logit diff\| over|: passed|: FAILED' "$out/mla_golden_$fx.log" | tr '\n' ' ')"
    done
    local ids=0,100,344,201,440,33,7,19
    for m in tiny tiny8; do
        a=(generate "$W/$m" --prompt-ids $ids --max-tokens 24 --ignore-eos --mla auto --device cuda)
        e=$(MS_MLA_KERNEL=simt $R moeserve "${a[@]}" 2>/dev/null | tail -1)
        g=$($R moeserve "${a[@]}" 2>/dev/null | tail -1)
        echo "mla generate $m simt vs mma: $([ -n "$g" ] && [ "$e" = "$g" ] && echo same || echo DIFFER) simt=[$e] mma=[$g]"
    done
    timeout 300 $R moeserve-bench-ops --reps 20 --batch 1,32,128 --rows '' --ctx 1024 >"$out/mla_ops.md" 2>&1
    echo "mla ops: $(grep -E '^\| mla_latent' "$out/mla_ops.md" | cut -d'|' -f2-5 | tr '\n' ';')"
    # the mla cases above cover both FP8 paths of the Hopper kernel: the default folds the key scales into S and
    # P (mla_wgmma), MS_MLA_FP8_FOLD=0 dequantizes (mla_dequant). The fold's shared-memory hand-offs and bounds
    # under compute-sanitizer (its two small "fp8 kv f32" cases), then FP8 KV's times at batch 32/128 x context
    # 1k/4k/16k with and without the fold, in one command
    local cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -n "$cs" ]; then
        for tool in racecheck memcheck; do
            timeout 300 $R "$cs" --tool $tool "$B/tests/test_kern_cuda_vs_cpu" mla_wgmma "fp8 kv f32" heads \
                >"$out/mla_fold_$tool.log" 2>&1
            echo "mla fold $tool: exit $? | $(grep -E '^(PASS|FAIL)' "$out/mla_fold_$tool.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')$(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/mla_fold_$tool.log" | tr '\n' ' ')"
        done
    fi
    local fa=(--batch '' --rows '' --reps 10 --mla-batch 32,128 --mla-ctx 1024,4096,16384)
    { MS_BENCH_MLA_KV=fp8 timeout 200 $R moeserve-bench-ops "${fa[@]}"
      MS_BENCH_MLA_KV=fp8 MS_MLA_FP8_FOLD=0 timeout 200 $R moeserve-bench-ops "${fa[@]}"; } >"$out/mla_fold_ops.md" 2>&1
    echo "mla fp8 ops, fold (default) then dequant: $(grep -E '^\| mla_latent' "$out/mla_fold_ops.md" | cut -d'|' -f3-4 | tr '\n' ';')"
    # the PyTorch peer (gather, dequantize, bmm, softmax, bmm) on the default kernel's shapes, ratios torch / ours
    timeout 200 $R moeserve-bench-ops "${fa[@]}" >"$out/mla_batch_ops.md" 2>&1
    if python3 -c 'import torch' 2>/dev/null; then
        timeout 300 python3 "$root/tools/bench_mla_torch.py" --ours "$out/mla_batch_ops.md" >"$out/mla_torch.txt" 2>&1
        echo "mla torch peer: exit $?"; cat "$out/mla_torch.txt"
    else
        echo "mla torch peer: SKIP (no torch)"
    fi
    # the persistent grid (a CTA an SM walking the work items, the default) against a CTA an item
    # (MS_MLA_PERSIST=0), both KV dtypes, alternated; and the batch-128 cases, whose last sequences are the CTAs'
    # second items, under racecheck (the slots and Q change hands between items there)
    for kv in bf16 fp8; do
        for p in 1 0 1 0; do
            MS_BENCH_MLA_KV=$kv MS_MLA_PERSIST=$p timeout 200 $R moeserve-bench-ops "${fa[@]}" >"$out/mla_persist.md" 2>&1
            echo "mla $kv MS_MLA_PERSIST=$p: $(grep -E '^\| mla_latent' "$out/mla_persist.md" | cut -d'|' -f3-4 | tr '\n' ';')"
        done
    done
    if [ -n "$cs" ]; then
        timeout 600 $R "$cs" --tool racecheck "$B/tests/test_kern_cuda_vs_cpu" mla_wgmma "" "b128 ctx 1k" >"$out/mla_persist_race.log" 2>&1
        echo "mla b128 racecheck: exit $? | $(grep -E '^(PASS|FAIL)' "$out/mla_persist_race.log" | awk '{print $1}' | sort | uniq -c | tr '\n' ' ')$(grep -E 'RACECHECK SUMMARY' "$out/mla_persist_race.log" | tr '\n' ' ')"
    fi
}

phase_prof() {
    local ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
    [ -n "$ncu" ] || { echo "prof: no ncu on this host"; return; }
    MS_BENCH_MLA_KV=fp8 timeout 200 $R "$ncu" --clock-control none -k regex:mw2_kernel -s 2 -c 1 --import-source no \
        --section SpeedOfLight --section SourceCounters --section WarpStateStats --section SchedulerStats \
        -f -o "$out/prof_mw2" "$B/bin/moeserve-bench-ops" --batch '' --rows '' --reps 2 --mla-batch 128 \
        --mla-ctx 1024 >"$out/prof_mw2.log" 2>&1
    echo "prof mw2 (fp8, b128 x 1k): exit $?"
    "$ncu" -i "$out/prof_mw2.ncu-rep" --page details >"$out/prof_mw2_details.txt" 2>&1
    "$ncu" -i "$out/prof_mw2.ncu-rep" --page source --csv --print-source sass 2>/dev/null | gzip >"$final/prof_mw2_src.csv.gz"
    grep -E 'Duration|DRAM Throughput|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible' "$out/prof_mw2_details.txt" | sed 's/^ */prof mw2: /'
    for t in 64x2w 128x2t; do
        timeout 200 $R "$ncu" --clock-control none -k regex:mg_kernel -c 1 --section SpeedOfLight \
            --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats "$B/bin/moeserve-bench-dense" \
            --only o_proj --m 128 --reps 1 --fp8-only --tiles $t >"$out/prof_oproj_$t.txt" 2>&1
        echo "prof o_proj m=128 $t: exit $? | $(grep -E 'Duration|DRAM Throughput|L2 Cache Throughput|Grid Size' "$out/prof_oproj_$t.txt" | tr -s ' ' | tr '\n' ';')"
    done
}

phase_mtp() { # on one EP8 rank's share (r1-ep8: every layer MoE, 32 experts, the module too), so steps scale to 61 layers
    # first MTP served on CUDA: greedy output = the CPU's `generate` without MTP, seeded sampling = the same
    # layout without MTP, max_tokens, stop strings, streaming, metrics, preemption (tests/integration/test_mtp.py)
    for L in np1 np2-dp; do
        MS_SERVE_DEVICE=cuda timeout 300 $R python3 "$root/tests/integration/test_mtp.py" --moeserve "$B/bin/moeserve" \
            --mkmodel "$B/bin/moeserve-mkmodel" --tokdir "$tok" --workdir "$W/mtp_int" --configs "$root/configs" "$L" \
            >"$out/mtp_serve_$L.log" 2>&1
        echo "mtp serve $L (server on cuda): exit $? | $(tail -2 "$out/mtp_serve_$L.log" | tr '\n' ' ')"
    done
    local d=$W/r1ep8m
    [ -f "$d/config.json" ] || $R moeserve-mkmodel --preset r1-ep8 --dtype fp8 --layers 4 --config-only --mtp --out "$d" >/dev/null
    for b in $(echo "${MTP_BATCHES:-1,32}" | tr ',' ' '); do
        timeout 300 $R moeserve-bench-ops --batch '' --rows '' --model "$d" --step-batch $b --step-ctx 1024 \
            --step-tokens 1024 --moe-cap 512 --moe-compute fp8 --kv-dtype fp8 --mtp ${MTP_N:-1} --graphs 1 \
            >"$out/mtp_ops_$b.md" 2>"$out/mtp_ops_$b.err"
        echo "mtp step by op, batch $b: exit $? | $(grep -E '^\| \*\*total|^\| (eager|graph) \||Graph vs' "$out/mtp_ops_$b.md" | tr '\n' ' ')"
    done
    for g in 0 1; do
        timeout 300 $R moeserve-bench-mtp --model "$d" --batch "${MTP_BATCHES:-1,32}" --drafts 0,1,3 --ctx 1024 \
            --steps 8 --kv-dtype fp8 --moe-compute fp8 --graphs $g >"$out/mtp_bench_g$g.md" 2>"$out/mtp_bench_g$g.err"
        echo "bench-mtp graphs $g: exit $? | $(grep -E '^\| [0-9]' "$out/mtp_bench_g$g.md" | tr '\n' ' ')"
    done
}

phase_graphs() {
    local here=$(cd "$(dirname "$0")" && pwd)
    local tg=$B/tests/test_graphs
    timeout 300 $R "$tg" "$B/bin/moeserve-mkmodel" cuda >"$out/graphs_test.log" 2>&1
    echo "graphs test (cuda): exit $? | $(grep -E 'steps, max|checks' "$out/graphs_test.log" | tr '\n' ' ')"
    timeout 300 $R "$B/tests/test_graphs_mtp" "$B/bin/moeserve-mkmodel" cuda >"$out/graphs_mtp_test.log" 2>&1
    echo "graphs mtp test (cuda): exit $? | $(grep -E 'drafts accepted|checks' "$out/graphs_mtp_test.log" | tr '\n' ' ')"
    local ids=0,100,344,201,440,33,7,19
    for m in tiny tiny8 tinynoq; do
        a=(generate "$W/$m" --prompt-ids $ids --max-tokens 24 --ignore-eos --mla auto --device cuda)
        e=$($R moeserve "${a[@]}" 2>>"$out/graphs_gen.err" | tail -1)
        g=$($R moeserve "${a[@]}" --cuda-graphs on 2>>"$out/graphs_gen.err" | tail -1)
        [ -n "$g" ] && [ "$e" = "$g" ] && r=SAME || r=DIFF
        echo "generate $m --cuda-graphs on vs off: $r eager=[$e] graphs=[$g]"
    done
    echo "generate capture: $(grep -m1 'cuda_graph_config' "$out/graphs_gen.err")"
    timeout 300 $R python3 "$here/gpu_graphs_serve.py" "$B/bin/moeserve" "$W/tiny" "$W/graphs" 2>&1 | tail -6
    local d=$W/r1x4
    [ -f "$d/config.json" ] || $R moeserve-mkmodel --preset r1 --dtype fp8 --layers 4 --config-only --out "$d" >/dev/null
    for b in $(echo "${GRAPH_BATCHES:-1,32,128}" | tr ',' ' '); do
        timeout 300 $R moeserve-bench-ops --batch '' --rows '' --model "$d" --step-batch $b --step-ctx 1024 \
            --step-tokens 1024 --moe-cap 512 --moe-compute fp8 --kv-dtype fp8 --graphs 1 \
            >"$out/graphs_bench_$b.md" 2>"$out/graphs_bench_$b.err"
        echo "graphs bench batch $b: exit $? | $(grep -E '^\| (eager|graph) \||Graph vs' "$out/graphs_bench_$b.md" | tr '\n' ' ')"
    done
    local ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
    if [ -n "$ncu" ]; then
        MS_BENCH_PROFILE_STEP=1 timeout 300 $R "$ncu" --clock-control none --cache-control none \
            --profile-from-start off --graph-profiling node --metrics gpu__time_duration.sum --csv "$B/bin/moeserve-bench-ops" --batch '' \
            --rows '' --model "$d" --step-batch 1 --step-ctx 1024 --step-tokens 1024 --moe-cap 512 --moe-compute fp8 \
            --kv-dtype fp8 --graphs 1 >"$out/graphs_ncu.csv" 2>"$out/graphs_ncu.err"
        echo "graphs ncu batch 1 (kernels of one replayed step): exit $? | $(python3 "$root/tools/ncu_kernels.py" "$out/graphs_ncu.csv" 0 2>&1)"
    else
        echo "graphs ncu: no ncu on this host"
    fi
}

t0=$(date +%s)
pids=()
for p in golden generate layouts; do
    if has $p; then (phase_$p >"$out/phase_$p.txt" 2>&1) & pids+=($!); fi
done
has server && phase_server >"$out/phase_server.txt" 2>&1
for p in "${pids[@]}"; do wait "$p"; done
for p in golden generate layouts server; do has $p && cat "$out/phase_$p.txt" >>"$S"; done
has graphs && { phase_graphs >"$out/phase_graphs.txt" 2>&1; cat "$out/phase_graphs.txt" >>"$S"; }
has trace && { phase_trace >"$out/phase_trace.txt" 2>&1; cat "$out/phase_trace.txt" >>"$S"; }
has r1 && { phase_r1 >"$out/phase_r1.txt" 2>&1; cat "$out/phase_r1.txt" >>"$S"; }
has nccl && { phase_nccl >"$out/phase_nccl.txt" 2>&1; cat "$out/phase_nccl.txt" >>"$S"; }
has step && { phase_step >"$out/phase_step.txt" 2>&1; cat "$out/phase_step.txt" >>"$S"; }
has mla && { phase_mla >"$out/phase_mla.txt" 2>&1; cat "$out/phase_mla.txt" >>"$S"; }
has sample && { phase_sample >"$out/phase_sample.txt" 2>&1; cat "$out/phase_sample.txt" >>"$S"; }
has prof && { phase_prof >"$out/phase_prof.txt" 2>&1; cat "$out/phase_prof.txt" >>"$S"; }
has mtp && { phase_mtp >"$out/phase_mtp.txt" 2>&1; cat "$out/phase_mtp.txt" >>"$S"; }
has bench && { phase_bench >>"$S" 2>&1; }
say "gpu-check: $(( $(date +%s) - t0 )) s"
[ -f "$out/bench_ops.md" ] && cp "$out/bench_ops.md" "$final/"
tar czf "$final/logs.tgz" -C "$W" logs
cat "$S"
