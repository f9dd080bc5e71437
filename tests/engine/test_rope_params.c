/* test_rope_params.c — rope_params_compute against the values in
 * shared/reference/deepseek-v3.md for DeepSeek-V3/R1 (YaRN factor 40):
 * inv_freq[0] = 1.0, [11] = 3.900693e-2, [31] = 3.333804e-6 (relative 1e-6),
 * correction range 10..23, cos/sin factor 1.0, softmax scale 0.13523378;
 * the tiny preset's scale 48^-0.5·(0.1·ln4+1)^2 = 0.1871303 (from the golden
 * fixtures); plain rope 1/10000^(2i/dim) and scale 24^-0.5 without scaling. */
#include "tests/test.h"
#include "worker/rope_params.h"

int main(void)
{
    mcfg_t c = {0};
    c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.rope_theta = 10000;
    c.yarn.enabled = true, c.yarn.factor = 40, c.yarn.original_max_position_embeddings = 4096;
    c.yarn.beta_fast = 32, c.yarn.beta_slow = 1, c.yarn.mscale = 1.0, c.yarn.mscale_all_dim = 1.0;
    rope_params_t r;
    T_CHECK(rope_params_compute(&c, &r) == MS_OK);
    T_NEAR(r.inv_freq[0], 1.0, 1e-6);
    T_NEAR(r.inv_freq[11] / 3.900693e-2, 1.0, 1e-6);
    T_NEAR(r.inv_freq[31] / 3.333804e-6, 1.0, 1e-6);
    T_CHECK(r.yarn_low == 10 && r.yarn_high == 23);
    T_NEAR(r.attn_factor, 1.0, 0);
    T_NEAR(r.softmax_scale, 0.13523378, 1e-7);

    c.qk_nope_head_dim = 32, c.qk_rope_head_dim = 16, c.yarn.factor = 4, c.yarn.original_max_position_embeddings = 1024;
    T_CHECK(rope_params_compute(&c, &r) == MS_OK);
    T_NEAR(r.softmax_scale, 0.18713033519502428, 1e-7);

    c.yarn.mscale_all_dim = 0; /* attention factor falls back to get_mscale(factor) */
    T_CHECK(rope_params_compute(&c, &r) == MS_OK);
    T_NEAR(r.attn_factor, 0.1 * log(4.0) + 1, 1e-6);
    T_NEAR(r.softmax_scale, 1 / sqrt(48.0), 1e-7);

    c.yarn.enabled = false, c.qk_nope_head_dim = 16, c.qk_rope_head_dim = 8;
    T_CHECK(rope_params_compute(&c, &r) == MS_OK);
    for (int i = 0; i < 4; i++) T_NEAR(r.inv_freq[i], pow(10000.0, -2.0 * i / 8), 1e-7);
    T_NEAR(r.softmax_scale, 1 / sqrt(24.0), 1e-7);
    T_NEAR(r.attn_factor, 1.0, 0);
    c.qk_rope_head_dim = 7;
    T_CHECK(rope_params_compute(&c, &r) == MS_ERR_INVALID);
    return t_done();
}
