/* test_output.c — rank-0 output processing with the real DeepSeek-V3
 * tokenizer: detokenized text, stop strings (held back, never emitted, also
 * across token boundaries), EOS / stop_token_ids / ignore_eos / min_tokens,
 * max_tokens and the sequence limit, stream_interval batching, logprobs,
 * early end. Also the coord_t hub: FIFO, 429 bound, drain, notify, wait.
 * argv[1]: directory with tokenizer.json (scripts/setup.sh puts it there). */
#include "../test.h"
#include "coordinator/output.h"

#include <pthread.h>
#include <unistd.h>

static tok_t *g_tok;
static int g_notified;
static void on_notify(void *arg) { __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED); }

typedef struct {
    char text[4096];
    int n_ids, n_chunks, chunk_ids[256];
    req_finish_t finish;
    bool has_logprobs;
} got_t;

static req_t *mk(const req_params_t *p)
{
    int32_t prompt[3] = {0, 1, 2};
    req_t *r = NULL;
    T_CHECK(req_create(p, prompt, 3, &r) == MS_OK);
    return r;
}

static req_params_t defaults(void)
{
    req_params_t p = {.temperature = 0, .top_p = 1, .max_tokens = 1000, .skip_special_tokens = true, .logprobs = -1,
                      .stream_interval = 1};
    return p;
}

static void drain(req_t *r, got_t *g)
{
    for (req_chunk_t *c = req_take_chunks(r), *n; c; c = n) {
        n = c->next;
        T_CHECK(c->text != NULL && strlen(c->text) == c->text_len);
        strncat(g->text, c->text, sizeof g->text - strlen(g->text) - 1);
        if (g->n_chunks < 256) g->chunk_ids[g->n_chunks] = c->n_ids;
        g->n_chunks++;
        g->n_ids += c->n_ids;
        if (c->logprobs) g->has_logprobs = true;
        if (c->finish) g->finish = c->finish;
        req_chunk_free(c);
    }
}

/* Feed `ids` one by one until the request finishes; returns tokens consumed. */
static int run(coord_t *co, req_t *r, const int32_t *ids, int n, int seq_limit, got_t *g)
{
    memset(g, 0, sizeof *g);
    out_ctx_t ctx = {.tok = g_tok, .eos_id = tok_eos_id(g_tok), .seq_limit = seq_limit};
    out_seq_t *o;
    T_CHECK(out_seq_create(&ctx, r, &o) == MS_OK);
    int i;
    for (i = 0; i < n; i++) {
        proto_result_t res = {.token = ids[i], .logprob = -0.5f, .n_top = 0};
        req_finish_t f;
        T_CHECK(out_seq_token(o, co, &res, r->n_prompt + i + 1, &f) == MS_OK);
        drain(r, g);
        if (f) {
            T_CHECK(out_seq_finished(o) && f == g->finish);
            i++;
            break;
        }
    }
    if (!out_seq_finished(o)) out_seq_end(o, co, REQ_FINISH_ABORT, NULL);
    drain(r, g);
    T_CHECK(r->finished);
    T_CHECK(r->n_completion == i);
    out_seq_destroy(o);
    return i;
}

static void encode(const char *s, int32_t **ids, int *n)
{
    size_t nn = 0;
    T_CHECK(tok_encode(g_tok, s, strlen(s), false, ids, &nn) == MS_OK);
    *n = (int)nn;
}

static void test_text_and_stops(coord_t *co)
{
    const char *s = "Hello world, this is a test of stop strings. 你好，世界! 🚀 Done.";
    int32_t *ids;
    int n;
    encode(s, &ids, &n);
    got_t g;

    /* plain: everything, finish length at max_tokens; one chunk when not streaming */
    req_params_t p = defaults();
    p.max_tokens = n;
    req_t *r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == n);
    T_CHECK_MSG(!strcmp(g.text, s), "got '%s'", g.text);
    T_CHECK(g.finish == REQ_FINISH_LENGTH && g.n_ids == n && g.n_chunks == 1);
    req_release(r);

    /* a stop string spanning tokens: text before it only */
    char *stops[2] = {"is a test", "zzz"};
    p = defaults();
    p.stop[0] = stops[0];
    p.stop[1] = stops[1];
    p.n_stop = 2;
    p.stream = true;
    r = mk(&p);
    int used = run(co, r, ids, n, 1 << 20, &g);
    T_CHECK_MSG(!strcmp(g.text, "Hello world, this "), "got '%s'", g.text);
    T_CHECK(g.finish == REQ_FINISH_STOP && used < n && g.n_ids == used);
    req_release(r);

    /* a stop string that never completes: held text is released in the end,
     * and no streamed chunk ever contained a partial match prematurely lost */
    char *stops2[1] = {"Done!"};
    p = defaults();
    p.stop[0] = stops2[0];
    p.n_stop = 1;
    p.stream = true;
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == n);
    T_CHECK_MSG(!strcmp(g.text, s), "got '%s'", g.text);
    T_CHECK(g.finish == REQ_FINISH_ABORT); /* run() ended it after the ids ran out */
    req_release(r);

    /* multi-byte stop string */
    char *stops3[1] = {"世界"};
    p = defaults();
    p.stop[0] = stops3[0];
    p.n_stop = 1;
    r = mk(&p);
    run(co, r, ids, n, 1 << 20, &g);
    T_CHECK_MSG(!strcmp(g.text, "Hello world, this is a test of stop strings. 你好，"), "got '%s'", g.text);
    req_release(r);

    /* stop strings are not checked before min_tokens */
    p = defaults();
    p.stop[0] = stops[0];
    p.n_stop = 1;
    p.min_tokens = n;
    p.max_tokens = n;
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == n);
    T_CHECK(!strcmp(g.text, s) && g.finish == REQ_FINISH_LENGTH);
    req_release(r);

    /* sequence limit: prompt 3 + 5 tokens */
    p = defaults();
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 8, &g) == 5);
    T_CHECK(g.finish == REQ_FINISH_LENGTH);
    req_release(r);

    /* stream_interval 3: chunks of 1 (first token), then 3, 3, ... */
    p = defaults();
    p.stream = true;
    p.stream_interval = 3;
    p.max_tokens = 11;
    p.logprobs = 0;
    r = mk(&p);
    run(co, r, ids, n, 1 << 20, &g);
    T_CHECK_MSG(g.n_chunks == 5 && g.chunk_ids[0] == 1 && g.chunk_ids[1] == 3 && g.chunk_ids[3] == 3 &&
                    g.chunk_ids[4] == 1,
                "%d chunks", g.n_chunks);
    T_CHECK(g.has_logprobs && g.n_ids == 11);
    req_release(r);
    free(ids);
}

static void test_eos(coord_t *co)
{
    int32_t eos = tok_eos_id(g_tok);
    T_CHECK(eos >= 0);
    int32_t *w;
    int nw;
    encode("Hi there", &w, &nw);
    int32_t ids[16];
    int n = 0;
    for (int i = 0; i < nw; i++) ids[n++] = w[i];
    ids[n++] = eos;
    ids[n++] = w[0];
    free(w);
    got_t g;

    req_params_t p = defaults();
    req_t *r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == nw + 1); /* EOS counts as a completion token */
    T_CHECK(!strcmp(g.text, "Hi there") && g.finish == REQ_FINISH_STOP);
    req_release(r);

    p = defaults();
    p.ignore_eos = true;
    p.skip_special_tokens = false;
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == n);
    T_CHECK_MSG(strstr(g.text, "end") != NULL, "EOS text shown without skip_special_tokens: '%s'", g.text);
    req_release(r);

    /* min_tokens beyond the EOS position: EOS does not stop */
    p = defaults();
    p.min_tokens = nw + 1;
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == n);
    req_release(r);

    /* stop_token_ids: the second word's token */
    int32_t stop_id = ids[1];
    p = defaults();
    p.stop_token_ids = &stop_id;
    p.n_stop_token_ids = 1;
    r = mk(&p);
    T_CHECK(run(co, r, ids, n, 1 << 20, &g) == 2);
    T_CHECK(!strcmp(g.text, "Hi") && g.finish == REQ_FINISH_STOP);
    req_release(r);

    /* early end (error) carries the message and what was pending */
    p = defaults();
    r = mk(&p);
    out_ctx_t ctx = {.tok = g_tok, .eos_id = eos, .seq_limit = 100};
    out_seq_t *o;
    T_CHECK(out_seq_create(&ctx, r, &o) == MS_OK);
    proto_result_t res = {.token = ids[0]};
    req_finish_t f;
    T_CHECK(out_seq_token(o, co, &res, 4, &f) == MS_OK && f == REQ_FINISH_NONE);
    out_seq_end(o, co, REQ_FINISH_ERROR, "step failed");
    out_seq_end(o, co, REQ_FINISH_ABORT, NULL); /* no-op */
    req_chunk_t *c = req_take_chunks(r);
    T_CHECK(c && !c->next && c->finish == REQ_FINISH_ERROR && c->error && !strcmp(c->error, "step failed"));
    T_CHECK(c && !strcmp(c->text, "Hi"));
    for (req_chunk_t *n2; c; c = n2) {
        n2 = c->next;
        req_chunk_free(c);
    }
    out_seq_destroy(o);
    req_release(r);
}

static void *submitter(void *arg)
{
    coord_t *co = arg;
    usleep(50000);
    req_params_t p = defaults();
    req_t *r = mk(&p);
    T_CHECK(coord_submit(co, r) == MS_OK);
    req_release(r);
    return NULL;
}

static void test_coord(void)
{
    coord_t *co;
    T_CHECK(coord_create(3, &co) == MS_OK);
    req_params_t p = defaults();
    req_t *r[5];
    for (int i = 0; i < 5; i++) {
        r[i] = mk(&p);
        r[i]->id = (uint64_t)i;
    }
    T_CHECK(coord_submit(co, r[0]) == MS_OK && coord_submit(co, r[1]) == MS_OK && coord_submit(co, r[2]) == MS_OK);
    T_CHECK(coord_submit(co, r[3]) == MS_ERR_NOMEM); /* the 429 bound */
    T_CHECK(r[3]->refs == 1 && r[0]->refs == 2);
    coord_stats_t st;
    coord_stats_get(co, &st);
    T_CHECK(st.waiting == 3);
    req_t *got[8];
    T_CHECK(coord_take_new(co, got, 2) == 2 && got[0] == r[0] && got[1] == r[1]); /* FIFO */
    T_CHECK(coord_submit(co, r[3]) == MS_ERR_NOMEM); /* taken ones still wait in the scheduler */
    coord_stats_t pub = {.waiting = 0, .running = 2};
    coord_stats_set(co, &pub);
    T_CHECK(coord_submit(co, r[3]) == MS_OK);
    T_CHECK(coord_take_new(co, got + 2, 8) == 2 && got[2] == r[2] && got[3] == r[3]);
    coord_cancel(co, r[2]);
    T_CHECK(req_is_cancelled(r[2]) && !req_is_cancelled(r[1]));

    /* wait: returns at once on pending work, sleeps otherwise, wakes on submit */
    double t0 = out_now();
    coord_wait(co, 100);
    T_CHECK(out_now() - t0 >= 0.09);
    pthread_t th;
    pthread_create(&th, NULL, submitter, co);
    t0 = out_now();
    coord_wait(co, 5000);
    double dt = out_now() - t0;
    T_CHECK_MSG(dt < 2.0 && coord_n_new(co) == 1, "woke after %.3f s", dt);
    pthread_join(th, NULL);

    /* notify on chunk push */
    g_notified = 0;
    coord_set_notify(co, on_notify, &g_notified);
    req_chunk_t *ch = calloc(1, sizeof *ch);
    ch->text = strdup("x");
    ch->finish = REQ_FINISH_STOP;
    coord_push_chunk(co, r[0], ch);
    T_CHECK(g_notified == 1 && r[0]->finished);

    /* drain: refuses new work, says so in stats, wakes the waiter */
    coord_stop(co);
    T_CHECK(coord_stopping(co));
    T_CHECK(coord_submit(co, r[4]) == MS_ERR_INTERNAL);
    coord_stats_get(co, &st);
    T_CHECK(st.draining);
    coord_wait(co, -1); /* must not block */
    for (int i = 0; i < 4; i++) req_release(got[i]);
    coord_destroy(co); /* releases the one still queued */
    for (int i = 0; i < 5; i++) {
        T_CHECK(r[i]->refs == 1);
        req_release(r[i]);
    }
}

int main(int argc, char **argv)
{
    test_coord();
    if (argc < 2 || access(argv[1], R_OK) != 0) {
        fprintf(stderr, "no tokenizer directory %s: run scripts/setup.sh\n", argc > 1 ? argv[1] : "(none given)");
        return 1;
    }
    if (tok_load(argv[1], &g_tok) != MS_OK) {
        fprintf(stderr, "cannot load tokenizer from %s\n", argv[1]);
        return 1;
    }
    coord_t *co;
    T_CHECK(coord_create(0, &co) == MS_OK);
    test_text_and_stops(co);
    test_eos(co);
    coord_destroy(co);
    tok_free(g_tok);
    return t_done();
}
