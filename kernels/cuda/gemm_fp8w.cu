/* gemm_fp8w.cu — the gemm op's decode path for FP8 weights with BF16
 * activations (gemm.cu's `dequant` mode, m <= 128): y = x·Wᵀ with W e4m3 and
 * its 128x128 scale_inv blocks, in the CPU reference's numerics (W element =
 * bf16(fp8 * scale), bf16 x, fp32 accumulation, one rounding on store; only
 * the summation order differs from kernels/cpu/gemm.c).
 *
 * Why this shape: at decode the GEMM is a stream of 1-byte weights, so the
 * kernel reads W once, from HBM, through the TMA ring of the FP8 grouped
 * expert GEMM (wgmma.cuh; one producer thread), and dequantizes in registers:
 * each consumer warpgroup turns its m64 half of a 128-row weight tile into the
 * bf16 A fragments of wgmma (register A, "RS"), times the whole x tile (all m
 * tokens, BF16 from shared memory, the N of the MMA). The scale is applied
 * before the MMA, so the fp32 accumulator needs no per-block promotion.
 * Two A-fragment sets: chunk k+1 is dequantized while chunk k's MMAs run.
 *
 * Filling 132 SMs at m = 1 (q_a|kv_a has 17 tiles): stream-K. The grid's
 * CTAs split the tiles x 128-K chunks evenly; a CTA walks its range, writing a
 * tile it covers whole straight to y and the (at most two) tiles it shares as
 * fp32 partials; a second pass sums a shared tile's partials in CTA order and
 * rounds once. Deterministic, and only a CTA's first and last tile cost
 * partial traffic.
 *
 * Shapes: K a multiple of 128; W rows 16-byte aligned (ldw % 16 == 0), x rows
 * too (ldx % 8 == 0); any n (rows past n are TMA zero fill and not stored);
 * batch 1. kern_cuda_gemm_fp8w_fits says whether a call qualifies. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common.cuh"
#include "wgmma.cuh"

#define FW_ROWS 128                    /* weight rows per tile: one m64 half per consumer warpgroup */
#define FW_A_BYTES (FW_ROWS * MG_KC)   /* fp8 weight bytes per stage */
#define FW_SMEM_BUDGET (200 * 1024)
#define FW_MIN_CHUNKS 4                /* fewest 128-K chunks per CTA (pipeline fill) */

/* wgmma m64nBNk16, A = bf16 fragments in registers, B = K-major bf16 in shared memory (descriptor), fp32 accumulate */
template <int N> __device__ __forceinline__ void fw_wgmma(float *d, const uint32_t *a, uint64_t db);
template <> __device__ __forceinline__ void fw_wgmma<8>(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <> __device__ __forceinline__ void fw_wgmma<16>(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <> __device__ __forceinline__ void fw_wgmma<32>(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <> __device__ __forceinline__ void fw_wgmma<64>(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <> __device__ __forceinline__ void fw_wgmma<128>(float *d, const uint32_t *a, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

template <int BN> struct fw_shape {
    static constexpr int XB = BN * 128;                   /* bytes of one 64-wide K half of the bf16 x tile */
    static constexpr int STAGE = FW_A_BYTES + 2 * XB;     /* bytes per ring stage */
    static constexpr int ST0 = FW_SMEM_BUDGET / STAGE;
    static constexpr int ST = ST0 > 8 ? 8 : ST0;
    static constexpr int SMEM = ST * STAGE + 1024;        /* + 1024-byte alignment slack */
};

struct fw_args {
    const float *ws;  /* W scale_inv [ceil(n/128), sbc] */
    void *y;          /* [m, ldy] bf16 or f32 */
    float *part;      /* [2 * grid][m][128] fp32 partial tiles: slot 2i = CTA i's first tile, 2i+1 its last */
    int64_t ldy, total;
    int m, n, K, sbc, y_f32;
};

/* CTA i's range of the tiles x chunks work, [c0, c1); fw_owner(x) = the CTA whose range holds work item x. */
__host__ __device__ __forceinline__ int64_t fw_c0(int64_t i, int64_t total, int64_t p) { return i * total / p; }
__host__ __device__ __forceinline__ int64_t fw_owner(int64_t x, int64_t total, int64_t p)
{
    const int64_t i = ((x + 1) * p - 1) / total;
    return i < p ? i : p - 1;
}

/* two e4m3 (low byte = lower k) -> bf16x2 of bf16(fp8 * s) each, the CPU's rounding */
__device__ __forceinline__ uint32_t fw_dq2(uint16_t v, float s)
{
    __half2_raw hr = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)v, __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&hr));
    const __nv_bfloat162 b = __floats2bfloat162_rn(__fmul_rn(f.x, s), __fmul_rn(f.y, s));
    return *reinterpret_cast<const uint32_t *>(&b);
}
__device__ __forceinline__ void fw_reg_fence(uint32_t &r) { asm volatile("" : "+r"(r)::"memory"); }

template <int BN>
__global__ void __launch_bounds__(384, 1)
fw_kernel(const __grid_constant__ CUtensorMap tm_w, const __grid_constant__ CUtensorMap tm_x, const fw_args g)
{
    cu_pdl_enter();
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap(); /* wgmma needs sm_90a machine code */
#else
    typedef fw_shape<BN> sh;
    constexpr int STAGE = sh::STAGE, ST = sh::ST, XB = sh::XB, NACC = BN / 2;
    __shared__ __align__(8) uint64_t full[ST], empty[ST];
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const int kchunks = g.K / MG_KC;
    const int64_t c0 = fw_c0(blockIdx.x, g.total, gridDim.x), c1 = fw_c0(blockIdx.x + 1, g.total, gridDim.x);
    if (threadIdx.x == 0) {
        for (int i = 0; i < ST; i++) {
            mg_bar_init(&full[i], 1);
            mg_bar_init(&empty[i], 2 * 128);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (wg == 2) { /* producer: one thread streams the range's chunks through the ring */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (t != 0) return;
        int it = 0;
        for (int64_t c = c0; c < c1; c++, it++) {
            const int tile = (int)(c / kchunks), kc = (int)(c % kchunks), st = it % ST;
            mg_bar_wait(&empty[st], ((it / ST) & 1) ^ 1);
            uint8_t *sa = smem + st * STAGE;
            mg_bar_expect(&full[st], STAGE);
            mg_tma_2d(sa, &tm_w, kc * MG_KC, tile * FW_ROWS, &full[st]);
            mg_tma_2d(sa + FW_A_BYTES, &tm_x, kc * 128, 0, &full[st]);
            mg_tma_2d(sa + FW_A_BYTES + XB, &tm_x, kc * 128 + 64, 0, &full[st]);
        }
        return;
    }

    /* consumers: warpgroup wg owns weight rows wg*64.. of each tile */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int warp = t / 32, lane = t % 32, gq = lane / 4, tq = lane % 4;
    const int r = wg * 64 + warp * 16 + gq; /* this thread's A rows r and r+8 (swizzle phase r % 8 = gq) */
    int it = 0;
    for (int64_t c = c0; c < c1;) {
        const int tile = (int)(c / kchunks), k0 = (int)(c % kchunks);
        const int64_t tend = (int64_t)(tile + 1) * kchunks;
        const int nk = (int)((c1 < tend ? c1 : tend) - c);
        const float *wsr = g.ws + (size_t)tile * g.sbc;
        float acc[NACC];
#pragma unroll
        for (int i = 0; i < NACC; i++) acc[i] = 0.f;
        uint32_t fa[8][4], fb[8][4];
        /* chunk j of this segment: dequantize the fragments, then its 8 k16 MMAs (async) */
        auto issue = [&](uint32_t (&f)[8][4], int j) {
            const int st = (it + j) % ST;
            const float s = __ldg(wsr + k0 + j);
            mg_bar_wait(&full[st], ((it + j) / ST) & 1);
            const uint8_t *sa = smem + st * STAGE + r * 128;
#pragma unroll
            for (int kk = 0; kk < 8; kk++) { /* 16-byte group kk sits at kk ^ (row % 8); bytes 2tq.., 2tq+8.. */
                const int off = ((kk ^ gq) << 4) + 2 * tq;
                f[kk][0] = fw_dq2(*(const uint16_t *)(sa + off), s);
                f[kk][1] = fw_dq2(*(const uint16_t *)(sa + 8 * 128 + off), s);
                f[kk][2] = fw_dq2(*(const uint16_t *)(sa + off + 8), s);
                f[kk][3] = fw_dq2(*(const uint16_t *)(sa + 8 * 128 + off + 8), s);
            }
            const uint8_t *sb = smem + st * STAGE + FW_A_BYTES;
            mg_wg_fence();
#pragma unroll
            for (int kk = 0; kk < 8; kk++) fw_wgmma<BN>(acc, f[kk], mg_desc(sb + (kk / 4) * XB + (kk % 4) * 32));
            mg_wg_commit();
        };
        /* after the wait that completed chunk j: its fragments may be reused, its stage refilled */
        auto retire = [&](uint32_t (&f)[8][4], int j) {
#pragma unroll
            for (int kk = 0; kk < 8; kk++)
#pragma unroll
                for (int q = 0; q < 4; q++) fw_reg_fence(f[kk][q]);
            mg_bar_arrive(&empty[(it + j) % ST]);
        };
        issue(fa, 0);
        int j = 1;
        for (; j + 1 < nk; j += 2) {
            issue(fb, j);
            mg_wg_wait1();
            retire(fa, j - 1);
            issue(fa, j + 1);
            mg_wg_wait1();
            retire(fb, j);
        }
        if (j < nk) {
            issue(fb, j);
            mg_wg_wait1();
            retire(fa, j - 1);
            mg_wg_wait0();
            retire(fb, j);
        } else {
            mg_wg_wait0();
            retire(fa, j - 1);
        }
#pragma unroll
        for (int i = 0; i < NACC; i++) mg_reg_fence(acc[i]);
        it += nk;
        /* epilogue: accumulator (row, col) = (output feature, token) */
        const bool whole = k0 == 0 && nk == kchunks;
        const int slot = 2 * blockIdx.x + (c == c0 ? 0 : 1);
        c += nk;
#pragma unroll
        for (int i = 0; i < NACC; i++) {
            const int rr = warp * 16 + gq + ((i & 2) ? 8 : 0) + wg * 64;
            const int n = tile * FW_ROWS + rr, tok = 8 * (i / 4) + 2 * tq + (i & 1);
            if (tok >= g.m || n >= g.n) continue;
            if (!whole) g.part[((size_t)slot * g.m + tok) * FW_ROWS + rr] = acc[i];
            else if (g.y_f32) ((float *)g.y)[tok * g.ldy + n] = acc[i];
            else ((uint16_t *)g.y)[tok * g.ldy + n] = cu_f_bf16(acc[i]);
        }
    }
#endif
}

/* The shared tiles: y[tok, n] = one rounding of the sum of the partials of the CTAs that share n's tile,
 * in CTA order. Tiles one CTA covered are skipped (already in y). CTAs after the tile's first owner all
 * start inside it, so their partial is their first slot (2i); only the first owner's slot needs its start:
 * the loads are independent and issue back to back (a tile of q_a|kv_a at m = 1 has ~8 owners). */
__global__ static void fw_reduce_kernel(fw_args g, int64_t p)
{
    cu_pdl_enter();
    const int kchunks = g.K / MG_KC, ntile = (g.n + FW_ROWS - 1) / FW_ROWS;
    const int64_t items = (int64_t)ntile * g.m * FW_ROWS, slot_stride = (int64_t)g.m * FW_ROWS;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < items;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int tile = (int)(idx / slot_stride), rem = (int)(idx % slot_stride);
        const int tok = rem / FW_ROWS, rr = rem % FW_ROWS, n = tile * FW_ROWS + rr;
        if (n >= g.n) continue;
        const int64_t x0 = (int64_t)tile * kchunks;
        const int64_t i0 = fw_owner(x0, g.total, p), i1 = fw_owner(x0 + kchunks - 1, g.total, p);
        if (i0 == i1) continue;
        const float *pp = g.part + (int64_t)tok * FW_ROWS + rr;
        float s = pp[(2 * i0 + (fw_c0(i0, g.total, p) == x0 ? 0 : 1)) * slot_stride];
#pragma unroll 4
        for (int64_t i = i0 + 1; i <= i1; i++) s = __fadd_rn(s, pp[2 * i * slot_stride]);
        if (g.y_f32) ((float *)g.y)[tok * g.ldy + n] = s;
        else ((uint16_t *)g.y)[tok * g.ldy + n] = cu_f_bf16(s);
    }
}

/* CTAs for a call: one per SM, fewer when a CTA would get under FW_MIN_CHUNKS chunks. */
static int64_t fw_grid(int32_t n, int32_t k)
{
    const int64_t total = (int64_t)((n + FW_ROWS - 1) / FW_ROWS) * (k / MG_KC);
    int64_t p = mg_num_sms();
    if (p > (total + FW_MIN_CHUNKS - 1) / FW_MIN_CHUNKS) p = (total + FW_MIN_CHUNKS - 1) / FW_MIN_CHUNKS;
    return p < 1 ? 1 : p;
}

static size_t fw_part_bytes(int32_t m, int32_t n, int32_t k)
{
    return (size_t)2 * fw_grid(n, k) * m * FW_ROWS * sizeof(float);
}

extern "C" int kern_cuda_gemm_fp8w_fits(int32_t m, int32_t n, int32_t k, int64_t ldx, int64_t ldw, const void *x,
                                        const void *w, ms_dtype_t ydt, size_t scratch_bytes)
{
    return m >= 1 && m <= 128 && n >= 1 && k >= MG_KC && k % MG_KC == 0 && ldx % 8 == 0 && ldw % 16 == 0 &&
           (uintptr_t)x % 16 == 0 && (uintptr_t)w % 16 == 0 && (ydt == MS_DT_BF16 || ydt == MS_DT_F32) &&
           fw_part_bytes(m, n, k) <= scratch_bytes;
}

template <int BN>
static ms_status_t fw_launch(kern_ctx_t *cx, const CUtensorMap &tw, const CUtensorMap &tx, const fw_args &g,
                             int64_t p)
{
    typedef fw_shape<BN> sh;
    CUDA_CHECK(cudaFuncSetAttribute(fw_kernel<BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, sh::SMEM));
    cu_launch(fw_kernel<BN>, (unsigned)p, 384, sh::SMEM, CU_STREAM(cx), tw, tx, g);
    CU_LAUNCHED();
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_gemm_fp8w(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t m,
                                           const uint8_t *w, const float *ws, int64_t ldw, int32_t n, int32_t k,
                                           void *y, ms_dtype_t ydt, int64_t ldy, void *scratch, size_t scratch_bytes)
{
    if (!kern_cuda_gemm_fp8w_fits(m, n, k, ldx, ldw, x, w, ydt, scratch_bytes))
        return MS_ERR(MS_ERR_INVALID, "cuda gemm_fp8w: m=%d n=%d k=%d ldx=%lld ldw=%lld does not fit the kernel", m,
                      n, k, (long long)ldx, (long long)ldw);
    const int bn = m <= 8 ? 8 : m <= 16 ? 16 : m <= 32 ? 32 : m <= 64 ? 64 : 128;
    CUtensorMap tw, tx;
    MS_TRY(mg_map_2d(&tw, w, CU_TENSOR_MAP_DATA_TYPE_UINT8, (uint64_t)n, (uint64_t)k, (uint64_t)ldw, MG_KC, FW_ROWS));
    MS_TRY(mg_map_2d(&tx, x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (uint64_t)m, (uint64_t)k, (uint64_t)ldx * 2, 64,
                     (uint32_t)bn));
    const int64_t p = fw_grid(n, k);
    fw_args g;
    g.ws = ws, g.y = y, g.part = (float *)scratch, g.ldy = ldy;
    g.total = (int64_t)((n + FW_ROWS - 1) / FW_ROWS) * (k / MG_KC);
    g.m = m, g.n = n, g.K = k, g.sbc = kern_fp8_blocks((int32_t)ldw), g.y_f32 = ydt == MS_DT_F32;
    switch (bn) {
    case 8: MS_TRY(fw_launch<8>(cx, tw, tx, g, p)); break;
    case 16: MS_TRY(fw_launch<16>(cx, tw, tx, g, p)); break;
    case 32: MS_TRY(fw_launch<32>(cx, tw, tx, g, p)); break;
    case 64: MS_TRY(fw_launch<64>(cx, tw, tx, g, p)); break;
    default: MS_TRY(fw_launch<128>(cx, tw, tx, g, p)); break;
    }
    if (g.total % p == 0 && (g.total / p) % (k / MG_KC) == 0) return MS_OK; /* every CTA took whole tiles */
    const int64_t items = (int64_t)((n + FW_ROWS - 1) / FW_ROWS) * m * FW_ROWS;
    const int64_t blocks = (items + 255) / 256;
    cu_launch(fw_reduce_kernel, (unsigned)(blocks < 1024 ? blocks : 1024), 256, 0, CU_STREAM(cx), g, p);
    CU_LAUNCHED();
    return MS_OK;
}
