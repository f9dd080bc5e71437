#!/usr/bin/env python3
"""bench_dense_torch.py — the PyTorch peer of moeserve-bench-dense on the same
shapes and GPU: the dense GEMMs of a DeepSeek-R1 layer (q_a|kv_a, q_b, o_proj,
shared expert gate|up + SiLU*mul and down, dense MLP gate|up + SiLU*mul and
down) through torch._scaled_mm (FP8 e4m3, one per-tensor scale each: a simpler
scaling than DeepSeek's 128x128 weight / 1x128 activation blocks; x already
quantized) and a BF16 matmul. Every call starts from a cold L2 (a 256 MiB
write in between, not timed), as moeserve-bench-dense does; median of --reps.
With --ours FILE (its --out) prints ratio = torch time / our time for our
dequant mode (the engine's numerics) and our fp8 mode.
    python3 tools/bench_dense_torch.py [--m 1,32,128,4096] [--reps 20] [--ours FILE]"""
import argparse
import statistics

import torch

FP8 = torch.float8_e4m3fn
SHAPES = [("q_a|kv_a", 2112, 7168, 0), ("q_b", 24576, 1536, 0), ("o_proj", 7168, 16384, 0),
          ("shared_gate|up", 2048, 7168, 1), ("shared_down", 7168, 2048, 0), ("dense_gate|up", 18432, 7168, 1),
          ("dense_down", 7168, 18432, 0)]


def time_cold(fn, reps, flush):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="1,32,128,4096")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--ours")
    a = ap.parse_args()
    ours = {}
    if a.ours:
        for line in open(a.ours):
            name, m, mode, ms = line.split("\t")
            ours[(name, int(m), mode)] = float(ms)
    dev = "cuda"
    torch.manual_seed(0)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    one = torch.ones((), device=dev)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'gemm':15} {'m':>5} {'fp8_mm':>9} {'bf16_mm':>9} | {'ours_dq':>9} {'fp8/dq':>7} {'bf16/dq':>8} | "
          f"{'ours_fp8':>9} {'fp8/f8':>7}  (ms; ratio = torch / ours, > 1: ours faster)")
    for name, n, k, silu in SHAPES:
        rows = 2 * n if silu else n
        w = (torch.randn(rows, k, device=dev) * 0.02).to(torch.bfloat16)
        wq = w.to(FP8)
        for m in [int(v) for v in a.m.split(",")]:
            x = torch.randn(m, k, device=dev).to(torch.bfloat16)
            xq = x.to(FP8)

            def act(y):
                return torch.nn.functional.silu(y[:, :n]) * y[:, n:] if silu else y

            def fp8_mm():
                return act(torch._scaled_mm(xq, wq.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16))

            def bf16_mm():
                return act(x @ w.t())

            res = {}
            for tag, fn in (("fp8", fp8_mm), ("bf16", bf16_mm)):
                try:
                    res[tag] = time_cold(fn, a.reps, flush)
                except Exception as e:  # report, keep going: an API limit is a result too
                    print(f"  {name} m={m} {tag}: {type(e).__name__}: {str(e).splitlines()[0][:150]}")
                    res[tag] = float("nan")
            dq, f8 = ours.get((name, m, "dequant"), float("nan")), ours.get((name, m, "fp8"), float("nan"))
            print(f"{name:15} {m:5d} {res['fp8']:9.4f} {res['bf16']:9.4f} | {dq:9.4f} {res['fp8'] / dq:6.2f}x "
                  f"{res['bf16'] / dq:7.2f}x | {f8:9.4f} {res['fp8'] / f8:6.2f}x")


if __name__ == "__main__":
    main()
