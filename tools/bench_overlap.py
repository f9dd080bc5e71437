#!/usr/bin/env python3
"""bench_overlap.py — decode step time and tokens/s with the overlap scheduler on and off (BENCHMARKS.md).

usage: bench_overlap.py BUILD_DIR [--np N] [--batches 1,64] [--reps 3]

For each setting (overlap on = the default, off = `disable_overlap_scheduler: true`) one server on CPU
ranks (mpirun -np N, attention DP, the tiny synthetic model; np 1 runs without mpirun) with the PMPI
control-plane counter preloaded (build/tools/libmoeserve-mpi-count.so, as tools/bench_control.py). For
each batch B it sends B concurrent greedy completions with max_tokens M1 and then M2 (ignore_eos) and
divides the difference of wall time, engine steps (/metrics) and control-plane calls between the two:
prefill and request overheads cancel, what remains is one decode step at batch B. Each (setting, B)
is measured `reps` times; the table gives the median.
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_control import counted_server, env_for, run  # noqa: E402

build = os.path.abspath(sys.argv[1])
args = sys.argv[2:]
np_ = int(args[args.index("--np") + 1]) if "--np" in args else 2
reps = int(args[args.index("--reps") + 1]) if "--reps" in args else 3
batches = [int(b) for b in (args[args.index("--batches") + 1] if "--batches" in args else "1,64").split(",")]
env, work = env_for(build, "ms-bench-overlap-")
model = env.tiny_model()
ctr = os.path.join(work, "mpi-count")


M1, M2 = 4, 68
rows = []
for overlap in (True, False):
    cfg = os.path.join(work, "bench-%d.yaml" % overlap)
    with open(cfg, "w") as f:
        f.write("max_batch_size: 256\nmax_num_tokens: 2048\nmax_seq_len: 256\n" +
                ("enable_attention_dp: true\n" if np_ > 1 else "") +
                "cuda_graph_config: null\nkv_cache_config:\n  max_tokens: 65536\n  tokens_per_block: 32\n"
                "moeserve:\n  device: cpu\n  max_queue_size: 4096\n" +
                ("" if overlap else "disable_overlap_scheduler: true\n"))
    srv = counted_server(env, model, cfg, np_, ctr, build)
    with srv:
        for b in batches:
            run(srv, ctr, b, 2)  # warm-up
            ms, tps, calls = [], [], []
            for _ in range(reps):
                c1, _, s1, t1 = run(srv, ctr, b, M1)
                c2, _, s2, t2 = run(srv, ctr, b, M2)
                if s2 <= s1:
                    raise SystemExit("no decode steps measured (%d vs %d steps)" % (s1, s2))
                ms.append((t2 - t1) / (s2 - s1) * 1e3)
                tps.append(b * (M2 - M1) / (t2 - t1))
                calls.append((c2 - c1) / (s2 - s1))
            rows.append((overlap, b, statistics.median(ms), statistics.median(tps), statistics.median(calls),
                         min(ms), max(ms)))
            print("overlap %s batch %d: %.2f ms/step (%.2f..%.2f), %.0f tok/s, %.2f calls/step" %
                  ("on" if overlap else "off", b, rows[-1][2], rows[-1][5], rows[-1][6], rows[-1][3], rows[-1][4]),
                  file=sys.stderr)
print("| overlap | batch | decode step (ms, median; min..max) | tokens/s | control-plane MPI calls / step |")
print("|---|---:|---:|---:|---:|")
for o, b, ms, tps, calls, lo, hi in rows:
    print("| %s | %d | %.2f (%.2f..%.2f) | %.0f | %.2f |" % ("on" if o else "off", b, ms, lo, hi, tps, calls))
subprocess.run(["rm", "-rf", work])
