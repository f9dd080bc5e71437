/* comm_mpi.c — the data plane over MPI (comm_mpi.h), for ranks of any
 * backend. Buffers are the backend's device memory: every call moves what it
 * needs through pinned host mirrors on the step's stream (download,
 * synchronize, MPI on host memory, upload) — on the CPU backend those are
 * memcpys — so several ranks may share one GPU. With a CUDA-aware Open MPI
 * (MPIX_Query_cuda_support() == 1 at creation) the plain all-to-all and
 * all-gather hand device pointers to MPI instead; the MoE exchange always
 * stages, since it reads its plan on the host. Counts are moved in rows
 * with a contiguous datatype of row_bytes, so an int count covers 2^31 rows
 * rather than 2^31 bytes. */
#include "worker/comm_mpi.h"
#include "worker/comm_moe_plan.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

typedef struct {
    MPI_Comm comm[COMM_N_GROUPS];
    int rank[COMM_N_GROUPS], size[COMM_N_GROUPS];
    const kern_ops_t *k;
    int *counts, *displs;   /* scratch, max group size */
    int64_t *c64;           /* scratch for counts */
    float *gather;          /* allreduce scratch: size * n floats */
    size_t gather_cap;
    comm_moe_plan_t moe;    /* MoE: kept from a dispatch for its combine */
    char *stage;            /* received rows in source order (pinned mirror) */
    size_t stage_cap;
    /* pinned host mirrors of device buffers (allocated with hk, the ops of the first cx seen) */
    const kern_ops_t *hk;
    char *h_a, *h_b, *h_c;  /* a: send rows / allreduce values / x; b: receive rows / back; c: MoE plan ints */
    size_t h_a_cap, h_b_cap, h_c_cap;
    int cuda_aware;         /* MPI takes device pointers (dense all-to-all / all-gather only) */
    MPI_Comm move;          /* EPLB record moves: a dup of COMM_EP whose errors return (a failed move
                             * leaves the old placement instead of ending the job) */
} mpic_t;

/* Grow a pinned mirror; contents are not kept. */
static ms_status_t hgrow(mpic_t *m, kern_ctx_t *cx, char **p, size_t *cap, size_t need)
{
    if (need <= *cap) return MS_OK;
    if (!m->hk) m->hk = cx->ops;
    need = need + need / 4 + 256;
    void *q = NULL;
    MS_TRY(m->hk->host_alloc(need, &q));
    if (*p) m->hk->host_free(*p);
    *p = q, *cap = need;
    return MS_OK;
}

static int mpic_rank(const comm_t *c, comm_group_t g) { return ((const mpic_t *)c->impl)->rank[g]; }
static int mpic_size(const comm_t *c, comm_group_t g) { return ((const mpic_t *)c->impl)->size[g]; }

static ms_status_t mpic_allreduce(comm_t *c, comm_group_t g, void *buf, int64_t n, ms_dtype_t dt, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    int size = m->size[g];
    if (size == 1 || n == 0) return MS_OK;
    if (dt != MS_DT_F32) return MS_ERR(MS_ERR_UNSUPPORTED, "comm_mpi: allreduce of %s (only F32)", ms_dtype_name(dt));
    if (n > INT_MAX) return MS_ERR(MS_ERR_INVALID, "comm_mpi: allreduce of %lld elements", (long long)n);
    size_t need = (size_t)size * (size_t)n;
    if (need > m->gather_cap) {
        float *p = realloc(m->gather, need * sizeof(float));
        if (!p) return MS_ERR(MS_ERR_NOMEM, "comm_mpi: out of memory for an allreduce of %lld floats", (long long)n);
        m->gather = p;
        m->gather_cap = need;
    }
    const size_t bytes = sizeof(float) * (size_t)n;
    float *h = buf; /* cx NULL: host buffers (CPU callers without a context) */
    if (cx) {
        MS_TRY(hgrow(m, cx, &m->h_a, &m->h_a_cap, bytes));
        MS_TRY(cx->ops->download(cx, m->h_a, buf, bytes));
        MS_TRY(cx->ops->synchronize(cx));
        h = (float *)m->h_a;
    }
    MPI_CHECK(MPI_Allgather(h, (int)n, MPI_FLOAT, m->gather, (int)n, MPI_FLOAT, m->comm[g]));
    for (int64_t i = 0; i < n; i++) {
        float acc = m->gather[i];
        for (int r = 1; r < size; r++) acc += m->gather[(size_t)r * (size_t)n + (size_t)i];
        h[i] = acc;
    }
    return cx ? cx->ops->upload(cx, buf, h, bytes) : MS_OK;
}

static ms_status_t mpic_counts(comm_t *c, comm_group_t g, const int64_t *send, int64_t *recv)
{
    mpic_t *m = c->impl;
    MPI_CHECK(MPI_Alltoall(send, 1, MPI_INT64_T, recv, 1, MPI_INT64_T, m->comm[g]));
    return MS_OK;
}

static ms_status_t rows_to_int(mpic_t *m, int size, const int64_t *rows, int *counts, int *displs)
{
    int64_t off = 0;
    for (int r = 0; r < size; r++) {
        if (rows[r] < 0 || rows[r] > INT_MAX || off > INT_MAX)
            return MS_ERR(MS_ERR_INVALID, "comm_mpi: %lld rows for rank %d out of range", (long long)rows[r], r);
        counts[r] = (int)rows[r];
        displs[r] = (int)off;
        off += rows[r];
    }
    return MS_OK;
}

static ms_status_t row_type(size_t row_bytes, MPI_Datatype *t)
{
    if (row_bytes == 0 || row_bytes > INT_MAX) return MS_ERR(MS_ERR_INVALID, "comm_mpi: row of %zu bytes", row_bytes);
    MPI_CHECK(MPI_Type_contiguous((int)row_bytes, MPI_BYTE, t));
    MPI_CHECK(MPI_Type_commit(t));
    return MS_OK;
}

/* MPI_Alltoallv of rows between buffers MPI can read (host, or device with CUDA-aware MPI). */
static ms_status_t mpic_a2av_raw(mpic_t *m, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                                 const int64_t *recv_rows, size_t row_bytes)
{
    int size = m->size[g];
    int *sc = m->counts, *sd = m->displs, *rc = m->counts + size, *rd = m->displs + size;
    MS_TRY(rows_to_int(m, size, send_rows, sc, sd));
    MS_TRY(rows_to_int(m, size, recv_rows, rc, rd));
    MPI_Datatype t;
    MS_TRY(row_type(row_bytes, &t));
    int rc_ = MPI_Alltoallv(send, sc, sd, t, recv, rc, rd, t, m->comm[g]);
    MPI_Type_free(&t);
    if (rc_ != MPI_SUCCESS) return MS_ERR(MS_ERR_MPI, "comm_mpi: MPI_Alltoallv failed: MPI error %d", rc_);
    return MS_OK;
}

static int64_t rows_sum(const int64_t *rows, int n)
{
    int64_t s = 0;
    for (int r = 0; r < n; r++) s += rows[r] > 0 ? rows[r] : 0;
    return s;
}

static ms_status_t mpic_alltoallv(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                                  const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    if (!cx) return mpic_a2av_raw(m, g, send, send_rows, recv, recv_rows, row_bytes); /* host buffers */
    MS_TRY(cx->ops->synchronize(cx)); /* the rows to send are written */
    if (m->cuda_aware) return mpic_a2av_raw(m, g, send, send_rows, recv, recv_rows, row_bytes);
    const size_t sb = (size_t)rows_sum(send_rows, m->size[g]) * row_bytes,
                 rb = (size_t)rows_sum(recv_rows, m->size[g]) * row_bytes;
    MS_TRY(hgrow(m, cx, &m->h_a, &m->h_a_cap, sb + 1));
    MS_TRY(hgrow(m, cx, &m->h_b, &m->h_b_cap, rb + 1));
    MS_TRY(cx->ops->download(cx, m->h_a, send, sb));
    MS_TRY(cx->ops->synchronize(cx));
    MS_TRY(mpic_a2av_raw(m, g, m->h_a, send_rows, m->h_b, recv_rows, row_bytes));
    return cx->ops->upload(cx, recv, m->h_b, rb);
}

static ms_status_t mpic_allgatherv(comm_t *c, comm_group_t g, const void *send, void *recv, const int64_t *recv_rows,
                                   size_t row_bytes, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    int size = m->size[g], me = m->rank[g];
    int *rc = m->counts, *rd = m->displs;
    MS_TRY(rows_to_int(m, size, recv_rows, rc, rd));
    const bool direct = !cx || m->cuda_aware; /* cx NULL: host buffers */
    if (cx) MS_TRY(cx->ops->synchronize(cx));
    const size_t mine = (size_t)rd[me] * row_bytes, mb = (size_t)rc[me] * row_bytes;
    char *rbuf = recv;
    if (!direct) { /* this rank's rows into their place in the mirror, then in place */
        const size_t all = (size_t)rows_sum(recv_rows, size) * row_bytes;
        MS_TRY(hgrow(m, cx, &m->h_b, &m->h_b_cap, all + 1));
        MS_TRY(cx->ops->download(cx, m->h_b + mine, send, mb));
        MS_TRY(cx->ops->synchronize(cx));
        rbuf = m->h_b;
    }
    const void *sbuf = MPI_IN_PLACE;
    if (direct && (const char *)send != (const char *)recv + mine) sbuf = send;
    MPI_Datatype t;
    MS_TRY(row_type(row_bytes, &t));
    int rc_ = MPI_Allgatherv(sbuf, rc[me], t, rbuf, rc, rd, t, m->comm[g]);
    MPI_Type_free(&t);
    if (rc_ != MPI_SUCCESS) return MS_ERR(MS_ERR_MPI, "comm_mpi: MPI_Allgatherv failed: MPI error %d", rc_);
    if (direct) return MS_OK;
    return cx->ops->upload(cx, recv, m->h_b, (size_t)rows_sum(recv_rows, size) * row_bytes);
}

/* ---- MoE dispatch / combine ----
 * The plan (slot_of_pair, rank_in_slot, slot_counts) and the token rows come
 * to pinned host mirrors in one batch of downloads and one synchronize; rows
 * move around two MPI_Alltoallv calls; received rows go to the device one
 * contiguous run per (source, local slot). The per-slot counts are exchanged
 * here, inside the transport (one MPI_Alltoall); the slot ids no longer
 * travel: a row's slot is where it lands.
 * Send order: by global slot (so by destination rank), then by rank_in_slot.
 * A local slot j gets source 0's rows first, then source 1's, ...: row
 * (j, Σ_{s'<s} in[s'][j] + i) for source s's i-th row. */

static ms_status_t mpic_moe_dispatch(comm_t *c, comm_group_t g, comm_moe_t *mo, const bf16_t *x, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    const kern_ops_t *k = cx->ops;
    const int size = m->size[g], spr = mo->place.slots_per_rank, S = mo->place.n_slots;
    if (size == 1) return comm_moe_dispatch_self(mo, x, cx);
    const size_t row = sizeof(bf16_t) * (size_t)mo->D;
    const int64_t P = (int64_t)mo->T * mo->K;
    comm_moe_plan_t *pl = &m->moe;
    /* plan ints: slot_counts [S] | slot_of_pair | rank_in_slot | row_of_pair [P each] | recv_count [spr] */
    MS_TRY(hgrow(m, cx, &m->h_c, &m->h_c_cap, sizeof(int32_t) * (size_t)(3 * P + spr + S) + 1));
    MS_TRY(hgrow(m, cx, &m->h_a, &m->h_a_cap, (size_t)mo->T * row + 1));
    MS_TRY(hgrow(m, cx, &m->h_b, &m->h_b_cap, (size_t)P * row + 1));
    int32_t *scnt = (int32_t *)m->h_c, *sop = scnt + S, *ris = sop + P, *rop = ris + P, *rcnt = rop + P;
    MS_TRY(k->download(cx, m->h_a, x, (size_t)mo->T * row)); /* lands by the exchange's synchronize */
    MS_TRY(comm_moe_plan_exchange(pl, mo, size, m->comm[g], cx, scnt));
    for (int64_t p = 0; p < P; p++) { /* the send buffer in global-slot order */
        const int32_t sl = sop[p];
        rop[p] = -1;
        if (sl < 0) continue;
        const int32_t j = pl->start[sl] + ris[p];
        memcpy(m->h_b + (size_t)j * row, m->h_a + (size_t)(p / mo->K) * row, row);
        rop[p] = j; /* where combine finds it in `back` */
    }
    MS_TRY(hgrow(m, cx, &m->stage, &m->stage_cap, (size_t)pl->recv_total * row + 1));
    MS_TRY(mpic_a2av_raw(m, g, m->h_b, pl->srows, m->stage, pl->rrows, row));
    /* place rows by local slot; counts beyond cap are a fault (the excess is dropped, never silently) */
    const char *src = m->stage;
    for (int s = 0; s < size; s++)
        for (int j = 0; j < spr; j++) {
            int32_t keep;
            const int64_t r0 = comm_moe_plan_run(pl, mo->cap, s, j, &keep);
            if (keep) MS_TRY(k->upload(cx, (char *)mo->recv + (size_t)r0 * row, src, (size_t)keep * row));
            src += (size_t)pl->in[(size_t)s * spr + j] * row;
        }
    bool over = false;
    for (int j = 0; j < spr; j++) {
        const int64_t n = comm_moe_plan_slot_rows(pl, j);
        if (n > mo->cap) {
            (void)MS_ERR(MS_ERR_INVALID, "comm_mpi: local slot %d receives %lld rows, capacity is %d (moe_config.max_num_tokens): rows "
                     "dropped, the step faults", j, (long long)n, mo->cap);
            over = true;
        }
        rcnt[j] = (int32_t)(n < mo->cap ? n : mo->cap);
    }
    MS_TRY(k->upload(cx, mo->recv_count, rcnt, sizeof(int32_t) * (size_t)spr));
    MS_TRY(k->upload(cx, mo->row_of_pair, rop, sizeof(int32_t) * (size_t)P));
    if (over && cx->fault) { /* OR the capacity bit into the device fault word */
        uint32_t f = 0;
        MS_TRY(k->download(cx, &f, cx->fault, sizeof f));
        MS_TRY(k->synchronize(cx));
        f |= KERN_FAULT_CAPACITY;
        MS_TRY(k->upload(cx, cx->fault, &f, sizeof f));
    }
    return k->synchronize(cx); /* the mirrors are reused by the next call */
}

static ms_status_t mpic_moe_combine(comm_t *c, comm_group_t g, comm_moe_t *mo, const bf16_t *expert_out, bf16_t *out,
                                    kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    const kern_ops_t *k = cx->ops;
    const int size = m->size[g], spr = mo->place.slots_per_rank;
    if (size == 1) return comm_moe_combine_self(mo, expert_out, out, cx);
    const comm_moe_plan_t *pl = &m->moe;
    const size_t row = sizeof(bf16_t) * (size_t)mo->D;
    const int64_t P = (int64_t)mo->T * mo->K;
    char *dst = m->stage; /* same order as received; a dropped row goes back as zeros (its step faulted) */
    for (int s = 0; s < size; s++)
        for (int j = 0; j < spr; j++) {
            int32_t keep;
            const int64_t r0 = comm_moe_plan_run(pl, mo->cap, s, j, &keep);
            const int64_t n = pl->in[(size_t)s * spr + j];
            if (keep) MS_TRY(k->download(cx, dst, (const char *)expert_out + (size_t)r0 * row, (size_t)keep * row));
            if (n > keep) memset(dst + (size_t)keep * row, 0, (size_t)(n - keep) * row);
            dst += (size_t)n * row;
        }
    MS_TRY(k->synchronize(cx));
    MS_TRY(hgrow(m, cx, &m->h_b, &m->h_b_cap, (size_t)P * row + 1));
    MS_TRY(mpic_a2av_raw(m, g, m->stage, pl->rrows, m->h_b, pl->srows, row));
    MS_TRY(k->upload(cx, mo->back, m->h_b, (size_t)pl->send_total * row));
    MS_TRY(comm_moe_sum(mo, mo->back, out, cx));
    return k->synchronize(cx); /* h_b is reused by the next call */
}

/* ---- EPLB record moves ---- */

struct comm_move {
    int n;
    MPI_Request *rq;
    int failed;
};

static ms_status_t mpic_move_start(comm_t *c, comm_group_t g, const comm_xfer_t *x, int n, comm_move_t **out)
{
    mpic_t *m = c->impl;
    if (g != COMM_EP || m->move == MPI_COMM_NULL)
        return MS_ERR(MS_ERR_INVALID, "comm_mpi: record moves run over the EP group only");
    comm_move_t *mv = calloc(1, sizeof *mv);
    if (!mv || !(mv->rq = malloc(sizeof *mv->rq * (size_t)(n > 0 ? n : 1)))) {
        free(mv);
        return MS_ERR(MS_ERR_NOMEM, "comm_mpi: out of memory for %d record moves", n);
    }
    for (int i = 0; i < n; i++) mv->rq[i] = MPI_REQUEST_NULL;
    mv->n = n;
    for (int i = 0; i < n && !mv->failed; i++) {
        /* records are 256-byte multiples (kern_moe_slots_layout): count in 256-byte units fits an int */
        MPI_Datatype t;
        if (row_type(256, &t) != MS_OK) {
            mv->failed = 1;
            break;
        }
        int cnt = (int)(x[i].bytes / 256);
        int rc = x[i].send ? MPI_Isend(x[i].buf, cnt, t, x[i].peer, x[i].tag, m->move, &mv->rq[i])
                           : MPI_Irecv(x[i].buf, cnt, t, x[i].peer, x[i].tag, m->move, &mv->rq[i]);
        MPI_Type_free(&t);
        if (rc != MPI_SUCCESS || x[i].bytes % 256) mv->failed = 1;
    }
    *out = mv;
    return MS_OK;
}

static int mpic_move_test(comm_t *c, comm_move_t *mv)
{
    (void)c;
    if (mv->failed) return -1;
    int done = 0;
    if (MPI_Testall(mv->n, mv->rq, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) mv->failed = 1;
    return mv->failed ? -1 : done ? 1 : 0;
}

static void mpic_move_free(comm_t *c, comm_move_t *mv)
{
    (void)c;
    if (!mv) return;
    for (int i = 0; i < mv->n; i++)
        if (mv->rq[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&mv->rq[i]);
            MPI_Request_free(&mv->rq[i]);
        }
    free(mv->rq);
    free(mv);
}

static ms_status_t mpic_allgather_host(comm_t *c, comm_group_t g, const void *mine, size_t bytes, void *all)
{
    mpic_t *m = c->impl;
    if (bytes > INT32_MAX) return MS_ERR(MS_ERR_INVALID, "comm_mpi: %zu bytes to gather", bytes);
    if (MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, m->comm[g]) != MPI_SUCCESS)
        return MS_ERR(MS_ERR_MPI, "comm_mpi: MPI_Allgather of %zu bytes failed", bytes);
    return MS_OK;
}

static void mpic_destroy(comm_t *c)
{
    if (!c) return;
    mpic_t *m = c->impl;
    if (m) {
        int fin = 0;
        MPI_Finalized(&fin);
        comm_mpi_groups_free(m->comm);
        if (!fin && m->move != MPI_COMM_NULL) MPI_Comm_free(&m->move);
        free(m->counts);
        free(m->displs);
        free(m->c64);
        free(m->gather);
        comm_moe_plan_free(&m->moe);
        if (m->hk) {
            if (m->stage) m->hk->host_free(m->stage);
            if (m->h_a) m->hk->host_free(m->h_a);
            if (m->h_b) m->hk->host_free(m->h_b);
            if (m->h_c) m->hk->host_free(m->h_c);
        }
        free(m);
    }
    free(c);
}

static const comm_ops_t g_mpi_ops = {
    .rank = mpic_rank,
    .size = mpic_size,
    .allreduce_sum = mpic_allreduce,
    .alltoall_counts = mpic_counts,
    .alltoallv = mpic_alltoallv,
    .allgatherv = mpic_allgatherv,
    .moe_dispatch = mpic_moe_dispatch,
    .moe_combine = mpic_moe_combine,
    .move_start = mpic_move_start,
    .move_test = mpic_move_test,
    .move_free = mpic_move_free,
    .allgather_host = mpic_allgather_host,
    .destroy = mpic_destroy,
};

ms_status_t comm_mpi_create(MPI_Comm world, int ep_size, const kern_ops_t *ops, comm_t **out)
{
    int wr, ws;
    MPI_Comm_rank(world, &wr);
    MPI_Comm_size(world, &ws);
    if (ep_size < 1 || ws % ep_size)
        return MS_ERR(MS_ERR_INVALID, "comm_mpi: ep_size %d does not divide the world size %d", ep_size, ws);
    comm_t *c = calloc(1, sizeof *c);
    mpic_t *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c), free(m);
        return MS_ERR(MS_ERR_NOMEM, "comm_mpi: out of memory");
    }
    c->ops = &g_mpi_ops;
    c->impl = m;
    m->k = ops;
    for (int g = 0; g < COMM_N_GROUPS; g++) m->comm[g] = MPI_COMM_NULL;
    m->move = MPI_COMM_NULL;
    ms_status_t st = comm_mpi_groups(world, ep_size, m->comm, m->rank, m->size);
    if (st != MS_OK) {
        mpic_destroy(c);
        return st;
    }
    if (MPI_Comm_dup(m->comm[COMM_EP], &m->move) != MPI_SUCCESS) {
        mpic_destroy(c);
        return MS_ERR(MS_ERR_MPI, "comm_mpi: creating the record-move communicator failed");
    }
    MPI_Comm_set_errhandler(m->move, MPI_ERRORS_RETURN);
    m->counts = calloc(2 * (size_t)ws, sizeof(int));
    m->displs = calloc(2 * (size_t)ws, sizeof(int));
    m->c64 = calloc((size_t)ws, sizeof(int64_t));
    if (!m->counts || !m->displs || !m->c64) {
        mpic_destroy(c);
        return MS_ERR(MS_ERR_NOMEM, "comm_mpi: out of memory");
    }
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    m->cuda_aware = ops && strcmp(ops->name, "cpu") != 0 && MPIX_Query_cuda_support() == 1;
#endif
    if (ops && strcmp(ops->name, "cpu") != 0 && wr == 0)
        MS_INFO("comm_mpi: %s backend buffers %s", ops->name,
                m->cuda_aware ? "go to MPI directly (CUDA-aware Open MPI); the MoE exchange stages through pinned host memory"
                              : "stage through pinned host memory on the step's stream (this Open MPI is not CUDA-aware)");
    *out = c;
    return MS_OK;
}

ms_status_t comm_mpi_groups(MPI_Comm world, int ep_size, MPI_Comm comm[COMM_N_GROUPS], int rank[COMM_N_GROUPS],
                            int size[COMM_N_GROUPS])
{
    int wr;
    MPI_Comm_rank(world, &wr);
    for (int g = 0; g < COMM_N_GROUPS; g++) comm[g] = MPI_COMM_NULL;
    if (ep_size < 1 || MPI_Comm_dup(world, &comm[COMM_TP]) != MPI_SUCCESS ||
        MPI_Comm_split(world, wr / ep_size, wr, &comm[COMM_EP]) != MPI_SUCCESS) {
        comm_mpi_groups_free(comm);
        return MS_ERR(MS_ERR_MPI, "comm: creating the TP/EP communicators failed");
    }
    for (int g = 0; g < COMM_N_GROUPS; g++) {
        MPI_Comm_set_errhandler(comm[g], MPI_ERRORS_ARE_FATAL);
        MPI_Comm_rank(comm[g], &rank[g]);
        MPI_Comm_size(comm[g], &size[g]);
    }
    return MS_OK;
}

void comm_mpi_groups_free(MPI_Comm comm[COMM_N_GROUPS])
{
    int fin = 0;
    MPI_Finalized(&fin);
    for (int g = 0; g < COMM_N_GROUPS; g++)
        if (!fin && comm[g] != MPI_COMM_NULL) MPI_Comm_free(&comm[g]);
}
