/* generate_cmd.c — `moeserve generate MODEL_DIR --prompt-ids 0,15382,344
 * --max-tokens 16 [--dump-logits FILE]`: one process, no MPI, the real engine
 * path (engine_step over the paged KV cache: prefill, then one decode step
 * per token). Prints the generated ids comma-separated on one line on stdout.
 *
 * Stops after max-tokens ids, or after emitting EOS (as transformers'
 * generate does) unless --ignore-eos. --dump-logits writes the last prompt
 * position's logits (after prefill, before any generated token) as raw
 * little-endian float32, vocab_size values. Greedy unless --temperature > 0
 * (then --top-p, --top-k, --seed apply). --chunk N prefills N tokens per step;
 * --block-size sets the KV block size; --kv-dtype fp8 stores the latent cache
 * in FP8 rows (kv_cache_config.dtype fp8; not the golden path). --mla picks the attention form:
 * naive (default: what transformers computes, eager, also when decoding, so
 * this command is the golden-test reference), absorbed (DeepSeek's decode
 * form over the latent cache; ~0.05 logit differences from bf16 rounding),
 * auto (naive prefill, absorbed decode: what a server runs). --cuda-graphs on
 * replays each absorbed decode step as the CUDA graph of batch 1 captured at
 * startup (worker/step_graph.h; the CPU backend logs that it has none).
 * --dump-mtp-logits FILE loads the checkpoint's MTP module (one draft token)
 * and writes, the same way, the logits it drafts from after the prefill: the
 * distribution of the token after the first generated one
 * (tests/reference/mtp_fixtures.py is its transformers-side reference). */
#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "worker/engine.h"

static int usage(void)
{
    fprintf(stderr, "usage: moeserve generate MODEL_DIR --prompt-ids ID,ID,... [--max-tokens N] [--dump-logits FILE]\n"
                    "       [--ignore-eos] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--chunk N]\n"
                    "       [--mla naive|absorbed|auto] [--block-size N] [--kv-dtype bf16|fp8] [--device auto|cpu|cuda]\n"
                    "       [--load-format auto|dummy] [--moe-compute auto|dequant|fp8]\n"
                    "       [--dense-compute auto|dequant|fp8] [--cuda-graphs on|off]\n"
                    "       [--dump-mtp-logits FILE]\n"
                    "  --device: kernels backend (alias --backend); auto = CUDA when built with it and a GPU is\n"
                    "  visible (GPU 0), else CPU\n");
    return 2;
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "moeserve generate: %s: '%s' is not an integer in [%ld, %ld]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "moeserve generate: %s: '%s' is not a number in [%g, %g]\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_ids(const char *s, int32_t **out, int *n)
{
    int cap = 16, k = 0;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    const char *p = s;
    while (ids) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "moeserve generate: --prompt-ids: '%s' is not a comma-separated list of token ids\n", s);
            free(ids);
            return -1;
        }
        if (k == cap) {
            int32_t *g = realloc(ids, sizeof(int32_t) * (cap *= 2));
            if (!g) break;
            ids = g;
        }
        ids[k++] = (int32_t)v;
        if (!*end) {
            *out = ids, *n = k;
            return 0;
        }
        p = end + 1;
    }
    free(ids);
    fprintf(stderr, "moeserve generate: out of memory\n");
    return -1;
}

/* Write n floats (raw little-endian float32) to path; flag names the option in the error. */
static int dump_floats(const char *flag, const char *path, const float *x, size_t n)
{
    FILE *fp = fopen(path, "wb");
    int bad = !fp || fwrite(x, sizeof(float), n, fp) != n;
    if (fp && fclose(fp)) bad = 1;
    if (bad) fprintf(stderr, "moeserve generate: %s: cannot write '%s': %s\n", flag, path, strerror(errno));
    return bad ? -1 : 0;
}

int cmd_generate(int argc, char **argv)
{
    const char *model = NULL, *dump = NULL, *dump_mtp = NULL, *backend = "auto";
    int load_dummy = 0;
    const char *moe_compute = "auto", *dense_compute = "auto";
    int32_t *prompt = NULL;
    int n_prompt = 0, rc = 1;
    long max_tokens = 16, top_k = 0, chunk = 0, block_size = 32, seed = 0;
    double temperature = 0, top_p = 1;
    bool ignore_eos = false;
    int kv_fp8 = 0;
    engine_mla_t mla = ENGINE_MLA_NAIVE; /* the golden reference path: transformers' eager form, also in decode */
    int graphs = 0; /* --cuda-graphs on: decode steps replay a captured graph (absorbed MLA only: --mla auto) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (model) {
                fprintf(stderr, "moeserve generate: unexpected argument '%s'\n", a);
                goto out_usage;
            }
            model = a;
            continue;
        }
        if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            free(prompt);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "moeserve generate: %s needs a value\n", a);
            goto out_usage;
        }
        i++;
        if (!strcmp(a, "--prompt-ids")) {
            free(prompt);
            prompt = NULL;
            if (parse_ids(v, &prompt, &n_prompt)) goto out_usage;
        } else if (!strcmp(a, "--max-tokens")) {
            if (parse_long(a, v, 0, 1 << 20, &max_tokens)) goto out_usage;
        } else if (!strcmp(a, "--dump-logits")) {
            dump = v;
        } else if (!strcmp(a, "--dump-mtp-logits")) {
            dump_mtp = v;
        } else if (!strcmp(a, "--temperature")) {
            if (parse_float(a, v, 0, 100, &temperature)) goto out_usage;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(a, v, 0, 1, &top_p) || top_p == 0) goto out_usage;
        } else if (!strcmp(a, "--top-k")) {
            if (parse_long(a, v, 0, INT32_MAX, &top_k)) goto out_usage;
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(a, v, 0, LONG_MAX, &seed)) goto out_usage;
        } else if (!strcmp(a, "--chunk")) {
            if (parse_long(a, v, 1, 1 << 20, &chunk)) goto out_usage;
        } else if (!strcmp(a, "--block-size")) {
            if (parse_long(a, v, 1, 1 << 16, &block_size)) goto out_usage;
        } else if (!strcmp(a, "--backend") || !strcmp(a, "--device")) {
            if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) {
                fprintf(stderr, "moeserve generate: %s: '%s' is not auto, cpu or cuda\n", a, v);
                goto out_usage;
            }
            backend = v;
        } else if (!strcmp(a, "--moe-compute")) { /* auto: fp8 on CUDA, dequant on CPU (cfg_moe_fp8) */
            if (strcmp(v, "auto") && strcmp(v, "dequant") && strcmp(v, "fp8")) {
                fprintf(stderr, "moeserve generate: --moe-compute: '%s' is not auto, dequant or fp8\n", v);
                goto out_usage;
            }
            moe_compute = v;
        } else if (!strcmp(a, "--dense-compute")) { /* auto: as --moe-compute resolves (cfg_dense_fp8) */
            if (strcmp(v, "auto") && strcmp(v, "dequant") && strcmp(v, "fp8")) {
                fprintf(stderr, "moeserve generate: --dense-compute: '%s' is not auto, dequant or fp8\n", v);
                goto out_usage;
            }
            dense_compute = v;
        } else if (!strcmp(a, "--load-format")) {
            if (strcmp(v, "auto") && strcmp(v, "dummy")) {
                fprintf(stderr, "moeserve generate: --load-format: '%s' is not auto or dummy\n", v);
                goto out_usage;
            }
            load_dummy = !strcmp(v, "dummy");
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!strcmp(v, "bf16") || !strcmp(v, "auto")) kv_fp8 = 0;
            else if (!strcmp(v, "fp8")) kv_fp8 = 1;
            else {
                fprintf(stderr, "moeserve generate: --kv-dtype: '%s' is not bf16, auto or fp8\n", v);
                goto out_usage;
            }
        } else if (!strcmp(a, "--cuda-graphs")) {
            if (strcmp(v, "on") && strcmp(v, "off")) {
                fprintf(stderr, "moeserve generate: --cuda-graphs: '%s' is not on or off\n", v);
                goto out_usage;
            }
            graphs = !strcmp(v, "on");
        } else if (!strcmp(a, "--mla")) {
            if (!strcmp(v, "auto")) mla = ENGINE_MLA_AUTO;
            else if (!strcmp(v, "naive")) mla = ENGINE_MLA_NAIVE;
            else if (!strcmp(v, "absorbed")) mla = ENGINE_MLA_ABSORBED;
            else {
                fprintf(stderr, "moeserve generate: --mla: '%s' is not auto, naive or absorbed\n", v);
                goto out_usage;
            }
        } else {
            fprintf(stderr, "moeserve generate: unknown option '%s'\n", a);
            goto out_usage;
        }
    }
    if (!model || !prompt) {
        fprintf(stderr, "moeserve generate: %s\n", !model ? "missing MODEL_DIR" : "missing --prompt-ids");
        goto out_usage;
    }
    if (chunk == 0) chunk = n_prompt;
    if (!strcmp(backend, "auto")) {
        backend = kern_backend_devices("cuda") > 0 ? "cuda" : "cpu";
    }
    const long total = n_prompt + max_tokens;
    const int moe_fp8 = !strcmp(moe_compute, "fp8") || (!strcmp(moe_compute, "auto") && !strcmp(backend, "cuda"));
    engine_opts_t opts = {
        .kv_blocks = (int)((total + block_size - 1) / block_size) + 1,
        .block_size = (int)block_size,
        .max_batch = 1,
        .max_tokens_per_step = (int)chunk,
        .backend = backend,
        .load_dummy = load_dummy,
        .mla = mla,
        .moe_fp8 = moe_fp8,
        .dense_fp8 = !strcmp(dense_compute, "fp8") || (!strcmp(dense_compute, "auto") && moe_fp8),
        .kv_fp8 = kv_fp8,
        .mtp_drafts = dump_mtp ? 1 : 0,
        .n_graph_sizes = graphs,
        .graph_sizes = (const int[]){1},
    };
    par_t par = par_single();
    comm_t *comm = NULL;
    engine_t *eng = NULL;
    int32_t *blocks = NULL, *out_ids = NULL;
    float *logits = NULL;
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    const kern_ops_t *k;
    if (kern_backend_get(backend, &k) != MS_OK || comm_local_create(k, &comm) != MS_OK) goto out;
    if (engine_create(model, &par, &opts, comm, &eng) != MS_OK) goto out;
    const mcfg_t *cfg = engine_config(eng);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] >= cfg->vocab_size) {
            fprintf(stderr, "moeserve generate: --prompt-ids: token id %d is outside vocab_size %d\n", prompt[i],
                    cfg->vocab_size);
            rc = 2;
            goto out;
        }
    blocks = malloc(sizeof(int32_t) * (size_t)opts.kv_blocks);
    out_ids = malloc(sizeof(int32_t) * (size_t)(max_tokens + 1));
    logits = dump || dump_mtp ? malloc(sizeof(float) * (size_t)cfg->vocab_size) : NULL;
    if (!blocks || !out_ids || ((dump || dump_mtp) && !logits)) {
        fprintf(stderr, "moeserve generate: out of memory\n");
        goto out;
    }
    for (int b = 0; b < opts.kv_blocks; b++) blocks[b] = b;
    proto_seq_t sq = {.slot = 0, .dp_rank = -1, .temperature = (float)temperature, .top_p = (float)top_p,
                      .top_k = (int32_t)top_k, .n_logprobs = -1, .seed = (uint64_t)seed};
    int n_out = 0, pos = 0;
    int32_t last = -1;
    uint32_t step = 0;
    /* prefill in chunks; the last chunk samples the first new token */
    while (pos < n_prompt || (n_out < max_tokens && last >= 0)) {
        const int32_t *feed;
        int n;
        if (pos < n_prompt) {
            n = n_prompt - pos < chunk ? n_prompt - pos : (int)chunk;
            feed = prompt + pos;
        } else {
            n = 1;
            feed = &last;
        }
        bool sample = pos + n >= n_prompt && max_tokens > 0;
        if (!sample && pos + n >= n_prompt) break; /* max_tokens 0 and nothing to dump */
        sq.pos = pos;
        sq.flags = sample ? PROTO_SEQ_SAMPLE : 0;
        if (sample && dump_mtp && n_out == 0) sq.flags |= PROTO_SEQ_DRAFT;
        int nb = (pos + n + opts.block_size - 1) / opts.block_size;
        const proto_plan_t *plan;
        proto_result_t res;
        proto_planbuf_reset(&pb);
        if (proto_planbuf_add(&pb, &sq, feed, n, blocks, nb) != MS_OK || proto_planbuf_finish(&pb, step++, &plan) != MS_OK)
            goto out;
        if (engine_step(eng, plan, &res) != MS_OK) goto out;
        pos += n;
        if (!sample) continue;
        const size_t V = (size_t)cfg->vocab_size;
        if (dump && n_out == 0 &&
            (engine_logits(eng, 0, logits) != MS_OK || dump_floats("--dump-logits", dump, logits, V)))
            goto out;
        if (dump_mtp && n_out == 0 &&
            (engine_mtp_logits(eng, 0, logits) != MS_OK || dump_floats("--dump-mtp-logits", dump_mtp, logits, V)))
            goto out;
        out_ids[n_out++] = last = res.token;
        if (!ignore_eos && res.token == cfg->eos_token_id) break;
    }
    if (max_tokens == 0 && (dump || dump_mtp)) {
        fprintf(stderr, "moeserve generate: %s needs --max-tokens >= 1\n", dump ? "--dump-logits" : "--dump-mtp-logits");
        rc = 2;
        goto out;
    }
    for (int i = 0; i < n_out; i++) printf(i ? ",%d" : "%d", out_ids[i]);
    printf("\n");
    fflush(stdout);
    rc = 0;
out:
    proto_planbuf_free(&pb);
    free(blocks), free(out_ids), free(logits);
    engine_destroy(eng);
    comm_destroy(comm);
    free(prompt);
    return rc;
out_usage:
    free(prompt);
    return usage();
}
