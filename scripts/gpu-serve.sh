#!/usr/bin/env bash
# gpu-serve.sh — serving numbers on one GPU (issue 11 item 6): an R1-geometry config-only model standing
# for one EP8 rank (n_routed_experts 32, FP8 weights, FP8 KV, load_format dummy, SERVE_LAYERS layers)
# served on CUDA and driven by moeserve-bench at each concurrency of CONC (ISL/OSL, one round of
# CONC prompts each, BENCH_T seconds at most per level). Needs gpu-bundle/ (scripts/gpu-bundle.sh).
# Logs, result JSONs and summary.txt under $OUT (default /tmp/gpu-serve).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
B=$root/gpu-bundle R=$B/run.sh O=${OUT:-/tmp/gpu-serve} W=${SERVE_WORK:-/tmp/gpu-serve-work}
mkdir -p "$O" "$W"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$O/summary.txt"; }
L=${SERVE_LAYERS:-8} s=$W/r1ep port=8313
$R moeserve-mkmodel --preset r1 --dtype fp8 --layers $L --config-only --tokenizer "$B/tokenizer" --out "$s" >/dev/null
python3 - "$s/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["n_routed_experts"] = 32; json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
cat >"$W/serve.yaml" <<Y
load_format: dummy
max_batch_size: 128
max_num_tokens: 4096
max_seq_len: ${MAX_SEQ_LEN:-2304}
enable_chunked_prefill: true
kv_cache_config:
  dtype: fp8
  free_gpu_memory_fraction: 0.85
moe_config:
  max_num_tokens: 4096
moeserve:
  device: cuda
Y
$R moeserve serve "$s" --served_model_name r1 --host 127.0.0.1 --port $port --extra_llm_api_options "$W/serve.yaml" \
    >"$O/serve.log" 2>&1 &
sp=$!
for _ in $(seq 1 90); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/health)" = 200 ] && break; sleep 1; done
el "server: $(grep -E 'backend|routed experts|KV|loaded in' "$O/serve.log" | head -6 | tr '\n' ' ')"
for c in ${CONC:-32 128}; do
    timeout ${BENCH_T:-60} $R moeserve-bench --port $port --model "$s" --served-model-name r1 --tokenizer "$s" \
        --num-prompts $c --max-concurrency $c --random-input-len ${ISL:-1024} --random-output-len ${OSL:-128} \
        --ignore-eos --tokenize-on-client --disable-tqdm --save-result --result-dir "$O" --result-filename "bench_c$c.json" \
        >"$O/bench_c$c.log" 2>&1
    el "bench c=$c: rc=$? $(grep -iE 'Output token throughput|Median TPOT|Median TTFT|Successful' "$O/bench_c$c.log" | tr '\n' ' ')"
done
kill $sp 2>/dev/null; wait $sp 2>/dev/null
el "serving done"
