/* mesh_cli_util.h — what `odsync mesh join` and `odsync mesh remove` (mesh_join.c, mesh_remove.c)
 * both need from the expanded mesh configuration, and their message prefix; and a mesh pipeline's
 * sink as a plain one, for the commands that run beside a running mesh (`odsync check`, `odsync dlq`).
 * Owns nothing: every pointer returned points into the configuration the caller holds, but for
 * the entries array mesh_cli_sink_view allocates (freed by mesh_cli_sink_view_free). */
#ifndef ODSYNC_MESH_CLI_UTIL_H
#define ODSYNC_MESH_CLI_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "odsync/config.h"

/* The value of `key` in section s, or NULL when absent. */
const char *mesh_cli_sval(const od_config_section *s, const char *key);
/* The generated pipeline from node `from` to node `to` (by their mesh_node keys), or NULL. */
const od_pipeline_config *mesh_cli_pipeline(const od_config *cfg, const char *from, const char *to);
/* The source's slot or publication name (`key` "slot" or "publication"): its key, else
 * odsync_<pipeline> in lower case, as the PostgreSQL source names them. */
void mesh_cli_repl_name(const od_pipeline_config *p, const char *key, char *out, size_t cap);
/* The author node of a mesh pipeline's sink (its mesh_peer key), NULL for any other sink. */
const char *mesh_cli_sink_author(const od_sink_config *sk);
/* *out = *sk, as a sink that runs beside the mesh without its mesh session (the replication origin
 * of its author, which the running pipeline holds, the mesh's DDL and clean-up). keep_mesh_keys:
 * every mesh key kept and checked, plus `mesh_session: false` (the sink writes nothing: `odsync
 * check`); else the mesh keys left out (a plain PostgreSQL sink on the same tables: `odsync dlq`).
 * Any other sink: a plain copy. out->section.entries is allocated for a mesh sink (false: out of
 * memory) and released by mesh_cli_sink_view_free. */
bool mesh_cli_sink_view(const od_sink_config *sk, bool keep_mesh_keys, od_sink_config *out);
void mesh_cli_sink_view_free(const od_sink_config *sk, od_sink_config *out);
/* "odsync mesh <cmd>: <message>\n" on stderr. */
void mesh_cli_vsay(const char *cmd, const char *fmt, va_list ap);

#endif
