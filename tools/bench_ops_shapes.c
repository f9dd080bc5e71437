/* bench_ops_shapes.c — moeserve-bench-ops' op tables at DeepSeek-R1 decode shapes (each op of a batch, the
 * routed experts of one EP8 rank), the sampler alone (--sample) and mla_latent alone (--mla-batch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_build_config.h"
#if MS_HAVE_CUDA

#include "kernels/cuda/moe_gemm.h"
#include "tools/bench_ops.h"

/* One linear at decode: x [B, in] bf16 (or fp8 with scales) times W [out, in]. */
static void bench_linear(const char *name, int B, int out, int in, ms_dtype_t wdt, int fp8x, kern_epi_t epi,
                         ms_dtype_t ydt)
{
    void *x = dfill(MS_DT_BF16, (int64_t)B * in, 0), *y = dalloc((size_t)B * out * 4 + 256);
    void *wd = dfill(wdt, (int64_t)out * in, 0);
    float *ws = wdt == MS_DT_F8E4M3 ? dfill(MS_DT_F32, (int64_t)kern_fp8_blocks(out) * kern_fp8_blocks(in), 1e-3f) : NULL;
    kern_mat_t w = {.data = wd, .scale_inv = ws, .dtype = wdt, .rows = out, .cols = in};
    uint8_t *xq = NULL;
    float *xs = NULL;
    if (fp8x) {
        xq = dalloc((size_t)B * in + 256), xs = dalloc(sizeof(float) * (size_t)kern_act_scales(B, in) + 256);
        CK(K->act_quant(CX, x, in, B, in, xq, in, xs, kern_fp8_blocks(in)));
    }
    kern_gemm_t g = {.x = fp8x ? (void *)xq : x, .x_scale = xs, .w = &w, .y = y, .xdt = fp8x ? MS_DT_F8E4M3 : MS_DT_BF16,
                     .ydt = ydt, .m = B, .ldx = in, .ld_xs = kern_fp8_blocks(in), .ldy = epi ? out / 2 : out, .epi = epi};
    float ms;
    TIME_MS(ms, K->gemm(CX, &g));
    char shape[128];
    snprintf(shape, sizeof shape, "%d x [%d, %d] %s%s%s", B, out, in, wdt == MS_DT_F8E4M3 ? "fp8" : "bf16",
             fp8x ? ", fp8 x" : "", epi ? ", SiLU·mul" : "");
    double bytes = (double)out * in * ms_dtype_size(wdt) + (double)B * in * (fp8x ? 1 : 2) +
                   (double)B * (epi ? out / 2 : out) * ms_dtype_size(ydt);
    row(name, shape, ms, bytes, 2.0 * B * out * (double)in, wdt == MS_DT_F8E4M3 && fp8x);
    K->free(x), K->free(y), K->free(wd);
    if (ws) K->free(ws);
    if (xq) K->free(xq), K->free(xs);
}

void bench_batch(int B, int ctx)
{
    printf("\n#### Batch %d per rank (context %d for attention)\n\n", B, ctx);
    printf("| op | shape | ms | GB/s | TFLOP/s | %% of ceiling (bound) |\n|---|---|---|---|---|---|\n");
    float ms;
    char shape[160];
    /* elementwise / norms */
    bf16_t *x = dfill(MS_DT_BF16, (int64_t)B * D, 0), *r = dfill(MS_DT_BF16, (int64_t)B * D, 0);
    bf16_t *y = dalloc((size_t)B * D * 2), *nw = dfill(MS_DT_BF16, D, 0);
    TIME_MS(ms, K->rmsnorm(CX, x, D, nw, y, D, B, D, 1e-6f));
    snprintf(shape, sizeof shape, "[%d, %d]", B, D);
    row("rmsnorm", shape, ms, 2.0 * B * D * 2, 0, 0);
    TIME_MS(ms, K->add_rmsnorm(CX, x, r, nw, y, B, D, 1e-6f));
    row("add_rmsnorm", shape, ms, 4.0 * B * D * 2, 0, 0);
    TIME_MS(ms, K->add(CX, x, r, y, (int64_t)B * D));
    row("add", shape, ms, 3.0 * B * D * 2, 0, 0);
    uint8_t *q8 = dalloc((size_t)B * D);
    float *qs = dalloc(sizeof(float) * (size_t)kern_act_scales(B, D));
    TIME_MS(ms, K->act_quant(CX, x, D, B, D, q8, D, qs, kern_fp8_blocks(D)));
    row("act_quant", shape, ms, 3.0 * B * D, 0, 0);
    /* the fused add_rmsnorm + act_quant (the norm before an FP8 linear in the dense fp8 mode) */
    TIME_MS(ms, K->rmsnorm_quant(CX, x, D, r, nw, y, D, B, D, 1e-6f, q8, D, qs, kern_fp8_blocks(D)));
    row("rmsnorm_quant (add)", shape, ms, 4.0 * B * D * 2 + 1.0 * B * D, 0, 0);
    int32_t *hid = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < B; i++) hid[i] = (i * 7919) % V;
    int32_t *ids = dints(hid, B);
    bf16_t *emb = dfill(MS_DT_BF16, (int64_t)V * D, 0);
    TIME_MS(ms, K->embed(CX, ids, B, emb, V, D, y));
    row("embed", shape, ms, 2.0 * B * D * 2, 0, 0);
    K->free(emb);
    bf16_t *g2 = dfill(MS_DT_BF16, (int64_t)B * INTER, 0), *u2 = dfill(MS_DT_BF16, (int64_t)B * INTER, 0);
    bf16_t *o2 = dalloc((size_t)B * INTER * 2);
    TIME_MS(ms, K->silu_mul(CX, g2, u2, o2, (int64_t)B * INTER));
    snprintf(shape, sizeof shape, "[%d, %d]", B, INTER);
    row("silu_mul", shape, ms, 3.0 * B * INTER * 2, 0, 0);
    K->free(g2), K->free(u2), K->free(o2);
    float *f32 = dfill(MS_DT_F32, (int64_t)B * D, 0.5f);
    TIME_MS(ms, K->cast(CX, f32, MS_DT_F32, y, MS_DT_BF16, (int64_t)B * D));
    snprintf(shape, sizeof shape, "[%d, %d] f32->bf16", B, D);
    row("cast", shape, ms, 6.0 * B * D, 0, 0);
    K->free(f32);
    for (int i = 0; i < B; i++) hid[i] = B - 1 - i;
    int32_t *perm = dints(hid, B);
    TIME_MS(ms, K->gather_rows(CX, x, perm, B, (size_t)D * 2, y));
    snprintf(shape, sizeof shape, "%d rows of %d bf16", B, D);
    row("gather_rows", shape, ms, 4.0 * B * D, 0, 0);

    /* projections (FP8 weights as R1 ships them: the dequant mode, then the fp8 mode) */
    bench_linear("gemm q_a", B, QL, D, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_a", B, QL, D, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_b", B, H * (DN + DR), QL, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_b", B, H * (DN + DR), QL, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm kv_a", B, DC + DR, D, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm o_proj", B, D, H * DV, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm o_proj", B, D, H * DV, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm router", B, E, D, MS_DT_BF16, 0, KERN_EPI_NONE, MS_DT_F32);
    bench_linear("gemm shared gate|up", B, 2 * IM, D, MS_DT_F8E4M3, 0, KERN_EPI_SILU_MUL, MS_DT_BF16);
    bench_linear("gemm shared down", B, D, IM, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm dense gate|up", B, 2 * INTER, D, MS_DT_F8E4M3, 0, KERN_EPI_SILU_MUL, MS_DT_BF16);
    bench_linear("gemm dense down", B, D, INTER, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm lm_head", B, V, D, MS_DT_BF16, 0, KERN_EPI_NONE, MS_DT_F32);

    /* absorbed MLA: q_nope·W_UK and o_lat·W_UV, batched per head over kv_b [H*(DN+DV), DC] */
    {
        bf16_t *q = dfill(MS_DT_BF16, (int64_t)B * H * (DN + DR), 0), *kvb = dfill(MS_DT_BF16, (int64_t)H * (DN + DV) * DC, 0);
        float *ql = dalloc(sizeof(float) * (size_t)B * H * DC);
        kern_mat_t wuk = {.data = kvb, .dtype = MS_DT_BF16, .rows = DC, .cols = DN};
        kern_gemm_t g = {.x = q, .w = &wuk, .y = ql, .xdt = MS_DT_BF16, .ydt = MS_DT_F32, .m = B, .batch = H,
                         .ldx = H * (DN + DR), .bsx = DN + DR, .ldw = DC, .bsw = (int64_t)(DN + DV) * DC, .w_trans = 1,
                         .ldy = H * DC, .bsy = DC};
        TIME_MS(ms, K->gemm(CX, &g));
        snprintf(shape, sizeof shape, "%d heads x %d x [%d <- %d] bf16 (W_UK^T)", H, B, DC, DN);
        row("gemm q_nope·W_UK", shape, ms, (double)H * DN * DC * 2 + (double)B * H * (DN * 2 + DC * 4), 2.0 * B * H * DN * DC, 0);
        bf16_t *ol = dfill(MS_DT_BF16, (int64_t)B * H * DC, 0), *ov = dalloc((size_t)B * H * DV * 2);
        kern_mat_t wuv = {.data = (const bf16_t *)kvb + (size_t)DN * DC, .dtype = MS_DT_BF16, .rows = DV, .cols = DC};
        kern_gemm_t g2 = {.x = ol, .w = &wuv, .y = ov, .xdt = MS_DT_BF16, .ydt = MS_DT_BF16, .m = B, .batch = H,
                          .ldx = H * DC, .bsx = DC, .ldw = DC, .bsw = (int64_t)(DN + DV) * DC, .ldy = H * DV, .bsy = DV};
        TIME_MS(ms, K->gemm(CX, &g2));
        snprintf(shape, sizeof shape, "%d heads x %d x [%d <- %d] bf16 (W_UV)", H, B, DV, DC);
        row("gemm o_lat·W_UV", shape, ms, (double)H * DV * DC * 2 + (double)B * H * (DC + DV) * 2, 2.0 * B * H * DV * DC, 0);
        /* rope on q_pe (H heads) */
        int32_t *hp = malloc(sizeof(int32_t) * (size_t)B);
        for (int i = 0; i < B; i++) hp[i] = ctx - 1;
        int32_t *pos = dints(hp, B);
        float *invf = dfill(MS_DT_F32, DR / 2, 1e-3f);
        TIME_MS(ms, K->rope(CX, q + DN, B, H, H * (DN + DR), DN + DR, pos, invf, 1.0f, DR, 1));
        snprintf(shape, sizeof shape, "%d x %d heads x %d", B, H, DR);
        row("rope q_pe", shape, ms, 4.0 * B * H * DR, 0, 0);
        /* paged latent attention, BF16 and FP8 KV, block 64 */
        for (int fp8 = 0; fp8 < 2; fp8++) {
            const int bs = 64, nbpp = (ctx + bs - 1) / bs, nblk = nbpp * B;
            kern_kv_t kv = {.dtype = fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, .d_c = DC, .d_r = DR, .block_size = bs,
                            .n_blocks = nblk, .row_bytes = kern_kv_row_bytes(fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, DC, DR)};
            kv.data = dalloc((size_t)nblk * bs * kv.row_bytes);
            bf16_t *ckv = dfill(MS_DT_BF16, (int64_t)B * (DC + DR), 0);
            int32_t *hs = malloc(sizeof(int32_t) * (size_t)nblk);
            for (int i = 0; i < nblk; i++) hs[i] = i;
            int32_t *bt = dints(hs, nblk);
            for (int i = 0; i < B; i++) hs[i] = i * nbpp * bs + (ctx - 1);
            int32_t *slots = dints(hs, B);
            { /* fill the whole cache through kv_store in one call */
                const int nrow = nblk * bs;
                bf16_t *all = dfill(MS_DT_BF16, (int64_t)nrow * (DC + DR), 0);
                int32_t *ha = malloc(sizeof(int32_t) * (size_t)nrow);
                for (int i = 0; i < nrow; i++) ha[i] = i;
                int32_t *sl = dints(ha, nrow);
                CK(K->kv_store(CX, &kv, all, DC + DR, all + DC, DC + DR, sl, nrow));
                CK(K->synchronize(CX));
                K->free(sl), K->free(all);
                free(ha);
            }
            TIME_MS(ms, K->kv_store(CX, &kv, ckv, DC + DR, ckv + DC, DC + DR, slots, B));
            snprintf(shape, sizeof shape, "%d rows, %s", B, fp8 ? "fp8" : "bf16");
            row("kv_store", shape, ms, (double)B * (2 * (DC + DR) + kv.row_bytes), 0, 0);
            TIME_MS(ms, K->rope(CX, ckv + DC, B, 1, DC + DR, 0, pos, invf, 1.0f, DR, 1));
            row("rope k_pe", shape, ms, 4.0 * B * DR, 0, 0);
            TIME_MS(ms, K->kv_store_rope(CX, &kv, ckv, DC + DR, ckv + DC, DC + DR, slots, B, pos, invf, 1.0f, 1));
            row("kv_store_rope", shape, ms, (double)B * (2 * (DC + DR) + 2 * DR + kv.row_bytes), 0, 0);
            kern_attn_seq_t *hq = calloc((size_t)B, sizeof *hq);
            for (int i = 0; i < B; i++) hq[i] = (kern_attn_seq_t){.q_off = i, .n_q = 1, .pos0 = ctx - 1, .blk_off = i * nbpp};
            kern_attn_seq_t *sq = dalloc(sizeof *hq * (size_t)B);
            CK(K->upload(CX, sq, hq, sizeof *hq * (size_t)B));
            bf16_t *qlat = dfill(MS_DT_BF16, (int64_t)B * H * DC, 0.01f); /* bf16 q_lat, as the decode step passes it */
            bf16_t *olat = dalloc((size_t)B * H * DC * 2);
            snprintf(shape, sizeof shape, "%d seqs x %d ctx, %d heads, %s KV", B, ctx, H, fp8 ? "fp8" : "bf16");
            /* the three kernels (kernels/cuda/mla_latent*.cu), chosen per call by MS_MLA_KERNEL (default: wgmma) */
            char prevbuf[32] = "";
            const char *prev = getenv("MS_MLA_KERNEL") ? strncpy(prevbuf, getenv("MS_MLA_KERNEL"), 31) : NULL;
            static const char *const mk[] = {"simt", "mma", "wgmma"},
                                     *const mrow[] = {"mla_latent (simt)", "mla_latent (mma)", "mla_latent (wgmma)"};
            for (int k = 0; k < 3; k++) {
                setenv("MS_MLA_KERNEL", mk[k], 1);
                TIME_MS(ms, K->mla_latent(CX, qlat, MS_DT_BF16, q + DN, H * (DN + DR), DN + DR, &kv, bt, sq, B, H,
                                          0.1f, olat, MS_DT_BF16));
                row(mrow[k], shape, ms, (double)B * ctx * kv.row_bytes + (double)B * H * (DC * 4 + DC * 2),
                    2.0 * B * H * ctx * (2.0 * DC + DR), 0);
            }
            if (prev) setenv("MS_MLA_KERNEL", prev, 1);
            else unsetenv("MS_MLA_KERNEL");
            K->free(kv.data), K->free(ckv), K->free(bt), K->free(slots), K->free(sq), K->free(qlat), K->free(olat);
            free(hs), free(hq);
        }
        K->free(q), K->free(kvb), K->free(ql), K->free(ol), K->free(ov), K->free(pos), K->free(invf);
        free(hp);
    }

    /* router, dispatch plan, scatter, combine over 256 experts on one rank (ep 1) */
    {
        float *lg = dfill(MS_DT_F32, (int64_t)B * E, 0), *bias = dfill(MS_DT_F32, E, 0);
        CK(K->fill_dummy(CX, lg, MS_DT_F32, 1, (int64_t)B * E, 0, 0, 99, 4.0f, 0.0f));
        int32_t *idx = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        float *wt = dalloc(sizeof(float) * (size_t)B * TOPK);
        TIME_MS(ms, K->moe_route(CX, lg, bias, B, E, 8, 4, TOPK, 1, 2.5f, idx, wt));
        snprintf(shape, sizeof shape, "%d x %d experts, 8 groups top 4, top 8", B, E);
        row("moe_route", shape, ms, (double)B * E * 4 + (double)B * TOPK * 8, 0, 0);
        int32_t hl[E], hn[E];
        for (int e = 0; e < E; e++) hl[e] = e, hn[e] = 1;
        kern_moe_place_t pl = {.log2phy = dints(hl, E), .n_rep = dints(hn, E), .E = E, .max_rep = 1, .n_slots = E,
                               .slots_per_rank = E};
        int32_t *sop = dalloc(sizeof(int32_t) * (size_t)B * TOPK), *ris = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        int32_t *cnt = dalloc(sizeof(int32_t) * E), *rcnt = dalloc(sizeof(int32_t) * E);
        int32_t *rop = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        TIME_MS(ms, K->moe_plan(CX, idx, B, TOPK, &pl, sop, ris, cnt, NULL));
        snprintf(shape, sizeof shape, "%d x top %d over %d slots", B, TOPK, E);
        row("moe_plan", shape, ms, (double)B * TOPK * 12 + E * 4, 0, 0);
        const int cap = B;
        bf16_t *recv = dalloc((size_t)E * cap * D * 2);
        TIME_MS(ms, K->moe_scatter(CX, x, B, TOPK, D, sop, ris, cnt, 0, E, cap, recv, rcnt, rop));
        snprintf(shape, sizeof shape, "%d x %d rows of %d", B, TOPK, D);
        row("moe_scatter", shape, ms, 2.0 * B * TOPK * D * 2, 0, 0);
        TIME_MS(ms, K->moe_combine(CX, recv, rop, idx, wt, B, TOPK, D, y));
        row("moe_combine", shape, ms, (double)B * TOPK * D * 2 + (double)B * D * 2, 0, 0);
        TIME_MS(ms, K->moe_combine_add(CX, recv, rop, idx, wt, B, TOPK, D, r, y));
        row("moe_combine_add", shape, ms, (double)B * TOPK * D * 2 + (double)B * D * 4, 0, 0);
        K->free(lg), K->free(bias), K->free(idx), K->free(wt), K->free((void *)pl.log2phy), K->free((void *)pl.n_rep);
        K->free(sop), K->free(ris), K->free(cnt), K->free(rcnt), K->free(rop), K->free(recv);
    }
    /* logits */
    {
        float *lg = dfill(MS_DT_F32, (int64_t)B * V, 0), *ly = dalloc(sizeof(float) * (size_t)B * V);
        TIME_MS(ms, K->log_softmax(CX, lg, V, B, V, ly));
        snprintf(shape, sizeof shape, "[%d, %d] f32", B, V);
        row("log_softmax", shape, ms, 8.0 * B * V, 0, 0);
        kern_sample_t *hp = calloc((size_t)B, sizeof *hp);
        for (int i = 0; i < B; i++) hp[i] = (kern_sample_t){.top_p = 1, .mask_token = -1, .position = i};
        kern_sample_t *sp = dalloc(sizeof *hp * (size_t)B);
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        int32_t *tok = dalloc(sizeof(int32_t) * (size_t)B), *tid = dalloc(sizeof(int32_t) * (size_t)B * KERN_MAX_LOGPROBS);
        float *lp = dalloc(sizeof(float) * (size_t)B), *tlp = dalloc(sizeof(float) * (size_t)B * KERN_MAX_LOGPROBS);
        TIME_MS(ms, K->sample(CX, lg, MS_DT_F32, V, B, V, sp, tok, lp, tid, tlp));
        row("sample greedy", shape, ms, 4.0 * B * V, 0, 0);
        for (int i = 0; i < B; i++) hp[i] = (kern_sample_t){.temperature = 0.7f, .top_p = 0.95f, .top_k = 50,
                                                            .mask_token = -1, .position = i, .seed = 1};
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        TIME_MS(ms, K->sample(CX, lg, MS_DT_F32, V, B, V, sp, tok, lp, tid, tlp));
        row("sample T0.7 top-k 50 top-p 0.95", shape, ms, 4.0 * B * V, 0, 0);
        K->free(lg), K->free(ly), K->free(sp), K->free(tok), K->free(tid), K->free(lp), K->free(tlp);
        free(hp);
    }
    K->free(x), K->free(r), K->free(y), K->free(nw), K->free(q8), K->free(qs), K->free(ids), K->free(perm);
    free(hid);
}

/* Routed experts of one EP8 rank: 32 local slots, R1 FP8 records, rows per slot. */
void bench_experts(const int *rows, int n)
{
    printf("\n#### Routed experts: 32 local slots (an EP8 rank), FP8 records [2x%d | %d] x %d\n\n", IM, IM, D);
    printf("| op | shape | ms | GB/s | TFLOP/s | %% of ceiling (bound) |\n|---|---|---|---|---|---|\n");
    const int NL = 32;
    kern_moe_slots_t w = kern_moe_slots_layout(MS_DT_F8E4M3, D, IM);
    void *base = dalloc(w.stride * NL);
    w.base = base;
    for (int j = 0; j < NL; j++)
        for (int k = 0; k < 3; k++) {
            kern_mat_t m = kern_moe_slot_mat(&w, j, k);
            CK(K->fill_dummy(CX, (void *)m.data, MS_DT_F8E4M3, m.rows, m.cols, m.cols, 0, 1000u + j * 3 + k, 0, 0));
            CK(K->fill_dummy(CX, (void *)m.scale_inv, MS_DT_F32, 1, (int64_t)kern_fp8_blocks(m.rows) * kern_fp8_blocks(m.cols),
                             0, 0, 7, 0, 1e-3f));
        }
    for (int i = 0; i < n; i++) {
        const int cap = rows[i];
        bf16_t *x = dfill(MS_DT_BF16, (int64_t)NL * cap * D, 0), *o = dalloc((size_t)NL * cap * D * 2);
        int32_t hc[32];
        for (int j = 0; j < NL; j++) hc[j] = cap;
        int32_t *cnt = dints(hc, NL);
        size_t wsb = kern_moe_ws_bytes_all(NL, cap, D, IM); /* the engine's: every slot in one pass */
        void *ws = dalloc(wsb);
        float ms;
        for (int md = 0; md < 2; md++) {
            w.mode = md ? KERN_MOE_FP8 : KERN_MOE_DEQUANT;
            TIME_MS(ms, K->moe_experts(CX, x, cnt, NL, cap, &w, o, ws, wsb));
            char shape[96];
            snprintf(shape, sizeof shape, "32 slots x %d rows, %s mode", cap, md ? "fp8" : "dequant");
            row("moe_experts", shape, ms, (double)w.stride * NL + (double)NL * cap * D * 4,
                2.0 * NL * cap * 3.0 * IM * D, 1);
        }
        K->free(x), K->free(o), K->free(cnt), K->free(ws);
    }
    K->free(base);
}

/* The sampler at batch B (--sample): peaked logits (a few dozen tokens carry most of the mass) or flat ones. */
void bench_sample(int B)
{
    const int V = 129280;
    const int64_t n = (int64_t)B * V;
    float *hf = malloc(sizeof(float) * (size_t)n);
    bf16_t *hb = malloc(sizeof(bf16_t) * (size_t)n);
    uint64_t st = 12345;
    for (int64_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        const double u = (double)(st >> 11) / 9007199254740992.0;
        hf[i] = (float)(u * 4.0 - 6.0 + ((st >> 7) % 4096 == 0 ? 14.0 * u : 0.0));
        hb[i] = f32_to_bf16(hf[i]), hf[i] = bf16_to_f32(hb[i]);
    }
    float *lf = dalloc(sizeof(float) * (size_t)n);
    bf16_t *lb = dalloc(sizeof(bf16_t) * (size_t)n), *flat = dfill(MS_DT_BF16, n, 0);
    CK(K->upload(CX, lf, hf, sizeof(float) * (size_t)n));
    CK(K->upload(CX, lb, hb, sizeof(bf16_t) * (size_t)n));
    kern_sample_t *hp = calloc((size_t)B, sizeof *hp), *sp = dalloc(sizeof *hp * (size_t)B);
    int32_t *tok = dalloc(sizeof(int32_t) * (size_t)B), *tid = dalloc(sizeof(int32_t) * (size_t)B * KERN_MAX_LOGPROBS);
    float *lp = dalloc(sizeof(float) * (size_t)B), *tlp = dalloc(sizeof(float) * (size_t)B * KERN_MAX_LOGPROBS);
    float *cast = dalloc(sizeof(float) * (size_t)n);
    char shape[64];
    double ms;
    snprintf(shape, sizeof shape, "[%d, %d]", B, V);
    TIME_MS(ms, K->cast(CX, lb, MS_DT_BF16, cast, MS_DT_F32, n));
    row("cast bf16->f32 (no longer before sample)", shape, ms, 6.0 * n, 0, 0);
    static const struct {
        const char *name;
        float temp, top_p;
        int top_k, nlp;
    } kinds[] = {{"greedy", 0, 1, 0, 0},       {"greedy + 5 logprobs", 0, 1, 0, 5}, {"T1.0", 1.0f, 1, 0, 0},
                 {"T0.7 top-p 0.95", 0.7f, 0.95f, 0, 0}, {"T0.7 top-k 50 top-p 0.95", 0.7f, 0.95f, 50, 0}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (int i = 0; i < B; i++)
            hp[i] = (kern_sample_t){.temperature = kinds[k].temp, .top_p = kinds[k].top_p, .top_k = kinds[k].top_k,
                                    .n_logprobs = kinds[k].nlp, .seed = 1, .position = i, .mask_token = -1};
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        char name[96];
        for (int f = 0; f < 3; f++) {
            const void *src = f == 0 ? (const void *)lb : f == 1 ? (const void *)lf : (const void *)flat;
            const ms_dtype_t dt = f == 1 ? MS_DT_F32 : MS_DT_BF16;
            if (f == 2 && kinds[k].temp <= 0) continue; /* flat logits only matter to a draw */
            snprintf(name, sizeof name, "sample %s, %s%s", kinds[k].name, f == 1 ? "f32" : "bf16",
                     f == 2 ? " flat (fallback)" : " peaked");
            TIME_MS(ms, K->sample(CX, src, dt, V, B, V, sp, tok, lp, tid, tlp));
            row(name, shape, ms, (f == 1 ? 4.0 : 2.0) * n, 0, 0);
        }
    }
    K->free(lf), K->free(lb), K->free(flat), K->free(sp), K->free(tok), K->free(tid), K->free(lp), K->free(tlp);
    K->free(cast);
    free(hf), free(hb), free(hp);
}

/* --mla-batch/--mla-ctx: mla_latent alone (the default kernel, mla_latent_wgmma.cu at R1's shapes) at decode
 * shapes — B sequences of one query row each over ctx positions, 64-token blocks, BF16 then FP8 KV — so long
 * contexts are timed without the whole op table. Each KV dtype's cache is filled through kv_store. */
void bench_mla(int B, int ctx)
{
    char shape[160];
    float ms;
    bf16_t *q = dfill(MS_DT_BF16, (int64_t)B * H * (DN + DR), 0);
    bf16_t *qlat = dfill(MS_DT_BF16, (int64_t)B * H * DC, 0.01f); /* bf16 q_lat, as the decode step passes it */
    bf16_t *olat = dalloc((size_t)B * H * DC * 2);
    const char *only = getenv("MS_BENCH_MLA_KV"); /* "bf16" or "fp8": that KV dtype alone (e.g. under ncu) */
    for (int fp8 = 0; fp8 < 2; fp8++) {
        if (only && strcmp(only, fp8 ? "fp8" : "bf16")) continue;
        const int bs = 64, nbpp = (ctx + bs - 1) / bs, nblk = nbpp * B;
        const ms_dtype_t kdt = fp8 ? MS_DT_F8E4M3 : MS_DT_BF16;
        kern_kv_t kv = {.dtype = kdt, .d_c = DC, .d_r = DR, .block_size = bs, .n_blocks = nblk,
                        .row_bytes = kern_kv_row_bytes(kdt, DC, DR)};
        kv.data = dalloc((size_t)nblk * bs * kv.row_bytes);
        int32_t *hs = malloc(sizeof(int32_t) * (size_t)nblk * bs);
        for (int i = 0; i < nblk; i++) hs[i] = (int32_t)(((int64_t)i * 7 + 3) % nblk); /* scattered blocks */
        int32_t *bt = dints(hs, nblk);
        for (int c = 0; c < B; c++) { /* a sequence's rows, a chunk at a time through kv_store */
            const int nrow = nbpp * bs;
            for (int i = 0; i < nrow; i++) hs[i] = c * nrow + i;
            int32_t *sl = dints(hs, nrow);
            bf16_t *all = dfill(MS_DT_BF16, (int64_t)nrow * (DC + DR), 0);
            CK(K->kv_store(CX, &kv, all, DC + DR, all + DC, DC + DR, sl, nrow));
            CK(K->synchronize(CX));
            K->free(sl), K->free(all);
        }
        kern_attn_seq_t *hq = calloc((size_t)B, sizeof *hq);
        for (int i = 0; i < B; i++) hq[i] = (kern_attn_seq_t){.q_off = i, .n_q = 1, .pos0 = ctx - 1, .blk_off = i * nbpp};
        kern_attn_seq_t *sq = dalloc(sizeof *hq * (size_t)B);
        CK(K->upload(CX, sq, hq, sizeof *hq * (size_t)B));
        TIME_MS(ms, K->mla_latent(CX, qlat, MS_DT_BF16, q + DN, H * (DN + DR), DN + DR, &kv, bt, sq, B, H, 0.1f, olat,
                                  MS_DT_BF16));
        snprintf(shape, sizeof shape, "%d seqs x %d ctx, %d heads, %s KV", B, ctx, H, fp8 ? "fp8" : "bf16");
        row("mla_latent", shape, ms, (double)B * ctx * kv.row_bytes + (double)B * H * (DC * 2 + DR * 2 + DC * 2),
            2.0 * B * H * ctx * (2.0 * DC + DR), 0);
        K->free(kv.data), K->free(bt), K->free(sq);
        free(hs), free(hq);
    }
    K->free(q), K->free(qlat), K->free(olat);
}
#endif
