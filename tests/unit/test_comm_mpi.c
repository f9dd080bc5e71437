/* test_comm_mpi.c — the MPI data plane under `mpirun -np 4` (also np 1):
 * group shapes for every ep_size that divides the world, all-reduce equal to
 * the rank-order sum and bitwise identical on all ranks, all-to-all counts,
 * all-to-all-v rows landing at the right rank and offset (including empty
 * sends), all-gather-v in and out of place.
 * MoE dispatch/combine (every ep_size): 12 slots for 8 experts (replicas of
 * experts 0..3 on other ranks), ranks with different token counts (one with
 * none): each local slot's device count equals a recount over every source
 * rank's routing, every received row is a row some source routed there, and
 * after a per-expert transform the combined output is bit-identical to the
 * single-process moe_combine of the same rows; the load counter equals a host
 * recount of idx; a capacity below a slot's rows raises KERN_FAULT_CAPACITY.
 * Builds with NCCL run all of it again through the NCCL data plane (worker/comm_nccl.c) over an MPI
 * stand-in for NCCL's entry points on CPU ranks: its group setup, exchanges and MoE placement are its own
 * code, only the transport underneath is MPI (so the NCCL calls' arguments are checked, not NCCL). */
#include "../test.h"
#include "ms_build_config.h"
#include "worker/comm_mpi.h"
#include "worker/placement.h"

#include <stdint.h>

/* the data plane under test: made for a world and an ep_size */
typedef ms_status_t (*mk_comm_t)(MPI_Comm world, int ep, comm_t **out);
static ms_status_t mk_mpi(MPI_Comm world, int ep, comm_t **out) { return comm_mpi_create(world, ep, NULL, out); }

#if MS_HAVE_NCCL
#include "worker/comm_nccl.h"

/* The stand-in: a communicator is an MPI communicator split from the world by the id (every rank reaches a
 * group's first collective together, so the split is collective); send/recv inside a group are posted at
 * its end and waited for; all-reduce sums in rank order. Buffers are host memory (the CPU backend's). */
typedef struct {
    MPI_Comm mc;
    int n;
} fk_comm_t;
static struct {
    int send, peer;
    void *buf;
    size_t bytes;
    fk_comm_t *c;
} fk_q[512];
static int fk_depth, fk_n, fk_ids;

static ncclResult_t fk_flush(void)
{
    MPI_Request rq[512];
    for (int i = 0; i < fk_n; i++) {
        if (fk_q[i].send) MPI_Isend(fk_q[i].buf, (int)fk_q[i].bytes, MPI_BYTE, fk_q[i].peer, 7, fk_q[i].c->mc, &rq[i]);
        else MPI_Irecv(fk_q[i].buf, (int)fk_q[i].bytes, MPI_BYTE, fk_q[i].peer, 7, fk_q[i].c->mc, &rq[i]);
    }
    MPI_Waitall(fk_n, rq, MPI_STATUSES_IGNORE);
    fk_n = 0;
    return ncclSuccess;
}
static ncclResult_t fk_push(int send, void *buf, size_t n, ncclDataType_t dt, int peer, ncclComm_t c)
{
    if (dt != ncclUint8 || fk_n >= 512) return ncclInvalidArgument;
    fk_q[fk_n].send = send, fk_q[fk_n].peer = peer, fk_q[fk_n].buf = buf, fk_q[fk_n].bytes = n;
    fk_q[fk_n++].c = (fk_comm_t *)c;
    return fk_depth ? ncclSuccess : fk_flush();
}
static ncclResult_t fk_get_id(ncclUniqueId *id)
{
    int wr;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    memset(id, 0, sizeof *id);
    const int v = wr * 4096 + ++fk_ids;
    memcpy(id->internal, &v, sizeof v);
    return ncclSuccess;
}
static ncclResult_t fk_init(ncclComm_t *out, int n, ncclUniqueId id, int rank)
{
    int v, sz;
    memcpy(&v, id.internal, sizeof v);
    fk_comm_t *c = calloc(1, sizeof *c);
    MPI_Comm_split(MPI_COMM_WORLD, v, rank, &c->mc);
    MPI_Comm_size(c->mc, &sz);
    c->n = n;
    *out = (ncclComm_t)c;
    return sz == n ? ncclSuccess : ncclInvalidArgument;
}
static ncclResult_t fk_destroy(ncclComm_t c)
{
    MPI_Comm_free(&((fk_comm_t *)c)->mc);
    free(c);
    return ncclSuccess;
}
static ncclResult_t fk_allreduce(const void *s, void *r, size_t n, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t c,
                                 cudaStream_t st)
{
    (void)st;
    fk_comm_t *f = (fk_comm_t *)c;
    if (dt != ncclFloat32 || op != ncclSum) return ncclInvalidArgument;
    float *all = malloc(sizeof(float) * n * (size_t)f->n), *src = malloc(sizeof(float) * n);
    memcpy(src, s, sizeof(float) * n); /* s may be r */
    MPI_Allgather(src, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, f->mc);
    for (size_t i = 0; i < n; i++) {
        float a = all[i];
        for (int k = 1; k < f->n; k++) a += all[(size_t)k * n + i];
        ((float *)r)[i] = a;
    }
    free(all), free(src);
    return ncclSuccess;
}
static ncclResult_t fk_send(const void *b, size_t n, ncclDataType_t dt, int peer, ncclComm_t c, cudaStream_t st)
{
    (void)st;
    return fk_push(1, (void *)b, n, dt, peer, c);
}
static ncclResult_t fk_recv(void *b, size_t n, ncclDataType_t dt, int peer, ncclComm_t c, cudaStream_t st)
{
    (void)st;
    return fk_push(0, b, n, dt, peer, c);
}
static ncclResult_t fk_group_start(void) { return fk_depth++, ncclSuccess; }
static ncclResult_t fk_group_end(void) { return --fk_depth ? ncclSuccess : fk_flush(); }
static const char *fk_error(ncclResult_t r) { return r == ncclSuccess ? "ok" : "stand-in error"; }
static ncclResult_t fk_version(int *v) { return *v = 22800, ncclSuccess; }
static const comm_nccl_api_t fk_api = {fk_get_id, fk_init, fk_destroy, fk_allreduce, fk_send, fk_recv,
                                       fk_group_start, fk_group_end, fk_error, fk_version};
static ms_status_t mk_nccl(MPI_Comm world, int ep, comm_t **out)
{
    return comm_nccl_create_with(world, ep, &kern_cpu_ops, &fk_api, out);
}
#endif

/* Value of row i sent from rank a to rank b, word w. */
static int32_t val(int a, int b, int i, int w) { return a * 1000000 + b * 10000 + i * 10 + w; }

/* cx: NULL with the MPI plane (host buffers without a context), a CPU context with NCCL's (device buffers) */
static void run(MPI_Comm world, int ep, mk_comm_t mk, kern_ctx_t *cx)
{
    int wr, ws;
    MPI_Comm_rank(world, &wr);
    MPI_Comm_size(world, &ws);
    comm_t *c = NULL;
    T_CHECK(mk(world, ep, &c) == MS_OK);
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
        T_CHECK(comm_allreduce_sum(c, (comm_group_t)g, buf, N, MS_DT_F32, cx) == MS_OK);
        T_CHECK(!memcmp(buf, want, sizeof buf)); /* rank-order sum, bit for bit */
        T_CHECK(comm_allreduce_sum(c, (comm_group_t)g, buf, N, MS_DT_BF16, cx) == MS_ERR_UNSUPPORTED || n == 1);

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
        T_CHECK(comm_alltoallv(c, (comm_group_t)g, sb, send_rows, rb, recv_rows, 12, cx) == MS_OK);
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
        T_CHECK(comm_allgatherv(c, (comm_group_t)g, mine, out, rows, 8, cx) == MS_OK);
        bad = 0;
        k = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < rows[r] * 2; i++) bad += out[k++] != val(r, 0, i, 0);
        memset(out, 0, (size_t)total * 8);
        memcpy(out + off * 2, mine, (size_t)rows[me] * 8); /* in place */
        T_CHECK(comm_allgatherv(c, (comm_group_t)g, out + off * 2, out, rows, 8, cx) == MS_OK);
        k = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < rows[r] * 2; i++) bad += out[k++] != val(r, 0, i, 0);
        T_CHECK_MSG(bad == 0, "allgatherv: %d wrong words", bad);
        free(out);
    }
    comm_destroy(c);
}

enum { ME = 8, MS = 12, MK = 3, MD = 16 };

/* rank r's MoE inputs: T tokens, K distinct experts per token */
static int moe_T(int r) { return r == 1 ? 0 : 3 + 2 * r; }
static int32_t moe_idx(int r, int t, int k) { return (t * 3 + k * 5 + r) % ME; }
static bf16_t moe_x(int r, int t, int d) { return f32_to_bf16((float)(r * 100 + t * 10 + d) / 64.0f); }
/* the "expert": row * (1 + e/8), rounded to bf16 */
static bf16_t moe_f(bf16_t v, int e) { return f32_to_bf16(bf16_to_f32(v) * (1.0f + (float)e / 8)); }

static void run_moe(MPI_Comm world, int ep, int cap_small, mk_comm_t mk)
{
    int wr;
    MPI_Comm_rank(world, &wr);
    comm_t *c = NULL;
    placement_t pl;
    T_CHECK(mk(world, ep, &c) == MS_OK && placement_create(1, ME, MS, ep, NULL, &pl) == MS_OK);
    if (!c) return;
    const int er = wr % ep, g0 = wr - er, spr = pl.slots_per_rank, T = moe_T(wr), P = T * MK;
    int total = 0;
    for (int s = 0; s < ep; s++) total += moe_T(g0 + s);
    const int cap = cap_small ? 1 : total;
    kern_ctx_t *cx;
    T_CHECK(kern_cpu_ops.ctx_create(0, 0, &cx) == MS_OK);
    int32_t idx[64], sop[64], ris[64], rop[64], cnt[MS], rc[MS];
    float w[64];
    bf16_t x[64 * MD], send[64 * MD], back[64 * MD], out[64 * MD], want[64 * MD], rows[64 * MD];
    bf16_t *recv = calloc((size_t)spr * total * MD, 2), *eo = calloc((size_t)spr * total * MD, 2);
    int64_t load[ME] = {0}, lwant[ME] = {0};
    for (int t = 0; t < T; t++)
        for (int k = 0; k < MK; k++) {
            idx[t * MK + k] = moe_idx(wr, t, k), w[t * MK + k] = 0.25f + 0.1f * k;
            lwant[moe_idx(wr, t, k)]++;
        }
    for (int t = 0; t < T; t++)
        for (int d = 0; d < MD; d++) x[t * MD + d] = moe_x(wr, t, d);
    comm_moe_t m = {.idx = idx, .w = w, .T = T, .K = MK, .D = MD, .load = load, .cap = cap, .n_local = spr,
                    .slot_of_pair = sop, .rank_in_slot = ris, .row_of_pair = rop, .slot_counts = cnt, .recv = recv,
                    .recv_count = rc, .send = send, .back = back};
    m.place = (kern_moe_place_t){.log2phy = pl.log2phy, .n_rep = pl.n_rep, .E = ME, .max_rep = pl.max_rep,
                                 .n_slots = MS, .slots_per_rank = spr};
    T_CHECK(comm_moe_dispatch(c, COMM_EP, &m, x, cx) == MS_OK);
    /* recount what every source of my group routes to my slots (the replica rule of kernels.h) */
    int want_cnt[MS] = {0}, bad = 0;
    for (int s = 0; s < ep; s++)
        for (int t = 0; t < moe_T(g0 + s); t++)
            for (int k = 0; k < MK; k++) {
                int e = moe_idx(g0 + s, t, k), sl = pl.log2phy[e * pl.max_rep + (t + k) % pl.n_rep[e]];
                if (sl / spr == er) want_cnt[sl % spr]++;
            }
    int over = 0;
    for (int j = 0; j < spr; j++) {
        bad += rc[j] != (want_cnt[j] < cap ? want_cnt[j] : cap);
        over |= want_cnt[j] > cap;
        for (int i = 0; i < rc[j]; i++) { /* a row some source sent: decode (r, t) from its first value */
            float v = bf16_to_f32(recv[((size_t)j * cap + i) * MD]) * 64;
            int r = (int)v / 100, t = ((int)v % 100) / 10, hit = 0;
            for (int k = 0; k < MK && r >= g0 && r < g0 + ep && t < moe_T(r); k++) {
                int e = moe_idx(r, t, k);
                hit |= pl.log2phy[e * pl.max_rep + (t + k) % pl.n_rep[e]] == er * spr + j;
            }
            bad += !hit;
        }
    }
    T_CHECK_MSG(bad == 0, "moe_dispatch ep %d cap %d: %d wrong counts or rows", ep, cap, bad);
    T_CHECK(!memcmp(load, lwant, sizeof load));
    T_CHECK_MSG(!!(*cx->fault & KERN_FAULT_CAPACITY) == over, "ep %d cap %d: fault %#x, overflow %d", ep, cap,
                *cx->fault, over);
    for (int j = 0; j < spr; j++)
        for (int i = 0; i < rc[j]; i++)
            for (int d = 0; d < MD; d++) {
                size_t o = ((size_t)j * cap + i) * MD + d;
                eo[o] = moe_f(recv[o], placement_expert(&pl, 0, er * spr + j));
            }
    T_CHECK(comm_moe_combine(c, COMM_EP, &m, eo, out, cx) == MS_OK);
    if (!over) { /* the single-process combine over rows in pair order */
        int32_t pos[64];
        for (int p = 0; p < P; p++) {
            pos[p] = p;
            for (int d = 0; d < MD; d++) rows[p * MD + d] = moe_f(x[(p / MK) * MD + d], idx[p]);
        }
        T_CHECK(kern_cpu_ops.moe_combine(NULL, rows, pos, idx, w, T, MK, MD, want) == MS_OK);
        T_CHECK_MSG(!memcmp(out, want, sizeof(bf16_t) * (size_t)T * MD), "moe_combine ep %d: output differs", ep);
    }
    kern_cpu_ops.ctx_destroy(cx);
    free(recv), free(eo);
    placement_free(&pl);
    comm_destroy(c);
}

int main(int argc, char **argv)
{
    int prov;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &prov);
    int ws;
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    for (int ep = 1; ep <= ws; ep++)
        if (ws % ep == 0) {
            run(MPI_COMM_WORLD, ep, mk_mpi, NULL);
            if (MS % ep == 0) run_moe(MPI_COMM_WORLD, ep, 0, mk_mpi), run_moe(MPI_COMM_WORLD, ep, 1, mk_mpi);
        }
#if MS_HAVE_NCCL
    kern_ctx_t *cx = NULL;
    T_CHECK(kern_cpu_ops.ctx_create(0, 0, &cx) == MS_OK);
    for (int ep = 1; ep <= ws; ep++)
        if (ws % ep == 0) {
            run(MPI_COMM_WORLD, ep, mk_nccl, cx);
            if (MS % ep == 0) run_moe(MPI_COMM_WORLD, ep, 0, mk_nccl), run_moe(MPI_COMM_WORLD, ep, 1, mk_nccl);
        }
    kern_cpu_ops.ctx_destroy(cx);
    if (ws > 1 && fk_n == 0) printf("comm_nccl (MPI stand-in for NCCL): every case above ran through it\n");
#endif
    comm_t *c = NULL;
    if (ws > 1) T_CHECK(comm_mpi_create(MPI_COMM_WORLD, ws + 1, NULL, &c) == MS_ERR_INVALID);
    MPI_Finalize();
    return t_done();
}
