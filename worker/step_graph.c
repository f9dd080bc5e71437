/* step_graph.c — capture and choice of the decode-step graphs (step_graph.h). */
#include "worker/step_graph.h"

#include <string.h>
#include <time.h>

void sgraph_pad(char *stage, const step_io_layout_t *L, int from, int to, int w)
{
    int32_t *ids = (int32_t *)(stage + L->ids), *pos = (int32_t *)(stage + L->pos);
    int32_t *slots = (int32_t *)(stage + L->slots), *last = (int32_t *)(stage + L->last_row);
    int32_t *pad = (int32_t *)(stage + L->pad);
    kern_sample_t *sp = (kern_sample_t *)(stage + L->sp);
    kern_adjust_t *adj = (kern_adjust_t *)(stage + L->adj);
    kern_attn_seq_t *seqs = (kern_attn_seq_t *)(stage + L->seqs);
    for (int r = 0; r < from * w; r++) pad[r] = -1;
    for (int r = from * w; r < to * w; r++) {
        /* last_row 0: a padding row samples a copy of row 0, whose logits are finite whenever the first real
         * row's are, so padding never raises a data fault of its own (one no real sequence would own) */
        ids[r] = -1, pos[r] = 0, slots[r] = -1, last[r] = 0, pad[r] = 0;
        sp[r] = (kern_sample_t){.top_p = 1, .mask_token = -1};
        adj[r] = (kern_adjust_t){.repetition = 1, .mask_token = -1};
    }
    for (int i = from; i < to; i++) seqs[i] = (kern_attn_seq_t){.q_off = -1};
}

int sgraph_pick(const sgraph_t *g, int n)
{
    for (int i = 0; i < g->n; i++)
        if (g->sizes[i] >= n) return g->sizes[i] == n || g->padding ? i : -1;
    return -1;
}

void sgraph_destroy(sgraph_t *g, const kern_ops_t *k)
{
    for (int i = 0; i < g->n; i++)
        if (g->graph[i]) k->graph_destroy(g->graph[i]);
    g->n = 0;
}

/* One size: warm-up, capture, checking replay. With MTP (mtp non-NULL) a step of G sequences has
 * G * (N + 1) rows, all sampled (each verifies N drafts), and its N draft passes follow the main pass. */
static ms_status_t sgraph_one(fwd_t *f, mtp_t *mtp, char *stage, int G, int emulate, kern_graph_t *out)
{
    const kern_ops_t *k = f->k;
    kern_ctx_t *cx = f->cx;
    const int W = mtp ? mtp->N + 1 : 1;
    step_io_layout_t L;
    step_io_layout(&L, G * W, G, G * W, 0);
    sgraph_pad(stage, &L, 0, G, W);
    uint32_t *fault = (uint32_t *)(stage + L.fault);
    *fault = 0;
    fwd_point_io(f, &L);
    const fwd_step_t st = {.T = G * W, .n_abs = G, .n_sample = G * W, .padded = true};
    mtp_step_t ms;
    if (mtp) {
        mtp_step_begin(mtp, G * W, G, &ms);
        mtp_pad(&ms, 0, G * W, 0, G);
        MS_TRY(mtp_upload(mtp, f, &ms));
    }
    MS_TRY(k->upload(cx, (char *)f->io + L.fault, stage + L.fault, step_io_ul_bytes(&L)));
    MS_TRY(fwd_run(f, &st));
    if (mtp) MS_TRY(mtp_run(mtp, f, &st, G));
    MS_TRY(k->synchronize(cx));
    if (!emulate) {
        MS_TRY(k->graph_begin(cx));
        ms_status_t s1 = fwd_run(f, &st);
        if (s1 == MS_OK && mtp) s1 = mtp_run(mtp, f, &st, G);
        ms_status_t s2 = k->graph_end(cx, out); /* always: ends the capture even after a failed op */
        if (s1 != MS_OK || s2 != MS_OK) {
            if (s2 == MS_OK) k->graph_destroy(*out);
            *out = NULL;
            return s1 != MS_OK ? s1 : s2;
        }
        MS_TRY(k->graph_launch(cx, *out));
    }
    MS_TRY(k->download(cx, fault, (char *)f->io + L.fault, sizeof *fault));
    if (mtp) MS_TRY(mtp_download(mtp, f));
    MS_TRY(k->synchronize(cx));
    const uint32_t bits = *fault | (mtp ? *ms.fault : 0);
    if (bits)
        return MS_ERR(MS_ERR_INTERNAL, "cuda graphs: the all-padding step of batch %d raised fault bits %#x%s", G,
                      bits, mtp && *ms.fault ? " (in the MTP passes)" : "");
    return MS_OK;
}

ms_status_t sgraph_create(sgraph_t *g, fwd_t *f, mtp_t *mtp, void *stage, int device, const int *sizes, int n,
                          int padding, int emulate)
{
    memset(g, 0, sizeof *g);
    g->padding = padding;
    if (n > SGRAPH_MAX) n = SGRAPH_MAX;
    size_t free0 = 0, free1 = 0, total = 0;
    const int meter = !emulate && f->k->mem_info(device, &free0, &total) == MS_OK;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        g->sizes[i] = sizes[i];
        ms_status_t st = sgraph_one(f, mtp, stage, sizes[i], emulate, &g->graph[i]);
        if (st != MS_OK) {
            g->n = i;
            sgraph_destroy(g, f->k);
            return st;
        }
        g->n = i + 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    g->capture_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
    if (meter && f->k->mem_info(device, &free1, &total) == MS_OK && free0 > free1) g->bytes = free0 - free1;
    return MS_OK;
}
