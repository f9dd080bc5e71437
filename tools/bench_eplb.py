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

  python3 tools/bench_eplb.py [--duration 40] [--conc 8] [--rebalance-first]   (paths as the
  integration harness: MS_MOESERVE, MS_MKMODEL, MS_TOKDIR, MS_WORKDIR, MS_CONFIGS)
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


def run(env, model, L, lupi, seconds, conc, n_tok):
    cfg = T.config(env, L, "  eplb_min_gain: 0\n")
    txt = open(cfg).read().replace("layer_updates_per_iter: 1", "layer_updates_per_iter: %d" % lupi)
    txt += "print_iter_log: true\n"
    open(cfg, "w").write(txt)
    with Server(env, model, np=L["np"], args=L["args"], config=cfg) as srv:
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
    env = Env.from_args([a for a in args if a not in ("--duration", "--conc", "--rebalance-first") and
                         not a.replace(".", "").isdigit()])
    model = T.hot_model(env)
    L = T.LAYOUTS["np2-dp"]
    if "--rebalance-first" in args:  # the machine's load drifts: run the pair in both orders
        n1, d1, t1 = run(env, model, L, 1, seconds, conc, 16)
        n0, d0, t0 = run(env, model, L, 0, seconds, conc, 16)
    else:
        n0, d0, t0 = run(env, model, L, 0, seconds, conc, 16)
        n1, d1, t1 = run(env, model, L, 1, seconds, conc, 16)
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


if __name__ == "__main__":
    main()
