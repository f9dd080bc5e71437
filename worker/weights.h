/* weights.h — one rank's model weights in ONE device allocation per
 * lifetime, carved into named tensors (llm.c's malloc_and_point_parameters).
 * Every field is a device pointer into `mem`; shapes are local to this rank
 * (H = heads this rank holds, see par.h; routed experts by slot, placement.h). Linear weights
 * are kern_mat_t: [out, in] BF16, or F8E4M3 with 128×128 scale_inv, exactly
 * as the checkpoint stores them (fp8 stays fp8 on the device).
 * Notation: D hidden_size, V vocab, qk = dn + dr, dc kv_lora_rank, dr rope
 * dim, dn/dv nope/v head dims, I intermediate_size, Im moe_intermediate_size,
 * Is = Im * n_shared_experts, E n_routed_experts. */
#ifndef MS_WEIGHTS_H
#define MS_WEIGHTS_H

#include <stdbool.h>
#include "kernels/kernels.h"
#include "worker/checkpoint.h"
#include "worker/model_config.h"
#include "worker/par.h"
#include "worker/placement.h"

typedef struct {
    bf16_t *input_norm;  /* (D) */
    bf16_t *post_norm;   /* (D) */
    /* attention */
    kern_mat_t q_a;      /* (q_lora, D)          when q_lora_rank > 0 */
    bf16_t *q_a_norm;    /* (q_lora) */
    kern_mat_t q_b;      /* (H*qk, q_lora)       rows of this rank's heads */
    kern_mat_t q;        /* (H*qk, D)            when q_lora_rank == 0 */
    kern_mat_t kv_a;     /* (dc+dr, D)           kv_a_proj_with_mqa */
    kern_mat_t qkv_a;    /* (q_lora+dc+dr, D)    [q_a | kv_a] in one allocation (q_a and kv_a views of it), so one
                          * GEMM reads both; data NULL when not fused (no q-LoRA, or an FP8 q_lora not a
                          * multiple of 128) */
    bf16_t *kv_a_norm;   /* (dc) */
    kern_mat_t kv_b;     /* (H*(dn+dv), dc)      per head [W_UK dn rows | W_UV dv rows]; always BF16
                          * (an FP8 checkpoint's kv_b is dequantized once at load) */
    kern_mat_t o;        /* (D, H*dv)            columns of this rank's heads */
    /* FFN: dense layers */
    bool is_moe;
    kern_mat_t gate, up; /* (I, D) */
    kern_mat_t gate_up;  /* (2I, D) [gate | up] in one allocation, gate and up being views of it; data NULL
                          * when they could not be fused (an FP8 I not a multiple of 128: scale blocks) */
    kern_mat_t down;     /* (D, I) */
    /* FFN: MoE layers */
    kern_mat_t router;   /* (E, D) bf16 (fp32 GEMM) */
    float *router_bias;  /* (E) e_score_correction_bias */
    kern_moe_slots_t experts; /* slots_per_rank records [gate|up (2*Im, D), down (D, Im), fp8 scales]; local
                               * slot j holds expert phy2log[layer][ep_rank*slots_per_rank + j] (placement.h) */
    kern_mat_t sh_gate, sh_up; /* (Is, D) shared experts */
    kern_mat_t sh_gate_up; /* (2Is, D) fused as gate_up */
    kern_mat_t sh_down;  /* (D, Is) */
} wlayer_t;

typedef struct {
    const kern_ops_t *k;
    void *mem;           /* the one device allocation */
    size_t bytes;
    bf16_t *embed;       /* (V, D) */
    bf16_t *norm;        /* (D) final norm */
    kern_mat_t lm_head;  /* (V, D) bf16 (the embedding when tie_word_embeddings) */
    wlayer_t *layers;    /* host array [num_hidden_layers] */
    int n_layers;
} weights_t;

/* Validate (ckpt_expect: shapes and dtypes, errors name the shard file and
 * tensor) and upload this rank's share of the checkpoint; routed experts go
 * to the slots `pl` gives this rank (a replicated expert is loaded into each
 * of its slots). pl is borrowed for the call.
 * ck NULL is load_format dummy: no file is read; the shapes and dtypes come
 * from the config (FP8 linears where quantization_config says fp8) and the
 * values are deterministic pseudo-random ones made on the device
 * (kern_ops_t.fill_dummy, seeded by tensor name and indexed by the position
 * in the whole tensor, so every layout holds the same model): linears
 * rms ≈ 1/sqrt(in), norms 1, biases 0, embeddings uniform ±1. */
ms_status_t weights_load(const kern_ops_t *k, kern_ctx_t *cx, const ckpt_t *ck, const mcfg_t *c, const par_t *p,
                         const placement_t *pl, weights_t *out);
void weights_free(weights_t *w);

/* One MTP module (DeepSeek-V3 section 5 of the reference): checkpoint layer
 * num_hidden_layers + module, in its own allocation. w is laid out as a
 * one-layer model so the forward pass's layer code runs it unchanged:
 * w.embed is the module's embed_tokens, w.norm its shared_head.norm,
 * w.lm_head its shared_head.head, w.layers[0] its decoder block. embed and
 * head point at the main model's copies when the checkpoint omits them or
 * stores the same bytes (DeepSeek ships copies), so they are not loaded twice. */
typedef struct {
    int layer;          /* checkpoint layer index */
    bf16_t *enorm;      /* (D) */
    bf16_t *hnorm;      /* (D) */
    kern_mat_t eh_proj; /* (D, 2D) bf16: input columns [RMSNorm_e(embedding) | RMSNorm_h(hidden)] */
    bool shared_embed, shared_head;
    weights_t w;
} wmtp_t;

/* pl: the module's own one-layer placement (its experts' slots). A missing
 * tensor is an error naming the checkpoint and tensor. */
ms_status_t weights_load_mtp(const kern_ops_t *k, kern_ctx_t *cx, const ckpt_t *ck, const mcfg_t *c, const par_t *p,
                             const placement_t *pl, const weights_t *main, int module, wmtp_t *out);
void weights_free_mtp(wmtp_t *m);

#endif
