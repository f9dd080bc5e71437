/* comm_nccl.c — the NCCL data plane (comm_nccl.h): rows between CUDA ranks
 * on the step's stream; host collectives through an inner comm_mpi. */
#include "worker/comm_nccl.h"
#include "worker/comm_moe_plan.h"
#include "worker/comm_mpi.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NCCL's entry points: libnccl.so.2's (a build needs only nccl.h), or a test's stand-in */
static comm_nccl_api_t nccl;

static ms_status_t nccl_load(void)
{
    if (nccl.group_end) return MS_OK;
    /* MS_NCCL_LIBRARY, else the loader's path, else where the CUDA toolkit keeps it */
    const char *env = getenv("MS_NCCL_LIBRARY"), *where[] = {env, "libnccl.so.2", "/usr/local/cuda/lib/libnccl.so.2",
                                                              "/usr/local/cuda/lib64/libnccl.so.2"};
    void *h = NULL;
    char why[256] = "";
    for (size_t i = 0; !h && i < sizeof where / sizeof where[0]; i++) {
        if (!where[i] || !where[i][0]) continue;
        h = dlopen(where[i], RTLD_NOW | RTLD_GLOBAL);
        if (!h && !why[0]) snprintf(why, sizeof why, "%s", dlerror());
    }
    if (!h) return MS_ERR(MS_ERR_NCCL, "moeserve.data_plane nccl: cannot load libnccl.so.2 (%s; MS_NCCL_LIBRARY names it)", why);
    struct { void **fn; const char *name; } t[] = {
        {(void **)&nccl.get_unique_id, "ncclGetUniqueId"}, {(void **)&nccl.comm_init_rank, "ncclCommInitRank"},
        {(void **)&nccl.comm_destroy, "ncclCommDestroy"},  {(void **)&nccl.all_reduce, "ncclAllReduce"},
        {(void **)&nccl.send, "ncclSend"},                  {(void **)&nccl.recv, "ncclRecv"},
        {(void **)&nccl.group_start, "ncclGroupStart"},     {(void **)&nccl.error_string, "ncclGetErrorString"},
        {(void **)&nccl.get_version, "ncclGetVersion"},     {(void **)&nccl.group_end, "ncclGroupEnd"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        *t[i].fn = dlsym(h, t[i].name);
        if (!*t[i].fn) {
            nccl.group_end = NULL; /* the last entry: "loaded" only when every one resolved */
            return MS_ERR(MS_ERR_NCCL, "moeserve.data_plane nccl: libnccl.so.2 has no %s", t[i].name);
        }
    }
    return MS_OK;
}

#define NCCL_TRY(call)                                                                                                 \
    do {                                                                                                               \
        ncclResult_t nr_ = (call);                                                                                     \
        if (nr_ != ncclSuccess) return MS_ERR(MS_ERR_NCCL, "comm_nccl: %s: %s", #call, nccl.error_string(nr_));        \
    } while (0)

typedef struct {
    comm_t *mpi;                    /* counts, host gathers, EPLB record moves */
    MPI_Comm mc[COMM_N_GROUPS];     /* the groups over MPI: the NCCL ids are broadcast over them */
    ncclComm_t nc[COMM_N_GROUPS];   /* NULL until the group's first collective */
    int rank[COMM_N_GROUPS], size[COMM_N_GROUPS];
    const kern_ops_t *k;
    comm_moe_plan_t moe;            /* kept from a dispatch for its combine */
    int32_t *h_ints;                /* pinned: the plan's ints both ways */
    size_t h_ints_cap;
    int32_t *d_ints;                /* device: the same ints */
    size_t d_ints_cap;
    char *d_rows;                   /* device: rows in source order (received at dispatch, sent at combine) */
    size_t d_rows_cap;
    int64_t n_recv;                 /* rows received by the last dispatch */
    int32_t *d_rrow;                /* their rows of expert_out (in d_ints) */
} ncc_t;

static int ncc_rank(const comm_t *c, comm_group_t g) { return ((const ncc_t *)c->impl)->rank[g]; }
static int ncc_size(const comm_t *c, comm_group_t g) { return ((const ncc_t *)c->impl)->size[g]; }

/* The group's communicator, made now if this is its first collective: every rank of the group reaches its
 * first collective in the same call (the calls are collective and ordered), with its device current. */
static ms_status_t ncc_comm(ncc_t *m, comm_group_t g, kern_ctx_t *cx, ncclComm_t *out)
{
    if (!m->nc[g]) {
        ncclUniqueId id;
        if (m->rank[g] == 0) NCCL_TRY(nccl.get_unique_id(&id));
        MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, m->mc[g]));
        if (cx && !strcmp(cx->ops->name, "cuda") && cudaSetDevice(cx->device) != cudaSuccess)
            return MS_ERR(MS_ERR_CUDA, "comm_nccl: cudaSetDevice(%d) failed", cx->device);
        NCCL_TRY(nccl.comm_init_rank(&m->nc[g], m->size[g], id, m->rank[g]));
    }
    *out = m->nc[g];
    return MS_OK;
}

static cudaStream_t ncc_stream(const kern_ctx_t *cx) { return (cudaStream_t)cx->stream; }

/* Grow a device or pinned buffer; contents are not kept. */
static ms_status_t ncc_grow(ncc_t *m, void **p, size_t *cap, size_t need, int pinned)
{
    if (need <= *cap) return MS_OK;
    need = need + need / 4 + 256;
    void *q = NULL;
    MS_TRY(pinned ? m->k->host_alloc(need, &q) : m->k->alloc(need, &q));
    if (*p) pinned ? m->k->host_free(*p) : m->k->free(*p);
    *p = q, *cap = need;
    return MS_OK;
}

static ms_status_t ncc_allreduce(comm_t *c, comm_group_t g, void *buf, int64_t n, ms_dtype_t dt, kern_ctx_t *cx)
{
    ncc_t *m = c->impl;
    if (m->size[g] == 1 || n == 0) return MS_OK;
    if (dt != MS_DT_F32) return MS_ERR(MS_ERR_UNSUPPORTED, "comm_nccl: allreduce of %s (only F32)", ms_dtype_name(dt));
    if (!cx) return MS_ERR(MS_ERR_INVALID, "comm_nccl: allreduce of host memory");
    ncclComm_t nc;
    MS_TRY(ncc_comm(m, g, cx, &nc));
    NCCL_TRY(nccl.all_reduce(buf, buf, (size_t)n, ncclFloat32, ncclSum, nc, ncc_stream(cx)));
    return MS_OK;
}

static ms_status_t ncc_counts(comm_t *c, comm_group_t g, const int64_t *send, int64_t *recv)
{
    ncc_t *m = c->impl;
    return comm_alltoall_counts(m->mpi, g, send, recv);
}

/* Rows by rank, both ways in one NCCL group: send_rows[r] rows from send (concatenated in rank order) to rank
 * r, recv_rows[r] rows from rank r into recv. */
static ms_status_t ncc_exchange(ncc_t *m, comm_group_t g, kern_ctx_t *cx, const void *send, const int64_t *send_rows,
                                void *recv, const int64_t *recv_rows, size_t row_bytes)
{
    ncclComm_t nc;
    MS_TRY(ncc_comm(m, g, cx, &nc));
    const cudaStream_t st = ncc_stream(cx);
    size_t so = 0, ro = 0;
    NCCL_TRY(nccl.group_start());
    for (int r = 0; r < m->size[g]; r++) {
        const size_t sb = (size_t)send_rows[r] * row_bytes, rb = (size_t)recv_rows[r] * row_bytes;
        if (sb) NCCL_TRY(nccl.send((const char *)send + so, sb, ncclUint8, r, nc, st));
        if (rb) NCCL_TRY(nccl.recv((char *)recv + ro, rb, ncclUint8, r, nc, st));
        so += sb, ro += rb;
    }
    NCCL_TRY(nccl.group_end());
    return MS_OK;
}

static ms_status_t ncc_alltoallv(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                                 const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    ncc_t *m = c->impl;
    if (m->size[g] == 1) {
        const size_t b = (size_t)send_rows[0] * row_bytes;
        return b ? cx->ops->copy(cx, recv, send, b) : MS_OK;
    }
    return ncc_exchange(m, g, cx, send, send_rows, recv, recv_rows, row_bytes);
}

static ms_status_t ncc_allgatherv(comm_t *c, comm_group_t g, const void *send, void *recv, const int64_t *recv_rows,
                                  size_t row_bytes, kern_ctx_t *cx)
{
    ncc_t *m = c->impl;
    const int me = m->rank[g], size = m->size[g];
    size_t mine = 0;
    for (int r = 0; r < me; r++) mine += (size_t)recv_rows[r] * row_bytes;
    const size_t mb = (size_t)recv_rows[me] * row_bytes;
    if (mb && (const char *)send != (char *)recv + mine) MS_TRY(cx->ops->copy(cx, (char *)recv + mine, send, mb));
    if (size == 1) return MS_OK;
    ncclComm_t nc;
    MS_TRY(ncc_comm(m, g, cx, &nc));
    const cudaStream_t st = ncc_stream(cx);
    size_t ro = 0;
    NCCL_TRY(nccl.group_start());
    for (int r = 0; r < size; r++) {
        const size_t rb = (size_t)recv_rows[r] * row_bytes;
        if (r != me && mb) NCCL_TRY(nccl.send((char *)recv + mine, mb, ncclUint8, r, nc, st));
        if (r != me && rb) NCCL_TRY(nccl.recv((char *)recv + ro, rb, ncclUint8, r, nc, st));
        ro += rb;
    }
    NCCL_TRY(nccl.group_end());
    return MS_OK;
}

/* Dispatch: the plan's counts cross MPI (one host round trip), the rows go device to device. The ints the
 * device needs go up as one block (d_ints): row_of_pair [P] (combine's rows in `back`), send_tok [NS] (the
 * token of each send row), and for the R received rows, in source order, their local slot [R] and rank in
 * it [R], each local slot's rows [spr], the row of expert_out combine sends back [R], and moe_scatter's
 * row_of_pair for them [R] (not read). */
static ms_status_t ncc_moe_dispatch(comm_t *c, comm_group_t g, comm_moe_t *mo, const bf16_t *x, kern_ctx_t *cx)
{
    ncc_t *m = c->impl;
    const kern_ops_t *k = cx->ops;
    const int size = m->size[g], spr = mo->place.slots_per_rank, S = mo->place.n_slots;
    if (size == 1) return comm_moe_dispatch_self(mo, x, cx);
    const size_t row = sizeof(bf16_t) * (size_t)mo->D;
    const int64_t P = (int64_t)mo->T * mo->K;
    comm_moe_plan_t *pl = &m->moe;
    /* the plan (moe_plan's device results): slot_counts [S] | slot_of_pair [P] | rank_in_slot [P] */
    MS_TRY(ncc_grow(m, (void **)&m->h_ints, &m->h_ints_cap, sizeof(int32_t) * (size_t)(S + 2 * P) + 4, 1));
    int32_t *sop = m->h_ints + S, *ris = sop + P;
    MS_TRY(comm_moe_plan_exchange(pl, mo, size, m->mc[g], cx, m->h_ints));
    const int64_t R = pl->recv_total, NS = pl->send_total;
    const size_t n_ints = (size_t)(P + NS + 4 * R + spr);
    int32_t *blk = malloc(sizeof(int32_t) * (n_ints ? n_ints : 1));
    if (!blk) return MS_ERR(MS_ERR_NOMEM, "comm_nccl: out of memory for the MoE plan (%zu ints)", n_ints);
    int32_t *rop = blk, *send_tok = rop + P, *rslot = send_tok + NS, *rrank = rslot + R, *srows = rrank + R,
            *rrow = srows + spr;
    for (int64_t p = 0; p < P; p++) { /* the send rows in global-slot order */
        const int32_t sl = sop[p];
        rop[p] = -1;
        if (sl < 0) continue;
        const int32_t j = pl->start[sl] + ris[p];
        send_tok[j] = (int32_t)(p / mo->K);
        rop[p] = j;
    }
    int64_t q = 0;
    for (int s = 0; s < size; s++)
        for (int j = 0; j < spr; j++) {
            int32_t keep;
            const int64_t r0 = comm_moe_plan_run(pl, mo->cap, s, j, &keep);
            const int32_t pre = pl->pre[(size_t)s * spr + j], n = pl->in[(size_t)s * spr + j];
            for (int32_t i = 0; i < n; i++, q++) {
                rslot[q] = j, rrank[q] = pre + i; /* moe_scatter drops and faults a rank >= cap */
                rrow[q] = i < keep ? (int32_t)(r0 + i) : 0; /* a dropped row goes back as row 0: its step faulted */
            }
        }
    for (int j = 0; j < spr; j++) srows[j] = (int32_t)comm_moe_plan_slot_rows(pl, j);
    ms_status_t st = ncc_grow(m, (void **)&m->d_ints, &m->d_ints_cap, sizeof(int32_t) * n_ints + 4, 0);
    if (st == MS_OK) st = ncc_grow(m, (void **)&m->d_rows, &m->d_rows_cap, (size_t)(R > NS ? R : NS) * row + 1, 0);
    if (st == MS_OK && n_ints) st = k->upload(cx, m->d_ints, blk, sizeof(int32_t) * n_ints);
    if (st == MS_OK) st = k->synchronize(cx); /* the upload has read blk */
    free(blk);
    MS_TRY(st);
    int32_t *d_rop = m->d_ints, *d_tok = d_rop + P, *d_rslot = d_tok + NS, *d_rrank = d_rslot + R,
            *d_srows = d_rrank + R;
    m->d_rrow = d_srows + spr, m->n_recv = R;
    if (P) MS_TRY(k->copy(cx, mo->row_of_pair, d_rop, sizeof(int32_t) * (size_t)P));
    if (NS) MS_TRY(k->gather_rows(cx, x, d_tok, (int32_t)NS, row, mo->send));
    MS_TRY(ncc_exchange(m, g, cx, mo->send, pl->srows, m->d_rows, pl->rrows, row));
    return k->moe_scatter(cx, (const bf16_t *)m->d_rows, (int32_t)R, 1, mo->D, d_rslot, d_rrank, d_srows, 0, spr,
                          mo->cap, mo->recv, mo->recv_count, m->d_rrow + R);
}

/* Combine: each received row's expert output back to its source, in the order it came; then the weighted sum
 * per token on its home rank (comm_moe_sum: moe_combine, or moe_combine_add). */
static ms_status_t ncc_moe_combine(comm_t *c, comm_group_t g, comm_moe_t *mo, const bf16_t *expert_out, bf16_t *out,
                                   kern_ctx_t *cx)
{
    ncc_t *m = c->impl;
    const kern_ops_t *k = cx->ops;
    if (m->size[g] == 1) return comm_moe_combine_self(mo, expert_out, out, cx);
    const size_t row = sizeof(bf16_t) * (size_t)mo->D;
    if (m->n_recv) MS_TRY(k->gather_rows(cx, expert_out, m->d_rrow, (int32_t)m->n_recv, row, m->d_rows));
    MS_TRY(ncc_exchange(m, g, cx, m->d_rows, m->moe.rrows, mo->back, m->moe.srows, row));
    return comm_moe_sum(mo, mo->back, out, cx);
}

/* ---- host-side collectives: the inner comm_mpi ---- */

static ms_status_t ncc_move_start(comm_t *c, comm_group_t g, const comm_xfer_t *x, int n, comm_move_t **out)
{
    ncc_t *m = c->impl;
    return m->mpi->ops->move_start(m->mpi, g, x, n, out);
}
static int ncc_move_test(comm_t *c, comm_move_t *mv)
{
    ncc_t *m = c->impl;
    return m->mpi->ops->move_test(m->mpi, mv);
}
static void ncc_move_free(comm_t *c, comm_move_t *mv)
{
    ncc_t *m = c->impl;
    m->mpi->ops->move_free(m->mpi, mv);
}
static ms_status_t ncc_allgather_host(comm_t *c, comm_group_t g, const void *mine, size_t bytes, void *all)
{
    ncc_t *m = c->impl;
    return m->mpi->ops->allgather_host(m->mpi, g, mine, bytes, all);
}

static void ncc_destroy(comm_t *c)
{
    if (!c) return;
    ncc_t *m = c->impl;
    if (m) {
        for (int g = 0; g < COMM_N_GROUPS; g++)
            if (m->nc[g]) nccl.comm_destroy(m->nc[g]);
        comm_mpi_groups_free(m->mc);
        comm_moe_plan_free(&m->moe);
        if (m->h_ints) m->k->host_free(m->h_ints);
        if (m->d_ints) m->k->free(m->d_ints);
        if (m->d_rows) m->k->free(m->d_rows);
        comm_destroy(m->mpi);
        free(m);
    }
    free(c);
}

static const comm_ops_t g_nccl_ops = {
    .rank = ncc_rank,
    .size = ncc_size,
    .allreduce_sum = ncc_allreduce,
    .alltoall_counts = ncc_counts,
    .alltoallv = ncc_alltoallv,
    .allgatherv = ncc_allgatherv,
    .moe_dispatch = ncc_moe_dispatch,
    .moe_combine = ncc_moe_combine,
    .move_start = ncc_move_start,
    .move_test = ncc_move_test,
    .move_free = ncc_move_free,
    .allgather_host = ncc_allgather_host,
    .destroy = ncc_destroy,
};

ms_status_t comm_nccl_create(MPI_Comm world, int ep_size, const kern_ops_t *ops, comm_t **out)
{
    if (!ops || strcmp(ops->name, "cuda") != 0)
        return MS_ERR(MS_ERR_INVALID, "comm_nccl: the NCCL data plane needs the cuda backend, not %s",
                      ops ? ops->name : "none");
    MS_TRY(nccl_load());
    setenv("NCCL_NVLS_ENABLE", "0", 0); /* NVLink multicast stays off on these machines (unless set) */
    return comm_nccl_create_with(world, ep_size, ops, &nccl, out);
}

ms_status_t comm_nccl_create_with(MPI_Comm world, int ep_size, const kern_ops_t *ops, const comm_nccl_api_t *api,
                                  comm_t **out)
{
    if (!ops || !api) return MS_ERR(MS_ERR_INVALID, "comm_nccl: no backend or no NCCL entry points");
    if (api != &nccl) nccl = *api;
    int wr;
    MPI_Comm_rank(world, &wr);
    comm_t *c = calloc(1, sizeof *c);
    ncc_t *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c), free(m);
        return MS_ERR(MS_ERR_NOMEM, "comm_nccl: out of memory");
    }
    c->ops = &g_nccl_ops;
    c->impl = m;
    m->k = ops;
    for (int g = 0; g < COMM_N_GROUPS; g++) m->mc[g] = MPI_COMM_NULL;
    ms_status_t st = comm_mpi_create(world, ep_size, ops, &m->mpi); /* checks ep_size */
    if (st != MS_OK) {
        ncc_destroy(c);
        return st;
    }
    st = comm_mpi_groups(world, ep_size, m->mc, m->rank, m->size);
    if (st != MS_OK) {
        ncc_destroy(c);
        return st;
    }
    int v = 0;
    nccl.get_version(&v);
    if (wr == 0)
        MS_INFO("comm_nccl: NCCL %d.%d data plane (TP group %d ranks, EP groups %d), communicators made at each "
                "group's first collective; counts and EPLB moves over MPI", v / 10000, v / 100 % 100, m->size[COMM_TP],
                m->size[COMM_EP]);
    *out = c;
    return MS_OK;
}
