/* mesh_cmd.h — the command line's multi-master mesh commands (mesh_cmd.c). */
#ifndef ODSYNC_MESH_CMD_H
#define ODSYNC_MESH_CMD_H

#include <stdbool.h>

#include "odsync/config.h"

/* `odsync check` of a config with a mesh: every node has wal_level = logical and
 * track_commit_timestamp = on, every mesh table exists with a primary key, and has the same columns
 * (names, types, order) and key on every node; counter columns are integers of tables with
 * REPLICA IDENTITY FULL. Calls problem() per finding; returns the number of
 * fatal ones (0 when the config has no mesh). */
int od_cli_mesh_check(const od_config *cfg, void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx);
/* `odsync check`, mesh part 2 (mesh_plugin.c): the output plugin each mesh pipeline's slot uses or will
 * use; an "ok:" line per pipeline, a fatal problem when mesh.output_plugin is odsync_pgoutput and a node
 * cannot load it. Returns the number of fatal problems. */
int od_cli_mesh_plugin_check(const od_config *cfg, void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx);
/* `odsync conflicts`: print the conflict log of every mesh node (newest last, at most `limit`
 * rows per node). Returns the exit status. */
int od_cli_conflicts(const od_config *cfg, long limit);

#endif
