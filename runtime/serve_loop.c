/* serve_loop.c — the engine loops of `moeserve serve`.
 *
 * Rank 0 (its main thread, the only thread that calls MPI):
 *   take new requests (coord) -> reap sequences the output thread finished
 *   -> drop cancelled ones -> sched_step -> plan -> each rank its part ->
 *   engine_step -> gather sampled tokens (and prompt logprobs) -> append
 *   (length limits at once) ->
 *   hand the tokens to the output thread (serve_output.c: detokenize, stop
 *   checks, chunks to the gateway, while the next step runs) -> gauges.
 *   With nothing to do it sleeps on the coord condition variable (woken by a
 *   submit, a cancel or a stop) while the workers sleep in proto_recv.
 * Workers: receive a plan, engine_step, send results; until SHUTDOWN.
 *
 * Overlap scheduling (TensorRT-LLM's overlap scheduler; `disable_overlap_scheduler: true` turns it
 * off): rank 0 plans step N+1 while step N runs. Per iteration, with N in flight:
 *   sched_assume (every sequence N samples continues: positions +1, a placeholder token) ->
 *   sched_step N+1 -> send N+1 -> launch N+1 -> wait N -> gather N -> emit N.
 * Every rank does launch N+1, then wait + gather N (the plan's PROTO_PLAN_SYNC flag, set by rank 0,
 * says when a step is instead waited for right after its launch), so the control-plane collectives
 * (scatter N+1, gather N, scatter N+2, ...) and the data-plane ones inside each launch come in the same
 * order on every rank. A decode of N+1 feeds the token sampled in N through PROTO_SEQ_FEED_LAST: each
 * rank takes its own copy (worker/engine.c says why they agree). What overlaps on a GPU rank: rank 0's
 * scheduling of N+1 and the plan's scatter run while the device runs N; the device then waits only for
 * N+1's host-side fill, because the engine completes N (synchronize, read its tokens on the host) before
 * it queues N+1. A device-side FEED_LAST copy and a second staging block would remove that gap too
 * (worker/engine.c). On the CPU backend a launch does the whole step, so nothing overlaps there.
 *
 * So stop conditions take effect one step late: a sequence that N's token finishes (EOS, a stop token
 * or string, a cancellation) still runs in N+1; its N+1 result is dropped (its seqs[] entry is NULL
 * once it ended: end_seq clears it in the step in flight too) and never reaches a client. Its slot and
 * KV blocks go back to the scheduler when it ends, while N+1 may still write them: harmless, because
 * whatever reuses them runs in a later step, which every rank runs after N+1. max_tokens and the length
 * limit are known by count, so such a sequence is not planned again (sched_assume). The output
 * thread's stop strings were one step late already (serve_out_wait below): the same bound holds.
 * Blocks are published for prefix reuse only after the step that filled them succeeded
 * (sched_confirm), with every token value known.
 *
 * Serial fallback, per step (PROTO_PLAN_SYNC; the next plan then waits for its results): MTP
 * (verification lengths depend on acceptance: every step), steps with prompt-logprob entries (the
 * engine holds one step's prompt logprobs), online EPLB weight moves (a placement flip between steps
 * must not race a step in flight), and `disable_overlap_scheduler: true` (every step). A step after a
 * sampling prefill chunk is planned ahead like any other: its decode feeds FEED_LAST too.
 *
 * Failures: a step that fails before computing anything (engine_step's
 * MS_ERR_INVALID, identical on every rank since every rank checks the same
 * plan) ends that step's requests with REQ_FINISH_ERROR and the server goes
 * on. So does a step that ran in full on every rank but raised a data fault
 * (engine_step's MS_ERR_DATA: the device fault word came back nonzero and
 * no sequence explains it). A fault a rank traces to one sequence (a bad plan
 * entry, a bad token id or cache row in its rows: proto_result_t.fault) ends
 * that sequence only, with an error naming the cause; the step's other
 * sequences get their tokens (end_faulty). A
 * step that fails half-way on one rank of several leaves the others
 * inside a data-plane collective that can never complete, so that rank aborts
 * the whole job (MPI_Abort) with a message naming it: never a silent hang. */
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/output.h"
#include "proto/proto.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fatal_step(const serve_ctx_t *sc, ms_status_t st)
{
    (void)MS_ERR(st, "rank %d: a step failed part-way (%s: %s); the other ranks cannot finish it, aborting the job",
           sc->rank, ms_status_str(st), ms_error_last());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Test hook: MOESERVE_FAULT_STEP=N makes step N fail on every rank with a
 * data fault: the engine's device fault word starts nonzero, the step runs in
 * full and its results come back with the fault, exactly as when an op meets
 * a bad token or slot id (integration tests check the 5xx and that serving
 * goes on). */
/* Test hook: MOESERVE_FAULT_SEQ=KIND:N:R makes one sequence of step N fail
 * alone: the first entry of the step whose result rank R owns (attention DP:
 * one of rank R's sequences; TP: R = 0). KIND "fault": its rows raise a data
 * fault on every rank that runs it (engine ENGINE_INJECT_FAULT); "token": its
 * first row is fed a token id outside the vocabulary after the plan check,
 * so the embedding op faults (ENGINE_INJECT_TOKEN); "mtpnan" (MTP on): its
 * draft passes' input rows are NaN, so the module draws no draft for it and
 * it goes on without (ENGINE_INJECT_MTP_NAN: nothing fails); "plan": rank 0 writes
 * that id into the entry before sending the plan, as a scheduler bug would,
 * and the worker's plan check rejects the entry (seq_fault_plan). The step's
 * other sequences must go on unharmed (test_seq_faults.py). */
typedef struct {
    int kind; /* ENGINE_INJECT_*, SEQ_HOOK_PLAN, 0 = off */
    long step;
    int rank;
} seq_hook_t;
enum { SEQ_HOOK_PLAN = 16 }; /* not an engine kind: rank 0 acts on it */

static const seq_hook_t *seq_hook(void)
{
    static seq_hook_t h = {.kind = -1};
    if (h.kind >= 0) return &h;
    h.kind = 0;
    const char *v = getenv("MOESERVE_FAULT_SEQ");
    char kind[16];
    if (v && sscanf(v, "%15[a-z]:%ld:%d", kind, &h.step, &h.rank) == 3)
        h.kind = !strcmp(kind, "fault") ? ENGINE_INJECT_FAULT : !strcmp(kind, "token") ? ENGINE_INJECT_TOKEN
               : !strcmp(kind, "mtpnan") ? ENGINE_INJECT_MTP_NAN : !strcmp(kind, "plan") ? SEQ_HOOK_PLAN : 0;
    if (v && *v && !h.kind)
        MS_WARN("MOESERVE_FAULT_SEQ=%s is not KIND:STEP:RANK (KIND fault, token, mtpnan or plan): ignored", v);
    return &h;
}

/* The hook's entry of `plan` (a part or the full plan), or NULL. */
static const proto_seq_t *seq_hook_entry(const proto_plan_t *plan, int kind)
{
    const seq_hook_t *h = seq_hook();
    if (h->kind != kind || (long)plan->hdr.step != h->step) return NULL;
    const proto_seq_t *ps = proto_plan_seqs(plan);
    for (int i = 0; i < plan->n_seqs; i++)
        if (proto_seq_owner(&ps[i]) == h->rank) return &ps[i];
    return NULL;
}

/* Rank 0, the "plan" hook: the entry's first token becomes vocab_size before the plan goes out (a
 * FEED_LAST decode loses its flag, or the rank would feed its own token instead of the plan's). */
static void seq_fault_plan(serve_ctx_t *sc, const proto_plan_t *plan)
{
    const proto_seq_t *q = seq_hook_entry(plan, SEQ_HOOK_PLAN);
    if (!q) return;
    ((int32_t *)proto_plan_tokens(plan))[q->tok_off] = sc->vocab_size;
    ((proto_seq_t *)q)->flags &= ~(uint32_t)PROTO_SEQ_FEED_LAST;
}

static ms_status_t launch_or_fault(serve_ctx_t *sc, const proto_plan_t *plan)
{
    static long fault = -2;
    if (fault == -2) {
        const char *v = getenv("MOESERVE_FAULT_STEP");
        fault = v && *v ? strtol(v, NULL, 10) : -1;
    }
    if (fault >= 0 && (long)plan->hdr.step == fault) engine_inject_fault(sc->engine, ENGINE_FAULT_INJECTED);
    for (int kind = ENGINE_INJECT_FAULT; kind <= ENGINE_INJECT_MTP_NAN; kind++) {
        const proto_seq_t *q = seq_hook_entry(plan, kind);
        if (q) engine_inject_seq_fault(sc->engine, q->slot, kind);
    }
    return engine_step_launch(sc->engine, plan);
}

/* Rank 0 runs only its own part of the plan (proto_plan_part: attention DP
 * gives it its own sequences, TP all of them) and spreads the results back
 * to full-plan indices, which proto_gather_results reads. The engine copies
 * what it launches, so the part buffer serves the next step at once. */
static ms_status_t launch_rank0(serve_ctx_t *sc, const proto_plan_t *plan)
{
    static uint8_t *part;
    static size_t cap;
    size_t n = proto_plan_part(plan, 0, NULL);
    if (n == plan->hdr.length) return launch_or_fault(sc, plan); /* all of it */
    if (n > cap) {
        uint8_t *b = realloc(part, n);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for a %zu-byte plan", n);
        part = b, cap = n;
    }
    proto_plan_part(plan, 0, part);
    return launch_or_fault(sc, (const proto_plan_t *)part);
}

static ms_status_t wait_rank0(serve_ctx_t *sc, const proto_plan_t *plan, proto_result_t *res)
{
    static proto_result_t *pres;
    static int pres_cap;
    if (proto_plan_part(plan, 0, NULL) == plan->hdr.length) return engine_step_wait(sc->engine, res);
    if (plan->n_seqs > pres_cap) {
        proto_result_t *r = realloc(pres, sizeof *r * (size_t)plan->n_seqs);
        if (!r) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for results");
        pres = r, pres_cap = plan->n_seqs;
    }
    ms_status_t st = engine_step_wait(sc->engine, pres);
    if (st != MS_OK) return st;
    const proto_seq_t *ps = proto_plan_seqs(plan);
    for (int i = 0, k = 0; i < plan->n_seqs; i++)
        if (ps[i].dp_rank < 0 || ps[i].dp_rank == 0) res[i] = pres[k++];
    return MS_OK;
}

/* The prompt logprobs the engine computed in its last step, flat in plan
 * order over the n_seqs entries it ran (proto_gather_results' mine_plp);
 * NULL when there are none. The buffer grows to the largest step. */
static const proto_plp_t *plp_collect(serve_ctx_t *sc, int n_seqs)
{
    static proto_plp_t *buf;
    static size_t cap;
    size_t n = 0;
    for (int i = 0; i < n_seqs; i++) {
        int k = 0;
        const proto_plp_t *p = engine_prompt_lp(sc->engine, i, &k);
        if (k <= 0) continue;
        if (n + (size_t)k > cap) {
            size_t c = (n + (size_t)k) * 2;
            proto_plp_t *b = realloc(buf, sizeof *b * c);
            if (!b) return NULL; /* the entries go out with token -1: rank 0 ends the request */
            buf = b, cap = c;
        }
        memcpy(buf + n, p, sizeof *p * (size_t)k);
        n += (size_t)k;
    }
    return n ? buf : NULL;
}

/* A step failure is survivable when nothing was computed (MS_ERR_INVALID),
 * when the step completed on every rank with a data fault (MS_ERR_DATA), or
 * when there is nobody to wait for us. */
static bool step_failure_survivable(const serve_ctx_t *sc, ms_status_t st)
{
    return st == MS_OK || st == MS_ERR_INVALID || st == MS_ERR_DATA || sc->size == 1;
}

/* ---- rank 0 -------------------------------------------------------------- */

/* End a request that never reached the scheduler. */
static void end_unscheduled(coord_t *c, req_t *r, req_finish_t why, const char *msg)
{
    req_chunk_t *ch = calloc(1, sizeof *ch);
    if (ch) {
        ch->text = strdup("");
        ch->finish = why;
        if (msg) ch->error = strdup(msg);
        coord_push_chunk(c, r, ch);
    } else {
        MS_WARN("out of memory ending request %llu", (unsigned long long)r->id);
    }
    req_release(r);
}

/* A step rank 0 launched and has not finished: its full plan and sequences, copied, because the
 * scheduler's buffers hold the next plan by the time its results come. */
typedef struct {
    uint8_t *plan;
    size_t cap;
    sched_seq_t **seqs;  /* plan order; NULL once that sequence ended */
    int cap_seqs;
    bool live;
    bool assumed;        /* sched_assume advanced its sequences: sched_confirm instead of sched_commit */
    double t0;
} fly_t;
static fly_t g_fly[2]; /* rank 0's main thread: the step in flight and the one launched after it */
static uint64_t g_overlapped; /* steps planned while the previous one ran */

/* The scheduler lets go of q now; its output (the final chunk unless it
 * already finished, the out_seq, the request reference) ends on the output
 * thread, after every token handed over before. */
static void end_seq(serve_ctx_t *sc, sched_seq_t *q, req_finish_t why, const char *msg)
{
    out_seq_t *o = q->user;
    req_t *r = q->req;
    /* a step in flight that runs q: its result for q is dropped (one step late, never emitted) */
    for (int f = 0; f < 2; f++) {
        if (!g_fly[f].live) continue;
        const proto_plan_t *pl = (const proto_plan_t *)g_fly[f].plan;
        for (int i = 0; i < pl->n_seqs; i++)
            if (g_fly[f].seqs[i] == q) g_fly[f].seqs[i] = NULL;
    }
    sched_finish(sc->sched, q);
    serve_out_end(sc->out, o, r, why, msg);
}

/* Sequences the output thread finished (EOS, stop token, stop string): they
 * leave the scheduler here, one step after their last token at most. */
static void reap_finished(serve_ctx_t *sc)
{
    sched_seq_t *q = sched_first(sc->sched), *nx;
    for (; q; q = nx) {
        nx = sched_next(sc->sched, q);
        if (out_seq_finished(q->user)) end_seq(sc, q, REQ_FINISH_NONE, NULL);
    }
}

/* Length limits need no detokenizer: the scheduler applies them at once,
 * the same rule as output.c (which ends the request "length" with this
 * token), so a sequence never runs past max_tokens or the sequence limit. */
static bool length_reached(const serve_ctx_t *sc, const sched_seq_t *q)
{
    int max = q->req->params.max_tokens;
    return (max > 0 && q->n_tokens - q->n_prompt >= max) || q->n_tokens >= sched_seq_limit(sc->sched);
}

static void admit_new(serve_ctx_t *sc, uint64_t *seed_state)
{
    req_t *batch[64];
    int n;
    while ((n = coord_take_new(sc->coord, batch, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            req_t *r = batch[i];
            if (req_is_cancelled(r)) {
                end_unscheduled(sc->coord, r, REQ_FINISH_ABORT, NULL);
                continue;
            }
            out_ctx_t oc = {.tok = sc->tok, .eos_id = sc->eos_id, .seq_limit = sched_seq_limit(sc->sched)};
            out_seq_t *o = NULL;
            if (out_seq_create(&oc, r, &o) != MS_OK) {
                end_unscheduled(sc->coord, r, REQ_FINISH_ERROR, ms_error_last());
                continue;
            }
            uint64_t seed = r->params.has_seed ? r->params.seed : splitmix64(seed_state);
            sched_seq_t *q;
            if (sched_add(sc->sched, r, o, seed, &q) != MS_OK) {
                out_seq_end(o, sc->coord, REQ_FINISH_ERROR, ms_error_last());
                out_seq_destroy(o);
                req_release(r);
            }
        }
    }
}

static void drop_cancelled(serve_ctx_t *sc)
{
    sched_seq_t *q = sched_first(sc->sched), *nx;
    for (; q; q = nx) {
        nx = sched_next(sc->sched, q);
        if (req_is_cancelled(q->req)) end_seq(sc, q, REQ_FINISH_ABORT, NULL);
    }
}

static spec_stats_t g_spec; /* rank 0's main thread only */

static void publish(serve_ctx_t *sc, int batch, uint64_t steps)
{
    sched_stats_t ss;
    sched_stats(sc->sched, &ss);
    coord_stats_t cs = {
        .running = ss.running,
        .waiting = ss.waiting,
        .kv_blocks_used = ss.kv_blocks_used,
        .kv_blocks_free = ss.kv_blocks_free,
        .kv_bytes = (double)sc->kv_bytes,
        .kv_blocks_idle = ss.kv_blocks_idle,
        .prefix_query_tokens = ss.prefix_query_tokens,
        .prefix_hit_tokens = ss.prefix_hit_tokens,
        .last_batch_size = batch,
        .steps = steps,
        .steps_overlapped = g_overlapped,
        .ready = true,
        .spec = g_spec,
    };
    coord_stats_set(sc->coord, &cs);
}

/* Every sequence of the step ends with an error (5xx at the gateway). */
static void fail_step(serve_ctx_t *sc, sched_seq_t **seqs, int n, const char *msg)
{
    MS_WARN("step failed: %s; ending its %d requests with an error", msg, n);
    for (int i = 0; i < n; i++)
        if (seqs[i]) end_seq(sc, seqs[i], REQ_FINISH_ERROR, msg);
}

/* Sequences a rank reported failed alone (proto_result_t.fault) end with an
 * error naming the cause, before anything of the step goes out (their prompt
 * logprobs are placeholders) and before sched_commit: their blocks, whose KV
 * may be missing or garbage, are freed and never published to the prefix
 * cache. The workers already dropped the slot's state; its next user comes
 * with a START entry and a full plan entry (plan_delta.c). */
static void end_faulty(serve_ctx_t *sc, const proto_plan_t *plan, sched_seq_t **seqs, const proto_result_t *res)
{
    const proto_seq_t *ps = proto_plan_seqs(plan);
    int n_ok = 0;
    for (int i = 0; i < plan->n_seqs; i++) n_ok += seqs[i] && !res[i].fault;
    for (int i = 0; i < plan->n_seqs; i++) {
        if (!seqs[i] || !res[i].fault) continue;
        char what[200], msg[300];
        proto_fault_describe(res[i].fault, what, sizeof what);
        snprintf(msg, sizeof msg, "this request failed in step %u on rank %d (%s); the step's %d other requests "
                 "went on", plan->hdr.step, proto_seq_owner(&ps[i]), what, n_ok);
        MS_WARN("request %llu: %s", (unsigned long long)seqs[i]->req->id, msg);
        end_seq(sc, seqs[i], REQ_FINISH_ERROR, msg);
    }
}

/* Prompt logprobs of the step (plp: every PROTO_SEQ_PROMPT_LP entry's proto_seq_plp_rows, in plan order)
 * go to the output thread keyed by prompt position (the chunk's row t gives position pos + t + 1), before
 * the step's sampled tokens; it keeps the first of each position (a recompute after preemption repeats
 * them). plp NULL while entries were due: rank 0 had no memory to collect them, so those requests end. */
static void emit_prompt_lp(serve_ctx_t *sc, const proto_plan_t *plan, sched_seq_t **seqs, const proto_plp_t *plp)
{
    const proto_seq_t *ps = proto_plan_seqs(plan);
    size_t off = 0;
    for (int i = 0; i < plan->n_seqs; i++) {
        const int nr = proto_seq_plp_rows(&ps[i]);
        if (nr <= 0) continue;
        if (seqs[i] && plp) serve_out_prompt_lp(sc->out, seqs[i]->user, ps[i].pos + 1, plp + off, nr);
        else if (seqs[i]) end_seq(sc, seqs[i], REQ_FINISH_ERROR, "rank 0: out of memory for prompt logprobs");
        off += (size_t)nr;
    }
}

/* Every PROTO_SEQ_PROMPT_LP row of the plan: what the prompt-logprob buffer must hold. */
static size_t plan_plp_rows(const proto_plan_t *plan)
{
    const proto_seq_t *ps = proto_plan_seqs(plan);
    size_t n = 0;
    for (int i = 0; i < plan->n_seqs; i++) n += (size_t)proto_seq_plp_rows(&ps[i]);
    return n;
}

static void emit(serve_ctx_t *sc, const proto_plan_t *plan, sched_seq_t **seqs, const proto_result_t *res,
                 bool assumed)
{
    const proto_seq_t *ps = proto_plan_seqs(plan);
    int n = plan->n_seqs;
    if (assumed) sched_confirm(sc->sched, seqs, n);
    else sched_commit(sc->sched);
    for (int i = 0; i < n; i++) {
        sched_seq_t *q = seqs[i];
        if (!q || !(ps[i].flags & PROTO_SEQ_SAMPLE)) continue; /* the plan's flags: q's own are the next step's */
        const proto_result_t *r = &res[i];
        /* MTP: the accepted drafts come first, then `token`; each goes out on its own, in order */
        const bool verify = (ps[i].flags & PROTO_SEQ_VERIFY) != 0;
        const int n_acc = verify ? r->n_accepted : 0;
        if (verify) spec_stats_add(&g_spec, ps[i].n_tokens - 1, n_acc);
        bool ended = false;
        for (int u = 0; u <= n_acc && !ended; u++) {
            proto_result_t one = *r;
            if (u < n_acc) {
                one.token = r->accepted[u], one.logprob = r->accepted_lp[u], one.n_top = 0;
            }
            if (q->req->params.prompt_only && one.token >= 0) {
                /* max_tokens 0 + echo: the prefill was for the prompt's logprobs only */
                end_seq(sc, q, REQ_FINISH_LENGTH, NULL);
                ended = true;
                break;
            }
            if (one.token < 0 || one.token >= sc->vocab_size || r->slot != ps[i].slot) {
                char msg[160];
                snprintf(msg, sizeof msg, "rank %d returned token %d for slot %d (expected a token for slot %d)",
                         proto_seq_owner(&ps[i]), one.token, r->slot, ps[i].slot);
                (void)MS_ERR(MS_ERR_INTERNAL, "%s", msg);
                end_seq(sc, q, REQ_FINISH_ERROR, msg);
                ended = true;
                break;
            }
            ms_status_t st = u < n_acc ? sched_append_accepted(sc->sched, q, one.token)
                                       : sched_append(sc->sched, q, one.token);
            if (st != MS_OK) {
                end_seq(sc, q, REQ_FINISH_ERROR, ms_error_last());
                ended = true;
                break;
            }
            if (q->n_tokens - q->n_prompt == 1) { /* the first token: usage's cached_tokens is known */
                pthread_mutex_lock(&q->req->lock);
                q->req->n_cached_prompt = q->n_reused;
                pthread_mutex_unlock(&q->req->lock);
            }
            /* detokenize and stop checks on the output thread, while the next step runs */
            serve_out_token(sc->out, q->user, &one, q->n_tokens);
            if (length_reached(sc, q)) {
                end_seq(sc, q, REQ_FINISH_NONE, NULL);
                ended = true;
            }
        }
        if (!ended && (ps[i].flags & PROTO_SEQ_DRAFT)) sched_set_drafts(q, r->drafts, r->n_draft);
    }
}

/* Does this step have to be waited for before the next one is planned (PROTO_PLAN_SYNC; the header
 * comment lists why)? */
static bool plan_needs_sync(const serve_ctx_t *sc, const proto_plan_t *plan)
{
    if (sc->cfg->disable_overlap_scheduler || sc->cfg->speculative.enabled ||
        (sc->cfg->moe.load_balancer.enabled && sc->cfg->moe.load_balancer.layer_updates_per_iter > 0))
        return true;
    const proto_seq_t *ps = proto_plan_seqs(plan);
    for (int i = 0; i < plan->n_seqs; i++)
        if (ps[i].flags & (PROTO_SEQ_PROMPT_LP | PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT)) return true;
    return false;
}

/* Copy the scheduler's plan and sequences into f (the plan gains its PROTO_PLAN_* flags there). */
static ms_status_t fly_take(fly_t *f, const proto_plan_t *plan, sched_seq_t **seqs)
{
    size_t len = plan->hdr.length;
    if (len > f->cap) {
        uint8_t *b = realloc(f->plan, len);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for a %zu-byte plan", len);
        f->plan = b, f->cap = len;
    }
    if (plan->n_seqs > f->cap_seqs) {
        sched_seq_t **q = realloc(f->seqs, sizeof *q * (size_t)plan->n_seqs);
        if (!q) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for a plan's sequences");
        f->seqs = q, f->cap_seqs = plan->n_seqs;
    }
    memcpy(f->plan, plan, len);
    memcpy(f->seqs, seqs, sizeof *seqs * (size_t)plan->n_seqs);
    f->live = true;
    f->assumed = false;
    return MS_OK;
}

typedef struct {
    proto_result_t *res, *merged;
    proto_plp_t *merged_plp; /* the step's prompt logprobs, plan order (plan_plp_rows entries) */
    size_t plp_cap;
    uint64_t steps;
} rank0_bufs_t;

/* Wait for f's step, gather every rank's results, end or emit its sequences. */
static ms_status_t fly_finish(serve_ctx_t *sc, fly_t *f, rank0_bufs_t *b)
{
    const proto_plan_t *plan = (const proto_plan_t *)f->plan;
    sched_seq_t **seqs = f->seqs;
    const int n = plan->n_seqs;
    ms_status_t st = wait_rank0(sc, plan, b->res);
    if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
    char errmsg[600] = "";
    if (st != MS_OK) snprintf(errmsg, sizeof errmsg, "rank 0: %s", ms_error_last());
    proto_step_status_t pst = {.failed_rank = st == MS_OK ? -1 : 0, .failed_status = st};
    const proto_plp_t *plp = NULL;
    const size_t n_plp = plan_plp_rows(plan);
    if (n_plp > b->plp_cap) { /* grows to the largest step's rows (at most max_num_tokens) */
        proto_plp_t *p = realloc(b->merged_plp, sizeof *p * n_plp);
        if (p) b->merged_plp = p, b->plp_cap = n_plp;
    }
    if (sc->size > 1) {
        MS_TRY(proto_gather_results(sc->link, plan, b->res, st == MS_OK ? plp_collect(sc, n) : NULL, st, b->merged,
                                    n_plp <= b->plp_cap ? b->merged_plp : NULL, &pst));
        plp = n_plp <= b->plp_cap ? b->merged_plp : NULL;
    } else {
        memcpy(b->merged, b->res, sizeof *b->res * (size_t)n);
        plp = n_plp && st == MS_OK ? plp_collect(sc, n) : NULL;
    }
    /* from here on, sequences that end are this step's: f stays live so end_seq clears its entries */
    if (pst.failed_rank >= 0) {
        if (!errmsg[0])
            snprintf(errmsg, sizeof errmsg, "the step failed on rank %d (%s; its log has the details)",
                     pst.failed_rank, ms_status_str(pst.failed_status));
        fail_step(sc, seqs, n, errmsg);
        MS_TRY(serve_eplb_after_step(sc->eplb, sc->engine, plan->hdr.step, 0));
    } else {
        int sampled = 0;
        const proto_seq_t *ps = proto_plan_seqs(plan);
        for (int i = 0; i < n; i++) sampled += seqs[i] && (ps[i].flags & PROTO_SEQ_SAMPLE);
        end_faulty(sc, plan, seqs, b->merged); /* first: neither prompt logprobs nor a commit for them */
        if (n_plp) emit_prompt_lp(sc, plan, seqs, plp);
        emit(sc, plan, seqs, b->merged, f->assumed);
        MS_TRY(serve_eplb_after_step(sc->eplb, sc->engine, plan->hdr.step, sampled));
    }
    f->live = false;
    serve_out_step_done(sc->out, plan->hdr.step);
    b->steps++;
    publish(sc, n, b->steps);
    if (sc->cfg->print_iter_log) {
        sched_stats_t ss;
        sched_stats(sc->sched, &ss);
        MS_INFO("step %llu: %d seqs, %d tokens, %.1f ms; running %d, waiting %d, KV blocks %d used / %d free; "
                "%llu steps planned while another ran",
                (unsigned long long)b->steps, n, plan->n_tokens, (out_now() - f->t0) * 1e3, ss.running, ss.waiting,
                ss.kv_blocks_used, ss.kv_blocks_free, (unsigned long long)g_overlapped);
        if (g_spec.drafts > 0) {
            char sp[256];
            spec_stats_format(&g_spec, sp, sizeof sp);
            MS_INFO("MTP since start: %s", sp);
        }
    }
    return MS_OK;
}

ms_status_t serve_loop_rank0(serve_ctx_t *sc)
{
    rank0_bufs_t b = {.res = calloc((size_t)sc->max_seqs, sizeof *b.res),
                      .merged = calloc((size_t)sc->max_seqs, sizeof *b.merged)};
    if (!b.res || !b.merged) {
        free(b.res);
        free(b.merged);
        return MS_ERR(MS_ERR_NOMEM, "serve: out of memory");
    }
    uint64_t seed_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    uint32_t step_no = 0;
    int cur = 0; /* g_fly[cur]: the step in flight, when live */
    ms_status_t ret = MS_OK;
    if (serve_out_start(sc->coord, &sc->out) != MS_OK) {
        free(b.res);
        free(b.merged);
        return MS_ERR_INTERNAL;
    }
    g_spec = (spec_stats_t){.drafts = sc->cfg->speculative.enabled ? sc->cfg->speculative.num_nextn_predict_layers : 0};
    publish(sc, 0, 0);

    while (!coord_stopping(sc->coord)) {
        admit_new(sc, &seed_state);
        /* Stops found in step N-1's tokens must be seen before step N+1 is
         * planned: at most one step late (serve_output.c). With a step in flight
         * that is the step finished last. */
        if (step_no >= 2) serve_out_wait(sc->out, step_no - 2);
        reap_finished(sc);
        drop_cancelled(sc);
        fly_t *prev = g_fly[cur].live ? &g_fly[cur] : NULL;
        sched_stats_t ss;
        sched_stats(sc->sched, &ss);
        if (!prev && ss.running == 0 && ss.waiting == 0) {
            publish(sc, 0, b.steps);
            /* a statistics reduce in flight completes only while MPI is called */
            coord_wait(sc->coord, serve_eplb_pending(sc->eplb) ? 20 : -1);
            serve_eplb_poll(sc->eplb);
            continue;
        }

        /* overlap: plan the next step as if the one in flight succeeded (sched_assume) */
        if (prev) {
            sched_assume(sc->sched);
            prev->assumed = true;
        }
        const proto_plan_t *plan;
        sched_seq_t **seqs;
        double t0 = out_now();
        ms_status_t st = sched_step(sc->sched, step_no, &plan, &seqs);
        if (st != MS_OK) {
            ret = st; /* scheduler bookkeeping is broken: stop serving rather than guess */
            break;
        }
        int n = plan->n_seqs;
        if (n == 0) {
            if (prev) { /* nothing more to run until its tokens are known: every rank finishes it now */
                proto_plan_t fl = {.hdr = proto_hdr_make(PROTO_MSG_PLAN, sizeof fl, step_no), .flags = PROTO_PLAN_FLUSH};
                if (sc->size > 1) MS_TRY_GOTO(ret, proto_send_plan(sc->link, &fl), out);
                MS_TRY_GOTO(ret, fly_finish(sc, prev, &b), out);
                continue;
            }
            /* Everything waits for something that a finishing request will
             * free; nothing runs, so that cannot come: a scheduler bug. Sleep
             * a little rather than spin, and say so. */
            MS_WARN("scheduler produced an empty step with %d waiting requests", ss.waiting);
            publish(sc, 0, b.steps);
            coord_wait(sc->coord, 100);
            continue;
        }
        if (n > sc->max_seqs) {
            ret = MS_ERR(MS_ERR_INTERNAL, "plan of %d sequences exceeds %d", n, sc->max_seqs);
            break;
        }
        fly_t *next = &g_fly[prev ? 1 - cur : cur];
        MS_TRY_GOTO(ret, fly_take(next, plan, seqs), out);
        proto_plan_t *np = (proto_plan_t *)next->plan;
        const bool sync = plan_needs_sync(sc, np);
        np->flags = sync ? PROTO_PLAN_SYNC : 0;
        next->t0 = t0;
        if (prev) g_overlapped++;
        seq_fault_plan(sc, np);
        if (sc->size > 1) MS_TRY_GOTO(ret, proto_send_plan(sc->link, np), out);
        st = launch_rank0(sc, np);
        if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
        step_no++;
        /* every rank: launch N+1, then finish N; a SYNC step is finished right after its launch */
        if (prev) MS_TRY_GOTO(ret, fly_finish(sc, prev, &b), out);
        cur = next - g_fly;
        if (sync) MS_TRY_GOTO(ret, fly_finish(sc, next, &b), out);
    }

out:
    /* Stop: the step in flight is finished first (every rank waits for its gather). */
    if (ret == MS_OK && g_fly[cur].live) {
        proto_plan_t fl = {.hdr = proto_hdr_make(PROTO_MSG_PLAN, sizeof fl, step_no), .flags = PROTO_PLAN_FLUSH};
        if (sc->size > 1) ret = proto_send_plan(sc->link, &fl);
        if (ret == MS_OK) ret = fly_finish(sc, &g_fly[cur], &b);
    }
    for (int f = 0; f < 2; f++) g_fly[f].live = false;
    if (sc->cfg->print_iter_log || g_overlapped)
        MS_INFO("overlap scheduler: %llu of %llu steps planned while the previous one ran",
                (unsigned long long)g_overlapped, (unsigned long long)b.steps);
    /* End everything still held so the gateway can answer and drain. */
    for (sched_seq_t *q = sched_first(sc->sched), *nx; q; q = nx) {
        nx = sched_next(sc->sched, q);
        end_seq(sc, q, REQ_FINISH_ABORT, NULL);
    }
    req_t *batch[64];
    int k;
    while ((k = coord_take_new(sc->coord, batch, 64)) > 0)
        for (int i = 0; i < k; i++) end_unscheduled(sc->coord, batch[i], REQ_FINISH_ABORT, NULL);
    serve_out_stop(sc->out); /* every final chunk is pushed before the gateway drains */
    sc->out = NULL;
    publish(sc, 0, b.steps);
    free(b.res);
    free(b.merged);
    free(b.merged_plp);
    for (int f = 0; f < 2; f++) {
        free(g_fly[f].plan), free(g_fly[f].seqs);
        g_fly[f] = (fly_t){0};
    }
    return ret;
}

ms_status_t serve_shutdown_workers(serve_ctx_t *sc)
{
    if (sc->size == 1) return MS_OK;
    return proto_send_shutdown(sc->link, 0);
}

/* ---- workers ------------------------------------------------------------- */

/* A worker's step launched and not yet gathered: its part of the plan (copied: proto_recv reuses its
 * buffer for the next one) and how its launch went. */
typedef struct {
    uint8_t *plan;
    size_t cap;
    bool launched;  /* engine_step_launch took it (engine_step_wait returns its status) */
    ms_status_t st; /* otherwise: why not */
} wfly_t;

static ms_status_t worker_finish(serve_ctx_t *sc, wfly_t *w, proto_result_t *res)
{
    const proto_plan_t *plan = (const proto_plan_t *)w->plan;
    ms_status_t st = w->launched ? engine_step_wait(sc->engine, res) : w->st;
    if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
    MS_TRY(proto_gather_results(sc->link, plan, st == MS_OK ? res : NULL,
                                st == MS_OK ? plp_collect(sc, plan->n_seqs) : NULL, st, NULL, NULL, NULL));
    return serve_eplb_after_step(sc->eplb, sc->engine, plan->hdr.step, 0);
}

/* Receive plan N+1, launch it, then finish step N (wait, results to rank 0): the order rank 0 keeps
 * (serve_loop_rank0); a PROTO_PLAN_SYNC step is finished right after its own launch. */
ms_status_t serve_loop_worker(serve_ctx_t *sc)
{
    ms_status_t ret = MS_OK;
    wfly_t w[2] = {{0}};
    int cur = 0;
    bool pending = false; /* w[cur] launched, not finished */
    proto_result_t *res = calloc((size_t)sc->max_seqs, sizeof *res);
    if (!res) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory");
    for (;;) {
        const proto_plan_t *plan = NULL;
        ms_status_t st = proto_recv(sc->link, &plan);
        if (st != MS_OK) {
            /* The collectives that follow this message cannot be matched. */
            (void)MS_ERR(st, "rank %d: unusable control message from rank 0; aborting the job", sc->rank);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (!plan) break; /* SHUTDOWN: rank 0 finished every step before */
        if (plan->flags & PROTO_PLAN_FLUSH) {
            if (pending) MS_TRY_GOTO(ret, worker_finish(sc, &w[cur], res), out);
            pending = false;
            continue;
        }
        wfly_t *nx = &w[pending ? 1 - cur : cur];
        if (plan->hdr.length > nx->cap) {
            uint8_t *b = realloc(nx->plan, plan->hdr.length);
            if (!b) {
                ret = MS_ERR(MS_ERR_NOMEM, "rank %d: out of memory for a plan", sc->rank);
                break;
            }
            nx->plan = b, nx->cap = plan->hdr.length;
        }
        memcpy(nx->plan, plan, plan->hdr.length);
        nx->launched = false;
        if (plan->n_seqs > sc->max_seqs) {
            nx->st = MS_ERR(MS_ERR_INVALID, "rank %d: plan of %d sequences exceeds %d", sc->rank, plan->n_seqs,
                            sc->max_seqs);
        } else {
            nx->launched = true;
            st = launch_or_fault(sc, plan);
            if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
        }
        if (pending) MS_TRY_GOTO(ret, worker_finish(sc, &w[cur], res), out);
        cur = nx - w;
        pending = true;
        if (plan->flags & PROTO_PLAN_SYNC) {
            pending = false;
            MS_TRY_GOTO(ret, worker_finish(sc, nx, res), out);
        }
    }
out:
    if (pending && w[cur].launched) (void)engine_step_wait(sc->engine, res);
    free(w[0].plan), free(w[1].plan);
    free(res);
    return ret;
}
