#!/usr/bin/env bash
# bench.sh — the seed's benchmark loop (reference/trtllm-deepseek-r1-quickstart.md,
# "Benchmarking Performance") driving build/moeserve-bench against a running
# server, then one plot and one table of the sweep.
#
#   bash scripts/bench.sh                       # the seed's sweep against :8000
#   CONCURRENCY_LIST="1 2 4" MULTI_ROUND=2 ISL=64 OSL=32 RESULT_DIR=/tmp/b \
#   MODEL=.cache/models/tiny GPUS=2 bash scripts/bench.sh --base-url http://127.0.0.1:8000
#
# Settings (environment; the seed's names in capitals, its values as defaults):
#   CONCURRENCY_LIST  "32 64 128 256 512 1024 2048 4096"
#   MULTI_ROUND       5      num_prompts = concurrency * MULTI_ROUND
#   ISL / OSL         1024 / 1024
#   RESULT_DIR        /tmp/moeserve_bench_output
#   MODEL             the server's model (name or checkpoint dir); TOKENIZER its
#                     tokenizer dir when MODEL is not one (passed as --tokenizer)
#   GPUS              GPUs (ranks) the server runs on: throughput per GPU divides by it
# Extra arguments go to every moeserve-bench run (e.g. --base-url, --backend).
#
# Writes to RESULT_DIR: concurrency_N.json (the result JSON), concurrency_N.log
# (the report block), sweep.dat, sweep.md (markdown table), sweep.png and
# sweep.svg (gnuplot: output tok/s per GPU against median TPOT and median TTFT,
# each point labelled with its concurrency).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/build/moeserve-bench}

concurrency_list=${CONCURRENCY_LIST:-"32 64 128 256 512 1024 2048 4096"}
multi_round=${MULTI_ROUND:-5}
isl=${ISL:-1024}
osl=${OSL:-1024}
result_dir=${RESULT_DIR:-/tmp/moeserve_bench_output}
model=${MODEL:-deepseek-ai/DeepSeek-R1-0528}
gpus=${GPUS:-1}

[ -x "$BENCH" ] || { echo "bench.sh: $BENCH not built: run scripts/setup.sh" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "bench.sh: gnuplot not found: run scripts/setup.sh (gnuplot-nox)" >&2; exit 1; }
case "$gpus" in ''|*[!0-9]*|0) echo "bench.sh: GPUS='$gpus' must be a positive integer" >&2; exit 2 ;; esac
tok_args=()
[ -n "${TOKENIZER:-}" ] && tok_args=(--tokenizer "$TOKENIZER")
mkdir -p "$result_dir"

for concurrency in ${concurrency_list}; do
    num_prompts=$((concurrency * multi_round))
    echo "bench.sh: concurrency $concurrency, $num_prompts prompts" >&2
    "$BENCH" \
        --model "$model" "${tok_args[@]}" \
        --backend openai \
        --dataset-name "random" \
        --random-input-len "${isl}" \
        --random-output-len "${osl}" \
        --random-prefix-len 0 \
        --random-ids \
        --num-prompts "${num_prompts}" \
        --max-concurrency "${concurrency}" \
        --ignore-eos \
        --tokenize-on-client \
        --percentile-metrics "ttft,tpot,itl,e2el" \
        --save-result \
        --result-dir "${result_dir}" \
        --result-filename "concurrency_${concurrency}.json" \
        "$@" | tee "$result_dir/concurrency_${concurrency}.log"
done

# The report block is made to be read back: "Label:<pad>value" lines.
field() { awk -v k="$2" 'index($0, k ":") == 1 { print $NF; exit }' "$1"; }

dat=$result_dir/sweep.dat
md=$result_dir/sweep.md
{
    echo "# concurrency ok failed out_tok_s out_tok_s_per_gpu median_ttft_ms median_tpot_ms median_itl_ms median_e2el_ms p99_tpot_ms"
    for c in ${concurrency_list}; do
        f=$result_dir/concurrency_$c.log
        out=$(field "$f" "Output token throughput (tok/s)")
        printf '%s %s %s %s %s %s %s %s %s %s\n' "$c" "$(field "$f" "Successful requests")" \
            "$(field "$f" "Failed requests")" "$out" "$(awk -v o="$out" -v g="$gpus" 'BEGIN { printf "%.2f", o / g }')" \
            "$(field "$f" "Median TTFT (ms)")" "$(field "$f" "Median TPOT (ms)")" "$(field "$f" "Median ITL (ms)")" \
            "$(field "$f" "Median E2EL (ms)")" "$(field "$f" "P99 TPOT (ms)")"
    done
} > "$dat"
{
    echo "ISL/OSL $isl/$osl, $multi_round rounds per concurrency, $gpus GPU(s), model $model"
    echo
    echo "| concurrency | ok | failed | output tok/s | output tok/s/GPU | median TTFT (ms) | median TPOT (ms) | median ITL (ms) | median E2EL (ms) | P99 TPOT (ms) |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk '!/^#/ { printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$dat"
} > "$md"

for term in png svg; do
    if [ $term = png ]; then t="pngcairo size 960,640"; else t="svg size 960,640 dynamic"; fi
    gnuplot <<EOF
set terminal $t
set output "$result_dir/sweep.$term"
set title "moeserve: ISL/OSL $isl/$osl, concurrency sweep ($gpus GPU)"
set ylabel "output tokens/s per GPU"
set xlabel "median TPOT (ms)"
set x2label "median TTFT (ms)"
set xtics nomirror
set x2tics
set key top left
set grid
set offsets graph 0.05, graph 0.05, graph 0.1, graph 0.05
plot "$dat" using 7:5 axes x1y1 with linespoints pt 7 lw 2 title "vs median TPOT (bottom axis)", \
     "" using 7:5:(sprintf("%d", \$1)) axes x1y1 with labels offset 1.2,0.6 notitle, \
     "" using 6:5 axes x2y1 with linespoints pt 5 lw 2 dt 2 title "vs median TTFT (top axis)", \
     "" using 6:5:(sprintf("%d", \$1)) axes x2y1 with labels offset 1.2,-0.6 notitle
EOF
done
cat "$md"
echo "bench.sh: plot $result_dir/sweep.png, $result_dir/sweep.svg; table $md" >&2
