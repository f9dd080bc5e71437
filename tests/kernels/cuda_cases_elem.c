/* cuda_cases_elem.c — harness runners for the elementwise, layout,
 * normalization and GEMM ops (table and tolerances: test_cuda_vs_cpu.c). */
#include "cuda_cases.h"

#define K (env->gpu)
#define CX (env->cx)

void cc_run_embed(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], dim = (int32_t)c->p[2];
    const int64_t V = c->p[1];
    kr_seed(101);
    bf16_t *tab = cc_bf16_fast(V * dim, 2.0), *want = calloc((size_t)n * dim, 2), *got = malloc((size_t)n * dim * 2);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++) ids[i] = i == 0 ? (int32_t)(V - 1) : (int32_t)(kr_uniform() * V);
    void *dt = cc_dev(env, tab, (size_t)V * dim * 2), *di = cc_dev(env, ids, sizeof(int32_t) * (size_t)n);
    if (!c->contract) {
        void *dout = cc_dev(env, NULL, (size_t)n * dim * 2);
        cc_ok(r, K->embed(CX, di, n, dt, V, dim, dout), "embed");
        cc_get(env, got, dout, (size_t)n * dim * 2);
        cc_ok(r, kern_cpu_ops.embed(NULL, ids, n, tab, V, dim, want), "cpu embed");
        cc_cmp_bytes(r, "rows", got, want, (size_t)n * dim * 2);
    } else {
        /* row 1 is padding (-1: left as it was), row 3 is out of range: fault TOKEN and a zero row */
        ids[1] = -1, ids[3] = (int32_t)V;
        env->gpu->upload(CX, di, ids, sizeof(int32_t) * (size_t)n);
        bf16_t *init = cc_bf16_fast((int64_t)n * dim, 1.0);
        void *dout = cc_dev(env, init, (size_t)n * dim * 2);
        cc_ok(r, K->embed(CX, di, n, dt, V, dim, dout), "embed");
        cc_get(env, got, dout, (size_t)n * dim * 2);
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_TOKEN, "fault word 0x%x == KERN_FAULT_TOKEN", f);
        cc_cmp_bytes(r, "padded row untouched", got + dim, init + dim, (size_t)dim * 2);
        bf16_t *zero = calloc((size_t)dim, 2);
        cc_cmp_bytes(r, "faulted row zero", got + 3 * dim, zero, (size_t)dim * 2);
        cc_cmp_bytes(r, "good row", got + 2 * dim, tab + (int64_t)ids[2] * dim, (size_t)dim * 2);
        free(zero), free(init);
    }
    free(tab), free(want), free(got), free(ids);
}

void cc_run_add(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    kr_seed(102);
    bf16_t *a = kr_bf16(n, 3.0), *b = kr_bf16(n, 0.01), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *da = cc_dev(env, a, (size_t)n * 2), *db = cc_dev(env, b, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->add(CX, da, db, dy, n), "add");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.add(NULL, a, b, want, n);
    cc_cmp_bf16(r, "y", got, want, n, 0, 0);
    free(a), free(b), free(want), free(got);
}

void cc_run_cast(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    const int to_f32 = (int)c->p[1];
    kr_seed(103);
    float *f = kr_f32(n, 10.0);
    /* specials: NaN, ±inf, a subnormal, the largest finite, and exact bf16 ties */
    const uint32_t sp[] = {0x7fc00000u, 0xff800000u, 0x7f800000u, 0x00000001u, 0x7f7fffffu, 0x3f808000u, 0x3f818000u,
                           0xbf808000u, 0x80000000u};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0] && (int64_t)i < n; i++) memcpy(&f[i], &sp[i], 4);
    bf16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(f[i]);
    if (!to_f32) {
        bf16_t *got = malloc((size_t)n * 2), *want = malloc((size_t)n * 2);
        void *dx = cc_dev(env, f, (size_t)n * 4), *dy = cc_dev(env, NULL, (size_t)n * 2);
        cc_ok(r, K->cast(CX, dx, MS_DT_F32, dy, MS_DT_BF16, n), "cast");
        cc_get(env, got, dy, (size_t)n * 2);
        kern_cpu_ops.cast(NULL, f, MS_DT_F32, want, MS_DT_BF16, n);
        cc_cmp_bytes(r, "bf16 bits", got, want, (size_t)n * 2);
        free(got), free(want);
    } else {
        float *got = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
        void *dx = cc_dev(env, h, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 4);
        cc_ok(r, K->cast(CX, dx, MS_DT_BF16, dy, MS_DT_F32, n), "cast");
        cc_get(env, got, dy, (size_t)n * 4);
        kern_cpu_ops.cast(NULL, h, MS_DT_BF16, want, MS_DT_F32, n);
        cc_cmp_bytes(r, "f32 bits", got, want, (size_t)n * 4);
        free(got), free(want);
    }
    free(f), free(h);
}

void cc_run_gather_rows(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], S = (int32_t)c->p[1];
    const size_t rb = (size_t)c->p[2];
    kr_seed(104);
    unsigned char *src = malloc((size_t)S * rb), *init = malloc((size_t)n * rb), *want = malloc((size_t)n * rb),
                  *got = malloc((size_t)n * rb);
    for (size_t i = 0; i < (size_t)S * rb; i++) src[i] = (unsigned char)(kr_uniform() * 256);
    for (size_t i = 0; i < (size_t)n * rb; i++) init[i] = (unsigned char)(kr_uniform() * 256);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++) idx[i] = (int32_t)(kr_uniform() * S);
    if (c->contract) idx[2] = -1, idx[5] = -7;
    void *ds = cc_dev(env, src, (size_t)S * rb), *di = cc_dev(env, idx, sizeof(int32_t) * (size_t)n),
         *dd = cc_dev(env, init, (size_t)n * rb);
    cc_ok(r, K->gather_rows(CX, ds, di, n, rb, dd), "gather_rows");
    cc_get(env, got, dd, (size_t)n * rb);
    memcpy(want, init, (size_t)n * rb);
    for (int32_t i = 0; i < n; i++)
        if (idx[i] >= 0) memcpy(want + i * rb, src + (size_t)idx[i] * rb, rb); /* padding rows: left as they were */
    if (!c->contract) {
        unsigned char *cpu = malloc((size_t)n * rb);
        kern_cpu_ops.gather_rows(NULL, src, idx, n, rb, cpu);
        cc_cmp_bytes(r, "rows vs cpu", got, cpu, (size_t)n * rb);
        free(cpu);
    } else {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_SLOT, "fault word 0x%x == KERN_FAULT_SLOT", f);
    }
    cc_cmp_bytes(r, "rows", got, want, (size_t)n * rb);
    free(src), free(init), free(want), free(got), free(idx);
}

/* mtp_prep at p = {T rows, n entries, N, block size}: random drafts that agree with the samples for a random
 * prefix, entries near the end of their block table (chains cut), every 5th entry padding; all outputs
 * byte-identical to the CPU op. */
void cc_run_mtp_prep(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], n = (int32_t)c->p[1], N = (int32_t)c->p[2], bs = (int32_t)c->p[3];
    const int32_t W = T / (n > 0 ? n : 1), C = (N - 1) * n, nb = 8;
    kr_seed(109);
    int32_t *ids = malloc(4 * (size_t)T), *tok = malloc(4 * (size_t)T), *src = malloc(4 * (size_t)T);
    int32_t *blocks = malloc(4 * (size_t)n * nb);
    kern_draft_t *d = calloc((size_t)n, sizeof *d);
    for (int32_t i = 0; i < T; i++) {
        ids[i] = (int32_t)(kr_uniform() * 1000), tok[i] = (int32_t)(kr_uniform() * 1000);
        const double u = kr_uniform();
        src[i] = u < 0.1 ? -1 : u < 0.6 ? -2 - (int32_t)(kr_uniform() * T) : (int32_t)(kr_uniform() * T);
    }
    for (int32_t i = 0; i < n * nb; i++) blocks[i] = (int32_t)(kr_uniform() * 4096);
    for (int32_t s = 0; s < n; s++) {
        const int32_t r0 = s * W, nv = W - 1, agree = (int32_t)(kr_uniform() * (nv + 1));
        for (int32_t u = 0; u < agree; u++) ids[r0 + 1 + u] = tok[r0 + u]; /* sampled rows = fed rows here */
        const int32_t cover = nb * bs, pos = s % 3 == 0 ? cover - W - (int32_t)(kr_uniform() * N) : s * 7 % 50;
        d[s] = (kern_draft_t){.r0 = s % 5 == 4 ? -1 : r0, .j = r0, .n_verify = s % 4 == 1 ? 0 : nv, .last = nv,
                              .pos = pos, .blk_off = s * nb, .cover = cover};
    }
    const size_t oT = 4 * (size_t)T, on = 4 * (size_t)n, oC = 4 * (size_t)(C > 0 ? C : 1);
    int32_t *next = cc_dev(env, NULL, oT), *row = cc_dev(env, NULL, on), *acc = cc_dev(env, NULL, 2 * on);
    int32_t *cpos = cc_dev(env, NULL, oC), *cslot = cc_dev(env, NULL, oC), *cpad = cc_dev(env, NULL, on);
    kern_attn_seq_t *cseq = cc_dev(env, NULL, 8 * oC);
    kern_mtp_prep_t g = {.next_src = cc_dev(env, src, oT), .T = T, .seqs = cc_dev(env, d, sizeof *d * (size_t)n),
                         .n = n, .N = N, .block_size = bs, .ids = cc_dev(env, ids, oT), .tok = cc_dev(env, tok, oT),
                         .blocks = cc_dev(env, blocks, 4 * (size_t)n * nb), .next = next, .row = row, .acc = acc,
                         .chain_pos = cpos, .chain_slot = cslot, .chain_seqs = cseq, .chain_pad = cpad};
    cc_ok(r, K->mtp_prep(CX, &g), "mtp_prep");
    const size_t total = oT + on + 2 * on + 2 * oC + 8 * oC + on;
    char *got = calloc(1, total), *want = calloc(1, total);
    size_t o = 0;
    cc_get(env, got + o, next, oT), o += oT;
    cc_get(env, got + o, row, on), o += on;
    cc_get(env, got + o, acc, 2 * on), o += 2 * on;
    cc_get(env, got + o, cpos, oC), o += oC;
    cc_get(env, got + o, cslot, oC), o += oC;
    cc_get(env, got + o, cseq, 8 * oC), o += 8 * oC;
    cc_get(env, got + o, cpad, on);
    o = 0;
    kern_mtp_prep_t h = {.next_src = src, .T = T, .seqs = d, .n = n, .N = N, .block_size = bs, .ids = ids, .tok = tok,
                         .blocks = blocks};
    h.next = (int32_t *)(want + o), o += oT;
    h.row = (int32_t *)(want + o), o += on;
    h.acc = (int32_t *)(want + o), o += 2 * on;
    h.chain_pos = (int32_t *)(want + o), o += oC;
    h.chain_slot = (int32_t *)(want + o), o += oC;
    h.chain_seqs = (kern_attn_seq_t *)(want + o), o += 8 * oC;
    h.chain_pad = (int32_t *)(want + o);
    cc_ok(r, kern_cpu_ops.mtp_prep(NULL, &h), "cpu mtp_prep");
    /* the chained arrays are N-1 deep: with N 1 only their placeholder byte ranges exist on both sides */
    if (C == 0) memset(got + oT + 3 * on, 0, 10 * oC), memset(want + oT + 3 * on, 0, 10 * oC);
    cc_cmp_bytes(r, "next, row, acc, chains vs cpu", got, want, total);
    free(ids), free(tok), free(src), free(blocks), free(d), free(got), free(want);
}

void cc_run_silu_mul(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    kr_seed(105);
    bf16_t *g = kr_bf16(n, 4.0), *u = kr_bf16(n, 1.0), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *dg = cc_dev(env, g, (size_t)n * 2), *du = cc_dev(env, u, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->silu_mul(CX, dg, du, dy, n), "silu_mul");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.silu_mul(NULL, g, u, want, n);
    cc_cmp_bf16(r, "out", got, want, n, 0, 0);
    free(g), free(u), free(want), free(got);
}

void cc_run_rmsnorm(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    /* p[2]: x's row stride past dim (a view inside a wider row, e.g. kv_a's 512 in q_a|kv_a's 2112) */
    const int32_t rows = (int32_t)c->p[0], dim = (int32_t)c->p[1];
    const int64_t n = (int64_t)rows * dim, ldx = dim + c->p[2];
    kr_seed(106);
    bf16_t *x = kr_bf16(rows * ldx, 1.0), *w = kr_bf16(dim, 1.0), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *dx = cc_dev(env, x, (size_t)(rows * ldx) * 2), *dw = cc_dev(env, w, (size_t)dim * 2);
    void *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->rmsnorm(CX, dx, ldx, dw, dy, dim, rows, dim, 1e-6f), "rmsnorm");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.rmsnorm(NULL, x, ldx, w, want, dim, rows, dim, 1e-6f);
    double worst = 0;
    int64_t ndiff = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = kr_b(got[i]), b = kr_b(want[i]);
        ndiff += a != b;
        worst = fmax(worst, fabs(a - b) / (fabs(b) * c->tol + 1e-30));
    }
    char what[128];
    snprintf(what, sizeof what, "per element |d| <= %.4g|ref|, %lld/%lld differ", c->tol, (long long)ndiff,
             (long long)n);
    cc_check(r, worst <= 1.0, "%s (worst %.3g x tol)", what, worst);
    free(x), free(w), free(want), free(got);
}

void cc_run_gemm(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t m = (int32_t)c->p[0], N = (int32_t)c->p[1], Kd = (int32_t)c->p[2];
    const ms_dtype_t xdt = (ms_dtype_t)c->p[3], wdt = (ms_dtype_t)c->p[4], ydt = (ms_dtype_t)c->p[5];
    const int64_t ldx = Kd + c->p[6], ldy = N;
    kr_seed(107);
    const size_t xs = ms_dtype_size(xdt), ys = ms_dtype_size(ydt), ws = ms_dtype_size(wdt);
    void *x = xdt == MS_DT_BF16 ? (void *)kr_bf16((int64_t)m * ldx, 1.0) : (void *)kr_f32((int64_t)m * ldx, 1.0);
    void *w;
    float *sc = NULL;
    const int64_t nsc = (int64_t)kern_fp8_blocks(N) * kern_fp8_blocks(Kd);
    if (wdt == MS_DT_F8E4M3) {
        uint8_t *w8 = malloc((size_t)N * Kd);
        for (int64_t i = 0; i < (int64_t)N * Kd; i++) w8[i] = kr_fp8();
        sc = malloc(sizeof(float) * (size_t)nsc);
        for (int64_t i = 0; i < nsc; i++) sc[i] = (float)(0.002 * (0.5 + kr_uniform()));
        w = w8;
    } else if (wdt == MS_DT_BF16) {
        w = (int64_t)N * Kd > (1 << 24) ? cc_bf16_fast((int64_t)N * Kd, 0.05) : kr_bf16((int64_t)N * Kd, 0.05);
    } else {
        w = kr_f32((int64_t)N * Kd, 0.05);
    }
    void *want = calloc((size_t)m * ldy, ys), *got = calloc((size_t)m * ldy, ys);
    void *dx = cc_dev(env, x, (size_t)m * ldx * xs), *dw = cc_dev(env, w, (size_t)N * Kd * ws),
         *dsc = sc ? cc_dev(env, sc, sizeof(float) * (size_t)nsc) : NULL, *dy = cc_dev(env, NULL, (size_t)m * ldy * ys);
    kern_mat_t wd = {dw, dsc, wdt, N, Kd}, wh = {w, sc, wdt, N, Kd};
    cc_ok(r, kern_gemm_plain(K, CX, dx, xdt, ldx, &wd, dy, ydt, ldy, m), "gemm");
    cc_get(env, got, dy, (size_t)m * ldy * ys);
    cc_ok(r, kern_gemm_plain(&kern_cpu_ops, NULL, x, xdt, ldx, &wh, want, ydt, ldy, m), "cpu gemm");
    /* f32 out: two fp32 sums of k terms in different orders drift apart ~sqrt(k), so the max-abs bound
     * is 1e-5 of max|ref| up to k = 4096 and grows with sqrt(k) past it (2e-5 at o_proj's 16384) */
    const double f32_mx = 1e-5 * fmax(1.0, sqrt(Kd / 4096.0));
    if (ydt == MS_DT_BF16) cc_cmp_bf16(r, "y", got, want, (int64_t)m * ldy, c->tol, 2.0 / 256);
    else cc_cmp_f32(r, "y", got, want, (int64_t)m * ldy, c->tol, f32_mx);
    free(x), free(w), free(sc), free(want), free(got);
}

/* The descriptor modes of the gemm op. p[] = m, n (outputs), k, batch, mode, y dtype:
 *   mode 0 BF16 W, batched with row and batch strides; 1 BF16 W stored transposed (ldw > n);
 *   2 BF16 W with ldw > k; 3 SiLU·mul over a fused gate|up BF16 W; 4 SiLU·mul over an FP8 W (dequant);
 *   5 FP8×FP8 (x from the CPU's act_quant, W block-scaled fp8, stacked per batch); 6 FP8 W dequant, batched;
 *   7 F32 x, BF16 W, batched (absorbed MLA's att = o_lat·W_UVᵀ over fp32 latents) with odd strides (the
 *   generic tiled kernel); 8 the same with 16-byte aligned strides (the vector-load kernel, as the engine's).
 * Every operand sits in a larger buffer (gaps between rows and batches), y is zero-initialized on both
 * sides and compared whole (gaps must stay zero). */
void cc_run_gemm_ex(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t m = (int32_t)c->p[0], n = (int32_t)c->p[1], Kd = (int32_t)c->p[2], B = (int32_t)c->p[3];
    const int mode = (int)c->p[4];
    const ms_dtype_t ydt = (ms_dtype_t)c->p[5];
    const int silu = mode == 3 || mode == 4, fp8w = mode >= 4 && mode <= 6, fp8x = mode == 5, trans = mode == 1;
    const int f32x = mode == 7 || mode == 8, al = mode == 8;
    const int32_t rows = silu ? 2 * n : n; /* W rows */
    kr_seed(108);
    const int64_t ldx = Kd + (al ? 4 : 3), bsx = (int64_t)m * ldx + (al ? 4 : 5);
    const int64_t ldw = trans ? rows + 5 : mode == 2 || fp8w ? Kd + (fp8w ? 130 : 9) : Kd;
    const int64_t wmat = trans ? (int64_t)Kd * ldw : (int64_t)rows * ldw; /* one stored matrix */
    const int64_t bsw = B > 1 ? wmat + (fp8w ? 0 : al ? 8 : 11) : 0;                /* fp8: stacked, as the op requires */
    const int64_t ldy = n + 2, bsy = (int64_t)m * ldy + 7;
    const size_t xe = fp8x ? 1 : f32x ? 4 : 2, we = fp8w ? 1 : 2, ye = ms_dtype_size(ydt);
    const int64_t nx = (int64_t)(B - 1) * bsx + m * ldx, nw = (int64_t)(B - 1) * bsw + wmat,
                  ny = (int64_t)(B - 1) * bsy + m * ldy;
    /* x */
    bf16_t *xb = f32x ? NULL : kr_bf16(nx, 1.0);
    float *xf = f32x ? kr_f32(nx, 1.0) : NULL;
    void *x = f32x ? (void *)xf : (void *)xb;
    uint8_t *xq = NULL;
    float *xs = NULL;
    const int64_t ld_xs = kern_fp8_blocks(Kd), bs_xs = (int64_t)m * ld_xs + 1;
    if (fp8x) { /* quantize each batch's rows with the CPU op (what the GPU op computes bit for bit) */
        xq = calloc((size_t)nx, 1), xs = calloc((size_t)((B - 1) * bs_xs + m * ld_xs), 4);
        for (int32_t b = 0; b < B; b++)
            kern_cpu_ops.act_quant(NULL, xb + b * bsx, ldx, m, Kd, xq + b * bsx, ldx, xs + b * bs_xs, ld_xs);
        x = xq;
    }
    /* W */
    void *w;
    float *sc = NULL;
    const int64_t sgrid = (int64_t)kern_fp8_blocks(rows) * kern_fp8_blocks((int32_t)ldw);
    if (fp8w) {
        uint8_t *w8 = malloc((size_t)nw);
        for (int64_t i = 0; i < nw; i++) w8[i] = kr_fp8();
        sc = malloc(sizeof(float) * (size_t)(sgrid * B));
        for (int64_t i = 0; i < sgrid * B; i++) sc[i] = (float)(0.0005 * (0.5 + kr_uniform()));
        w = w8;
    } else {
        w = nw > (1 << 24) ? cc_bf16_fast(nw, 0.05) : kr_bf16(nw, 0.05);
    }
    const size_t nxs = fp8x ? sizeof(float) * (size_t)((B - 1) * bs_xs + m * ld_xs) : 0;
    void *dx = cc_dev(env, x, (size_t)nx * xe), *dw = cc_dev(env, w, (size_t)nw * we),
         *dsc = sc ? cc_dev(env, sc, sizeof(float) * (size_t)(sgrid * B)) : NULL,
         *dxs = fp8x ? cc_dev(env, xs, nxs) : NULL, *dy = cc_dev(env, NULL, (size_t)ny * ye);
    void *want = calloc((size_t)ny, ye), *got = calloc((size_t)ny, ye);
    const ms_dtype_t wdt = fp8w ? MS_DT_F8E4M3 : MS_DT_BF16, xdt = fp8x ? MS_DT_F8E4M3 : f32x ? MS_DT_F32 : MS_DT_BF16;
    kern_mat_t wd = {dw, dsc, wdt, rows, Kd}, wh = {w, sc, wdt, rows, Kd};
    kern_gemm_t g = {.x = dx, .x_scale = dxs, .w = &wd, .y = dy, .xdt = xdt, .ydt = ydt, .m = m, .batch = B,
                     .ldx = ldx, .bsx = bsx, .ld_xs = ld_xs, .bs_xs = bs_xs, .ldw = ldw, .bsw = bsw, .ldy = ldy,
                     .bsy = bsy, .w_trans = trans, .epi = silu ? KERN_EPI_SILU_MUL : KERN_EPI_NONE};
    cc_ok(r, K->gemm(CX, &g), "gemm");
    cc_get(env, got, dy, (size_t)ny * ye);
    g.x = x, g.x_scale = xs, g.w = &wh, g.y = want;
    cc_ok(r, kern_cpu_ops.gemm(NULL, &g), "cpu gemm");
    /* tol = nmse; max-abs 2 bf16 ulps of max|ref| (4 after silu_mul: either input may round the other way) */
    if (ydt == MS_DT_BF16) cc_cmp_bf16(r, "y", got, want, ny, c->tol, (silu ? 4.0 : 2.0) / 256);
    else cc_cmp_f32(r, "y", got, want, ny, c->tol, 1e-5);
    free(xb), free(xf), free(xq), free(xs), free(w), free(sc), free(want), free(got);
}

/* p[] = rows, cols, extra ldx: codes and scales bit-identical (row 1 all zeros: the 1e-4 amax floor) */
void cc_run_act_quant(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], cols = (int32_t)c->p[1];
    const int64_t ldx = cols + c->p[2], ldq = cols + 5, lds = kern_fp8_blocks(cols) + 1;
    kr_seed(109);
    bf16_t *x = kr_bf16(rows * ldx, 2.0);
    if (rows > 1) memset(x + ldx, 0, sizeof(bf16_t) * (size_t)cols);
    if (rows > 2) x[2 * ldx + 3] = f32_to_bf16(3000.0f); /* one outlier sets a group's scale */
    const size_t nq = (size_t)rows * ldq, ns = sizeof(float) * (size_t)rows * lds;
    uint8_t *qg = calloc(nq, 1), *qc = calloc(nq, 1);
    float *sg = calloc(ns, 1), *scp = calloc(ns, 1);
    void *dx = cc_dev(env, x, sizeof(bf16_t) * (size_t)(rows * ldx)), *dq = cc_dev(env, NULL, nq),
         *ds = cc_dev(env, NULL, ns);
    cc_ok(r, K->act_quant(CX, dx, ldx, rows, cols, dq, ldq, ds, lds), "act_quant");
    cc_get(env, qg, dq, nq), cc_get(env, sg, ds, ns);
    cc_ok(r, kern_cpu_ops.act_quant(NULL, x, ldx, rows, cols, qc, ldq, scp, lds), "cpu act_quant");
    cc_cmp_bytes(r, "e4m3 codes", qg, qc, nq);
    cc_cmp_bytes(r, "scales", sg, scp, ns);
    free(x), free(qg), free(qc), free(sg), free(scp);
}

/* p[] = rows, dim: x bit-identical to the CPU; y bit-identical to this backend's add + rmsnorm and within
 * rmsnorm's tolerance (tol, per element relative) of the CPU's */
void cc_run_add_rmsnorm(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], dim = (int32_t)c->p[1];
    const int64_t n = (int64_t)rows * dim;
    const size_t nb = sizeof(bf16_t) * (size_t)n;
    kr_seed(110);
    bf16_t *x = kr_bf16(n, 1.0), *res = kr_bf16(n, 0.3), *w = kr_bf16(dim, 1.0);
    bf16_t *xg = malloc(nb), *yg = malloc(nb), *x2 = malloc(nb), *y2 = malloc(nb), *yc = malloc(nb);
    void *dx = cc_dev(env, x, nb), *dr = cc_dev(env, res, nb), *dw = cc_dev(env, w, (size_t)dim * 2),
         *dy = cc_dev(env, NULL, nb), *dx2 = cc_dev(env, x, nb), *dy2 = cc_dev(env, NULL, nb);
    cc_ok(r, K->add_rmsnorm(CX, dx, dr, dw, dy, rows, dim, 1e-6f), "add_rmsnorm");
    cc_ok(r, K->add(CX, dx2, dr, dx2, n), "add");
    cc_ok(r, K->rmsnorm(CX, dx2, dim, dw, dy2, dim, rows, dim, 1e-6f), "rmsnorm");
    cc_get(env, xg, dx, nb), cc_get(env, yg, dy, nb), cc_get(env, x2, dx2, nb), cc_get(env, y2, dy2, nb);
    cc_ok(r, kern_cpu_ops.add_rmsnorm(NULL, x, res, w, yc, rows, dim, 1e-6f), "cpu add_rmsnorm");
    cc_cmp_bytes(r, "x vs cpu", xg, x, nb);
    cc_cmp_bytes(r, "y vs this backend's add + rmsnorm", yg, y2, nb);
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(kr_b(yg[i]) - kr_b(yc[i])) / (fabs(kr_b(yc[i])) * c->tol + 1e-30));
    cc_check(r, worst <= 1.0, "y vs cpu: per element |d| <= %.4g|ref| (worst %.3g x tol)", c->tol, worst);
    free(x), free(res), free(w), free(xg), free(yg), free(x2), free(y2), free(yc);
}

/* p[] = rows, dim, add (1: add_rmsnorm's form; 0: rmsnorm over rows of ldx = dim + p[3], in place), code
 * stride pad p[4]: y (and x) bit-identical to this backend's norm op, codes and scales bit-identical to this
 * backend's act_quant of that y and to the CPU's act_quant of the same y; y within rmsnorm's tolerance (tol)
 * of the CPU's */
void cc_run_rmsnorm_quant(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], dim = (int32_t)c->p[1], add = (int32_t)c->p[2];
    const int64_t ldx = add ? dim : dim + c->p[3], ldq = dim + c->p[4], lds = kern_fp8_blocks(dim) + 1;
    const int64_t n = (int64_t)rows * ldx;
    const size_t nb = sizeof(bf16_t) * (size_t)n, nq = (size_t)(rows * ldq), ns = sizeof(float) * (size_t)(rows * lds);
    kr_seed(111);
    bf16_t *x = kr_bf16(n, 1.0), *res = kr_bf16((int64_t)rows * dim, 0.3), *w = kr_bf16(dim, 1.0);
    if (rows > 1) memset(x + ldx, 0, sizeof(bf16_t) * (size_t)dim); /* a zero row: the amax floor */
    if (rows > 2) x[2 * ldx + 5] = f32_to_bf16(500.0f);             /* an outlier sets one group's scale */
    bf16_t *xg = malloc(nb), *yg = malloc(nb), *x2 = malloc(nb), *y2 = malloc(nb), *yc = malloc(nb), *xc = malloc(nb);
    uint8_t *qg = calloc(nq, 1), *q2 = calloc(nq, 1), *qc = calloc(nq, 1);
    float *sg = calloc(ns, 1), *s2 = calloc(ns, 1), *sc = calloc(ns, 1);
    void *dx = cc_dev(env, x, nb), *dr = cc_dev(env, res, (size_t)rows * dim * 2), *dw = cc_dev(env, w, (size_t)dim * 2),
         *dy = cc_dev(env, NULL, nb), *dx2 = cc_dev(env, x, nb), *dy2 = cc_dev(env, NULL, nb);
    void *dq = cc_dev(env, NULL, nq), *ds = cc_dev(env, NULL, ns), *dq2 = cc_dev(env, NULL, nq),
         *ds2 = cc_dev(env, NULL, ns);
    /* the fused op, and the sequence it replaces on the same backend */
    if (add) {
        cc_ok(r, K->rmsnorm_quant(CX, dx, dim, dr, dw, dy, dim, rows, dim, 1e-6f, dq, ldq, ds, lds), "rmsnorm_quant");
        cc_ok(r, K->add_rmsnorm(CX, dx2, dr, dw, dy2, rows, dim, 1e-6f), "add_rmsnorm");
    } else {
        dy = dx, dy2 = dx2; /* in place, as the q_a norm */
        cc_ok(r, K->rmsnorm_quant(CX, dx, ldx, NULL, dw, dy, ldx, rows, dim, 1e-6f, dq, ldq, ds, lds), "rmsnorm_quant");
        cc_ok(r, K->rmsnorm(CX, dx2, ldx, dw, dy2, ldx, rows, dim, 1e-6f), "rmsnorm");
    }
    cc_ok(r, K->act_quant(CX, dy2, ldx, rows, dim, dq2, ldq, ds2, lds), "act_quant");
    cc_get(env, xg, dx, nb), cc_get(env, yg, dy, nb), cc_get(env, x2, dx2, nb), cc_get(env, y2, dy2, nb);
    cc_get(env, qg, dq, nq), cc_get(env, sg, ds, ns), cc_get(env, q2, dq2, nq), cc_get(env, s2, ds2, ns);
    cc_cmp_bytes(r, "x vs this backend's norm", xg, x2, nb);
    cc_cmp_bytes(r, "y vs this backend's norm", yg, y2, nb);
    cc_cmp_bytes(r, "codes vs this backend's norm + act_quant", qg, q2, nq);
    cc_cmp_bytes(r, "scales vs this backend's norm + act_quant", sg, s2, ns);
    /* the CPU's act_quant of the y this backend produced: the quantization rule itself, bit for bit */
    cc_ok(r, kern_cpu_ops.act_quant(NULL, yg, ldx, rows, dim, qc, ldq, sc, lds), "cpu act_quant");
    cc_cmp_bytes(r, "codes vs cpu act_quant of y", qg, qc, nq);
    cc_cmp_bytes(r, "scales vs cpu act_quant of y", sg, sc, ns);
    /* and y against the CPU's fused op (the norm's own tolerance: fp32 vs double statistics) */
    memcpy(xc, x, nb);
    bf16_t *yo = add ? yc : xc;
    cc_ok(r, kern_cpu_ops.rmsnorm_quant(NULL, xc, ldx, add ? res : NULL, w, yo, ldx, rows, dim, 1e-6f, qc, ldq, sc, lds),
          "cpu rmsnorm_quant");
    double worst = 0;
    for (int32_t i = 0; i < rows; i++)
        for (int32_t j = 0; j < dim; j++) {
            const int64_t e = (int64_t)i * ldx + j;
            worst = fmax(worst, fabs(kr_b(yg[e]) - kr_b(yo[e])) / (fabs(kr_b(yo[e])) * c->tol + 1e-30));
        }
    cc_check(r, worst <= 1.0, "y vs cpu: per element |d| <= %.4g|ref| (worst %.3g x tol)", c->tol, worst);
    free(x), free(res), free(w), free(xg), free(yg), free(x2), free(y2), free(yc), free(xc);
    free(qg), free(q2), free(qc), free(sg), free(s2), free(sc);
}
