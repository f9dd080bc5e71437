#!/usr/bin/env python3
"""bench_moe_torch.py — the PyTorch peer of moeserve-bench-moe on the same
shapes and GPU: one EP8 rank's routed experts (32 local experts, hidden 7168,
moe_inter 2048, fused gate|up) at 4/32/128 rows per expert, through
torch._scaled_grouped_mm (FP8 e4m3, row-wise scales: PyTorch's simpler
scaling than DeepSeek's 128x128 blocks) and torch._grouped_mm (BF16).
Times the two grouped GEMMs alone and the whole layer (quantize, gate|up,
SiLU*mul, quantize, down), each captured in a CUDA graph, median of --reps
replays. With --ours FILE (rows<TAB>ms lines from moeserve-bench-moe --out)
prints our speed-up over each: ratio = torch time / our layer time.
    python3 tools/bench_moe_torch.py [--rows 4,32,128] [--reps 30] [--ours FILE]"""
import argparse
import statistics

import torch

E, H, I = 32, 7168, 2048
FP8 = torch.float8_e4m3fn


def time_graph(fn, reps):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    times = []
    for _ in range(3):
        g.replay()
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def rowwise_quant(x):
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    s = amax / 448.0
    return (x.float() / s).to(FP8), s.squeeze(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="4,32,128")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--ours")
    a = ap.parse_args()
    ours = {}
    if a.ours:
        for line in open(a.ours):
            r, ms = line.split()
            ours[int(r)] = float(ms)
    dev = "cuda"
    torch.manual_seed(0)
    # weights as [G, N, K] (Linear layout); the grouped GEMMs take the K x N view
    w13 = (torch.randn(E, 2 * I, H, device=dev) * 0.02).to(torch.bfloat16)
    w2 = (torch.randn(E, H, I, device=dev) * 0.02).to(torch.bfloat16)
    w13q, w13s = rowwise_quant(w13)
    w2q, w2s = rowwise_quant(w2)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'rows':>5} {'fp8_gemms':>10} {'fp8_layer':>10} {'bf16_gemms':>11} {'bf16_layer':>11} | "
          f"{'ours':>8} {'vs fp8':>7} {'vs bf16':>8}  (ms; vs = torch layer / ours; [gemms only])")
    for rows in [int(r) for r in a.rows.split(",")]:
        M = E * rows
        offs = torch.arange(1, E + 1, device=dev, dtype=torch.int32) * rows
        x = torch.randn(M, H, device=dev).to(torch.bfloat16)
        xq, xs = rowwise_quant(x)
        h = torch.randn(M, I, device=dev).to(torch.bfloat16)
        hq, hs = rowwise_quant(h)

        def fp8_gemms():
            torch._scaled_grouped_mm(xq, w13q.transpose(-2, -1), xs, w13s, offs=offs, out_dtype=torch.bfloat16)
            torch._scaled_grouped_mm(hq, w2q.transpose(-2, -1), hs, w2s, offs=offs, out_dtype=torch.bfloat16)

        def fp8_layer():
            q, s = rowwise_quant(x)
            gu = torch._scaled_grouped_mm(q, w13q.transpose(-2, -1), s, w13s, offs=offs, out_dtype=torch.bfloat16)
            hh = torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]
            q2, s2 = rowwise_quant(hh)
            return torch._scaled_grouped_mm(q2, w2q.transpose(-2, -1), s2, w2s, offs=offs, out_dtype=torch.bfloat16)

        def bf16_gemms():
            torch._grouped_mm(x, w13.transpose(-2, -1), offs=offs)
            torch._grouped_mm(h, w2.transpose(-2, -1), offs=offs)

        def bf16_layer():
            gu = torch._grouped_mm(x, w13.transpose(-2, -1), offs=offs)
            hh = torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]
            return torch._grouped_mm(hh, w2.transpose(-2, -1), offs=offs)

        res = {}
        for name, fn in [("fp8_gemms", fp8_gemms), ("fp8_layer", fp8_layer), ("bf16_gemms", bf16_gemms),
                         ("bf16_layer", bf16_layer)]:
            try:
                res[name] = time_graph(fn, a.reps)
            except Exception as e:  # report, keep going: an API limit is a result too
                print(f"  {name} rows={rows}: {type(e).__name__}: {str(e).splitlines()[0][:150]}")
                res[name] = float("nan")
        o = ours.get(rows, float("nan"))
        print(f"{rows:5d} {res['fp8_gemms']:10.4f} {res['fp8_layer']:10.4f} {res['bf16_gemms']:11.4f} "
              f"{res['bf16_layer']:11.4f} | {o:8.4f} {res['fp8_layer'] / o:6.2f}x {res['bf16_layer'] / o:7.2f}x  "
              f"[{res['fp8_gemms'] / o:.2f}x {res['bf16_gemms'] / o:.2f}x]")


if __name__ == "__main__":
    main()
