/* test_plan_delta.c — delta-encoded plan parts (proto/plan_delta.c) without
 * MPI: over a run of steps like the scheduler's (prefills, decodes crossing
 * block boundaries, sampling knobs and EOS-mask flags changing, a finished
 * slot reused, a preempted sequence re-prefilled, attention-DP owners),
 * expanding each rank's encoded part gives back exactly proto_plan_part's
 * bytes, decode steps go as 16-byte deltas (the parts shrink), and a delta
 * for a slot the rank never held is refused. */
#include "../test.h"
#include "proto/proto.h"

#include <stdint.h>

enum { NSLOT = 6, RANKS = 2, BS = 4 };

typedef struct {
    int live, len, seed;
    float temp;
    int32_t toks[512];
    int32_t blocks[128];
} sim_t;

int main(void)
{
    proto_mirror_t *sender[RANKS], *recv[RANKS];
    for (int r = 0; r < RANKS; r++)
        T_CHECK(proto_mirror_create(&sender[r]) == MS_OK && proto_mirror_create(&recv[r]) == MS_OK);
    proto_planbuf_t pb, xb;
    proto_planbuf_init(&pb), proto_planbuf_init(&xb);
    uint8_t *buf = NULL, *want = NULL;
    size_t cap = 0;
    sim_t sim[NSLOT] = {0};
    int bad = 0, deltas = 0, next_block = 0;
    size_t bytes_delta = 0, bytes_full = 0;
    for (int step = 0; step < 200; step++) {
        proto_planbuf_reset(&pb);
        for (int sl = 0; sl < NSLOT; sl++) {
            sim_t *q = &sim[sl];
            int n = 1, pos;
            if (!q->live || (step % 17 == sl)) { /* (re)start: new request or preempted and re-prefilled */
                int keep = q->live && step % 2 ? q->len : 0; /* preempted: all its tokens again */
                if (!keep) q->len = 0, q->seed = step * 10 + sl, q->temp = (float)(sl % 3) * 0.5f;
                q->live = 1;
                n = keep ? keep : 3 + (step + sl) % 9;
                for (int i = keep; i < n; i++) q->toks[i] = step * 100 + i;
                pos = 0;
                q->len = n;
                for (int b = 0; b < (n + BS - 1) / BS; b++) q->blocks[b] = next_block++ % 1000;
            } else {
                pos = q->len;
                q->toks[q->len++] = step * 7 + sl;
                if (pos % BS == 0) q->blocks[pos / BS] = next_block++ % 1000;
                if (step % 23 == sl) q->temp += 0.25f; /* knobs changed: a full entry */
            }
            if (q->len > 400) q->live = 0; /* finished: the slot is reused next step */
            proto_seq_t s = {.slot = sl, .dp_rank = sl % RANKS, .pos = pos, .temperature = q->temp, .top_p = 1,
                             .seed = (uint64_t)q->seed,
                             .flags = PROTO_SEQ_SAMPLE | ((step + sl) % 5 == 0 ? PROTO_SEQ_MASK_EOS : 0u) |
                                      ((step + sl) % 3 == 0 ? PROTO_SEQ_FEED_LAST : 0u)};
            T_CHECK(proto_planbuf_add(&pb, &s, q->toks + pos, n, q->blocks, (pos + n + BS - 1) / BS) == MS_OK);
        }
        const proto_plan_t *full = NULL;
        pb.flags = (uint32_t)(step % 3); /* PROTO_PLAN_SYNC / FLUSH travel in every part */
        T_CHECK(proto_planbuf_finish(&pb, (uint32_t)step, &full) == MS_OK);
        T_CHECK(full->flags == (uint32_t)(step % 3));
        for (int r = 0; r < RANKS; r++) {
            size_t len = 0, wl = proto_plan_part(full, r, NULL);
            T_CHECK(proto_plan_part_delta(full, r, sender[r], &buf, &cap, &len) == MS_OK);
            const proto_plan_t *part = (const proto_plan_t *)buf, *x = NULL;
            T_CHECK(proto_plan_check(part, len) == MS_OK);
            deltas += part->n_deltas;
            bytes_delta += len, bytes_full += wl;
            T_CHECK(proto_plan_expand(part, recv[r], &xb, &x) == MS_OK);
            want = realloc(want, wl);
            proto_plan_part(full, r, want);
            if (!x || x->hdr.length != wl || memcmp(x, want, wl)) bad++;
        }
    }
    T_CHECK_MSG(bad == 0, "%d parts expanded differently from proto_plan_part", bad);
    T_CHECK_MSG(deltas > 800, "only %d decode steps went as deltas", deltas);
    T_CHECK_MSG(bytes_delta * 2 < bytes_full, "delta parts %zu bytes vs full %zu", bytes_delta, bytes_full);
    fprintf(stderr, "%d deltas; %zu bytes of parts vs %zu without deltas\n", deltas, bytes_delta, bytes_full);

    /* a delta for a slot the receiver never held */
    proto_mirror_t *fresh;
    T_CHECK(proto_mirror_create(&fresh) == MS_OK);
    size_t len = 0;
    proto_planbuf_reset(&pb);
    proto_seq_t s = {.slot = 0, .dp_rank = 0, .pos = 5, .top_p = 1, .flags = PROTO_SEQ_SAMPLE};
    int32_t t = 1, b[2] = {0, 1};
    proto_planbuf_add(&pb, &s, &t, 1, b, 2);
    const proto_plan_t *full;
    proto_planbuf_finish(&pb, 0, &full);
    proto_mirror_t *snd;
    T_CHECK(proto_mirror_create(&snd) == MS_OK);
    proto_plan_part_delta(full, 0, snd, &buf, &cap, &len); /* full entry, snd now holds slot 0 at pos 5 */
    ((proto_seq_t *)proto_plan_seqs(full))->pos = 6;
    T_CHECK(proto_plan_part_delta(full, 0, snd, &buf, &cap, &len) == MS_OK && ((proto_plan_t *)buf)->n_deltas == 1);
    const proto_plan_t *x;
    T_CHECK(proto_plan_expand((const proto_plan_t *)buf, fresh, &xb, &x) == MS_ERR_FORMAT);
    proto_mirror_destroy(fresh), proto_mirror_destroy(snd);
    for (int r = 0; r < RANKS; r++) proto_mirror_destroy(sender[r]), proto_mirror_destroy(recv[r]);
    proto_planbuf_free(&pb), proto_planbuf_free(&xb);
    free(buf), free(want);
    return t_done();
}
