/* tok_cmd.c — the `tokenize` / `detokenize` commands (tokenizer fills this in). */
#include "commands.h"
#include <stdio.h>

int cmd_tokenize(int argc, char **argv)
{
    fprintf(stderr, "moeserve tokenize: the tokenizer is not built yet\n");
    return 1;
}

int cmd_detokenize(int argc, char **argv)
{
    fprintf(stderr, "moeserve detokenize: the tokenizer is not built yet\n");
    return 1;
}
