/* bench.h — moeserve-bench, a serving load generator that measures what
 * vLLM's / TensorRT-LLM's benchmark_serving.py measures, the same way, in C.
 *
 *   bench_main.c    flags (benchmark_serving's names), main, progress bar
 *   bench_data.c    the random dataset: prompts of random token ids
 *   bench_client.c  libevent HTTP client: arrivals, concurrency, SSE reader
 *   bench_report.c  metrics, the "Serving Benchmark Result" block, result JSON
 *
 * Definitions (benchmark_serving's, which the seed's numbers use):
 *   TTFT  first SSE event carrying a non-empty "choices" minus send time
 *   ITL   gap between consecutive such events (split evenly over the tokens
 *         of an event when the event says how many it carries: logprobs)
 *   E2EL  last such event minus send time (not [DONE], not the usage event)
 *   TPOT  (E2EL - TTFT) / (output_tokens - 1), for output_tokens > 1
 *   token counts from the server's final usage event.
 */
#ifndef MS_BENCH_H
#define MS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/tok.h"
#include "status.h"

/* coordinator/http.c: CLOCK_MONOTONIC seconds (one clock for the project). */
double http_now(void);

typedef enum { BENCH_OPENAI = 0, BENCH_OPENAI_CHAT } bench_backend_t;

#define BENCH_MAX_PCT 16

typedef struct {
    const char *base_url; /* NULL: http://host:port */
    const char *host;
    int port;
    const char *endpoint;
    bench_backend_t backend;
    const char *model;           /* "model" in each request; default tokenizer dir */
    const char *served_model_name;
    const char *tokenizer;       /* directory with tokenizer.json (default: --model) */
    int input_len, output_len, prefix_len;
    double range_ratio;
    bool random_ids, tokenize_on_client;
    int num_prompts;
    int max_concurrency; /* 0 = unlimited */
    double request_rate; /* INFINITY = all at t=0 */
    double burstiness;
    bool ignore_eos;
    int logprobs;        /* -1 = not sent */
    uint64_t seed;
    double temperature;
    bool metric_ttft, metric_tpot, metric_itl, metric_e2el;
    double pct[BENCH_MAX_PCT];
    int n_pct;
    bool save_result;
    const char *result_dir, *result_filename;
    bool disable_tqdm;
    bool no_test_input;
    double request_timeout_s;
    const char *metadata[16];
    int n_metadata;
} bench_args_t;

/* One prompt and what its request measured. */
typedef struct {
    int32_t *ids;  /* prompt token ids (owned); sent when tokenize_on_client */
    size_t n_ids;
    char *text;    /* prompt text (owned); sent otherwise */
    int prompt_len;  /* planned length; replaced by usage.prompt_tokens */
    int output_len;  /* max_tokens */
    /* results */
    bool success;
    double ttft, latency;  /* seconds */
    double *itl;           /* seconds (owned) */
    size_t n_itl, cap_itl;
    int output_tokens;     /* usage.completion_tokens; 0 when none came */
    bool usage_seen;
    char *generated;       /* owned, NUL-terminated */
    size_t gen_len, gen_cap;
    char *error;           /* owned; NULL on success */
} bench_req_t;

/* A small seeded generator (xoshiro256**) so a --seed replays the same
 * prompts and arrival times. */
typedef struct {
    uint64_t s[4];
} bench_rng_t;
void bench_rng_seed(bench_rng_t *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng_t *r);
double bench_rng_uniform(bench_rng_t *r);                 /* [0, 1) */
int64_t bench_rng_int(bench_rng_t *r, int64_t lo, int64_t hi); /* [lo, hi] */
double bench_rng_gamma(bench_rng_t *r, double shape, double scale);

/* bench_data.c: fill reqs[0..n) as benchmark_serving's random dataset does.
 * vocab: ids drawn from [0, vocab) minus special tokens and ids without a token. */
ms_status_t bench_data_random(const bench_args_t *a, const tok_t *tok, int vocab, bench_req_t *reqs, int n);
void bench_req_free(bench_req_t *r);

/* bench_client.c: run every request against the server; returns the wall
 * duration of the benchmark (first send to last reply) in *dur_s. A failed
 * request is recorded in its bench_req_t, never a failure of the run. */
typedef void (*bench_progress_fn)(int done, int total, void *arg);
ms_status_t bench_client_run(const bench_args_t *a, bench_req_t *reqs, int n, bench_progress_fn progress,
                             void *progress_arg, double *dur_s);

/* bench_report.c */
typedef struct {
    double mean, median, std;
    double pct[BENCH_MAX_PCT];
} bench_stat_t;

typedef struct {
    int total, completed, failed;
    long long total_input, total_output;
    double duration;
    double request_throughput, output_throughput, total_token_throughput, user_throughput;
    bench_stat_t ttft, tpot, itl, e2el; /* ms */
} bench_metrics_t;

/* numpy's default percentile (linear interpolation between order statistics);
 * an empty x gives 0, as np.percentile(x or 0, p) does. x is sorted in place. */
double bench_percentile(double *x, size_t n, double p);
void bench_metrics_compute(const bench_args_t *a, const bench_req_t *reqs, int n, double dur_s,
                           bench_metrics_t *m);
void bench_report_print(const bench_args_t *a, const bench_metrics_t *m, const bench_req_t *reqs, int n);
ms_status_t bench_report_save(const bench_args_t *a, const bench_metrics_t *m, const bench_req_t *reqs, int n);

#endif
