/* chat_template.c — DeepSeek-V3 / R1 chat prompts rendered natively in C.
 *
 * tokenizer_config.json carries a Jinja template; rather than embed a Jinja
 * engine we recognise DeepSeek's template by the statements that decide the
 * output (checked with spaces removed) and render the same text. A template
 * that lacks any of them is refused at load: a wrong prompt would silently
 * degrade every answer.
 *
 * What the template does, for messages without tool_calls:
 *   bos_token + system contents joined by "\n\n"
 *   user:      "<｜User｜>" + content
 *   assistant: "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
 *              (R1: content after the last "</think>"; right after tool
 *              outputs: "<｜tool▁outputs▁end｜>" + content + EOS text instead)
 *   tool:      first "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>", later
 *              ["\n"] "<｜tool▁output▁begin｜>", then content + "<｜tool▁output▁end｜>"
 *   end:       "<｜tool▁outputs▁end｜>" if the last turn was a tool, else with
 *              add_generation_prompt "<｜Assistant｜>" (R1: + "<think>\n").
 */
#include "tok_internal.h"

#include <stdio.h>
#include <string.h>

#define U "<\xef\xbd\x9cUser\xef\xbd\x9c>"           /* <｜User｜> */
#define A "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"   /* <｜Assistant｜> */
#define EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define TOB "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define TOE "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "end\xef\xbd\x9c>"
#define T1B "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define T1E "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "end\xef\xbd\x9c>"

ms_status_t chat_template_detect(tok_t *tok, const char *path, const char *tmpl)
{
    size_t n = strlen(tmpl);
    char *c = malloc(n + 1);
    if (!c) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (tmpl[i] == ' ') continue;
        if (tmpl[i] == '\\' && tmpl[i + 1] == 'n') { /* the Jinja escape '\n' is a newline */
            c[k++] = '\n';
            i++;
            continue;
        }
        c[k++] = tmpl[i];
    }
    c[k] = 0;

    bool r1 = strstr(c, "{%setcontent=content.split('</think>')[-1]%}") != NULL;
    const char *need[] = {
        "{{bos_token}}{{ns.system_prompt}}",
        "{%setns.system_prompt=ns.system_prompt+'\n\n'+message['content']%}",
        "{{'" U "'+message['content']}}",
        r1 ? "{{'" A "'+content+'" EOS "'}}" : "{{'" A "'+message['content']+'" EOS "'}}",
        "{{'" TOE "'+message['content']+'" EOS "'}}",
        "{{'" TOB T1B "'+message['content']+'" T1E "'}}",
        "{%ifns.is_tool%}{{'" TOE "'}}{%endif%}",
    };
    ms_status_t st = MS_OK;
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!strstr(c, need[i])) {
            st = MS_ERR(MS_ERR_UNSUPPORTED,
                        "%s: chat_template is not a DeepSeek-V3/R1 template (lacks %s); only those are supported",
                        path, need[i]);
            goto out;
        }
    bool gen_plain = strstr(c, "{%ifadd_generation_promptandnotns.is_tool%}{{'" A "'}}{%endif%}") != NULL;
    bool gen_think = strstr(c, "{%ifadd_generation_promptandnotns.is_tool%}{{'" A "<think>\n'}}{%endif%}") != NULL;
    if (gen_plain == gen_think) {
        st = MS_ERR(MS_ERR_UNSUPPORTED, "%s: chat_template has an unrecognised generation prompt", path);
        goto out;
    }
    tok->chat_strip_reasoning = r1;
    tok->chat_think_prefix = gen_think;
    tok->chat_tool_nl = strstr(c, "{{'\n" T1B "'+message['content']+'" T1E "'}}") != NULL;
    if (!tok->chat_tool_nl && !strstr(c, "{{'" T1B "'+message['content']+'" T1E "'}}")) {
        st = MS_ERR(MS_ERR_UNSUPPORTED, "%s: chat_template has an unrecognised tool output format", path);
        goto out;
    }
    tok->flavor = (r1 || gen_think) ? CHAT_FLAVOR_R1 : CHAT_FLAVOR_V3;
out:
    free(c);
    return st;
}

chat_flavor_t chat_flavor(const tok_t *tok) { return tok->flavor; }

typedef struct {
    char *v;
    size_t n, cap;
    bool oom;
} sb_t;

static void sb_add(sb_t *b, const char *s, size_t l)
{
    if (b->oom) return;
    if (b->n + l + 1 > b->cap) {
        size_t nc = (b->n + l + 1) * 2;
        char *nv = realloc(b->v, nc);
        if (!nv) {
            b->oom = true;
            return;
        }
        b->v = nv, b->cap = nc;
    }
    memcpy(b->v + b->n, s, l);
    b->n += l;
    b->v[b->n] = 0;
}

static void sb_str(sb_t *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Text after the last "</think>", as Jinja's content.split('</think>')[-1]. */
static const char *after_reasoning(const char *s)
{
    const char *p, *last = NULL;
    for (p = strstr(s, "</think>"); p; p = strstr(p + 1, "</think>")) last = p;
    return last ? last + strlen("</think>") : s;
}

ms_status_t chat_render(const tok_t *tok, const chat_msg_t *msgs, size_t n, bool add_generation_prompt,
                        char **prompt)
{
    if ((int)tok->flavor < 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "tokenizer_config.json has no chat_template: chat is unavailable");
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")))
            return MS_ERR(MS_ERR_INVALID, "messages[%zu].role '%s' is not system, user, assistant or tool", i,
                          r ? r : "(null)");
        if (!msgs[i].content) return MS_ERR(MS_ERR_INVALID, "messages[%zu].content is missing", i);
    }

    sb_t b = {0};
    sb_str(&b, tok->bos_text);
    bool first_sys = true;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "system")) {
            if (!first_sys) sb_str(&b, "\n\n");
            sb_str(&b, msgs[i].content);
            first_sys = false;
        }
    bool is_tool = false, output_first = true;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(r, "user")) {
            is_tool = false;
            sb_str(&b, U);
            sb_str(&b, c);
        } else if (!strcmp(r, "assistant")) {
            if (is_tool) {
                sb_str(&b, TOE);
                sb_str(&b, c);
                sb_str(&b, EOS);
                is_tool = false;
            } else {
                sb_str(&b, A);
                sb_str(&b, tok->chat_strip_reasoning ? after_reasoning(c) : c);
                sb_str(&b, EOS);
            }
        } else if (!strcmp(r, "tool")) {
            is_tool = true;
            if (output_first) {
                sb_str(&b, TOB T1B);
                output_first = false;
            } else {
                if (tok->chat_tool_nl) sb_str(&b, "\n");
                sb_str(&b, T1B);
            }
            sb_str(&b, c);
            sb_str(&b, T1E);
        }
    }
    if (is_tool) sb_str(&b, TOE);
    if (add_generation_prompt && !is_tool) {
        sb_str(&b, A);
        if (tok->chat_think_prefix) sb_str(&b, "<think>\n");
    }
    if (b.oom || !b.v) {
        free(b.v);
        return MS_ERR(MS_ERR_NOMEM, "chat template: out of memory");
    }
    *prompt = b.v;
    return MS_OK;
}
