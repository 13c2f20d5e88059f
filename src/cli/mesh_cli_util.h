/* mesh_cli_util.h — what `odsync mesh join` and `odsync mesh remove` (mesh_join.c, mesh_remove.c)
 * both need from the expanded mesh configuration, and their message prefix; and a mesh pipeline's
 * sink as a plain one, for the commands that run beside a running mesh (`odsync check`, `odsync dlq`).
 * Owns nothing: every pointer returned points into the configuration the caller holds, but for
 * the entries array mesh_cli_plain_sink allocates (freed by mesh_cli_plain_sink_free). */
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
/* *out = *sk without its mesh_* keys: the sink opens as a plain PostgreSQL sink, without the mesh
 * session (the replication origin of its author, which the running pipeline holds, and the mesh's
 * DDL). out->section.entries is allocated when sk is a mesh sink (false: out of memory). */
bool mesh_cli_plain_sink(const od_sink_config *sk, od_sink_config *out);
void mesh_cli_plain_sink_free(const od_sink_config *sk, od_sink_config *out);
/* *out = *sk with `mesh_session: false` added when sk is a mesh sink: it opens checking every mesh
 * key but without the mesh session (what `odsync check` needs). Freed by mesh_cli_plain_sink_free. */
bool mesh_cli_sessionless_sink(const od_sink_config *sk, od_sink_config *out);
/* "odsync mesh <cmd>: <message>\n" on stderr. */
void mesh_cli_vsay(const char *cmd, const char *fmt, va_list ap);

#endif
