/* isnap_request.c — `odsync snapshot`: the request side of incremental snapshots (isnap.h).
 * Connects to the pipeline's SOURCE (a source instance of its own), checks every named table is
 * captured and can be copied (it has a key to page by: a primary key or replica identity index, of
 * any columns and types, see od_isnap_refusal), and writes one transactional logical
 * message per table, prefix "odsync:<pipeline>", content {"op":"snapshot","table":"schema.table"}.
 * The running pipeline reads it from its stream (or the next start does: the slot keeps it until
 * acknowledged), so no IPC and no state outside the source and the sink are needed.
 * Owns: nothing after it returns (the source instance is closed). Never touches: the sink, files.
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

int od_isnap_request(const od_pipeline_config *cfg, const char *const *tables, int ntables,
                     void (*report)(void *ctx, const char *table), void *ctx, od_error *err) {
  const od_source_ops *src = od_source_find(cfg->source.type);
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
  free(todo);
  src->close(s);
  return rc;
}
