/* embed.c — embedding lookup: copy bf16 rows of the table (no rounding).
 * A padded row (id -1) and a bad id (a data fault) are written as zeros. */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                           int32_t dim, bf16_t *out)
{
    for (int32_t i = 0; i < n; i++) {
        bf16_t *o = out + (int64_t)i * dim;
        if (ids[i] < 0 || ids[i] >= vocab) {
            if (ids[i] != -1) kern_cpu_fault(cx, KERN_FAULT_TOKEN);
            memset(o, 0, (size_t)dim * sizeof(bf16_t));
            continue;
        }
        memcpy(o, table + (int64_t)ids[i] * dim, (size_t)dim * sizeof(bf16_t));
    }
    return MS_OK;
}
