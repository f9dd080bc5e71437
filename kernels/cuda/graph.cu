/* graph.cu — CUDA graphs over a context's stream (kernels.h graph_*): stream
 * capture in thread-local mode (an unsafe call on this thread, such as a
 * synchronize, fails the capture instead of running), instantiation, replay.
 * The engine captures its decode forward pass once per batch size at startup
 * (worker/step_graph.c) and replays it between the step's one upload and one
 * download. */
#include <cuda_runtime.h>
#include "cuda.h"

extern "C" ms_status_t kern_cuda_graph_begin(kern_ctx_t *cx)
{
    CUDA_CHECK(cudaStreamBeginCapture((cudaStream_t)cx->stream, cudaStreamCaptureModeThreadLocal));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_graph_end(kern_ctx_t *cx, kern_graph_t *out)
{
    cudaGraph_t g = NULL;
    cudaError_t rc = cudaStreamEndCapture((cudaStream_t)cx->stream, &g);
    if (rc != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError(); /* an invalidated capture is not sticky: clear it so the next call is clean */
        return MS_ERR(MS_ERR_CUDA, "cudaStreamEndCapture failed: %s", cudaGetErrorString(rc));
    }
    cudaGraphExec_t x = NULL;
    rc = cudaGraphInstantiateWithFlags(&x, g, 0);
    cudaGraphDestroy(g); /* the executable graph keeps what it needs */
    if (rc != cudaSuccess) return MS_ERR(MS_ERR_CUDA, "cudaGraphInstantiate failed: %s", cudaGetErrorString(rc));
    *out = (kern_graph_t)x;
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_graph_launch(kern_ctx_t *cx, kern_graph_t g)
{
    CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" void kern_cuda_graph_destroy(kern_graph_t g)
{
    if (g) cudaGraphExecDestroy((cudaGraphExec_t)g);
}
