/* checkpoint.h — read-only access to a Hugging Face safetensors checkpoint:
 * `model.safetensors`, or `model-*.safetensors` + `model.safetensors.index.json`.
 *
 * ckpt_open parses every shard's header (validating offsets against the file
 * size) and mmaps the shards; tensor bytes are only paged in when a rank
 * touches them, so a rank reads only the tensors it needs. Pointers returned
 * borrow from the mapping and live until ckpt_close. */
#ifndef MS_CHECKPOINT_H
#define MS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "status.h"
#include "dtype.h"

#define CKPT_MAX_DIMS 4

typedef struct ckpt ckpt_t; /* opaque */

typedef struct {
    const char *name;      /* borrowed */
    const char *file;      /* shard path, borrowed; for error messages */
    ms_dtype_t dtype;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    const void *data;      /* borrowed from the mmap */
    size_t nbytes;
} ckpt_tensor_t;

ms_status_t ckpt_open(const char *model_dir, ckpt_t **out);
void ckpt_close(ckpt_t *ck);

bool ckpt_has(const ckpt_t *ck, const char *name);

/* Look up a tensor; a missing name is an error naming the checkpoint dir and tensor. */
ms_status_t ckpt_get(const ckpt_t *ck, const char *name, ckpt_tensor_t *out);

/* Look up and validate dtype and shape; a mismatch is an error naming the
 * shard file and tensor, with expected and actual values. */
ms_status_t ckpt_expect(const ckpt_t *ck, const char *name, ms_dtype_t dtype, int ndim, const int64_t *shape,
                        ckpt_tensor_t *out);

/* Iterate names (for tools and diagnostics). */
size_t ckpt_count(const ckpt_t *ck);
const char *ckpt_name_at(const ckpt_t *ck, size_t i);

#endif
