/* main.c — dispatch to a subcommand. Everything else lives in the library so
 * tests link the same code. */
#include "commands.h"
#include "ms_build_config.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} g_cmds[] = {
    {"serve", cmd_serve, "serve MODEL [trtllm-serve flags]   OpenAI-compatible server (mpirun -np N)"},
    {"plan-memory", cmd_plan_memory, "plan-memory MODEL [serve flags] --world N [--gpu-memory-gb G]   per-rank memory"},
    {"generate", cmd_generate, "generate MODEL --prompt-ids 0,1,2 --max-tokens N   greedy generation, one process"},
    {"tokenize", cmd_tokenize, "tokenize MODEL [--no-special]   JSON string per line on stdin -> id arrays"},
    {"detokenize", cmd_detokenize, "detokenize MODEL   JSON id arrays per line on stdin -> JSON strings"},
    {"eplb-plan", cmd_eplb_plan, "eplb-plan STATS.json --num-slots N --ep-size P [--nodes K] [--groups G] [--out F]   "
                                 "expert placement YAML (load_balancer) from expert statistics"},
};

static void usage(FILE *f)
{
    fprintf(f, "moeserve %s — DeepSeek-V3/R1 MoE inference server\nusage:\n", MS_VERSION);
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++) fprintf(f, "  moeserve %s\n", g_cmds[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("moeserve %s\n", MS_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moeserve: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
