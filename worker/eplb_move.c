/* eplb_move.c — staging and flipping expert records for the online load
 * balancer (eplb_move.h).
 *
 * The data plane's record moves (comm move_start) hand MPI host addresses.
 * On a device backend the records cross through pinned host buffers, on a
 * side stream so no step waits for them, in three phases polled by
 * eplb_move_ready: (1) the records this rank sends are downloaded to pinned
 * memory; once that event has passed, (2) the transfers are posted and
 * tested; once they completed, (3) the received records are uploaded into
 * the device staging records, and the batch is ready when that event has
 * passed. On the CPU backend records are host memory and phase 2 alone runs;
 * MOESERVE_EPLB_HOST_STAGING=1 forces the staged path there (the tests run
 * the GPU's code path on CPU ranks with it).
 *
 * When every EP rank of the group is a process of this host on a backend
 * with IPC (CUDA: several ranks on one GPU, or GPUs of one node), no record
 * crosses MPI or host memory: each rank maps its peers' weight allocations
 * once (eplb_move_create, handles exchanged over the EP group) and a
 * receiver pulls the record it needs with one device copy on the side
 * stream, then waits on its event (phase 3 only). The sender does nothing:
 * its record cannot change before the flip, which waits for every rank's
 * copies. Slot records sit at the same offset of the weight allocation on
 * every rank (same model, same layout), checked at the exchange. */
#include "worker/eplb_move.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"

struct eplb_move {
    engine_t *e;
    const kern_ops_t *k;
    kern_ctx_t *cx;
    comm_t *comm;
    int max_layers, spr, S, L, ep, ep_rank, groups;
    size_t rec;           /* record bytes */
    void *staging;        /* max_layers * spr records */
    /* the batch */
    bool busy;
    int n_layers, layers[64];
    int32_t *target;      /* [L][S] copy */
    int *n_local;         /* [max_layers] slots of mine changing per batch layer */
    int *local;           /* [max_layers][spr] which */
    void **staged;        /* [max_layers][spr] their staging records */
    comm_xfer_t *x;       /* [max_layers * 2 * S] */
    int nx;
    comm_move_t *mv;
    bool hooked;          /* this batch met the test hook (fail_hook) */
    /* host staging (device backends): see the top of the file */
    bool host_stage;
    int phase;            /* 1 downloads in flight, 2 transfers in flight, 3 uploads in flight */
    kern_ctx_t *side;     /* the copies' stream */
    kern_event_t ev;
    void *h_send, *h_recv;/* pinned, cap_send / cap_recv records */
    int cap_send, cap_recv;
    void **dev_dst;       /* [max_layers * S] the staging record of each received one */
    /* CUDA IPC (every EP peer on this host): peers' weight allocations mapped here, [ep] (own: NULL) */
    void **peer_base;
    bool ipc;
    int job_slots;
    int64_t job_bytes;
};

/* What each EP rank publishes at creation: its host, its weight layout, its allocation's IPC handle. */
typedef struct {
    uint64_t host;   /* FNV-1a of gethostname */
    uint64_t bytes;  /* weight allocation size: equal layouts have equal sizes */
    int32_t ok;      /* 1: the handle is valid */
    int32_t pad_;
    uint8_t handle[KERN_IPC_HANDLE_BYTES];
} ipc_card_t;

static uint64_t host_hash(void)
{
    char name[256] = "";
    gethostname(name, sizeof name - 1);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

/* Collective over the EP group (every rank calls it): map the peers' weight allocations when every peer is
 * on this host with the same layout and IPC works everywhere; otherwise leave m->ipc false (the staged path).
 * MOESERVE_EPLB_NO_IPC=1 keeps the staged path (tests, comparisons). */
static ms_status_t ipc_setup(eplb_move_t *m)
{
    const char *no = getenv("MOESERVE_EPLB_NO_IPC");
    if (m->ep < 2 || !m->comm->ops->allgather_host) return MS_OK;
    ipc_card_t mine = {.host = host_hash()}, *all = calloc((size_t)(unsigned)m->ep, sizeof *all);
    if (!all) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
    size_t bytes;
    void *base = engine_weights_base(m->e, &bytes);
    mine.bytes = bytes;
    mine.ok = !(no && !strcmp(no, "1")) && m->k->ipc_export && m->k->ipc_import &&
              m->k->ipc_export(base, mine.handle) == MS_OK;
    ms_status_t st = m->comm->ops->allgather_host(m->comm, COMM_EP, &mine, sizeof mine, all);
    bool usable = st == MS_OK;
    for (int r = 0; r < m->ep && usable; r++)
        usable = all[r].ok && all[r].host == mine.host && all[r].bytes == mine.bytes;
    int opened = 1;
    if (usable) {
        m->peer_base = calloc((size_t)(unsigned)m->ep, sizeof *m->peer_base);
        opened = m->peer_base != NULL;
        for (int r = 0; r < m->ep && opened; r++)
            if (r != m->ep_rank) opened = m->k->ipc_import(all[r].handle, &m->peer_base[r]) == MS_OK;
    }
    /* every rank must take the same path: agree on whether all imports worked */
    int *oks = calloc((size_t)(unsigned)m->ep, sizeof *oks);
    if (usable && oks && m->comm->ops->allgather_host(m->comm, COMM_EP, &opened, sizeof opened, oks) == MS_OK) {
        m->ipc = true;
        for (int r = 0; r < m->ep; r++) m->ipc = m->ipc && oks[r];
    }
    if (!m->ipc && m->peer_base) {
        for (int r = 0; r < m->ep; r++)
            if (m->peer_base[r]) m->k->ipc_close(m->peer_base[r]);
        free(m->peer_base);
        m->peer_base = NULL;
    }
    free(oks), free(all);
    return st;
}

ms_status_t eplb_move_create(engine_t *e, int max_layers, eplb_move_t **out)
{
    const placement_t *p = engine_placement(e);
    if (!p) return MS_ERR(MS_ERR_INVALID, "eplb: a dense model has nothing to move");
    if (max_layers < 1) max_layers = 1;
    if (max_layers > 64) max_layers = 64;
    eplb_move_t *m = calloc(1, sizeof *m);
    if (!m) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
    m->e = e;
    engine_backend(e, &m->k, &m->cx, &m->comm);
    m->max_layers = max_layers, m->spr = p->slots_per_rank, m->S = p->n_slots, m->L = p->n_layers;
    m->ep = p->ep_size, m->ep_rank = comm_rank(m->comm, COMM_EP);
    m->groups = comm_size(m->comm, COMM_TP) / m->ep;
    for (int l = 0; l < m->L && !m->rec; l++) engine_slot_record(e, l, 0, &m->rec);
    ms_status_t st = MS_OK;
    m->target = malloc(sizeof *m->target * (size_t)m->L * m->S);
    m->n_local = calloc((size_t)max_layers, sizeof *m->n_local);
    m->local = malloc(sizeof *m->local * (size_t)max_layers * m->spr);
    m->staged = malloc(sizeof *m->staged * (size_t)max_layers * m->spr);
    m->x = malloc(sizeof *m->x * (size_t)max_layers * 2 * m->S);
    m->dev_dst = malloc(sizeof *m->dev_dst * (size_t)max_layers * m->S);
    const char *hs = getenv("MOESERVE_EPLB_HOST_STAGING");
    m->host_stage = strcmp(m->k->name, "cpu") != 0 || (hs && !strcmp(hs, "1"));
    if (!m->target || !m->n_local || !m->local || !m->staged || !m->x || !m->dev_dst || !m->rec) {
        st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
        goto fail;
    }
    MS_TRY_GOTO(st, m->k->alloc(m->rec * (size_t)max_layers * m->spr, &m->staging), fail);
    if (m->host_stage) {
        MS_TRY_GOTO(st, m->k->ctx_create_side(m->cx, 0, &m->side), fail);
        MS_TRY_GOTO(st, m->k->event_create(m->side, &m->ev), fail);
        MS_TRY_GOTO(st, ipc_setup(m), fail);
    }
    *out = m;
    return MS_OK;
fail:
    eplb_move_destroy(m);
    return st;
}

void eplb_move_destroy(eplb_move_t *m)
{
    if (!m) return;
    eplb_move_abort(m);
    if (m->peer_base)
        for (int r = 0; r < m->ep; r++)
            if (m->peer_base[r]) m->k->ipc_close(m->peer_base[r]);
    free(m->peer_base);
    if (m->staging) m->k->free(m->staging);
    if (m->ev) m->k->event_destroy(m->ev);
    if (m->side) m->k->ctx_destroy(m->side);
    if (m->h_send) m->k->host_free(m->h_send);
    if (m->h_recv) m->k->host_free(m->h_recv);
    free(m->target), free(m->n_local), free(m->local), free(m->staged), free(m->x), free(m->dev_dst);
    free(m);
}

bool eplb_move_busy(const eplb_move_t *m) { return m && m->busy; }

bool eplb_move_host_staged(const eplb_move_t *m) { return m && m->host_stage && !m->ipc; }

bool eplb_move_ipc(const eplb_move_t *m) { return m && m->ipc; }

engine_t *eplb_move_engine(eplb_move_t *m) { return m->e; }

/* Slot of rank r (its global range) holding expert x in row p, or -1. */
static int held_by(const int32_t *p, int spr, int r, int x)
{
    for (int s = r * spr; s < (r + 1) * spr; s++)
        if (p[s] == x) return s;
    return -1;
}

/* Pinned room for n records in *buf (grown by reallocation, kept between batches). */
static ms_status_t host_room(eplb_move_t *m, void **buf, int *cap, int n)
{
    if (n <= *cap) return MS_OK;
    if (*buf) m->k->host_free(*buf);
    *buf = NULL, *cap = 0;
    MS_TRY(m->k->host_alloc(m->rec * (size_t)n, buf));
    *cap = n;
    return MS_OK;
}

/* Phase 1: point the transfers at pinned buffers; download the records sent on the side stream. */
static ms_status_t stage_out(eplb_move_t *m)
{
    int ns = 0, nr = 0;
    for (int i = 0; i < m->nx; i++) ns += m->x[i].send, nr += !m->x[i].send;
    MS_TRY(host_room(m, &m->h_send, &m->cap_send, ns));
    MS_TRY(host_room(m, &m->h_recv, &m->cap_recv, nr));
    ns = nr = 0;
    for (int i = 0; i < m->nx; i++) {
        comm_xfer_t *x = &m->x[i];
        if (x->send) {
            void *h = (char *)m->h_send + m->rec * (size_t)ns++;
            MS_TRY(m->k->download(m->side, h, x->buf, m->rec));
            x->buf = h;
        } else {
            m->dev_dst[nr] = x->buf;
            x->buf = (char *)m->h_recv + m->rec * (size_t)nr++;
        }
    }
    return m->k->event_record(m->side, m->ev);
}

/* Phase 3: upload the received records into their staging records on the side stream. */
static ms_status_t stage_in(eplb_move_t *m)
{
    int nr = 0;
    for (int i = 0; i < m->nx; i++)
        if (!m->x[i].send) MS_TRY(m->k->upload(m->side, m->dev_dst[nr++], m->x[i].buf, m->rec));
    return m->k->event_record(m->side, m->ev);
}

ms_status_t eplb_move_start(eplb_move_t *m, const int *layers, int n, const int32_t *target)
{
    if (m->busy) return MS_ERR(MS_ERR_INTERNAL, "eplb: a move batch is already in flight");
    if (n > m->max_layers) n = m->max_layers;
    memcpy(m->target, target, sizeof *m->target * (size_t)m->L * m->S);
    const placement_t *pl = engine_placement(m->e);
    int nx = 0, pulled = 0;
    m->job_slots = 0, m->job_bytes = 0;
    ms_status_t st = MS_OK;
    for (int b = 0; b < n; b++) {
        const int l = layers[b];
        m->layers[b] = l;
        m->n_local[b] = 0;
        const int32_t *cur = pl->phy2log + (size_t)l * m->S, *tgt = target + (size_t)l * m->S;
        for (int s = 0; s < m->S; s++) {
            if (cur[s] == tgt[s]) continue;
            const int d = s / m->spr, x = tgt[s];
            m->job_slots += m->groups;
            int src_slot = held_by(cur, m->spr, d, x), q = d;
            if (src_slot < 0) /* the lowest EP rank holding it sends */
                for (q = 0; q < m->ep && (src_slot = held_by(cur, m->spr, q, x)) < 0; q++) {}
            if (src_slot < 0) {
                st = MS_ERR(MS_ERR_INVALID, "eplb: layer %d: expert %d is held by no rank", l, x);
                goto fail;
            }
            if (q != d) m->job_bytes += (int64_t)m->rec * m->groups;
            if (d == m->ep_rank) {
                const int i = m->n_local[b]++;
                m->local[b * m->spr + i] = s - d * m->spr;
                void *stg = (char *)m->staging + m->rec * ((size_t)b * m->spr + i);
                m->staged[b * m->spr + i] = stg;
                size_t bytes;
                if (q == d) {
                    MS_TRY_GOTO(st, m->k->copy(m->cx, stg, engine_slot_record(m->e, l, src_slot - d * m->spr, &bytes),
                                               m->rec), fail);
                } else if (m->ipc) { /* pull it from the peer's mapped weights, at our own record's offset */
                    size_t wb;
                    const size_t off = (size_t)((char *)engine_slot_record(m->e, l, src_slot - q * m->spr, &bytes) -
                                                (char *)engine_weights_base(m->e, &wb));
                    MS_TRY_GOTO(st, m->k->copy(m->side, stg, (char *)m->peer_base[q] + off, m->rec), fail);
                    pulled++;
                } else {
                    m->x[nx++] = (comm_xfer_t){.peer = q, .send = 0, .tag = l * m->S + s, .buf = stg, .bytes = m->rec};
                }
            } else if (q == m->ep_rank && !m->ipc) { /* under IPC the receiver pulls */
                size_t bytes;
                m->x[nx++] = (comm_xfer_t){.peer = d, .send = 1, .tag = l * m->S + s,
                                           .buf = engine_slot_record(m->e, l, src_slot - q * m->spr, &bytes),
                                           .bytes = m->rec};
            }
        }
    }
    m->n_layers = n, m->nx = nx;
    if (nx > 0 && !m->comm->ops->move_start) {
        st = MS_ERR(MS_ERR_INVALID, "eplb: this data plane cannot move records between ranks");
        goto fail;
    }
    /* local copies above are device work: done before any peer reads a record we send */
    MS_TRY_GOTO(st, m->k->synchronize(m->cx), fail);
    m->phase = 2;
    if (pulled > 0) {
        MS_TRY_GOTO(st, m->k->event_record(m->side, m->ev), fail);
        m->phase = 3;
    } else if (nx > 0 && m->host_stage) {
        MS_TRY_GOTO(st, stage_out(m), fail);
        m->phase = 1;
    } else if (nx > 0) {
        MS_TRY_GOTO(st, m->comm->ops->move_start(m->comm, COMM_EP, m->x, nx, &m->mv), fail);
    }
    m->busy = true, m->hooked = false;
    return MS_OK;
fail:
    m->n_layers = 0;
    return st;
}

/* Test hook: MOESERVE_EPLB_FAIL_MOVE=N fails, on EP rank 1, the Nth batch (from 0) that moves records
 * between ranks, when its transfers complete (r: what they report). */
static int fail_hook(eplb_move_t *m, int r)
{
    static int fail_batch = -2, batches;
    if (fail_batch == -2) {
        const char *v = getenv("MOESERVE_EPLB_FAIL_MOVE");
        fail_batch = v && *v ? atoi(v) : -1;
    }
    if (r == 0 || m->job_bytes == 0 || m->hooked) return r;
    m->hooked = true;
    if (r == 1 && fail_batch >= 0 && m->ep_rank == 1 && batches == fail_batch) r = -1;
    batches++;
    return r;
}

int eplb_move_ready(eplb_move_t *m)
{
    if (!m->busy) return -1;
    if (m->phase == 1) {
        const int q = m->k->event_query(m->ev);
        if (q <= 0) return q;
        if (m->comm->ops->move_start(m->comm, COMM_EP, m->x, m->nx, &m->mv) != MS_OK) return -1;
        m->phase = 2;
    }
    if (m->phase == 3) return fail_hook(m, m->k->event_query(m->ev));
    if (!m->mv) return fail_hook(m, 1);
    const int r = m->comm->ops->move_test(m->comm, m->mv);
    if (r == 1 && m->host_stage) {
        if (stage_in(m) != MS_OK) return -1;
        m->phase = 3;
        return fail_hook(m, m->k->event_query(m->ev));
    }
    return fail_hook(m, r);
}

ms_status_t eplb_move_flip(eplb_move_t *m, int *slots, int64_t *bytes)
{
    ms_status_t st = MS_OK;
    for (int b = 0; b < m->n_layers && st == MS_OK; b++) {
        const int l = m->layers[b];
        st = engine_placement_flip(m->e, l, m->target + (size_t)l * m->S, m->local + b * m->spr,
                                   m->staged + b * m->spr, m->n_local[b]);
    }
    *slots = m->job_slots, *bytes = m->job_bytes;
    eplb_move_abort(m); /* frees the transfers, ends the batch */
    return st;
}

void eplb_move_abort(eplb_move_t *m)
{
    /* copies still in flight read or write the pinned buffers the next batch reuses */
    if (m->side && m->busy) (void)m->k->synchronize(m->side);
    if (m->mv) m->comm->ops->move_free(m->comm, m->mv);
    m->mv = NULL;
    m->busy = false;
    m->n_layers = 0, m->nx = 0, m->phase = 0;
}
