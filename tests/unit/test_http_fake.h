/* test_http_fake.h — a byte-level fake tokenizer for gateway unit tests (no
 * tokenizer.json needed): id 0 = BOS "<s>", 1 = EOS "</s>", 2 = "<pad>",
 * byte b = id b + 3; vocab 259. Chat renders "<s>" + "role: content\n" per
 * message + "assistant:" for the generation prompt. */
#ifndef MS_TEST_HTTP_FAKE_H
#define MS_TEST_HTTP_FAKE_H

#include <stdlib.h>
#include <string.h>

#include "coordinator/openai.h"

#define FAKE_VOCAB 259

static const char *const fake_special[3] = {"<s>", "</s>", "<pad>"};

static ms_status_t fake_encode(void *a, const char *t, size_t len, bool sp, int32_t **ids, size_t *n)
{
    int32_t *v = malloc(sizeof(int32_t) * (len + 1));
    if (!v) return MS_ERR_NOMEM;
    size_t k = 0;
    if (sp) v[k++] = 0;
    for (size_t i = 0; i < len; i++) v[k++] = (unsigned char)t[i] + 3;
    *ids = v;
    *n = k;
    return MS_OK;
}

static ms_status_t fake_decode(void *a, const int32_t *ids, size_t n, bool skip, char **t, size_t *len)
{
    char *s = malloc(n * 6 + 1);
    if (!s) return MS_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 3) {
            if (!skip) {
                strcpy(s + k, fake_special[ids[i]]);
                k += strlen(fake_special[ids[i]]);
            }
        } else {
            s[k++] = (char)(ids[i] - 3);
        }
    }
    s[k] = 0;
    *t = s;
    *len = k;
    return MS_OK;
}

static ms_status_t fake_chat(void *a, const oai_msg_t *m, size_t n, bool gen, char **p)
{
    size_t total = 16;
    for (size_t i = 0; i < n; i++) total += strlen(m[i].role) + strlen(m[i].content) + 4;
    char *s = malloc(total);
    if (!s) return MS_ERR_NOMEM;
    strcpy(s, "<s>");
    for (size_t i = 0; i < n; i++) {
        strcat(s, m[i].role);
        strcat(s, ": ");
        strcat(s, m[i].content);
        strcat(s, "\n");
    }
    if (gen) strcat(s, "assistant:");
    *p = s;
    return MS_OK;
}

static const char *fake_token_bytes(void *a, int32_t id, size_t *len)
{
    static char bytes[256];
    static int init;
    if (!init) {
        for (int i = 0; i < 256; i++) bytes[i] = (char)i;
        init = 1;
    }
    if (id < 0 || id >= FAKE_VOCAB) return NULL;
    if (id < 3) {
        *len = strlen(fake_special[id]);
        return fake_special[id];
    }
    *len = 1;
    return &bytes[id - 3];
}

static const oai_tok_ops_t fake_tok_ops = {
    .arg = NULL, .encode = fake_encode, .decode = fake_decode, .chat = fake_chat, .token_bytes = fake_token_bytes};

#endif
