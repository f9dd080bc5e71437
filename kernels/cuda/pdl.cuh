/* pdl.cuh — programmatic dependent launch (PDL) for the ops' kernels.
 *
 * Why: a decode step is ~140 kernels in a row, most of them a few µs long, so
 * the time between one kernel's end and the next one's first instruction
 * (launch, block dispatch, prologue) is a real share of the step. A kernel
 * launched by cu_launch may start while its predecessor on the stream still
 * runs; its blocks stop in cu_pdl_enter until the predecessor has completed
 * and its memory is visible, then let their own successor launch. So the
 * ordering of the stream is kept for every global read and write after
 * cu_pdl_enter (transitively: each kernel waits for the one before, which
 * waited for its own), and only the launch and the work before it overlap.
 *
 * The rule: a kernel launched by cu_launch calls cu_pdl_enter before it
 * touches global memory that another kernel writes or reads. (A kernel
 * launched the usual way, or by a library, is ordered as always; a PDL launch
 * after it waits for it in cu_pdl_enter.) MS_PDL=0 launches everything the
 * usual way, for A/B timing. */
#ifndef MS_KERN_CUDA_PDL_CUH
#define MS_KERN_CUDA_PDL_CUH

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <utility>

/* Wait for the predecessor grid (a no-op when this grid was launched without PDL), then allow the successor to
 * launch. The trigger comes after the wait, so at most one grid waits ahead of the running one. */
__device__ static __forceinline__ void cu_pdl_enter()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Whether environment variable `name` is set to exactly `value`: the ops' A/B switches (MS_*), host side. A
 * switch read once is a function-local static (`static const bool on = cu_env_is(...)`); one read per call is
 * for benchmarks that flip it within a process. */
static inline bool cu_env_is(const char *name, const char *value)
{
    const char *e = getenv(name);
    return e && !strcmp(e, value);
}

/* MS_PDL=0: no PDL launches. Read once per translation unit. */
static inline bool cu_pdl_on()
{
    static const bool on = !cu_env_is("MS_PDL", "0");
    return on;
}

/* kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute; the kernel must call cu_pdl_enter first */
template <typename... P, typename... A>
static inline cudaError_t cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                    A &&...args)
{
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t c = {};
    c.gridDim = grid, c.blockDim = block, c.dynamicSmemBytes = smem, c.stream = stream;
    c.attrs = at, c.numAttrs = cu_pdl_on() ? 1 : 0;
    return cudaLaunchKernelEx(&c, kernel, std::forward<A>(args)...);
}

#endif
