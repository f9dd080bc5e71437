/* mpi_count.c — libmoeserve-mpi-count.so, a PMPI interposer for benchmarks
 * (LD_PRELOAD, e.g. `mpirun -x LD_PRELOAD=build/libmoeserve-mpi-count.so
 * -x MOESERVE_MPI_COUNT=/tmp/c ...`): counts the control-plane collectives
 * rank 0 takes part in — MPI_Ibcast, MPI_Bcast, MPI_Iscatter, MPI_Scatterv,
 * MPI_Gatherv (the data plane, worker/comm_mpi.c, uses none of them) — and
 * the payload bytes they move between rank 0 and the other ranks (what the
 * root sends to, or receives from, others). The two counters live in the
 * file MOESERVE_MPI_COUNT (two little-endian uint64: calls, bytes), mapped
 * shared, so a benchmark reads them while the server runs. Works with any
 * build of moeserve: it measures before and after alike. */
#include <fcntl.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t *g_ctr; /* [calls, bytes]; NULL: not rank 0, or no file */
static int g_init;

static void ctr_open(void)
{
    if (g_init) return;
    g_init = 1;
    int rank = 1;
    PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *path = getenv("MOESERVE_MPI_COUNT");
    if (rank != 0 || !path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, 16) == 0) {
        void *m = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) g_ctr = m;
    }
    close(fd);
}

static uint64_t type_bytes(MPI_Datatype t)
{
    int s = 0;
    PMPI_Type_size(t, &s);
    return (uint64_t)s;
}

static void add(uint64_t bytes)
{
    ctr_open();
    if (!g_ctr) return;
    g_ctr[0]++;
    g_ctr[1] += bytes;
}

static int others(MPI_Comm c)
{
    int n = 1;
    PMPI_Comm_size(c, &n);
    return n - 1;
}

int MPI_Bcast(void *buf, int count, MPI_Datatype t, int root, MPI_Comm c)
{
    add((uint64_t)count * type_bytes(t) * (uint64_t)others(c));
    return PMPI_Bcast(buf, count, t, root, c);
}

int MPI_Ibcast(void *buf, int count, MPI_Datatype t, int root, MPI_Comm c, MPI_Request *rq)
{
    add((uint64_t)count * type_bytes(t) * (uint64_t)others(c));
    return PMPI_Ibcast(buf, count, t, root, c, rq);
}

int MPI_Iscatter(const void *sb, int sc, MPI_Datatype st, void *rb, int rc, MPI_Datatype rt, int root, MPI_Comm c,
                 MPI_Request *rq)
{
    add((uint64_t)rc * type_bytes(rt) * (uint64_t)others(c));
    return PMPI_Iscatter(sb, sc, st, rb, rc, rt, root, c, rq);
}

/* Root side of a v-collective: the bytes of every other rank's count. */
static uint64_t root_bytes(const int counts[], MPI_Datatype t, int root, MPI_Comm c)
{
    int me = 0, n = 1;
    PMPI_Comm_rank(c, &me);
    PMPI_Comm_size(c, &n);
    uint64_t b = 0;
    if (me == root)
        for (int r = 0; r < n; r++)
            if (r != root) b += (uint64_t)counts[r] * type_bytes(t);
    return b;
}

int MPI_Scatterv(const void *sb, const int sc[], const int displs[], MPI_Datatype st, void *rb, int rc,
                 MPI_Datatype rt, int root, MPI_Comm c)
{
    add(root_bytes(sc, st, root, c));
    return PMPI_Scatterv(sb, sc, displs, st, rb, rc, rt, root, c);
}

int MPI_Gatherv(const void *sb, int sc, MPI_Datatype st, void *rb, const int rc[], const int displs[], MPI_Datatype rt,
                int root, MPI_Comm c)
{
    add(root_bytes(rc, rt, root, c));
    return PMPI_Gatherv(sb, sc, st, rb, rc, displs, rt, root, c);
}
