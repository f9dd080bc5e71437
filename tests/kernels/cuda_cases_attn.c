/* cuda_cases_attn.c — harness runners for rope, the KV cache, naive MLA, the
 * router, log_softmax and logits_adjust (table and tolerances:
 * test_cuda_vs_cpu.c). */
#include "cuda_cases.h"

#define K (env->gpu)
#define CX (env->cx)

void cc_run_rope(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], heads = (int32_t)c->p[1], dim = (int32_t)c->p[5];
    const int64_t ld_row = c->p[2], ld_head = c->p[3], off = c->p[4], n = rows * ld_row;
    const float af = (float)c->p[7] / 1000.0f;
    kr_seed(201);
    bf16_t *x = kr_bf16(n, 1.0), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)rows);
    for (int32_t i = 0; i < rows; i++) pos[i] = i == 0 ? 163839 : (int32_t)(kr_uniform() * 8192);
    if (c->contract) pos[1] = -1;
    float *inv = malloc(sizeof(float) * (size_t)dim / 2);
    for (int32_t i = 0; i < dim / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / dim) * (i > dim / 4 ? 0.025f : 1.0f);
    void *dx = cc_dev(env, x, (size_t)n * 2), *dp = cc_dev(env, pos, sizeof(int32_t) * (size_t)rows),
         *di = cc_dev(env, inv, sizeof(float) * (size_t)dim / 2);
    cc_ok(r, K->rope(CX, (bf16_t *)dx + off, rows, heads, ld_row, ld_head, dp, di, af, dim, (int32_t)c->p[6]), "rope");
    cc_get(env, got, dx, (size_t)n * 2);
    memcpy(want, x, (size_t)n * 2);
    if (!c->contract) {
        kern_cpu_ops.rope(NULL, want + off, rows, heads, ld_row, ld_head, pos, inv, af, dim, (int32_t)c->p[6]);
        cc_cmp_bytes(r, "rotated rows (and untouched channels)", got, want, (size_t)n * 2);
    } else {
        /* rows other than the padded one as the CPU; the padded row unchanged */
        int32_t p1 = pos[1];
        pos[1] = 0;
        kern_cpu_ops.rope(NULL, want + off, rows, heads, ld_row, ld_head, pos, inv, af, dim, (int32_t)c->p[6]);
        memcpy(want + ld_row, x + ld_row, (size_t)ld_row * 2);
        pos[1] = p1;
        cc_cmp_bytes(r, "rows with pos -1 untouched, others rotated", got, want, (size_t)n * 2);
    }
    free(x), free(want), free(got), free(pos), free(inv);
}

/* A cache of n_blocks blocks in the row layout of dt, every row written through the CPU's kv_store
 * from random latents (so FP8 rows carry valid scales). */
static kern_kv_t cc_make_cache(int32_t n_blocks, int32_t bs, int32_t dc, int32_t dr, ms_dtype_t dt)
{
    kern_kv_t kv = {.dtype = dt, .d_c = dc, .d_r = dr, .block_size = bs, .n_blocks = n_blocks,
                    .row_bytes = kern_kv_row_bytes(dt, dc, dr)};
    const int32_t rows = n_blocks * bs;
    kv.data = calloc((size_t)rows, (size_t)kv.row_bytes);
    bf16_t *ckv = kr_bf16((int64_t)rows * dc, 1.0), *kpe = kr_bf16((int64_t)rows * dr, 1.0);
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)rows);
    for (int32_t i = 0; i < rows; i++) slots[i] = i;
    kern_cpu_ops.kv_store(NULL, &kv, ckv, dc, kpe, dr, slots, rows);
    free(ckv), free(kpe), free(slots);
    return kv;
}

/* p[] = rows stored, cache rows, d_c, d_r, fp8 */
void cc_run_kv_store(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], rows = (int32_t)c->p[1], dc = (int32_t)c->p[2], dr = (int32_t)c->p[3];
    const ms_dtype_t dt = c->p[4] ? MS_DT_F8E4M3 : MS_DT_BF16;
    const int64_t ld_ckv = dc + 7, ld_kpe = dc + dr;
    kr_seed(202);
    kern_kv_t kv = cc_make_cache(rows / 16, 16, dc, dr, dt);
    const size_t cb = (size_t)rows * kv.row_bytes;
    bf16_t *ckv = kr_bf16(n * ld_ckv, 1.0), *kpe = kr_bf16(n * ld_kpe, 1.0);
    unsigned char *want = malloc(cb), *got = malloc(cb);
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++) slots[i] = (int32_t)((i * 37 + 11) % rows); /* distinct while n <= rows */
    if (c->contract) slots[2] = -1, slots[4] = -3, slots[5] = rows;
    if (n > 6) ckv[6 * ld_ckv + 1] = f32_to_bf16(5000.0f); /* a row whose scale is set by one outlier */
    void *dcache = cc_dev(env, kv.data, cb), *dk = cc_dev(env, ckv, (size_t)n * ld_ckv * 2),
         *dp = cc_dev(env, kpe, (size_t)n * ld_kpe * 2), *ds = cc_dev(env, slots, sizeof(int32_t) * (size_t)n);
    kern_kv_t kd = kv;
    kd.data = dcache;
    cc_ok(r, K->kv_store(CX, &kd, dk, ld_ckv, (bf16_t *)dp + 3, ld_kpe, ds, n), "kv_store");
    cc_get(env, got, dcache, cb);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.kv_store(&ccx, &kv, ckv, ld_ckv, kpe + 3, ld_kpe, slots, n), "cpu kv_store");
    memcpy(want, kv.data, cb);
    cc_cmp_bytes(r, "cache rows vs cpu", got, want, cb);
    if (c->contract) {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_BLOCK && cpu_fault == KERN_FAULT_BLOCK, "fault word 0x%x (cpu 0x%x) == BLOCK", f,
                 cpu_fault);
    }
    free(kv.data), free(ckv), free(kpe), free(want), free(got), free(slots);
}

/* p[] = rows, cache rows, d_c, d_r, fp8, row pad: the engine's kva layout (rows of ld = d_c + d_r + pad, k_pe at
 * d_c). The fused op against this backend's rope + kv_store: cache and kva bytes identical; and (outside contract
 * cases: the CPU ropes a pos -1 row, the GPU leaves it) against the CPU's fused op. contract: slot -1, -3 and past
 * the end, one row at pos -1 (left unrotated, still stored) */
void cc_run_kv_store_rope(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], rows = (int32_t)c->p[1], dc = (int32_t)c->p[2], dr = (int32_t)c->p[3];
    const ms_dtype_t dt = c->p[4] ? MS_DT_F8E4M3 : MS_DT_BF16;
    const int64_t ld = dc + dr + c->p[5];
    const float af = 1.2f;
    kr_seed(203);
    kern_kv_t kv = cc_make_cache(rows / 16, 16, dc, dr, dt);
    const size_t cb = (size_t)rows * kv.row_bytes, xb = sizeof(bf16_t) * (size_t)(n * ld);
    bf16_t *kva = kr_bf16(n * ld, 1.0), *xg = malloc(xb), *x2 = malloc(xb), *xc = malloc(xb);
    unsigned char *got = malloc(cb), *g2 = malloc(cb);
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)n), *pos = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++)
        slots[i] = (int32_t)((i * 37 + 11) % rows), pos[i] = i == 0 ? 163839 : (int32_t)(kr_uniform() * 8192);
    if (c->contract) slots[2] = -1, slots[4] = -3, slots[5] = rows, pos[3] = -1, pos[4] = 9;
    float *inv = malloc(sizeof(float) * (size_t)dr / 2);
    for (int32_t i = 0; i < dr / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / dr) * (i > dr / 4 ? 0.025f : 1.0f);
    void *dcache = cc_dev(env, kv.data, cb), *dcache2 = cc_dev(env, kv.data, cb), *dx = cc_dev(env, kva, xb),
         *dx2 = cc_dev(env, kva, xb), *ds = cc_dev(env, slots, sizeof(int32_t) * (size_t)n),
         *dp = cc_dev(env, pos, sizeof(int32_t) * (size_t)n), *di = cc_dev(env, inv, sizeof(float) * (size_t)dr / 2);
    kern_kv_t kd = kv, kd2 = kv;
    kd.data = dcache, kd2.data = dcache2;
    cc_ok(r, K->kv_store_rope(CX, &kd, dx, ld, (bf16_t *)dx + dc, ld, ds, n, dp, di, af, 1), "kv_store_rope");
    const uint32_t f1 = cc_fault_take(env);
    cc_ok(r, K->rope(CX, (bf16_t *)dx2 + dc, n, 1, ld, 0, dp, di, af, dr, 1), "rope");
    cc_ok(r, K->kv_store(CX, &kd2, dx2, ld, (bf16_t *)dx2 + dc, ld, ds, n), "kv_store");
    const uint32_t f2 = cc_fault_take(env);
    cc_get(env, got, dcache, cb), cc_get(env, g2, dcache2, cb), cc_get(env, xg, dx, xb), cc_get(env, x2, dx2, xb);
    cc_cmp_bytes(r, "cache rows vs this backend's rope + kv_store", got, g2, cb);
    cc_cmp_bytes(r, "kva (roped k_pe) vs rope + kv_store", xg, x2, xb);
    cc_check(r, f1 == f2 && (c->contract ? f1 == KERN_FAULT_BLOCK : f1 == 0), "fault word 0x%x (unfused 0x%x)", f1, f2);
    if (!c->contract) {
        memcpy(xc, kva, xb);
        cc_ok(r, kern_cpu_ops.kv_store_rope(NULL, &kv, xc, ld, xc + dc, ld, slots, n, pos, inv, af, 1),
              "cpu kv_store_rope");
        cc_cmp_bytes(r, "cache rows vs cpu", got, kv.data, cb);
        cc_cmp_bytes(r, "kva vs cpu", xg, xc, xb);
    }
    free(kv.data), free(kva), free(xg), free(x2), free(xc), free(got), free(g2), free(slots), free(pos), free(inv);
}

/* n_seqs sequences with lengths up to max_len over a shuffled block pool */
static void cc_make_seqs(int32_t n_seqs, int32_t max_len, int32_t bs, kern_attn_seq_t *seqs, int32_t **bt_out,
                         int32_t *n_bt, int32_t *n_blocks, int32_t *total_rows, int32_t *total_q)
{
    int32_t blk = 0, rows = 0, q = 0;
    for (int32_t s = 0; s < n_seqs; s++) {
        int32_t len = 1 + (int32_t)(kr_uniform() * max_len);
        if (s == 0) len = max_len;
        int32_t nq = s == 1 ? 1 : 1 + (int32_t)(kr_uniform() * (len < 48 ? len : 48));
        seqs[s] = (kern_attn_seq_t){.q_off = q, .n_q = nq, .pos0 = len - nq, .kv_off = rows, .blk_off = blk};
        blk += (len + bs - 1) / bs, rows += len, q += nq;
    }
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)(blk ? blk : 1));
    const int32_t pool = blk + 5;
    for (int32_t i = 0; i < blk; i++) bt[i] = pool - 1 - i; /* distinct, reversed */
    *bt_out = bt, *n_bt = blk, *n_blocks = pool, *total_rows = rows, *total_q = q;
}

/* p[] = seqs, max length, block size, d_c, d_r, fp8, window (seq 0 gathers positions 40..40+60) */
void cc_run_kv_gather(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n_seqs = (int32_t)c->p[0], bs = (int32_t)c->p[2], dc = (int32_t)c->p[3], dr = (int32_t)c->p[4];
    const ms_dtype_t dt = c->p[5] ? MS_DT_F8E4M3 : MS_DT_BF16;
    const int32_t w = dc + dr;
    kern_attn_seq_t seqs[16];
    int32_t *bt, n_bt, pool, rows, tq;
    kr_seed(203);
    cc_make_seqs(n_seqs, (int32_t)c->p[1], bs, seqs, &bt, &n_bt, &pool, &rows, &tq);
    if (c->p[6]) seqs[0].kv_pos0 = 40, seqs[0].kv_len = 60;
    if (c->contract) bt[0] = -2, bt[n_bt - 1] = pool;
    kern_kv_t kv = cc_make_cache(pool, bs, dc, dr, dt);
    const size_t cb = (size_t)pool * bs * kv.row_bytes;
    bf16_t *init = kr_bf16((int64_t)rows * w, 1.0);
    bf16_t *got = malloc((size_t)rows * w * 2), *want = malloc((size_t)rows * w * 2);
    void *dcache = cc_dev(env, kv.data, cb), *ds = cc_dev(env, seqs, sizeof(kern_attn_seq_t) * n_seqs),
         *db = cc_dev(env, bt, sizeof(int32_t) * (size_t)n_bt), *dout = cc_dev(env, init, (size_t)rows * w * 2);
    kern_kv_t kd = kv;
    kd.data = dcache;
    cc_ok(r, K->kv_gather(CX, &kd, ds, n_seqs, db, dout), "kv_gather");
    cc_get(env, got, dout, (size_t)rows * w * 2);
    memcpy(want, init, (size_t)rows * w * 2);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.kv_gather(&ccx, &kv, seqs, n_seqs, bt, want), "cpu kv_gather");
    cc_cmp_bytes(r, "gathered rows vs cpu", got, want, (size_t)rows * w * 2);
    if (c->contract) {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_BLOCK && cpu_fault == KERN_FAULT_BLOCK, "fault word 0x%x (cpu 0x%x) == BLOCK", f,
                 cpu_fault);
    }
    free(bt), free(kv.data), free(init), free(got), free(want);
}

void cc_run_mla_naive(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t H = (int32_t)c->p[0], dn = (int32_t)c->p[1], dr = (int32_t)c->p[2], dv = (int32_t)c->p[3];
    kern_attn_seq_t seqs[3];
    int32_t n_seqs, S, T;
    if (c->p[4] == 0) { /* a prefill chunk after a prefix, a fresh prefill, a decode token */
        seqs[0] = (kern_attn_seq_t){.q_off = 0, .n_q = 24, .pos0 = 100, .kv_off = 0};
        seqs[1] = (kern_attn_seq_t){.q_off = 24, .n_q = 40, .pos0 = 0, .kv_off = 124};
        seqs[2] = (kern_attn_seq_t){.q_off = 64, .n_q = 1, .pos0 = 300, .kv_off = 164};
        n_seqs = 3, S = 465, T = 65;
    } else { /* a context longer than the kernel keeps in shared memory */
        seqs[0] = (kern_attn_seq_t){.q_off = 0, .n_q = 2, .pos0 = 8999, .kv_off = 0};
        n_seqs = 1, S = 9001, T = 2;
    }
    const int64_t ldkpe = dr + 5, nq = (int64_t)T * H * (dn + dr), nkv = (int64_t)S * H * (dn + dv),
                  no = (int64_t)T * H * dv;
    const float scale = 0.13523378f;
    kr_seed(204);
    bf16_t *q = kr_bf16(nq, 1.0), *kv = kr_bf16(nkv, 1.0), *kpe = kr_bf16((int64_t)S * ldkpe, 1.0);
    bf16_t *want = calloc((size_t)no, 2), *got = calloc((size_t)no, 2);
    void *dq = cc_dev(env, q, (size_t)nq * 2), *dkv = cc_dev(env, kv, (size_t)nkv * 2),
         *dk = cc_dev(env, kpe, (size_t)S * ldkpe * 2), *ds = cc_dev(env, seqs, sizeof(kern_attn_seq_t) * n_seqs),
         *dout = cc_dev(env, NULL, (size_t)no * 2);
    cc_ok(r, K->mla_naive(CX, dq, dkv, dk, ldkpe, ds, n_seqs, H, dn, dr, dv, scale, dout), "mla_naive");
    cc_get(env, got, dout, (size_t)no * 2);
    cc_ok(r, kern_cpu_ops.mla_naive(NULL, q, kv, kpe, ldkpe, seqs, n_seqs, H, dn, dr, dv, scale, want), "cpu mla");
    cc_cmp_bf16(r, "out", got, want, no, c->tol, 0.01);
    free(q), free(kv), free(kpe), free(want), free(got);
}

void cc_run_moe_route(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], E = (int32_t)c->p[1], ng = (int32_t)c->p[2], tg = (int32_t)c->p[3],
                  k = (int32_t)c->p[4];
    kr_seed(205);
    float *lg = kr_f32((int64_t)T * E, 2.0), *bias = kr_f32(E, 0.1);
    if (c->p[5] == 2) /* NaN: every third row's logits NaN, all of them (t % 6 == 0) or every other one */
        for (int32_t t = 0; t < T; t += 3)
            for (int32_t e = t % 6 ? 1 : 0; e < E; e += t % 6 ? 2 : 1) lg[(int64_t)t * E + e] = NAN;
    else if (c->p[5]) { /* ties: few distinct logits and biases, so selection rests on the lower-index rule */
        for (int64_t i = 0; i < (int64_t)T * E; i++) lg[i] = (float)((int)(kr_uniform() * 4) - 2);
        for (int32_t e = 0; e < E; e++) bias[e] = (e % 3) * 0.25f;
    }
    int32_t *ig = malloc(sizeof(int32_t) * (size_t)T * k), *ic = malloc(sizeof(int32_t) * (size_t)T * k);
    float *wg = malloc(sizeof(float) * (size_t)T * k), *wc = malloc(sizeof(float) * (size_t)T * k);
    void *dl = cc_dev(env, lg, sizeof(float) * (size_t)T * E), *db = cc_dev(env, bias, sizeof(float) * (size_t)E),
         *di = cc_dev(env, NULL, sizeof(int32_t) * (size_t)T * k), *dw = cc_dev(env, NULL, sizeof(float) * (size_t)T * k);
    cc_ok(r, K->moe_route(CX, dl, db, T, E, ng, tg, k, 1, 2.5f, di, dw), "moe_route");
    cc_get(env, ig, di, sizeof(int32_t) * (size_t)T * k);
    cc_get(env, wg, dw, sizeof(float) * (size_t)T * k);
    cc_ok(r, kern_cpu_ops.moe_route(NULL, lg, bias, T, E, ng, tg, k, 1, 2.5f, ic, wc), "cpu moe_route");
    if (c->p[5] == 2) { /* NaN rows (see above): k distinct ids in [0, E); the other rows as the CPU's, bit for bit */
        int bad = 0;
        for (int32_t t = 0; t < T; t++) {
            if (t % 3 == 0) {
                for (int32_t j = 0; j < k; j++) {
                    const int32_t id = ig[(int64_t)t * k + j];
                    bad += id < 0 || id >= E;
                    for (int32_t i = 0; i < j; i++) bad += id == ig[(int64_t)t * k + i];
                }
                continue;
            }
            bad += memcmp(ig + (int64_t)t * k, ic + (int64_t)t * k, sizeof(int32_t) * (size_t)k) != 0;
            bad += memcmp(wg + (int64_t)t * k, wc + (int64_t)t * k, sizeof(float) * (size_t)k) != 0;
        }
        cc_check(r, bad == 0, "NaN rows: valid distinct ids, clean rows as the CPU's (%d bad)", bad);
        free(lg), free(bias), free(ig), free(ic), free(wg), free(wc);
        return;
    }
    cc_cmp_bytes(r, "expert ids", ig, ic, sizeof(int32_t) * (size_t)T * k);
    cc_cmp_bytes(r, "weights", wg, wc, sizeof(float) * (size_t)T * k);
    free(lg), free(bias), free(ig), free(ic), free(wg), free(wc);
}

void cc_run_log_softmax(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], n = (int32_t)c->p[1];
    const int64_t ld = n + 3;
    kr_seed(206);
    float *x = kr_f32(rows * ld, 4.0), *want = calloc((size_t)(rows * ld), 4), *got = calloc((size_t)(rows * ld), 4);
    void *dx = cc_dev(env, x, sizeof(float) * (size_t)(rows * ld)), *dy = cc_dev(env, NULL, sizeof(float) * (size_t)(rows * ld));
    cc_ok(r, K->log_softmax(CX, dx, ld, rows, n, dy), "log_softmax");
    cc_get(env, got, dy, sizeof(float) * (size_t)(rows * ld));
    kern_cpu_ops.log_softmax(NULL, x, ld, rows, n, want);
    double worst = 0;
    int64_t ndiff = 0;
    for (int64_t i = 0; i < rows * ld; i++) {
        if (i % ld >= n) continue;
        ndiff += got[i] != want[i];
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    }
    cc_check(r, worst <= c->tol, "max |d| %.3g <= %.3g, %lld/%lld differ", worst, c->tol, (long long)ndiff,
             (long long)rows * n);
    free(x), free(want), free(got);
}

/* p[] = rows, vocab, list length per row. Penalty lists (distinct tokens, prompt / generated / biased),
 * half of them written through `sets`, knobs cycling over presence, frequency, repetition, min_p and
 * temperature (greedy rows leave min_p off); then sample on the adjusted logits. tol 0: the adjusted
 * logits bit-identical to the CPU's (same fp32 operations, the CPU's double-precision min_p test) and
 * the sampled tokens identical. */
void cc_run_logits_adjust(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], V = (int32_t)c->p[1], L = (int32_t)c->p[2];
    const int64_t ld = V, cap = (int64_t)rows * L;
    kr_seed(311);
    float *lg = kr_f32(rows * ld, 3.0), *lc = malloc(sizeof(float) * (size_t)(rows * ld));
    kern_pen_t *lists = calloc((size_t)cap, sizeof *lists), *init = calloc((size_t)cap, sizeof *init);
    kern_pen_set_t *sets = calloc((size_t)cap, sizeof *sets);
    kern_adjust_t *adj = calloc((size_t)rows, sizeof *adj);
    kern_sample_t *ps = calloc((size_t)rows, sizeof *ps);
    int32_t n_sets = 0;
    for (int32_t i = 0; i < rows; i++) {
        for (int32_t j = 0; j < L; j++) {
            kern_pen_t e = {.token = (int32_t)(((int64_t)j * 7919 + i * 104729) % V), .n_out = (j % 3) ? j % 5 : 0,
                            .bias = (j % 4 == 1) ? (float)(kr_uniform() * 20 - 10) : 0.0f, .in_prompt = j % 2};
            if (j % 2) sets[n_sets++] = (kern_pen_set_t){.at = (int64_t)i * L + j, .e = e};
            else init[(int64_t)i * L + j] = e;
        }
        static const float temps[] = {0.0f, 0.8f, 1.0f, 1.5f};
        adj[i] = (kern_adjust_t){.presence = (i % 3) * 0.5f, .frequency = (i % 2) * 0.3f,
                                 .repetition = (i % 4) ? 1.0f + 0.1f * (float)(i % 4) : 1.0f,
                                 .min_p = (i % 5 < 3) ? 0.05f * (float)(i % 5) : 0.0f, .temperature = temps[i % 4],
                                 .mask_token = i % 7 == 3 ? 5 : -1, .list_off = (int64_t)i * L, .n_list = i % 6 ? L : 0};
        ps[i] = (kern_sample_t){.temperature = temps[i % 4], .top_p = i % 3 ? 1.0f : 0.9f, .top_k = i % 4 == 1 ? 40 : 0,
                                .seed = 77 + (uint64_t)i, .position = i, .mask_token = adj[i].mask_token};
    }
    memcpy(lists, init, sizeof *lists * (size_t)cap);
    memcpy(lc, lg, sizeof(float) * (size_t)(rows * ld));
    void *dl = cc_dev(env, lg, sizeof(float) * (size_t)(rows * ld)), *dli = cc_dev(env, init, sizeof *init * (size_t)cap),
         *dse = cc_dev(env, sets, sizeof *sets * (size_t)(n_sets ? n_sets : 1)),
         *da = cc_dev(env, adj, sizeof *adj * (size_t)rows), *dp = cc_dev(env, ps, sizeof *ps * (size_t)rows),
         *dt = cc_dev(env, NULL, 4 * (size_t)rows), *dlp = cc_dev(env, NULL, 4 * (size_t)rows),
         *di = cc_dev(env, NULL, 4 * (size_t)rows * KERN_MAX_LOGPROBS),
         *dtl = cc_dev(env, NULL, 4 * (size_t)rows * KERN_MAX_LOGPROBS);
    cc_ok(r, K->logits_adjust(CX, dl, ld, rows, V, da, dli, cap, dse, n_sets), "logits_adjust");
    cc_ok(r, K->sample(CX, dl, MS_DT_F32, ld, rows, V, dp, dt, dlp, di, dtl), "sample");
    float *lgg = malloc(sizeof(float) * (size_t)(rows * ld));
    int32_t *tg = calloc((size_t)rows, 4), *tc = calloc((size_t)rows, 4), *ic = calloc((size_t)rows * KERN_MAX_LOGPROBS, 4);
    float *lpc = calloc((size_t)rows, 4), *tlc = calloc((size_t)rows * KERN_MAX_LOGPROBS, 4);
    cc_get(env, lgg, dl, sizeof(float) * (size_t)(rows * ld)), cc_get(env, tg, dt, 4 * (size_t)rows);
    cc_ok(r, kern_cpu_ops.logits_adjust(NULL, lc, ld, rows, V, adj, lists, cap, sets, n_sets), "cpu logits_adjust");
    cc_ok(r, kern_cpu_ops.sample(NULL, lc, MS_DT_F32, ld, rows, V, ps, tc, lpc, ic, tlc), "cpu sample");
    cc_cmp_bytes(r, "adjusted logits", lgg, lc, sizeof(float) * (size_t)(rows * ld));
    int32_t bad = 0;
    for (int32_t i = 0; i < rows; i++) bad += tg[i] != tc[i];
    cc_check(r, bad == 0, "sampled tokens after adjustment: %d/%d differ", bad, rows);
    free(lg), free(lc), free(lists), free(init), free(sets), free(adj), free(ps), free(lgg), free(tg), free(tc), free(ic);
    free(lpc), free(tlc);
}

/* p[] = heads, d_c, d_r, block size, fp8 rows, variant, q/o dtype (0 f32/f32, 1 bf16/bf16, 2 bf16/f32),
 * ld_pe_head. variant 0: 24 decode seqs (n_q 1, contexts up to 1500); 1: a prefill chunk, a fresh prefill and
 * decode seqs; 2: one decode seq over 9001 positions; 3 (contract, shared with the CPU): block ids -2 and
 * n_blocks are faults and leave their keys out. tol = nmse; max-abs bound 1e-4 of max|ref| for f32 out,
 * 2 bf16 ulps for bf16 out (online softmax and split contexts sum in another order than the CPU). */
/* cc_run_mla_latent_mma sets it: the tensor-core kernel's looser bound on the largest error (mla_latent_mma.cu:
 * q_lat and the probabilities are rounded to bf16, as FlashMLA does; the nmse bound is the case's) */
static int g_mla_mma;

void cc_run_mla_latent(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t H = (int32_t)c->p[0], dc = (int32_t)c->p[1], dr = (int32_t)c->p[2], bs = (int32_t)c->p[3];
    const ms_dtype_t kdt = c->p[4] ? MS_DT_F8E4M3 : MS_DT_BF16;
    const int variant = (int)c->p[5];
    const ms_dtype_t qdt = c->p[6] == 0 ? MS_DT_F32 : MS_DT_BF16, odt = c->p[6] == 1 ? MS_DT_BF16 : MS_DT_F32;
    const int64_t ld_pe_head = c->p[7], ld_pe = H * ld_pe_head;
    kern_attn_seq_t seqs[32];
    int32_t n_seqs = 0, T = 0, blk = 0;
    kr_seed(208);
    int32_t lens[32], nqs[32];
    if (variant == 0 || variant == 3) {
        n_seqs = variant == 0 ? 24 : 3;
        for (int32_t s = 0; s < n_seqs; s++) lens[s] = 1 + (int32_t)(kr_uniform() * 1500), nqs[s] = 1;
        lens[0] = 1, lens[1] = 1500 > bs ? bs : 1500; /* a first token; a full block */
    } else if (variant == 1) {
        n_seqs = 4;
        lens[0] = 300, nqs[0] = 37;  /* a chunk after a prefix */
        lens[1] = 50, nqs[1] = 50;   /* a fresh prefill */
        lens[2] = 777, nqs[2] = 1;   /* decode */
        lens[3] = 65, nqs[3] = 1;
    } else if (variant == 4) { /* MTP verify steps: few rows over a long context split it (MLL_SPLIT_ROWS) */
        n_seqs = 5;
        lens[0] = 1200, nqs[0] = 2;
        lens[1] = 3000, nqs[1] = 4;
        lens[2] = 65, nqs[2] = 3;
        lens[3] = 2100, nqs[3] = 5; /* more rows than a context split takes: split by rows */
        lens[4] = 900, nqs[4] = 1;
    } else {
        n_seqs = 1, lens[0] = 9001, nqs[0] = 1;
    }
    for (int32_t s = 0; s < n_seqs; s++) {
        seqs[s] = (kern_attn_seq_t){.q_off = T, .n_q = nqs[s], .pos0 = lens[s] - nqs[s], .blk_off = blk};
        T += nqs[s], blk += (lens[s] + bs - 1) / bs;
    }
    const int32_t pool = blk + 3;
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)blk);
    for (int32_t i = 0; i < blk; i++) bt[i] = (i * 7 + 2) % pool; /* distinct (7 and pool coprime below) */
    if (pool % 7 == 0)
        for (int32_t i = 0; i < blk; i++) bt[i] = pool - 1 - i;
    if (variant == 3) bt[seqs[2].blk_off] = -2, bt[seqs[2].blk_off + 1 < blk ? seqs[2].blk_off + 1 : 0] = pool;
    kern_kv_t kv = cc_make_cache(pool, bs, dc, dr, kdt);
    const size_t cb = (size_t)pool * bs * kv.row_bytes, qe = ms_dtype_size(qdt), oe = ms_dtype_size(odt);
    const int64_t nq = (int64_t)T * H * dc, no = nq;
    void *q = qdt == MS_DT_F32 ? (void *)kr_f32(nq, 1.0) : (void *)kr_bf16(nq, 1.0);
    bf16_t *qpe = kr_bf16((int64_t)T * ld_pe, 1.0);
    void *want = calloc((size_t)no, oe), *got = calloc((size_t)no, oe);
    void *dcache = cc_dev(env, kv.data, cb), *dq = cc_dev(env, q, (size_t)nq * qe),
         *dpe = cc_dev(env, qpe, sizeof(bf16_t) * (size_t)(T * ld_pe)),
         *ds = cc_dev(env, seqs, sizeof(kern_attn_seq_t) * (size_t)n_seqs),
         *db = cc_dev(env, bt, sizeof(int32_t) * (size_t)blk), *dout = cc_dev(env, NULL, (size_t)no * oe);
    kern_kv_t kd = kv;
    kd.data = dcache;
    const float scale = 0.0722f;
    if (!g_mla_mma) setenv("MS_MLA_KERNEL", "simt", 1); /* these cases are the SIMT kernel's (tighter bounds) */
    const int64_t pe_off = ld_pe_head - dr; /* q_pe sits after the nope part of each head's row */
    cc_ok(r, K->mla_latent(CX, dq, qdt, (bf16_t *)dpe + pe_off, ld_pe, ld_pe_head, &kd, db, ds, n_seqs, H, scale, dout,
                           odt), "mla_latent");
    if (!g_mla_mma) unsetenv("MS_MLA_KERNEL");
    cc_get(env, got, dout, (size_t)no * oe);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.mla_latent(&ccx, q, qdt, qpe + pe_off, ld_pe, ld_pe_head, &kv, bt, seqs, n_seqs, H, scale,
                                     want, odt), "cpu mla_latent");
    if (odt == MS_DT_F32) cc_cmp_f32(r, "o_lat", got, want, no, c->tol, g_mla_mma ? 3e-2 : 1e-4);
    else cc_cmp_bf16(r, "o_lat", got, want, no, c->tol, g_mla_mma ? 4.0 / 256 : 2.0 / 256);
    if (variant == 3) {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_BLOCK && cpu_fault == KERN_FAULT_BLOCK, "fault word 0x%x (cpu 0x%x) == BLOCK", f,
                 cpu_fault);
    }
    free(bt), free(kv.data), free(q), free(qpe), free(want), free(got);
}

/* The cases of cc_run_mla_latent through the kernel MS_MLA_KERNEL names (read by the op at each call), with the
 * tensor-core kernels' bounds */
static void mla_latent_forced(cc_env_t *env, const cc_case_t *c, cc_result_t *r, const char *kernel)
{
    setenv("MS_MLA_KERNEL", kernel, 1);
    g_mla_mma = 1;
    cc_run_mla_latent(env, c, r);
    g_mla_mma = 0;
    unsetenv("MS_MLA_KERNEL");
}

/* The tensor-core kernel (mla_latent_mma.cu; shapes it does not take fall back to the SIMT kernel). */
void cc_run_mla_latent_mma(cc_env_t *env, const cc_case_t *c, cc_result_t *r) { mla_latent_forced(env, c, r, "mma"); }

/* The same cases through the Hopper kernel (mla_latent_wgmma.cu: the default, MS_MLA_KERNEL=wgmma said explicitly;
 * the mma kernel's bounds, as its numerics are the same; shapes it does not take — heads not a multiple of 64 —
 * fall back to the mma kernel). */
void cc_run_mla_latent_wgmma(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    mla_latent_forced(env, c, r, "wgmma");
}

/* The same cases through the Hopper kernel's first version (mw_kernel, MS_MLA_WGMMA=1; the default is the
 * warp-specialized mw2_kernel), still selectable */
void cc_run_mla_latent_wgmma1(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    setenv("MS_MLA_WGMMA", "1", 1);
    mla_latent_forced(env, c, r, "wgmma");
    unsetenv("MS_MLA_WGMMA");
}

/* The Hopper kernel's dequantizing FP8 path (MS_MLA_FP8_FOLD=0; the default folds the key scales into S and P,
 * with f16 products), still selectable: the FP8 cases again through it, with the same bounds */
void cc_run_mla_latent_wgmma_dequant(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    setenv("MS_MLA_FP8_FOLD", "0", 1);
    mla_latent_forced(env, c, r, "wgmma");
    unsetenv("MS_MLA_FP8_FOLD");
}

/* p[] = heads, fp8 rows, q/o dtype (as cc_run_mla_latent), sequences, context, checked sequences, dequant
 * (MS_MLA_FP8_FOLD=0), log2 of q_lat's amplitude (0: 1; the scale divided by it). R1 decode at serving shapes through the Hopper kernel: `sequences` decode rows over ~`context` positions each (even ones the
 * full context, odd ones a ragged tail), 64-token blocks. The cache holds at most 31 blocks (small: it
 * is built and uploaded once a case) that every sequence maps in its own order (block i of sequence s:
 * (7i + 3s) mod pool, 7 prime to the pool), a block recurring every `pool` positions of a long context, so host memory
 * stays small while the kernel reads the whole batch; the CPU reference runs on the first and the last `checked`
 * sequences only (its cost is a sequence's, ~1 s at 16k). Bounds: the mma kernels' (nmse = tol, max-abs as
 * cc_run_mla_latent's). */
void cc_run_mla_wgmma_batch(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t H = (int32_t)c->p[0], dc = 512, dr = 64, bs = 64, B = (int32_t)c->p[3], ctx = (int32_t)c->p[4];
    const int32_t nchk = (int32_t)c->p[5] < B ? (int32_t)c->p[5] : B;
    const ms_dtype_t kdt = c->p[1] ? MS_DT_F8E4M3 : MS_DT_BF16;
    const ms_dtype_t qdt = c->p[2] == 0 ? MS_DT_F32 : MS_DT_BF16, odt = c->p[2] == 1 ? MS_DT_BF16 : MS_DT_F32;
    const int32_t nbps = (ctx + bs - 1) / bs, pool0 = nbps + 5 < 31 ? nbps + 5 : 31, pool = pool0 % 7 ? pool0 : pool0 + 1;
    kr_seed(209);
    kern_attn_seq_t *seqs = calloc((size_t)B, sizeof *seqs);
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)B * nbps);
    for (int32_t s = 0; s < B; s++) {
        const int32_t len = s % 2 ? ctx - 1 - (s * 13) % 63 : ctx;
        seqs[s] = (kern_attn_seq_t){.q_off = s, .n_q = 1, .pos0 = len - 1, .blk_off = s * nbps};
        for (int32_t i = 0; i < nbps; i++) bt[s * nbps + i] = (int32_t)(((int64_t)i * 7 + s * 3) % pool);
    }
    kern_kv_t kv = cc_make_cache(pool, bs, dc, dr, kdt);
    const size_t cb = (size_t)pool * bs * kv.row_bytes, qe = ms_dtype_size(qdt), oe = ms_dtype_size(odt);
    const int64_t ld_pe_head = 192, ld_pe = H * ld_pe_head, nq = (int64_t)B * H * dc;
    const double qamp = ldexp(1.0, (int)c->p[7]); /* |q_lat| up to 2^p7 (the fold's f16 range), scale / 2^p7 */
    void *q = qdt == MS_DT_F32 ? (void *)kr_f32(nq, qamp) : (void *)kr_bf16(nq, qamp);
    bf16_t *qpe = kr_bf16((int64_t)B * ld_pe, 1.0);
    void *want = calloc((size_t)nq, oe), *got = calloc((size_t)nq, oe);
    void *dcache = cc_dev(env, kv.data, cb), *dq = cc_dev(env, q, (size_t)nq * qe),
         *dpe = cc_dev(env, qpe, sizeof(bf16_t) * (size_t)(B * ld_pe)),
         *ds = cc_dev(env, seqs, sizeof(kern_attn_seq_t) * (size_t)B),
         *db = cc_dev(env, bt, sizeof(int32_t) * (size_t)B * nbps), *dout = cc_dev(env, NULL, (size_t)nq * oe);
    kern_kv_t kd = kv;
    kd.data = dcache;
    const float scale = (float)(0.0722 / qamp);
    const int64_t pe_off = ld_pe_head - dr;
    setenv("MS_MLA_KERNEL", "wgmma", 1);
    if (c->p[6]) setenv("MS_MLA_FP8_FOLD", "0", 1);
    cc_ok(r, K->mla_latent(CX, dq, qdt, (bf16_t *)dpe + pe_off, ld_pe, ld_pe_head, &kd, db, ds, B, H, scale, dout, odt),
          "mla_latent");
    unsetenv("MS_MLA_KERNEL");
    unsetenv("MS_MLA_FP8_FOLD");
    cc_get(env, got, dout, (size_t)nq * oe);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    /* the first nchk sequences (rows 0 .. nchk - 1) and the last nchk: at batch 128 the Hopper kernel's CTAs (one an
     * SM) take the last ones as their second work item, after another item's tiles went through the same slots */
    const int32_t tail = B - nchk >= nchk ? B - nchk : nchk; /* the last nchk sequences, past the first ones */
    cc_ok(r, kern_cpu_ops.mla_latent(&ccx, q, qdt, qpe + pe_off, ld_pe, ld_pe_head, &kv, bt, seqs, nchk, H, scale, want,
                                     odt), "cpu mla_latent");
    if (tail < B)
        cc_ok(r, kern_cpu_ops.mla_latent(&ccx, q, qdt, qpe + pe_off, ld_pe, ld_pe_head, &kv, bt, seqs + tail, B - tail,
                                         H, scale, want, odt), "cpu mla_latent (last sequences)");
    for (int32_t part = 0; part < (tail < B ? 2 : 1); part++) {
        const int64_t off = (int64_t)(part ? tail : 0) * H * dc, nc = (int64_t)(part ? B - tail : nchk) * H * dc;
        const char *name = part ? "o_lat (last sequences)" : "o_lat";
        if (odt == MS_DT_F32) cc_cmp_f32(r, name, (float *)got + off, (float *)want + off, nc, c->tol, 3e-2);
        else cc_cmp_bf16(r, name, (bf16_t *)got + off, (bf16_t *)want + off, nc, c->tol, 4.0 / 256);
    }
    const uint32_t f = cc_fault_take(env);
    cc_check(r, f == 0 && cpu_fault == 0, "fault word 0x%x (cpu 0x%x) == 0 over %d sequences (%d checked)", f,
             cpu_fault, B, nchk);
    free(seqs), free(bt), free(kv.data), free(q), free(qpe), free(want), free(got);
}
