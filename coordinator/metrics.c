/* metrics.c — counters, histograms and the Prometheus text exposition
 * (metrics.h). Histograms keep per-bucket (non-cumulative) counts and are
 * made cumulative when rendered; bucket bounds are fixed at compile time and
 * cover a CPU tiny model (milliseconds) up to long GPU generations (hours). */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 300, 1000};
static const double tpot_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10};
static const double e2e_bounds[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600};
#define MAX_BOUNDS 24

typedef struct {
    const double *bounds;
    int n_bounds;
    unsigned long long counts[MAX_BOUNDS + 1]; /* last: above every bound (+Inf) */
    double sum;
    unsigned long long count;
} histo_t;

#define N_FINISH 4 /* length, stop, abort, error */
#define N_CODES 16

struct metrics {
    pthread_mutex_t mu;
    unsigned long long finished[N_FINISH];
    unsigned long long prompt_tokens, generation_tokens;
    int codes[N_CODES];
    unsigned long long code_counts[N_CODES];
    histo_t ttft, tpot, e2e;
};

static void histo_init(histo_t *h, const double *b, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = b;
    h->n_bounds = n;
}

static void histo_observe(histo_t *h, double v)
{
    if (!(v >= 0)) return; /* unknown (negative or NaN) */
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

ms_status_t metrics_create(metrics_t **out)
{
    _Static_assert(sizeof ttft_bounds / sizeof(double) <= MAX_BOUNDS, "ttft buckets");
    _Static_assert(sizeof tpot_bounds / sizeof(double) <= MAX_BOUNDS, "tpot buckets");
    _Static_assert(sizeof e2e_bounds / sizeof(double) <= MAX_BOUNDS, "e2e buckets");
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return MS_ERR(MS_ERR_NOMEM, "metrics: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    histo_init(&m->ttft, ttft_bounds, (int)(sizeof ttft_bounds / sizeof(double)));
    histo_init(&m->tpot, tpot_bounds, (int)(sizeof tpot_bounds / sizeof(double)));
    histo_init(&m->e2e, e2e_bounds, (int)(sizeof e2e_bounds / sizeof(double)));
    *out = m;
    return MS_OK;
}

void metrics_destroy(metrics_t *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int finish_slot(req_finish_t f)
{
    switch (f) {
    case REQ_FINISH_LENGTH: return 0;
    case REQ_FINISH_STOP: return 1;
    case REQ_FINISH_ABORT: return 2;
    default: return 3;
    }
}
static const char *const finish_names[N_FINISH] = {"length", "stop", "abort", "error"};

void metrics_request_done(metrics_t *m, req_finish_t finish, int prompt_tokens, int completion_tokens, double ttft_s,
                          double tpot_s, double e2e_s)
{
    pthread_mutex_lock(&m->mu);
    m->finished[finish_slot(finish)]++;
    if (prompt_tokens > 0) m->prompt_tokens += (unsigned long long)prompt_tokens;
    if (completion_tokens > 0) m->generation_tokens += (unsigned long long)completion_tokens;
    histo_observe(&m->ttft, ttft_s);
    histo_observe(&m->tpot, tpot_s);
    histo_observe(&m->e2e, e2e_s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_http_response(metrics_t *m, int status)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < N_CODES; i++) {
        if (m->codes[i] == status || m->codes[i] == 0) {
            m->codes[i] = status;
            m->code_counts[i]++;
            break;
        }
    }
    /* more than N_CODES distinct statuses: the rest are not counted (never happens: we send ~10) */
    pthread_mutex_unlock(&m->mu);
}

/* A growable text buffer with printf. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void head(sbuf_t *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP moeserve_%s %s\n# TYPE moeserve_%s %s\n", name, help, name, type);
}

static void gauge(sbuf_t *b, const char *name, const char *help, double v)
{
    head(b, name, "gauge", help);
    sb_printf(b, "moeserve_%s %.17g\n", name, v);
}

static void histo_render(sbuf_t *b, const char *name, const char *help, const histo_t *h)
{
    head(b, name, "histogram", help);
    unsigned long long cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        sb_printf(b, "moeserve_%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], cum);
    }
    cum += h->counts[h->n_bounds];
    sb_printf(b, "moeserve_%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
    sb_printf(b, "moeserve_%s_sum %.17g\n", name, h->sum);
    sb_printf(b, "moeserve_%s_count %llu\n", name, h->count);
}

ms_status_t metrics_render(metrics_t *m, const coord_stats_t *stats, char **text, size_t *len)
{
    coord_stats_t zero;
    memset(&zero, 0, sizeof zero);
    if (!stats) stats = &zero;
    sbuf_t b = {.s = malloc(4096), .cap = 4096};
    if (!b.s) return MS_ERR(MS_ERR_NOMEM, "metrics: out of memory");
    b.s[0] = 0;

    pthread_mutex_lock(&m->mu);
    head(&b, "requests_total", "counter", "Finished generation requests by finish reason.");
    for (int i = 0; i < N_FINISH; i++)
        sb_printf(&b, "moeserve_requests_total{finish_reason=\"%s\"} %llu\n", finish_names[i], m->finished[i]);
    head(&b, "http_responses_total", "counter", "HTTP replies by status code.");
    for (int i = 0; i < N_CODES && m->codes[i]; i++)
        sb_printf(&b, "moeserve_http_responses_total{code=\"%d\"} %llu\n", m->codes[i], m->code_counts[i]);
    head(&b, "prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
    sb_printf(&b, "moeserve_prompt_tokens_total %llu\n", m->prompt_tokens);
    head(&b, "generation_tokens_total", "counter", "Generated tokens of finished requests.");
    sb_printf(&b, "moeserve_generation_tokens_total %llu\n", m->generation_tokens);
    histo_render(&b, "time_to_first_token_seconds", "Time from arrival to the first generated token.", &m->ttft);
    histo_render(&b, "time_per_output_token_seconds", "Mean time per generated token after the first, per request.",
                 &m->tpot);
    histo_render(&b, "e2e_request_latency_seconds", "Time from arrival to the last token.", &m->e2e);
    pthread_mutex_unlock(&m->mu);

    gauge(&b, "num_requests_running", "Requests in the running batch.", stats->running);
    gauge(&b, "num_requests_waiting", "Requests waiting to be scheduled.", stats->waiting);
    gauge(&b, "kv_cache_blocks_used", "KV cache blocks in use.", stats->kv_blocks_used);
    gauge(&b, "kv_cache_blocks_free", "KV cache blocks free.", stats->kv_blocks_free);
    gauge(&b, "kv_cache_bytes", "KV cache pool bytes per rank.", stats->kv_bytes);
    {
        const int all = stats->kv_blocks_used + stats->kv_blocks_free;
        gauge(&b, "kv_cache_usage", "Fraction of KV cache blocks in use.", all ? (double)stats->kv_blocks_used / all : 0);
    }
    gauge(&b, "kv_cache_blocks_cached", "Prefix-cache blocks kept for reuse that no request holds (counted free).",
          stats->kv_blocks_idle);
    head(&b, "prefix_cache_queries_total", "counter", "Known tokens of admitted sequences looked up in the prefix cache.");
    sb_printf(&b, "moeserve_prefix_cache_queries_total %llu\n", (unsigned long long)stats->prefix_query_tokens);
    head(&b, "prefix_cache_hits_total", "counter", "Of them, tokens whose KV was reused instead of computed.");
    sb_printf(&b, "moeserve_prefix_cache_hits_total %llu\n", (unsigned long long)stats->prefix_hit_tokens);
    gauge(&b, "prefix_cache_hit_rate", "Prefix cache hits / queries since start (0 before any query).",
          stats->prefix_query_tokens ? (double)stats->prefix_hit_tokens / (double)stats->prefix_query_tokens : 0);
    gauge(&b, "batch_size", "Sequences in the last engine step.", stats->last_batch_size);
    gauge(&b, "ready", "1 when the engine is loaded and serving, else 0.", stats->ready && !stats->draining ? 1 : 0);
    head(&b, "engine_steps_total", "counter", "Engine steps run.");
    sb_printf(&b, "moeserve_engine_steps_total %llu\n", (unsigned long long)stats->steps);
    head(&b, "engine_steps_overlapped_total", "counter",
         "Engine steps planned while the previous one ran (overlap scheduler; 0 when disabled).");
    sb_printf(&b, "moeserve_engine_steps_overlapped_total %llu\n", (unsigned long long)stats->steps_overlapped);
    const spec_stats_t *sp = &stats->spec;
    if (sp->drafts > 0) {
        uint64_t prop = spec_stats_proposed(sp), acc = spec_stats_accepted(sp);
        head(&b, "spec_draft_tokens_total", "counter", "MTP draft tokens verified by the main model.");
        sb_printf(&b, "moeserve_spec_draft_tokens_total %llu\n", (unsigned long long)prop);
        head(&b, "spec_accepted_tokens_total", "counter", "MTP draft tokens accepted.");
        sb_printf(&b, "moeserve_spec_accepted_tokens_total %llu\n", (unsigned long long)acc);
        head(&b, "spec_draft_tokens_by_position_total", "counter", "Drafts verified at each draft position (1 = the "
                                                                   "token after the sampled one).");
        for (int j = 0; j < sp->drafts && j < PROTO_MAX_DRAFT; j++)
            sb_printf(&b, "moeserve_spec_draft_tokens_by_position_total{position=\"%d\"} %llu\n", j + 1,
                      (unsigned long long)sp->proposed[j]);
        head(&b, "spec_accepted_tokens_by_position_total", "counter", "Drafts accepted at each draft position.");
        for (int j = 0; j < sp->drafts && j < PROTO_MAX_DRAFT; j++)
            sb_printf(&b, "moeserve_spec_accepted_tokens_by_position_total{position=\"%d\"} %llu\n", j + 1,
                      (unsigned long long)sp->accepted[j]);
        head(&b, "spec_acceptance_rate", "gauge", "Accepted / verified drafts at each draft position, since start.");
        for (int j = 0; j < sp->drafts && j < PROTO_MAX_DRAFT; j++)
            sb_printf(&b, "moeserve_spec_acceptance_rate{position=\"%d\"} %.6f\n", j + 1,
                      sp->proposed[j] ? (double)sp->accepted[j] / (double)sp->proposed[j] : 0.0);
        head(&b, "spec_mean_accepted_length", "gauge", "Mean tokens emitted per sequence-step that verified drafts "
                                                       "(accepted drafts + 1).");
        sb_printf(&b, "moeserve_spec_mean_accepted_length %.6f\n",
                  sp->verify_steps ? (double)sp->emitted / (double)sp->verify_steps : 0.0);
    }

    if (b.oom) {
        free(b.s);
        return MS_ERR(MS_ERR_NOMEM, "metrics: out of memory rendering");
    }
    *text = b.s;
    if (len) *len = b.len;
    return MS_OK;
}
