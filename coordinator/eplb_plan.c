/* eplb_plan.c — DeepSeek's EPLB placement policy in C (see eplb_plan.h).
 * Per layer: (1) pack expert groups onto nodes, (2) replicate within each
 * node, (3) pack the node's replicas onto its ranks. Every step is greedy
 * and deterministic; all weights are fp32 as the reference computes them,
 * so the published example reproduces slot for slot. */
#include "coordinator/eplb_plan.h"

#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Scratch for one layer, sized for the largest call (items <= n_slots). */
typedef struct {
    int *order, *cnt, *members; /* members: (n_packs, per) class of each item placed */
    float *pack_w;
} pack_ws_t;

static bool pack_holds(const pack_ws_t *ws, int p, int per, int cls)
{
    for (int i = 0; i < ws->cnt[p]; i++)
        if (ws->members[p * per + i] == cls) return true;
    return false;
}

/* After a greedy pass the last items may have found room only in a pack
 * holding their class: swap such an item with the item of another pack
 * closest in weight whose class neither pack then holds twice. */
static void pack_repair(const float *w, const int *cls, int n, int n_packs, int per, pack_ws_t *ws, int *pack,
                        int *rank_in_pack)
{
    (void)n_packs;
    for (int a = 0; a < n; a++) {
        const int pa = pack[a];
        bool dup = false;
        for (int b = 0; b < n && !dup; b++) dup = b != a && pack[b] == pa && cls[b] == cls[a];
        if (!dup) continue;
        int best = -1;
        for (int b = 0; b < n; b++) {
            const int pb = pack[b];
            if (pb == pa || pack_holds(ws, pb, per, cls[a]) || pack_holds(ws, pa, per, cls[b])) continue;
            if (best < 0 || fabsf(w[b] - w[a]) < fabsf(w[best] - w[a])) best = b;
        }
        if (best < 0) continue; /* no legal swap: more replicas than packs */
        const int pb = pack[best], ra = rank_in_pack[a], rb = rank_in_pack[best];
        ws->members[pa * per + ra] = cls[best], ws->members[pb * per + rb] = cls[a];
        ws->pack_w[pa] += w[best] - w[a], ws->pack_w[pb] += w[a] - w[best];
        pack[a] = pb, rank_in_pack[a] = rb, pack[best] = pa, rank_in_pack[best] = ra;
    }
}

/* Pack n items into n_packs packs of exactly n / n_packs items each: items
 * heaviest first (stable: lower index first among equals), each into the
 * lightest pack that has room (lower pack first among equals). cls (NULL:
 * none): items of one class (replicas of one expert) go to different packs
 * while a pack with room lacks the class, because two replicas on one rank
 * split a load that lands on that rank anyway — they cost a slot and balance
 * nothing (and the server's config check refuses them). Without such a
 * collision the choice is the unconstrained one, so DeepSeek's published
 * example is unchanged. */
static void balanced_pack(const float *w, const int *cls, int n, int n_packs, pack_ws_t *ws, int *pack,
                          int *rank_in_pack)
{
    const int per = n / n_packs;
    if (per == 1) {
        for (int i = 0; i < n; i++) pack[i] = i, rank_in_pack[i] = 0;
        return;
    }
    /* stable insertion sort, descending: n is a layer's slot count (hundreds) */
    int *ord = ws->order;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && w[ord[j - 1]] < w[i]) ord[j] = ord[j - 1], j--;
        ord[j] = i;
    }
    for (int p = 0; p < n_packs; p++) ws->pack_w[p] = 0.0f, ws->cnt[p] = 0;
    for (int k = 0; k < n; k++) {
        int it = ord[k], best = -1;
        for (int pass = 0; pass < 2 && best < 0; pass++) /* pass 0: packs without the class */
            for (int p = 0; p < n_packs; p++)
                if (ws->cnt[p] < per && (pass || !cls || !pack_holds(ws, p, per, cls[it])) &&
                    (best < 0 || ws->pack_w[p] < ws->pack_w[best]))
                    best = p;
        if (cls) ws->members[best * per + ws->cnt[best]] = cls[it];
        pack[it] = best;
        rank_in_pack[it] = ws->cnt[best]++;
        ws->pack_w[best] += w[it];
    }
    if (cls) pack_repair(w, cls, n, n_packs, per, ws, pack, rank_in_pack);
}

/* Replicate n_log experts into n_phy slots: slot i < n_log holds expert i;
 * each further slot goes to the expert with the largest load per replica
 * (first one among equals) that has fewer than max_rep replicas (the ranks
 * it can spread over: a rank holds an expert at most once). */
static void replicate(const float *w, int n_log, int n_phy, int max_rep, int *phy2log, int *rank, int *logcnt)
{
    for (int i = 0; i < n_log; i++) phy2log[i] = i, rank[i] = 0, logcnt[i] = 1;
    for (int i = n_log; i < n_phy; i++) {
        int best = -1;
        float bv = 0;
        for (int e = 0; e < n_log; e++) {
            float v = w[e] / (float)logcnt[e];
            if (logcnt[e] < max_rep && (best < 0 || v > bv)) bv = v, best = e;
        }
        if (best < 0) best = 0; /* n_phy > n_log * max_rep: more slots than one copy per rank allows */
        phy2log[i] = best;
        rank[i] = logcnt[best]++;
    }
}

void eplb_placement_free(eplb_placement_t *p)
{
    if (!p) return;
    free(p->phy2log), free(p->phy_rank), free(p->logcnt), free(p->log2phy);
    memset(p, 0, sizeof *p);
}

/* log2phy and max_replicas from phy2log / phy_rank / logcnt. */
static ms_status_t build_log2phy(eplb_placement_t *p)
{
    int mx = 1;
    for (int i = 0; i < p->n_layers * p->n_experts; i++)
        if (p->logcnt[i] > mx) mx = p->logcnt[i];
    free(p->log2phy);
    p->max_replicas = mx;
    p->log2phy = malloc(sizeof(int32_t) * (size_t)p->n_layers * p->n_experts * mx);
    if (!p->log2phy) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts * mx; i++) p->log2phy[i] = -1;
    for (int l = 0; l < p->n_layers; l++)
        for (int s = 0; s < p->n_slots; s++) {
            int e = p->phy2log[(size_t)l * p->n_slots + s], r = p->phy_rank[(size_t)l * p->n_slots + s];
            p->log2phy[((size_t)l * p->n_experts + e) * mx + r] = s;
        }
    return MS_OK;
}

ms_status_t eplb_plan(const float *load, int L, int E, const eplb_shape_t *sh, eplb_placement_t *out)
{
    int S = sh->n_slots, R = sh->n_ranks, G = sh->n_groups, N = sh->n_nodes;
    if (L < 1 || E < 1 || R < 1 || G < 1 || N < 1)
        return MS_ERR(MS_ERR_INVALID, "eplb: %d layers, %d experts, %d ranks, %d groups, %d nodes must all be >= 1", L,
                      E, R, G, N);
    if (S < E || S % R)
        return MS_ERR(MS_ERR_INVALID, "eplb: %d slots must be >= %d experts and a multiple of %d ranks", S, E, R);
    if (R % N) return MS_ERR(MS_ERR_INVALID, "eplb: %d ranks are not a multiple of %d nodes", R, N);
    if (E % G) return MS_ERR(MS_ERR_INVALID, "eplb: %d experts do not split into %d groups", E, G);
    if (G % N) G = 1, N = 1; /* groups do not divide over nodes: global policy */
    const int gs = E / G, gpn = G / N, epn = E / N, spn = S / N, spr = S / R, rpn = R / N;

    eplb_placement_t p = {.n_layers = L, .n_experts = E, .n_slots = S};
    p.phy2log = malloc(sizeof(int32_t) * (size_t)L * S);
    p.phy_rank = malloc(sizeof(int32_t) * (size_t)L * S);
    p.logcnt = malloc(sizeof(int32_t) * (size_t)L * E);
    /* one scratch block: ints then floats */
    const size_t ni = (size_t)3 * G + 2 * (size_t)E + 3 * (size_t)spn + (size_t)epn + 4 * (size_t)S;
    const size_t nf = (size_t)G + (size_t)epn + (size_t)spn + (size_t)S;
    int *iw = malloc(sizeof(int) * ni);
    float *fw = malloc(sizeof(float) * nf);
    ms_status_t st = MS_OK;
    if (!p.phy2log || !p.phy_rank || !p.logcnt || !iw || !fw) {
        st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
        goto out;
    }
    int *gpack = iw, *grank = gpack + G, *log2mlog = grank + G, *mlog2log = log2mlog + E, *p2m = mlog2log + E,
        *prank = p2m + spn, *pk = prank + spn, *mcnt = pk + spn, *rk = mcnt + epn;
    pack_ws_t ws = {.order = rk + S, .cnt = rk + 2 * S, .members = rk + 3 * S};
    (void)gpn;
    float *gload = fw, *wm = gload + G, *tpp = wm + epn;
    ws.pack_w = tpp + spn;
    for (int l = 0; l < L; l++) {
        const float *w = load + (size_t)l * E;
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int j = 0; j < gs; j++) s += w[g * gs + j];
            gload[g] = s;
        }
        balanced_pack(gload, NULL, G, N, &ws, gpack, grank);
        for (int g = 0; g < G; g++)
            for (int j = 0; j < gs; j++) {
                int m = (gpack[g] * gpn + grank[g]) * gs + j;
                log2mlog[g * gs + j] = m;
                mlog2log[m] = g * gs + j;
            }
        for (int n = 0; n < N; n++) {
            const int *m2l = mlog2log + n * epn;
            for (int m = 0; m < epn; m++) wm[m] = w[m2l[m]];
            replicate(wm, epn, spn, rpn, p2m, prank, mcnt);
            for (int q = 0; q < spn; q++) tpp[q] = wm[p2m[q]] / (float)mcnt[p2m[q]];
            balanced_pack(tpp, p2m, spn, rpn, &ws, pk, rk);
            for (int q = 0; q < spn; q++) {
                size_t slot = (size_t)l * S + (size_t)n * spn + (size_t)pk[q] * spr + rk[q];
                p.phy2log[slot] = m2l[p2m[q]];
                p.phy_rank[slot] = prank[q];
            }
            for (int m = 0; m < epn; m++) p.logcnt[(size_t)l * E + m2l[m]] = mcnt[m];
        }
    }
    st = build_log2phy(&p);
out:
    free(iw), free(fw);
    if (st != MS_OK) {
        eplb_placement_free(&p);
        return st;
    }
    *out = p;
    return MS_OK;
}

void eplb_rank_load(const float *load, const eplb_placement_t *p, int layer, int n_ranks, double *rank_load)
{
    const int spr = p->n_slots / n_ranks;
    const int32_t *p2l = p->phy2log + (size_t)layer * p->n_slots;
    const int32_t *cnt = p->logcnt + (size_t)layer * p->n_experts;
    const float *w = load + (size_t)layer * p->n_experts;
    for (int r = 0; r < n_ranks; r++) {
        double s = 0;
        for (int i = r * spr; i < (r + 1) * spr; i++) s += (double)w[p2l[i]] / cnt[p2l[i]];
        rank_load[r] = s;
    }
}

double eplb_imbalance(const float *load, const eplb_placement_t *p, int layer, int n_ranks)
{
    double rl[n_ranks > 0 ? n_ranks : 1], mx = 0, sum = 0;
    eplb_rank_load(load, p, layer, n_ranks, rl);
    for (int r = 0; r < n_ranks; r++) {
        sum += rl[r];
        if (rl[r] > mx) mx = rl[r];
    }
    if (sum <= 0) return 0;
    double mean = sum / n_ranks;
    return (mx - mean) / mean;
}

int eplb_keep_slots(const eplb_placement_t *cur, eplb_placement_t *next, int n_ranks)
{
    const int S = next->n_slots, spr = S / n_ranks;
    int moves = 0;
    int32_t e_new[spr > 0 ? spr : 1], r_new[spr > 0 ? spr : 1];
    int taken[spr > 0 ? spr : 1];
    for (int l = 0; l < next->n_layers; l++)
        for (int r = 0; r < n_ranks; r++) {
            int32_t *ne = next->phy2log + (size_t)l * S + (size_t)r * spr;
            int32_t *nr = next->phy_rank + (size_t)l * S + (size_t)r * spr;
            const int32_t *ce = cur->phy2log + (size_t)l * S + (size_t)r * spr;
            for (int i = 0; i < spr; i++) e_new[i] = -1, taken[i] = 0;
            /* first: an expert the rank already holds stays in that slot */
            for (int j = 0; j < spr; j++)
                for (int i = 0; i < spr; i++)
                    if (e_new[i] < 0 && ce[i] == ne[j]) {
                        e_new[i] = ne[j], r_new[i] = nr[j], taken[j] = 1;
                        break;
                    }
            /* then the rest fill the free slots in order */
            for (int j = 0, i = 0; j < spr; j++) {
                if (taken[j]) continue;
                while (e_new[i] >= 0) i++;
                e_new[i] = ne[j], r_new[i] = nr[j];
            }
            for (int i = 0; i < spr; i++) {
                moves += e_new[i] != ce[i];
                ne[i] = e_new[i], nr[i] = r_new[i];
            }
        }
    /* the replica ranks moved with their slots; log2phy follows phy2log */
    if (build_log2phy(next) != MS_OK) return -1;
    return moves;
}
