/* eplb_cmd.c — `moeserve eplb-plan`: the offline half of the load balancer
 * (TensorRT-LLM's documented flow: collect expert statistics, plan, start
 * the server with a static placement). Reads a statistics file, plans with
 * eplb_plan(), and writes a load_balancer YAML (num_slots,
 * layer_updates_per_iter: 0, initial_global_assignments) that
 * `moe_config.load_balancer` accepts as a path.
 *
 * Statistics file (JSON; what `eplb-dump` writes):
 *   {"num_experts": E, "n_group": G, "layers": [l0, l1, ...],
 *    "load": [[E routed-token counts of layer l0], ...], "steps": N}
 * "n_group" and "steps" are optional ("n_group" defaults to 1, --groups
 * overrides it). Exit codes as commands.h: 2 for bad usage or a bad file. */
#include "commands.h"
#include "coordinator/eplb_plan.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n_layers, n_experts, n_group;
    int *layer_ids; /* (n_layers) model layer index of each row */
    float *load;    /* (n_layers, n_experts) */
} eplb_stats_t;

static int stats_bad(const char *path, const char *what)
{
    fprintf(stderr, "moeserve eplb-plan: %s: %s\n", path, what);
    return 2;
}

static int stats_load(const char *path, eplb_stats_t *s)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) {
        fprintf(stderr, "moeserve eplb-plan: %s:%d: %s\n", path, err.line, err.text);
        return 2;
    }
    int rc = 2;
    json_t *ne = json_object_get(j, "num_experts"), *ng = json_object_get(j, "n_group");
    json_t *ly = json_object_get(j, "layers"), *ld = json_object_get(j, "load");
    if (!json_is_integer(ne) || json_integer_value(ne) < 1 || json_integer_value(ne) > 65536) {
        rc = stats_bad(path, "key 'num_experts': expected an integer in [1, 65536]");
        goto out;
    }
    if (ng && (!json_is_integer(ng) || json_integer_value(ng) < 1)) {
        rc = stats_bad(path, "key 'n_group': expected a positive integer");
        goto out;
    }
    if (!json_is_array(ly) || !json_is_array(ld) || json_array_size(ly) != json_array_size(ld) ||
        json_array_size(ly) == 0) {
        rc = stats_bad(path, "keys 'layers' and 'load': expected two non-empty arrays of the same length");
        goto out;
    }
    s->n_experts = (int)json_integer_value(ne);
    s->n_group = ng ? (int)json_integer_value(ng) : 1;
    s->n_layers = (int)json_array_size(ly);
    s->layer_ids = calloc((size_t)s->n_layers, sizeof(int));
    s->load = calloc((size_t)s->n_layers * s->n_experts, sizeof(float));
    if (!s->layer_ids || !s->load) {
        rc = stats_bad(path, "out of memory");
        goto out;
    }
    for (int l = 0; l < s->n_layers; l++) {
        json_t *id = json_array_get(ly, (size_t)l), *row = json_array_get(ld, (size_t)l);
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 1000000) {
            rc = stats_bad(path, "key 'layers': expected non-negative layer indices");
            goto out;
        }
        s->layer_ids[l] = (int)json_integer_value(id);
        if (!json_is_array(row) || (int)json_array_size(row) != s->n_experts) {
            fprintf(stderr, "moeserve eplb-plan: %s: key 'load[%d]': expected %d numbers\n", path, l, s->n_experts);
            goto out;
        }
        for (int e = 0; e < s->n_experts; e++) {
            json_t *v = json_array_get(row, (size_t)e);
            double x = json_is_number(v) ? json_number_value(v) : -1;
            if (!(x >= 0 && x < 1e30)) {
                fprintf(stderr, "moeserve eplb-plan: %s: key 'load[%d][%d]': expected a count >= 0\n", path, l, e);
                goto out;
            }
            s->load[(size_t)l * s->n_experts + e] = (float)x;
        }
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

static int parse_int(const char *flag, const char *v, int *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < 1 || x > 1000000) {
        fprintf(stderr, "moeserve eplb-plan: %s: expected a positive integer, got '%s'\n", flag, v ? v : "");
        return 2;
    }
    *out = (int)x;
    return 0;
}

/* The placement before planning: one slot per expert, expert e on rank
 * e % ep (worker/par.h's default without a load balancer). */
static double static_imbalance(const eplb_stats_t *s, int layer, int ep)
{
    if (s->n_experts % ep) return -1;
    double mx = 0, sum = 0;
    for (int r = 0; r < ep; r++) {
        double x = 0;
        for (int e = r; e < s->n_experts; e += ep) x += s->load[(size_t)layer * s->n_experts + e];
        sum += x;
        if (x > mx) mx = x;
    }
    return sum > 0 ? (mx - sum / ep) / (sum / ep) : 0;
}

int cmd_eplb_plan(int argc, char **argv)
{
    const char *stats = NULL, *outp = NULL;
    int slots = 0, ep = 0, nodes = 1, groups = 0, rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--num-slots")) rc = parse_int(a, v, &slots), i++;
        else if (!strcmp(a, "--ep-size")) rc = parse_int(a, v, &ep), i++;
        else if (!strcmp(a, "--nodes")) rc = parse_int(a, v, &nodes), i++;
        else if (!strcmp(a, "--groups")) rc = parse_int(a, v, &groups), i++;
        else if (!strcmp(a, "--out") && v) outp = v, rc = 0, i++;
        else if (a[0] != '-' && !stats) stats = a, rc = 0;
        else {
            fprintf(stderr, "moeserve eplb-plan: unknown or incomplete argument '%s'\n", a);
            rc = 2;
        }
        if (rc) return rc;
    }
    if (!stats || !slots || !ep) {
        fprintf(stderr, "usage: moeserve eplb-plan STATS.json --num-slots N --ep-size P [--nodes K] [--groups G] "
                        "[--out FILE]\n");
        return 2;
    }
    eplb_stats_t s = {0};
    if ((rc = stats_load(stats, &s))) goto out_stats;
    eplb_shape_t sh = {.n_slots = slots, .n_groups = groups ? groups : s.n_group, .n_nodes = nodes, .n_ranks = ep};
    eplb_placement_t p;
    if (eplb_plan(s.load, s.n_layers, s.n_experts, &sh, &p) != MS_OK) {
        rc = 2; /* eplb_plan logged why */
        goto out_stats;
    }
    FILE *f = outp ? fopen(outp, "w") : stdout;
    if (!f) {
        perror(outp);
        rc = 1;
        goto out_plan;
    }
    fprintf(f, "# moeserve eplb-plan %s: %d slots over %d EP ranks, %d node(s), %d group(s)\n", stats, slots, ep,
            nodes, sh.n_groups);
    fprintf(f, "# layer: routed-token imbalance (max - mean) / mean per rank, one slot per expert -> planned\n");
    for (int l = 0; l < s.n_layers; l++) {
        double before = static_imbalance(&s, l, ep);
        char b[32] = "n/a"; /* experts do not divide over the ranks: no one-slot-per-expert layout */
        if (before >= 0) snprintf(b, sizeof b, "%.3f", before);
        fprintf(f, "#   %d: %s -> %.3f\n", s.layer_ids[l], b, eplb_imbalance(s.load, &p, l, ep));
    }
    fprintf(f, "num_slots: %d\nlayer_updates_per_iter: 0\ninitial_global_assignments:\n", slots);
    for (int l = 0; l < s.n_layers; l++) {
        fprintf(f, "  %d: [", s.layer_ids[l]);
        for (int i = 0; i < slots; i++) fprintf(f, i ? ", %d" : "%d", p.phy2log[(size_t)l * slots + i]);
        fprintf(f, "]\n");
    }
    rc = (outp ? fclose(f) : fflush(f)) ? 1 : 0;
out_plan:
    eplb_placement_free(&p);
out_stats:
    free(s.layer_ids), free(s.load);
    return rc;
}
