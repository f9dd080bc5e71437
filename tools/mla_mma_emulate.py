#!/usr/bin/env python3
"""mla_mma_emulate.py — kernels/cuda/mla_latent_mma.cu's algorithm run lane by lane on the host.

A check of the tensor-core kernel's tiling, masks, online softmax, context splits and merge that needs no
GPU: each warp's 32 lanes hold exactly the registers the kernel's code gives them, and mma.sync m16n8k16
is applied through the fragment layouts PTX documents for .bf16 (A 16x16 row, B 16x8 col, C/D 16x8 f32).
The result is compared with an fp64 softmax(q k) v reference: with the kernel's two bf16 roundings (q_lat,
and the probabilities before P V) the error is bf16-sized; with them switched off (--exact) it must be
float rounding only. A mismatch of the index expressions between this file and the kernel is not caught:
keep them in step when changing either.
STALE: this models the kernel before its cp.async ring / S split over the warp pair / ldmatrix rewrite
(commit 08ccc72 and later); its fragment layouts and softmax still hold, its lane-to-key assignment does not.

usage: /usr/bin/python3 tools/mla_mma_emulate.py [--exact]     (numpy; a few seconds)
"""
import sys
import math

import numpy as np
rng = np.random.default_rng(1)
EXACT = "--exact" in sys.argv
def bf16(x):  # round to nearest even to bf16, return float32
    x = np.atleast_1d(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + np.uint64(0x7fff) + ((u >> np.uint64(16)) & np.uint64(1))) & np.uint64(0xffff0000)
    r = u.astype(np.uint32).view(np.float32)
    return r

def frag_a(a):  # a: [32 lanes][4 regs][2 halves] -> A 16x16
    A = np.zeros((16,16), np.float32)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for r, (row, col) in enumerate([(g, 2*t), (g+8, 2*t), (g, 2*t+8), (g+8, 2*t+8)]):
            A[row, col] = a[lane][r][0]; A[row, col+1] = a[lane][r][1]
    return A
def frag_b(b):  # b: [32][2 regs][2] -> B 16x8 (k x n)
    B = np.zeros((16,8), np.float32)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        B[2*t, g] = b[lane][0][0]; B[2*t+1, g] = b[lane][0][1]
        B[2*t+8, g] = b[lane][1][0]; B[2*t+9, g] = b[lane][1][1]
    return B
def mma(c, a, b):  # c: [32][4] accumulators (in/out)
    A, B = frag_a(a), frag_b(b)
    C = np.zeros((16,8), np.float64)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        C[g,2*t], C[g,2*t+1], C[g+8,2*t], C[g+8,2*t+1] = c[lane]
    D = C + A.astype(np.float64) @ B.astype(np.float64)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        c[lane] = [D[g,2*t], D[g,2*t+1], D[g+8,2*t], D[g+8,2*t+1]]

def kernel(q, qpe, kvrows, seqs, H, dc, dr, scale, splits, TILE=32, PAD=8):
    rw = dc + dr; S = rw + PAD
    HB = 4 if H >= 64 else (H + 15)//16
    nhg = (H + 16*HB - 1)//(16*HB)
    out = {}
    part = {}
    for sx, (q_off, n_q, pos0, rows) in enumerate(seqs):
        for gy in range(nhg):
            for z in range(splits):
                ctx_split = n_q == 1 and splits > 1
                h0 = gy*HB*16
                irange = [0] if ctx_split else range(z, n_q, splits)
                for i in irange:
                    tq = q_off + i; nk = pos0 + i + 1
                    j0, j1 = 0, nk
                    if ctx_split:
                        per = (nk + splits - 1)//splits; j0 = min(nk, z*per); j1 = min(nk, j0 + per)
                    sq = np.zeros((HB*16, S), np.float32)
                    for r in range(HB*16):
                        h = h0 + r
                        if h < H:
                            sq[r,:dc] = q[tq, h] if EXACT else bf16(q[tq, h]); sq[r,dc:rw] = qpe[tq, h]
                    nwarps = 2*HB
                    o = {w: [[ [0.0]*4 for _ in range(32)] for _ in range(dc//16)] for w in range(nwarps)}
                    m_r = {w: [[-math.inf]*2 for _ in range(32)] for w in range(nwarps)}
                    l_r = {w: [[0.0]*2 for _ in range(32)] for w in range(nwarps)}
                    for tb in range(j0, j1, TILE):
                        n = min(TILE, j1 - tb)
                        sk = np.zeros((TILE, S), np.float32); okf = [0]*TILE
                        for r in range(TILE):
                            if r < n and rows[tb + r] is not None:
                                sk[r,:rw] = rows[tb + r]; okf[r] = 1
                        for w in range(nwarps):
                            hb, half = w >> 1, w & 1
                            qb = sq[hb*16:hb*16+16]
                            s = [[ [0.0]*4 for _ in range(32)] for _ in range(4)]
                            for d0 in range(0, rw, 16):
                                a = []
                                for lane in range(32):
                                    g, t4 = lane >> 2, lane & 3
                                    a.append([(qb[g,d0+2*t4], qb[g,d0+2*t4+1]), (qb[g+8,d0+2*t4], qb[g+8,d0+2*t4+1]),
                                              (qb[g,d0+8+2*t4], qb[g,d0+8+2*t4+1]), (qb[g+8,d0+8+2*t4], qb[g+8,d0+8+2*t4+1])])
                                for nt in range(4):
                                    b = []
                                    for lane in range(32):
                                        g, t4 = lane >> 2, lane & 3
                                        kb = sk[nt*8+g]
                                        b.append([(kb[d0+2*t4], kb[d0+2*t4+1]), (kb[d0+8+2*t4], kb[d0+8+2*t4+1])])
                                    mma(s[nt], a, b)
                            # softmax per lane
                            mx = [[-math.inf]*2 for _ in range(32)]
                            for lane in range(32):
                                t4 = lane & 3
                                for nt in range(4):
                                    for e in range(4):
                                        col = nt*8 + 2*t4 + (e & 1)
                                        v = s[nt][lane][e]*scale if (col < n and okf[col]) else -math.inf
                                        s[nt][lane][e] = v; mx[lane][e>>1] = max(mx[lane][e>>1], v)
                            # shuffle xor 1, 2
                            for rr in range(2):
                                for sh in (1, 2):
                                    mx = [[max(mx[l][k], mx[l ^ sh][k]) if k == rr else mx[l][k] for k in range(2)] for l in range(32)]
                            corr = [[0.0]*2 for _ in range(32)]
                            for lane in range(32):
                                for rr in range(2):
                                    mn = max(m_r[w][lane][rr], mx[lane][rr])
                                    corr[lane][rr] = 1.0 if mn == -math.inf else math.exp(m_r[w][lane][rr] - mn)
                                    m_r[w][lane][rr] = mn
                            ls = [[0.0]*2 for _ in range(32)]
                            for lane in range(32):
                                for nt in range(4):
                                    for e in range(4):
                                        p = 0.0 if s[nt][lane][e] == -math.inf else math.exp(s[nt][lane][e] - m_r[w][lane][e>>1])
                                        s[nt][lane][e] = p; ls[lane][e>>1] += p
                            for rr in range(2):
                                for sh in (1, 2):
                                    ls = [[ls[l][k] + ls[l ^ sh][k] if k == rr else ls[l][k] for k in range(2)] for l in range(32)]
                            for lane in range(32):
                                for rr in range(2):
                                    l_r[w][lane][rr] = l_r[w][lane][rr]*corr[lane][rr] + ls[lane][rr]
                            nto = dc//2//8
                            for j in range(nto):
                                for lane in range(32):
                                    o[w][j][lane] = [o[w][j][lane][0]*corr[lane][0], o[w][j][lane][1]*corr[lane][0],
                                                     o[w][j][lane][2]*corr[lane][1], o[w][j][lane][3]*corr[lane][1]]
                            for kk in range(2):
                                a = []
                                for lane in range(32):
                                    P = lambda nt, e: float(s[nt][lane][e]) if EXACT else float(bf16(s[nt][lane][e])[0])
                                    a.append([(P(2*kk,0), P(2*kk,1)), (P(2*kk,2), P(2*kk,3)), (P(2*kk+1,0), P(2*kk+1,1)), (P(2*kk+1,2), P(2*kk+1,3))])
                                for j in range(nto):
                                    b = []
                                    for lane in range(32):
                                        g, t4 = lane >> 2, lane & 3
                                        c = half*(dc//2) + g + j*8
                                        r0 = 16*kk + 2*t4
                                        b.append([(sk[r0, c], sk[r0+1, c]), (sk[r0+8, c], sk[r0+9, c])])
                                    mma(o[w][j], a, b)
                    # results
                    for w in range(nwarps):
                        hb, half = w >> 1, w & 1
                        for lane in range(32):
                            g, t4 = lane >> 2, lane & 3
                            for rr in range(2):
                                h = h0 + hb*16 + g + 8*rr
                                if h >= H: continue
                                for j in range(dc//16):
                                    c = half*(dc//2) + 8*j + 2*t4
                                    if ctx_split:
                                        pp = part.setdefault((sx, h, z), [None, None, np.zeros(dc)])
                                        pp[0], pp[1] = m_r[w][lane][rr], l_r[w][lane][rr]
                                        pp[2][c] = o[w][j][lane][2*rr]; pp[2][c+1] = o[w][j][lane][2*rr+1]
                                    else:
                                        inv = 1/l_r[w][lane][rr] if l_r[w][lane][rr] > 0 else 0
                                        out.setdefault((tq, h), np.zeros(dc))
                                        out[(tq, h)][c] = o[w][j][lane][2*rr]*inv; out[(tq, h)][c+1] = o[w][j][lane][2*rr+1]*inv
    # merge
    for sx, (q_off, n_q, pos0, rows) in enumerate(seqs):
        if not (n_q == 1 and splits > 1): continue
        for h in range(H):
            ps = [part[(sx, h, z)] for z in range(splits)]
            M = max(p[0] for p in ps)
            wz = [0 if p[0] == -math.inf else math.exp(p[0] - M) for p in ps]
            L = sum(p[1]*w for p, w in zip(ps, wz))
            out[(q_off, h)] = sum(p[2]*w for p, w in zip(ps, wz)) / L if L > 0 else np.zeros(dc)
    return out

def reference(q, qpe, kvrows, seqs, H, dc, dr, scale):
    out = {}
    for (q_off, n_q, pos0, rows) in seqs:
        for i in range(n_q):
            tq = q_off + i; nk = pos0 + i + 1
            for h in range(H):
                qq = np.concatenate([q[tq, h], qpe[tq, h]]).astype(np.float64)
                sc, vs = [], []
                for p in range(nk):
                    if rows[p] is None: continue
                    sc.append(scale * qq @ rows[p].astype(np.float64)); vs.append(rows[p][:dc])
                if not sc: out[(tq, h)] = np.zeros(dc); continue
                sc = np.array(sc); w = np.exp(sc - sc.max()); w /= w.sum()
                out[(tq, h)] = (w[:, None] * np.array(vs)).sum(0)
    return out

H, dc, dr = 20, 32, 16
seqs = []; T = 0
specs = [(1, 45), (1, 1), (3, 40), (1, 70)]  # (n_q, len)
qs_rows = []
for n_q, ln in specs:
    rows = [bf16(rng.standard_normal(dc + dr)) for _ in range(ln)]
    if ln > 60: rows[33] = None  # a faulted block's row
    seqs.append((T, n_q, ln - n_q, rows)); T += n_q
q = rng.standard_normal((T, H, dc)).astype(np.float32)
qpe = bf16(rng.standard_normal((T, H, dr)))
bad = 0
for splits in (1, 3):
    got = kernel(q, qpe, None, seqs, H, dc, dr, 0.3, splits)
    want = reference(q, qpe, None, seqs, H, dc, dr, 0.3)
    err = max(np.abs(got[k] - want[k]).max() for k in want)
    mx = max(np.abs(want[k]).max() for k in want)
    lim = 1e-6 if EXACT else 2e-2
    ok = set(got) == set(want) and err <= lim * mx
    bad += not ok
    print("splits %d: max |emulated - fp64| %.3g of max %.3g (limit %.0e of it): %s" %
          (splits, err, mx, lim, "ok" if ok else "FAIL"))
sys.exit(1 if bad else 0)
