/* engine_internal.h — the engine's state, shared by worker/engine.c (create,
 * launch and wait of a step) and worker/engine_check.c (what a plan entry
 * may ask and which sequence a data fault belongs to). Not an interface:
 * everything else uses worker/engine.h. */
#ifndef MS_ENGINE_INTERNAL_H
#define MS_ENGINE_INTERNAL_H

#include "worker/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "proto/proto.h"
#include "proto/sampling.h"
#include "worker/checkpoint.h"
#include "worker/forward.h"
#include "worker/forward_mtp.h"
#include "worker/kv_cache.h"
#include "worker/sizing.h"
#include "worker/step_io.h"
#include "worker/step_graph.h"
#include "worker/penalty.h"
#include "worker/prompt_lp.h"
#include "worker/placement.h"
#include "worker/weights.h"

struct engine {
    mcfg_t cfg;
    par_t par;
    engine_opts_t opts;
    const kern_ops_t *k;
    kern_ctx_t *cx;
    comm_t *comm;
    ckpt_t *ck;
    placement_t pl;
    weights_t w;
    kvc_t kv;
    fwd_t f;
    mtp_t mtp;             /* MTP draft module (opts.mtp_drafts > 0) */
    sgraph_t gr;           /* decode-step graphs (opts.n_graph_sizes > 0; step_graph.h) */
    long graph_steps, graph_pad_rows; /* steps run at a graph's size, and the padding rows they added */
    /* host staging of one step's I/O block (pinned; mirrors f.io, step_io.h) */
    void *stage;
    uint32_t inject_fault; /* bits the next step's fault word starts with (test hook) */
    int inject_slot;       /* engine_inject_seq_fault: the slot whose next entry fails, -1 none */
    int inject_kind;       /* ENGINE_INJECT_* */
    int cur_inject_slot;   /* inject_slot as the launched step took it (step_attribute reads it at completion) */
    uint32_t *seq_fault;   /* per plan seq: PROTO_FAULT_* of this step (its result's fault word) */
    int *blk_off;          /* per plan seq: its block table's offset in this rank's block array */
    int *sample_of_seq;    /* sampled row of each plan seq, -1 if none (size max_batch) */
    int *path;             /* per plan seq: 1 = naive MLA path, 0 = absorbed */
    int *row0;             /* per plan seq: its first token row, -1 if another rank's */
    bool *no_drafts;       /* per plan seq: the module could not draft for it this step (step_complete) */
    int *entry_of_seq;     /* per plan seq: its MTP entry this step (VERIFY or DRAFT sampled seqs), -1 */
    int *draft_of_seq;     /* per plan seq: its row among the last step's drafting seqs, -1 (engine_mtp_logits) */
    bool *mine;            /* per plan seq: this rank runs it (pen_prepare) */
    pen_t *pen;            /* per-slot penalty lists (worker/penalty.h) */
    int n_sample_last;
    int n_seqs_last;       /* plan sequences of the last step (engine_logits) */
    /* prompt logprobs of the last step (PROTO_SEQ_PROMPT_LP entries: worker/prompt_lp.h) */
    plp_row_t *plp_rows;   /* (max_tokens_per_step) */
    proto_plp_t *plp;      /* (max_tokens_per_step) */
    int *plp_off, *plp_n;  /* per plan seq: its entries in plp */
    int n_seqs_done;       /* plan sequences of the last completed step (engine_prompt_lp) */
    /* Launched steps (engine_step_launch), oldest first: pend[pend_first], then the other one. */
    struct {
        uint8_t *plan;        /* the engine's copy of the plan, FEED_LAST tokens filled in */
        size_t cap;
        proto_result_t *res;  /* (max_batch) its results once completed */
        ms_status_t st;       /* launch status, then completion status */
        bool done;            /* completed: synchronized, results read */
    } pend[2];
    int pend_first, pend_n;
    /* the launched step not yet completed (step_launch -> step_complete) */
    step_io_layout_t cur_L;
    mtp_step_t cur_ms;     /* the launched step's MTP block (mtp.N > 0) */
    bool cur_adjusted;     /* the step adjusted its logits: f.logits holds them in fp32 (else only f.lg16) */
    bool cur_ran;          /* the forward ran (something to synchronize and read) */
    int32_t *last_tok;     /* per slot (max_batch): the token this rank sampled there in its last completed
                            * step, -1 when none (PROTO_SEQ_FEED_LAST) */
};

/* engine_check.c */
bool engine_seq_is_mine(const engine_t *e, const proto_seq_t *q);
ms_status_t engine_plan_check(const engine_t *e, const proto_plan_t *p);
ms_status_t engine_seq_check(const engine_t *e, const proto_plan_t *p, int i);
void engine_fault_describe(uint32_t bits, char *buf, size_t n);
uint32_t engine_step_attribute(engine_t *e, const proto_plan_t *p, const step_io_layout_t *L, uint32_t faults);

#endif
