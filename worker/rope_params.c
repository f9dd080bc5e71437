/* rope_params.c — inv_freq, attention factor and softmax scale.
 *
 * Default rope: inv_freq[i] = 1 / base^(2i/dim), all in fp32.
 * YaRN (transformers' _compute_yarn_parameters, truncate = true):
 *   pos_freq = base^(2i/dim)                     fp32
 *   extrap = 1/pos_freq, interp = 1/(factor*pos_freq)
 *   low  = max(floor(corr(beta_fast)), 0), high = min(ceil(corr(beta_slow)), dim-1)
 *   corr(n) = dim*ln(L0/(2πn)) / (2 ln base);   high += 0.001 when low == high
 *   ramp[i] = clamp((i - low)/(high - low), 0, 1); ef = 1 - ramp
 *   inv_freq = interp*(1-ef) + extrap*ef         fp32, op by op
 *   attention_factor = get_mscale(f, mscale)/get_mscale(f, mscale_all_dim)
 *     when both are non-zero, else get_mscale(f); get_mscale(s, m) = 0.1 m ln s + 1 (1 when s <= 1)
 * Softmax scale (DeepseekV3Attention): qk^-0.5, times m^2 with
 * m = get_mscale(factor, mscale_all_dim) when rope scaling has mscale_all_dim != 0.
 * One ambiguity: mcfg_t cannot tell "mscale absent" from "mscale 1.0"; a config
 * with mscale_all_dim but no mscale is treated as mscale 1.0 (transformers
 * would take get_mscale(f)). V3/R1 give both. */
#include "worker/rope_params.h"

#include <math.h>

static double get_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

ms_status_t rope_params_compute(const mcfg_t *c, rope_params_t *o)
{
    const int dim = c->qk_rope_head_dim, half = dim / 2;
    if (dim <= 0 || dim % 2 || half > 256)
        return MS_ERR(MS_ERR_INVALID, "rope: qk_rope_head_dim %d must be even and at most 512", dim);
    const float base = (float)c->rope_theta;
    o->attn_factor = 1.0f;
    o->yarn_low = o->yarn_high = 0;
    double scale = pow((double)(c->qk_nope_head_dim + c->qk_rope_head_dim), -0.5);
    if (!c->yarn.enabled) {
        for (int i = 0; i < half; i++) o->inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
        o->softmax_scale = (float)scale;
        return MS_OK;
    }
    const double f = c->yarn.factor, L0 = c->yarn.original_max_position_embeddings;
    const double lb = log(c->rope_theta);
    double lo = floor(dim * log(L0 / (c->yarn.beta_fast * 2 * M_PI)) / (2 * lb));
    double hi = ceil(dim * log(L0 / (c->yarn.beta_slow * 2 * M_PI)) / (2 * lb));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    o->yarn_low = (int)lo, o->yarn_high = (int)hi;
    if (lo == hi) hi += 0.001;
    const float ff = (float)f, flo = (float)lo, fden = (float)(hi - lo);
    for (int i = 0; i < half; i++) {
        float pf = powf(base, (float)(2 * i) / (float)dim);
        float extrap = 1.0f / pf, interp = 1.0f / (ff * pf);
        float ramp = ((float)i - flo) / fden;
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float ef = 1.0f - ramp;
        o->inv_freq[i] = interp * (1.0f - ef) + extrap * ef;
    }
    if (c->yarn.mscale != 0 && c->yarn.mscale_all_dim != 0)
        o->attn_factor = (float)(get_mscale(f, c->yarn.mscale) / get_mscale(f, c->yarn.mscale_all_dim));
    else
        o->attn_factor = (float)get_mscale(f, 1.0);
    if (c->yarn.mscale_all_dim != 0) {
        double m = get_mscale(f, c->yarn.mscale_all_dim);
        scale *= m * m;
    }
    o->softmax_scale = (float)scale;
    return MS_OK;
}
