/* test_transport.c — control plane over MPI, run under `mpirun -np 3`:
 * plans of many sizes arrive intact on every rank (magic, counts, tokens,
 * block tables), results come back in plan order from their owners (attention
 * DP owners and TP rank 0), a failing rank is reported, SHUTDOWN ends the
 * loop, and idle workers sleep instead of spinning (CPU time while rank 0
 * idles for a second stays small); prompt-logprob entries (PROTO_SEQ_PROMPT_LP)
 * bring back their variable-size part in plan order; per-sequence fault words
 * reach rank 0 from every rank that ran the sequence. Also runs as a single
 * process. */
#include "../test.h"
#include "proto/proto.h"
#include "proto/transport.h"

#include <stdbool.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* Deterministic plan number k for a world of `size` ranks. */
static const proto_plan_t *make_plan(proto_planbuf_t *pb, int k, int size)
{
    proto_planbuf_reset(pb);
    int n_seqs = k % 7 == 0 ? 0 : 1 + (k * 13) % 40;
    if (k == 5) n_seqs = 3000; /* a big one */
    for (int i = 0; i < n_seqs; i++) {
        int nt = 1 + (i * 7 + k) % 50, nb = 1 + (i + k) % 9;
        int32_t toks[64], blks[16];
        for (int j = 0; j < nt; j++) toks[j] = k * 1000 + i * 10 + j;
        for (int j = 0; j < nb; j++) blks[j] = i + j;
        proto_seq_t s = {.slot = i, .dp_rank = (k % 2) ? (i % size) : -1, .pos = i, .flags = PROTO_SEQ_SAMPLE,
                         .temperature = 0.5f, .seed = (uint64_t)k,
                         .n_logprobs = (i + k) % 4 - 1}; /* -1..2: only what is asked travels */
        if (i % 3 == 1) { /* prompt logprobs: a variable part of n_tokens - 1 (+ 1 with a next token) rows */
            s.flags |= PROTO_SEQ_PROMPT_LP;
            s.next_token = i % 2 ? 7 : -1;
        }
        proto_planbuf_add(pb, &s, toks, nt, blks, nb);
    }
    const proto_plan_t *p = NULL;
    proto_planbuf_finish(pb, (uint32_t)k, &p);
    return p;
}

/* The per-sequence fault word rank r reports for slot `slot` in step k: some sequences, a bit per rank. */
static uint32_t seq_fault(int slot, int k, int r) { return (slot + k + r) % 5 == 0 ? 1u << (r % 4) : 0; }

static bool same_plan(const proto_plan_t *a, const proto_plan_t *b)
{
    return a->hdr.length == b->hdr.length && !memcmp(a, b, a->hdr.length);
}

int main(int argc, char **argv)
{
    int prov;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &prov);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    proto_link_t *l = NULL;
    T_CHECK(proto_link_create(MPI_COMM_WORLD, &l) == MS_OK);
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    enum { STEPS = 40 };
    int bad = 0;
    double idle_cpu = -1;

    for (int k = 0; k < STEPS; k++) {
        const proto_plan_t *expect = make_plan(&pb, k, size);
        const proto_plan_t *p = NULL;
        if (rank == 0) {
            if (k == 20) sleep(1); /* idle: workers wait in proto_recv */
            T_CHECK(proto_send_plan(l, expect) == MS_OK);
            p = expect;
        } else {
            double c0 = cpu_seconds();
            T_CHECK(proto_recv(l, &p) == MS_OK);
            if (k == 20) idle_cpu = cpu_seconds() - c0;
            /* my part only: attention-DP plans drop the other ranks' sequences */
            size_t n = proto_plan_part(expect, rank, NULL);
            uint8_t *want = malloc(n);
            proto_plan_part(expect, rank, want);
            if (!p || !same_plan(p, (const proto_plan_t *)want)) bad++;
            if (p && k % 2 && p->n_seqs && proto_plan_seqs(p)[0].dp_rank != rank) bad++;
            free(want);
            if (!p) break;
        }
        /* results: token = f(seq, step, rank) so the test sees who answered */
        int n = p->n_seqs;
        proto_result_t *mine = calloc((size_t)n + 1, sizeof *mine), *merged = calloc((size_t)n + 1, sizeof *merged);
        const proto_seq_t *s = proto_plan_seqs(p);
        for (int i = 0; i < n; i++) {
            mine[i].slot = s[i].slot;
            mine[i].token = s[i].slot * 100 + k * 7 + rank;
            mine[i].logprob = -(float)s[i].slot;
            mine[i].n_top = s[i].n_logprobs > 0 ? s[i].n_logprobs : 0;
            for (int j = 0; j < mine[i].n_top; j++) mine[i].top_ids[j] = mine[i].token + j + 1;
            mine[i].fault = seq_fault(s[i].slot, k, rank);
        }
        int n_plp = 0, n_all = 0;
        for (int i = 0; i < n; i++) n_all += proto_seq_plp_rows(&s[i]);
        proto_plp_t *mplp = calloc((size_t)n_all + 1, sizeof *mplp), *gplp = calloc((size_t)n_all + 1, sizeof *gplp);
        for (int i = 0; i < n; i++)
            for (int t = 0; proto_seq_owner(&s[i]) == rank && t < proto_seq_plp_rows(&s[i]); t++) {
                proto_plp_t *e = &mplp[n_plp++];
                e->token = s[i].slot * 1000 + t * 10 + rank;
                e->logprob = -(float)t;
                e->n_top = s[i].n_logprobs > 0 ? s[i].n_logprobs : 0;
                for (int j = 0; j < e->n_top; j++) e->top_ids[j] = e->token + j + 1, e->top_logprobs[j] = (float)j;
            }
        ms_status_t my = (k == 9 && rank == size - 1 && size > 1) ? MS_ERR_INTERNAL : MS_OK;
        proto_step_status_t st;
        T_CHECK(proto_gather_results(l, p, mine, mplp, my, merged, gplp, &st) == MS_OK);
        if (rank == 0) {
            for (int i = 0; i < n; i++) {
                int owner = proto_seq_owner(&s[i]);
                bool failed = k == 9 && owner == size - 1 && size > 1;
                if (merged[i].slot != s[i].slot || (!failed && merged[i].token != s[i].slot * 100 + k * 7 + owner) ||
                    (failed && merged[i].token != -1))
                    bad++;
                int nt = s[i].n_logprobs > 0 ? s[i].n_logprobs : 0;
                if (!failed && (merged[i].n_top != nt || merged[i].logprob != -(float)s[i].slot))
                    bad++;
                for (int j = 0; !failed && j < merged[i].n_top; j++)
                    if (merged[i].top_ids[j] != merged[i].token + j + 1) bad++;
                /* fault words: the OR of every rank that ran it (TP: all ranks, not only the owner) */
                uint32_t want = 0;
                for (int r = 0; r < size; r++)
                    if (proto_seq_runs(&s[i], r) && !(k == 9 && r == size - 1 && size > 1))
                        want |= seq_fault(s[i].slot, k, r);
                if (merged[i].fault != want) bad++;
            }
            /* rank 0 sees the full plan: the full plan's order is every owner's order */
            for (int i = 0, g = 0; i < n; i++) {
                int owner = proto_seq_owner(&s[i]);
                bool failed = k == 9 && owner == size - 1 && size > 1;
                for (int t = 0; t < proto_seq_plp_rows(&s[i]); t++, g++) {
                    const proto_plp_t *e = &gplp[g];
                    int nt = s[i].n_logprobs > 0 ? s[i].n_logprobs : 0;
                    if (failed ? e->token != -1 : (e->token != s[i].slot * 1000 + t * 10 + owner ||
                                                   e->logprob != -(float)t || e->n_top != nt))
                        bad++;
                    for (int j = 0; !failed && j < e->n_top; j++)
                        if (e->top_ids[j] != e->token + j + 1 || e->top_logprobs[j] != (float)j) bad++;
                }
            }
            if (k == 9 && size > 1)
                T_CHECK(st.failed_rank == size - 1 && st.failed_status == MS_ERR_INTERNAL);
            else
                T_CHECK(st.failed_rank == -1);
        }
        free(mine);
        free(merged);
        free(mplp);
        free(gplp);
    }
    if (rank == 0) {
        T_CHECK(proto_send_shutdown(l, STEPS) == MS_OK);
    } else {
        const proto_plan_t *p = (const proto_plan_t *)1;
        T_CHECK(proto_recv(l, &p) == MS_OK && p == NULL);
        /* one second of waiting should cost a few percent of a core at most */
        fprintf(stderr, "rank %d: idle second cost %.3f s CPU\n", rank, idle_cpu);
        T_CHECK_MSG(idle_cpu >= 0 && idle_cpu < 0.25, "rank %d: %.3f s CPU while idle for 1 s", rank, idle_cpu);
    }
    T_CHECK_MSG(bad == 0, "rank %d: %d mismatches", rank, bad);

    /* malformed headers are refused */
    proto_hdr_t h = proto_hdr_make(PROTO_MSG_PLAN, 64, 1);
    T_CHECK(proto_hdr_check(&h, 1024) == MS_OK);
    h.magic ^= 1;
    T_CHECK(proto_hdr_check(&h, 1024) == MS_ERR_FORMAT);
    h = proto_hdr_make(PROTO_MSG_PLAN, 64, 1);
    h.version = 99;
    T_CHECK(proto_hdr_check(&h, 1024) == MS_ERR_FORMAT);
    h = proto_hdr_make((proto_msg_type_t)9, 64, 1);
    T_CHECK(proto_hdr_check(&h, 1024) == MS_ERR_FORMAT);
    const proto_plan_t *p = make_plan(&pb, 3, 2);
    T_CHECK(proto_plan_check(p, p->hdr.length) == MS_OK);
    T_CHECK(proto_plan_check(p, p->hdr.length - 4) == MS_ERR_FORMAT);
    proto_seq_t *sq = (proto_seq_t *)proto_plan_seqs(p);
    sq[0].tok_off = p->n_tokens; /* points past the token array */
    T_CHECK(proto_plan_check(p, p->hdr.length) == MS_ERR_FORMAT);

    proto_planbuf_free(&pb);
    proto_link_destroy(l);
    MPI_Finalize();
    return t_done();
}
