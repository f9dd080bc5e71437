/* http_tok.c — the tokenizer endpoints over HTTP: POST /tokenize, POST
 * /detokenize, GET /tokenizer_info (the JSON work is openai_tokenize.c).
 * They run on the gateway thread and never reach the engine, so they answer
 * while the model loads and while the engine is busy. */
#include "http_internal.h"

typedef bool (*tok_fn_t)(const oai_ctx_t *, const char *, size_t, json_t **, oai_error_t *);

static void tok_call(struct http_server *srv, struct evhttp_request *req, tok_fn_t fn)
{
    size_t len;
    const char *body = http_body(req, &len);
    if (!body) {
        http_reply_errorf(srv, req, 500, "internal_error", "out of memory reading the request body");
        return;
    }
    json_t *out = NULL;
    oai_error_t err;
    if (!fn(&srv->oai, body, len, &out, &err)) {
        http_reply_error(srv, req, &err);
        return;
    }
    http_reply_json(srv, req, 200, out);
}

void http_tok_tokenize(struct http_server *srv, struct evhttp_request *req) { tok_call(srv, req, oai_tokenize); }

void http_tok_detokenize(struct http_server *srv, struct evhttp_request *req) { tok_call(srv, req, oai_detokenize); }

void http_tok_info(struct http_server *srv, struct evhttp_request *req)
{
    http_reply_json(srv, req, 200, oai_tokenizer_info(&srv->oai));
}
