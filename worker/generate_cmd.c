/* generate_cmd.c — the `generate` command (engine helper fills this in). */
#include "commands.h"
#include <stdio.h>

int cmd_generate(int argc, char **argv)
{
    fprintf(stderr, "moeserve generate: the engine is not built yet\n");
    return 1;
}
