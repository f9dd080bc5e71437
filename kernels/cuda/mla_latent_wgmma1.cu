/* mla_latent_wgmma1.cu — mw_kernel, the first Hopper MLA kernel (MS_MLA_WGMMA=1; the default is
 * mla_latent_wgmma.cu's warp-specialized mw2_kernel): two warpgroups that both load their tiles (BF16 by
 * cp.async, FP8 through registers, dequantized) and compute. The design and shared layout are
 * mla_latent_wgmma.cuh's. */
#include "mla_latent_wgmma.cuh"

/* wgmma m64nNk16, A and B from shared memory (SS); S: both K-major, acc 0 starts from zero; P V: B N-major */
__device__ static __forceinline__ void mw_s32(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "l"(da), "l"(db), "r"(acc));
}

/* BF16: start the copies of tile t (keys tb ..) into slot t & 1. Warpgroup w copies only what its own P V reads —
 * column blocks 4w .. 4w + 3 — and the rope rows 32w .. of its own S keys; thread (u = chunk, rows r + 16p), 128
 * contiguous bytes of a row a step. */
__device__ static void mw_issue(const mll_args &a, const int32_t *bt, int32_t tb, int32_t j1, int32_t t, uint8_t *sk,
                                int *okf)
{
    const int32_t tid = threadIdx.x, wg = tid >> 7, wt = tid & 127;
    const int32_t r = wt >> 3, u = wt & 7;
    uint8_t *dst = sk + (t & 1) * MW_TILE;
    const mw_tile_rows rows(a, bt, tb, j1);
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const int32_t row = r + 16 * p;
        const bool first = wg == 0 && u == 0; /* the row's flag and fault, once */
        const uint8_t *src = rows(row, first);
        const int ok = src != NULL;
        if (first) okf[(t % 3) * MW_T + row] = ok;
        if (!ok) src = (const uint8_t *)a.kv.data;
#pragma unroll
        for (int c = 0; c < 4; c++) { /* chunk 8cb + u: column block cb, chunk u */
            const int32_t cb = 4 * wg + c;
            mm_cp(dst + cb * MW_CB + mw_sw(row, u), src + (ok ? (8 * cb + u) * 16 : 0), ok, 16);
        }
        if ((p >> 1) == wg) mm_cp(dst + 8 * MW_CB + mw_sw(row, u), src + (ok ? (64 + u) * 16 : 0), ok, 16);
    }
}

/* FP8: one thread's share of a tile in registers — the same share of the tile as mw_issue's (its warpgroup's
 * column blocks, the rope rows of its S keys), cut for conflict-free stores: e4m3 chunk k = wt >> 3 (16 channels
 * 256w + 16k .., in column block 4w + k / 4) of rows (wt & 7) + 8p with its group's scale, and rope chunk wt & 7
 * of rows 32w + k + 16q. Zeros (and scale 0) for a row past the keys or of a bad block. */
struct mw_f8 {
    uint4 v[8];
    float s[8];
    uint4 pe[2];
};

__device__ static __forceinline__ void mw_load8(const mll_args &a, const int32_t *bt, int32_t tb, int32_t j1,
                                                int32_t t, int *okf, mw_f8 &f)
{
    const int32_t tid = threadIdx.x, wg = tid >> 7, wt = tid & 127, k = wt >> 3, rr = wt & 7;
    const int32_t cofs = 256 * wg + 16 * k, sofs = MW_DC + 4 * (2 * wg + (k >> 3));
    const mw_tile_rows rows(a, bt, tb, j1);
#pragma unroll
    for (int p = 0; p < 8; p++) {
        const uint8_t *src = rows(rr + 8 * p, false);
        f.v[p] = make_uint4(0, 0, 0, 0), f.s[p] = 0.f;
        if (src) {
            f.v[p] = __ldg(reinterpret_cast<const uint4 *>(src + cofs));
            f.s[p] = __ldg(reinterpret_cast<const float *>(src + sofs));
        }
    }
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const int32_t row = 32 * wg + k + 16 * q;
        const uint8_t *src = rows(row, rr == 0); /* the row's flag and fault, once */
        if (rr == 0) okf[(t % 3) * MW_T + row] = src != NULL;
        f.pe[q] = make_uint4(0, 0, 0, 0);
        if (src) f.pe[q] = __ldg(reinterpret_cast<const uint4 *>(src + MW_DC + 16 + 16 * rr)); /* after the 4 scales */
    }
}

/* FP8: mw_load8's registers -> bf16 tile slot t & 1 (bf16(e4m3 * s), mll_stage's values) */
__device__ static __forceinline__ void mw_store8(const mw_f8 &f, int32_t t, uint8_t *sk)
{
    const int32_t tid = threadIdx.x, wg = tid >> 7, wt = tid & 127, k = wt >> 3, rr = wt & 7;
    uint8_t *dst = sk + (t & 1) * MW_TILE, *cb = dst + (4 * wg + (k >> 2)) * MW_CB;
    const int32_t j = 2 * (k & 3);
#pragma unroll
    for (int p = 0; p < 8; p++) {
        const int32_t row = rr + 8 * p;
        const uint4 v = f.v[p];
        const float s = f.s[p];
        *reinterpret_cast<uint4 *>(cb + mw_sw(row, j)) =
            make_uint4(mm_fp8x2_bf16x2(v.x & 0xffff, s), mm_fp8x2_bf16x2(v.x >> 16, s),
                       mm_fp8x2_bf16x2(v.y & 0xffff, s), mm_fp8x2_bf16x2(v.y >> 16, s));
        *reinterpret_cast<uint4 *>(cb + mw_sw(row, j + 1)) =
            make_uint4(mm_fp8x2_bf16x2(v.z & 0xffff, s), mm_fp8x2_bf16x2(v.z >> 16, s),
                       mm_fp8x2_bf16x2(v.w & 0xffff, s), mm_fp8x2_bf16x2(v.w >> 16, s));
    }
#pragma unroll
    for (int q = 0; q < 2; q++) *reinterpret_cast<uint4 *>(dst + 8 * MW_CB + mw_sw(32 * wg + k + 16 * q, rr)) = f.pe[q];
}

template <bool F8> __global__ static void __launch_bounds__(MW_THREADS, 1) mw_kernel(mll_args a)
{
    cu_pdl_enter();
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap(); /* wgmma needs sm_90a machine code */
#else
    constexpr int NSR = MW_NS / 2, NK = 36; /* S registers, k-steps */
    extern __shared__ __align__(16) uint8_t mw_smem[];
    uint8_t *sm = mw_smem + ((1024 - (mm_sa(mw_smem) & 1023)) & 1023);
    uint8_t *sq = sm, *sk = sm + MW_OFF_K, *sp = sm + MW_OFF_P;
    int *okf = reinterpret_cast<int *>(sm + MW_OFF_OK);
    float *smax = reinterpret_cast<float *>(sm + MW_OFF_RED), *ssum = smax + 2 * MW_H;
    const int32_t seq = blockIdx.y; /* the head groups of a sequence are adjacent CTAs: the second reads L2 */
    const kern_attn_seq_t sd = a.seqs[seq];
    if (sd.n_q <= 0 || sd.q_off < 0) return;
    const int32_t tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int32_t r0 = ((tid >> 5) & 3) * 16 + g; /* this thread's rows (heads h0 + r0, h0 + r0 + 8) */
    const int32_t h0 = blockIdx.x * MW_H;
    const bool ctx_split = mll_ctx_split(sd, a.splits);
    const int32_t *bt = a.bt + sd.blk_off;
    for (int32_t i = ctx_split ? 0 : blockIdx.z; i < sd.n_q; i += ctx_split ? 1 : gridDim.z) {
        const int32_t tq = sd.q_off + i, nk = sd.pos0 + i + 1;
        const int2 keys = mw_keys(nk, ctx_split, a.splits, blockIdx.z);
        const int32_t j0 = keys.x, j1 = keys.y, ntiles = (j1 - j0 + MW_T - 1) / MW_T;
        __syncthreads(); /* the previous row is done with Q, the tiles, P and the flags */
        mw_f8 f8;
        if constexpr (F8) {
            if (ntiles > 0) mw_load8(a, bt, j0, j1, 0, okf, f8);
        } else {
            if (ntiles > 0) mw_issue(a, bt, j0, j1, 0, sk, okf);
            mm_commit();
        }
        if (ntiles > 0) /* while the first tile loads */
            mm_stage_q(a, tq, h0, MW_H, [&](int32_t r, int32_t c, uint4 w) {
                *reinterpret_cast<uint4 *>(sq + (c >> 6) * MW_CB_Q + mw_sw(r, (c >> 3) & 7)) = w;
            });
        if constexpr (F8)
            if (ntiles > 0) mw_store8(f8, 0, sk);
        float o[128];
#pragma unroll
        for (int j = 0; j < 128; j++) o[j] = 0.f;
        float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f}; /* l_r: this thread's keys */
        const uint64_t dq = mw_desc(sq, 0), dp = mw_desc(sp, 0);
        for (int32_t t = 0; t < ntiles; t++) {
            const int32_t tb = j0 + t * MW_T;
            if constexpr (!F8) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
            mw_fence_async(); /* this thread's copies / stores, to wgmma's (async) proxy */
            __syncthreads();  /* tile t complete (P V of tile t - 1 may still run: it reads the other slot) */
            const uint8_t *kt = sk + (t & 1) * MW_TILE;
            /* descriptors: a base plus an offset in 16-byte units (addresses stay below 2^18: no carry) */
            const uint64_t dk = mw_desc(kt, 0), dv = mw_desc(kt + wg * 4 * MW_CB, MW_CB);
            float s[NSR];
#pragma unroll
            for (int e = 0; e < NSR; e++) s[e] = 0.f;
            mg_wg_fence();
#pragma unroll
            for (int k = 0; k < NK; k++)
                mw_s32(s, dq + (((k >> 2) * MW_CB_Q + (k & 3) * 32) >> 4),
                       dk + (((k >> 2) * MW_CB + wg * MW_NS * 128 + (k & 3) * 32) >> 4), k > 0);
            mg_wg_commit();
            if constexpr (F8) /* tile t + 1's bytes land while S runs */
                if (t + 1 < ntiles) mw_load8(a, bt, tb + MW_T, j1, t + 1, okf, f8);
            /* S of tile t, and this warpgroup's P V of tile t - 1 (wait_group 1 would serialize the wgmmas: ptxas
             * C7514): its tile slot and registers are free again */
            mg_wg_wait0();
#pragma unroll
            for (int e = 0; e < NSR; e++) mg_reg_fence(s[e]);
#pragma unroll
            for (int j = 0; j < 128; j++) mg_reg_fence(o[j]);
            if constexpr (!F8) {
                if (t + 1 < ntiles) mw_issue(a, bt, tb + MW_T, j1, t + 1, sk, okf);
                mm_commit();
            }
            /* a thread holds rows r0 (e 0, 1) and r0 + 8 (e 2, 3) of n8 block j, keys wg*32 + 8j + 2*t4 + (e & 1) */
            const int *ok = okf + (t % 3) * MW_T;
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int e = 0; e < NSR; e++) {
                const int32_t col = wg * MW_NS + 8 * (e >> 2) + 2 * t4 + (e & 1);
                const float v = tb + col < j1 && ok[col] ? s[e] * a.scale : -INFINITY;
                s[e] = v;
                mx[(e >> 1) & 1] = fmaxf(mx[(e >> 1) & 1], v);
            }
            mw_max_publish(mx, smax, wg, r0, t4);
            __syncthreads();
            float corr[2];
            mw_softmax<NSR>(s, m_r, l_r, mx, smax, wg, r0, corr);
            mw_store_p(sp, s, wg, r0, t4);
            mw_rescale_o(o, corr);
            mw_fence_async();
            __syncthreads(); /* both halves of P are in */
            mg_wg_fence();
#pragma unroll
            for (int kk = 0; kk < MW_T / 16; kk++) mw_pv<false>(o, dp + kk * 2, dv + kk * 16 * 128 / 16);
            mg_wg_commit(); /* P V runs on while the next tile's S is issued */
            if constexpr (F8) /* tile t + 1 into the slot of tile t - 1, whose P V (ours) and S (both) are done */
                if (t + 1 < ntiles) mw_store8(f8, t + 1, sk);
        }
        mg_wg_wait0();
#pragma unroll
        for (int j = 0; j < 128; j++) mg_reg_fence(o[j]);
        mw_sum_publish(l_r, ssum, wg, r0, t4); /* the two warpgroups' row sums */
        __syncthreads();
        mw_write(a, o, m_r, ssum, seq, i, tq, h0, r0, wg, t4, ctx_split, 1.f, blockIdx.z);
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory"); /* nothing left in flight when the CTA ends */
#endif
}

cudaError_t mw1_launch(const mll_args &a, bool fp8, int32_t n_seqs, int32_t splits, cudaStream_t stream)
{
    static bool set[2]; /* the attribute is per function */
    void (*k)(mll_args) = fp8 ? mw_kernel<true> : mw_kernel<false>;
    if (!set[fp8]) {
        cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, MW_SMEM);
        if (e != cudaSuccess) return e;
        set[fp8] = true;
    }
    cu_launch(k, dim3((unsigned)(a.H / MW_H), (unsigned)n_seqs, (unsigned)splits), MW_THREADS, MW_SMEM, stream, a);
    return cudaGetLastError();
}
