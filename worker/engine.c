/* engine.c — turns a step plan into the forward pass's per-step metadata
 * (token ids, positions, cache slots, attention descriptors, sampling
 * parameters), runs it, and reads back the sampled tokens.
 *
 * Plan → metadata: this rank takes every sequence (attention TP) or those
 * with dp_rank == its DP rank (attention DP). Token rows follow plan order.
 * A token at position p of a sequence lands in cache row
 * block_table[p / block_size] * block_size + p % block_size. Sequences are
 * split between the naive MLA path (prefill chunks, transformers' form) and
 * the absorbed one (decode) per engine_opts_t.mla.
 *
 * Launch and wait (engine_step_launch / engine_step_wait): a step is
 * launched (checked, its metadata uploaded, the forward pass and the
 * download of its results queued on the backend's stream) and later waited
 * for (synchronize, results read). The engine holds at most two steps: one
 * launched and not yet synchronized, and one completed whose results were
 * not yet taken. Launching a step completes the one before it first (host
 * side: a FEED_LAST entry needs that step's token, read here from the host
 * staging block that the next launch reuses), so on the CPU backend, whose
 * ops run as they are called, a launch does all the step's work; on a GPU
 * the host returns from launch while the device runs, which is what lets
 * rank 0 schedule step N+1 while step N runs (runtime/serve_loop.c). */
#include "worker/engine_internal.h"

_Static_assert(KERN_MAX_LOGPROBS == PROTO_MAX_LOGPROBS, "logprob list lengths agree");

const mcfg_t *engine_config(const engine_t *e) { return &e->cfg; }

const placement_t *engine_placement(const engine_t *e) { return e->cfg.n_routed_experts ? &e->pl : NULL; }

void engine_backend(engine_t *e, const kern_ops_t **k, kern_ctx_t **cx, comm_t **comm)
{
    *k = e->k, *cx = e->cx, *comm = e->comm;
}

void *engine_weights_base(const engine_t *e, size_t *bytes)
{
    *bytes = e->w.bytes;
    return e->w.mem;
}

void *engine_slot_record(engine_t *e, int layer, int j, size_t *bytes)
{
    if (layer < 0 || layer >= e->w.n_layers || !e->w.layers[layer].is_moe || j < 0 || j >= e->pl.slots_per_rank)
        return NULL;
    const kern_moe_slots_t *s = &e->w.layers[layer].experts;
    *bytes = s->stride;
    return (char *)s->base + (size_t)j * s->stride;
}

ms_status_t engine_placement_flip(engine_t *e, int layer, const int32_t *row, const int *local_slots,
                                  void *const *staged, int n)
{
    const int S = e->pl.n_slots;
    if (layer < 0 || layer >= e->pl.n_layers) return MS_ERR(MS_ERR_INVALID, "eplb: layer %d out of range", layer);
    int32_t *all = malloc(sizeof *all * (size_t)e->pl.n_layers * S);
    if (!all) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory for a placement");
    memcpy(all, e->pl.phy2log, sizeof *all * (size_t)e->pl.n_layers * S);
    memcpy(all + (size_t)layer * S, row, sizeof *all * (size_t)S);
    placement_t next;
    ms_status_t st = placement_create(e->pl.n_layers, e->pl.n_experts, S, e->pl.ep_size, all, &next);
    free(all);
    if (st != MS_OK) return st;
    if (next.max_rep > e->f.rep_cap) {
        placement_free(&next);
        return MS_ERR(MS_ERR_INVALID, "eplb: layer %d: %d replicas exceed the table's %d", layer, next.max_rep,
                      e->f.rep_cap);
    }
    for (int i = 0; i < n; i++) {
        size_t bytes;
        void *dst = engine_slot_record(e, layer, local_slots[i], &bytes);
        if (!dst) st = MS_ERR(MS_ERR_INVALID, "eplb: layer %d local slot %d", layer, local_slots[i]);
        if (st == MS_OK) st = e->k->copy(e->cx, dst, staged[i], bytes);
        if (st != MS_OK) break; /* records already copied now hold their new experts: see below */
    }
    if (st != MS_OK) {
        /* a half-copied layer cannot keep the old tables either; a local device copy failing means the
         * device is gone, and the step that follows reports it */
        placement_free(&next);
        return st;
    }
    placement_t old = e->pl;
    e->pl = next; /* f.pl points at e->pl */
    st = fwd_placement_upload(&e->f);
    if (st != MS_OK) {
        e->pl = old;
        placement_free(&next);
        return st;
    }
    placement_free(&old);
    return MS_OK;
}

void engine_memory(const engine_t *e, size_t *weights, size_t *activations, size_t *kv)
{
    *weights = e->w.bytes + (e->mtp.N ? e->mtp.m.w.bytes : 0);
    *activations = e->f.bytes + (e->mtp.N ? e->mtp.bytes : 0);
    *kv = e->kv.layer_bytes * (size_t)e->kv.n_layers + (e->mtp.N ? e->mtp.kv.layer_bytes : 0);
}

/* Every op the forward pass calls: checked at creation so a backend that
 * lacks one is rejected before any weight is loaded. */
static const kern_op_t engine_ops_used[] = {
    KERN_OP_EMBED, KERN_OP_ADD, KERN_OP_CAST, KERN_OP_GATHER_ROWS, KERN_OP_SILU_MUL, KERN_OP_RMSNORM,
    KERN_OP_ADD_RMSNORM, KERN_OP_GEMM, KERN_OP_ROPE, KERN_OP_KV_STORE, KERN_OP_KV_GATHER, KERN_OP_MLA_NAIVE,
    KERN_OP_MLA_LATENT, KERN_OP_MOE_ROUTE, KERN_OP_MOE_PLAN, KERN_OP_MOE_SCATTER, KERN_OP_MOE_EXPERTS,
    KERN_OP_MOE_COMBINE, KERN_OP_SAMPLE, KERN_OP_LOG_SOFTMAX,
};

static void engine_free_host(engine_t *e)
{
    sgraph_destroy(&e->gr, e->k);
    if (e->stage) e->k->host_free(e->stage);
    e->stage = NULL;
    free(e->blk_off), free(e->sample_of_seq), free(e->path), free(e->row0), free(e->mine), free(e->entry_of_seq);
    free(e->no_drafts);
    free(e->draft_of_seq), free(e->seq_fault);
    free(e->plp_rows), free(e->plp), free(e->plp_off), free(e->plp_n);
    free(e->last_tok);
    for (int i = 0; i < 2; i++) free(e->pend[i].plan), free(e->pend[i].res);
    pen_destroy(e->pen);
    e->pen = NULL;
}

/* cuda_graph_config: capture the decode-step graphs, or say why steps run eagerly (step_graph.h). */
static ms_status_t engine_graphs(engine_t *e)
{
    engine_opts_t *o = &e->opts;
    const int *req = o->graph_sizes, nreq = o->n_graph_sizes;
    o->graph_sizes = NULL; /* borrowed for creation only */
    if (nreq <= 0) return MS_OK;
    const char *why = NULL;
    if (!e->k->graphs && !o->graph_emulate) why = "this backend has none";
    else if (e->par.tp_size > 1 || e->par.ep_size > 1)
        why = "the ranks exchange activations over MPI through host memory (a CPU transport), which a graph "
              "cannot capture";
    if (why) {
        if (e->par.tp_rank == 0 && e->par.ep_rank == 0) /* one line for the job */
            MS_INFO("cuda_graph_config: no CUDA graphs on the %s backend: %s; decode steps run eagerly", e->k->name,
                    why);
        return MS_OK;
    }
    /* a graph's rows must fit the step's buffers: sequences and tokens of one step (with MTP a sequence
     * has N + 1 rows, all sampled) */
    const int W = e->mtp.N + 1, rows = e->f.T_max < e->f.B_max ? e->f.T_max : e->f.B_max;
    const int cap_seqs = e->mtp.N ? e->mtp.B_max : o->max_batch;
    const int lim = cap_seqs < rows / W ? cap_seqs : rows / W;
    int sizes[SGRAPH_MAX], n = 0, dropped = 0;
    for (int i = 0; i < nreq; i++) {
        if (req[i] < 1 || (n > 0 && req[i] <= sizes[n - 1])) continue; /* ascending and unique */
        if (req[i] > lim || n == SGRAPH_MAX) dropped++;
        else sizes[n++] = req[i];
    }
    if (dropped)
        MS_INFO("cuda_graph_config: %d batch size%s above this rank's %d sequences a step not captured",
                dropped, dropped > 1 ? "s" : "", lim);
    if (n == 0) return MS_OK;
    ms_status_t st = sgraph_create(&e->gr, &e->f, e->mtp.N ? &e->mtp : NULL, e->stage, o->device, sizes, n,
                                   o->graph_padding, o->graph_emulate);
    if (st != MS_OK)
        return MS_ERR(st, "cuda_graph_config: capturing the decode-step graphs failed (the error above); "
                          "`cuda_graph_config: null` runs every step eagerly");
    char list[SGRAPH_MAX * 5 + 8];
    size_t off = 0;
    for (int i = 0; i < n && off + 8 < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%d", i ? "," : "", sizes[i]);
    MS_INFO("cuda_graph_config: %s %d decode-step graph%s, batch sizes [%s], padding %s: %.1f ms, %.1f MiB of device "
            "memory", o->graph_emulate ? "emulated (eager, test hook)" : "captured", n, n > 1 ? "s" : "", list,
            o->graph_padding ? "on" : "off", e->gr.capture_ms, (double)e->gr.bytes / (1 << 20));
    return MS_OK;
}

ms_status_t engine_create(const char *model_dir, const par_t *par, const engine_opts_t *opts, comm_t *comm,
                          engine_t **out)
{
    ms_status_t st;
    engine_t *e = calloc(1, sizeof *e);
    if (!e) return MS_ERR(MS_ERR_NOMEM, "engine: out of memory");
    e->par = *par;
    e->opts = *opts;
    e->comm = comm;
    engine_opts_t *o = &e->opts;
    if (o->kv_blocks < 1 || o->block_size < 1 || o->max_batch < 1 || o->max_tokens_per_step < 1) {
        st = MS_ERR(MS_ERR_INVALID, "engine: kv_blocks %d, block_size %d, max_batch %d, max_tokens_per_step %d must "
                                    "all be >= 1", o->kv_blocks, o->block_size, o->max_batch, o->max_tokens_per_step);
        goto out_e;
    }
    if (o->ops) e->k = o->ops;
    else MS_TRY_GOTO(st, kern_backend_get(o->backend ? o->backend : "cpu", &e->k), out_e);
    MS_TRY_GOTO(st, mcfg_load(model_dir, &e->cfg), out_e);
    MS_TRY_GOTO(st, par_validate(par, &e->cfg), out_e);
    if (comm_size(comm, COMM_TP) != par->tp_size || comm_size(comm, COMM_EP) != par->ep_size) {
        st = MS_ERR(MS_ERR_INVALID, "engine: comm groups (tp %d, ep %d) disagree with the layout (tp %d, ep %d)",
                    comm_size(comm, COMM_TP), comm_size(comm, COMM_EP), par->tp_size, par->ep_size);
        goto out_e;
    }
    MS_TRY_GOTO(st, kern_require_ops(e->k, engine_ops_used, (int)(sizeof engine_ops_used / sizeof engine_ops_used[0])),
                out_e);
    MS_TRY_GOTO(st, e->k->ctx_create(o->device, 0, &e->cx), out_e);
    if (!o->load_dummy) MS_TRY_GOTO(st, ckpt_open(model_dir, &e->ck), out_stream);
    if (e->cfg.n_routed_experts > 0)
        MS_TRY_GOTO(st, placement_create(e->cfg.num_hidden_layers, e->cfg.n_routed_experts, o->num_slots,
                                         par->ep_size, o->assignment, &e->pl), out_ck);
    o->assignment = NULL; /* borrowed for creation only */
    MS_TRY_GOTO(st, weights_load(e->k, e->cx, e->ck, &e->cfg, par, &e->pl, &e->w), out_pl);
    for (int l = 0; l < e->w.n_layers; l++)
        e->w.layers[l].experts.mode = o->moe_fp8 ? KERN_MOE_FP8 : KERN_MOE_DEQUANT;
    MS_TRY_GOTO(st, kvc_create(e->k, e->cfg.num_hidden_layers, o->kv_blocks, o->block_size,
                               o->kv_fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, e->cfg.kv_lora_rank, e->cfg.qk_rope_head_dim,
                               &e->kv), out_w);
    const int T = o->max_tokens_per_step, B = o->max_batch;
    if (o->mtp_drafts < 0 || o->mtp_drafts > PROTO_MAX_DRAFT) {
        st = MS_ERR(MS_ERR_INVALID, "engine: %d MTP draft tokens per step (1..%d, or 0 for off)", o->mtp_drafts,
                    PROTO_MAX_DRAFT);
        goto out_kv;
    }
    /* sampled rows per step: one per sequence, or every fed row of a sequence verifying drafts */
    const int B_rows = sizing_sample_rows(B, T, o->mtp_drafts);
    /* shared prefix blocks can appear in many tables of a step (sizing.h) */
    const int blk_max = sizing_blk_max(o->kv_blocks, o->block_size, B, o->max_seq_len);
    /* per-rank sizing: one arithmetic with plan-memory (worker/sizing.h) */
    if (o->max_naive_ctx <= 0) o->max_naive_ctx = sizing_naive_ctx((int64_t)o->kv_blocks * o->block_size, T);
    MS_TRY_GOTO(st, fwd_create(&e->f, &e->cfg, par, e->k, e->cx, comm, &e->w, &e->kv, &e->pl, T, B_rows,
                               o->max_naive_ctx, blk_max, o->moe_max_num_tokens), out_kv);
    e->f.dense_fp8 = o->dense_fp8;
    if (o->mtp_drafts > 0) {
        MS_TRY_GOTO(st, mtp_create(&e->mtp, &e->f, e->ck, o->mtp_drafts, B, o->num_slots, o->kv_blocks,
                                   o->block_size, o->kv_fp8 ? MS_DT_F8E4M3 : MS_DT_BF16), out_fwd);
        /* the module's routed experts compute as the main model's do (the dequant mode costs ~80 ms a layer
         * on an H200 at R1's 256 experts: BENCHMARKS.md "MoE compute modes") */
        e->mtp.m.w.layers[0].experts.mode = o->moe_fp8 ? KERN_MOE_FP8 : KERN_MOE_DEQUANT;
    }
    e->blk_off = malloc(sizeof(int) * B), e->sample_of_seq = malloc(sizeof(int) * B);
    e->path = malloc(sizeof(int) * B), e->row0 = malloc(sizeof(int) * B), e->mine = malloc(sizeof(bool) * B);
    e->no_drafts = malloc(sizeof(bool) * B);
    e->entry_of_seq = malloc(sizeof(int) * B), e->seq_fault = calloc((size_t)B, sizeof(uint32_t));
    e->draft_of_seq = malloc(sizeof(int) * B);
    e->inject_slot = -1;
    e->plp_rows = malloc(sizeof *e->plp_rows * (size_t)T), e->plp = malloc(sizeof *e->plp * (size_t)T);
    e->plp_off = calloc((size_t)B, sizeof(int)), e->plp_n = calloc((size_t)B, sizeof(int));
    e->last_tok = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < 2; i++) e->pend[i].res = malloc(sizeof(proto_result_t) * (size_t)B);
    if (!e->blk_off || !e->sample_of_seq || !e->path || !e->row0 || !e->mine || !e->no_drafts || !e->entry_of_seq ||
        !e->seq_fault || !e->draft_of_seq || !e->plp_rows || !e->plp || !e->plp_off || !e->plp_n || !e->last_tok ||
        !e->pend[0].res || !e->pend[1].res) {
        st = MS_ERR(MS_ERR_NOMEM, "engine: out of memory");
        goto out_host;
    }
    for (int i = 0; i < B; i++) e->last_tok[i] = -1;
    {   /* a sequence is at most max_seq_len long, and never longer than the whole pool */
        int64_t pool = (int64_t)o->kv_blocks * o->block_size;
        int msl = o->max_seq_len > 0 && o->max_seq_len < pool ? o->max_seq_len : (int)(pool < INT32_MAX ? pool : INT32_MAX);
        MS_TRY_GOTO(st, pen_create(e->k, B, msl, e->cfg.vocab_size, &e->pen), out_host);
    }
    MS_TRY_GOTO(st, e->k->host_alloc(e->f.io_bytes, &e->stage), out_host);
    MS_TRY_GOTO(st, engine_graphs(e), out_host);
    MS_INFO("engine: %s, %d layers, KV cache %d blocks x %d tokens, %s rows of %d bytes (%.1f MiB)", model_dir,
            e->cfg.num_hidden_layers, o->kv_blocks, o->block_size, o->kv_fp8 ? "fp8" : "bf16", e->kv.row_bytes,
            (double)e->kv.layer_bytes * e->kv.n_layers / (1 << 20));
    *out = e;
    return MS_OK;
out_host:
    engine_free_host(e);
    mtp_destroy(&e->mtp, e->k);
out_fwd:
    fwd_destroy(&e->f);
out_kv:
    kvc_destroy(&e->kv);
out_w:
    weights_free(&e->w);
out_pl:
    placement_free(&e->pl);
out_ck:
    ckpt_close(e->ck);
out_stream:
    e->k->ctx_destroy(e->cx);
out_e:
    free(e);
    return st;
}

void engine_destroy(engine_t *e)
{
    if (!e) return;
    engine_free_host(e);
    mtp_destroy(&e->mtp, e->k);
    fwd_destroy(&e->f);
    kvc_destroy(&e->kv);
    weights_free(&e->w);
    placement_free(&e->pl);
    ckpt_close(e->ck);
    e->k->ctx_destroy(e->cx);
    free(e);
}

ms_status_t engine_expert_load(engine_t *e, int64_t *out)
{
    const size_t n = (size_t)e->cfg.num_hidden_layers * (size_t)e->cfg.n_routed_experts;
    if (!n) return MS_OK;
    MS_TRY(e->k->download(e->cx, out, e->f.load, sizeof(int64_t) * n));
    return e->k->synchronize(e->cx);
}

void engine_inject_fault(engine_t *e, uint32_t bits) { e->inject_fault |= bits; }

void engine_inject_seq_fault(engine_t *e, int slot, int kind) { e->inject_slot = slot, e->inject_kind = kind; }

static ms_status_t step_launch(engine_t *e, const proto_plan_t *p);
static ms_status_t step_complete(engine_t *e, const proto_plan_t *p, proto_result_t *res);

/* A completed step's results were read (a data fault leaves every token -1). */
static bool pend_has_results(ms_status_t st) { return st == MS_OK || st == MS_ERR_DATA; }

/* Complete the launched step, if one is not yet: synchronize and read its results into its pend entry
 * (its status there), and remember each sampled slot's token for FEED_LAST. */
static void pend_complete(engine_t *e)
{
    if (e->pend_n == 0) return;
    int k = (e->pend_first + e->pend_n - 1) % 2; /* only the newest can be incomplete */
    if (e->pend[k].done) return;
    const proto_plan_t *p = (const proto_plan_t *)e->pend[k].plan;
    if (e->pend[k].st == MS_OK) e->pend[k].st = step_complete(e, p, e->pend[k].res);
    e->pend[k].done = true;
    const proto_seq_t *sq = proto_plan_seqs(p);
    for (int i = 0; i < p->n_seqs; i++) {
        if (!engine_seq_is_mine(e, &sq[i]) || sq[i].slot < 0 || sq[i].slot >= e->opts.max_batch) continue;
        /* a failed step leaves no token: a FEED_LAST after it feeds 0 (engine_step_launch) */
        e->last_tok[sq[i].slot] = pend_has_results(e->pend[k].st) ? e->pend[k].res[i].token : -1;
    }
}

ms_status_t engine_step_launch(engine_t *e, const proto_plan_t *plan)
{
    if (e->pend_n == 2)
        return MS_ERR(MS_ERR_INTERNAL, "engine: two steps already in flight (engine_step_wait first)");
    pend_complete(e);
    if (e->pend_n == 1) {
        ms_status_t prev = e->pend[e->pend_first].st;
        /* the step before failed part-way: nothing can follow it (the caller aborts the job) */
        if (prev != MS_OK && prev != MS_ERR_INVALID && prev != MS_ERR_DATA) return prev;
    }
    const int k = (e->pend_first + e->pend_n) % 2;
    e->pend[k].done = false;
    e->pend_n++;
    ms_status_t st = engine_plan_check(e, plan);
    proto_plan_t *p = NULL;
    if (st == MS_OK) {
        /* the engine's own copy: the caller's buffer may be reused before engine_step_wait */
        size_t n = proto_plan_size(plan->n_seqs, plan->n_tokens, plan->n_blocks, plan->n_bias);
        if (n > e->pend[k].cap) {
            uint8_t *b = realloc(e->pend[k].plan, n);
            if (!b) st = MS_ERR(MS_ERR_NOMEM, "engine: out of memory for a %zu-byte plan", n);
            else e->pend[k].plan = b, e->pend[k].cap = n;
        }
        if (st == MS_OK) {
            memcpy(e->pend[k].plan, plan, n);
            p = (proto_plan_t *)e->pend[k].plan;
            p->hdr.length = (uint32_t)n;
        }
    }
    if (st == MS_OK) {
        /* FEED_LAST: the token this rank sampled for the slot last step (complete: pend_complete ran). Every
         * rank that runs the row has the same one: under attention DP only the owner runs it; under TP
         * every rank samples every sequence from bit-identical logits (the TP all-reduce sums in rank
         * order on every rank, worker/comm_mpi.c; the sampler's stream is f(seed, position)). A slot whose
         * last step failed has no token: 0 stands in, and rank 0 drops the row's result, because it ends
         * every sequence whose previous step failed. On a GPU with the steps really overlapped this is a
         * device-side copy from the previous step's token buffer (f.tok) into this step's ids, ordered on
         * the stream (and a captured graph reads it the same way); the CPU does it on the host. */
        const proto_seq_t *sq = proto_plan_seqs(p);
        int32_t *tok = (int32_t *)proto_plan_tokens(p);
        for (int i = 0; i < p->n_seqs; i++)
            if ((sq[i].flags & PROTO_SEQ_FEED_LAST) && engine_seq_is_mine(e, &sq[i]) && sq[i].slot >= 0 &&
                sq[i].slot < e->opts.max_batch) {
                int32_t t = e->last_tok[sq[i].slot];
                tok[sq[i].tok_off] = t >= 0 && t < e->cfg.vocab_size ? t : 0;
            }
        for (int i = 0; i < p->n_seqs; i++) {
            e->mine[i] = engine_seq_is_mine(e, &sq[i]);
            e->seq_fault[i] = 0;
            if (!e->mine[i] || engine_seq_check(e, p, i) == MS_OK) continue;
            /* this entry alone is bad: the step runs without it, its slot keeps nothing of it */
            MS_WARN("engine: step %u: plan seq %d (slot %d) left out: %s", p->hdr.step, i, sq[i].slot, ms_error_last());
            e->seq_fault[i] = PROTO_FAULT_PLAN;
            e->mine[i] = false;
            pen_drop(e->pen, sq[i].slot);
        }
        st = pen_prepare(e->pen, p, e->mine, e->opts.max_tokens_per_step);
    }
    if (st == MS_OK) st = step_launch(e, p);
    else if (e->par.ep_size > 1 || e->par.tp_size > 1) {
        /* Each attention-DP rank checks only its own part: one whose part is bad
         * still takes part in the step's collectives with no tokens, so the other
         * ranks finish theirs; the caller ends the bad part's requests. */
        proto_plan_t empty = {.hdr = plan->hdr};
        empty.hdr.length = sizeof empty;
        ms_status_t st2 = step_launch(e, &empty);
        if (st2 == MS_OK) st2 = step_complete(e, &empty, e->pend[k].res);
        if (st2 != MS_OK) st = st2; /* failed part-way: not survivable */
    }
    if (st != MS_OK) {
        /* nothing to complete: the status is the step's, reported by engine_step_wait too; its slots have
         * no token for a FEED_LAST */
        if (p) {
            const proto_seq_t *sq = proto_plan_seqs(p);
            for (int i = 0; i < p->n_seqs; i++) {
                e->pend[k].res[i] = (proto_result_t){.slot = sq[i].slot, .token = -1};
                if (engine_seq_is_mine(e, &sq[i]) && sq[i].slot >= 0 && sq[i].slot < e->opts.max_batch)
                    e->last_tok[sq[i].slot] = -1;
            }
        } else {
            if (e->pend[k].cap < sizeof(proto_plan_t)) {
                uint8_t *b = realloc(e->pend[k].plan, sizeof(proto_plan_t));
                if (b) e->pend[k].plan = b, e->pend[k].cap = sizeof(proto_plan_t);
            }
            if (e->pend[k].cap >= sizeof(proto_plan_t)) {
                proto_plan_t empty = {.hdr = plan->hdr};
                memcpy(e->pend[k].plan, &empty, sizeof empty);
            } else {
                e->pend_n--; /* no memory even for that: report it now */
                return st;
            }
        }
        e->pend[k].done = true;
    }
    e->pend[k].st = st;
    return st;
}

ms_status_t engine_step_wait(engine_t *e, proto_result_t *res)
{
    if (e->pend_n == 0) return MS_ERR(MS_ERR_INTERNAL, "engine: no step in flight to wait for");
    const int k = e->pend_first;
    if (!e->pend[k].done) pend_complete(e);
    e->pend_first = (k + 1) % 2;
    e->pend_n--;
    const proto_plan_t *p = (const proto_plan_t *)e->pend[k].plan;
    if (pend_has_results(e->pend[k].st)) memcpy(res, e->pend[k].res, sizeof *res * (size_t)p->n_seqs);
    return e->pend[k].st;
}

ms_status_t engine_step(engine_t *e, const proto_plan_t *p, proto_result_t *res)
{
    const int n0 = e->pend_n;
    ms_status_t st = engine_step_launch(e, p);
    if (e->pend_n == n0) return st; /* nothing was launched */
    return engine_step_wait(e, res);
}

/* The prompt logprobs of this rank's PROTO_SEQ_PROMPT_LP entries (after the step's results were read from
 * the staging block, which plp_run reuses). Rows are those of step_launch (row0). A failed entry (seq_fault)
 * gets its rows as placeholders (token -1), so every entry has proto_seq_plp_rows of them in plan order,
 * which is what proto_gather_results and rank 0 count on. */
static ms_status_t step_prompt_lp(engine_t *e, const proto_plan_t *p)
{
    const proto_seq_t *sq = proto_plan_seqs(p);
    const int32_t *tok = proto_plan_tokens(p);
    int n = 0, n_real = 0;
    for (int i = 0; i < p->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        e->plp_off[i] = n, e->plp_n[i] = 0;
        e->n_seqs_done = i + 1;
        if ((e->row0[i] < 0 && !e->seq_fault[i]) || !(q->flags & PROTO_SEQ_PROMPT_LP)) continue;
        const int nr = proto_seq_plp_rows(q);
        e->plp_n[i] = nr;
        n += nr;
        if (e->seq_fault[i]) continue;
        for (int t = 0; t < nr; t++)
            e->plp_rows[n_real + t] = (plp_row_t){.row = e->row0[i] + t,
                                                  .target = t + 1 < q->n_tokens ? tok[q->tok_off + t + 1]
                                                                                : q->next_token,
                                                  .n_top = q->n_logprobs < 0 ? 0 : q->n_logprobs};
        n_real += nr;
    }
    if (n_real) MS_TRY(plp_run(&e->f, e->stage, e->plp_rows, n_real, e->plp));
    if (n_real == n) return MS_OK;
    /* spread the computed rows to their entries' places, last first (a place is never before its row) */
    for (int i = p->n_seqs - 1, src = n_real; i >= 0; i--) {
        if (!e->plp_n[i]) continue;
        proto_plp_t *dst = e->plp + e->plp_off[i];
        if (!e->seq_fault[i]) {
            src -= e->plp_n[i];
            memmove(dst, e->plp + src, sizeof *dst * (size_t)e->plp_n[i]);
            continue;
        }
        for (int t = 0; t < e->plp_n[i]; t++) dst[t] = (proto_plp_t){.token = -1};
    }
    return MS_OK;
}

/* Fill the staging block, upload it, run the forward pass and queue the download (no synchronize). */
static ms_status_t step_launch(engine_t *e, const proto_plan_t *p)
{
    const kern_ops_t *k = e->k;
    fwd_t *f = &e->f;
    const proto_seq_t *sq = proto_plan_seqs(p);
    const int32_t *tok = proto_plan_tokens(p), *blk = proto_plan_blocks(p);
    const int bs = e->opts.block_size;
    fwd_step_t st = {0};

    /* Pass 1: which seqs are mine, their MLA path and the step's counts (the
     * I/O block's offsets depend on them). Naive seqs go first in the
     * descriptor array, absorbed after. */
    int S = 0, *path = e->path, *row0 = e->row0;
    int ns = 0, T = 0, nsample = 0, nblk = 0, n_d = 0;
    /* a graphed decode step: every sequence of mine is one sampled row, or with MTP verifies N drafts and
     * drafts N more (W = N + 1 rows: the shape rank 0 plans once drafting runs) */
    const int N = e->mtp.N, W = N ? N + 1 : 1;
    const unsigned spec = PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT;
    bool decode = true;
    for (int i = 0; i < p->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        path[i] = 0;
        row0[i] = -1;
        e->sample_of_seq[i] = e->entry_of_seq[i] = -1;
        if (!e->mine[i]) continue; /* another DP rank's, or left out by seq_check */
        int len = q->pos + q->n_tokens;
        /* a VERIFY seq's rows are decode rows (the last token and its drafts): the decode path, so each row
         * rounds exactly as a plain decode of its position would */
        bool naive = e->opts.mla == ENGINE_MLA_NAIVE ||
                     (e->opts.mla == ENGINE_MLA_AUTO && q->n_tokens > 1 && !(q->flags & PROTO_SEQ_VERIFY));
        if (naive && S + len > f->S_max) {
            if (e->opts.mla == ENGINE_MLA_NAIVE)
                return MS_ERR(MS_ERR_INVALID, "engine: naive MLA needs %d gathered rows, max_naive_ctx is %d", S + len,
                              f->S_max);
            naive = false;
        }
        if (naive) S += len;
        path[i] = naive ? 1 : 0;
        row0[i] = T;
        T += q->n_tokens;
        nblk += q->n_blocks;
        ns++;
        if (q->flags & PROTO_SEQ_SAMPLE) {
            e->sample_of_seq[i] = nsample;
            nsample += (q->flags & PROTO_SEQ_VERIFY) ? q->n_tokens : 1;
            if (N && (q->flags & spec)) e->entry_of_seq[i] = n_d++;
        }
        decode = decode && q->n_tokens == W && !naive && (q->flags & PROTO_SEQ_SAMPLE) &&
                 (q->flags & spec) == (N ? spec : 0u) && !(q->flags & PROTO_SEQ_PROMPT_LP) && !proto_seq_adjusts(q);
    }
    if (nblk > f->blk_max)
        return MS_ERR(MS_ERR_INVALID, "engine: this rank's sequences have %d block-table entries (max %d)", nblk,
                      f->blk_max);
    /* a decode-only step at a captured size G >= ns lays its metadata out for G rows (step_graph.h) */
    const int gi = decode && ns > 0 ? sgraph_pick(&e->gr, ns) : -1, G = gi >= 0 ? e->gr.sizes[gi] : 0;
    step_io_layout_t L;
    step_io_layout(&L, gi >= 0 ? G * W : T, gi >= 0 ? G : ns, gi >= 0 ? G * W : nsample, nblk);
    mtp_step_t *ms = &e->cur_ms;
    if (N) mtp_step_begin(&e->mtp, gi >= 0 ? G * W : T, gi >= 0 ? G : n_d, ms);
    char *h = e->stage, *d = f->io;
    int32_t *ids = (int32_t *)(h + L.ids), *pos = (int32_t *)(h + L.pos), *slots = (int32_t *)(h + L.slots);
    int32_t *last_row = (int32_t *)(h + L.last_row), *blocks = (int32_t *)(h + L.blocks);
    kern_sample_t *sp = (kern_sample_t *)(h + L.sp);
    kern_adjust_t *adj = (kern_adjust_t *)(h + L.adj);
    kern_attn_seq_t *seqs = (kern_attn_seq_t *)(h + L.seqs);
    uint32_t *fault = (uint32_t *)(h + L.fault);

    /* Pass 2: fill the staging block. Token rows follow plan order over my
     * seqs; block tables are copied for my seqs only and rebased. */
    int *blk_off = e->blk_off;
    nblk = 0;
    for (int i = 0; i < p->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        if (row0[i] < 0) continue;
        const int r0 = row0[i];
        blk_off[i] = nblk;
        memcpy(blocks + nblk, blk + q->blk_off, sizeof(int32_t) * (size_t)q->n_blocks);
        nblk += q->n_blocks;
        for (int t = 0; t < q->n_tokens; t++) {
            int ps = q->pos + t;
            ids[r0 + t] = tok[q->tok_off + t];
            pos[r0 + t] = ps;
            slots[r0 + t] = blk[q->blk_off + ps / bs] * bs + ps % bs;
        }
        if (q->slot == e->inject_slot && e->inject_kind == ENGINE_INJECT_TOKEN)
            ids[r0] = e->cfg.vocab_size; /* the hook: a bad id past the plan check, as a bug would make */
        pen_seq(e->pen, q, tok + q->tok_off, proto_plan_bias(p) + q->bias_off);
        int j = e->sample_of_seq[i];
        const bool verify = (q->flags & PROTO_SEQ_VERIFY) != 0;
        if (N) {
            /* MTP pass 1's token after each row: the next fed one, else what was sampled there (a VERIFY
             * row's sample equals the next draft wherever that draft was accepted). The last row of a prompt
             * chunk that samples nothing has no known successor yet: its own token stands in, so the
             * module's cache entry at a chunk boundary is approximate (drafts only; verification keeps the
             * output exact). */
            for (int t = 0; t < q->n_tokens; t++)
                ms->next_src[r0 + t] = verify ? -2 - (j + t) : t + 1 < q->n_tokens ? r0 + t + 1 : j >= 0 ? -2 - j
                                                                                                 : r0 + t;
            if (e->entry_of_seq[i] >= 0)
                ms->seqs[e->entry_of_seq[i]] = (kern_draft_t){
                    .r0 = r0, .j = j, .n_verify = verify ? q->n_tokens - 1 : 0, .last = q->n_tokens - 1,
                    .pos = q->pos, .blk_off = blk_off[i], .cover = q->n_blocks * bs};
        }
        if (j < 0) continue;
        /* VERIFY: every row is sampled with the knobs and random stream (seed, position) a plain decode of
         * that position would use, so the accepted tokens are the ones decoding without drafts samples */
        const int nr = (q->flags & PROTO_SEQ_VERIFY) ? q->n_tokens : 1;
        for (int u = 0; u < nr; u++) {
            const int t = q->n_tokens - nr + u;
            last_row[j + u] = r0 + t;
            sp[j + u] = (kern_sample_t){
                .temperature = q->temperature,
                .top_p = q->top_p,
                .top_k = q->top_k,
                .n_logprobs = q->n_logprobs < 0 ? 0 : q->n_logprobs,
                .seed = q->seed,
                .position = q->pos + t + 1,
                .mask_token = (q->flags & PROTO_SEQ_MASK_EOS) ? e->cfg.eos_token_id : -1,
            };
            adj[j + u] = pen_row(e->pen, q, sp[j + u].temperature, sp[j + u].mask_token);
        }
        st.adjust |= proto_seq_adjusts(q) || adj[j].n_list > 0;
    }
    int kv_off = 0, k_seq = 0;
    for (int pass = 1; pass >= 0; pass--)
        for (int i = 0; i < p->n_seqs; i++) {
            const proto_seq_t *q = &sq[i];
            if (row0[i] < 0 || path[i] != pass) continue;
            seqs[k_seq++] = (kern_attn_seq_t){.q_off = row0[i], .n_q = q->n_tokens, .pos0 = q->pos,
                                              .kv_off = pass ? kv_off : 0, .blk_off = blk_off[i]};
            if (pass) kv_off += q->pos + q->n_tokens, st.n_naive++;
            else st.n_abs++;
        }
    *fault = e->inject_fault;
    e->inject_fault = 0;
    for (int i = 0; i < p->n_seqs && e->inject_kind == ENGINE_INJECT_FAULT; i++)
        if (row0[i] >= 0 && sq[i].slot == e->inject_slot) *fault |= ENGINE_FAULT_INJECTED_SEQ;
    e->n_sample_last = nsample;
    e->n_seqs_last = p->n_seqs;
    for (int i = 0; i < p->n_seqs; i++)
        e->draft_of_seq[i] = (sq[i].flags & PROTO_SEQ_DRAFT) && e->mine[i] ? e->entry_of_seq[i] : -1;
    if (gi >= 0) { /* sequences ns .. G-1 (their rows, sampled rows and MTP entries) are padding */
        sgraph_pad(h, &L, ns, G, W);
        if (N) mtp_pad(ms, ns * W, G * W, ns, G);
        st.padded = G > ns, st.n_abs = G;
        e->graph_steps++, e->graph_pad_rows += (G - ns) * W;
        T = nsample = G * W;
        n_d = G;
    }
    st.T = T, st.S_naive = S, st.n_sample = nsample;

    e->cur_L = L;
    e->cur_adjusted = st.adjust; /* a graph step never adjusts (below) */
    e->cur_inject_slot = e->inject_slot;
    e->inject_slot = -1; /* the hook is for one step */
    e->cur_ran = T > 0 || e->par.ep_size > 1 || e->par.tp_size > 1;
    if (e->cur_ran) {
        fwd_point_io(f, &L);
        MS_TRY(k->upload(e->cx, d + L.fault, h + L.fault, step_io_ul_bytes(&L)));
        if (N) MS_TRY(mtp_upload(&e->mtp, f, ms));
        /* penalty-list writes: a second upload, only in steps of penalized sequences */
        MS_TRY(pen_flush(e->pen, e->cx, &st.sets, &st.n_sets, &st.lists, &st.lists_cap));
        /* the graph has no logits_adjust: a step that adjusts runs the same padded rows eagerly (so does one
         * with the MTP hook, which writes between the passes) */
        const bool nan_hook = N && e->inject_kind == ENGINE_INJECT_MTP_NAN && e->cur_inject_slot >= 0;
        if (gi >= 0 && e->gr.graph[gi] && !st.adjust && st.n_sets == 0 && !nan_hook) {
            MS_TRY(k->graph_launch(e->cx, e->gr.graph[gi]));
        } else {
            MS_TRY(fwd_run(f, &st));
            for (int i = 0; nan_hook && i < p->n_seqs; i++) /* the hook: the module's input rows of one entry */
                if (row0[i] >= 0 && sq[i].slot == e->cur_inject_slot)
                    MS_TRY(k->memset(e->cx, f->xn + (size_t)row0[i] * (size_t)f->D, 0xff,
                                     sizeof(bf16_t) * (size_t)f->D * (size_t)sq[i].n_tokens));
            /* the drafts of the step (every step with MTP: pass 1 fills the module's cache for every row) */
            if (N) MS_TRY(mtp_run(&e->mtp, f, &st, n_d));
        }
        MS_TRY(k->download(e->cx, h, d, step_io_dl_bytes(&L)));
        if (N) MS_TRY(mtp_download(&e->mtp, f));
    }
    return MS_OK;
}

/* Synchronize the launched step (step_launch of p) and read its results. */
static ms_status_t step_complete(engine_t *e, const proto_plan_t *p, proto_result_t *res)
{
    const step_io_layout_t L = e->cur_L;
    const proto_seq_t *sq = proto_plan_seqs(p);
    char *h = e->stage;
    const kern_sample_t *sp = (const kern_sample_t *)(h + L.sp);
    const mtp_step_t *ms = &e->cur_ms;
    uint32_t faults = 0, mtp_faults = 0;
    e->n_seqs_done = 0;
    if (e->cur_ran) {
        MS_TRY(e->k->synchronize(e->cx));
        faults = *(const uint32_t *)(h + L.fault);
        if (e->mtp.N) mtp_faults = *ms->fault;
    }
    if (faults) faults = engine_step_attribute(e, p, &L, faults);
    /* The module's sampler gives a row it cannot draw from (a NaN or inf logit) token -1: such an entry's
     * drafts are dropped (verification keeps the output exact without them) and the fault is explained.
     * Padding entries draft from row 0, so they fail only with a real entry. */
    bool *no_drafts = e->no_drafts;
    for (int i = 0; i < p->n_seqs; i++) no_drafts[i] = false;
    if (mtp_faults & KERN_FAULT_LOGITS) {
        bool found = false;
        for (int i = 0; i < p->n_seqs; i++) {
            const int en = e->entry_of_seq[i];
            if (en < 0 || e->sample_of_seq[i] < 0) continue;
            for (int c = 0; c < e->mtp.N; c++)
                if (ms->drafts[(size_t)c * (size_t)ms->n_d + (size_t)en] < 0) no_drafts[i] = found = true;
        }
        if (found) {
            mtp_faults &= ~(uint32_t)KERN_FAULT_LOGITS;
            int nd = 0;
            for (int i = 0; i < p->n_seqs; i++) nd += no_drafts[i];
            MS_WARN("engine: step %u: the MTP module drew no draft for %d sequence%s (NaN/inf in its logits); %s on "
                    "without drafts", p->hdr.step, nd, nd > 1 ? "s" : "", nd > 1 ? "they go" : "it goes");
        }
    }
    const int32_t *h_tok = (const int32_t *)(h + L.tok), *h_top = (const int32_t *)(h + L.top_ids);
    const float *h_lp = (const float *)(h + L.lp), *h_toplp = (const float *)(h + L.top_lp);
    for (int i = 0; i < p->n_seqs; i++) {
        proto_result_t *r = &res[i];
        memset(r, 0, sizeof *r);
        r->slot = sq[i].slot;
        r->token = -1;
        r->fault = e->seq_fault[i];
        int j = e->sample_of_seq[i];
        const int en = e->entry_of_seq[i];
        if (j < 0 || faults || r->fault) continue;
        if (sq[i].flags & PROTO_SEQ_VERIFY) {
            /* mtp_prep accepted the longest prefix of drafts equal to the samples; the first sample that
             * differs (or the one after the last draft) is the step's last token */
            const int a = ms->acc[2 * en];
            if (a < 0 || a >= sq[i].n_tokens)
                return MS_ERR(MS_ERR_INTERNAL, "engine: step %u: %d drafts accepted of %d", p->hdr.step, a,
                              sq[i].n_tokens - 1);
            for (int u = 0; u < a; u++) r->accepted[u] = h_tok[j + u], r->accepted_lp[u] = h_lp[j + u];
            r->n_accepted = a;
            j += a;
        }
        if ((sq[i].flags & PROTO_SEQ_DRAFT) && !no_drafts[i]) {
            r->n_draft = ms->acc[2 * en + 1];
            for (int c = 0; c < r->n_draft; c++) r->drafts[c] = ms->drafts[(size_t)c * (size_t)ms->n_d + (size_t)en];
        }
        r->token = h_tok[j];
        r->logprob = h_lp[j];
        r->n_top = sp[j].n_logprobs;
        memcpy(r->top_ids, h_top + (size_t)j * KERN_MAX_LOGPROBS, sizeof(int32_t) * (size_t)r->n_top);
        memcpy(r->top_logprobs, h_toplp + (size_t)j * KERN_MAX_LOGPROBS, sizeof(float) * (size_t)r->n_top);
    }
    /* the module's faults are not traced to sequences: they fail the step */
    if (!faults) faults = mtp_faults;
    if (!faults) MS_TRY(step_prompt_lp(e, p));
    if (faults) {
        /* Every collective of the step completed (faulty rows were padding),
         * so the ranks stay in step: only this step's requests end. */
        char what[256];
        engine_fault_describe(faults, what, sizeof what);
        e->n_sample_last = 0;
        return MS_ERR(MS_ERR_DATA, "engine: data fault in step %u (%s)", p->hdr.step, what);
    }
    return MS_OK;
}

/* One row of bf16 head output to fp32 on the host (exact: what the sampler read). The bf16 values go into
 * the top half of out and are widened upward, so no scratch is needed. */
static ms_status_t logits_bf16_download(engine_t *e, const bf16_t *row, float *out)
{
    const size_t V = (size_t)e->cfg.vocab_size;
    bf16_t *h = (bf16_t *)out + V;
    MS_TRY(e->k->download(e->cx, h, row, sizeof(bf16_t) * V));
    MS_TRY(e->k->synchronize(e->cx));
    for (size_t i = 0; i < V; i++) out[i] = bf16_to_f32(h[i]);
    return MS_OK;
}

ms_status_t engine_logits(engine_t *e, int seq_index, float *out)
{
    if (seq_index < 0 || seq_index >= e->n_seqs_last || e->sample_of_seq[seq_index] < 0 ||
        e->sample_of_seq[seq_index] >= e->n_sample_last)
        return MS_ERR(MS_ERR_NOT_FOUND, "engine: plan sequence %d was not sampled in the last step", seq_index);
    const size_t V = (size_t)e->cfg.vocab_size, r = (size_t)e->sample_of_seq[seq_index];
    if (e->cur_adjusted) {
        MS_TRY(e->k->download(e->cx, out, e->f.logits + r * V, sizeof(float) * V));
        return e->k->synchronize(e->cx);
    }
    return logits_bf16_download(e, e->f.lg16 + r * V, out);
}

ms_status_t engine_mtp_logits(engine_t *e, int seq_index, float *out)
{
    if (seq_index < 0 || seq_index >= e->n_seqs_last || e->draft_of_seq[seq_index] < 0)
        return MS_ERR(MS_ERR_NOT_FOUND, "engine: plan sequence %d drafted nothing in the last step", seq_index);
    return logits_bf16_download(e, e->mtp.lg16 + (size_t)e->draft_of_seq[seq_index] * (size_t)e->cfg.vocab_size, out);
}

void engine_graph_stats(const engine_t *e, int *n_graphs, long *steps, long *pad_rows)
{
    *n_graphs = e->gr.n, *steps = e->graph_steps, *pad_rows = e->graph_pad_rows;
}

const proto_plp_t *engine_prompt_lp(const engine_t *e, int seq_index, int *n)
{
    *n = 0;
    if (seq_index < 0 || seq_index >= e->n_seqs_done) return NULL;
    *n = e->plp_n[seq_index];
    return e->plp + e->plp_off[seq_index];
}
