/* config_internal.h — the key tables shared by the YAML reader
 * (config_yaml.c) and the command-line parser (config_cli.c).
 *
 * One table entry describes one setting: its name, kind, where it lives in
 * ms_config_t, and its allowed values. Both front ends convert text through
 * cfg_value_set() so a flag and a YAML key accept exactly the same values and
 * say the same thing when they are wrong; only the "where" prefix of the error
 * (`file:line: key 'a.b'` or `option '--x'`) differs.
 */
#ifndef MS_CONFIG_INTERNAL_H
#define MS_CONFIG_INTERNAL_H

#include "config.h"

typedef enum { CK_INT, CK_I64, CK_FLOAT, CK_BOOL, CK_STR, CK_ENUM, CK_INTLIST, CK_MAP, CK_ASSIGN } cfg_kind_t;

typedef struct {
    const char *name;
    int value;
} cfg_enum_t; /* arrays end with {NULL, 0} */

#define CFG_NO_FIELD ((size_t)-1)

enum {
    CFG_NULLABLE = 1u << 0, /* `null`/`~`/empty means unset (0, "", or map disabled) */
    CFG_IGNORED = 1u << 1,  /* TensorRT-LLM key accepted and type-checked, not acted on */
    CFG_POW2 = 1u << 2,     /* integer must be a power of two */
    CFG_REQUIRED = 1u << 3, /* must be present when its parent map is given */
    CFG_FILE = 1u << 4,     /* MAP: may also be given as the path of a YAML file holding the map */
};

typedef struct cfg_key {
    const char *name;
    cfg_kind_t kind;
    size_t off;  /* field in ms_config_t; MAP: its `enabled` bool or CFG_NO_FIELD; ASSIGN: unused
                  * (moe.load_balancer's assignment fields) */
    size_t size; /* STR: buffer size; INTLIST: capacity */
    size_t off2; /* INTLIST: its int count field */
    double min, max;
    const cfg_enum_t *enums;
    const struct cfg_key *children; /* MAP: entries ending with {NULL} */
    unsigned flags;
    const char *canon; /* this key is an alias of `canon` (duplicate detection) */
    const char *note;  /* appended to a range error: why the range is what it is */
} cfg_key_t;

/* Top-level keys of an extra_llm_api_options file. */
extern const cfg_key_t cfg_yaml_keys[];

extern const cfg_enum_t cfg_enum_backend[], cfg_enum_kv_dtype[], cfg_enum_moe_backend[], cfg_enum_attn[],
    cfg_enum_spec[], cfg_enum_device[], cfg_enum_log_level[],
    cfg_enum_load_format[], cfg_enum_moe_compute[], cfg_enum_data_plane[];

/* Decimal integer, optional sign, '_' between digits (YAML 1.1). 0 or -1. */
int cfg_int_parse(const char *s, long long *out);

/* What a key accepts, in words: "a positive integer", "one of auto, fp8, bf16". */
void cfg_expect(const cfg_key_t *k, char *buf, size_t n);

/* Convert `text` for a scalar key (INT, I64, FLOAT, BOOL, STR, ENUM) and store
 * it into cfg (into a scratch slot for CFG_IGNORED keys). is_null: the YAML
 * value was null. Returns 0, or -1 with `why` = "expected ..., got '...'". */
int cfg_value_set(const cfg_key_t *k, const char *text, bool is_null, ms_config_t *cfg, char *why, size_t n);

/* Where the values checked by cfg_check() came from, for its messages. */
typedef struct {
    const char *yaml_path; /* NULL when no YAML file */
    int line_tp, line_ep, line_slots; /* 0 = not set by the YAML */
    const char *slots_path;           /* file of line_slots (load_balancer may be its own file) */
} cfg_origin_t;

ms_status_t cfg_check(const ms_config_t *cfg, const cfg_origin_t *origin);

/* YAML file onto cfg, without the final cfg_check; fills origin. */
ms_status_t cfg_yaml_apply(const char *path, ms_config_t *cfg, cfg_origin_t *origin);

#endif
