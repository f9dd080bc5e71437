/* comm_mpi.c — the data plane over MPI between CPU ranks (comm_mpi.h).
 * Buffers are host memory (the CPU backend's "device"). Counts are moved in
 * rows with a contiguous datatype of row_bytes, so an int count covers
 * 2^31 rows rather than 2^31 bytes. */
#include "worker/comm_mpi.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    MPI_Comm comm[COMM_N_GROUPS];
    int rank[COMM_N_GROUPS], size[COMM_N_GROUPS];
    const kern_ops_t *k;
    int *counts, *displs;   /* scratch, max group size */
    int64_t *c64;           /* scratch for counts */
    float *gather;          /* allreduce scratch: size * n floats */
    size_t gather_cap;
} mpic_t;

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
    MPI_CHECK(MPI_Allgather(buf, (int)n, MPI_FLOAT, m->gather, (int)n, MPI_FLOAT, m->comm[g]));
    float *out = buf;
    for (int64_t i = 0; i < n; i++) {
        float acc = m->gather[i];
        for (int r = 1; r < size; r++) acc += m->gather[(size_t)r * (size_t)n + (size_t)i];
        out[i] = acc;
    }
    return MS_OK;
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

static ms_status_t mpic_alltoallv(comm_t *c, comm_group_t g, const void *send, const int64_t *send_rows, void *recv,
                                  const int64_t *recv_rows, size_t row_bytes, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
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

static ms_status_t mpic_allgatherv(comm_t *c, comm_group_t g, const void *send, void *recv, const int64_t *recv_rows,
                                   size_t row_bytes, kern_ctx_t *cx)
{
    mpic_t *m = c->impl;
    int size = m->size[g], me = m->rank[g];
    int *rc = m->counts, *rd = m->displs;
    MS_TRY(rows_to_int(m, size, recv_rows, rc, rd));
    const void *sbuf = send;
    if ((const char *)send == (const char *)recv + (size_t)rd[me] * row_bytes) sbuf = MPI_IN_PLACE;
    MPI_Datatype t;
    MS_TRY(row_type(row_bytes, &t));
    int rc_ = MPI_Allgatherv(sbuf, rc[me], t, recv, rc, rd, t, m->comm[g]);
    MPI_Type_free(&t);
    if (rc_ != MPI_SUCCESS) return MS_ERR(MS_ERR_MPI, "comm_mpi: MPI_Allgatherv failed: MPI error %d", rc_);
    return MS_OK;
}

static void mpic_destroy(comm_t *c)
{
    if (!c) return;
    mpic_t *m = c->impl;
    if (m) {
        int fin = 0;
        MPI_Finalized(&fin);
        for (int g = 0; g < COMM_N_GROUPS; g++)
            if (!fin && m->comm[g] != MPI_COMM_NULL) MPI_Comm_free(&m->comm[g]);
        free(m->counts);
        free(m->displs);
        free(m->c64);
        free(m->gather);
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
    if (MPI_Comm_dup(world, &m->comm[COMM_TP]) != MPI_SUCCESS ||
        MPI_Comm_split(world, wr / ep_size, wr, &m->comm[COMM_EP]) != MPI_SUCCESS) {
        mpic_destroy(c);
        return MS_ERR(MS_ERR_MPI, "comm_mpi: creating the TP/EP communicators failed");
    }
    for (int g = 0; g < COMM_N_GROUPS; g++) {
        MPI_Comm_set_errhandler(m->comm[g], MPI_ERRORS_ARE_FATAL);
        MPI_Comm_rank(m->comm[g], &m->rank[g]);
        MPI_Comm_size(m->comm[g], &m->size[g]);
    }
    m->counts = calloc(2 * (size_t)ws, sizeof(int));
    m->displs = calloc(2 * (size_t)ws, sizeof(int));
    m->c64 = calloc((size_t)ws, sizeof(int64_t));
    if (!m->counts || !m->displs || !m->c64) {
        mpic_destroy(c);
        return MS_ERR(MS_ERR_NOMEM, "comm_mpi: out of memory");
    }
    *out = c;
    return MS_OK;
}
