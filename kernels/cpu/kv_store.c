/* kv_store.c — write each token's latent [ckv | kpe] into its paged-cache row
 * (slot = block * block_size + offset, computed by the engine from the
 * sequence's block table), and the row layout's reader that kv_gather and
 * mla_latent share. Layouts (kernels.h, kern_kv_t): BF16 [ckv | kpe], or FP8
 * [e4m3 ckv | the token's power-of-two scale in each 128-channel fp32 slot |
 * bf16 kpe]. */
#include "cpu.h"

#include <string.h>

void kern_cpu_kv_row_write(const kern_kv_t *kv, int64_t row, const bf16_t *ckv, const bf16_t *kpe)
{
    char *p = (char *)kv->data + row * kv->row_bytes;
    if (kv->dtype != MS_DT_F8E4M3) {
        memcpy(p, ckv, sizeof(bf16_t) * (size_t)kv->d_c);
        memcpy(p + 2 * (size_t)kv->d_c, kpe, sizeof(bf16_t) * (size_t)kv->d_r);
        return;
    }
    float amax = 0;
    for (int32_t c = 0; c < kv->d_c; c++) amax = fmaxf(amax, fabsf(bf16_to_f32(ckv[c])));
    const float s = kern_kv_fp8_scale(amax);
    for (int32_t c = 0; c < kv->d_c; c++) ((uint8_t *)p)[c] = f32_to_fp8e4m3(bf16_to_f32(ckv[c]) / s);
    const int32_t ng = kern_fp8_blocks(kv->d_c);
    for (int32_t g = 0; g < ng; g++) memcpy(p + kv->d_c + 4 * (size_t)g, &s, 4);
    memcpy(p + kv->d_c + 4 * (size_t)ng, kpe, sizeof(bf16_t) * (size_t)kv->d_r);
}

void kern_cpu_kv_row_read(const kern_kv_t *kv, int64_t row, float *out)
{
    const char *p = (const char *)kv->data + row * kv->row_bytes;
    if (kv->dtype != MS_DT_F8E4M3) {
        kern_cpu_bf16_to_f32((const bf16_t *)p, out, kv->d_c + kv->d_r);
        return;
    }
    /* slot 0 holds the token's scale (the writer fills every slot with it); e4m3 * s is exact, so the
     * bf16 rounding below changes nothing and is the same rule as FP8 weights' dequantization. */
    const float *lut = kern_cpu_fp8_lut();
    const uint8_t *q = (const uint8_t *)p;
    float s;
    memcpy(&s, p + kv->d_c, 4);
    for (int32_t c = 0; c < kv->d_c; c++) out[c] = bf16_round(lut[q[c]] * s);
    kern_cpu_bf16_to_f32((const bf16_t *)(p + kv->d_c + 4 * (size_t)kern_fp8_blocks(kv->d_c)), out + kv->d_c, kv->d_r);
}

int64_t kern_cpu_kv_slot(kern_ctx_t *cx, const kern_kv_t *kv, const int32_t *bt, int32_t p)
{
    int32_t b = bt[p / kv->block_size];
    if (b < 0 || b >= kv->n_blocks) {
        kern_cpu_fault(cx, KERN_FAULT_BLOCK);
        return -1;
    }
    return (int64_t)b * kv->block_size + p % kv->block_size;
}

ms_status_t kern_cpu_kv_check(const kern_kv_t *kv, const char *op)
{
    if (kv->dtype != MS_DT_BF16 && kv->dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: KV row dtype %s not supported", op, ms_dtype_name(kv->dtype));
    if (kv->row_bytes != kern_kv_row_bytes(kv->dtype, kv->d_c, kv->d_r) || kv->block_size < 1 ||
        (kv->dtype == MS_DT_F8E4M3 && kv->d_c % 4))
        return MS_ERR(MS_ERR_INVALID, "%s: KV layout %s d_c %d d_r %d row %d bytes, block %d is inconsistent", op,
                      ms_dtype_name(kv->dtype), kv->d_c, kv->d_r, kv->row_bytes, kv->block_size);
    return MS_OK;
}

ms_status_t kern_cpu_kv_store(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, const bf16_t *kpe,
                              int64_t ld_kpe, const int32_t *slots, int32_t n)
{
    MS_TRY(kern_cpu_kv_check(kv, "kv_store"));
    const int64_t rows = (int64_t)kv->n_blocks * kv->block_size;
    for (int32_t i = 0; i < n; i++) {
        if (slots[i] == -1) continue;
        if (slots[i] < 0 || slots[i] >= rows) {
            kern_cpu_fault(cx, KERN_FAULT_BLOCK);
            continue;
        }
        kern_cpu_kv_row_write(kv, slots[i], ckv + i * ld_ckv, kpe + i * ld_kpe);
    }
    return MS_OK;
}

/* The spec of the fused op is the sequence itself: rope on the k_pe rows in place, then the store. */
ms_status_t kern_cpu_kv_store_rope(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, bf16_t *kpe,
                                   int64_t ld_kpe, const int32_t *slots, int32_t n, const int32_t *pos,
                                   const float *inv_freq, float attn_factor, int32_t interleaved)
{
    MS_TRY(kern_cpu_kv_check(kv, "kv_store_rope"));
    MS_TRY(kern_cpu_rope(cx, kpe, n, 1, ld_kpe, 0, pos, inv_freq, attn_factor, kv->d_r, interleaved));
    return kern_cpu_kv_store(cx, kv, ckv, ld_ckv, kpe, ld_kpe, slots, n);
}
