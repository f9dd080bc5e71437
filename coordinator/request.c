/* request.c — a request's memory and reference count, and its outbox of
 * output chunks (request.h). The gateway thread and the engine thread share a
 * req_t: fields set before coord_submit are read-only afterwards; everything
 * the engine produces goes through `lock`. The last req_release frees it, so
 * neither thread has to know whether the other is done. */
#include "request.h"

#include <stdlib.h>
#include <string.h>

const char *req_finish_str(req_finish_t f)
{
    switch (f) {
    case REQ_FINISH_NONE: return NULL;
    case REQ_FINISH_LENGTH: return "length";
    case REQ_FINISH_STOP: return "stop";
    case REQ_FINISH_ABORT: return "abort";
    case REQ_FINISH_ERROR: return "error";
    }
    return "error";
}

void req_params_free(req_params_t *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_stop && i < REQ_MAX_STOP; i++) free(p->stop[i]);
    free(p->stop_token_ids);
    free(p->logit_bias);
    p->logit_bias = NULL;
    p->n_logit_bias = 0;
    memset(p->stop, 0, sizeof p->stop);
    p->n_stop = 0;
    p->stop_token_ids = NULL;
    p->n_stop_token_ids = 0;
}

/* Deep copy: the caller keeps (and frees) its own params. */
static ms_status_t req_params_copy(req_params_t *dst, const req_params_t *src)
{
    *dst = *src;
    memset(dst->stop, 0, sizeof dst->stop);
    dst->stop_token_ids = NULL;
    dst->n_stop = 0;
    dst->logit_bias = NULL;
    dst->n_logit_bias = 0;
    if (src->n_stop < 0 || src->n_stop > REQ_MAX_STOP)
        return MS_ERR(MS_ERR_INVALID, "request: %d stop strings (at most %d)", src->n_stop, REQ_MAX_STOP);
    for (int i = 0; i < src->n_stop; i++) {
        dst->stop[i] = strdup(src->stop[i] ? src->stop[i] : "");
        if (!dst->stop[i]) goto nomem;
        dst->n_stop = i + 1;
    }
    if (src->n_stop_token_ids > 0) {
        dst->stop_token_ids = malloc(sizeof(int32_t) * (size_t)src->n_stop_token_ids);
        if (!dst->stop_token_ids) goto nomem;
        memcpy(dst->stop_token_ids, src->stop_token_ids, sizeof(int32_t) * (size_t)src->n_stop_token_ids);
    } else {
        dst->n_stop_token_ids = 0;
    }
    if (src->n_logit_bias > 0) {
        dst->logit_bias = malloc(sizeof *dst->logit_bias * (size_t)src->n_logit_bias);
        if (!dst->logit_bias) goto nomem;
        memcpy(dst->logit_bias, src->logit_bias, sizeof *dst->logit_bias * (size_t)src->n_logit_bias);
        dst->n_logit_bias = src->n_logit_bias;
    }
    return MS_OK;
nomem:
    req_params_free(dst);
    return MS_ERR(MS_ERR_NOMEM, "request: out of memory copying params");
}

ms_status_t req_create(const req_params_t *params, const int32_t *prompt, int n_prompt, req_t **out)
{
    if (n_prompt <= 0 || !prompt) return MS_ERR(MS_ERR_INVALID, "request: empty prompt");
    req_t *r = calloc(1, sizeof *r);
    if (!r) return MS_ERR(MS_ERR_NOMEM, "request: out of memory");
    ms_status_t st = req_params_copy(&r->params, params);
    if (st != MS_OK) goto out_free;
    r->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    if (!r->prompt) {
        st = MS_ERR(MS_ERR_NOMEM, "request: out of memory (%d prompt tokens)", n_prompt);
        goto out_params;
    }
    memcpy(r->prompt, prompt, sizeof(int32_t) * (size_t)n_prompt);
    r->n_prompt = n_prompt;
    pthread_mutex_init(&r->lock, NULL);
    r->refs = 1;
    *out = r;
    return MS_OK;
out_params:
    req_params_free(&r->params);
out_free:
    free(r);
    return st;
}

void req_retain(req_t *r) { __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED); }

void req_chunk_free(req_chunk_t *c)
{
    if (!c) return;
    free(c->text);
    free(c->ids);
    free(c->logprobs);
    free(c->top);
    free(c->plp);
    free(c->error);
    free(c);
}

void req_release(req_t *r)
{
    if (!r) return;
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (req_chunk_t *c = r->out_head, *n; c; c = n) {
        n = c->next;
        req_chunk_free(c);
    }
    pthread_mutex_destroy(&r->lock);
    req_params_free(&r->params);
    free(r->prompt);
    free(r);
}

req_chunk_t *req_take_chunks(req_t *r)
{
    pthread_mutex_lock(&r->lock);
    req_chunk_t *h = r->out_head;
    r->out_head = r->out_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    return h;
}
