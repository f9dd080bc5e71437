/* test_logits_adjust.c — logits_adjust against a dense reference written as
 * vLLM's apply_penalties (bin counts and masks over the whole vocabulary) and
 * MinPLogitsProcessor:
 *  - random prompt and output token streams (with repeats) over a 1000-token
 *    vocabulary, a logit_bias map, every penalty non-neutral: every logit
 *    equals the reference to float rounding;
 *  - lists are written through `sets` (the op's own writes), two rows in one
 *    call with different lists and knobs;
 *  - min_p at temperature 0.5 removes exactly the tokens whose probability is
 *    below min_p * p_max (mask_token first), and sample never picks one;
 *  - a neutral row is untouched; a bad token id raises KERN_FAULT_TOKEN, a
 *    write outside the buffer KERN_FAULT_BLOCK, and neither fails the call. */
#include "kref.h"

#include <stdbool.h>
#include <string.h>

#define V 1000

/* The dense reference of one row: counts over the vocabulary, as vLLM. */
static void ref_row(float *lg, const int *prompt, int np, const int *out, int no, const int *bias_ids,
                    const float *bias, int nb, float pres, float freq, float rep)
{
    static int cnt[V];
    static unsigned char inp[V];
    memset(cnt, 0, sizeof cnt), memset(inp, 0, sizeof inp);
    for (int i = 0; i < np; i++) inp[prompt[i]] = 1;
    for (int i = 0; i < no; i++) cnt[out[i]]++;
    for (int i = 0; i < nb; i++) lg[bias_ids[i]] += bias[i];
    for (int t = 0; t < V; t++) {
        if (inp[t] || cnt[t]) lg[t] = lg[t] > 0 ? lg[t] / rep : lg[t] * rep;
        lg[t] -= freq * (float)cnt[t];
        lg[t] -= pres * (cnt[t] > 0 ? 1.0f : 0.0f);
    }
}

/* The sparse list of one row (what the engine keeps per sequence). */
static int make_list(kern_pen_t *L, const int *prompt, int np, const int *out, int no, const int *bias_ids,
                     const float *bias, int nb)
{
    int n = 0, where[V];
    for (int t = 0; t < V; t++) where[t] = -1;
#define ENTRY(tok) (where[tok] < 0 ? (where[tok] = n, L[n++] = (kern_pen_t){.token = (tok)}, where[tok]) : where[tok])
    for (int i = 0; i < np; i++) L[ENTRY(prompt[i])].in_prompt = 1;
    for (int i = 0; i < no; i++) L[ENTRY(out[i])].n_out++;
    for (int i = 0; i < nb; i++) L[ENTRY(bias_ids[i])].bias = bias[i];
#undef ENTRY
    return n;
}

int main(void)
{
    kr_seed(11);
    int prompt[2][300], out[2][200], bids[2][20];
    float bias[2][20];
    const int np[2] = {300, 40}, no[2] = {200, 7}, nb[2] = {20, 3};
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < np[r]; i++) prompt[r][i] = (int)(kr_uniform() * (r ? 60 : V));
        for (int i = 0; i < no[r]; i++) out[r][i] = (int)(kr_uniform() * 120); /* many repeats */
        for (int i = 0; i < nb[r]; i++) bids[r][i] = (i * 47 + r * 13 + 5) % V, bias[r][i] = (float)(kr_normal() * 5);
    }
    bids[0][1] = bids[0][0]; /* a repeated key: the last value wins, in both */
    float *lg = kr_f32(2 * V, 3.0), *ref = malloc(sizeof(float) * 2 * V);
    memcpy(ref, lg, sizeof(float) * 2 * V);
    /* reference: a repeated bias id counts once (a map), so drop the first occurrence */
    ref_row(ref, prompt[0], np[0], out[0], no[0], bids[0] + 1, bias[0] + 1, nb[0] - 1, 0.7f, 0.3f, 1.3f);
    ref_row(ref + V, prompt[1], np[1], out[1], no[1], bids[1], bias[1], nb[1], -0.5f, 0.0f, 0.8f);

    const int64_t cap = 2048;
    kern_pen_t *lists = calloc((size_t)cap, sizeof *lists), L[2][600];
    int nl[2];
    for (int r = 0; r < 2; r++) nl[r] = make_list(L[r], prompt[r], np[r], out[r], no[r], bids[r], bias[r], nb[r]);
    kern_pen_set_t *sets = malloc(sizeof *sets * (size_t)(nl[0] + nl[1]));
    int ns = 0;
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < nl[r]; j++) sets[ns++] = (kern_pen_set_t){.at = r * 1024 + j, .e = L[r][j]};
    kern_adjust_t adj[2] = {
        {.presence = 0.7f, .frequency = 0.3f, .repetition = 1.3f, .mask_token = -1, .list_off = 0, .n_list = nl[0]},
        {.presence = -0.5f, .repetition = 0.8f, .mask_token = -1, .list_off = 1024, .n_list = nl[1]},
    };
    T_CHECK(kern_cpu_ops.logits_adjust(NULL, lg, V, 2, V, adj, lists, cap, sets, ns) == MS_OK);
    kr_err_t e = {.what = "penalties vs dense reference"};
    for (int i = 0; i < 2 * V; i++) kr_err_add(&e, lg[i], ref[i], 1e-5 * (1 + fabs(ref[i])));
    KR_ERR_CHECK(e);
    T_CHECK(lists[1024 + nl[1] - 1].token == L[1][nl[1] - 1].token); /* the writes landed */

    /* min_p at temperature 0.5; mask_token (the best token) goes first */
    float *m = kr_f32(V, 2.0), *m0 = malloc(sizeof(float) * V);
    int best = 0;
    for (int i = 0; i < V; i++)
        if (m[i] > m[best]) best = i;
    memcpy(m0, m, sizeof(float) * V);
    kern_adjust_t am = {.repetition = 1.0f, .min_p = 0.2f, .temperature = 0.5f, .mask_token = best};
    T_CHECK(kern_cpu_ops.logits_adjust(NULL, m, V, 1, V, &am, lists, cap, NULL, 0) == MS_OK);
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (i != best) mx = fmax(mx, m0[i]);
    int kept = 0, right = 1;
    for (int i = 0; i < V; i++) {
        bool keep = i != best && exp((m0[i] - mx) / 0.5) >= 0.2;
        right &= keep ? m[i] == m0[i] : m[i] == -INFINITY;
        kept += keep;
    }
    T_CHECK(right);
    T_CHECK(kept >= 1 && kept < V / 2);
    for (int pos = 0; pos < 200; pos++) {
        kern_sample_t sp = {.temperature = 0.5f, .top_p = 1.0f, .seed = 9, .position = pos, .mask_token = best};
        int32_t t, ti[KERN_MAX_LOGPROBS];
        float lp, tl[KERN_MAX_LOGPROBS];
        T_CHECK(kern_cpu_ops.sample(NULL, m, MS_DT_F32, V, 1, V, &sp, &t, &lp, ti, tl) == MS_OK);
        if (m[t] == -INFINITY || t == best) {
            T_CHECK(!"sampled a removed token");
            break;
        }
    }

    /* neutral rows untouched; faults raised, never a failed call */
    float *n = kr_f32(V, 1.0), *n0 = malloc(sizeof(float) * V);
    memcpy(n0, n, sizeof(float) * V);
    kern_adjust_t an = {.repetition = 1.0f, .mask_token = -1};
    T_CHECK(kern_cpu_ops.logits_adjust(NULL, n, V, 1, V, &an, lists, cap, NULL, 0) == MS_OK);
    T_CHECK(!memcmp(n, n0, sizeof(float) * V));
    kern_ctx_t *cx;
    T_CHECK(kern_cpu_ops.ctx_create(0, 0, &cx) == MS_OK);
    kern_pen_set_t bad[2] = {{.at = 5, .e = {.token = V + 3, .n_out = 1}}, {.at = cap, .e = {.token = 1}}};
    kern_adjust_t ab = {.repetition = 2.0f, .mask_token = -1, .list_off = 5, .n_list = 1};
    T_CHECK(kern_cpu_ops.logits_adjust(cx, n, V, 1, V, &ab, lists, cap, bad, 2) == MS_OK);
    T_CHECK(*cx->fault == (KERN_FAULT_TOKEN | KERN_FAULT_BLOCK));
    T_CHECK(!memcmp(n, n0, sizeof(float) * V));
    kern_cpu_ops.ctx_destroy(cx);
    free(lg), free(ref), free(lists), free(sets), free(m), free(m0), free(n), free(n0);
    return t_done();
}
