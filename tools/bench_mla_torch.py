#!/usr/bin/env python3
"""bench_mla_torch.py — the PyTorch peer of `moeserve-bench-ops --mla-batch B
--mla-ctx C` (mla_latent alone) on the same shapes and GPU: B decode rows, one
a sequence, over C cached positions in 64-token pages, 128 heads, latent 512 +
rope 64, absorbed form (scores against [ckv | kpe], output over ckv). What a
PyTorch server without a fused MLA kernel does: gather the sequence's pages
by its block table, dequantize (FP8 KV: e4m3 codes times the token's scale,
the row format of kern_kv_t), S = q·Kᵀ (bf16 bmm, fp32 accumulation), fp32
softmax, O = P·ckv (bf16 bmm). Each shape is captured in a CUDA graph, median
of --reps replays; the page gather and the dequantization are in the timed
graph, as they are in our kernel's reads. With --ours FILE (the bench's
markdown) prints ratio = torch / ours.
    python3 tools/bench_mla_torch.py [--batch 32,128] [--ctx 1024,4096,16384] [--reps 10] [--ours FILE]"""
import argparse
import math
import re

import torch

from bench_moe_torch import time_graph  # beside this script: a CUDA graph's replays, median ms

H, DC, DR, BS = 128, 512, 64, 64
BF = torch.bfloat16


def make(B, ctx, fp8):
    """the paged cache of B sequences x ctx positions (blocks scattered), its block table, and q"""
    nbpp = (ctx + BS - 1) // BS
    g = torch.Generator(device="cuda").manual_seed(7)
    lat = (torch.rand(B * nbpp, BS, DC + DR, generator=g, device="cuda") * 2 - 1).to(BF)
    bt = torch.randperm(B * nbpp, generator=g, device="cuda").view(B, nbpp)
    q = ((torch.rand(B, H, DC + DR, generator=g, device="cuda") * 2 - 1) * 0.1).to(BF)
    if not fp8:
        return (lat,), bt, q
    ckv = lat[..., :DC].float()
    amax = ckv.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
    scale = torch.exp2(torch.ceil(torch.log2(amax / 448.0)))  # kern_kv_fp8_scale: one power of two a token
    codes = (ckv / scale).to(torch.float8_e4m3fn)
    return (codes, scale, lat[..., DC:].contiguous()), bt, q


def attend(cache, bt, q, ctx, sm_scale):
    B, nbpp = bt.shape
    if len(cache) == 1:
        k = cache[0][bt].view(B, nbpp * BS, DC + DR)[:, :ctx]
    else:
        codes, scale, kpe = cache
        ckv = (codes[bt].float() * scale[bt]).to(BF)
        k = torch.cat([ckv, kpe[bt]], dim=-1).view(B, nbpp * BS, DC + DR)[:, :ctx]
    s = torch.bmm(q, k.transpose(1, 2)).float() * sm_scale
    p = torch.softmax(s, dim=-1).to(BF)
    return torch.bmm(p, k[:, :, :DC])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="32,128")
    ap.add_argument("--ctx", default="1024,4096,16384")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--ours")
    a = ap.parse_args()
    ours = {}  # (B, ctx, kv) -> ms, from rows like "| mla_latent | 32 seqs x 1024 ctx, 128 heads, fp8 KV | 0.0700 |"
    if a.ours:
        for line in open(a.ours):
            m = re.match(r"\| mla_latent \| (\d+) seqs x (\d+) ctx, 128 heads, (bf16|fp8) KV \| ([0-9.]+) ", line)
            if m:
                ours[(int(m[1]), int(m[2]), m[3])] = float(m[4])
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}: mla decode, {H} heads, latent {DC} + rope {DR}, "
          f"{BS}-token pages, ms (graph replays, median of {a.reps}); ratio = torch / ours")
    print(f"{'B':>4} {'ctx':>6} {'KV':<5} {'torch':>8} {'ours':>8} {'ratio':>6}")
    sm_scale = 1.0 / math.sqrt(192)
    for B in [int(b) for b in a.batch.split(",")]:
        for ctx in [int(c) for c in a.ctx.split(",")]:
            for kv in ("bf16", "fp8"):
                cache, bt, q = make(B, ctx, kv == "fp8")
                t = time_graph(lambda: attend(cache, bt, q, ctx, sm_scale), a.reps)
                o = ours.get((B, ctx, kv), float("nan"))
                print(f"{B:>4} {ctx:>6} {kv:<5} {t:8.4f} {o:8.4f} {t / o:6.2f}")
                del cache, bt, q
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
