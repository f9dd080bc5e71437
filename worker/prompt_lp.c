/* prompt_lp.c — prompt logprobs from a step's final-normed rows (prompt_lp.h).
 *
 * Per sub-batch of nb <= B_max rows: gather the rows of xn, lm_head, cast to
 * fp32 (the values sampling sees), sample greedily for the top-N (under the
 * unmodified distribution, kernels.h sample), log_softmax in place and gather
 * row j's [target_j]. The sub-batch's metadata reuses the step I/O block laid
 * out for (T = nb, n_sample = nb): last_row and sp where a step keeps them,
 * the gather indices in ids and the gathered logprobs in pos. */
#include "worker/prompt_lp.h"

#include <string.h>

#include "kernels/kernels.h"
#include "worker/step_io.h"

ms_status_t plp_run(fwd_t *f, void *stage, const plp_row_t *rows, int n, proto_plp_t *out)
{
    const kern_ops_t *k = f->k;
    const int D = f->D, V = f->V;
    const int B = f->B_max < f->T_max ? f->B_max : f->T_max;
    char *h = stage, *d = f->io;
    for (int b0 = 0; b0 < n; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
        step_io_layout_t L;
        step_io_layout(&L, nb, 0, nb, 0);
        int32_t *last_row = (int32_t *)(h + L.last_row), *idx = (int32_t *)(h + L.ids);
        kern_sample_t *sp = (kern_sample_t *)(h + L.sp);
        for (int j = 0; j < nb; j++) {
            const plp_row_t *r = &rows[b0 + j];
            last_row[j] = r->row;
            idx[j] = j * V + r->target; /* nb * V < 2^31: B_max rows of logits are one allocation */
            sp[j] = (kern_sample_t){.temperature = 0, .top_p = 1, .n_logprobs = r->n_top, .mask_token = -1};
        }
        *(uint32_t *)(h + L.fault) = 0;
        f->cx->fault = (uint32_t *)(d + L.fault);
        MS_TRY(k->upload(f->cx, d + L.fault, h + L.fault, step_io_ul_bytes(&L)));
        MS_TRY(k->gather_rows(f->cx, f->xn, (const int32_t *)(d + L.last_row), nb, sizeof(bf16_t) * (size_t)D,
                              f->lastn));
        MS_TRY(kern_gemm_plain(k, f->cx, f->lastn, MS_DT_BF16, D, &f->w->lm_head, f->lg16, MS_DT_BF16, V, nb));
        MS_TRY(k->cast(f->cx, f->lg16, MS_DT_BF16, f->logits, MS_DT_F32, (int64_t)nb * V));
        MS_TRY(k->sample(f->cx, f->logits, MS_DT_F32, V, nb, V, (const kern_sample_t *)(d + L.sp), (int32_t *)(d + L.tok),
                         (float *)(d + L.lp), (int32_t *)(d + L.top_ids), (float *)(d + L.top_lp)));
        /* in place: the sampler above has read the logits */
        MS_TRY(k->log_softmax(f->cx, f->logits, V, nb, V, f->logits));
        MS_TRY(k->gather_rows(f->cx, f->logits, (const int32_t *)(d + L.ids), nb, sizeof(float), d + L.pos));
        MS_TRY(k->download(f->cx, h, d, step_io_dl_bytes(&L)));
        MS_TRY(k->download(f->cx, h + L.pos, d + L.pos, sizeof(float) * (size_t)nb));
        MS_TRY(k->synchronize(f->cx));
        if (*(uint32_t *)(h + L.fault)) return MS_ERR(MS_ERR_DATA, "prompt logprobs: device fault %#x",
                                                      *(uint32_t *)(h + L.fault));
        const int32_t *top = (const int32_t *)(h + L.top_ids);
        const float *toplp = (const float *)(h + L.top_lp), *lp = (const float *)(h + L.pos);
        for (int j = 0; j < nb; j++) {
            proto_plp_t *o = &out[b0 + j];
            memset(o, 0, sizeof *o);
            o->token = rows[b0 + j].target;
            o->logprob = lp[j];
            o->n_top = rows[b0 + j].n_top;
            memcpy(o->top_ids, top + (size_t)j * KERN_MAX_LOGPROBS, sizeof(int32_t) * (size_t)o->n_top);
            memcpy(o->top_logprobs, toplp + (size_t)j * KERN_MAX_LOGPROBS, sizeof(float) * (size_t)o->n_top);
        }
    }
    return MS_OK;
}
