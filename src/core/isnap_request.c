/* isnap_request.c — `odsync snapshot`: the request side of incremental snapshots (isnap.h).
 * Connects to the pipeline's SOURCE (a source instance of its own), checks every named table is
 * captured and can be copied (it has a key to page by: a primary key or replica identity index, of
 * any columns and types, see od_isnap_refusal), and writes one transactional logical
 * message per table, prefix "odsync:<pipeline>", content {"op":"snapshot","table":"schema.table"}.
 * The running pipeline reads it from its stream (or the next start does: the slot keeps it until
 * acknowledged), so no IPC and no state outside the source and the sink are needed.
 * Then, for a table whose target the sink had and lost (dropped by hand), it tells the sink
 * (od_sink_ops.resnapshot_table) that the next run may make that table anew: the re-copy fills it.
 * The request is written first, so a sink is never told this for a copy that will not come.
 * Owns: nothing after it returns (the source and sink instances are closed). Never touches: the
 * sink's data, files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/isnap.h"
#include "core/log.h"
#include "odsync/registry.h"

static const od_snap_table *find_table(const od_snapshot_info *info, const char *name) {
  for (int i = 0; i < info->ntables; i++)
    if (!strcmp(info->tables[i].name, name)) return &info->tables[i];
  return NULL;
}

/* Tell every sink which requested tables it may make anew (their target is gone). A sink opens
 * under the name the pipeline gives it (its checkpoint and ownership rows): the pipeline's, or
 * "pipeline.sink" for a named sink. */
static int allow_recreate(const od_pipeline_config *cfg, const od_snap_table *const *todo, int ntodo, od_error *err) {
  int rc = OD_OK;
  for (int k = 0; !rc && k < cfg->nsinks; k++) {
    const od_sink_config *sk = &cfg->sinks[k];
    const od_sink_ops *snk = od_sink_find(sk->section.type);
    if (!snk || !(snk->caps & OD_SINK_TABLE_OWNERSHIP)) continue;
    char name[128];
    if (!strcmp(sk->name, "default")) snprintf(name, sizeof name, "%s", cfg->name);
    else snprintf(name, sizeof name, "%s.%s", cfg->name, sk->name);
    od_sink *s = NULL;
    rc = snk->open(&sk->section, name, &s, err);
    for (int i = 0; !rc && i < ntodo; i++) {
      const od_relation *rel = todo[i]->rel;
      bool recreate = false;
      rc = snk->resnapshot_table(s, rel->schema, rel->name, &recreate, err);
      if (!rc && recreate)
        od_info("pipeline %s: sink %s: the table for %s is gone; the next run makes it anew and this snapshot fills "
                "it", cfg->name, sk->name, todo[i]->name);
    }
    if (s) snk->close(s);
  }
  if (rc) od_error_prefix(err, "pipeline %s: the snapshot was requested, but a sink could not be prepared for it: ",
                          cfg->name);
  return rc;
}

int od_isnap_request(const od_pipeline_config *cfg, const char *const *tables, int ntables,
                     void (*report)(void *ctx, const char *table), void *ctx, od_error *err) {
  const od_source_ops *src = od_source_find(cfg->source.type);
  /* A mesh pipeline's sink writes only stamped changes of its author (versions, conflicts): copied
   * rows would be unversioned writes of the node. Nodes start equal; a new one joins with a copy. */
  if (od_config_find(&cfg->source, "mesh_node"))
    return OD_FAIL(err, OD_EUNSUPPORTED, "pipeline %s is a mesh pipeline: it takes no snapshot (the nodes of a mesh "
                   "start with the same data, a node added later gets its copy from `odsync mesh join`; "
                   "docs/MULTI_MASTER.md)", cfg->name);
  if (!src || !(src->snapshot ? src->snapshot->incremental : NULL))
    return OD_FAIL(err, OD_EUNSUPPORTED, "pipeline %s: source type '%s' has no incremental snapshots", cfg->name,
                   cfg->source.type ? cfg->source.type : "");
  for (int i = 0; i < cfg->nsinks; i++) {
    const od_config_section *sec = &cfg->sinks[i].section;
    const od_sink_ops *snk = od_sink_find(sec->type);
    if (!snk || (snk->caps & (OD_SINK_MARKS | OD_SINK_TEXT_MARKS)) != (OD_SINK_MARKS | OD_SINK_TEXT_MARKS))
      return OD_FAIL(err, OD_EUNSUPPORTED, "pipeline %s: sink %s (type '%s') cannot record snapshot progress (no "
                     "text marks)", cfg->name, cfg->sinks[i].name, sec->type ? sec->type : "");
  }
  uint32_t rows;
  int rc = od_isnap_chunk_rows(cfg, &rows, err);
  if (rc) return rc;
  od_source *s = NULL;
  if ((rc = src->open(&cfg->source, cfg->name, &s, err))) return rc;
  od_snapshot_info info = {0};
  rc = src->snapshot->incremental->ready(s, err);
  if (!rc) rc = src->snapshot->prepare(s, false, &info, err);
  int n = ntables ? ntables : info.ntables;
  const od_snap_table **todo = calloc((size_t)(n ? n : 1), sizeof *todo);
  if (!rc && !todo) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  int ntodo = 0;
  for (int i = 0; !rc && i < n; i++) {
    char name[192];
    if (ntables)
      snprintf(name, sizeof name, "%s%s", strchr(tables[i], '.') ? "" : "public.", tables[i]);
    else
      snprintf(name, sizeof name, "%s", info.tables[i].name);
    const od_snap_table *t = find_table(&info, name);
    const char *why = !t ? NULL : strpbrk(name, "\"\\") ? "its name holds a quote or a backslash" : od_isnap_refusal(t);
    if (!t) {
      rc = OD_FAIL(err, OD_EINVAL,
                   "pipeline %s: table %s is not captured (not in the pipeline's publication; for a new table run "
                   "ALTER PUBLICATION ... ADD TABLE first, see docs/SNAPSHOTS.md)", cfg->name, name);
    } else if (why && ntables) {
      rc = OD_FAIL(err, OD_EINVAL, "pipeline %s: cannot snapshot %s incrementally: %s", cfg->name, name, why);
    } else if (why) {
      od_warn("pipeline %s: skipping %s: %s", cfg->name, name, why);
    } else {
      todo[ntodo++] = t;
    }
  }
  char prefix[96];
  snprintf(prefix, sizeof prefix, "odsync:%s", cfg->name);
  for (int i = 0; !rc && i < ntodo; i++) {
    char json[320];
    snprintf(json, sizeof json, "{\"op\":\"snapshot\",\"table\":\"%s\"}", todo[i]->name);
    if (!(rc = src->snapshot->incremental->emit(s, prefix, json, err)) && report) report(ctx, todo[i]->name);
  }
  if (!rc && ntodo) rc = allow_recreate(cfg, todo, ntodo, err);
  free(todo);
  src->close(s);
  return rc;
}
