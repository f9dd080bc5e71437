/* metrics.h — the server's Prometheus metrics (GET /metrics, text exposition
 * format 0.0.4). Counters and histograms are fed by the gateway when a
 * request finishes or a reply is sent; gauges are read from coord_stats at
 * render time. Thread-safe (one mutex), though in practice only the gateway
 * thread calls it.
 *
 * Names (all prefixed moeserve_):
 *   requests_total{finish_reason}            counter  finished generation requests
 *   http_responses_total{code}                counter  replies by HTTP status
 *   prompt_tokens_total, generation_tokens_total  counters
 *   time_to_first_token_seconds               histogram
 *   time_per_output_token_seconds             histogram (after the first token)
 *   e2e_request_latency_seconds               histogram
 *   num_requests_running, num_requests_waiting  gauges
 *   kv_cache_blocks_used, kv_cache_blocks_free  gauges
 *   batch_size                                gauge (sequences in the last step)
 *   engine_steps_total                        counter
 *   ready                                     gauge (1 when serving) */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stddef.h>

#include "request.h"

typedef struct metrics metrics_t;

ms_status_t metrics_create(metrics_t **out);
void metrics_destroy(metrics_t *m);

/* One finished engine request. A negative time means "unknown" and is not
 * observed (e.g. TPOT of a one-token completion). */
void metrics_request_done(metrics_t *m, req_finish_t finish, int prompt_tokens, int completion_tokens, double ttft_s,
                          double tpot_s, double e2e_s);
void metrics_http_response(metrics_t *m, int status);

/* The exposition text (malloc'd, NUL-terminated). stats may be NULL (gauges
 * read 0). */
ms_status_t metrics_render(metrics_t *m, const coord_stats_t *stats, char **text, size_t *len);

#endif
