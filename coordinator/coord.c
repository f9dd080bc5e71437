/* coord.c — the hub between the gateway thread and the engine thread on
 * rank 0 (request.h, coord.h). It owns:
 *   - the FIFO of submitted requests not yet taken by the engine (a growable
 *     ring of req_t pointers, each holding the engine's reference);
 *   - the engine's wake-up condition (submit, cancel, stop);
 *   - the gauges the engine publishes after every step.
 * One mutex guards all of it; it is never held while calling the notify
 * hook, so the gateway may call back into coord_* from its handler. */
#include "coord.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct coord {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* engine sleeps here (CLOCK_MONOTONIC) */
    req_t **ring;            /* pending submissions, FIFO */
    int cap, head, n;
    int max_waiting;
    bool stop;
    unsigned wakes;          /* bumped by anything that should wake the engine */
    coord_stats_t stats;
    coord_notify_fn notify;
    void *notify_arg;
};

ms_status_t coord_create(int max_waiting, coord_t **out)
{
    coord_t *c = calloc(1, sizeof *c);
    if (!c) return MS_ERR(MS_ERR_NOMEM, "coord: out of memory");
    c->cap = 64;
    c->ring = calloc((size_t)c->cap, sizeof *c->ring);
    if (!c->ring) {
        free(c);
        return MS_ERR(MS_ERR_NOMEM, "coord: out of memory");
    }
    c->max_waiting = max_waiting > 0 ? max_waiting : 1 << 30;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = c;
    return MS_OK;
}

void coord_destroy(coord_t *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++) req_release(c->ring[(c->head + i) % c->cap]);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->ring);
    free(c);
}

void coord_set_notify(coord_t *c, coord_notify_fn fn, void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->notify = fn;
    c->notify_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

static bool ring_grow(coord_t *c)
{
    int cap = c->cap * 2;
    req_t **r = malloc(sizeof *r * (size_t)cap);
    if (!r) return false;
    for (int i = 0; i < c->n; i++) r[i] = c->ring[(c->head + i) % c->cap];
    free(c->ring);
    c->ring = r;
    c->cap = cap;
    c->head = 0;
    return true;
}

ms_status_t coord_submit(coord_t *c, req_t *r)
{
    pthread_mutex_lock(&c->mu);
    ms_status_t st = MS_OK;
    if (c->stop) {
        st = MS_ERR_INTERNAL;
    } else if (c->n + c->stats.waiting >= c->max_waiting) {
        st = MS_ERR_NOMEM;
    } else if (c->n == c->cap && !ring_grow(c)) {
        st = MS_ERR_NOMEM;
    } else {
        req_retain(r); /* the engine's reference */
        c->ring[(c->head + c->n) % c->cap] = r;
        c->n++;
        c->wakes++;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

void coord_cancel(coord_t *c, req_t *r)
{
    pthread_mutex_lock(&r->lock);
    r->cancelled = true;
    pthread_mutex_unlock(&r->lock);
    coord_wake(c);
}

bool req_is_cancelled(req_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool v = r->cancelled;
    pthread_mutex_unlock(&r->lock);
    return v;
}

int coord_take_new(coord_t *c, req_t **out, int max)
{
    pthread_mutex_lock(&c->mu);
    int k = 0;
    while (k < max && c->n > 0) {
        out[k++] = c->ring[c->head];
        c->head = (c->head + 1) % c->cap;
        c->n--;
    }
    /* Keep the waiting gauge honest until the engine publishes its own: the
     * taken requests still wait (in the scheduler), so the 429 bound holds. */
    c->stats.waiting += k;
    pthread_mutex_unlock(&c->mu);
    return k;
}

int coord_n_new(coord_t *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void coord_push_chunk(coord_t *c, req_t *r, req_chunk_t *chunk)
{
    chunk->next = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->out_tail)
        r->out_tail->next = chunk;
    else
        r->out_head = chunk;
    r->out_tail = chunk;
    if (chunk->finish != REQ_FINISH_NONE) r->finished = true;
    pthread_mutex_unlock(&r->lock);

    pthread_mutex_lock(&c->mu);
    coord_notify_fn fn = c->notify;
    void *arg = c->notify_arg;
    pthread_mutex_unlock(&c->mu);
    if (fn) fn(arg); /* the gateway finds which requests have output itself */
}

void coord_wait(coord_t *c, int timeout_ms)
{
    pthread_mutex_lock(&c->mu);
    unsigned seen = c->wakes;
    if (c->n == 0 && !c->stop) {
        if (timeout_ms < 0) {
            while (c->wakes == seen && c->n == 0 && !c->stop) pthread_cond_wait(&c->cv, &c->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += timeout_ms / 1000;
            ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (c->wakes == seen && c->n == 0 && !c->stop)
                if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void coord_wake(coord_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->wakes++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void coord_stop(coord_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    c->stats.draining = true;
    c->wakes++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

bool coord_stopping(coord_t *c)
{
    pthread_mutex_lock(&c->mu);
    bool s = c->stop;
    pthread_mutex_unlock(&c->mu);
    return s;
}

void coord_stats_get(coord_t *c, coord_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    out->waiting += c->n; /* submitted but not yet taken also wait */
    pthread_mutex_unlock(&c->mu);
}

void coord_stats_set(coord_t *c, const coord_stats_t *in)
{
    pthread_mutex_lock(&c->mu);
    bool draining = c->stats.draining || in->draining;
    c->stats = *in;
    c->stats.draining = draining;
    pthread_mutex_unlock(&c->mu);
}
