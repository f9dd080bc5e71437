/* commands.h — the subcommands of build/moeserve. Each returns a process exit
 * code: 0 success, 1 runtime failure, 2 bad usage / bad config / bad input. */
#ifndef MS_COMMANDS_H
#define MS_COMMANDS_H

int cmd_serve(int argc, char **argv);      /* runtime/serve.c: mpirun-launched server */
int cmd_plan_memory(int argc, char **argv); /* runtime/plan_memory.c: per-rank memory of a layout */
int cmd_generate(int argc, char **argv);   /* worker/generate_cmd.c: one-process greedy generation */
int cmd_tokenize(int argc, char **argv);   /* coordinator/tok_cmd.c */
int cmd_detokenize(int argc, char **argv); /* coordinator/tok_cmd.c */
int cmd_eplb_plan(int argc, char **argv);  /* coordinator/eplb_cmd.c */

#endif
