"""test_pressure.py — the scheduler under pressure, on real servers.

  1. chunked prefill: a prompt longer than max_num_tokens is fed over several
     steps and still gives exactly `moeserve generate --chunk` output;
  2. KV exhaustion: many concurrent requests on a tiny KV pool (attention DP,
     2 ranks, each with its own pool) force preemptions; every request still
     completes with the right number of tokens, none is lost, and the pool is
     empty afterwards;
  3. a failed step (MOESERVE_FAULT_STEP test hook, every rank) answers that
     step's requests with a 5xx naming the failure; the server goes on and
     the next request is correct.
"""
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402

SMALL = """max_batch_size: 16
max_num_tokens: 64
max_seq_len: 256
enable_chunked_prefill: true
cuda_graph_config: null
kv_cache_config:
  max_tokens: 256
  tokens_per_block: 16
moeserve:
  device: cpu
"""


def write_cfg(env, text):
    f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
    f.write(text)
    f.close()
    return f.name


def chunked(c, env, model, cfg):
    prompt = [0] + [(7919 * i) % 120000 + 100 for i in range(1, 150)]  # 150 tokens > max_num_tokens 64
    ref = env.detokenize(model, [env.generate(model, prompt, 10, chunk=64)])[0]
    with Server(env, model, np=1, config=cfg) as srv:
        r = srv.completion(prompt=prompt, max_tokens=10, temperature=0, ignore_eos=True)
        c.check(r["choices"][0]["text"] == ref, "chunked prefill: %r != %r" % (r["choices"][0]["text"], ref))
        c.check(r["usage"]["prompt_tokens"] == 150, "usage %r" % r["usage"])


def exhaustion(c, env, model, cfg):
    n, prompt_len, gen = 24, 40, 60  # 100 tokens = 7 blocks each; 16 blocks per rank
    bodies = [dict(prompt=[0] + [1000 + 13 * i + k for k in range(prompt_len - 1)], max_tokens=gen,
                   temperature=0, ignore_eos=True) for i in range(n)]
    with Server(env, model, np=2, config=cfg, args=["--tp_size", "2", "--ep_size", "2"]) as srv:
        res = [None] * n

        def run(i):
            try:
                res[i] = srv.completion(timeout=280, **bodies[i])
            except Exception as e:  # noqa: BLE001
                res[i] = e

        t0 = time.time()
        ths = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(timeout=290)
        good = sum(1 for r in res if isinstance(r, dict) and r["usage"]["completion_tokens"] == gen and
                   r["choices"][0]["finish_reason"] == "length")
        c.check(good == n, "%d of %d requests completed right: %r" % (good, n, [r for r in res if not
                                                                                isinstance(r, dict)][:3]))
        pre = srv.log_text().count("preempting request")
        c.check(pre > 0, "no preemption happened: the pool was not small enough to test it")
        used = None
        for _ in range(50):  # gauges are published after the step that finished the last one
            used = srv.metrics().get("moeserve_kv_cache_blocks_used")
            if used == 0:
                break
            time.sleep(0.1)
        c.check(used == 0, "blocks used at the end: %r" % used)
        log("KV pressure: %d/%d right, %d preemptions, %.1f s" % (good, n, pre, time.time() - t0))


def fault(c, env, model):
    with Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"],
                extra_env={"MOESERVE_FAULT_STEP": "0"}) as srv:
        st, js = srv.post_json("/v1/completions", dict(prompt=[0, 1, 2], max_tokens=4, temperature=0))
        msg = str(js)
        c.check(st == 500 and "injected failure" in msg, "failed step answered %d %s" % (st, msg[:300]))
        ref = env.detokenize(model, [env.generate(model, [0, 15382, 344, 2010, 4404, 33], 12)])[0]
        r = srv.completion(prompt=[0, 15382, 344, 2010, 4404, 33], max_tokens=12, temperature=0, ignore_eos=True)
        c.check(r["choices"][0]["text"] == ref, "after a failed step: %r != %r" % (r["choices"][0]["text"], ref))
        log("failed step -> %d; next request right" % st)


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    cfg = write_cfg(env, SMALL)
    cfg_dp = write_cfg(env, SMALL + "enable_attention_dp: true\n")
    chunked(c, env, model, cfg)
    exhaustion(c, env, model, cfg_dp)
    fault(c, env, model)
    c.done()


if __name__ == "__main__":
    main()
