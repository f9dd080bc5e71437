/* spec.h — rank 0's accounting of MTP speculative decoding: how many drafts
 * were verified and accepted at each draft position, for /metrics and the
 * step log. The decoding itself is the workers' (worker/forward_mtp.h,
 * engine.c); the scheduler feeds drafts (sched.c) and the engine loop
 * appends what was accepted (runtime/serve_loop.c). */
#ifndef MS_SPEC_H
#define MS_SPEC_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/plan.h"

typedef struct {
    int drafts;                         /* draft tokens per step (num_nextn_predict_layers); 0 = off */
    uint64_t verify_steps;              /* sequence-steps that verified at least one draft */
    uint64_t emitted;                   /* tokens those steps emitted (accepted drafts + the last token) */
    uint64_t proposed[PROTO_MAX_DRAFT]; /* drafts verified at draft position j (0 = the first after the last token) */
    uint64_t accepted[PROTO_MAX_DRAFT]; /* of which accepted (position j accepted implies 0..j-1 were) */
} spec_stats_t;

/* One verifying sequence-step: n_fed drafts fed, the first n_accepted accepted. */
void spec_stats_add(spec_stats_t *s, int n_fed, int n_accepted);
uint64_t spec_stats_proposed(const spec_stats_t *s);
uint64_t spec_stats_accepted(const spec_stats_t *s);
/* "drafts D, accepted A (r%), per position r1% r2% ..., tokens per verify step x" */
void spec_stats_format(const spec_stats_t *s, char *buf, size_t n);

#endif
