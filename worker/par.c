/* par.c — validation of a rank's parallel layout against the model. */
#include "worker/par.h"

ms_status_t par_validate(const par_t *p, const mcfg_t *c)
{
    if (p->tp_size < 1 || p->tp_rank < 0 || p->tp_rank >= p->tp_size)
        return MS_ERR(MS_ERR_INVALID, "parallel layout: tp_rank %d outside tp_size %d", p->tp_rank, p->tp_size);
    if (p->ep_size < 1 || p->ep_rank < 0 || p->ep_rank >= p->ep_size)
        return MS_ERR(MS_ERR_INVALID, "parallel layout: ep_rank %d outside ep_size %d", p->ep_rank, p->ep_size);
    if (!p->attention_dp && c->num_attention_heads % p->tp_size)
        return MS_ERR(MS_ERR_INVALID, "parallel layout: num_attention_heads %d not divisible by tp_size %d",
                      c->num_attention_heads, p->tp_size);
    if (!p->attention_dp && p->tp_size > 1 && c->weight_dtype == MS_DT_F8E4M3) {
        int h = c->num_attention_heads / p->tp_size;
        int qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
        if ((h * qk) % 128 || (h * (c->qk_nope_head_dim + c->v_head_dim)) % 128 || (h * c->v_head_dim) % 128)
            return MS_ERR(MS_ERR_UNSUPPORTED,
                          "parallel layout: a %d-head shard does not align with fp8 128x128 weight blocks", h);
    }
    return MS_OK;
}
