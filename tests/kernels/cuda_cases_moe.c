/* cuda_cases_moe.c — harness runners for the MoE dispatch ops (plan, scatter,
 * experts, combine) over placement tables with replicas and slot records
 * (table and tolerances: test_cuda_vs_cpu.c). */
#include "cuda_cases.h"

#define K (env->gpu)
#define CX (env->cx)

/* A placement of E experts on n_slots >= E slots: expert e at slot e, the first n_slots - E experts with a
 * second replica at slot E + e. */
static void cc_make_place(int32_t E, int32_t n_slots, int32_t **l2p, int32_t **nrep)
{
    *l2p = malloc(sizeof(int32_t) * 2 * (size_t)E), *nrep = malloc(sizeof(int32_t) * (size_t)E);
    for (int32_t e = 0; e < E; e++) {
        (*l2p)[2 * e] = e, (*l2p)[2 * e + 1] = e < n_slots - E ? E + e : -1;
        (*nrep)[e] = e < n_slots - E ? 2 : 1;
    }
}

/* router-like ids: distinct per token, a few padded tokens (-1), skewed to low experts */
static int32_t *cc_make_idx(int32_t T, int32_t Kk, int32_t E)
{
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)T * Kk);
    for (int32_t t = 0; t < T; t++)
        for (int32_t k = 0; k < Kk; k++) {
            int32_t e, dup;
            do {
                e = (int32_t)(kr_uniform() * kr_uniform() * E);
                dup = 0;
                for (int32_t j = 0; j < k; j++) dup |= idx[t * Kk + j] == e;
            } while (dup);
            idx[t * Kk + k] = t % 7 == 3 ? -1 : e;
        }
    return idx;
}

/* p[] = T, K, E, n_slots; contract (shared with the CPU): ids E and -5 and an expert with n_rep 0 are SLOT
 * faults. Everything bit-identical: rank_in_slot is pair order within a slot on both backends. */
void cc_run_moe_plan(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], Kk = (int32_t)c->p[1], E = (int32_t)c->p[2], S = (int32_t)c->p[3];
    const int64_t P = (int64_t)T * Kk;
    kr_seed(301);
    int32_t *l2p, *nrep, *idx = cc_make_idx(T, Kk, E);
    cc_make_place(E, S, &l2p, &nrep);
    if (c->contract) idx[1] = E, idx[Kk + 2] = -5, nrep[idx[2 * Kk]] = 0;
    int64_t *load0 = malloc(sizeof(int64_t) * (size_t)E);
    for (int32_t e = 0; e < E; e++) load0[e] = e * 1000003LL; /* accumulates onto what is there */
    const size_t pb = sizeof(int32_t) * (size_t)P;
    int32_t *sg = malloc(pb), *rg = malloc(pb), *cg = malloc(sizeof(int32_t) * (size_t)S);
    int32_t *sc = malloc(pb), *rc = malloc(pb), *ccn = malloc(sizeof(int32_t) * (size_t)S);
    int64_t *lg = malloc(sizeof(int64_t) * (size_t)E), *lc = malloc(sizeof(int64_t) * (size_t)E);
    memcpy(lc, load0, sizeof(int64_t) * (size_t)E);
    void *di = cc_dev(env, idx, pb), *dl2p = cc_dev(env, l2p, sizeof(int32_t) * 2 * (size_t)E),
         *dn = cc_dev(env, nrep, sizeof(int32_t) * (size_t)E), *ds = cc_dev(env, NULL, pb),
         *dr = cc_dev(env, NULL, pb), *dc = cc_dev(env, NULL, sizeof(int32_t) * (size_t)S),
         *dl = cc_dev(env, load0, sizeof(int64_t) * (size_t)E);
    kern_moe_place_t pd = {dl2p, dn, E, 2, S, S}, ph = {l2p, nrep, E, 2, S, S};
    cc_ok(r, K->moe_plan(CX, di, T, Kk, &pd, ds, dr, dc, dl), "moe_plan");
    cc_get(env, sg, ds, pb), cc_get(env, rg, dr, pb), cc_get(env, cg, dc, sizeof(int32_t) * (size_t)S);
    cc_get(env, lg, dl, sizeof(int64_t) * (size_t)E);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.moe_plan(&ccx, idx, T, Kk, &ph, sc, rc, ccn, lc), "cpu moe_plan");
    cc_cmp_bytes(r, "slot_of_pair", sg, sc, pb);
    cc_cmp_bytes(r, "rank_in_slot", rg, rc, pb);
    cc_cmp_bytes(r, "slot_counts", cg, ccn, sizeof(int32_t) * (size_t)S);
    cc_cmp_bytes(r, "load", lg, lc, sizeof(int64_t) * (size_t)E);
    if (c->contract) {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_SLOT && cpu_fault == KERN_FAULT_SLOT, "fault word 0x%x (cpu 0x%x) == SLOT", f,
                 cpu_fault);
    }
    free(l2p), free(nrep), free(idx), free(load0), free(sg), free(rg), free(cg), free(sc), free(rc), free(ccn);
    free(lg), free(lc);
}

/* p[] = T, K, E, n_slots, D, slot0, n_local, cap: the CPU's plan as input; recv (whole, rows past counts
 * untouched), recv_count and row_of_pair bit-identical. A cap below a slot's count is a CAPACITY fault
 * on both backends (contract 2). */
void cc_run_moe_scatter(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], Kk = (int32_t)c->p[1], E = (int32_t)c->p[2], S = (int32_t)c->p[3],
                  D = (int32_t)c->p[4], slot0 = (int32_t)c->p[5], nl = (int32_t)c->p[6], cap = (int32_t)c->p[7];
    const int64_t P = (int64_t)T * Kk, nr = (int64_t)nl * cap * D;
    kr_seed(302);
    int32_t *l2p, *nrep, *idx = cc_make_idx(T, Kk, E);
    cc_make_place(E, S, &l2p, &nrep);
    const size_t pb = sizeof(int32_t) * (size_t)P;
    int32_t *sop = malloc(pb), *ris = malloc(pb), *cnt = malloc(sizeof(int32_t) * (size_t)S);
    kern_moe_place_t ph = {l2p, nrep, E, 2, S, S};
    cc_ok(r, kern_cpu_ops.moe_plan(NULL, idx, T, Kk, &ph, sop, ris, cnt, NULL), "cpu moe_plan");
    bf16_t *x = kr_bf16((int64_t)T * D, 1.0), *init = cc_bf16_fast(nr, 1.0);
    bf16_t *rg = malloc(sizeof(bf16_t) * (size_t)nr), *rcp = malloc(sizeof(bf16_t) * (size_t)nr);
    int32_t *cg = malloc(sizeof(int32_t) * (size_t)nl), *ccp = malloc(sizeof(int32_t) * (size_t)nl);
    int32_t *og = malloc(pb), *oc = malloc(pb);
    void *dx = cc_dev(env, x, sizeof(bf16_t) * (size_t)T * D), *dsop = cc_dev(env, sop, pb),
         *dris = cc_dev(env, ris, pb), *dcnt = cc_dev(env, cnt, sizeof(int32_t) * (size_t)S),
         *drecv = cc_dev(env, init, sizeof(bf16_t) * (size_t)nr), *drc = cc_dev(env, NULL, sizeof(int32_t) * (size_t)nl),
         *drop = cc_dev(env, NULL, pb);
    cc_ok(r, K->moe_scatter(CX, dx, T, Kk, D, dsop, dris, dcnt, slot0, nl, cap, drecv, drc, drop), "moe_scatter");
    cc_get(env, rg, drecv, sizeof(bf16_t) * (size_t)nr), cc_get(env, cg, drc, sizeof(int32_t) * (size_t)nl);
    cc_get(env, og, drop, pb);
    memcpy(rcp, init, sizeof(bf16_t) * (size_t)nr);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.moe_scatter(&ccx, x, T, Kk, D, sop, ris, cnt, slot0, nl, cap, rcp, ccp, oc), "cpu scatter");
    cc_cmp_bytes(r, "recv", rg, rcp, sizeof(bf16_t) * (size_t)nr);
    cc_cmp_bytes(r, "recv_count", cg, ccp, sizeof(int32_t) * (size_t)nl);
    cc_cmp_bytes(r, "row_of_pair", og, oc, pb);
    uint32_t f = cc_fault_take(env);
    cc_check(r, f == cpu_fault && (c->contract ? f == KERN_FAULT_CAPACITY : f == 0), "fault word 0x%x (cpu 0x%x)", f,
             cpu_fault);
    free(l2p), free(nrep), free(idx), free(sop), free(ris), free(cnt), free(x), free(init), free(rg), free(rcp);
    free(cg), free(ccp), free(og), free(oc);
}

/* p[] = T, K, E, hidden: bit-identical (fp32 products and sums in ascending expert id, one rounding) */
void cc_run_moe_combine(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], Kk = (int32_t)c->p[1], E = (int32_t)c->p[2], Hd = (int32_t)c->p[3];
    const int64_t P = (int64_t)T * Kk, R = P + 9;
    kr_seed(303);
    int32_t *idx = cc_make_idx(T, Kk, E), *rop = malloc(sizeof(int32_t) * (size_t)P);
    for (int64_t p = 0; p < P; p++) rop[p] = idx[p] < 0 || p % 11 == 5 ? -1 : (int32_t)((p * 37 + 3) % R);
    float *w = kr_f32(P, 0.3);
    bf16_t *rows = kr_bf16(R * Hd, 1.0), *og = malloc(sizeof(bf16_t) * (size_t)T * Hd),
           *oc = malloc(sizeof(bf16_t) * (size_t)T * Hd);
    void *drows = cc_dev(env, rows, sizeof(bf16_t) * (size_t)(R * Hd)), *drop = cc_dev(env, rop, sizeof(int32_t) * (size_t)P),
         *di = cc_dev(env, idx, sizeof(int32_t) * (size_t)P), *dw = cc_dev(env, w, sizeof(float) * (size_t)P),
         *dout = cc_dev(env, NULL, sizeof(bf16_t) * (size_t)T * Hd);
    cc_ok(r, K->moe_combine(CX, drows, drop, di, dw, T, Kk, Hd, dout), "moe_combine");
    cc_get(env, og, dout, sizeof(bf16_t) * (size_t)T * Hd);
    cc_ok(r, kern_cpu_ops.moe_combine(NULL, rows, rop, idx, w, T, Kk, Hd, oc), "cpu moe_combine");
    cc_cmp_bytes(r, "out", og, oc, sizeof(bf16_t) * (size_t)T * Hd);
    free(idx), free(rop), free(w), free(rows), free(og), free(oc);
}

/* p[] = T, K, E, hidden, in place (out = add): bit-identical to the CPU's moe_combine_add and to this
 * backend's moe_combine then add */
void cc_run_moe_combine_add(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t T = (int32_t)c->p[0], Kk = (int32_t)c->p[1], E = (int32_t)c->p[2], Hd = (int32_t)c->p[3];
    const int inplace = (int)c->p[4];
    const int64_t P = (int64_t)T * Kk, R = P + 9, n = (int64_t)T * Hd;
    const size_t ob = sizeof(bf16_t) * (size_t)n;
    kr_seed(305);
    int32_t *idx = cc_make_idx(T, Kk, E), *rop = malloc(sizeof(int32_t) * (size_t)P);
    for (int64_t p = 0; p < P; p++) rop[p] = idx[p] < 0 || p % 11 == 5 ? -1 : (int32_t)((p * 37 + 3) % R);
    float *w = kr_f32(P, 0.3);
    bf16_t *rows = kr_bf16(R * Hd, 1.0), *sh = kr_bf16(n, 0.5), *og = malloc(ob), *o2 = malloc(ob), *oc = malloc(ob);
    void *drows = cc_dev(env, rows, sizeof(bf16_t) * (size_t)(R * Hd)), *drop = cc_dev(env, rop, sizeof(int32_t) * (size_t)P),
         *di = cc_dev(env, idx, sizeof(int32_t) * (size_t)P), *dw = cc_dev(env, w, sizeof(float) * (size_t)P),
         *dsh = cc_dev(env, sh, ob), *dout = inplace ? dsh : cc_dev(env, NULL, ob), *dr = cc_dev(env, NULL, ob),
         *dsh2 = cc_dev(env, sh, ob);
    cc_ok(r, K->moe_combine_add(CX, drows, drop, di, dw, T, Kk, Hd, dsh, dout), "moe_combine_add");
    cc_ok(r, K->moe_combine(CX, drows, drop, di, dw, T, Kk, Hd, dr), "moe_combine");
    cc_ok(r, K->add(CX, dr, dsh2, dr, n), "add");
    cc_get(env, og, dout, ob), cc_get(env, o2, dr, ob);
    cc_ok(r, kern_cpu_ops.moe_combine_add(NULL, rows, rop, idx, w, T, Kk, Hd, sh, oc), "cpu moe_combine_add");
    cc_cmp_bytes(r, "out vs cpu", og, oc, ob);
    cc_cmp_bytes(r, "out vs this backend's moe_combine + add", og, o2, ob);
    free(idx), free(rop), free(w), free(rows), free(sh), free(og), free(o2), free(oc);
}

/* p[] = n_local, cap, hidden, inter, fp8 records, fp8 mode, rows hint (kern_moe_slots_t); counts per slot cycle through cap, 0, 3, 1, cap-1;
 * contract (shared with the CPU): counts cap+5 and -2 are CAPACITY faults, clamped. The whole out buffer is
 * compared (rows past the counts must keep their initial bits); tol = nmse, max-abs 4 bf16 ulps of
 * max|ref| (h may round the other way before down). Padding rows of x hold huge values: they must not
 * leak into any real row. */
void cc_run_moe_experts(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t nl = (int32_t)c->p[0], cap = (int32_t)c->p[1], Hd = (int32_t)c->p[2], I = (int32_t)c->p[3];
    const ms_dtype_t dt = c->p[4] ? MS_DT_F8E4M3 : MS_DT_BF16;
    kr_seed(304);
    kern_moe_slots_t lay = kern_moe_slots_layout(dt, Hd, I);
    const size_t recb = lay.stride * (size_t)nl;
    unsigned char *rec = calloc(recb, 1);
    const size_t mat = (size_t)Hd * I, sblk = (size_t)kern_fp8_blocks(Hd) * kern_fp8_blocks(I);
    for (int32_t j = 0; j < nl; j++) {
        unsigned char *rj = rec + (size_t)j * lay.stride;
        if (dt == MS_DT_BF16) {
            bf16_t *gu = cc_bf16_fast(3 * (int64_t)mat, 0.05);
            memcpy(rj, gu, 2 * mat * 2), memcpy(rj + lay.off_down, gu + 2 * mat, mat * 2);
            free(gu);
        } else {
            for (size_t i = 0; i < 2 * mat; i++) rj[i] = kr_fp8();
            for (size_t i = 0; i < mat; i++) rj[lay.off_down + i] = kr_fp8();
            float *s = (float *)(rj + lay.off_scale);
            for (size_t i = 0; i < 3 * sblk; i++) s[i] = (float)(0.0003 * (0.5 + kr_uniform()));
        }
    }
    int32_t *counts = malloc(sizeof(int32_t) * (size_t)nl);
    static const int cyc[] = {-1, 0, 3, 1, -2};
    for (int32_t j = 0; j < nl; j++) {
        int v = cyc[j % 5];
        counts[j] = v == -1 ? cap : v == -2 ? cap - 1 : (v < cap ? v : cap);
    }
    if (c->contract) counts[0] = cap + 5, counts[nl - 1] = -2;
    const int64_t n = (int64_t)nl * cap * Hd;
    bf16_t *x = cc_bf16_fast(n, 1.0), *init = cc_bf16_fast(n, 1.0);
    for (int32_t j = 0; j < nl; j++) /* padding rows: huge values */
        for (int32_t i = counts[j] < 0 ? 0 : counts[j]; i < cap; i++)
            for (int32_t d = 0; d < Hd; d++) x[((int64_t)j * cap + i) * Hd + d] = f32_to_bf16(3e38f);
    bf16_t *got = malloc(sizeof(bf16_t) * (size_t)n), *want = malloc(sizeof(bf16_t) * (size_t)n);
    memcpy(want, init, sizeof(bf16_t) * (size_t)n);
    const size_t wsb = kern_moe_ws_bytes(cap, I);
    /* the device op gets the engine's workspace (every slot in one pass) for an even slot count, the minimal
     * one (the fp8 mode then goes in chunks of the context workspace) for an odd one */
    const size_t dwsb = nl % 2 == 0 ? kern_moe_ws_bytes_all(nl, cap, Hd, I) : wsb;
    void *hws = malloc(wsb);
    void *drec = cc_dev(env, rec, recb), *dx = cc_dev(env, x, sizeof(bf16_t) * (size_t)n),
         *dc = cc_dev(env, counts, sizeof(int32_t) * (size_t)nl), *dout = cc_dev(env, init, sizeof(bf16_t) * (size_t)n),
         *dws = cc_dev(env, NULL, dwsb);
    kern_moe_slots_t wd = lay, wh = lay;
    wd.base = drec, wh.base = rec;
    wd.mode = wh.mode = c->p[5] ? KERN_MOE_FP8 : KERN_MOE_DEQUANT;
    wd.rows_hint = wh.rows_hint = (int32_t)c->p[6]; /* the tile choice only: the same results */
    cc_ok(r, K->moe_experts(CX, dx, dc, nl, cap, &wd, dout, dws, dwsb), "moe_experts");
    cc_get(env, got, dout, sizeof(bf16_t) * (size_t)n);
    uint32_t cpu_fault = 0;
    kern_ctx_t ccx = {.fault = &cpu_fault};
    cc_ok(r, kern_cpu_ops.moe_experts(&ccx, x, counts, nl, cap, &wh, want, hws, wsb), "cpu moe_experts");
    /* real rows against the CPU with the tolerance; rows past the (clamped) counts keep their initial bits */
    bf16_t *gr = malloc(sizeof(bf16_t) * (size_t)n), *wr = malloc(sizeof(bf16_t) * (size_t)n);
    int64_t nreal = 0, touched = 0;
    for (int32_t j = 0; j < nl; j++) {
        const int32_t cnt = counts[j] < 0 ? 0 : counts[j] > cap ? cap : counts[j];
        for (int32_t i = 0; i < cap; i++) {
            const int64_t o = ((int64_t)j * cap + i) * Hd;
            if (i < cnt) {
                memcpy(gr + nreal, got + o, sizeof(bf16_t) * (size_t)Hd), memcpy(wr + nreal, want + o, sizeof(bf16_t) * (size_t)Hd);
                nreal += Hd;
            } else {
                touched += memcmp(got + o, init + o, sizeof(bf16_t) * (size_t)Hd) != 0;
                touched += memcmp(want + o, init + o, sizeof(bf16_t) * (size_t)Hd) != 0;
            }
        }
    }
    /* fp8 mode: the same rounding points on both sides, fp32 sums in another order, so an e4m3 code of h
     * may differ by one step: max-abs 16 bf16 ulps of max|ref| */
    cc_cmp_bf16(r, "real rows", gr, wr, nreal, c->tol, c->p[5] ? 16.0 / 256 : 4.0 / 256);
    cc_check(r, touched == 0, "%lld rows past the counts changed", (long long)touched);
    free(gr), free(wr);
    uint32_t f = cc_fault_take(env);
    cc_check(r, f == cpu_fault && (c->contract ? f == KERN_FAULT_CAPACITY : f == 0), "fault word 0x%x (cpu 0x%x)", f,
             cpu_fault);
    free(rec), free(counts), free(x), free(init), free(got), free(want), free(hws);
}
