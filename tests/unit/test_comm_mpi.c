/* test_comm_mpi.c — the MPI data plane under `mpirun -np 4` (also np 1):
 * group shapes for every ep_size that divides the world, all-reduce equal to
 * the rank-order sum and bitwise identical on all ranks, all-to-all counts,
 * all-to-all-v rows landing at the right rank and offset (including empty
 * sends), all-gather-v in and out of place. */
#include "../test.h"
#include "worker/comm_mpi.h"

#include <stdint.h>

/* Value of row i sent from rank a to rank b, word w. */
static int32_t val(int a, int b, int i, int w) { return a * 1000000 + b * 10000 + i * 10 + w; }

static void run(MPI_Comm world, int ep)
{
    int wr, ws;
    MPI_Comm_rank(world, &wr);
    MPI_Comm_size(world, &ws);
    comm_t *c = NULL;
    T_CHECK(comm_mpi_create(world, ep, NULL, &c) == MS_OK);
    if (!c) return;
    T_CHECK(comm_size(c, COMM_TP) == ws && comm_rank(c, COMM_TP) == wr);
    T_CHECK(comm_size(c, COMM_EP) == ep && comm_rank(c, COMM_EP) == wr % ep);

    for (int g = 0; g < COMM_N_GROUPS; g++) {
        int n = comm_size(c, (comm_group_t)g), me = comm_rank(c, (comm_group_t)g);
        /* all-reduce: partials chosen so that summation order matters in fp32 */
        enum { N = 1000 };
        float buf[N], want[N];
        for (int i = 0; i < N; i++) {
            buf[i] = (me % 2 ? 1e8f : 1.0f) * (float)(i + 1) / (float)(me + 3);
            float acc = 0;
            for (int r = 0; r < n; r++) {
                float p = (r % 2 ? 1e8f : 1.0f) * (float)(i + 1) / (float)(r + 3);
                acc = r == 0 ? p : acc + p;
            }
            want[i] = acc;
        }
        T_CHECK(comm_allreduce_sum(c, (comm_group_t)g, buf, N, MS_DT_F32, NULL) == MS_OK);
        T_CHECK(!memcmp(buf, want, sizeof buf)); /* rank-order sum, bit for bit */
        T_CHECK(comm_allreduce_sum(c, (comm_group_t)g, buf, N, MS_DT_BF16, NULL) == MS_ERR_UNSUPPORTED || n == 1);

        /* all-to-all: rank me sends (me + r) % 3 rows of 3 int32 to group rank r */
        int64_t send_rows[16], recv_rows[16], got[16];
        int64_t ns = 0, nr = 0;
        for (int r = 0; r < n; r++) {
            send_rows[r] = (me + r) % 3;
            recv_rows[r] = (r + me) % 3;
            ns += send_rows[r];
            nr += recv_rows[r];
        }
        T_CHECK(comm_alltoall_counts(c, (comm_group_t)g, send_rows, got) == MS_OK);
        for (int r = 0; r < n; r++) T_CHECK(got[r] == recv_rows[r]);
        int32_t *sb = calloc((size_t)ns * 3 + 1, 4), *rb = calloc((size_t)nr * 3 + 1, 4);
        int k = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < send_rows[r]; i++)
                for (int w = 0; w < 3; w++) sb[k++] = val(me, r, i, w);
        T_CHECK(comm_alltoallv(c, (comm_group_t)g, sb, send_rows, rb, recv_rows, 12, NULL) == MS_OK);
        k = 0;
        int bad = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < recv_rows[r]; i++)
                for (int w = 0; w < 3; w++) bad += rb[k++] != val(r, me, i, w);
        T_CHECK_MSG(bad == 0, "alltoallv: %d wrong words", bad);
        free(sb);
        free(rb);

        /* all-gather-v: rank r contributes r + 1 rows of 2 int32 */
        int64_t rows[16], total = 0, off = 0;
        for (int r = 0; r < n; r++) {
            rows[r] = r + 1;
            if (r < me) off += rows[r];
            total += rows[r];
        }
        int32_t *out = calloc((size_t)total * 2, 4), mine[32];
        for (int i = 0; i < rows[me] * 2; i++) mine[i] = val(me, 0, i, 0);
        T_CHECK(comm_allgatherv(c, (comm_group_t)g, mine, out, rows, 8, NULL) == MS_OK);
        bad = 0;
        k = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < rows[r] * 2; i++) bad += out[k++] != val(r, 0, i, 0);
        memset(out, 0, (size_t)total * 8);
        memcpy(out + off * 2, mine, (size_t)rows[me] * 8); /* in place */
        T_CHECK(comm_allgatherv(c, (comm_group_t)g, out + off * 2, out, rows, 8, NULL) == MS_OK);
        k = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < rows[r] * 2; i++) bad += out[k++] != val(r, 0, i, 0);
        T_CHECK_MSG(bad == 0, "allgatherv: %d wrong words", bad);
        free(out);
    }
    comm_destroy(c);
}

int main(int argc, char **argv)
{
    int prov;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &prov);
    int ws;
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    for (int ep = 1; ep <= ws; ep++)
        if (ws % ep == 0) run(MPI_COMM_WORLD, ep);
    comm_t *c = NULL;
    if (ws > 1) T_CHECK(comm_mpi_create(MPI_COMM_WORLD, ws + 1, NULL, &c) == MS_ERR_INVALID);
    MPI_Finalize();
    return t_done();
}
