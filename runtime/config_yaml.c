/* config_yaml.c — reads a TensorRT-LLM extra_llm_api_options YAML file onto
 * ms_config_t, using the key table in config.c.
 *
 * libyaml's document API gives a node tree with source marks, so every error
 * names the file, the 1-based line of the offending key or value, and the
 * dotted key path. libyaml does not reject duplicate keys (PyYAML silently
 * keeps the last one); we do, because a duplicated key in a tuning file is
 * almost always a mistake that would otherwise go unnoticed.
 *
 * Merging: a key present in the file overrides the value that came from the
 * command line or the defaults, key by key. (trtllm-serve replaces a whole
 * sub-config object such as kv_cache_config, which silently drops
 * --kv_cache_free_gpu_memory_fraction; configs/README.md documents the
 * difference.)
 */
#include "config_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

typedef struct {
    const char *path;
    yaml_document_t *doc;
    ms_config_t *cfg;
    cfg_origin_t *origin;
} yctx_t;

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* YAML 1.1 null as PyYAML reads it: a plain `null`, `Null`, `NULL`, `~` or nothing. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void describe(const yaml_node_t *n, char *buf, size_t sz)
{
    if (n->type == YAML_MAPPING_NODE) snprintf(buf, sz, "a map");
    else if (n->type == YAML_SEQUENCE_NODE) snprintf(buf, sz, "a list");
    else if (is_null(n)) snprintf(buf, sz, "null");
    else {
        snprintf(buf, sz, "'%s'", scalar(n));
        if (strlen(scalar(n)) + 2 >= sz && sz > 5) memcpy(buf + sz - 5, "...'", 5);
    }
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static ms_status_t unknown_key(yctx_t *c, const yaml_node_t *kn, const char *full, const cfg_key_t *keys,
                               bool top)
{
    const char *name = scalar(kn);
    const cfg_key_t *best = NULL;
    size_t best_d = 99, count = 0;
    for (const cfg_key_t *k = keys; k->name; k++) {
        size_t d = edit_distance(name, k->name);
        if (d < best_d) best_d = d, best = k;
        count++;
    }
    char hint[700] = "";
    if (best && best_d <= 3 && best_d * 3 <= strlen(best->name) + 3) {
        snprintf(hint, sizeof hint, "; did you mean '%s'?", best->name);
    } else if (!top && count <= 8) {
        size_t used = (size_t)snprintf(hint, sizeof hint, "; known keys here:");
        for (const cfg_key_t *k = keys; k->name && used < sizeof hint; k++)
            used += (size_t)snprintf(hint + used, sizeof hint - used, "%s %s", k == keys ? "" : ",", k->name);
    } else {
        snprintf(hint, sizeof hint, "; configs/README.md lists the supported keys");
    }
    return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': unknown key%s", c->path, node_line(kn), full, hint);
}

static ms_status_t walk_map(yctx_t *c, const yaml_node_t *map, const cfg_key_t *keys, const char *prefix);
static ms_status_t map_from_file(yctx_t *c, const yaml_node_t *vn, const char *full, const cfg_key_t *k);

static ms_status_t bad_value(yctx_t *c, const yaml_node_t *vn, const char *full, const cfg_key_t *k)
{
    char expect[600], got[96];
    cfg_expect(k, expect, sizeof expect);
    describe(vn, got, sizeof got);
    return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': expected %s, got %s", c->path, node_line(vn), full, expect, got);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ms_status_t set_intlist(yctx_t *c, const yaml_node_t *vn, const char *full, const cfg_key_t *k)
{
    int *arr = (int *)((char *)c->cfg + k->off);
    int *count = (int *)((char *)c->cfg + k->off2);
    if (is_null(vn) && (k->flags & CFG_NULLABLE)) {
        *count = 0;
        return MS_OK;
    }
    if (vn->type != YAML_SEQUENCE_NODE) return bad_value(c, vn, full, k);
    int n = 0;
    for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        long long v;
        if (item->type != YAML_SCALAR_NODE || is_null(item) || cfg_int_parse(scalar(item), &v) != 0 ||
            v < k->min || (double)v > k->max)
            return bad_value(c, item, full, k);
        if ((size_t)n >= k->size)
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': more than %zu entries", c->path, node_line(item), full,
                          k->size);
        arr[n++] = (int)v;
    }
    /* TensorRT-LLM sorts the list; duplicates collapse. */
    qsort(arr, (size_t)n, sizeof *arr, cmp_int);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || arr[u - 1] != arr[i]) arr[u++] = arr[i];
    *count = u;
    return MS_OK;
}

/* moe_config.load_balancer.initial_global_assignments: {layer: [expert per
 * global slot]}. Shape is checked here (integer keys, each layer once, lists
 * of integers of one length); what needs the model (expert range, MoE
 * layers, a rank holding an expert twice) is cfg_check_placement's. */
static ms_status_t set_assign(yctx_t *c, const yaml_node_t *vn, const char *full, const cfg_key_t *k)
{
    typeof(c->cfg->moe.load_balancer) *lb = &c->cfg->moe.load_balancer;
    if (is_null(vn)) {
        lb->n_assign = lb->assign_len = 0;
        return MS_OK;
    }
    if (vn->type != YAML_MAPPING_NODE) return bad_value(c, vn, full, k);
    int n = 0, len = -1;
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *ln = yaml_document_get_node(c->doc, p->value);
        long long layer;
        if (kn->type != YAML_SCALAR_NODE || cfg_int_parse(scalar(kn), &layer) != 0 || layer < 0 ||
            layer >= MS_CFG_LB_MAX_LAYERS) {
            char got[96];
            describe(kn, got, sizeof got);
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': expected a layer index in [0, %d), got %s", c->path,
                          node_line(kn), full, MS_CFG_LB_MAX_LAYERS, got);
        }
        for (int i = 0; i < n; i++)
            if (lb->assign_layer[i] == layer)
                return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': layer %lld given twice", c->path, node_line(kn), full,
                              layer);
        if (ln->type != YAML_SEQUENCE_NODE)
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s.%lld': expected a list of expert ids, one per slot", c->path,
                          node_line(ln), full, layer);
        int m = (int)(ln->data.sequence.items.top - ln->data.sequence.items.start);
        if (len < 0) len = m;
        if (m != len || m == 0)
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s.%lld': %d expert ids, but the first layer listed has %d "
                          "(one per slot: num_slots)", c->path, node_line(ln), full, layer, m, len);
        if ((size_t)(n + 1) * (size_t)len > MS_CFG_LB_MAX_ENTRIES)
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': more than %d expert ids in all", c->path, node_line(ln),
                          full, MS_CFG_LB_MAX_ENTRIES);
        for (int s = 0; s < m; s++) {
            const yaml_node_t *item = yaml_document_get_node(c->doc, ln->data.sequence.items.start[s]);
            long long e;
            if (item->type != YAML_SCALAR_NODE || cfg_int_parse(scalar(item), &e) != 0 || e < 0 || e > 32767) {
                char got[96];
                describe(item, got, sizeof got);
                return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s.%lld': slot %d: expected an expert id >= 0, got %s",
                              c->path, node_line(item), full, layer, s, got);
            }
            lb->assign[(size_t)n * len + s] = (int16_t)e;
        }
        lb->assign_layer[n++] = (int16_t)layer;
    }
    lb->n_assign = n;
    lb->assign_len = n ? len : 0;
    snprintf(lb->assign_where, sizeof lb->assign_where, "%s:%d: ", c->path, node_line(vn));
    return MS_OK;
}

/* Required keys of a map that was given; reported at the map's own key. */
static ms_status_t check_required(yctx_t *c, const yaml_node_t *kn, const yaml_node_t *map, const cfg_key_t *keys,
                                  const char *prefix)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
    for (const cfg_key_t *k = keys; k->name; k++) {
        if (!(k->flags & CFG_REQUIRED)) continue;
        bool seen = false;
        for (yaml_node_pair_t *p = start; p < top && !seen; p++) {
            const yaml_node_t *pk = yaml_document_get_node(c->doc, p->key);
            seen = pk->type == YAML_SCALAR_NODE && !strcmp(scalar(pk), k->name);
        }
        if (!seen) {
            char expect[600];
            cfg_expect(k, expect, sizeof expect);
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s.%s': missing (expected %s)", c->path, node_line(kn),
                          prefix, k->name, expect);
        }
    }
    return MS_OK;
}

static ms_status_t set_value(yctx_t *c, const yaml_node_t *kn, const yaml_node_t *vn, const char *full,
                             const cfg_key_t *k)
{
    if (k->flags & CFG_IGNORED)
        MS_WARN("%s:%d: key '%s' is accepted for TensorRT-LLM compatibility and ignored by moeserve", c->path,
                node_line(kn), full);
    if (k->kind == CK_MAP) {
        bool *enabled = k->off == CFG_NO_FIELD ? NULL : (bool *)((char *)c->cfg + k->off);
        if (is_null(vn) && (k->flags & CFG_NULLABLE)) {
            if (enabled) *enabled = false;
            return MS_OK;
        }
        if ((k->flags & CFG_FILE) && vn->type == YAML_SCALAR_NODE && scalar(vn)[0])
            return map_from_file(c, vn, full, k);
        if (vn->type != YAML_MAPPING_NODE) return bad_value(c, vn, full, k);
        if (enabled) *enabled = true;
        MS_TRY(walk_map(c, vn, k->children, full));
        MS_TRY(check_required(c, kn, vn, k->children, full));
        if (k->children && !strcmp(full, "cuda_graph_config")) {
            /* TensorRT-LLM: max_batch_size is max(batch_sizes) when only the list is
             * given, and must agree with it when both are. */
            ms_config_t *g = c->cfg;
            int n = g->cuda_graph.n_batch_sizes;
            if (n > 0) {
                int mx = g->cuda_graph.batch_sizes[n - 1];
                if (g->cuda_graph.max_batch_size == 0) g->cuda_graph.max_batch_size = mx;
                else if (g->cuda_graph.max_batch_size != mx)
                    return MS_ERR(MS_ERR_INVALID,
                                  "%s:%d: key 'cuda_graph_config.max_batch_size': %d disagrees with the largest "
                                  "of batch_sizes (%d)",
                                  c->path, node_line(vn), g->cuda_graph.max_batch_size, mx);
            }
        }
        return MS_OK;
    }
    if (k->kind == CK_INTLIST) return set_intlist(c, vn, full, k);
    if (k->kind == CK_ASSIGN) return set_assign(c, vn, full, k);
    if (vn->type != YAML_SCALAR_NODE) return bad_value(c, vn, full, k);
    char why[800];
    if (cfg_value_set(k, scalar(vn), is_null(vn), c->cfg, why, sizeof why) != 0)
        return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': %s", c->path, node_line(vn), full, why);
    return MS_OK;
}

static const char *canon_name(const cfg_key_t *k) { return k->canon ? k->canon : k->name; }

static ms_status_t walk_map(yctx_t *c, const yaml_node_t *map, const cfg_key_t *keys, const char *prefix)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        const yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
        char full[512];
        if (kn->type != YAML_SCALAR_NODE) {
            char got[96];
            describe(kn, got, sizeof got);
            return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': a key must be a plain name, got %s", c->path,
                          node_line(kn), prefix[0] ? prefix : "(top level)", got);
        }
        snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", scalar(kn));
        const cfg_key_t *k = NULL;
        for (const cfg_key_t *q = keys; q->name; q++)
            if (!strcmp(q->name, scalar(kn))) {
                k = q;
                break;
            }
        if (!k) return unknown_key(c, kn, full, keys, prefix[0] == '\0');
        /* Duplicates, aliases included (attn_backend == attention_backend). */
        for (yaml_node_pair_t *q = start; q < p; q++) {
            const yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
            if (qk->type != YAML_SCALAR_NODE) continue;
            const cfg_key_t *qe = NULL;
            for (const cfg_key_t *e = keys; e->name; e++)
                if (!strcmp(e->name, scalar(qk))) qe = e;
            if (qe && !strcmp(canon_name(qe), canon_name(k)))
                return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': duplicate key (first given as '%s' at line %d)",
                              c->path, node_line(kn), full, scalar(qk), node_line(qk));
        }
        MS_TRY(set_value(c, kn, vn, full, k));
        if (c->origin && prefix[0] == '\0') {
            if (!strcmp(k->name, "tensor_parallel_size")) c->origin->line_tp = node_line(kn);
            if (!strcmp(k->name, "moe_expert_parallel_size")) c->origin->line_ep = node_line(kn);
        }
        if (c->origin && !strcmp(full, "moe_config.load_balancer.num_slots")) {
            c->origin->line_slots = node_line(kn);
            c->origin->slots_path = c->path;
        }
    }
    return MS_OK;
}

/* libyaml's cost grows with the square of the nesting depth (its scanner
 * walks the stack of open levels for every token): a 200 KB file of 100k
 * nested `[` takes over 20 s to load. No valid file nests more than a few
 * levels, so an event pass first refuses anything deeper than
 * MS_CFG_YAML_MAX_DEPTH, stopping at the first level too many, before the
 * document loader sees the file. */
static ms_status_t check_depth(const char *path, FILE *f)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return MS_ERR(MS_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    yaml_parser_set_input_file(&p, f);
    ms_status_t st = MS_OK;
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) break; /* syntax errors: reported by the loader with context */
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > MS_CFG_YAML_MAX_DEPTH) {
                st = MS_ERR(MS_ERR_FORMAT, "%s:%zu: nesting deeper than %d levels (no moeserve key nests that deep)",
                            path, line, MS_CFG_YAML_MAX_DEPTH);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (t == YAML_STREAM_END_EVENT) {
            break;
        }
    }
    yaml_parser_delete(&p);
    return st;
}

/* Load `path` as one YAML document into *doc (the caller deletes it; its
 * root is NULL for an empty file). Errors name the file and line. */
static ms_status_t doc_load(const char *path, const char *what, yaml_document_t *doc)
{
    ms_status_t st = MS_OK;
    struct stat sb;
    if (stat(path, &sb) != 0) return MS_ERR(MS_ERR_IO, "%s: cannot read %s file: %s", path, what, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return MS_ERR(MS_ERR_IO, "%s: cannot read %s file: it is a directory", path, what);
    FILE *f = fopen(path, "rb");
    if (!f) return MS_ERR(MS_ERR_IO, "%s: cannot read %s file: %s", path, what, strerror(errno));

    st = check_depth(path, f);
    if (st != MS_OK) goto out_close;
    rewind(f);

    yaml_parser_t parser;
    yaml_document_t extra;
    if (!yaml_parser_initialize(&parser)) {
        st = MS_ERR(MS_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
        goto out_close;
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, doc)) {
        size_t line = parser.problem_mark.line + 1;
        if (parser.error == YAML_READER_ERROR) line = 0;
        if (parser.context)
            st = MS_ERR(MS_ERR_FORMAT, "%s:%zu: YAML syntax error: %s (%s at line %zu)", path, line,
                        parser.problem ? parser.problem : "malformed YAML", parser.context,
                        parser.context_mark.line + 1);
        else if (line)
            st = MS_ERR(MS_ERR_FORMAT, "%s:%zu: YAML syntax error: %s", path, line,
                        parser.problem ? parser.problem : "malformed YAML");
        else
            st = MS_ERR(MS_ERR_FORMAT, "%s: cannot read YAML: %s", path,
                        parser.problem ? parser.problem : "unreadable input");
        goto out_parser;
    }
    if (!yaml_document_get_root_node(doc)) goto out_parser; /* empty file: no options, as an empty dict */

    /* A second document would be ignored by yaml.safe_load's callers only
     * after an error; refuse it outright. */
    if (!yaml_parser_load(&parser, &extra)) {
        st = MS_ERR(MS_ERR_FORMAT, "%s:%zu: YAML syntax error: %s", path, parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "malformed YAML");
        yaml_document_delete(doc);
        goto out_parser;
    }
    if (yaml_document_get_root_node(&extra)) {
        st = MS_ERR(MS_ERR_FORMAT, "%s:%zu: more than one YAML document; put every key in one document", path,
                    extra.start_mark.line + 1);
        yaml_document_delete(doc);
    }
    yaml_document_delete(&extra);
out_parser:
    yaml_parser_delete(&parser);
out_close:
    fclose(f);
    return st;
}

/* A map key given as a file (CFG_FILE, TensorRT-LLM's `load_balancer:
 * path.yaml`): the file's top level is the map. A relative path is taken
 * from the working directory, else next to the including file. */
static ms_status_t map_from_file(yctx_t *c, const yaml_node_t *vn, const char *full, const cfg_key_t *k)
{
    char path[MS_CFG_PATH_MAX];
    const char *given = scalar(vn);
    struct stat sb;
    snprintf(path, sizeof path, "%s", given);
    if (given[0] != '/' && stat(given, &sb) != 0) {
        const char *slash = strrchr(c->path, '/');
        if (slash) snprintf(path, sizeof path, "%.*s/%s", (int)(slash - c->path), c->path, given);
    }
    if (stat(path, &sb) != 0)
        return MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': cannot read '%s': %s", c->path, node_line(vn), full, given,
                      strerror(errno));
    yaml_document_t doc;
    char what[600];
    snprintf(what, sizeof what, "%s (key '%s' of %s:%d)", "YAML", full, c->path, node_line(vn));
    MS_TRY(doc_load(path, what, &doc));
    ms_status_t st = MS_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        st = MS_ERR(MS_ERR_INVALID, "%s:%d: key '%s': expected a map at the top level of %s", path,
                    root ? node_line(root) : 1, full, path);
        goto out;
    }
    /* The included file's keys name their own file in messages. Its path
     * must outlive this call for origin->slots_path: keep one copy. */
    static char kept[4][MS_CFG_PATH_MAX];
    static int n_kept;
    char *p = kept[n_kept++ % 4];
    snprintf(p, MS_CFG_PATH_MAX, "%s", path);
    yctx_t sub = {.path = p, .doc = &doc, .cfg = c->cfg, .origin = c->origin};
    if (k->off != CFG_NO_FIELD) *(bool *)((char *)c->cfg + k->off) = true;
    st = walk_map(&sub, root, k->children, full);
    if (st == MS_OK) st = check_required(&sub, root, root, k->children, full);
out:
    yaml_document_delete(&doc);
    return st;
}

ms_status_t cfg_yaml_apply(const char *path, ms_config_t *cfg, cfg_origin_t *origin)
{
    yaml_document_t doc;
    MS_TRY(doc_load(path, "extra_llm_api_options", &doc));
    ms_status_t st = MS_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) return MS_OK; /* empty file: no options, as an empty dict */
    if (root->type != YAML_MAPPING_NODE) {
        char got[96];
        describe(root, got, sizeof got);
        st = MS_ERR(MS_ERR_INVALID, "%s:%d: expected a map of TensorRT-LLM options at the top level, got %s", path,
                    node_line(root), got);
        goto out_doc;
    }
    yctx_t c = {.path = path, .doc = &doc, .cfg = cfg, .origin = origin};
    if (origin) origin->yaml_path = path;
    st = walk_map(&c, root, cfg_yaml_keys, "");
out_doc:
    yaml_document_delete(&doc);
    return st;
}
