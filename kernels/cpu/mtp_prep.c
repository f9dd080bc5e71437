/* mtp_prep.c — MTP drafting metadata (kernels.h; the rule: kernels/mtp_prep.h). */
#include "cpu.h"
#include "kernels/mtp_prep.h"

ms_status_t kern_cpu_mtp_prep(kern_ctx_t *cx, const kern_mtp_prep_t *p)
{
    (void)cx;
    if (p->T < 0 || p->n < 0 || p->N < 1 || p->block_size < 1)
        return MS_ERR(MS_ERR_INVALID, "mtp_prep: T %d, n %d, N %d, block size %d", p->T, p->n, p->N, p->block_size);
    for (int32_t r = 0; r < p->T; r++) kern_mtp_prep_row(p, r);
    for (int32_t i = 0; i < p->n; i++) kern_mtp_prep_entry(p, i);
    return MS_OK;
}
