/* transport.c — control-plane messages over MPI (transport.h).
 *
 * Ordering: every rank calls the same collectives in the same order on the
 * link's communicator: per step, Iscatter(per-rank header) + Scatterv(each
 * rank's part of the plan), then Gatherv(results); at the end
 * Iscatter(SHUTDOWN header). Rank 0 posts the header with MPI_Iscatter too,
 * because a nonblocking collective never matches a blocking one. Each rank
 * gets only its part (proto_plan_part): attention-DP ranks never see each
 * other's sequences. */
#include "transport.h"
#include "proto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct proto_link {
    MPI_Comm comm;
    int rank, size;
    uint8_t *buf;   /* received message (workers) */
    size_t cap;
    int *counts, *displs;              /* Gatherv, bytes per rank */
    uint8_t *send, *recv;              /* gather staging (wire results) */
    size_t send_cap, recv_cap;
    /* rank 0: every rank's part, concatenated (Scatterv) */
    uint8_t *parts;
    size_t parts_cap;
    proto_hdr_t *hdrs;                 /* (size) */
    int *pcounts, *pdispls;            /* (size) body bytes / offsets of each part */
    proto_link_stats_t stats;
    /* delta encoding (plan_delta.c): rank 0 one mirror per rank, a worker its own */
    proto_mirror_t **mirrors;          /* (size) */
    uint8_t **pbuf;                    /* rank 0: each rank's encoded part */
    size_t *pbuf_cap, *pbuf_len;
    proto_planbuf_t expanded;          /* worker: the received part as full entries */
};

ms_status_t proto_link_create(MPI_Comm comm, proto_link_t **out)
{
    proto_link_t *l = calloc(1, sizeof *l);
    if (!l) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory");
    if (MPI_Comm_dup(comm, &l->comm) != MPI_SUCCESS) {
        free(l);
        return MS_ERR(MS_ERR_MPI, "proto: MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(l->comm, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(l->comm, &l->rank);
    MPI_Comm_size(l->comm, &l->size);
    l->counts = calloc((size_t)l->size, sizeof(int));
    l->displs = calloc((size_t)l->size, sizeof(int));
    l->pcounts = calloc((size_t)l->size, sizeof(int));
    l->pdispls = calloc((size_t)l->size, sizeof(int));
    l->hdrs = calloc((size_t)l->size, sizeof(proto_hdr_t));
    l->mirrors = calloc((size_t)l->size, sizeof *l->mirrors);
    l->pbuf = calloc((size_t)l->size, sizeof *l->pbuf);
    l->pbuf_cap = calloc((size_t)l->size, sizeof(size_t));
    l->pbuf_len = calloc((size_t)l->size, sizeof(size_t));
    proto_planbuf_init(&l->expanded);
    bool ok = l->mirrors && l->pbuf && l->pbuf_cap && l->pbuf_len;
    for (int r = 0; ok && r < l->size; r++)
        if ((l->rank == 0 ? r > 0 : r == l->rank) && proto_mirror_create(&l->mirrors[r]) != MS_OK) ok = false;
    if (!ok || !l->counts || !l->displs || !l->pcounts || !l->pdispls || !l->hdrs) {
        proto_link_destroy(l);
        return MS_ERR(MS_ERR_NOMEM, "proto: out of memory");
    }
    *out = l;
    return MS_OK;
}

void proto_link_destroy(proto_link_t *l)
{
    if (!l) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && l->comm != MPI_COMM_NULL) MPI_Comm_free(&l->comm);
    free(l->buf);
    free(l->counts);
    free(l->displs);
    free(l->send);
    free(l->recv);
    free(l->parts);
    free(l->hdrs);
    for (int r = 0; r < l->size; r++) {
        if (l->mirrors) proto_mirror_destroy(l->mirrors[r]);
        if (l->pbuf) free(l->pbuf[r]);
    }
    free(l->mirrors);
    free(l->pbuf);
    free(l->pbuf_cap);
    free(l->pbuf_len);
    proto_planbuf_free(&l->expanded);
    free(l->pcounts);
    free(l->pdispls);
    free(l);
}

int proto_link_rank(const proto_link_t *l) { return l->rank; }
int proto_link_size(const proto_link_t *l) { return l->size; }

const proto_link_stats_t *proto_link_stats(const proto_link_t *l) { return &l->stats; }

/* Root: every rank's header (hdrs[r]), completed at once. */
static ms_status_t scatter_hdr_root(proto_link_t *l, proto_hdr_t *mine)
{
    MPI_Request rq;
    MPI_CHECK(MPI_Iscatter(l->hdrs, (int)sizeof *mine, MPI_BYTE, mine, (int)sizeof *mine, MPI_BYTE, 0, l->comm, &rq));
    MPI_CHECK(MPI_Wait(&rq, MPI_STATUS_IGNORE));
    l->stats.calls++;
    l->stats.bytes += sizeof *mine * (size_t)(l->size - 1);
    return MS_OK;
}

ms_status_t proto_send_plan(proto_link_t *l, const proto_plan_t *plan)
{
    if (plan->hdr.length > PROTO_MAX_MSG)
        return MS_ERR(MS_ERR_INTERNAL, "proto: plan of %u bytes exceeds the %u limit", plan->hdr.length, PROTO_MAX_MSG);
    size_t total = 0;
    for (int r = 1; r < l->size; r++) {
        MS_TRY(proto_plan_part_delta(plan, r, l->mirrors[r], &l->pbuf[r], &l->pbuf_cap[r], &l->pbuf_len[r]));
        total += l->pbuf_len[r];
    }
    if (total > l->parts_cap) {
        uint8_t *b = realloc(l->parts, total);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for %zu bytes of plans", total);
        l->parts = b;
        l->parts_cap = total;
    }
    size_t off = 0, body = 0;
    memset(&l->hdrs[0], 0, sizeof l->hdrs[0]);
    l->pcounts[0] = l->pdispls[0] = 0;
    for (int r = 1; r < l->size; r++) {
        size_t n = l->pbuf_len[r];
        memcpy(l->parts + off, l->pbuf[r], n);
        memcpy(&l->hdrs[r], l->parts + off, sizeof l->hdrs[r]);
        l->pdispls[r] = (int)(off + sizeof(proto_hdr_t));
        l->pcounts[r] = (int)(n - sizeof(proto_hdr_t));
        body += (size_t)l->pcounts[r];
        off += n;
    }
    if (off > (size_t)INT32_MAX) return MS_ERR(MS_ERR_INTERNAL, "proto: %zu bytes of plans in one step", off);
    proto_hdr_t mine;
    MS_TRY(scatter_hdr_root(l, &mine));
    MPI_CHECK(MPI_Scatterv(l->parts, l->pcounts, l->pdispls, MPI_BYTE, MPI_IN_PLACE, 0, MPI_BYTE, 0, l->comm));
    l->stats.calls++;
    l->stats.bytes += body;
    return MS_OK;
}

ms_status_t proto_send_shutdown(proto_link_t *l, uint32_t step)
{
    for (int r = 0; r < l->size; r++) l->hdrs[r] = proto_hdr_make(PROTO_MSG_SHUTDOWN, sizeof(proto_hdr_t), step);
    proto_hdr_t mine;
    return scatter_hdr_root(l, &mine);
}

/* Complete a request without holding a core: poll hot for a few
 * microseconds (a busy server's next plan is usually already on its way),
 * then sleep with a backoff capped at PROTO_BUSY_SLEEP_NS (50 us) for the
 * first PROTO_BUSY_WINDOW_NS of the wait: while requests run, plans follow
 * each other within one scheduling pass of rank 0, so a waiting worker never
 * oversleeps a plan by more than ~50 us. A wait longer than the window means
 * rank 0 has nothing to run: back off to 1 ms (an idle server wakes each
 * rank at most ~1000 times a second). */
#define PROTO_BUSY_SLEEP_NS 50000L
#define PROTO_BUSY_WINDOW_NS 100000000L
#define PROTO_IDLE_SLEEP_NS 1000000L

static long elapsed_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

static ms_status_t wait_idle(MPI_Request *rq)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long sleep_ns = 2000;
    for (int spins = 0;; spins++) {
        int done = 0;
        MPI_CHECK(MPI_Test(rq, &done, MPI_STATUS_IGNORE));
        if (done) return MS_OK;
        if (spins < 64) continue;
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        long cap = elapsed_ns(&t0) < PROTO_BUSY_WINDOW_NS ? PROTO_BUSY_SLEEP_NS : PROTO_IDLE_SLEEP_NS;
        sleep_ns = sleep_ns * 2 < cap ? sleep_ns * 2 : cap;
    }
}

ms_status_t proto_recv(proto_link_t *l, const proto_plan_t **plan)
{
    proto_hdr_t h;
    MPI_Request rq;
    MPI_CHECK(MPI_Iscatter(NULL, 0, MPI_BYTE, &h, (int)sizeof h, MPI_BYTE, 0, l->comm, &rq));
    MS_TRY(wait_idle(&rq));
    /* A header we cannot trust leaves us unable to follow the collectives
     * that come next: the caller aborts the job. */
    MS_TRY(proto_hdr_check(&h, PROTO_MAX_MSG));
    if (h.type == PROTO_MSG_SHUTDOWN) {
        *plan = NULL;
        return MS_OK;
    }
    if (h.type != PROTO_MSG_PLAN) return MS_ERR(MS_ERR_FORMAT, "proto: unexpected message type %u", h.type);
    if (h.length > l->cap) {
        uint8_t *b = realloc(l->buf, h.length);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for a %u-byte plan", h.length);
        l->buf = b;
        l->cap = h.length;
    }
    memcpy(l->buf, &h, sizeof h);
    MPI_CHECK(MPI_Scatterv(NULL, NULL, NULL, MPI_BYTE, l->buf + sizeof h, (int)(h.length - sizeof h), MPI_BYTE, 0,
                           l->comm));
    MS_TRY(proto_plan_check(l->buf, h.length));
    MS_TRY(proto_plan_expand((const proto_plan_t *)l->buf, l->mirrors[l->rank], &l->expanded, plan));
    return MS_OK;
}

/* Results on the wire: per rank a 16-byte status record {slot -1, status,
 * 0, rank}, then a uint32 fault word (proto_result_t.fault) per sequence the
 * rank runs (proto_seq_runs: attention TP every rank runs every sequence, and
 * a fault that one rank's rows of it met must reach rank 0 although rank 0
 * owns the result), then per owned sequence, in plan order, {slot, token,
 * logprob, n_top} and n_top (id, logprob) pairs, where n_top is what the plan
 * asked for (the sampled seq's n_logprobs, else 0). Rank 0 derives every
 * rank's byte count from the plan, so no count travels. */
typedef struct {
    int32_t slot, token;
    float logprob;
    int32_t n_top;
} wire_res_t;
_Static_assert(sizeof(wire_res_t) == 16, "wire_res_t layout");

static int wire_top(const proto_seq_t *q)
{
    return (q->flags & PROTO_SEQ_SAMPLE) && q->n_logprobs > 0 ? q->n_logprobs : 0;
}
/* After the top pairs, a sequence flagged VERIFY or DRAFT carries its MTP part. */
typedef struct {
    int32_t n_accepted, n_draft;
    int32_t accepted[PROTO_MAX_DRAFT];
    float accepted_lp[PROTO_MAX_DRAFT];
    int32_t drafts[PROTO_MAX_DRAFT];
} wire_spec_t;
_Static_assert(sizeof(wire_spec_t) == 8 + 12 * PROTO_MAX_DRAFT, "wire_spec_t layout");
static bool wire_has_spec(const proto_seq_t *q) { return (q->flags & (PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT)) != 0; }
/* Prompt logprobs (PROTO_SEQ_PROMPT_LP): proto_seq_plp_rows entries of a wire_res_t head (token, logprob,
 * n_top) and n_top (id, logprob) pairs, n_top = the entry's n_logprobs: the size follows from the plan. */
static int wire_plp_top(const proto_seq_t *q) { return q->n_logprobs > 0 ? q->n_logprobs : 0; }
static size_t wire_plp_bytes(const proto_seq_t *q)
{
    return (size_t)proto_seq_plp_rows(q) * (sizeof(wire_res_t) + 8u * (size_t)wire_plp_top(q));
}
/* One wire_res_t head and nt (id, logprob) pairs, the pairs past n_have padding; returns the end. */
static uint8_t *wire_put(uint8_t *w, int32_t slot, int32_t token, float logprob, int nt, const int32_t *ids,
                         const float *lps, int n_have)
{
    wire_res_t x = {.slot = slot, .token = token, .logprob = logprob, .n_top = nt};
    memcpy(w, &x, sizeof x);
    w += sizeof x;
    for (int j = 0; j < nt; j++) {
        int32_t id = j < n_have ? ids[j] : -1;
        float lp = j < n_have ? lps[j] : 0;
        memcpy(w, &id, 4), memcpy(w + 4, &lp, 4);
        w += 8;
    }
    return w;
}
static size_t wire_bytes(const proto_seq_t *q)
{
    return sizeof(wire_res_t) + 8u * (size_t)wire_top(q) + (wire_has_spec(q) ? sizeof(wire_spec_t) : 0) +
           wire_plp_bytes(q);
}

static bool grow_bytes(uint8_t **p, size_t *cap, size_t n)
{
    if (n <= *cap) return true;
    uint8_t *q = realloc(*p, n);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

ms_status_t proto_gather_results(proto_link_t *l, const proto_plan_t *plan, const proto_result_t *mine,
                                 const proto_plp_t *mine_plp, ms_status_t my_status, proto_result_t *merged,
                                 proto_plp_t *merged_plp, proto_step_status_t *st)
{
    const proto_plp_t *mp = mine_plp;
    const proto_seq_t *seqs = proto_plan_seqs(plan);
    int n = plan->n_seqs;
    size_t sb = sizeof(wire_res_t);
    for (int i = 0; i < n; i++) {
        if (proto_seq_runs(&seqs[i], l->rank)) sb += 4;
        if (proto_seq_owner(&seqs[i]) == l->rank) sb += wire_bytes(&seqs[i]);
    }
    if (!grow_bytes(&l->send, &l->send_cap, sb)) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for results");
    uint8_t *w = l->send;
    wire_res_t h = {.slot = -1, .token = (int32_t)my_status, .n_top = l->rank};
    memcpy(w, &h, sizeof h);
    w += sizeof h;
    for (int i = 0; i < n; i++) {
        if (!proto_seq_runs(&seqs[i], l->rank)) continue;
        uint32_t f = mine && my_status == MS_OK ? mine[i].fault : 0;
        memcpy(w, &f, 4);
        w += 4;
    }
    for (int i = 0; i < n; i++) {
        const proto_seq_t *q = &seqs[i];
        if (proto_seq_owner(q) != l->rank) continue;
        int nt = wire_top(q);
        const proto_result_t *r = mine && my_status == MS_OK ? &mine[i] : NULL;
        w = wire_put(w, q->slot, r ? r->token : -1, r ? r->logprob : 0, nt, r ? r->top_ids : NULL,
                     r ? r->top_logprobs : NULL, r ? r->n_top : 0);
        if (wire_has_spec(q)) {
            wire_spec_t sp = {0};
            if (r) {
                sp.n_accepted = r->n_accepted, sp.n_draft = r->n_draft;
                memcpy(sp.accepted, r->accepted, sizeof sp.accepted);
                memcpy(sp.accepted_lp, r->accepted_lp, sizeof sp.accepted_lp);
                memcpy(sp.drafts, r->drafts, sizeof sp.drafts);
            }
            memcpy(w, &sp, sizeof sp);
            w += sizeof sp;
        }
        const int npl = proto_seq_plp_rows(q), ntp = wire_plp_top(q);
        for (int k = 0; k < npl; k++) {
            const proto_plp_t *e = r && mp ? mp++ : NULL;
            w = wire_put(w, 0, e ? e->token : -1, e ? e->logprob : 0, ntp, e ? e->top_ids : NULL,
                         e ? e->top_logprobs : NULL, e ? e->n_top : 0);
        }
    }
    if (sb > (size_t)INT32_MAX) return MS_ERR(MS_ERR_INTERNAL, "proto: %zu bytes of results", sb);

    l->stats.calls++;
    if (l->rank != 0) {
        MPI_CHECK(MPI_Gatherv(l->send, (int)sb, MPI_BYTE, NULL, NULL, NULL, MPI_BYTE, 0, l->comm));
        return MS_OK;
    }

    for (int r = 0; r < l->size; r++) l->counts[r] = (int)sizeof(wire_res_t);
    for (int i = 0; i < n; i++) {
        int o = proto_seq_owner(&seqs[i]);
        if (o < 0 || o >= l->size) return MS_ERR(MS_ERR_INTERNAL, "proto: sequence %d owned by rank %d", i, o);
        l->counts[o] += (int)wire_bytes(&seqs[i]);
        for (int r = 0; r < l->size; r++)
            if (proto_seq_runs(&seqs[i], r)) l->counts[r] += 4;
    }
    size_t total = 0;
    for (int r = 0; r < l->size; r++) {
        l->displs[r] = (int)total;
        total += (size_t)l->counts[r];
    }
    if (!grow_bytes(&l->recv, &l->recv_cap, total)) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for results");
    MPI_CHECK(MPI_Gatherv(l->send, (int)sb, MPI_BYTE, l->recv, l->counts, l->displs, MPI_BYTE, 0, l->comm));
    l->stats.bytes += total - sb; /* what the other ranks sent */

    st->failed_rank = -1;
    st->failed_status = MS_OK;
    int *next = l->counts; /* reused: per rank, the byte offset of its next result */
    for (int r = 0; r < l->size; r++) {
        wire_res_t s0;
        memcpy(&s0, l->recv + l->displs[r], sizeof s0);
        if (s0.slot != -1 || s0.n_top != r)
            return MS_ERR(MS_ERR_INTERNAL, "proto: rank %d sent a malformed result block", r);
        if (s0.token != MS_OK && st->failed_rank < 0) {
            st->failed_rank = r;
            st->failed_status = (ms_status_t)s0.token;
        }
        next[r] = l->displs[r] + (int)sizeof s0;
    }
    for (int i = 0; i < n; i++) merged[i].fault = 0;
    for (int r = 0; r < l->size; r++) /* each rank's fault words, in plan order over the sequences it runs */
        for (int i = 0; i < n; i++) {
            if (!proto_seq_runs(&seqs[i], r)) continue;
            uint32_t f;
            memcpy(&f, l->recv + next[r], 4);
            merged[i].fault |= f;
            next[r] += 4;
        }
    for (int i = 0; i < n; i++) {
        int o = proto_seq_owner(&seqs[i]);
        const uint8_t *p = l->recv + next[o];
        wire_res_t x;
        memcpy(&x, p, sizeof x);
        proto_result_t *m = &merged[i];
        const uint32_t fault = m->fault;
        memset(m, 0, sizeof *m);
        m->fault = fault;
        m->slot = x.slot, m->token = x.token, m->logprob = x.logprob;
        m->n_top = x.n_top == wire_top(&seqs[i]) ? x.n_top : 0;
        for (int j = 0; j < m->n_top; j++) {
            memcpy(&m->top_ids[j], p + sizeof x + 8u * (size_t)j, 4);
            memcpy(&m->top_logprobs[j], p + sizeof x + 8u * (size_t)j + 4, 4);
        }
        if (wire_has_spec(&seqs[i])) {
            wire_spec_t sp;
            memcpy(&sp, p + sizeof x + 8u * (size_t)wire_top(&seqs[i]), sizeof sp);
            /* counts are clamped: a garbled part can shorten a step, never overrun the arrays */
            m->n_accepted = sp.n_accepted < 0 ? 0 : sp.n_accepted > PROTO_MAX_DRAFT ? PROTO_MAX_DRAFT : sp.n_accepted;
            m->n_draft = sp.n_draft < 0 ? 0 : sp.n_draft > PROTO_MAX_DRAFT ? PROTO_MAX_DRAFT : sp.n_draft;
            memcpy(m->accepted, sp.accepted, sizeof sp.accepted);
            memcpy(m->accepted_lp, sp.accepted_lp, sizeof sp.accepted_lp);
            memcpy(m->drafts, sp.drafts, sizeof sp.drafts);
        }
        {   /* prompt logprobs: after the fixed part */
            const uint8_t *q = p + wire_bytes(&seqs[i]) - wire_plp_bytes(&seqs[i]);
            const int npl = proto_seq_plp_rows(&seqs[i]), ntp = wire_plp_top(&seqs[i]);
            for (int k = 0; k < npl && merged_plp; k++) {
                wire_res_t y;
                memcpy(&y, q, sizeof y);
                proto_plp_t *e = merged_plp++;
                memset(e, 0, sizeof *e);
                e->token = y.token, e->logprob = y.logprob;
                e->n_top = y.n_top == ntp && ntp <= PROTO_MAX_LOGPROBS ? ntp : 0;
                for (int j = 0; j < e->n_top; j++) {
                    memcpy(&e->top_ids[j], q + sizeof y + 8u * (size_t)j, 4);
                    memcpy(&e->top_logprobs[j], q + sizeof y + 8u * (size_t)j + 4, 4);
                }
                q += sizeof y + 8u * (size_t)ntp;
            }
        }
        next[o] += (int)wire_bytes(&seqs[i]);
    }
    return MS_OK;
}
