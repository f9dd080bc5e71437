/* serve_output.c — rank 0's output thread: detokenization, stop checks and
 * the chunks for the gateway (coordinator/output.h) run here, off the MPI
 * thread, while the next step runs.
 *
 * The engine thread hands over, in order: each sampled token (TOKEN), the
 * prompt logprobs of a prefill chunk (PLP, before that step's tokens), a
 * step marker (STEP), and the end of a sequence (END: end it with a reason
 * unless it already finished, then free its out_seq and release its request).
 * The output thread owns every out_seq_t it was handed until END; the
 * engine thread only reads its finished flag (atomic, out_seq_finished).
 *
 * Consequence, by design: a stop the output thread finds (EOS, a stop token,
 * a stop string) reaches the scheduler one step late — the sequence may run
 * one more step. Its extra token is dropped here (a finished out_seq takes no
 * more tokens), so no client ever sees a token past its stop. Length limits
 * (max_tokens, the sequence limit) need no detokenizer and are applied by the
 * engine thread at once. serve_out_wait bounds the lag to one step. */
#include "serve_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/output.h"

typedef enum { EV_TOKEN, EV_PLP, EV_STEP, EV_END, EV_QUIT } ev_kind_t;

typedef struct ev {
    struct ev *next;
    ev_kind_t kind;
    out_seq_t *o;
    req_t *r;
    proto_result_t res;
    int n_total;
    uint64_t step;
    req_finish_t why;
    char *msg;
    proto_plp_t *plp; /* EV_PLP: n_plp entries for prompt positions pos0.. (owned) */
    int pos0, n_plp;
} ev_t;

struct serve_out {
    coord_t *coord;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    ev_t *head, *tail;
    uint64_t done;  /* steps whose tokens were all processed, + 1 (0: none) */
    long delay_us;  /* test hook MOESERVE_OUTPUT_DELAY_US: a slow output thread, so stops are late */
};

static void ev_run(serve_out_t *so, ev_t *e)
{
    switch (e->kind) {
    case EV_TOKEN:
        if (!out_seq_finished(e->o)) {
            req_finish_t fin = REQ_FINISH_NONE;
            if (out_seq_token(e->o, so->coord, &e->res, e->n_total, &fin) != MS_OK)
                out_seq_end(e->o, so->coord, REQ_FINISH_ERROR, ms_error_last());
        }
        break;
    case EV_PLP:
        if (!out_seq_finished(e->o) && out_seq_prompt_lp(e->o, e->pos0, e->plp, e->n_plp) != MS_OK)
            out_seq_end(e->o, so->coord, REQ_FINISH_ERROR, ms_error_last());
        break;
    case EV_END:
        if (e->why != REQ_FINISH_NONE) out_seq_end(e->o, so->coord, e->why, e->msg);
        out_seq_destroy(e->o);
        req_release(e->r);
        break;
    case EV_STEP:
        pthread_mutex_lock(&so->mu);
        so->done = e->step + 1;
        pthread_cond_broadcast(&so->done_cv);
        pthread_mutex_unlock(&so->mu);
        break;
    case EV_QUIT:
        break;
    }
}

static void *out_main(void *arg)
{
    serve_out_t *so = arg;
    for (;;) {
        pthread_mutex_lock(&so->mu);
        while (!so->head) pthread_cond_wait(&so->cv, &so->mu);
        ev_t *list = so->head; /* take everything queued at once */
        so->head = so->tail = NULL;
        pthread_mutex_unlock(&so->mu);
        if (so->delay_us > 0) usleep((useconds_t)so->delay_us);
        bool quit = false;
        while (list) {
            ev_t *e = list;
            list = e->next;
            quit |= e->kind == EV_QUIT;
            ev_run(so, e);
            free(e->msg);
            free(e->plp);
            free(e);
        }
        if (quit) return NULL;
    }
}

static void post(serve_out_t *so, ev_t *e)
{
    pthread_mutex_lock(&so->mu);
    if (so->tail) so->tail->next = e;
    else so->head = e;
    so->tail = e;
    pthread_cond_signal(&so->cv);
    pthread_mutex_unlock(&so->mu);
}

/* Queue an event. Out of memory, it waits for memory rather than reorder
 * or drop work (a TOKEN after its END would touch a freed out_seq). */
static void submit(serve_out_t *so, const ev_t *tmpl)
{
    ev_t *e;
    while (!(e = malloc(sizeof *e))) usleep(1000);
    *e = *tmpl;
    e->next = NULL;
    post(so, e);
}

ms_status_t serve_out_start(coord_t *coord, serve_out_t **out)
{
    serve_out_t *so = calloc(1, sizeof *so);
    if (!so) return MS_ERR(MS_ERR_NOMEM, "serve: out of memory");
    so->coord = coord;
    const char *d = getenv("MOESERVE_OUTPUT_DELAY_US");
    so->delay_us = d && *d ? strtol(d, NULL, 10) : 0;
    pthread_mutex_init(&so->mu, NULL);
    pthread_cond_init(&so->cv, NULL);
    pthread_cond_init(&so->done_cv, NULL);
    if (pthread_create(&so->th, NULL, out_main, so) != 0) {
        free(so);
        return MS_ERR(MS_ERR_INTERNAL, "serve: cannot start the output thread");
    }
    *out = so;
    return MS_OK;
}

void serve_out_token(serve_out_t *so, out_seq_t *o, const proto_result_t *res, int n_total)
{
    submit(so, &(ev_t){.kind = EV_TOKEN, .o = o, .res = *res, .n_total = n_total});
}

void serve_out_prompt_lp(serve_out_t *so, out_seq_t *o, int pos0, const proto_plp_t *e, int n)
{
    proto_plp_t *copy;
    while (!(copy = malloc(sizeof *copy * (size_t)n))) usleep(1000); /* as submit: wait, never drop */
    memcpy(copy, e, sizeof *copy * (size_t)n);
    submit(so, &(ev_t){.kind = EV_PLP, .o = o, .pos0 = pos0, .n_plp = n, .plp = copy});
}

void serve_out_end(serve_out_t *so, out_seq_t *o, req_t *r, req_finish_t why, const char *msg)
{
    submit(so, &(ev_t){.kind = EV_END, .o = o, .r = r, .why = why, .msg = msg ? strdup(msg) : NULL});
}

void serve_out_step_done(serve_out_t *so, uint64_t step)
{
    submit(so, &(ev_t){.kind = EV_STEP, .step = step});
}

void serve_out_wait(serve_out_t *so, uint64_t step)
{
    pthread_mutex_lock(&so->mu);
    while (so->done < step + 1) pthread_cond_wait(&so->done_cv, &so->mu);
    pthread_mutex_unlock(&so->mu);
}

void serve_out_stop(serve_out_t *so)
{
    if (!so) return;
    submit(so, &(ev_t){.kind = EV_QUIT});
    pthread_join(so->th, NULL);
    pthread_mutex_destroy(&so->mu);
    pthread_cond_destroy(&so->cv);
    pthread_cond_destroy(&so->done_cv);
    free(so);
}
