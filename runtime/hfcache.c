/* hfcache.c — MODEL argument to a model directory: a directory is used as is;
 * a Hugging Face repo id is looked up in the local Hugging Face hub cache, the
 * layout huggingface_hub writes:
 *
 *   <cache>/models--<org>--<name>/refs/<revision>     file holding a commit hash
 *   <cache>/models--<org>--<name>/snapshots/<hash>/   config.json, *.safetensors (symlinks into blobs/)
 *
 * <cache> is chosen as huggingface_hub does: $HF_HUB_CACHE, else
 * $HUGGINGFACE_HUB_CACHE (legacy), else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 * Nothing is ever downloaded: a missing model is an error that says where we
 * looked and how to fetch it.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool env_set(const char *name) { return getenv(name) && getenv(name)[0]; }

/* Where the hub cache is, and which variable decided it (for the error text). */
static void hub_cache_dir(char *out, size_t n, const char **why)
{
    if (env_set("HF_HUB_CACHE")) {
        snprintf(out, n, "%s", getenv("HF_HUB_CACHE"));
        *why = "$HF_HUB_CACHE";
    } else if (env_set("HUGGINGFACE_HUB_CACHE")) {
        snprintf(out, n, "%s", getenv("HUGGINGFACE_HUB_CACHE"));
        *why = "$HUGGINGFACE_HUB_CACHE";
    } else if (env_set("HF_HOME")) {
        snprintf(out, n, "%s/hub", getenv("HF_HOME"));
        *why = "$HF_HOME/hub";
    } else if (env_set("XDG_CACHE_HOME")) {
        snprintf(out, n, "%s/huggingface/hub", getenv("XDG_CACHE_HOME"));
        *why = "$XDG_CACHE_HOME/huggingface/hub";
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw && pw->pw_dir ? pw->pw_dir : "";
        }
        snprintf(out, n, "%s/.cache/huggingface/hub", home);
        *why = "~/.cache/huggingface/hub";
    }
}

/* "org/name" or "name": the characters the Hub allows, at most one '/'. */
static bool is_repo_id(const char *s)
{
    int slashes = 0;
    if (!*s || *s == '/' || *s == '.' || *s == '-') return false;
    for (const char *p = s; *p; p++) {
        if (*p == '/') {
            if (++slashes > 1 || p[1] == '\0' || p[1] == '/') return false;
        } else if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
            return false;
        }
    }
    return strstr(s, "..") == NULL;
}

static bool is_commit_hash(const char *s)
{
    size_t n = strlen(s);
    if (n != 40) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

static ms_status_t put(char *out, size_t n, const char *path)
{
    if (strlen(path) >= n) return MS_ERR(MS_ERR_INVALID, "model path '%s' is longer than %zu characters", path, n - 1);
    memcpy(out, path, strlen(path) + 1);
    return MS_OK;
}

/* refs/<rev> -> hash; "" when the ref file is missing. */
static ms_status_t read_ref(const char *repo_dir, const char *rev, char *hash, size_t n)
{
    char path[MS_CFG_PATH_MAX];
    hash[0] = '\0';
    if ((size_t)snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev) >= sizeof path)
        return MS_ERR(MS_ERR_INVALID, "Hugging Face cache path too long: %s/refs/%s", repo_dir, rev);
    FILE *f = fopen(path, "r");
    if (!f) return MS_OK;
    size_t len = fread(hash, 1, n - 1, f);
    fclose(f);
    hash[len] = '\0';
    while (len && isspace((unsigned char)hash[len - 1])) hash[--len] = '\0';
    if (!len || strchr(hash, '/') || strstr(hash, ".."))
        return MS_ERR(MS_ERR_FORMAT, "%s: not a snapshot hash: '%s'", path, hash);
    return MS_OK;
}

ms_status_t cfg_resolve_model_rev(const char *model_arg, const char *revision, char *dir_out, size_t n)
{
    if (!model_arg || !*model_arg) return MS_ERR(MS_ERR_INVALID, "MODEL is empty");
    struct stat sb;
    if (stat(model_arg, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return put(dir_out, n, model_arg);
        return MS_ERR(MS_ERR_INVALID, "MODEL '%s' is a file; expected a model directory or a Hugging Face repo id",
                      model_arg);
    }
    const char *rev = revision && *revision ? revision : "main";
    if (!is_repo_id(model_arg))
        return MS_ERR(MS_ERR_NOT_FOUND, "MODEL '%s': no such directory, and not a Hugging Face repo id (org/name)",
                      model_arg);
    if (rev[0] == '/' || strstr(rev, ".."))
        return MS_ERR(MS_ERR_INVALID, "revision '%s' is not a valid name", rev);

    char cache[MS_CFG_PATH_MAX], repo_dir[MS_CFG_PATH_MAX], snap[MS_CFG_PATH_MAX + 128];
    const char *why = "";
    hub_cache_dir(cache, sizeof cache, &why);
    char flat[MS_CFG_NAME_MAX * 2] = "models--";
    size_t used = strlen(flat);
    for (const char *p = model_arg; *p && used + 3 < sizeof flat; p++) {
        if (*p == '/') {
            memcpy(flat + used, "--", 2);
            used += 2;
        } else {
            flat[used++] = *p;
        }
    }
    flat[used] = '\0';
    if ((size_t)snprintf(repo_dir, sizeof repo_dir, "%s/%s", cache, flat) >= sizeof repo_dir)
        return MS_ERR(MS_ERR_INVALID, "Hugging Face cache path too long: %s/%s", cache, flat);
    if (!is_dir(repo_dir))
        return MS_ERR(MS_ERR_NOT_FOUND,
                      "MODEL '%s': no such directory, and not in the Hugging Face cache (looked for %s; cache from "
                      "%s). moeserve never downloads: run `huggingface-cli download %s` or pass a directory",
                      model_arg, repo_dir, why, model_arg);

    char hash[256];
    MS_TRY(read_ref(repo_dir, rev, hash, sizeof hash));
    if (!hash[0] && is_commit_hash(rev)) snprintf(hash, sizeof hash, "%s", rev);
    if (hash[0]) {
        snprintf(snap, sizeof snap, "%s/snapshots/%s", repo_dir, hash);
        if (!is_dir(snap))
            return MS_ERR(MS_ERR_NOT_FOUND, "MODEL '%s': %s/refs/%s names snapshot %s, which is missing (%s)",
                          model_arg, repo_dir, rev, hash, snap);
    } else {
        /* No ref file (caches copied by hand often lack refs/): the only snapshot. */
        char dir[MS_CFG_PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/snapshots", repo_dir);
        DIR *d = opendir(dir);
        if (!d)
            return MS_ERR(MS_ERR_NOT_FOUND, "MODEL '%s': %s has neither refs/%s nor a snapshots/ directory", model_arg,
                          repo_dir, rev);
        int count = 0;
        char only[256] = "", names[512] = "";
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[MS_CFG_PATH_MAX + 300];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (!is_dir(p)) continue;
            count++;
            snprintf(only, sizeof only, "%s", e->d_name);
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", e->d_name);
        }
        closedir(d);
        if (count == 0)
            return MS_ERR(MS_ERR_NOT_FOUND, "MODEL '%s': %s has no refs/%s and no snapshot", model_arg, repo_dir, rev);
        if (count > 1)
            return MS_ERR(MS_ERR_NOT_FOUND,
                          "MODEL '%s': %s has no refs/%s and %d snapshots (%s); pass --revision HASH or the "
                          "snapshot directory",
                          model_arg, repo_dir, rev, count, names);
        snprintf(snap, sizeof snap, "%s/%s", dir, only);
    }
    char cfgjson[sizeof snap + 16];
    snprintf(cfgjson, sizeof cfgjson, "%s/config.json", snap);
    if (access(cfgjson, R_OK) != 0)
        return MS_ERR(MS_ERR_NOT_FOUND, "MODEL '%s': snapshot %s has no readable config.json (incomplete download?)",
                      model_arg, snap);
    return put(dir_out, n, snap);
}

ms_status_t cfg_resolve_model(const char *model_arg, char *dir_out, size_t n)
{
    return cfg_resolve_model_rev(model_arg, NULL, dir_out, n);
}
