/* bench_report.c — moeserve-bench's numbers (bench.h): benchmark_serving's
 * calculate_metrics, the seed's "Serving Benchmark Result" block in its exact
 * layout (Python's "{:<40} {:<10.2f}" lines, '='/'-' centred headers), and
 * the result JSON with vLLM's keys so existing analysis scripts read it.
 *
 * Statistics are numpy's: mean, population std, median and linear
 * percentiles; an empty sample gives 0 for each (np.mean(x or 0)). */
#include "bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(double *x, size_t n, double p)
{
    if (n == 0) return 0;
    qsort(x, n, sizeof *x, cmp_double);
    double pos = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return x[lo] + (x[hi] - x[lo]) * (pos - (double)lo);
}

/* x in seconds -> stats in ms. Sorts x. */
static void stat_of(const bench_args_t *a, double *x, size_t n, bench_stat_t *s)
{
    memset(s, 0, sizeof *s);
    if (n == 0) return;
    double sum = 0, ss = 0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    s->mean = mean * 1000;
    s->std = sqrt(ss / (double)n) * 1000;
    s->median = bench_percentile(x, n, 50) * 1000;
    for (int i = 0; i < a->n_pct; i++) s->pct[i] = bench_percentile(x, n, a->pct[i]) * 1000;
}

void bench_metrics_compute(const bench_args_t *a, const bench_req_t *reqs, int n, double dur_s, bench_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    m->total = n;
    m->duration = dur_s;
    size_t n_itl = 0;
    for (int i = 0; i < n; i++)
        if (reqs[i].success) n_itl += reqs[i].n_itl;
    double *ttft = calloc((size_t)n + 1, sizeof *ttft), *tpot = calloc((size_t)n + 1, sizeof *tpot);
    double *e2el = calloc((size_t)n + 1, sizeof *e2el), *itl = calloc(n_itl + 1, sizeof *itl);
    if (!ttft || !tpot || !e2el || !itl) {
        fprintf(stderr, "moeserve-bench: out of memory computing metrics\n");
        exit(1);
    }
    size_t nt = 0, np = 0, ni = 0;
    double user = 0;
    for (int i = 0; i < n; i++) {
        const bench_req_t *r = &reqs[i];
        if (!r->success) continue;
        m->completed++;
        m->total_input += r->prompt_len;
        m->total_output += r->output_tokens;
        if (r->output_tokens > 1) tpot[np++] = (r->latency - r->ttft) / (r->output_tokens - 1);
        memcpy(itl + ni, r->itl, r->n_itl * sizeof *itl);
        ni += r->n_itl;
        ttft[nt] = r->ttft;
        e2el[nt++] = r->latency;
        if (r->latency > 0) user += r->output_tokens / r->latency;
    }
    m->failed = n - m->completed;
    m->request_throughput = m->completed / dur_s;
    m->output_throughput = (double)m->total_output / dur_s;
    m->total_token_throughput = (double)(m->total_input + m->total_output) / dur_s;
    m->user_throughput = m->completed ? user / m->completed : 0;
    stat_of(a, ttft, nt, &m->ttft);
    stat_of(a, tpot, np, &m->tpot);
    stat_of(a, itl, ni, &m->itl);
    stat_of(a, e2el, nt, &m->e2el);
    free(ttft);
    free(tpot);
    free(e2el);
    free(itl);
}

/* Python's "{s:{c}^{n}}": centred, the odd pad character on the right. */
static void header(const char *s, char c)
{
    int len = (int)strlen(s), pad = 50 - len, left = pad / 2;
    for (int i = 0; i < left; i++) putchar(c);
    fputs(s, stdout);
    for (int i = 0; i < pad - left; i++) putchar(c);
    putchar('\n');
}

static void line_i(const char *k, long long v) { printf("%-40s %-10lld\n", k, v); }
static void line_f(const char *k, double v) { printf("%-40s %-10.2f\n", k, v); }

/* "99" for 99.0, "99.9" for 99.9 (benchmark_serving's p_word). */
static void pct_word(double p, char *buf, size_t n)
{
    if (p == floor(p)) snprintf(buf, n, "%d", (int)p);
    else snprintf(buf, n, "%g", p);
}

static void metric_block(const bench_args_t *a, const char *name, const char *title, const bench_stat_t *s)
{
    char k[96], w[32];
    header(title, '-');
    snprintf(k, sizeof k, "Mean %s (ms):", name);
    line_f(k, s->mean);
    snprintf(k, sizeof k, "Median %s (ms):", name);
    line_f(k, s->median);
    for (int i = 0; i < a->n_pct; i++) {
        pct_word(a->pct[i], w, sizeof w);
        snprintf(k, sizeof k, "P%s %s (ms):", w, name);
        line_f(k, s->pct[i]);
    }
}

void bench_report_print(const bench_args_t *a, const bench_metrics_t *m, const bench_req_t *reqs, int n)
{
    /* failures by reason first, as TensorRT-LLM's script prints them */
    if (m->failed) {
        int shown = 0;
        for (int i = 0; i < n; i++) {
            if (reqs[i].success || !reqs[i].error) continue;
            bool seen = false;
            for (int j = 0; j < i && !seen; j++)
                seen = !reqs[j].success && reqs[j].error && !strcmp(reqs[j].error, reqs[i].error);
            if (seen) continue;
            int count = 0;
            for (int j = i; j < n; j++) count += !reqs[j].success && reqs[j].error && !strcmp(reqs[j].error, reqs[i].error);
            if (shown++ < 10) printf("Error type: %s, Count: %d requests\n", reqs[i].error, count);
        }
        if (shown > 10) printf("(%d more error types in the result JSON's \"errors\")\n", shown - 10);
        printf("Total failed requests: %d\n", m->failed);
    }
    header(" Serving Benchmark Result ", '=');
    line_i("Successful requests:", m->completed);
    line_i("Failed requests:", m->failed);
    line_f("Benchmark duration (s):", m->duration);
    line_i("Total input tokens:", m->total_input);
    line_i("Total generated tokens:", m->total_output);
    line_f("Request throughput (req/s):", m->request_throughput);
    line_f("Output token throughput (tok/s):", m->output_throughput);
    line_f("Total Token throughput (tok/s):", m->total_token_throughput);
    line_f("User throughput (tok/s):", m->user_throughput);
    if (a->metric_ttft) metric_block(a, "TTFT", "Time to First Token", &m->ttft);
    if (a->metric_tpot) metric_block(a, "TPOT", "Time per Output Token (excl. 1st token)", &m->tpot);
    if (a->metric_itl) metric_block(a, "ITL", "Inter-token Latency", &m->itl);
    if (a->metric_e2el) metric_block(a, "E2EL", "End-to-end Latency", &m->e2el);
    for (int i = 0; i < 50; i++) putchar('=');
    putchar('\n');
    fflush(stdout);
}

static void put_stat(json_t *o, const bench_args_t *a, const char *name, const bench_stat_t *s)
{
    char k[64], w[32];
    snprintf(k, sizeof k, "mean_%s_ms", name);
    json_object_set_new(o, k, json_real(s->mean));
    snprintf(k, sizeof k, "median_%s_ms", name);
    json_object_set_new(o, k, json_real(s->median));
    snprintf(k, sizeof k, "std_%s_ms", name);
    json_object_set_new(o, k, json_real(s->std));
    for (int i = 0; i < a->n_pct; i++) {
        pct_word(a->pct[i], w, sizeof w);
        snprintf(k, sizeof k, "p%s_%s_ms", w, name);
        json_object_set_new(o, k, json_real(s->pct[i]));
    }
}

static int mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

ms_status_t bench_report_save(const bench_args_t *a, const bench_metrics_t *m, const bench_req_t *reqs, int n)
{
    char date[32], path[4096], name[1024];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y%m%d-%H%M%S", localtime(&now));
    json_t *o = json_object();
    json_object_set_new(o, "date", json_string(date));
    json_object_set_new(o, "backend", json_string(a->backend == BENCH_OPENAI_CHAT ? "openai-chat" : "openai"));
    json_object_set_new(o, "model_id", json_string(a->model));
    json_object_set_new(o, "tokenizer_id", json_string(a->tokenizer));
    json_object_set_new(o, "num_prompts", json_integer(a->num_prompts));
    for (int i = 0; i < a->n_metadata; i++) {
        const char *eq = strchr(a->metadata[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - a->metadata[i]), a->metadata[i]);
        json_object_set_new(o, key, json_string(eq + 1));
    }
    json_object_set_new(o, "request_rate", isinf(a->request_rate) ? json_string("inf") : json_real(a->request_rate));
    json_object_set_new(o, "burstiness", json_real(a->burstiness));
    json_object_set_new(o, "max_concurrency", a->max_concurrency > 0 ? json_integer(a->max_concurrency) : json_null());
    json_object_set_new(o, "duration", json_real(m->duration));
    json_object_set_new(o, "completed", json_integer(m->completed));
    json_object_set_new(o, "failed", json_integer(m->failed));
    json_object_set_new(o, "total_input_tokens", json_integer(m->total_input));
    json_object_set_new(o, "total_output_tokens", json_integer(m->total_output));
    json_object_set_new(o, "request_throughput", json_real(m->request_throughput));
    json_object_set_new(o, "output_throughput", json_real(m->output_throughput));
    json_object_set_new(o, "total_token_throughput", json_real(m->total_token_throughput));
    json_object_set_new(o, "user_throughput", json_real(m->user_throughput));
    json_t *il = json_array(), *ol = json_array(), *tt = json_array(), *it = json_array(), *el = json_array();
    json_t *gt = json_array(), *er = json_array();
    for (int i = 0; i < n; i++) {
        const bench_req_t *r = &reqs[i];
        json_array_append_new(il, json_integer(r->prompt_len));
        json_array_append_new(ol, json_integer(r->success ? r->output_tokens : 0));
        json_array_append_new(tt, json_real(r->success ? r->ttft : 0));
        json_array_append_new(el, json_real(r->success ? r->latency : 0));
        json_t *one = json_array();
        for (size_t j = 0; r->success && j < r->n_itl; j++) json_array_append_new(one, json_real(r->itl[j]));
        json_array_append_new(it, one);
        json_t *g = r->generated ? json_stringn(r->generated, r->gen_len) : NULL;
        json_array_append_new(gt, g ? g : json_string(""));
        json_array_append_new(er, json_string(r->error ? r->error : ""));
    }
    json_object_set_new(o, "input_lens", il);
    json_object_set_new(o, "output_lens", ol);
    json_object_set_new(o, "ttfts", tt);
    json_object_set_new(o, "itls", it);
    json_object_set_new(o, "e2els", el);
    json_object_set_new(o, "generated_texts", gt);
    json_object_set_new(o, "errors", er);
    if (a->metric_ttft) put_stat(o, a, "ttft", &m->ttft);
    if (a->metric_tpot) put_stat(o, a, "tpot", &m->tpot);
    if (a->metric_itl) put_stat(o, a, "itl", &m->itl);
    if (a->metric_e2el) put_stat(o, a, "e2el", &m->e2el);

    if (a->result_filename) {
        snprintf(name, sizeof name, "%s", a->result_filename);
    } else {
        const char *base = strrchr(a->model, '/');
        base = base && base[1] ? base + 1 : a->model;
        char rate[32], conc[32] = "";
        if (isinf(a->request_rate)) snprintf(rate, sizeof rate, "inf");
        else snprintf(rate, sizeof rate, a->request_rate == floor(a->request_rate) ? "%.1f" : "%g", a->request_rate);
        if (a->max_concurrency > 0) snprintf(conc, sizeof conc, "-concurrency%d", a->max_concurrency);
        snprintf(name, sizeof name, "%s-%sqps%s-%s-%s.json", a->backend == BENCH_OPENAI_CHAT ? "openai-chat" : "openai",
                 rate, conc, base, date);
    }
    if (a->result_dir) {
        if (mkdir_p(a->result_dir)) {
            json_decref(o);
            return MS_ERR(MS_ERR_IO, "bench: cannot create --result-dir %s: %s", a->result_dir, strerror(errno));
        }
        snprintf(path, sizeof path, "%s/%s", a->result_dir, name);
    } else {
        snprintf(path, sizeof path, "%s", name);
    }
    int rc = json_dump_file(o, path, JSON_COMPACT);
    json_decref(o);
    if (rc) return MS_ERR(MS_ERR_IO, "bench: cannot write %s", path);
    fprintf(stderr, "moeserve-bench: result saved to %s\n", path);
    return MS_OK;
}
