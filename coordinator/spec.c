/* spec.c — MTP acceptance counters (spec.h). */
#include "spec.h"

#include <stdio.h>

void spec_stats_add(spec_stats_t *s, int n_fed, int n_accepted)
{
    if (n_fed <= 0) return;
    if (n_fed > PROTO_MAX_DRAFT) n_fed = PROTO_MAX_DRAFT;
    if (n_accepted > n_fed) n_accepted = n_fed;
    s->verify_steps++;
    s->emitted += (uint64_t)n_accepted + 1;
    for (int j = 0; j < n_fed; j++) {
        s->proposed[j]++;
        if (j < n_accepted) s->accepted[j]++;
    }
}

uint64_t spec_stats_proposed(const spec_stats_t *s)
{
    uint64_t n = 0;
    for (int j = 0; j < PROTO_MAX_DRAFT; j++) n += s->proposed[j];
    return n;
}

uint64_t spec_stats_accepted(const spec_stats_t *s)
{
    uint64_t n = 0;
    for (int j = 0; j < PROTO_MAX_DRAFT; j++) n += s->accepted[j];
    return n;
}

void spec_stats_format(const spec_stats_t *s, char *buf, size_t n)
{
    uint64_t p = spec_stats_proposed(s), a = spec_stats_accepted(s);
    size_t o = (size_t)snprintf(buf, n, "drafts %llu, accepted %llu (%.1f%%), per position", (unsigned long long)p,
                                (unsigned long long)a, p ? 100.0 * (double)a / (double)p : 0.0);
    for (int j = 0; j < s->drafts && j < PROTO_MAX_DRAFT && o < n; j++)
        o += (size_t)snprintf(buf + o, n - o, " %.1f%%",
                              s->proposed[j] ? 100.0 * (double)s->accepted[j] / (double)s->proposed[j] : 0.0);
    if (o < n)
        snprintf(buf + o, n - o, ", tokens per verify step %.2f",
                 s->verify_steps ? (double)s->emitted / (double)s->verify_steps : 0.0);
}
