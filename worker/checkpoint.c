/* checkpoint.c — safetensors reader (see checkpoint.h). Owns: finding the
 * shards (single `model.safetensors` or the index's weight_map), mapping each
 * shard read-only, validating every header against its file, and the
 * name → tensor table (sorted array + bsearch; the real R1 has ~90k tensors).
 *
 * safetensors layout: u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the data block; offsets are relative to the data block.
 *
 * Invariant: after ckpt_open succeeds every tensor's bytes lie inside its
 * shard's mapping and match dtype × shape, so lookups never fail on format. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_MAX_HEADER (512ull << 20) /* real R1 headers are ~100 KiB; anything huge is corrupt */

typedef struct {
    char *path;          /* dir/file, for messages and ckpt_tensor_t.file */
    const uint8_t *map;  /* whole file, PROT_READ */
    size_t size;
    size_t data_start;   /* 8 + header length */
} ckpt_shard_t;

typedef struct {
    char *name;
    int shard;
    int dtype;           /* ms_dtype_t, or -1 for a safetensors dtype moeserve has no use for */
    char dtype_name[12];
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t begin, end; /* relative to the shard's data block */
} ckpt_entry_t;

struct ckpt {
    char *dir;
    ckpt_shard_t *shards;
    int n_shards;
    ckpt_entry_t *ents;  /* sorted by name */
    size_t n_ents, cap_ents;
};

/* Element sizes of every safetensors dtype, so headers with dtypes moeserve
 * never computes with still validate. */
static const struct { const char *name; int size; } ckpt_st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

static int ckpt_dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof ckpt_st_dtypes / sizeof ckpt_st_dtypes[0]; i++)
        if (strcmp(name, ckpt_st_dtypes[i].name) == 0) return ckpt_st_dtypes[i].size;
    return 0;
}

static char *ckpt_join(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int ckpt_ent_cmp(const void *a, const void *b)
{
    return strcmp(((const ckpt_entry_t *)a)->name, ((const ckpt_entry_t *)b)->name);
}

static const ckpt_entry_t *ckpt_find(const ckpt_t *ck, const char *name)
{
    ckpt_entry_t key = {.name = (char *)name};
    return bsearch(&key, ck->ents, ck->n_ents, sizeof key, ckpt_ent_cmp);
}

static void ckpt_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Parse one tensor's header entry and check it against the shard. */
static ms_status_t ckpt_parse_entry(const ckpt_shard_t *sh, const char *name, json_t *v, ckpt_entry_t *e)
{
    const char *f = sh->path;
    if (!json_is_object(v)) return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: header entry is not an object", f, name);
    json_t *dt = json_object_get(v, "dtype"), *shp = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: missing or non-string dtype", f, name);
    int esz = ckpt_dtype_size(json_string_value(dt));
    if (!esz) return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%s\"", f, name, json_string_value(dt));
    snprintf(e->dtype_name, sizeof e->dtype_name, "%s", json_string_value(dt));
    ms_dtype_t mdt;
    e->dtype = ms_dtype_from_name(e->dtype_name, &mdt) == 0 ? (int)mdt : -1;

    if (!json_is_array(shp)) return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: missing or non-list shape", f, name);
    size_t nd = json_array_size(shp);
    if (nd > CKPT_MAX_DIMS)
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: %zu dimensions (at most %d supported)", f, name, nd, CKPT_MAX_DIMS);
    e->ndim = (int)nd;
    /* numel × size must not overflow: every dim < 2^40 and the product checked stepwise. */
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shp, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40))
            return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: bad shape dimension %zu", f, name, i);
        e->shape[i] = json_integer_value(d);
        if (e->shape[i] && numel > (UINT64_MAX >> 4) / (uint64_t)e->shape[i])
            return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: shape too large", f, name);
        numel *= (uint64_t)e->shape[i];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)) || json_integer_value(json_array_get(off, 0)) < 0 ||
        json_integer_value(json_array_get(off, 1)) < 0)
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: data_offsets must be two non-negative integers", f, name);
    e->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
    e->end = (uint64_t)json_integer_value(json_array_get(off, 1));
    uint64_t data_size = sh->size - sh->data_start;
    if (e->begin > e->end)
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu,%llu] are reversed", f, name,
                      (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_size)
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: data_offsets end %llu is past the end of the data (%llu bytes; file truncated?)",
                      f, name, (unsigned long long)e->end, (unsigned long long)data_size);
    if (e->end - e->begin != numel * (uint64_t)esz) {
        char sbuf[96];
        ckpt_shape_str(sbuf, sizeof sbuf, e->ndim, e->shape);
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: %llu data bytes but %s %s needs %llu", f, name,
                      (unsigned long long)(e->end - e->begin), e->dtype_name, sbuf,
                      (unsigned long long)(numel * (uint64_t)esz));
    }
    return MS_OK;
}

static ms_status_t ckpt_add_entry(ckpt_t *ck, const ckpt_entry_t *e)
{
    if (ck->n_ents == ck->cap_ents) {
        size_t cap = ck->cap_ents ? ck->cap_ents * 2 : 1024;
        ckpt_entry_t *p = realloc(ck->ents, cap * sizeof *p);
        if (!p) return MS_ERR(MS_ERR_NOMEM, "%s: out of memory reading tensor table", ck->dir);
        ck->ents = p;
        ck->cap_ents = cap;
    }
    ck->ents[ck->n_ents++] = *e;
    return MS_OK;
}

/* Map one shard and append its tensors. */
static ms_status_t ckpt_load_shard(ckpt_t *ck, int idx)
{
    ckpt_shard_t *sh = &ck->shards[idx];
    const char *f = sh->path;
    int fd = open(f, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MS_ERR(MS_ERR_IO, "%s: cannot open: %s", f, strerror(errno));
    struct stat stbuf;
    ms_status_t st = MS_OK;
    if (fstat(fd, &stbuf) != 0) {
        st = MS_ERR(MS_ERR_IO, "%s: cannot stat: %s", f, strerror(errno));
        goto out_fd;
    }
    if (!S_ISREG(stbuf.st_mode)) {
        st = MS_ERR(MS_ERR_IO, "%s: not a regular file", f);
        goto out_fd;
    }
    sh->size = (size_t)stbuf.st_size;
    if (sh->size < 8) {
        st = MS_ERR(MS_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors header (truncated?)", f, sh->size);
        goto out_fd;
    }
    void *m = mmap(NULL, sh->size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        st = MS_ERR(MS_ERR_IO, "%s: mmap failed: %s", f, strerror(errno));
        goto out_fd;
    }
    sh->map = m;
    close(fd);
    fd = -1;

    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)sh->map[i] << (8 * i);
    if (hlen > CKPT_MAX_HEADER || hlen > sh->size - 8)
        return MS_ERR(MS_ERR_FORMAT, "%s: header length %llu does not fit in the %zu-byte file (corrupt or truncated)", f,
                      (unsigned long long)hlen, sh->size);
    sh->data_start = 8 + (size_t)hlen;

    json_error_t jerr;
    json_t *hdr = json_loadb((const char *)sh->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!hdr) return MS_ERR(MS_ERR_FORMAT, "%s: header is not valid JSON: %s (at byte %d)", f, jerr.text, jerr.position);
    if (!json_is_object(hdr)) {
        st = MS_ERR(MS_ERR_FORMAT, "%s: header is not a JSON object", f);
        goto out_hdr;
    }
    const char *name;
    json_t *v;
    json_object_foreach(hdr, name, v) {
        if (strcmp(name, "__metadata__") == 0) continue;
        ckpt_entry_t e = {.shard = idx};
        MS_TRY_GOTO(st, ckpt_parse_entry(sh, name, v, &e), out_hdr);
        e.name = strdup(name);
        if (!e.name) {
            st = MS_ERR(MS_ERR_NOMEM, "%s: out of memory", f);
            goto out_hdr;
        }
        st = ckpt_add_entry(ck, &e);
        if (st != MS_OK) {
            free(e.name);
            goto out_hdr;
        }
    }
out_hdr:
    json_decref(hdr);
    return st;
out_fd:
    if (fd >= 0) close(fd);
    return st;
}

static ms_status_t ckpt_add_shard(ckpt_t *ck, const char *file)
{
    ckpt_shard_t *p = realloc(ck->shards, (ck->n_shards + 1) * sizeof *p);
    if (!p) return MS_ERR(MS_ERR_NOMEM, "%s: out of memory", ck->dir);
    ck->shards = p;
    memset(&p[ck->n_shards], 0, sizeof *p);
    p[ck->n_shards].path = ckpt_join(ck->dir, file);
    if (!p[ck->n_shards].path) return MS_ERR(MS_ERR_NOMEM, "%s: out of memory", ck->dir);
    ck->n_shards++;
    return MS_OK;
}

static int ckpt_shard_by_file(const ckpt_t *ck, const char *file)
{
    size_t dl = strlen(ck->dir);
    for (int i = 0; i < ck->n_shards; i++)
        if (strcmp(ck->shards[i].path + dl + 1, file) == 0) return i;
    return -1;
}

/* Sharded checkpoint: every file the weight_map names must exist, and every
 * tensor it names must be in the shard it says. */
static ms_status_t ckpt_open_index(ckpt_t *ck, const char *index_path)
{
    json_error_t jerr;
    json_t *idx = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!idx) return MS_ERR(MS_ERR_FORMAT, "%s:%d: invalid JSON: %s", index_path, jerr.line, jerr.text);
    ms_status_t st = MS_OK;
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm)) {
        st = MS_ERR(MS_ERR_FORMAT, "%s: key weight_map: missing or not an object", index_path);
        goto out_idx;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: weight_map value is not a file name", index_path, name);
            goto out_idx;
        }
        const char *file = json_string_value(v);
        /* Shards live in the model directory; a path would escape it. */
        if (!*file || strchr(file, '/') || strcmp(file, "..") == 0) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: shard \"%s\" is not a plain file name", index_path, name, file);
            goto out_idx;
        }
        if (ckpt_shard_by_file(ck, file) < 0) {
            char *p = ckpt_join(ck->dir, file);
            bool exists = p && access(p, F_OK) == 0;
            free(p);
            if (!exists) {
                st = MS_ERR(MS_ERR_NOT_FOUND, "%s: tensor %s: shard file %s/%s does not exist", index_path, name, ck->dir,
                            file);
                goto out_idx;
            }
            MS_TRY_GOTO(st, ckpt_add_shard(ck, file), out_idx);
        }
    }
    if (ck->n_shards == 0) {
        st = MS_ERR(MS_ERR_FORMAT, "%s: key weight_map: empty", index_path);
        goto out_idx;
    }
    for (int i = 0; i < ck->n_shards; i++) MS_TRY_GOTO(st, ckpt_load_shard(ck, i), out_idx);
    qsort(ck->ents, ck->n_ents, sizeof *ck->ents, ckpt_ent_cmp);
    for (size_t i = 1; i < ck->n_ents; i++)
        if (strcmp(ck->ents[i - 1].name, ck->ents[i].name) == 0) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: present in two shards (%s and %s)", ck->dir, ck->ents[i].name,
                        ck->shards[ck->ents[i - 1].shard].path, ck->shards[ck->ents[i].shard].path);
            goto out_idx;
        }
    json_object_foreach(wm, name, v) {
        int want = ckpt_shard_by_file(ck, json_string_value(v));
        const ckpt_entry_t *e = ckpt_find(ck, name);
        if (!e) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: listed in %s but not in the shard's header", ck->shards[want].path,
                        name, index_path);
            goto out_idx;
        }
        if (e->shard != want) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: the index says %s but the tensor is in %s", index_path, name,
                        ck->shards[want].path, ck->shards[e->shard].path);
            goto out_idx;
        }
    }
out_idx:
    json_decref(idx);
    return st;
}

ms_status_t ckpt_open(const char *model_dir, ckpt_t **out)
{
    ms_status_t st = MS_OK;
    ckpt_t *ck = calloc(1, sizeof *ck);
    if (!ck) return MS_ERR(MS_ERR_NOMEM, "%s: out of memory", model_dir);
    ck->dir = strdup(model_dir);
    if (!ck->dir) {
        st = MS_ERR(MS_ERR_NOMEM, "%s: out of memory", model_dir);
        goto out_ck;
    }
    /* Trailing slashes would double up in shard paths. */
    for (size_t n = strlen(ck->dir); n > 1 && ck->dir[n - 1] == '/'; n--) ck->dir[n - 1] = '\0';

    char *index = ckpt_join(ck->dir, "model.safetensors.index.json");
    char *single = ckpt_join(ck->dir, "model.safetensors");
    if (!index || !single) {
        st = MS_ERR(MS_ERR_NOMEM, "%s: out of memory", model_dir);
        goto out_paths;
    }
    if (access(index, F_OK) == 0) {
        MS_TRY_GOTO(st, ckpt_open_index(ck, index), out_paths);
    } else if (access(single, F_OK) == 0) {
        MS_TRY_GOTO(st, ckpt_add_shard(ck, "model.safetensors"), out_paths);
        MS_TRY_GOTO(st, ckpt_load_shard(ck, 0), out_paths);
        qsort(ck->ents, ck->n_ents, sizeof *ck->ents, ckpt_ent_cmp);
        for (size_t i = 1; i < ck->n_ents; i++)
            if (strcmp(ck->ents[i - 1].name, ck->ents[i].name) == 0) {
                st = MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: listed twice", single, ck->ents[i].name);
                goto out_paths;
            }
    } else {
        st = MS_ERR(MS_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", ck->dir);
        goto out_paths;
    }
    free(index);
    free(single);
    MS_DEBUG("%s: %d shard(s), %zu tensors", ck->dir, ck->n_shards, ck->n_ents);
    *out = ck;
    return MS_OK;

out_paths:
    free(index);
    free(single);
out_ck:
    ckpt_close(ck);
    return st;
}

void ckpt_close(ckpt_t *ck)
{
    if (!ck) return;
    for (size_t i = 0; i < ck->n_ents; i++) free(ck->ents[i].name);
    free(ck->ents);
    for (int i = 0; i < ck->n_shards; i++) {
        if (ck->shards[i].map) munmap((void *)ck->shards[i].map, ck->shards[i].size);
        free(ck->shards[i].path);
    }
    free(ck->shards);
    free(ck->dir);
    free(ck);
}

bool ckpt_has(const ckpt_t *ck, const char *name) { return ckpt_find(ck, name) != NULL; }

ms_status_t ckpt_get(const ckpt_t *ck, const char *name, ckpt_tensor_t *out)
{
    const ckpt_entry_t *e = ckpt_find(ck, name);
    if (!e) return MS_ERR(MS_ERR_NOT_FOUND, "%s: tensor %s: not found in the checkpoint", ck->dir, name);
    const ckpt_shard_t *sh = &ck->shards[e->shard];
    if (e->dtype < 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported", sh->path, name, e->dtype_name);
    ckpt_tensor_t t = {
        .name = e->name,
        .file = sh->path,
        .dtype = (ms_dtype_t)e->dtype,
        .ndim = e->ndim,
        .data = sh->map + sh->data_start + e->begin,
        .nbytes = (size_t)(e->end - e->begin),
    };
    memcpy(t.shape, e->shape, sizeof t.shape);
    *out = t;
    return MS_OK;
}

ms_status_t ckpt_expect(const ckpt_t *ck, const char *name, ms_dtype_t dtype, int ndim, const int64_t *shape,
                        ckpt_tensor_t *out)
{
    ckpt_tensor_t t;
    MS_TRY(ckpt_get(ck, name, &t));
    if (t.dtype != dtype)
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: dtype %s but expected %s", t.file, name, ms_dtype_name(t.dtype),
                      ms_dtype_name(dtype));
    bool same = t.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t.shape[i] == shape[i];
    if (!same) {
        char got[96], want[96];
        ckpt_shape_str(got, sizeof got, t.ndim, t.shape);
        ckpt_shape_str(want, sizeof want, ndim, shape);
        return MS_ERR(MS_ERR_FORMAT, "%s: tensor %s: shape %s but expected %s", t.file, name, got, want);
    }
    *out = t;
    return MS_OK;
}

size_t ckpt_count(const ckpt_t *ck) { return ck->n_ents; }
const char *ckpt_name_at(const ckpt_t *ck, size_t i) { return i < ck->n_ents ? ck->ents[i].name : NULL; }
