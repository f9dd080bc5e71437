/* eplb_window.c — the sliding window of expert load and the balancer's
 * counters (eplb_window.h). */
#include "coordinator/eplb_window.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eplb_window {
    pthread_mutex_t mu;
    int L, E, G, ep, S, window_steps, interval;
    int *moe;          /* [L] 1 = MoE layer */
    int n_chunks;      /* ring capacity */
    int head, filled;  /* next chunk to write, chunks holding data */
    int64_t *ring;     /* [n_chunks][L*E] */
    int64_t *sum;      /* [L*E] the window's total */
    int32_t *phy2log;  /* [L][S] placement in force */
    uint64_t step, placed_step, output_tokens;
    int64_t rebalances, slots_moved, bytes_moved;
};

ms_status_t eplb_window_create(const eplb_window_opts_t *o, eplb_window_t **out)
{
    if (o->n_layers < 1 || o->n_experts < 1 || o->ep_size < 1 || o->n_slots < o->n_experts || o->interval < 1 ||
        o->window_steps < 1)
        return MS_ERR(MS_ERR_INVALID, "eplb window: bad shape (%d layers, %d experts, %d slots, ep %d)", o->n_layers,
                      o->n_experts, o->n_slots, o->ep_size);
    eplb_window_t *w = calloc(1, sizeof *w);
    if (!w) return MS_ERR(MS_ERR_NOMEM, "eplb window: out of memory");
    w->L = o->n_layers, w->E = o->n_experts, w->G = o->n_group > 0 ? o->n_group : 1, w->ep = o->ep_size;
    w->S = o->n_slots, w->window_steps = o->window_steps, w->interval = o->interval;
    w->n_chunks = (o->window_steps + o->interval - 1) / o->interval;
    const size_t LE = (size_t)w->L * w->E;
    w->moe = calloc((size_t)w->L, sizeof *w->moe);
    w->ring = calloc(LE * (size_t)w->n_chunks, sizeof *w->ring);
    w->sum = calloc(LE, sizeof *w->sum);
    w->phy2log = calloc((size_t)w->L * w->S, sizeof *w->phy2log);
    if (!w->moe || !w->ring || !w->sum || !w->phy2log) {
        eplb_window_destroy(w);
        return MS_ERR(MS_ERR_NOMEM, "eplb window: out of memory for %d chunks of %zu counters", w->n_chunks, LE);
    }
    for (int l = 0; l < w->L; l++) w->moe[l] = o->moe ? o->moe[l] : 1;
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return MS_OK;
}

void eplb_window_destroy(eplb_window_t *w)
{
    if (!w) return;
    if (w->ring) pthread_mutex_destroy(&w->mu);
    free(w->moe), free(w->ring), free(w->sum), free(w->phy2log);
    free(w);
}

void eplb_window_push(eplb_window_t *w, const int64_t *delta, uint64_t step)
{
    const size_t LE = (size_t)w->L * w->E;
    pthread_mutex_lock(&w->mu);
    int64_t *chunk = w->ring + (size_t)w->head * LE;
    for (size_t i = 0; i < LE; i++) w->sum[i] += delta[i] - chunk[i], chunk[i] = delta[i];
    w->head = (w->head + 1) % w->n_chunks;
    if (w->filled < w->n_chunks) w->filled++;
    if (step > w->step) w->step = step;
    pthread_mutex_unlock(&w->mu);
}

void eplb_window_set_placement(eplb_window_t *w, const int32_t *phy2log, uint64_t step, bool changed)
{
    pthread_mutex_lock(&w->mu);
    memcpy(w->phy2log, phy2log, sizeof *phy2log * (size_t)w->L * w->S);
    if (changed) w->placed_step = step;
    pthread_mutex_unlock(&w->mu);
}

void eplb_window_step(eplb_window_t *w, uint64_t step, int tokens)
{
    pthread_mutex_lock(&w->mu);
    w->step = step;
    w->output_tokens += (uint64_t)tokens;
    pthread_mutex_unlock(&w->mu);
}

void eplb_window_rebalanced(eplb_window_t *w, int slots, int64_t bytes, bool first)
{
    pthread_mutex_lock(&w->mu);
    w->rebalances += first;
    w->slots_moved += slots;
    w->bytes_moved += bytes;
    pthread_mutex_unlock(&w->mu);
}

void eplb_window_load(eplb_window_t *w, int64_t *load, int64_t *steps)
{
    pthread_mutex_lock(&w->mu);
    memcpy(load, w->sum, sizeof *load * (size_t)w->L * w->E);
    *steps = (int64_t)w->filled * w->interval;
    pthread_mutex_unlock(&w->mu);
}

double eplb_imbalance_of(const int64_t *load, const int32_t *phy2log, int L, const int *moe, int E, int S, int ep,
                         double *rank_load, double *layer_imb)
{
    const int spr = S / ep;
    double sum_max = 0, sum_mean = 0;
    int nrep[E > 0 ? E : 1];
    double rl[ep > 0 ? ep : 1];
    for (int r = 0; r < ep; r++) rank_load[r] = 0;
    for (int l = 0; l < L; l++) {
        if (layer_imb) layer_imb[l] = 0;
        if (moe && !moe[l]) continue;
        const int32_t *p = phy2log + (size_t)l * S;
        const int64_t *x = load + (size_t)l * E;
        for (int e = 0; e < E; e++) nrep[e] = 0;
        for (int s = 0; s < S; s++) nrep[p[s]]++;
        double mx = 0, tot = 0;
        for (int r = 0; r < ep; r++) {
            rl[r] = 0;
            for (int s = r * spr; s < (r + 1) * spr; s++) rl[r] += (double)x[p[s]] / nrep[p[s]];
            rank_load[r] += rl[r];
            tot += rl[r];
            if (rl[r] > mx) mx = rl[r];
        }
        if (tot <= 0) continue;
        if (layer_imb) layer_imb[l] = (mx - tot / ep) / (tot / ep);
        sum_max += mx, sum_mean += tot / ep;
    }
    return sum_mean > 0 ? sum_max / sum_mean - 1 : 0;
}

json_t *eplb_window_json(eplb_window_t *w)
{
    const size_t LE = (size_t)w->L * w->E;
    int64_t *load = malloc(sizeof *load * LE);
    double *rank = malloc(sizeof *rank * (size_t)w->ep), *limb = malloc(sizeof *limb * (size_t)w->L);
    json_t *j = NULL;
    if (!load || !rank || !limb) goto out;
    pthread_mutex_lock(&w->mu);
    memcpy(load, w->sum, sizeof *load * LE);
    double imb = eplb_imbalance_of(load, w->phy2log, w->L, w->moe, w->E, w->S, w->ep, rank, limb);
    j = json_pack("{s:i, s:i, s:i, s:i, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "num_experts", w->E, "n_group",
                  w->G, "ep_size", w->ep, "num_slots", w->S, "steps", (json_int_t)w->filled * w->interval,
                  "window_steps", w->window_steps, "engine_steps", (json_int_t)w->step, "output_tokens",
                  (json_int_t)w->output_tokens, "rebalances", (json_int_t)w->rebalances, "slots_moved",
                  (json_int_t)w->slots_moved, "bytes_moved", (json_int_t)w->bytes_moved, "placement_age",
                  (json_int_t)(w->step - w->placed_step), "imbalance", imb);
    json_t *layers = json_array(), *rows = json_array(), *rl = json_array(), *li = json_array(), *pl = json_array();
    for (int l = 0; l < w->L; l++) {
        if (!w->moe[l]) continue;
        json_array_append_new(layers, json_integer(l));
        json_t *row = json_array(), *prow = json_array();
        for (int e = 0; e < w->E; e++) json_array_append_new(row, json_integer(load[(size_t)l * w->E + e]));
        for (int s = 0; s < w->S; s++) json_array_append_new(prow, json_integer(w->phy2log[(size_t)l * w->S + s]));
        json_array_append_new(rows, row);
        json_array_append_new(pl, prow);
        json_array_append_new(li, json_real(limb[l]));
    }
    pthread_mutex_unlock(&w->mu);
    for (int r = 0; r < w->ep; r++) json_array_append_new(rl, json_real(rank[r]));
    json_object_set_new(j, "layers", layers);
    json_object_set_new(j, "load", rows);
    json_object_set_new(j, "rank_load", rl);
    json_object_set_new(j, "layer_imbalance", li);
    json_object_set_new(j, "placement", pl);
out:
    free(load), free(rank), free(limb);
    return j;
}

static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if (*len + (size_t)n < *cap) {
            *len += (size_t)n;
            return 0;
        }
        size_t nc = (*cap + (size_t)n + 1) * 2;
        char *b = realloc(*buf, nc);
        if (!b) return -1;
        *buf = b, *cap = nc;
    }
}

ms_status_t eplb_window_metrics(eplb_window_t *w, char **buf, size_t *len)
{
    json_t *j = eplb_window_json(w);
    if (!j) return MS_ERR(MS_ERR_NOMEM, "eplb metrics: out of memory");
    size_t cap = *len + 1;
    int bad = 0;
    bad |= appendf(buf, len, &cap, "# HELP moeserve_eplb_rank_load Routed (token, expert) pairs an EP rank serves "
                   "over the statistics window, summed over MoE layers\n# TYPE moeserve_eplb_rank_load gauge\n");
    json_t *rl = json_object_get(j, "rank_load");
    for (size_t r = 0; r < json_array_size(rl); r++)
        bad |= appendf(buf, len, &cap, "moeserve_eplb_rank_load{rank=\"%zu\"} %.0f\n", r,
                       json_real_value(json_array_get(rl, r)));
    static const struct {
        const char *name, *key, *type, *help;
    } g[] = {
        {"imbalance", "imbalance", "gauge", "sum over MoE layers of the hottest rank's load / of the mean rank load, "
                                            "minus 1, over the window"},
        {"rebalances_total", "rebalances", "counter", "placements changed by the load balancer"},
        {"slots_moved_total", "slots_moved", "counter", "expert slots whose expert changed"},
        {"bytes_moved_total", "bytes_moved", "counter", "expert weight bytes copied between ranks"},
        {"placement_age_steps", "placement_age", "gauge", "engine steps since the placement last changed"},
        {"window_steps", "steps", "gauge", "engine steps the load statistics cover"},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        json_t *v = json_object_get(j, g[i].key);
        bad |= appendf(buf, len, &cap, "# HELP moeserve_eplb_%s %s\n# TYPE moeserve_eplb_%s %s\nmoeserve_eplb_%s %.6g\n",
                       g[i].name, g[i].help, g[i].name, g[i].type, g[i].name, json_number_value(v));
    }
    json_decref(j);
    return bad ? MS_ERR(MS_ERR_NOMEM, "eplb metrics: out of memory") : MS_OK;
}

ms_status_t eplb_window_dump(eplb_window_t *w, const char *path)
{
    json_t *j = eplb_window_json(w);
    if (!j) return MS_ERR(MS_ERR_NOMEM, "eplb dump: out of memory");
    int rc = json_dump_file(j, path, JSON_COMPACT);
    json_decref(j);
    return rc ? MS_ERR(MS_ERR_IO, "eplb_dump: cannot write %s", path) : MS_OK;
}
