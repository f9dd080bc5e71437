/* wgmma.cuh — Hopper machinery the FP8-weight GEMMs share (moe_gemm_fp8.cu,
 * gemm_fp8w.cu, gemm_fp8x.cu): mbarrier, TMA (and its cluster multicast) and wgmma PTX wrappers, the 128-byte-swizzled
 * K-major shared-memory descriptor, and the host side (tensor maps through the
 * driver's cuTensorMapEncodeTiled, the SM count). Header-only so the
 * standalone tools (tools/meson.build ms_moe_fp8_src) need no extra source. */
#ifndef MS_KERN_CUDA_WGMMA_CUH
#define MS_KERN_CUDA_WGMMA_CUH

#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define MG_KC 128 /* K bytes per stage = one scale block */

/* ---- PTX wrappers ---- */
__device__ static __forceinline__ uint32_t mg_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ static __forceinline__ void mg_bar_init(uint64_t *b, uint32_t n)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(mg_smem(b)), "r"(n));
}
__device__ static __forceinline__ void mg_bar_expect(uint64_t *b, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(mg_smem(b)), "r"(bytes) : "memory");
}
__device__ static __forceinline__ void mg_bar_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(mg_smem(b)) : "memory");
}
__device__ static __forceinline__ void mg_bar_wait(uint64_t *b, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(mg_smem(b)), "r"(parity)
                     : "memory");
    } while (!done);
}
/* Weights: 3-D box (K, row, expert), so experts may sit `stride` bytes apart (slot records). */
__device__ static __forceinline__ void mg_tma_3d(void *dst, const CUtensorMap *map, int c0, int c1, int c2, uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
                 ::"r"(mg_smem(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(mg_smem(bar))
                 : "memory");
}
__device__ static __forceinline__ void mg_tma_2d(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 ::"r"(mg_smem(dst)), "l"(map), "r"(c0), "r"(c1), "r"(mg_smem(bar))
                 : "memory");
}
/* ---- thread-block clusters (gemm_fp8x.cu's multicast variant) ---- */
/* The 2-D box into the same shared-memory offset of every CTA in mask (bit r = cluster rank r), each CTA's
 * barrier at bar's offset counting the bytes that land in it. */
__device__ static __forceinline__ void mg_tma_2d_mc(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar,
                                                    uint16_t mask)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;"
                 ::"r"(mg_smem(dst)), "l"(map), "r"(c0), "r"(c1), "r"(mg_smem(bar)), "h"(mask)
                 : "memory");
}
/* One arrival on the barrier at b's offset in cluster CTA `rank` (this one's own included), releasing this
 * thread's earlier shared-memory reads to that CTA. */
__device__ static __forceinline__ void mg_bar_arrive_cta(uint64_t *b, uint32_t rank)
{
    asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
                 "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [ra];\n}\n" ::"r"(mg_smem(b)), "r"(rank)
                 : "memory");
}
__device__ static __forceinline__ uint32_t mg_cluster_rank()
{
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
/* Every thread of every CTA of the cluster (no .aligned: callers may be divergent). */
__device__ static __forceinline__ void mg_cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}
/* K-major operand, 128-byte swizzle, 8-row atoms 1024 bytes apart. */
__device__ static __forceinline__ uint64_t mg_desc(const void *p)
{
    return (uint64_t)((mg_smem(p) & 0x3ffff) >> 4) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ static __forceinline__ void mg_wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ static __forceinline__ void mg_wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ static __forceinline__ void mg_bulk(void *dst, const void *src, uint32_t bytes, uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(mg_smem(dst)), "l"(src), "r"(bytes), "r"(mg_smem(bar))
                 : "memory");
}
__device__ static __forceinline__ void mg_wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
__device__ static __forceinline__ void mg_wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
__device__ static __forceinline__ void mg_reg_fence(float &r) { asm volatile("" : "+f"(r)::"memory"); }

/* wgmma m64nNk32, e4m3 x e4m3 -> fp32, both operands K-major in shared memory (descriptors); acc = 0
 * overwrites d (the first k32 step of a chunk). */
template <int N> __device__ __forceinline__ void wgmma_fp8(float *d, uint64_t da, uint64_t db, int acc);
template <> __device__ __forceinline__ void wgmma_fp8<8>(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%0,%1,%2,%3}, %4, %5, p, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_fp8<16>(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n16k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7}, %8, %9, p, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                 : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_fp8<32>(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_fp8<64>(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(acc));
}

template <> __device__ __forceinline__ void wgmma_fp8<128>(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(acc));
}

/* ---- host side ---- */
static inline PFN_cuTensorMapEncodeTiled_v12000 mg_encode_fn(void)
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn;
    if (!fn) {
        cudaDriverEntryPointQueryResult q;
        void *p = NULL;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

/* A row-major [rows, cols] matrix of dt elements, rows ld_bytes apart (a multiple of 16), read
 * in boxes of box_rows x box_cols elements (box_cols * esize = 128 bytes), 128-byte swizzled (the layout
 * mg_desc describes). Boxes past the last row or column are zero-filled and still count their full bytes
 * on the barrier. */
static inline ms_status_t mg_map_2d(CUtensorMap *m, const void *base, CUtensorMapDataType dt, uint64_t rows, uint64_t cols, uint64_t ld_bytes, uint32_t box_cols,
                                    uint32_t box_rows)
{
    PFN_cuTensorMapEncodeTiled_v12000 enc = mg_encode_fn();
    if (!enc) return MS_ERR(MS_ERR_CUDA, "wgmma: cuTensorMapEncodeTiled not available from the driver");
    if (ld_bytes % 16 || (uintptr_t)base % 16)
        return MS_ERR(MS_ERR_INVALID, "wgmma: row stride %llu bytes / base not 16-byte aligned",
                      (unsigned long long)ld_bytes);
    cuuint64_t dims[2] = {cols, rows}, strides[1] = {ld_bytes};
    cuuint32_t box[2] = {box_cols, box_rows}, estr[2] = {1, 1};
    CUresult r = enc(m, dt, 2, (void *)base, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return MS_ERR(MS_ERR_CUDA, "wgmma: cuTensorMapEncodeTiled failed (%d)", (int)r);
    return MS_OK;
}

/* Expert weights [E][rows, cols] e4m3, experts `stride` bytes apart (a multiple of 16), read in boxes of
 * 64 rows x 128 bytes of one expert. */
static inline ms_status_t mg_weight_map(CUtensorMap *m, const void *base, uint64_t E, size_t stride, uint64_t rows,
                                 uint64_t cols)
{
    PFN_cuTensorMapEncodeTiled_v12000 enc = mg_encode_fn();
    if (!enc) return MS_ERR(MS_ERR_CUDA, "moe_fp8: cuTensorMapEncodeTiled not available from the driver");
    if (stride % 16 || (uintptr_t)base % 16)
        return MS_ERR(MS_ERR_INVALID, "moe_fp8: expert stride %zu / base not 16-byte aligned", stride);
    cuuint64_t dims[3] = {cols, rows, E}, strides[2] = {cols, stride};
    cuuint32_t box[3] = {MG_KC, 64, 1}, estr[3] = {1, 1, 1};
    CUresult r = enc(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, (void *)base, dims, strides, box, estr,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return MS_ERR(MS_ERR_CUDA, "moe_fp8: cuTensorMapEncodeTiled (3-D) failed (%d)", (int)r);
    return MS_OK;
}

static inline int mg_num_sms(void)
{
    static int n;
    if (!n) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            n = 132;
    }
    return n;
}

#endif
