/* test_misc.c — the small ops, checked exactly against their definitions:
 * embed (a bad id is a data fault: fault bit, zero row; -1 is padding), add, cast both ways, gather_rows,
 * gather_rows (-1 leaves the row), silu_mul (double reference rounded at transformers' two points: at most one
 * bf16 ulp off), and backend selection. */
#include "kref.h"
#include "ms_build_config.h"

int main(void)
{
    kr_seed(7);
    enum { V = 50, D = 24, N = 7 };
    bf16_t *tab = kr_bf16(V * D, 1.0), out[N * D];
    int32_t ids[N] = {0, 49, 3, 3, 17, 8, 1};
    T_CHECK(kern_cpu_ops.embed(NULL, ids, N, tab, V, D, out) == MS_OK);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= memcmp(out + i * D, tab + ids[i] * D, D * 2) == 0;
    T_CHECK(ok);
    /* a bad id is a data fault: the call succeeds, the fault bit is set and the row is zeros; -1 is padding
     * (zeros, no fault); the other rows are unaffected */
    kern_ctx_t *cx;
    T_CHECK(kern_cpu_ops.ctx_create(0, 0, &cx) == MS_OK);
    ids[2] = V;
    ids[4] = -1;
    T_CHECK(kern_cpu_ops.embed(cx, ids, N, tab, V, D, out) == MS_OK && *cx->fault == KERN_FAULT_TOKEN);
    ok = 1;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) ok &= out[i * D + d] == (i == 2 || i == 4 ? 0 : tab[ids[i] * D + d]);
    T_CHECK(ok);
    *cx->fault = 0;
    ids[2] = 3;
    T_CHECK(kern_cpu_ops.embed(cx, ids, N, tab, V, D, out) == MS_OK && *cx->fault == 0);
    ids[2] = -7;
    T_CHECK(kern_cpu_ops.embed(cx, ids, N, tab, V, D, out) == MS_OK && *cx->fault == KERN_FAULT_TOKEN);
    kern_cpu_ops.ctx_destroy(cx);

    bf16_t *a = kr_bf16(1000, 1.0), *b = kr_bf16(1000, 1e-2), y[1000];
    T_CHECK(kern_cpu_ops.add(NULL, a, b, y, 1000) == MS_OK);
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= bf16_to_f32(y[i]) == bf16_round((float)(kr_b(a[i]) + kr_b(b[i])));
    T_CHECK(ok);

    float f[1000], g[1000];
    bf16_t h[1000];
    for (int i = 0; i < 1000; i++) f[i] = (float)kr_normal();
    T_CHECK(kern_cpu_ops.cast(NULL, f, MS_DT_F32, h, MS_DT_BF16, 1000) == MS_OK);
    T_CHECK(kern_cpu_ops.cast(NULL, h, MS_DT_BF16, g, MS_DT_F32, 1000) == MS_OK);
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= g[i] == bf16_round(f[i]);
    T_CHECK(ok);
    T_CHECK(kern_cpu_ops.cast(NULL, f, MS_DT_F32, h, MS_DT_F8E4M3, 10) == MS_ERR_UNSUPPORTED);

    int32_t gi[5] = {4, 0, 4, 2, 1};
    int64_t src[5][3], dst[5][3];
    for (int i = 0; i < 15; i++) ((int64_t *)src)[i] = i * 11;
    T_CHECK(kern_cpu_ops.gather_rows(NULL, src, gi, 5, sizeof src[0], dst) == MS_OK);
    ok = 1;
    for (int i = 0; i < 5; i++) ok &= memcmp(dst[i], src[gi[i]], sizeof src[0]) == 0;
    T_CHECK(ok);
    /* a padded index (-1) leaves its row as it was */
    int32_t gp[2] = {-1, 3};
    int64_t keep[2][3] = {{7, 7, 7}, {0, 0, 0}};
    T_CHECK(kern_cpu_ops.gather_rows(NULL, src, gp, 2, sizeof src[0], keep) == MS_OK);
    T_CHECK(keep[0][0] == 7 && keep[0][2] == 7 && memcmp(keep[1], src[3], sizeof src[0]) == 0);

    bf16_t *gt = kr_bf16(4096, 3.0), *up = kr_bf16(4096, 1.0), act[4096];
    T_CHECK(kern_cpu_ops.silu_mul(NULL, gt, up, act, 4096) == MS_OK);
    kr_err_t e = {.what = "silu_mul"};
    for (int i = 0; i < 4096; i++) {
        double x = kr_b(gt[i]);
        double want = bf16_round((float)(bf16_round((float)(x / (1 + exp(-x)))) * kr_b(up[i])));
        kr_err_add(&e, kr_b(act[i]), want, fabs(want) / 128 + 1e-30);
    }
    KR_ERR_CHECK(e);

    /* mtp_prep (bs 4, N 3): seq 0 (4 blocks, 16 positions) verifies drafts 11 12 13 at rows 1..3 against
     * samples 11 12 99: two accepted, it drafts from row 2 at position 12 + 2, chains at 15 and 16 — 16 is
     * past its table: cut, so the next step verifies 2 drafts; seq 1 is a prompt chunk of rows 4..5 at
     * position 4 (2 blocks): it drafts from its last row, position 5, chains 6 and 7; seq 2 is padding.
     * next: rows 0..3 from samples 0..3, row 4 from id 5, row 5 from sample 4, row 6 none. */
    {
        int32_t ids[7] = {5, 11, 12, 13, 40, 41, 0}, tok[5] = {11, 12, 99, 7, 8};
        int32_t src[7] = {-2, -3, -4, -5, 5, -6, -1}, blocks[6] = {7, 8, 9, 6, 1, 2};
        kern_draft_t d[3] = {{.r0 = 0, .j = 0, .n_verify = 3, .last = 3, .pos = 12, .blk_off = 0, .cover = 16},
                             {.r0 = 4, .j = 4, .n_verify = 0, .last = 1, .pos = 4, .blk_off = 4, .cover = 8},
                             {.r0 = -1}};
        int32_t next[7], row[3], acc[6], cpos[6], cslot[6], cpad[3];
        kern_attn_seq_t cseq[6];
        kern_mtp_prep_t p = {.next_src = src, .T = 7, .seqs = d, .n = 3, .N = 3, .block_size = 4, .ids = ids,
                             .tok = tok, .blocks = blocks, .next = next, .row = row, .acc = acc, .chain_pos = cpos,
                             .chain_slot = cslot, .chain_seqs = cseq, .chain_pad = cpad};
        T_CHECK(kern_cpu_ops.mtp_prep(NULL, &p) == MS_OK);
        const int32_t w_next[7] = {11, 12, 99, 7, 41, 8, -1}, w_row[3] = {2, 5, 0}, w_acc[6] = {2, 2, 0, 3, 0, 0};
        /* pass-major: pass 2 of seqs 0..2, then pass 3 */
        const int32_t w_pos[6] = {15, 6, 0, 14, 7, 0}, w_slot[6] = {6 * 4 + 3, 2 * 4 + 2, -1, -1, 2 * 4 + 3, -1};
        const int32_t w_nq[6] = {1, 1, 0, 0, 1, 0}, w_pad[3] = {-1, -1, 0};
        T_CHECK(!memcmp(next, w_next, sizeof next) && !memcmp(row, w_row, sizeof row) &&
                !memcmp(acc, w_acc, sizeof acc) && !memcmp(cpad, w_pad, sizeof cpad));
        T_CHECK(!memcmp(cpos, w_pos, sizeof cpos) && !memcmp(cslot, w_slot, sizeof cslot));
        for (int i = 0; i < 6; i++)
            T_CHECK_MSG(cseq[i].n_q == w_nq[i] && cseq[i].q_off == i % 3 && cseq[i].pos0 == w_pos[i] &&
                            cseq[i].blk_off == (i % 3 == 1 ? 4 : 0),
                        "chain seq %d: q_off %d n_q %d pos0 %d blk_off %d", i, cseq[i].q_off, cseq[i].n_q,
                        cseq[i].pos0, cseq[i].blk_off);
        p.N = 0;
        T_CHECK(kern_cpu_ops.mtp_prep(NULL, &p) == MS_ERR_INVALID);
    }

    const kern_ops_t *ops = NULL;
    T_CHECK(kern_backend_get("cpu", &ops) == MS_OK && ops == &kern_cpu_ops);
    T_CHECK(kern_backend_get("tpu", &ops) == MS_ERR_INVALID);
#if MS_HAVE_CUDA
    T_CHECK(kern_backend_get("cuda", &ops) == MS_OK && !strcmp(ops->name, "cuda"));
    /* the CUDA backend implements every op of the table and says so up front */
    for (int op = 0; op < KERN_N_OPS; op++)
        T_CHECK_MSG(ops->supports_op((kern_op_t)op), "cuda lacks op %s", kern_op_name((kern_op_t)op));
#else
    T_CHECK(kern_backend_get("cuda", &ops) == MS_ERR_UNSUPPORTED);
#endif
    /* every op of every backend is filled in (never NULL) */
    const kern_ops_t *all[2] = {&kern_cpu_ops, NULL};
#if MS_HAVE_CUDA
    kern_backend_get("cuda", &all[1]);
#endif
    for (int k = 0; k < 2 && all[k]; k++) {
        void *const *fp = (void *const *)((const char *)all[k] + offsetof(kern_ops_t, alloc));
        size_t nfp = (sizeof(kern_ops_t) - offsetof(kern_ops_t, alloc)) / sizeof(void *);
        for (size_t i = 0; i < nfp; i++) T_CHECK_MSG(fp[i] != NULL, "%s op #%zu is NULL", all[k]->name, i);
    }
    free(tab), free(a), free(b), free(gt), free(up);
    return t_done();
}
