/* pg_plugin.c — see pg_plugin.h. Pointer ownership: nothing allocated; the strings returned are
 * static or live in the pg_source. */
#include "sources/pg/pg_plugin.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_mesh.h"

int od_pg_plugin_config(pg_source *s, const od_config_section *cfg, od_error *err) {
  const char *mode;
  int rc = od_config_string(cfg, "mesh_output_plugin", s->mesh ? "auto" : OD_PG_PLUGIN_PGOUTPUT, &mode, err);
  if (rc) return rc;
  if (strcmp(mode, "auto") == 0) s->plugin_mode = OD_PG_PLUGIN_AUTO;
  else if (strcmp(mode, OD_PG_PLUGIN_PGOUTPUT) == 0) s->plugin_mode = OD_PG_PLUGIN_USE_PGOUTPUT;
  else if (strcmp(mode, OD_PG_PLUGIN_ODSYNC) == 0) s->plugin_mode = OD_PG_PLUGIN_USE_ODSYNC;
  else {
    return od_config_fail_key(cfg, "mesh_output_plugin", err,
                              ".mesh_output_plugin '%s' must be auto, pgoutput or odsync_pgoutput", mode);
  }
  if (!s->mesh && s->plugin_mode != OD_PG_PLUGIN_USE_PGOUTPUT) {
    return od_config_fail_key(cfg, "mesh_output_plugin", err,
                              ".mesh_output_plugin applies to mesh sources only (mesh.output_plugin)");
  }
  snprintf(s->plugin, sizeof s->plugin, "%s", OD_PG_PLUGIN_PGOUTPUT);
  return OD_OK;
}

bool od_pg_plugin_known(const char *name) {
  return strcmp(name, OD_PG_PLUGIN_PGOUTPUT) == 0 || strcmp(name, OD_PG_PLUGIN_ODSYNC) == 0;
}

const char *od_pg_plugin_for_new_slot(const pg_source *s) {
  return s->plugin_mode == OD_PG_PLUGIN_USE_PGOUTPUT || s->plugin_fell_back ? OD_PG_PLUGIN_PGOUTPUT
                                                                            : OD_PG_PLUGIN_ODSYNC;
}

bool od_pg_plugin_fall_back(pg_source *s, const char *msg) {
  if (s->plugin_mode != OD_PG_PLUGIN_AUTO || s->plugin_fell_back) return false;
  /* "could not access file "odsync_pgoutput": No such file or directory", or a load error naming it */
  if (!strstr(msg, OD_PG_PLUGIN_ODSYNC)) return false;
  s->plugin_fell_back = true;
  od_info("%s: the server cannot load the output plugin odsync_pgoutput (%s); slot %s uses pgoutput: the rows "
          "other nodes' pipelines apply here are decoded, sent and dropped by odsync (install odsync_pgoutput.so "
          "into pg_config --pkglibdir, and add odsync_pgoutput to output_plugin_libraries where the server has "
          "that setting, to leave them out, docs/MULTI_MASTER.md \"The echo\")",
          s->where, msg, s->slot);
  return true;
}

void od_pg_plugin_use(pg_source *s, const char *name, bool created) {
  snprintf(s->plugin, sizeof s->plugin, "%s", name);
  if (!s->mesh || s->plugin_logged) return;
  s->plugin_logged = true;
  bool odsync = strcmp(name, OD_PG_PLUGIN_ODSYNC) == 0;
  if (created || odsync || s->plugin_mode == OD_PG_PLUGIN_USE_PGOUTPUT)
    od_info("%s: slot %s uses the output plugin %s%s", s->where, s->slot, name,
            odsync ? " (the changes of transactions with a replication origin are left out by the server)" : "");
  else
    od_info("%s: slot %s was created with the output plugin %s and keeps it (a slot's plugin is fixed when it is "
            "created): the rows other nodes' pipelines apply here are decoded, sent and dropped by odsync; slots "
            "created from now on use odsync_pgoutput where the server can load it", s->where, s->slot, name);
}

const char *od_pg_plugin_options(const pg_source *s, bool sql) {
  if (!s->mesh || strcmp(s->plugin, OD_PG_PLUGIN_ODSYNC) != 0) return "";
  return sql ? ", 'odsync_origin', 'none'" : ", odsync_origin 'none'";
}
