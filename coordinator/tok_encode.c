/* tok_encode.c — text -> ids: BOS/EOS per tokenizer_config.json, added
 * tokens first (never split), then the pre-tokenizer and BPE on the rest.
 *
 * Added tokens are found in two passes as the Rust AddedVocabulary does:
 * tokens with normalized=false on the raw text, then tokens with
 * normalized=true on what is left (after the normalizer, which tok_load
 * requires to be the identity). Both passes are leftmost-longest. */
#include "tok_internal.h"

#include <string.h>

bool tok_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= len) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = tok_utf8_step(s + i, len - i);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

static ms_status_t encode_norm(const tok_t *tok, tok_tls_t *tls, const uint8_t *s, size_t len, tok_ids_t *out)
{
    size_t pos = 0, st, ml;
    int32_t id;
    while (pos < len && tok_trie_find(&tok->added_norm, s + pos, len - pos, &st, &ml, &id)) {
        MS_TRY(tok_pretok_encode(tok, tls, s + pos, st, out));
        MS_TRY(tok_ids_push(out, id));
        pos += st + ml;
    }
    return tok_pretok_encode(tok, tls, s + pos, len - pos, out);
}

static ms_status_t encode_raw(const tok_t *tok, tok_tls_t *tls, const uint8_t *s, size_t len, tok_ids_t *out)
{
    size_t pos = 0, st, ml;
    int32_t id;
    while (pos < len && tok_trie_find(&tok->added_raw, s + pos, len - pos, &st, &ml, &id)) {
        MS_TRY(encode_norm(tok, tls, s + pos, st, out));
        MS_TRY(tok_ids_push(out, id));
        pos += st + ml;
    }
    return encode_norm(tok, tls, s + pos, len - pos, out);
}

ms_status_t tok_encode(const tok_t *tok, const char *text, size_t len, bool add_special_tokens, int32_t **ids,
                       size_t *n)
{
    const uint8_t *s = (const uint8_t *)text;
    if (!tok_utf8_valid(s, len)) return MS_ERR(MS_ERR_INVALID, "tokenizer: input text is not valid UTF-8");
    tok_tls_t *tls = tok_tls_get(tok);
    if (!tls) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory (thread scratch)");

    ms_status_t st;
    tok_ids_t out = {0};
    if (add_special_tokens && tok->add_bos) MS_TRY_GOTO(st, tok_ids_push(&out, tok->bos_id), fail);
    MS_TRY_GOTO(st, encode_raw(tok, tls, s, len, &out), fail);
    if (add_special_tokens && tok->add_eos) MS_TRY_GOTO(st, tok_ids_push(&out, tok->eos_id), fail);
    if (!out.v) { /* an empty result is still a malloc'd pointer */
        MS_TRY_GOTO(st, tok_ids_push(&out, 0), fail);
        out.n = 0;
    }
    *ids = out.v;
    *n = out.n;
    return MS_OK;
fail:
    free(out.v);
    return st;
}
