#!/usr/bin/env python3
"""gpu_graphs_serve.py — the server's greedy outputs with and without CUDA graphs
(cuda_graph_config), on one GPU: the same requests at 1, 3 and 8 concurrent
greedy completions against `moeserve serve` with graphs of [1, 2, 4, 8] and
padding, then with `cuda_graph_config: null`; every text must be equal, and the
graph server's log must show the capture. Used by scripts/gpu-check.sh (phase
graphs); standard library only.

  gpu_graphs_serve.py MOESERVE MODEL_DIR WORKDIR [PORT]
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

PROMPTS = ["Where is New York?", "The capital of France is", "1 2 3 4 5", "Once upon a time",
           "def main():", "The quick brown fox", "Hello, my name is", "In 1969 the first"]


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def wait_ready(port, proc, seconds):
    for _ in range(seconds * 4):
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.25)
    return False


def run(moeserve, model, work, port, graphs):
    cfg = os.path.join(work, f"graphs-{graphs}.yaml")
    with open(cfg, "w") as f:
        f.write("max_batch_size: 8\nmax_num_tokens: 256\nmax_seq_len: 512\nenable_chunked_prefill: true\n")
        f.write("cuda_graph_config:\n  enable_padding: true\n  batch_sizes: [1, 2, 4, 8]\n" if graphs
                else "cuda_graph_config: null\n")
        f.write("kv_cache_config:\n  max_tokens: 8192\n  enable_block_reuse: false\nmoeserve:\n  device: cuda\n")
    log = open(os.path.join(work, f"serve-graphs-{graphs}.log"), "w")
    proc = subprocess.Popen([moeserve, "serve", model, "--served_model_name", "tiny", "--host", "127.0.0.1",
                             "--port", str(port), "--extra_llm_api_options", cfg], stdout=log, stderr=log)
    out = {}
    try:
        if not wait_ready(port, proc, 120):
            raise SystemExit(f"server (graphs={graphs}) not ready: see {log.name}")
        for conc in (1, 3, 8):
            res = [None] * conc

            def one(i, conc=conc, res=res):
                res[i] = post(port, {"model": "tiny", "prompt": PROMPTS[i], "max_tokens": 24, "temperature": 0,
                                     "ignore_eos": True})["choices"][0]["text"]
            th = [threading.Thread(target=one, args=(i,)) for i in range(conc)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            out[conc] = res
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    return out, open(log.name).read()


def main():
    moeserve, model, work = sys.argv[1:4]
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 8321
    os.makedirs(work, exist_ok=True)
    g, glog = run(moeserve, model, work, port, True)
    e, _ = run(moeserve, model, work, port + 1, False)
    cap = [l for l in glog.splitlines() if "cuda_graph_config" in l]
    print("graphs server:", cap[0] if cap else "NO capture line")
    ok = bool(cap) and "captured" in cap[0]
    for conc in (1, 3, 8):
        same = g[conc] == e[conc]
        ok = ok and same
        print(f"serve batch {conc}: {'SAME' if same else 'DIFF'}"
              + ("" if same else f" graphs={g[conc]!r} eager={e[conc]!r}"))
    print("serve graphs vs eager:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
