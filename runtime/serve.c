/* serve.c — the `serve` command (issue 4 fills this in). */
#include "commands.h"
#include "config.h"
#include <stdio.h>

int cmd_serve(int argc, char **argv)
{
    /* Flags + --extra_llm_api_options YAML; a bad config is exit code 2. */
    static ms_config_t cfg;
    if (cfg_parse_serve_args(argc, argv, &cfg) != MS_OK) return 2;
    if (cfg.help) return 0;

    fprintf(stderr, "moeserve serve: the HTTP server is not built yet\n");
    return 1;
}
