#!/usr/bin/env python3
"""bench_sample_torch.py — the PyTorch peer of `moeserve-bench-ops --sample B`
on the same shapes and GPU: one token a row from [B, 129280] bf16 logits, the
way a PyTorch server samples (vLLM's / transformers' pure-torch path, fp32
math): greedy = argmax; + N logprobs = log_softmax and topk; temperature =
softmax and torch.multinomial; top-p = sort, cumsum, mask, multinomial over
the kept set; top-k + top-p = topk first, then the same over k. Logits: the
distribution bench_sample draws (uniform in [-6, -2) with one logit in 4096
raised by up to 14: "peaked") and all zeros ("flat"), not its exact values.
Each kind is captured in a CUDA graph, median of --reps replays. With --ours
FILE (moeserve-bench-ops --sample markdown) prints ratio = torch / ours.
    python3 tools/bench_sample_torch.py [--batch 1,128] [--reps 30] [--ours FILE]"""
import argparse
import re

import torch

from bench_moe_torch import time_graph  # beside this script: a CUDA graph's replays, median ms

V = 129280


def logits(B, flat):
    if flat:
        return torch.zeros(B, V, dtype=torch.bfloat16, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(12345)
    u = torch.rand(B, V, generator=g, device="cuda", dtype=torch.float64)
    spike = torch.rand(B, V, generator=g, device="cuda") < 1.0 / 4096
    return (u * 4.0 - 6.0 + spike * 14.0 * u).to(torch.bfloat16)


def top_p_sample(x, top_p):
    """x: [B, n] fp32 scaled logits; a token index into n per row"""
    sx, idx = torch.sort(x, dim=-1, descending=True)
    p = torch.softmax(sx, dim=-1)
    drop = torch.cumsum(p, dim=-1) - p > top_p  # the shortest prefix reaching top_p stays
    sx = sx.masked_fill(drop, float("-inf"))
    j = torch.multinomial(torch.softmax(sx, dim=-1), 1)
    return idx.gather(-1, j)


def kinds():
    def greedy(lg):
        return torch.argmax(lg, dim=-1)

    def greedy_lp(lg):
        lp = torch.log_softmax(lg.float(), dim=-1)
        return torch.argmax(lg, dim=-1), torch.topk(lp, 5, dim=-1)

    def t10(lg):
        return torch.multinomial(torch.softmax(lg.float(), dim=-1), 1)

    def t07_p(lg):
        return top_p_sample(lg.float() / 0.7, 0.95)

    def t07_k_p(lg):
        v, i = torch.topk(lg.float() / 0.7, 50, dim=-1)
        return i.gather(-1, top_p_sample(v, 0.95))

    return [("greedy", greedy, False), ("greedy + 5 logprobs", greedy_lp, False), ("T1.0", t10, True),
            ("T0.7 top-p 0.95", t07_p, True), ("T0.7 top-k 50 top-p 0.95", t07_k_p, True)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,128")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--ours")
    a = ap.parse_args()
    ours = {}  # (name, data, B) -> ms, from rows like "| sample T1.0, bf16 peaked | [128, 129280] | 0.5956 |"
    if a.ours:
        for line in open(a.ours):
            m = re.match(r"\| sample (.+), bf16 (peaked|flat \(fallback\)) \| \[(\d+), \d+\] \| ([0-9.]+) ", line)
            if m:
                ours[(m[1], m[2].split()[0], int(m[3]))] = float(m[4])
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, [B, {V}] bf16 logits, ms (graph replays, "
          f"median of {a.reps}); ratio = torch / ours")
    print(f"{'kind':<26} {'data':<7} {'B':>4} {'torch':>8} {'ours':>8} {'ratio':>6}")
    for B in [int(b) for b in a.batch.split(",")]:
        for flat in (False, True):
            lg = logits(B, flat)
            data = "flat" if flat else "peaked"
            for name, fn, draws in kinds():
                if flat and not draws:
                    continue  # as bench_sample: flat logits only matter to a draw
                t = time_graph(lambda: fn(lg), a.reps)
                o = ours.get((name, data, B), float("nan"))
                print(f"{name:<26} {data:<7} {B:>4} {t:8.4f} {o:8.4f} {t / o:6.2f}")


if __name__ == "__main__":
    main()
