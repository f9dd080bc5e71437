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
 * so the embedding op faults (ENGINE_INJECT_TOKEN); "plan": rank 0 writes
 * that id into the entry before sending the plan, as a scheduler bug would,
 * and the worker's plan check rejects the entry (seq_fault_plan). The step's
 * other sequences must go on unharmed (test_seq_faults.py). */
typedef struct {
    int kind; /* ENGINE_INJECT_*, 3 = "plan", 0 = off */
    long step;
    int rank;
} seq_hook_t;
enum { SEQ_HOOK_PLAN = 3 };

static const seq_hook_t *seq_hook(void)
{
    static seq_hook_t h = {.kind = -1};
    if (h.kind >= 0) return &h;
    h.kind = 0;
    const char *v = getenv("MOESERVE_FAULT_SEQ");
    char kind[16];
    if (v && sscanf(v, "%15[a-z]:%ld:%d", kind, &h.step, &h.rank) == 3)
        h.kind = !strcmp(kind, "fault") ? ENGINE_INJECT_FAULT : !strcmp(kind, "token") ? ENGINE_INJECT_TOKEN
               : !strcmp(kind, "plan") ? SEQ_HOOK_PLAN : 0;
    if (v && *v && !h.kind)
        MS_WARN("MOESERVE_FAULT_SEQ=%s is not KIND:STEP:RANK (KIND fault, token or plan): ignored", v);
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

/* Rank 0, the "plan" hook: the entry's first token becomes vocab_size before the plan goes out. */
static void seq_fault_plan(serve_ctx_t *sc, const proto_plan_t *plan)
{
    const proto_seq_t *q = seq_hook_entry(plan, SEQ_HOOK_PLAN);
    if (q) ((int32_t *)proto_plan_tokens(plan))[q->tok_off] = sc->vocab_size;
}

static ms_status_t step_or_fault(serve_ctx_t *sc, const proto_plan_t *plan, proto_result_t *res)
{
    static long fault = -2;
    if (fault == -2) {
        const char *v = getenv("MOESERVE_FAULT_STEP");
        fault = v && *v ? strtol(v, NULL, 10) : -1;
    }
    if (fault >= 0 && (long)plan->hdr.step == fault) engine_inject_fault(sc->engine, ENGINE_FAULT_INJECTED);
    for (int kind = ENGINE_INJECT_FAULT; kind <= ENGINE_INJECT_TOKEN; kind++) {
        const proto_seq_t *q = seq_hook_entry(plan, kind);
        if (q) engine_inject_seq_fault(sc->engine, q->slot, kind);
    }
    return engine_step(sc->engine, plan, res);
}

/* Rank 0 runs only its own part of the plan (proto_plan_part: attention DP
 * gives it its own sequences, TP all of them) and spreads the results back
 * to full-plan indices, which proto_gather_results reads. */
static ms_status_t step_rank0(serve_ctx_t *sc, const proto_plan_t *plan, proto_result_t *res)
{
    static uint8_t *part;
    static size_t cap;
    static proto_result_t *pres;
    static int pres_cap;
    size_t n = proto_plan_part(plan, 0, NULL);
    if (n == plan->hdr.length) return step_or_fault(sc, plan, res); /* all of it */
    if (n > cap) {
        uint8_t *b = realloc(part, n);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for a %zu-byte plan", n);
        part = b, cap = n;
    }
    proto_plan_part(plan, 0, part);
    const proto_plan_t *mine = (const proto_plan_t *)part;
    if (mine->n_seqs > pres_cap) {
        proto_result_t *r = realloc(pres, sizeof *r * (size_t)mine->n_seqs);
        if (!r) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory for results");
        pres = r, pres_cap = mine->n_seqs;
    }
    ms_status_t st = step_or_fault(sc, mine, pres);
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

/* The scheduler lets go of q now; its output (the final chunk unless it
 * already finished, the out_seq, the request reference) ends on the output
 * thread, after every token handed over before. */
static void end_seq(serve_ctx_t *sc, sched_seq_t *q, req_finish_t why, const char *msg)
{
    out_seq_t *o = q->user;
    req_t *r = q->req;
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

static void emit(serve_ctx_t *sc, const proto_plan_t *plan, sched_seq_t **seqs, const proto_result_t *res)
{
    const proto_seq_t *ps = proto_plan_seqs(plan);
    int n = plan->n_seqs;
    sched_commit(sc->sched);
    for (int i = 0; i < n; i++) {
        sched_seq_t *q = seqs[i];
        if (!q || !q->step_sample) continue;
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

ms_status_t serve_loop_rank0(serve_ctx_t *sc)
{
    proto_result_t *res = calloc((size_t)sc->max_seqs, sizeof *res);
    proto_result_t *merged = calloc((size_t)sc->max_seqs, sizeof *merged);
    proto_plp_t *merged_plp = NULL; /* the step's prompt logprobs, plan order (plan_plp_rows entries) */
    size_t plp_cap = 0;
    if (!res || !merged) {
        free(res);
        free(merged);
        return MS_ERR(MS_ERR_NOMEM, "serve: out of memory");
    }
    uint64_t seed_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    uint64_t steps = 0;
    uint32_t step_no = 0;
    ms_status_t ret = MS_OK;
    if (serve_out_start(sc->coord, &sc->out) != MS_OK) {
        free(res);
        free(merged);
        return MS_ERR_INTERNAL;
    }
    g_spec = (spec_stats_t){.drafts = sc->cfg->speculative.enabled ? sc->cfg->speculative.num_nextn_predict_layers : 0};
    publish(sc, 0, 0);

    while (!coord_stopping(sc->coord)) {
        admit_new(sc, &seed_state);
        /* Stops found in step N-1's tokens must be seen before step N+1 is
         * planned: at most one step late (serve_output.c). */
        if (step_no >= 2) serve_out_wait(sc->out, step_no - 2);
        reap_finished(sc);
        drop_cancelled(sc);
        sched_stats_t ss;
        sched_stats(sc->sched, &ss);
        if (ss.running == 0 && ss.waiting == 0) {
            publish(sc, 0, steps);
            /* a statistics reduce in flight completes only while MPI is called */
            coord_wait(sc->coord, serve_eplb_pending(sc->eplb) ? 20 : -1);
            serve_eplb_poll(sc->eplb);
            continue;
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
            /* Everything waits for something that a finishing request will
             * free; nothing runs, so that cannot come: a scheduler bug. Sleep
             * a little rather than spin, and say so. */
            MS_WARN("scheduler produced an empty step with %d waiting requests", ss.waiting);
            publish(sc, 0, steps);
            coord_wait(sc->coord, 100);
            continue;
        }
        if (n > sc->max_seqs) {
            ret = MS_ERR(MS_ERR_INTERNAL, "plan of %d sequences exceeds %d", n, sc->max_seqs);
            break;
        }
        seq_fault_plan(sc, plan);
        if (sc->size > 1) MS_TRY_GOTO(ret, proto_send_plan(sc->link, plan), out);
        st = step_rank0(sc, plan, res);
        if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
        char errmsg[600] = "";
        if (st != MS_OK) snprintf(errmsg, sizeof errmsg, "rank 0: %s", ms_error_last());
        proto_step_status_t pst = {.failed_rank = st == MS_OK ? -1 : 0, .failed_status = st};
        const proto_plp_t *plp = NULL;
        const size_t n_plp = plan_plp_rows(plan);
        if (n_plp > plp_cap) { /* grows to the largest step's rows (at most max_num_tokens) */
            proto_plp_t *b = realloc(merged_plp, sizeof *b * n_plp);
            if (b) merged_plp = b, plp_cap = n_plp;
        }
        if (sc->size > 1) {
            MS_TRY_GOTO(ret, proto_gather_results(sc->link, plan, res, st == MS_OK ? plp_collect(sc, n) : NULL, st,
                                                  merged, n_plp <= plp_cap ? merged_plp : NULL, &pst), out);
            plp = n_plp <= plp_cap ? merged_plp : NULL;
        } else {
            memcpy(merged, res, sizeof *res * (size_t)n);
            plp = n_plp && st == MS_OK ? plp_collect(sc, n) : NULL;
        }
        if (pst.failed_rank >= 0) {
            if (!errmsg[0])
                snprintf(errmsg, sizeof errmsg, "the step failed on rank %d (%s; its log has the details)",
                         pst.failed_rank, ms_status_str(pst.failed_status));
            fail_step(sc, seqs, n, errmsg);
        } else {
            int sampled = 0;
            for (int i = 0; i < n; i++) sampled += seqs[i] && seqs[i]->step_sample;
            end_faulty(sc, plan, seqs, merged); /* first: neither prompt logprobs nor a commit for them */
            if (n_plp) emit_prompt_lp(sc, plan, seqs, plp);
            emit(sc, plan, seqs, merged);
            MS_TRY_GOTO(ret, serve_eplb_after_step(sc->eplb, sc->engine, step_no, sampled), out);
        }
        if (pst.failed_rank >= 0) MS_TRY_GOTO(ret, serve_eplb_after_step(sc->eplb, sc->engine, step_no, 0), out);
        serve_out_step_done(sc->out, step_no);
        steps++;
        step_no++;
        publish(sc, n, steps);
        if (sc->cfg->print_iter_log) {
            sched_stats(sc->sched, &ss);
            MS_INFO("step %llu: %d seqs, %d tokens, %.1f ms; running %d, waiting %d, KV blocks %d used / %d free",
                    (unsigned long long)steps, n, plan->n_tokens, (out_now() - t0) * 1e3, ss.running, ss.waiting,
                    ss.kv_blocks_used, ss.kv_blocks_free);
            if (g_spec.drafts > 0) {
                char sp[256];
                spec_stats_format(&g_spec, sp, sizeof sp);
                MS_INFO("MTP since start: %s", sp);
            }
        }
    }

out:
    /* Stop: end everything still held so the gateway can answer and drain. */
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
    publish(sc, 0, steps);
    free(res);
    free(merged);
    free(merged_plp);
    return ret;
}

ms_status_t serve_shutdown_workers(serve_ctx_t *sc)
{
    if (sc->size == 1) return MS_OK;
    return proto_send_shutdown(sc->link, 0);
}

/* ---- workers ------------------------------------------------------------- */

ms_status_t serve_loop_worker(serve_ctx_t *sc)
{
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
        if (!plan) break; /* SHUTDOWN */
        if (plan->n_seqs > sc->max_seqs) {
            st = MS_ERR(MS_ERR_INVALID, "rank %d: plan of %d sequences exceeds %d", sc->rank, plan->n_seqs,
                        sc->max_seqs);
        } else {
            st = step_or_fault(sc, plan, res);
            if (!step_failure_survivable(sc, st)) fatal_step(sc, st);
        }
        MS_TRY(proto_gather_results(sc->link, plan, st == MS_OK ? res : NULL,
                                    st == MS_OK ? plp_collect(sc, plan->n_seqs) : NULL, st, NULL, NULL, NULL));
        MS_TRY(serve_eplb_after_step(sc->eplb, sc->engine, plan->hdr.step, 0));
    }
    free(res);
    return MS_OK;
}
