/* serve.c — the `serve` command (issue 4 fills this in). */
#include "commands.h"
#include <stdio.h>

int cmd_serve(int argc, char **argv)
{
    fprintf(stderr, "moeserve serve: the HTTP server is not built yet\n");
    return 1;
}
