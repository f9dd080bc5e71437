/* bench_main.c — moeserve-bench: flags (benchmark_serving.py's names and
 * defaults), the initial single-prompt test run, the progress bar, and the
 * order of a run: prompts -> test request -> benchmark -> report -> JSON.
 * See bench.h for what is measured and how. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: moeserve-bench --model MODEL [options]\n"
          "\n"
          "A serving benchmark that measures what vLLM's / TensorRT-LLM's benchmark_serving.py\n"
          "measures (TTFT, TPOT, ITL, E2EL percentiles; request and token throughput), with the\n"
          "same flags, the same report block and the same result-JSON keys.\n"
          "\n"
          "server:\n"
          "  --base-url URL            http://host:port (instead of --host/--port)\n"
          "  --host H --port P         default 127.0.0.1 8000\n"
          "  --endpoint PATH           /v1/completions (default) or /v1/chat/completions\n"
          "  --backend openai|openai-chat   completions or chat; openai-chat implies\n"
          "                            --endpoint /v1/chat/completions\n"
          "  --model NAME              sent as \"model\"; also the tokenizer directory by default\n"
          "  --served-model-name NAME  sent as \"model\" instead of --model\n"
          "  --tokenizer DIR           directory with tokenizer.json (+ config.json for the\n"
          "                            model's vocab_size, which bounds the prompt ids)\n"
          "  --request-timeout S       a request with no byte from the server for S seconds\n"
          "                            fails (default 21600, benchmark_serving's 6 h)\n"
          "dataset (--dataset-name random, the only one):\n"
          "  --random-input-len N      default 1024\n"
          "  --random-output-len N     default 128 (max_tokens of each request)\n"
          "  --random-prefix-len N     shared random prefix, default 0\n"
          "  --random-range-ratio R    lengths uniform in [X*(1-R), X*(1+R)], 0 <= R < 1; default 0\n"
          "  --random-ids              prompts are random token ids (always so here; accepted\n"
          "                            for the seed's command line)\n"
          "  --tokenize-on-client      send the ids themselves (\"prompt\": [ids]); without it the\n"
          "                            ids are detokenized and sent as text. openai-chat always\n"
          "                            sends text: chat has no token-id prompts yet (issue 14)\n"
          "  --num-prompts N           default 1000\n"
          "  --seed N                  default 0\n"
          "traffic:\n"
          "  --max-concurrency N       at most N requests in flight (default: no limit)\n"
          "  --request-rate R          requests/s, Poisson arrivals; default inf (all at once)\n"
          "  --burstiness B            gamma-shaped gaps (1 = Poisson), default 1\n"
          "  --ignore-eos              generate exactly max_tokens\n"
          "  --temperature T           default 0 (greedy, as TensorRT-LLM's script)\n"
          "  --logprobs N              ask for logprobs; then a stream event carrying several\n"
          "                            tokens has its gap split evenly over them in ITL\n"
          "  --no-test-input           skip the initial single-prompt test request\n"
          "output:\n"
          "  --percentile-metrics L    of ttft,tpot,itl,e2el; default ttft,tpot,itl\n"
          "  --metric-percentiles L    default 99\n"
          "  --save-result             write the result JSON (vLLM's keys, per-request details)\n"
          "  --save-detailed           accepted; the details are always saved\n"
          "  --result-dir DIR --result-filename NAME\n"
          "  --metadata KEY=VALUE      extra keys in the result JSON (repeatable)\n"
          "  --disable-tqdm            no progress bar (it goes to stderr; a TTY gets a redrawn\n"
          "                            bar, anything else a line per 10%)\n",
          f);
}

enum {
    O_BACKEND = 1000, O_BASE_URL, O_HOST, O_PORT, O_ENDPOINT, O_DATASET, O_DATASET_PATH, O_MODEL, O_SERVED,
    O_TOKENIZER, O_IN, O_OUT, O_PREFIX, O_RATIO, O_RANDOM_IDS, O_TOC, O_NUM, O_CONC, O_RATE, O_BURST, O_EOS,
    O_SEED, O_TEMP, O_LOGPROBS, O_NOTEST, O_PMETRICS, O_PCTS, O_SAVE, O_DETAILED, O_RDIR, O_RFILE, O_META,
    O_NOTQDM, O_TIMEOUT, O_HELP
};

static const struct option opts[] = {
    {"backend", required_argument, 0, O_BACKEND},
    {"base-url", required_argument, 0, O_BASE_URL},
    {"host", required_argument, 0, O_HOST},
    {"port", required_argument, 0, O_PORT},
    {"endpoint", required_argument, 0, O_ENDPOINT},
    {"dataset-name", required_argument, 0, O_DATASET},
    {"dataset-path", required_argument, 0, O_DATASET_PATH},
    {"model", required_argument, 0, O_MODEL},
    {"served-model-name", required_argument, 0, O_SERVED},
    {"tokenizer", required_argument, 0, O_TOKENIZER},
    {"random-input-len", required_argument, 0, O_IN},
    {"random-output-len", required_argument, 0, O_OUT},
    {"random-prefix-len", required_argument, 0, O_PREFIX},
    {"random-range-ratio", required_argument, 0, O_RATIO},
    {"random-ids", no_argument, 0, O_RANDOM_IDS},
    {"tokenize-on-client", no_argument, 0, O_TOC},
    {"num-prompts", required_argument, 0, O_NUM},
    {"max-concurrency", required_argument, 0, O_CONC},
    {"request-rate", required_argument, 0, O_RATE},
    {"burstiness", required_argument, 0, O_BURST},
    {"ignore-eos", no_argument, 0, O_EOS},
    {"seed", required_argument, 0, O_SEED},
    {"temperature", required_argument, 0, O_TEMP},
    {"logprobs", required_argument, 0, O_LOGPROBS},
    {"no-test-input", no_argument, 0, O_NOTEST},
    {"percentile-metrics", required_argument, 0, O_PMETRICS},
    {"metric-percentiles", required_argument, 0, O_PCTS},
    {"save-result", no_argument, 0, O_SAVE},
    {"save-detailed", no_argument, 0, O_DETAILED},
    {"result-dir", required_argument, 0, O_RDIR},
    {"result-filename", required_argument, 0, O_RFILE},
    {"metadata", required_argument, 0, O_META},
    {"disable-tqdm", no_argument, 0, O_NOTQDM},
    {"request-timeout", required_argument, 0, O_TIMEOUT},
    {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0},
};

/* A bad flag: one line naming it, exit status 2 (argparse's). */
static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moeserve-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end); /* "inf" parses, as Python's float() does */
    if (end == s || *end || isnan(v)) return false;
    *out = v;
    return true;
}

static int parse_metrics(bench_args_t *a, const char *s)
{
    a->metric_ttft = a->metric_tpot = a->metric_itl = a->metric_e2el = false;
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "ttft")) a->metric_ttft = true;
        else if (!strcmp(t, "tpot")) a->metric_tpot = true;
        else if (!strcmp(t, "itl")) a->metric_itl = true;
        else if (!strcmp(t, "e2el")) a->metric_e2el = true;
        else {
            rc = die("--percentile-metrics: unknown metric '%s' (of ttft, tpot, itl, e2el)", t);
            break;
        }
    }
    free(dup);
    return rc;
}

static int parse_pcts(bench_args_t *a, const char *s)
{
    a->n_pct = 0;
    char *dup = strdup(s), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double p;
        if (!parse_double(t, &p) || p < 0 || p > 100) {
            rc = die("--metric-percentiles: '%s' is not a percentile in [0, 100]", t);
            break;
        }
        if (a->n_pct == BENCH_MAX_PCT) {
            rc = die("--metric-percentiles: at most 16 values");
            break;
        }
        a->pct[a->n_pct++] = p;
    }
    free(dup);
    return rc;
}

#define NEED_LONG(lo, hi, dst)                                                         \
    do {                                                                               \
        long v_;                                                                       \
        if (!parse_long(optarg, lo, hi, &v_))                                          \
            return die("--%s: '%s' is not a valid integer here", opts[idx].name, optarg); \
        dst = (int)v_;                                                                 \
    } while (0)

static int parse_args(int argc, char **argv, bench_args_t *a)
{
    *a = (bench_args_t){.host = "127.0.0.1", .port = 8000, .endpoint = NULL, .input_len = 1024,
                        .output_len = 128, .num_prompts = 1000, .request_rate = INFINITY, .burstiness = 1.0,
                        .logprobs = -1, .request_timeout_s = 21600, .metric_ttft = true, .metric_tpot = true,
                        .metric_itl = true, .pct = {99}, .n_pct = 1};
    int c, idx = 0;
    long lv;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        /* getopt_long leaves idx alone for short options and errors */
        for (int i = 0; opts[i].name; i++)
            if (opts[i].val == c) idx = i;
        switch (c) {
        case O_BACKEND:
            if (!strcmp(optarg, "openai")) a->backend = BENCH_OPENAI;
            else if (!strcmp(optarg, "openai-chat")) a->backend = BENCH_OPENAI_CHAT;
            else return die("--backend: '%s' is not one of openai, openai-chat", optarg);
            break;
        case O_BASE_URL: a->base_url = optarg; break;
        case O_HOST: a->host = optarg; break;
        case O_PORT: NEED_LONG(1, 65535, a->port); break;
        case O_ENDPOINT: a->endpoint = optarg; break;
        case O_DATASET:
            if (strcmp(optarg, "random")) return die("--dataset-name: only 'random' is supported, not '%s'", optarg);
            break;
        case O_DATASET_PATH: return die("--dataset-path: the random dataset reads no file");
        case O_MODEL: a->model = optarg; break;
        case O_SERVED: a->served_model_name = optarg; break;
        case O_TOKENIZER: a->tokenizer = optarg; break;
        case O_IN: NEED_LONG(1, 1 << 24, a->input_len); break;
        case O_OUT: NEED_LONG(1, 1 << 24, a->output_len); break;
        case O_PREFIX: NEED_LONG(0, 1 << 24, a->prefix_len); break;
        case O_RATIO:
            if (!parse_double(optarg, &a->range_ratio) || a->range_ratio < 0 || a->range_ratio >= 1)
                return die("--random-range-ratio: '%s' must be in [0, 1)", optarg);
            break;
        case O_RANDOM_IDS: a->random_ids = true; break;
        case O_TOC: a->tokenize_on_client = true; break;
        case O_NUM: NEED_LONG(1, 1 << 24, a->num_prompts); break;
        case O_CONC: NEED_LONG(1, 1 << 24, a->max_concurrency); break;
        case O_RATE:
            if (!parse_double(optarg, &a->request_rate) || a->request_rate <= 0)
                return die("--request-rate: '%s' must be a positive number or inf", optarg);
            break;
        case O_BURST:
            if (!parse_double(optarg, &a->burstiness) || a->burstiness <= 0 || isinf(a->burstiness))
                return die("--burstiness: '%s' must be a positive number", optarg);
            break;
        case O_EOS: a->ignore_eos = true; break;
        case O_SEED:
            if (!parse_long(optarg, 0, LONG_MAX, &lv)) return die("--seed: '%s' is not a non-negative integer", optarg);
            a->seed = (uint64_t)lv;
            break;
        case O_TEMP:
            if (!parse_double(optarg, &a->temperature) || a->temperature < 0 || isinf(a->temperature))
                return die("--temperature: '%s' must be a number >= 0", optarg);
            break;
        case O_LOGPROBS: NEED_LONG(0, 20, a->logprobs); break;
        case O_NOTEST: a->no_test_input = true; break;
        case O_PMETRICS:
            if (parse_metrics(a, optarg)) return 2;
            break;
        case O_PCTS:
            if (parse_pcts(a, optarg)) return 2;
            break;
        case O_SAVE: a->save_result = true; break;
        case O_DETAILED: break;
        case O_RDIR: a->result_dir = optarg; break;
        case O_RFILE: a->result_filename = optarg; break;
        case O_META:
            if (!strchr(optarg, '=') || optarg[0] == '=') return die("--metadata: '%s' is not KEY=VALUE", optarg);
            if (a->n_metadata == 16) return die("--metadata: at most 16");
            a->metadata[a->n_metadata++] = optarg;
            break;
        case O_NOTQDM: a->disable_tqdm = true; break;
        case O_TIMEOUT:
            if (!parse_double(optarg, &a->request_timeout_s) || a->request_timeout_s <= 0 || a->request_timeout_s > 1e7)
                return die("--request-timeout: '%s' must be a positive number of seconds", optarg);
            break;
        case 'h':
        case O_HELP: usage(stdout); exit(0);
        case ':': return die("%s needs a value", argv[optind - 1]);
        default: return die("unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) return die("unexpected argument '%s' (see --help)", argv[optind]);
    if (!a->model) return die("--model is required");
    if (!a->tokenizer) a->tokenizer = a->model;
    if (!a->endpoint) a->endpoint = a->backend == BENCH_OPENAI_CHAT ? "/v1/chat/completions" : "/v1/completions";
    size_t el = strlen(a->endpoint);
    bool chat_ep = el >= 16 && !strcmp(a->endpoint + el - 16, "chat/completions");
    bool comp_ep = el >= 11 && !strcmp(a->endpoint + el - 11, "completions");
    if (a->backend == BENCH_OPENAI_CHAT && !chat_ep)
        return die("--backend openai-chat needs an endpoint ending in chat/completions, not '%s'", a->endpoint);
    if (a->backend == BENCH_OPENAI && (chat_ep || !comp_ep))
        return die("--backend openai needs an endpoint ending in /completions (not chat), not '%s'", a->endpoint);
    return 0;
}

/* The model's vocab_size from DIR/config.json, or 0 when there is none. */
static int model_vocab(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    json_t *v = json_object_get(j, "vocab_size");
    int n = json_is_integer(v) && json_integer_value(v) > 0 ? (int)json_integer_value(v) : 0;
    json_decref(j);
    return n;
}

typedef struct {
    bool tty;
    double t0;
    int last_decile;
} progress_t;

/* tqdm's look on a terminal; a line per 10% elsewhere (logs stay short). */
static void progress_cb(int done, int total, void *arg)
{
    progress_t *p = arg;
    double el = http_now() - p->t0, rate = el > 0 ? done / el : 0;
    if (p->tty) {
        int w = 30, fill = total ? done * w / total : w;
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : ' ';
        bar[w] = 0;
        double eta = rate > 0 ? (total - done) / rate : 0;
        fprintf(stderr, "\rBenchmarking: %3d%%|%s| %d/%d [%02d:%02d<%02d:%02d, %.2fit/s]", total ? 100 * done / total : 100,
                bar, done, total, (int)el / 60, (int)el % 60, (int)eta / 60, (int)eta % 60, rate);
        if (done == total) fputc('\n', stderr);
    } else {
        int dec = total ? done * 10 / total : 10;
        if (dec == p->last_decile) return;
        p->last_decile = dec;
        fprintf(stderr, "Benchmarking: %d/%d requests done (%.1f s, %.2f req/s)\n", done, total, el, rate);
    }
}

int main(int argc, char **argv)
{
    bench_args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;

    tok_t *tok = NULL;
    if (tok_load(a.tokenizer, &tok) != MS_OK) {
        fprintf(stderr, "moeserve-bench: cannot load the tokenizer from '%s' (pass --tokenizer DIR with "
                        "tokenizer.json)\n", a.tokenizer);
        return 2;
    }
    int vocab = (int)tok_vocab_size(tok), mv = model_vocab(a.tokenizer);
    if (mv > 0 && mv < vocab) vocab = mv; /* a tiny model's embedding is smaller than its tokenizer */

    bench_req_t *reqs = calloc((size_t)a.num_prompts, sizeof *reqs);
    if (!reqs || bench_data_random(&a, tok, vocab, reqs, a.num_prompts) != MS_OK) {
        rc = 1;
        goto out;
    }

    printf("Namespace(backend='%s', base_url=%s, endpoint='%s', model='%s', dataset_name='random', "
           "random_input_len=%d, random_output_len=%d, random_prefix_len=%d, random_range_ratio=%g, num_prompts=%d, "
           "max_concurrency=%d, request_rate=%g, burstiness=%g, ignore_eos=%s, tokenize_on_client=%s, seed=%llu, "
           "vocab=%d)\n",
           a.backend == BENCH_OPENAI_CHAT ? "openai-chat" : "openai", a.base_url ? a.base_url : "None", a.endpoint,
           a.model, a.input_len, a.output_len, a.prefix_len, a.range_ratio, a.num_prompts, a.max_concurrency,
           a.request_rate, a.burstiness, a.ignore_eos ? "True" : "False", a.tokenize_on_client ? "True" : "False",
           (unsigned long long)a.seed, vocab);

    double dur;
    if (!a.no_test_input) {
        /* benchmark_serving's initial single prompt test run: same prompt as
         * request 0, not counted */
        puts("Starting initial single prompt test run...");
        fflush(stdout);
        bench_req_t t = {.ids = reqs[0].ids, .n_ids = reqs[0].n_ids, .text = reqs[0].text,
                         .prompt_len = reqs[0].prompt_len, .output_len = reqs[0].output_len};
        if (bench_client_run(&a, &t, 1, NULL, NULL, &dur) != MS_OK) {
            rc = 1;
            goto out;
        }
        bool ok = t.success;
        if (!ok)
            fprintf(stderr, "moeserve-bench: initial test run failed - please make sure the benchmark arguments are "
                            "correctly specified. Error: %s\n", t.error ? t.error : "?");
        t.ids = NULL;
        t.text = NULL;
        bench_req_free(&t);
        if (!ok) {
            rc = 1;
            goto out;
        }
        puts("Initial test run completed. Starting main benchmark run...");
    }
    if (isinf(a.request_rate)) puts("Traffic request rate: inf");
    else printf("Traffic request rate: %g\n", a.request_rate);
    printf(a.burstiness == floor(a.burstiness) ? "Burstiness factor: %.1f (%s)\n" : "Burstiness factor: %g (%s)\n", a.burstiness, a.burstiness == 1.0 ? "Poisson process" : "Gamma distribution");
    if (a.max_concurrency > 0) printf("Maximum request concurrency: %d\n", a.max_concurrency);
    else puts("Maximum request concurrency: None");
    fflush(stdout);

    progress_t prog = {.tty = isatty(2), .t0 = http_now(), .last_decile = 0};
    if (bench_client_run(&a, reqs, a.num_prompts, a.disable_tqdm ? NULL : progress_cb, &prog, &dur) != MS_OK) {
        rc = 1;
        goto out;
    }
    /* benchmark_serving counts output tokens from usage; a server that sent
     * none gets the generated text re-tokenized, as it does then */
    int guessed = 0;
    for (int i = 0; i < a.num_prompts; i++) {
        bench_req_t *r = &reqs[i];
        if (!r->success || r->usage_seen) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        if (r->generated && tok_encode(tok, r->generated, r->gen_len, false, &ids, &n) == MS_OK) r->output_tokens = (int)n;
        free(ids);
        guessed++;
    }
    if (guessed)
        fprintf(stderr, "moeserve-bench: warning: %d replies had no usage event; their output tokens were counted by "
                        "re-tokenizing the text\n", guessed);
    bench_metrics_t m;
    bench_metrics_compute(&a, reqs, a.num_prompts, dur, &m);
    bench_report_print(&a, &m, reqs, a.num_prompts);
    if (a.save_result && bench_report_save(&a, &m, reqs, a.num_prompts) != MS_OK) rc = 1;
    if (m.completed == 0) {
        fprintf(stderr, "moeserve-bench: all requests failed\n");
        rc = rc ? rc : 3;
    }
out:
    if (reqs)
        for (int i = 0; i < a.num_prompts; i++) bench_req_free(&reqs[i]);
    free(reqs);
    tok_free(tok);
    return rc;
}
