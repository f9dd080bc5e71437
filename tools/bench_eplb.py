"""bench_eplb.py — CPU-rank benchmark of the online load balancer (BENCHMARKS.md).

Runs the skewed tiny model (mkmodel --hot-experts 10,12) on np2 (attention
DP, EP 2, 24 slots) twice with the same closed-loop load (CONC clients, each
sending back-to-back greedy requests of N_TOK tokens for DURATION seconds):
  static:     layer_updates_per_iter 0
  rebalance:  layer_updates_per_iter 1, eplb_min_gain 0 (every plan that moves
              a slot is applied, so migrations keep running)
and reports, from print_iter_log, the median and mean decode step time over
all steps, and (rebalance run) over the steps while a batch was in flight
(between a "planned" and its "done" line), plus the imbalance before/after.

  python3 tools/bench_eplb.py [--duration 40] [--conc 8] [--rebalance-first] [--r1]   (paths as the
  integration harness: MS_MOESERVE, MS_MKMODEL, MS_TOKDIR, MS_WORKDIR, MS_CONFIGS)

--r1 (a GPU host): the same pair on an R1-geometry config-only model instead (4 layers: 3 dense + 1 MoE
of 256 experts, FP8, load_format dummy, 288 slots), two ranks sharing one GPU, so each moved slot is a
real ~44 MB FP8 expert record crossing ranks through pinned host memory (worker/eplb_move.c). Dummy
weights route roughly evenly; eplb_min_gain 0 still applies every plan (replicas for the 32 extra
slots). The "done" log lines give each rebalance's slots, bytes and wall time.
"""
import json
import os
import re
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import Env, Server, log  # noqa: E402
import test_eplb_online as T  # noqa: E402


def load(srv, seconds, conc, n_tok):
    stop = time.time() + seconds
    done = [0]

    def client(i):
        while time.time() < stop:
            srv.completion(prompt=T.PROMPTS[i % 4], max_tokens=n_tok, temperature=0, ignore_eos=True, timeout=300)
            done[0] += 1

    ts = [threading.Thread(target=client, args=(i,)) for i in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0]


def steps(text):
    """[(step, ms, seqs)] of decode-only steps from print_iter_log lines."""
    out = []
    for m in re.finditer(r"step (\d+): (\d+) seqs, (\d+) tokens, ([\d.]+) ms", text):
        st, seqs, toks, ms = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
        if toks == seqs:  # decode only: one token per sequence
            out.append((st, ms, seqs))
    return out


R1_YAML = """load_format: dummy
max_batch_size: 32
max_num_tokens: 512
max_seq_len: 1024
enable_chunked_prefill: true
enable_attention_dp: true
print_iter_log: true
kv_cache_config:
  dtype: fp8
  free_gpu_memory_fraction: 0.5
moe_config:
  max_num_tokens: 512
  load_balancer:
    num_slots: 288
    layer_updates_per_iter: 1
moeserve:
  device: cuda
  eplb_stats_interval: 4
  eplb_window_steps: 200
  eplb_min_gain: 0
"""


def r1_model(env):
    out = os.path.join(env.workdir, "r1x4-eplb")
    if not os.path.isfile(os.path.join(out, "config.json")):
        import subprocess
        subprocess.run([env.mkmodel, "--preset", "r1", "--dtype", "fp8", "--layers", "4", "--config-only",
                        "--tokenizer", env.tokdir, "--out", out], check=True, timeout=120, stdout=subprocess.DEVNULL)
    return out


def run(env, model, L, lupi, seconds, conc, n_tok, r1=False):
    if r1:
        cfg = os.path.join(env.workdir, "r1-eplb.yaml")
        txt = R1_YAML
    else:
        cfg = T.config(env, L, "  eplb_min_gain: 0\n")
        txt = open(cfg).read() + "print_iter_log: true\n"
    txt = txt.replace("layer_updates_per_iter: 1", "layer_updates_per_iter: %d" % lupi)
    open(cfg, "w").write(txt)
    with Server(env, model, np=L["np"], args=L["args"], config=cfg, ready_timeout=300 if r1 else 90) as srv:
        n = load(srv, seconds, conc, n_tok)
        d = json.loads(srv.request("GET", "/dashboard/data")[2])
        text = srv.log_text()
    return n, d, text


def summarize(name, rows):
    ms = [r[1] for r in rows]
    if not ms:
        return "%s: no steps" % name
    return "%s: %d decode steps, median %.2f ms, mean %.2f ms" % (name, len(ms), statistics.median(ms),
                                                                   statistics.mean(ms))


def main():
    args = sys.argv[1:]
    seconds = float(args[args.index("--duration") + 1]) if "--duration" in args else 40
    conc = int(args[args.index("--conc") + 1]) if "--conc" in args else 8
    r1 = "--r1" in args
    env = Env.from_args([a for a in args if a not in ("--duration", "--conc", "--rebalance-first", "--r1") and
                         not a.replace(".", "").isdigit()])
    model = r1_model(env) if r1 else T.hot_model(env)
    L = T.LAYOUTS["np2-dp"]
    if "--rebalance-first" in args:  # the machine's load drifts: run the pair in both orders
        n1, d1, t1 = run(env, model, L, 1, seconds, conc, 16, r1)
        n0, d0, t0 = run(env, model, L, 0, seconds, conc, 16, r1)
    else:
        n0, d0, t0 = run(env, model, L, 0, seconds, conc, 16, r1)
        n1, d1, t1 = run(env, model, L, 1, seconds, conc, 16, r1)
    s0, s1 = steps(t0), steps(t1)
    spans = []
    for m in re.finditer(r"rebalance (\d+) planned at step (\d+)", t1):
        dm = re.search(r"rebalance %s done at step (\d+)" % m.group(1), t1)
        if dm:
            spans.append((int(m.group(2)), int(dm.group(1))))
    during = [r for r in s1 if any(a <= r[0] <= b for a, b in spans)]
    outside = [r for r in s1 if not any(a <= r[0] <= b for a, b in spans)]
    imb = re.search(r"rebalance 1 planned at step \d+ from \d+ steps of load: imbalance ([\d.]+) -> ([\d.]+)", t1)
    print("static:    %d requests, imbalance %.3f" % (n0, d0["imbalance"]))
    print("rebalance: %d requests, imbalance %.3f, %d rebalances, %d slots / %d bytes moved" % (
        n1, d1["imbalance"], d1["rebalances"], d1["slots_moved"], d1["bytes_moved"]))
    if imb:
        print("first rebalance: planned imbalance %s -> %s" % (imb.group(1), imb.group(2)))
    print(summarize("static run", s0))
    print(summarize("rebalance run, all", s1))
    print(summarize("rebalance run, a batch in flight", during))
    print(summarize("rebalance run, no batch in flight", outside))
    done = [(int(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4)), int(m.group(5)))
            for m in re.finditer(r"rebalance (\d+) done at step \d+: (\d+) slots moved, ([\d.]+) MiB between "
                                 r"ranks, ([\d.]+) ms over (\d+) steps", t1)]
    for k, slots, mib, ms, nst in done[:3]:
        print("rebalance %d: %d slots, %.1f MiB between ranks in %.1f ms over %d steps" % (k, slots, mib, ms, nst))
    if done:
        slots, mib, ms = sum(d[1] for d in done), sum(d[2] for d in done), sum(d[3] for d in done)
        print("all %d rebalances: %d slots, %.1f MiB between ranks, %.1f ms wall while moving: %.2f ms per slot, "
              "%.2f GB/s of records" % (len(done), slots, mib, ms, ms / max(slots, 1), mib * 1.048576e-3 / max(ms * 1e-3, 1e-9)))

if __name__ == "__main__":
    main()
