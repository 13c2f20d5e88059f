/* mesh_cli_util.h — what `odsync mesh join` and `odsync mesh remove` (mesh_join.c, mesh_remove.c)
 * both need from the expanded mesh configuration, and their message prefix.
 * Owns nothing: every pointer returned points into the configuration the caller holds. */
#ifndef ODSYNC_MESH_CLI_UTIL_H
#define ODSYNC_MESH_CLI_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include "odsync/config.h"

/* The value of `key` in section s, or NULL when absent. */
const char *mesh_cli_sval(const od_config_section *s, const char *key);
/* The generated pipeline from node `from` to node `to` (by their mesh_node keys), or NULL. */
const od_pipeline_config *mesh_cli_pipeline(const od_config *cfg, const char *from, const char *to);
/* The source's slot or publication name (`key` "slot" or "publication"): its key, else
 * odsync_<pipeline> in lower case, as the PostgreSQL source names them. */
void mesh_cli_repl_name(const od_pipeline_config *p, const char *key, char *out, size_t cap);
/* "odsync mesh <cmd>: <message>\n" on stderr. */
void mesh_cli_vsay(const char *cmd, const char *fmt, va_list ap);

#endif
