/* pg_plugin.h — which logical decoding output plugin the PostgreSQL source's slot uses: PostgreSQL's
 * pgoutput, or (mesh sources) odsync_pgoutput, pgoutput with the changes of transactions that carry a
 * replication origin left out (src/pgplugin; docs/MULTI_MASTER.md, "The echo").
 * Owns: the choice (source.mesh_output_plugin: auto | pgoutput | odsync_pgoutput) and the plugin of
 * the slot in use (pg_source.plugin).
 * Does: names the plugin for slot creation (falling back to pgoutput under `auto` when the server
 * cannot load odsync_pgoutput), accepts an existing slot of either plugin (it keeps its plugin: a
 * slot's plugin is fixed when it is created), and gives the options the stream and the batch calls
 * add for it. The stream is pgoutput's protocol either way: the decoder does not know the difference.
 * Never touches: the stream, the decoder, the mesh's version vectors (pg_mesh.c).
 */
#ifndef ODSYNC_PG_PLUGIN_H
#define ODSYNC_PG_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/config.h"
#include "odsync/error.h"

#define OD_PG_PLUGIN_PGOUTPUT "pgoutput"
#define OD_PG_PLUGIN_ODSYNC "odsync_pgoutput"

typedef enum { OD_PG_PLUGIN_AUTO, OD_PG_PLUGIN_USE_PGOUTPUT, OD_PG_PLUGIN_USE_ODSYNC } od_pg_plugin_mode;

struct pg_source;

/* Reads source.mesh_output_plugin (default auto for a mesh source, pgoutput otherwise) into s. */
int od_pg_plugin_config(struct pg_source *s, const od_config_section *cfg, od_error *err);
/* Whether `name` is a plugin this source can read (pgoutput's protocol). */
bool od_pg_plugin_known(const char *name);
/* The plugin to create s's slot with. */
const char *od_pg_plugin_for_new_slot(const struct pg_source *s);
/* After creating the slot with od_pg_plugin_for_new_slot() failed with `msg`: true (and s now asks for
 * pgoutput, logged) when the mode is auto and the server could not load odsync_pgoutput: create again. */
bool od_pg_plugin_fall_back(struct pg_source *s, const char *msg);
/* The slot in use has plugin `name` (created now or found): logs the choice once per source. */
void od_pg_plugin_use(struct pg_source *s, const char *name, bool created);
/* The extra options for START_REPLICATION (sql = false: ", odsync_origin 'none'") or for the
 * pg_logical_slot_*_changes functions (sql = true: ", 'odsync_origin', 'none'"); "" for pgoutput. */
const char *od_pg_plugin_options(const struct pg_source *s, bool sql);

#endif
