/* tok.h — DeepSeek-V3/R1 tokenizer: byte-level BPE from tokenizer.json,
 * detokenizer (one-shot and streaming) and the chat template.
 *
 * The reference is the Hugging Face Rust `tokenizers` library loading
 * tokenizer.json, plus BOS when tokenizer_config.json says add_bos_token and the
 * caller asks for special tokens (what transformers v4's LlamaTokenizerFast did).
 *
 * Threads: a tok_t is read-only after tok_load and may be shared by any number
 * of threads (each thread keeps its own small word cache and regex scratch,
 * freed when the thread exits). A tok_stream_t belongs to one request and is
 * used by one thread at a time.
 *
 * Ownership: output buffers (`ids`, `text`, `prompt`) are malloc'd and owned by
 * the caller (free()); they are written only on success.
 */
#ifndef MS_TOK_H
#define MS_TOK_H

#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tok tok_t;
typedef struct tok_stream tok_stream_t;

/* Load MODEL_DIR/tokenizer.json and MODEL_DIR/tokenizer_config.json. Anything
 * this implementation cannot reproduce exactly (another model type, a
 * normalizer, a pre-tokenizer or split behaviour other than the DeepSeek ones,
 * a chat template that is not DeepSeek's) is MS_ERR_UNSUPPORTED with a message
 * naming the file and key — never a silently different tokenization. */
ms_status_t tok_load(const char *model_dir, tok_t **out);
void tok_free(tok_t *tok);

/* Text (UTF-8, `len` bytes, may hold NUL) -> token ids. Added/special tokens in
 * the text are matched first and never split. add_special_tokens: prepend BOS
 * (and append EOS) as tokenizer_config.json's add_bos_token/add_eos_token say.
 * Invalid UTF-8 -> MS_ERR_INVALID. */
ms_status_t tok_encode(const tok_t *tok, const char *text, size_t len, bool add_special_tokens,
                       int32_t **ids, size_t *n);

/* Ids -> text (NUL-terminated; `len` excludes the NUL). Byte sequences that are
 * not valid UTF-8 become U+FFFD as Rust's String::from_utf8_lossy does. Ids
 * without a token (e.g. the padding rows 128815..129279 of the embedding) are
 * dropped, as the Rust library does. skip_special drops special tokens (BOS,
 * EOS, ...; not <｜User｜>/<｜Assistant｜>, which are added but not special). */
ms_status_t tok_decode(const tok_t *tok, const int32_t *ids, size_t n, bool skip_special,
                       char **text, size_t *len);

size_t tok_vocab_size(const tok_t *tok);  /* highest token id + 1 (128815 for DeepSeek-V3) */
int32_t tok_bos_id(const tok_t *tok);     /* -1 when the config names none */
int32_t tok_eos_id(const tok_t *tok);
bool tok_is_special(const tok_t *tok, int32_t id);
/* The bytes a single token decodes to (not NUL-terminated, may be a partial
 * UTF-8 sequence); NULL for an id without a token. Borrowed from tok. */
const char *tok_token_bytes(const tok_t *tok, int32_t id, size_t *len);
/* The id of an added token given its exact content ("<｜end▁of▁sentence｜>"),
 * or of a plain vocabulary token given its decoded bytes; -1 when none. */
int32_t tok_token_id(const tok_t *tok, const char *content);

/* Incremental detokenizer. Push ids one at a time; each push returns the new
 * text that is complete (never a broken UTF-8 sequence: an incomplete tail is
 * held until the next push or flush). The concatenation of every push's text
 * and the flush's text equals tok_decode of all ids with the same
 * skip_special. Returned text is borrowed and valid until the next call. */
ms_status_t tok_stream_create(const tok_t *tok, bool skip_special, tok_stream_t **out);
ms_status_t tok_stream_push(tok_stream_t *st, int32_t id, const char **text, size_t *len);
ms_status_t tok_stream_flush(tok_stream_t *st, const char **text, size_t *len);
void tok_stream_destroy(tok_stream_t *st);

/* Chat template. */
typedef struct {
    const char *role;    /* "system", "user", "assistant" or "tool" */
    const char *content; /* UTF-8, NUL-terminated */
} chat_msg_t;

typedef enum {
    CHAT_FLAVOR_V3 = 0, /* DeepSeek-V3: assistant history as is, generation prompt <｜Assistant｜> */
    CHAT_FLAVOR_R1,     /* DeepSeek-R1: drops history reasoning before </think>; may add <think>\n */
} chat_flavor_t;

chat_flavor_t chat_flavor(const tok_t *tok);

/* Render messages to the prompt text exactly as tokenizer_config.json's Jinja
 * chat_template does (BOS text, system prompts joined by "\n\n", user/assistant
 * turns, tool outputs, generation prompt). Encode the result with
 * add_special_tokens=false: the BOS is already in the text. Unknown role or
 * NULL content -> MS_ERR_INVALID. */
ms_status_t chat_render(const tok_t *tok, const chat_msg_t *msgs, size_t n, bool add_generation_prompt,
                        char **prompt);

#endif
