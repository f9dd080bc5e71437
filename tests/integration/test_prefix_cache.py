"""test_prefix_cache.py LAYOUT — prefix caching (kv_cache_config.enable_block_reuse) end to end.

On one server of the layout with block reuse on and a pool small enough to
preempt under load:
  1. parity: prompts sharing a long prefix, one by one and then all at once,
     give exactly the single-process `moeserve generate` continuation; a
     prompt sent twice gives the same text cold and warm; usage reports
     prompt_tokens_details.cached_tokens: 0 cold, the whole shared blocks warm
     (never the last prompt token);
  1b. n > 1 on a cold prompt computes the prompt's whole blocks once: the /metrics hit counter grows by
     (n - 1) x those blocks (single-group layouts; under attention DP a sibling may go to another rank),
     and the greedy choices are all the reference text;
  2. a request with repetition_penalty takes no cached prefix (the workers
     count its prompt) and is still answered;
  3. soak: concurrent requests over a few shared prefixes, some streams cut
     mid-way, preemptions; afterwards no block is held, every cached block is
     counted free, and /metrics' hit rate agrees with the counters.
"""
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402
from test_layout import LAYOUTS, parallel  # noqa: E402

BS = 32
CFG = """max_batch_size: 16
max_num_tokens: 256
max_seq_len: 1024
stream_interval: 1
enable_chunked_prefill: true
cuda_graph_config: null
kv_cache_config:
  max_tokens: 2048
  tokens_per_block: %d
  enable_block_reuse: true
moeserve:
  device: cpu
  max_queue_size: 256
""" % BS
N_TOK = 8


def base(seed, n):
    return [0] + [(7919 * (i + 31 * seed)) % 100000 + 200 for i in range(1, n)]


def parity(c, env, srv, model):
    shared = base(1, 200)
    p0 = shared + [5000 + i for i in range(30)]   # 230 tokens
    p1 = shared + [7000 + i for i in range(15)]   # 215
    p2 = shared[:64] + [9000 + i for i in range(40)]  # shares 2 blocks
    prompts = [p0, p1, p0, p2]
    want_cached = [0, 192, 224, 64]   # whole blocks; p0 again: (230 - 1) // 32 = 7 blocks
    refs = env.detokenize(model, [env.generate(model, p, N_TOK) for p in prompts])
    res = [srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True) for p in prompts]
    for i, r in enumerate(res):
        txt = r["choices"][0]["text"]
        c.check(txt == refs[i], "sequential prompt %d: %r != reference %r" % (i, txt, refs[i]))
        cached = r["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
        c.check(cached == want_cached[i], "prompt %d: cached_tokens %r, want %d" % (i, cached, want_cached[i]))
        c.check(r["usage"]["prompt_tokens"] == len(prompts[i]), "usage %r" % r["usage"])
    c.check(res[0]["choices"][0]["text"] == res[2]["choices"][0]["text"], "cold and warm texts differ")
    # all at once, with two new prompts on the same prefix (mixed cached and cold prefills)
    more = [shared + [11000 + i for i in range(50)], shared[:100] + [12000 + i for i in range(3)]]
    allp = prompts + more
    refs += env.detokenize(model, [env.generate(model, p, N_TOK) for p in more])
    res = parallel([lambda p=p: srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True)
                    for p in allp])
    for i, r in enumerate(res):
        if c.check(isinstance(r, dict), "concurrent prompt %d: %r" % (i, r)):
            c.check(r["choices"][0]["text"] == refs[i], "concurrent prompt %d: %r != %r" %
                    (i, r["choices"][0]["text"], refs[i]))
    # streaming and n > 1 on a warm prefix
    ev = srv.stream("/v1/completions", dict(prompt=p1, max_tokens=N_TOK, temperature=0, ignore_eos=True,
                                            stream_options={"include_usage": True}))
    txt = "".join(e["choices"][0].get("text") or "" for e in ev if isinstance(e, dict) and e.get("choices"))
    c.check(txt == refs[1], "streamed warm text %r != %r" % (txt, refs[1]))
    us = [e["usage"] for e in ev if isinstance(e, dict) and e.get("usage")]
    c.check(us and us[-1]["prompt_tokens_details"]["cached_tokens"] == 192, "stream usage %r" % us)


def n_siblings(c, env, srv, model):
    p = base(5, 170)  # cold: 5 whole blocks
    ref = env.detokenize(model, [env.generate(model, p, N_TOK)])[0]
    h0 = srv.metrics().get("moeserve_prefix_cache_hits_total") or 0
    r = srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True, n=4)
    h1 = srv.metrics().get("moeserve_prefix_cache_hits_total") or 0
    c.check(all(ch["text"] == ref for ch in r["choices"]) and len(r["choices"]) == 4, "n=4 greedy choices %r != %r" %
            ([ch["text"] for ch in r["choices"]], ref))
    want = 3 * ((len(p) - 1) // BS) * BS
    c.check(h1 - h0 == want if srv.groups == 1 else h1 - h0 >= 0,
            "n=4 on a cold prompt: prefix hits grew by %d tokens, want %d (the prompt computed once)" % (h1 - h0, want))
    log("n=4 cold prompt of %d tokens: %d tokens of it reused by the siblings" % (len(p), h1 - h0))


def penalized(c, env, srv, model):
    p = base(1, 200) + [13000 + i for i in range(20)]
    r = srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True, repetition_penalty=1.3)
    c.check(r["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, "penalized usage %r" % r["usage"])
    c.check(r["usage"]["completion_tokens"] == N_TOK, "penalized usage %r" % r["usage"])
    # and the same prompt unpenalized reuses what the penalized one published
    r = srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True)
    c.check(r["usage"]["prompt_tokens_details"]["cached_tokens"] == 192, "after it: usage %r" % r["usage"])


def cut_stream(srv, body, after):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=280)
    conn.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    n = 0
    for raw in r:
        if raw.startswith(b"data: "):
            n += 1
            if n >= after:
                break
    conn.close()
    return "cut"


def soak(c, env, srv, model):
    # np4 on a 2-core machine is slow: a lighter load (still past the pool, still preempting)
    n_req, max_gen = (36, 80) if srv.np <= 2 else (20, 40)
    rnd = random.Random(14)
    bases = [base(s, 300 + 90 * s) for s in range(3)]
    jobs = []
    for i in range(n_req):
        b = bases[rnd.randrange(3)]
        p = b[:rnd.randrange(40, len(b))] + [20000 + 97 * i + k for k in range(rnd.randrange(1, 60))]
        body = dict(prompt=p, max_tokens=rnd.randrange(4, max_gen), temperature=0.8, seed=i, ignore_eos=True)
        if i % 6 == 5:
            jobs.append(lambda body=body: cut_stream(srv, body, 3))
        else:
            jobs.append(lambda body=body: srv.completion(timeout=280, **body))
    res = parallel(jobs)
    bad = [r for r in res if not (r == "cut" or isinstance(r, dict))]
    c.check(not bad, "%d soak requests failed: %r" % (len(bad), bad[:3]))
    ok = [r for r in res if isinstance(r, dict)]
    c.check(all(r["usage"]["completion_tokens"] > 0 for r in ok), "a soak request generated nothing")
    c.check(sum(r["usage"]["prompt_tokens_details"]["cached_tokens"] for r in ok) > 0, "no soak request reused")
    used = srv.kv_blocks_used_settled()
    c.check(used == 0, "KV blocks still used after the soak: %r" % used)
    m = srv.metrics()
    free, cached = m.get("moeserve_kv_cache_blocks_free"), m.get("moeserve_kv_cache_blocks_cached")
    total = (m.get("moeserve_kv_cache_blocks_used") or 0) + (free or 0)
    c.check(cached is not None and 0 < cached <= free, "cached %r free %r" % (cached, free))
    c.check(total == srv.total_blocks, "blocks used + free = %r, pool %r" % (total, srv.total_blocks))
    q, h = m.get("moeserve_prefix_cache_queries_total"), m.get("moeserve_prefix_cache_hits_total")
    rate = m.get("moeserve_prefix_cache_hit_rate")
    c.check(q and h and 0 < h < q and abs(rate - h / q) < 1e-9, "queries %r hits %r rate %r" % (q, h, rate))
    log("soak: hit rate %.3f (%d of %d tokens), %d cached blocks" % (rate or 0, h or 0, q or 0, cached or 0))
    # the pool still serves right after the soak
    p = bases[0][:250]
    ref = env.detokenize(model, [env.generate(model, p, N_TOK)])[0]
    r = srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True)
    c.check(r["choices"][0]["text"] == ref, "after the soak: %r != %r" % (r["choices"][0]["text"], ref))


def main():
    env = Env.from_args()
    layout = Env.rest[0] if Env.rest else "np1"
    L = LAYOUTS[layout]
    model = env.tiny_model()
    f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
    f.write(CFG + ("\n" + L["yaml"] + "\n" if L.get("yaml") else ""))
    f.close()
    c = Checks()
    srv = Server(env, model, np=L["np"], args=L["args"], config=f.name)
    groups = L["np"] if "attention_dp" in L.get("yaml", "") else 1
    srv.total_blocks = groups * 2048 // BS
    srv.groups = groups
    c.run_on_server(srv, [("parity", lambda c, s: parity(c, env, s, model)),
                          ("n_siblings", lambda c, s: n_siblings(c, env, s, model)),
                          ("penalized", lambda c, s: penalized(c, env, s, model)),
                          ("soak", lambda c, s: soak(c, env, s, model))])
    c.done()


if __name__ == "__main__":
    main()
