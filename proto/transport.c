/* transport.c — control-plane messages over MPI (transport.h).
 *
 * Ordering: every rank calls the same collectives in the same order on the
 * link's communicator: per step, Ibcast(header) [+ Bcast(body)], then
 * Gatherv(results); at the end Ibcast(SHUTDOWN header). Rank 0 posts the
 * header with MPI_Ibcast too, because a nonblocking collective never matches
 * a blocking one. */
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
    proto_result_t *send, *recv;       /* gather staging */
    size_t send_cap, recv_cap;
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
    if (!l->counts || !l->displs) {
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
    free(l);
}

int proto_link_rank(const proto_link_t *l) { return l->rank; }
int proto_link_size(const proto_link_t *l) { return l->size; }

static ms_status_t bcast_hdr_root(proto_link_t *l, proto_hdr_t *h)
{
    MPI_Request rq;
    MPI_CHECK(MPI_Ibcast(h, (int)sizeof *h, MPI_BYTE, 0, l->comm, &rq));
    MPI_CHECK(MPI_Wait(&rq, MPI_STATUS_IGNORE));
    return MS_OK;
}

ms_status_t proto_send_plan(proto_link_t *l, const proto_plan_t *plan)
{
    if (plan->hdr.length > PROTO_MAX_MSG)
        return MS_ERR(MS_ERR_INTERNAL, "proto: plan of %u bytes exceeds the %u limit", plan->hdr.length, PROTO_MAX_MSG);
    proto_hdr_t h = plan->hdr;
    MS_TRY(bcast_hdr_root(l, &h));
    if (l->size > 1)
        MPI_CHECK(MPI_Bcast((void *)((const uint8_t *)plan + sizeof h), (int)(h.length - sizeof h), MPI_BYTE, 0,
                            l->comm));
    return MS_OK;
}

ms_status_t proto_send_shutdown(proto_link_t *l, uint32_t step)
{
    proto_hdr_t h = proto_hdr_make(PROTO_MSG_SHUTDOWN, sizeof h, step);
    return bcast_hdr_root(l, &h);
}

/* Complete a request without holding a core: poll hot for a few
 * microseconds (a busy server's next plan is usually already on its way),
 * then sleep with exponential backoff up to 1 ms (an idle server wakes each
 * rank at most ~1000 times a second). */
static ms_status_t wait_idle(MPI_Request *rq)
{
    long sleep_ns = 2000;
    for (int spins = 0;; spins++) {
        int done = 0;
        MPI_CHECK(MPI_Test(rq, &done, MPI_STATUS_IGNORE));
        if (done) return MS_OK;
        if (spins < 64) continue;
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000) sleep_ns *= 2;
    }
}

ms_status_t proto_recv(proto_link_t *l, const proto_plan_t **plan)
{
    proto_hdr_t h;
    MPI_Request rq;
    MPI_CHECK(MPI_Ibcast(&h, (int)sizeof h, MPI_BYTE, 0, l->comm, &rq));
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
    MPI_CHECK(MPI_Bcast(l->buf + sizeof h, (int)(h.length - sizeof h), MPI_BYTE, 0, l->comm));
    MS_TRY(proto_plan_check(l->buf, h.length));
    *plan = (const proto_plan_t *)l->buf;
    return MS_OK;
}

static bool grow_results(proto_result_t **p, size_t *cap, size_t n)
{
    if (n <= *cap) return true;
    proto_result_t *q = realloc(*p, sizeof *q * n);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

ms_status_t proto_gather_results(proto_link_t *l, const proto_plan_t *plan, const proto_result_t *mine,
                                 ms_status_t my_status, proto_result_t *merged, proto_step_status_t *st)
{
    const proto_seq_t *seqs = proto_plan_seqs(plan);
    int n = plan->n_seqs;
    /* What I send: one status record, then my owned results in plan order. */
    int n_mine = 0;
    for (int i = 0; i < n; i++) n_mine += proto_seq_owner(&seqs[i]) == l->rank;
    if (!grow_results(&l->send, &l->send_cap, (size_t)n_mine + 1))
        return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for results");
    memset(&l->send[0], 0, sizeof l->send[0]);
    l->send[0].slot = -1;
    l->send[0].token = (int32_t)my_status;
    l->send[0].n_top = l->rank;
    int k = 1;
    for (int i = 0; i < n; i++) {
        if (proto_seq_owner(&seqs[i]) != l->rank) continue;
        if (mine && my_status == MS_OK) {
            l->send[k] = mine[i];
        } else {
            memset(&l->send[k], 0, sizeof l->send[k]);
            l->send[k].slot = seqs[i].slot;
            l->send[k].token = -1;
        }
        k++;
    }

    if (l->rank != 0) {
        MPI_CHECK(MPI_Gatherv(l->send, (int)(sizeof(proto_result_t) * (size_t)k), MPI_BYTE, NULL, NULL, NULL, MPI_BYTE,
                              0, l->comm));
        return MS_OK;
    }

    for (int r = 0; r < l->size; r++) l->counts[r] = 1;
    for (int i = 0; i < n; i++) {
        int o = proto_seq_owner(&seqs[i]);
        if (o < 0 || o >= l->size) return MS_ERR(MS_ERR_INTERNAL, "proto: sequence %d owned by rank %d", i, o);
        l->counts[o]++;
    }
    size_t total = 0;
    for (int r = 0; r < l->size; r++) {
        l->displs[r] = (int)(total * sizeof(proto_result_t));
        total += (size_t)l->counts[r];
        l->counts[r] *= (int)sizeof(proto_result_t);
    }
    if (!grow_results(&l->recv, &l->recv_cap, total)) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for results");
    MPI_CHECK(MPI_Gatherv(l->send, (int)(sizeof(proto_result_t) * (size_t)k), MPI_BYTE, l->recv, l->counts, l->displs,
                          MPI_BYTE, 0, l->comm));

    st->failed_rank = -1;
    st->failed_status = MS_OK;
    int *next = l->counts; /* reused: per rank, the next result to take */
    for (int r = 0; r < l->size; r++) {
        const proto_result_t *s0 = &l->recv[l->displs[r] / sizeof(proto_result_t)];
        if (s0->slot != -1 || s0->n_top != r)
            return MS_ERR(MS_ERR_INTERNAL, "proto: rank %d sent a malformed result block", r);
        if (s0->token != MS_OK && st->failed_rank < 0) {
            st->failed_rank = r;
            st->failed_status = (ms_status_t)s0->token;
        }
        next[r] = 1;
    }
    for (int i = 0; i < n; i++) {
        int o = proto_seq_owner(&seqs[i]);
        merged[i] = l->recv[l->displs[o] / sizeof(proto_result_t) + (size_t)next[o]++];
    }
    return MS_OK;
}
