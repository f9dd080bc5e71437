/* gather_rows.c — dst row i = src row idx[i] (rows of any byte width): the
 * permutation step of MoE dispatch and of picking last-token rows. A padded
 * index (negative) leaves its dst row as it was. */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                                 void *dst)
{
    (void)cx;
    const char *a = src;
    char *b = dst;
    for (int32_t i = 0; i < n; i++)
        if (idx[i] >= 0) memcpy(b + (size_t)i * row_bytes, a + (size_t)idx[i] * row_bytes, row_bytes);
    return MS_OK;
}
