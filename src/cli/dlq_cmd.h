/* dlq_cmd.h — `odsync dlq list | show ID | replay ID|--all | drop ID`: the dead letters (poison
 * rows) of a config's pipelines, in their sinks (see dlq_cmd.c, docs/DEAD_LETTERS.md). */
#ifndef ODSYNC_DLQ_CMD_H
#define ODSYNC_DLQ_CMD_H

/* argv[0] is the subcommand. Returns the exit status. */
int od_cli_dlq(int argc, char **argv);

#endif
