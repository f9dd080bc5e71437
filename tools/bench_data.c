/* bench_data.c — benchmark_serving's "random" dataset for moeserve-bench
 * (bench.h): prompts of random token ids within the model's vocab, and the
 * seeded generator behind them and the arrival times.
 *
 * The construction is TensorRT-LLM's RandomDataset with --random-ids (the
 * seed's command line): one shared prefix of prefix_len random ids; per
 * request an input length and an output length drawn uniformly from
 * [X*(1-r), X*(1+r)] and a random offset, and the prompt is the run
 * offset+i+0, offset+i+1, ... through the vocab. Unlike it, the run goes
 * through the allowed ids only (special tokens and ids without a token are
 * skipped), so a prompt never holds a BOS/EOS the server would act on.
 * The generator is ours, not torch's: same distributions, not the same ids. */
#include "bench.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bench_rng_seed(bench_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bench_rng_next(bench_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double bench_rng_uniform(bench_rng_t *r) { return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53; }

int64_t bench_rng_int(bench_rng_t *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1, lim = span ? UINT64_MAX - UINT64_MAX % span : 0;
    if (span == 0) return (int64_t)bench_rng_next(r); /* the whole range */
    uint64_t v;
    do v = bench_rng_next(r);
    while (v >= lim); /* rejection: no modulo bias */
    return lo + (int64_t)(v % span);
}

static double rng_normal(bench_rng_t *r)
{
    double u1 = bench_rng_uniform(r), u2 = bench_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* Marsaglia & Tsang; shape < 1 through the u^(1/shape) boost. Shape 1 is the
 * exponential of a Poisson process, as numpy's gamma(1, theta) is. */
double bench_rng_gamma(bench_rng_t *r, double shape, double scale)
{
    if (shape == 1.0) return -log(1.0 - bench_rng_uniform(r)) * scale;
    if (shape < 1.0) {
        double u = bench_rng_uniform(r);
        return bench_rng_gamma(r, shape + 1.0, scale) * pow(u > 0 ? u : 0x1.0p-53, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = bench_rng_uniform(r);
        if (log(u > 0 ? u : 0x1.0p-53) < 0.5 * x * x + d - d * v + d * log(v)) return d * v * scale;
    }
}

void bench_req_free(bench_req_t *r)
{
    free(r->ids);
    free(r->text);
    free(r->itl);
    free(r->generated);
    free(r->error);
    memset(r, 0, sizeof *r);
}

/* Ids as text the way benchmark_serving builds a text prompt: decode, then
 * re-encode and cut to the planned length, then decode again (vLLM's
 * re_encoded_sequence), so the text tokenizes to about the planned count.
 * The server's usage gives the exact count either way. */
static ms_status_t ids_to_text(const tok_t *tok, const int32_t *ids, size_t n, char **out)
{
    char *t1 = NULL, *t2 = NULL;
    size_t l1, l2, n2;
    int32_t *re = NULL;
    MS_TRY(tok_decode(tok, ids, n, false, &t1, &l1));
    ms_status_t st = tok_encode(tok, t1, l1, false, &re, &n2);
    if (st != MS_OK) goto out;
    st = tok_decode(tok, re, n2 < n ? n2 : n, false, &t2, &l2);
    if (st != MS_OK) goto out;
    *out = t2;
    t2 = NULL;
out:
    free(re);
    free(t1);
    free(t2);
    return st;
}

ms_status_t bench_data_random(const bench_args_t *a, const tok_t *tok, int vocab, bench_req_t *reqs, int n)
{
    ms_status_t st = MS_OK;
    int32_t *allowed = malloc((size_t)vocab * sizeof *allowed), *prefix = NULL;
    if (!allowed) return MS_ERR(MS_ERR_NOMEM, "bench: out of memory");
    size_t n_allowed = 0;
    for (int32_t id = 0; id < vocab; id++) {
        size_t len;
        if (tok_token_bytes(tok, id, &len) && !tok_is_special(tok, id)) allowed[n_allowed++] = id;
    }
    if (n_allowed == 0) {
        st = MS_ERR(MS_ERR_INVALID, "bench: no ordinary token ids below vocab size %d", vocab);
        goto out;
    }
    bench_rng_t rng;
    bench_rng_seed(&rng, a->seed);
    prefix = malloc(((size_t)a->prefix_len + 1) * sizeof *prefix);
    if (!prefix) {
        st = MS_ERR(MS_ERR_NOMEM, "bench: out of memory");
        goto out;
    }
    for (int j = 0; j < a->prefix_len; j++) prefix[j] = allowed[bench_rng_int(&rng, 0, (int64_t)n_allowed - 1)];
    int in_lo = (int)(a->input_len * (1 - a->range_ratio)), in_hi = (int)(a->input_len * (1 + a->range_ratio));
    int out_lo = (int)(a->output_len * (1 - a->range_ratio)), out_hi = (int)(a->output_len * (1 + a->range_ratio));
    if (in_lo < 1) in_lo = 1;
    if (out_lo < 1) out_lo = 1; /* max_tokens must be at least 1 */
    if (in_hi < in_lo) in_hi = in_lo;
    if (out_hi < out_lo) out_hi = out_lo;
    for (int i = 0; i < n; i++) {
        bench_req_t *r = &reqs[i];
        memset(r, 0, sizeof *r);
        int in_len = (int)bench_rng_int(&rng, in_lo, in_hi);
        r->output_len = (int)bench_rng_int(&rng, out_lo, out_hi);
        uint64_t off = (uint64_t)bench_rng_int(&rng, 0, (int64_t)n_allowed - 1);
        r->n_ids = (size_t)a->prefix_len + (size_t)in_len;
        r->prompt_len = (int)r->n_ids;
        r->ids = malloc(r->n_ids * sizeof *r->ids);
        if (!r->ids) {
            st = MS_ERR(MS_ERR_NOMEM, "bench: out of memory");
            goto out;
        }
        memcpy(r->ids, prefix, (size_t)a->prefix_len * sizeof *prefix);
        for (int j = 0; j < in_len; j++)
            r->ids[a->prefix_len + j] = allowed[(off + (uint64_t)i + (uint64_t)j) % n_allowed];
        /* chat has no token-id prompts (issue 14): it always sends text */
        if (!a->tokenize_on_client || a->backend == BENCH_OPENAI_CHAT) {
            st = ids_to_text(tok, r->ids, r->n_ids, &r->text);
            if (st != MS_OK) goto out;
        }
    }
out:
    free(prefix);
    free(allowed);
    return st;
}
