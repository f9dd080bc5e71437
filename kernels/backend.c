/* backend.c — pick a kernels backend by name. The CUDA table exists only in
 * builds with nvcc (MS_HAVE_CUDA); asking for it elsewhere is a clear error. */
#include "kernels/kernels.h"
#include "ms_build_config.h"

#include <string.h>

#if MS_HAVE_CUDA
extern const kern_ops_t kern_cuda_ops;
#endif

ms_status_t kern_backend_get(const char *name, const kern_ops_t **out)
{
    if (!name || !strcmp(name, "cpu")) {
        *out = &kern_cpu_ops;
        return MS_OK;
    }
    if (!strcmp(name, "cuda")) {
#if MS_HAVE_CUDA
        *out = &kern_cuda_ops;
        return MS_OK;
#else
        return MS_ERR(MS_ERR_UNSUPPORTED, "kernels backend 'cuda' is not compiled in (build with -Dcuda=enabled)");
#endif
    }
    return MS_ERR(MS_ERR_INVALID, "unknown kernels backend '%s' (expected cpu or cuda)", name);
}
