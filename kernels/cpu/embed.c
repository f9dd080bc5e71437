/* embed.c — embedding lookup: copy bf16 rows of the table (no rounding). */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                           int32_t dim, bf16_t *out)
{
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab)
            return MS_ERR(MS_ERR_INVALID, "embed: token id %d outside vocabulary [0, %lld)", ids[i], (long long)vocab);
        memcpy(out + (int64_t)i * dim, table + (int64_t)ids[i] * dim, (size_t)dim * sizeof(bf16_t));
    }
    return MS_OK;
}
