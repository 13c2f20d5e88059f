/* governance.c — see governance.h. */
#include "core/governance.h"

#include <string.h>

#include "core/audit.h"
#include "core/lineage.h"

void od_gov_session(const od_pipeline_config *cfg, const od_sink_config *sk, const od_pos *checkpoint) {
  if (!od_audit_enabled()) return;
  char id[32];
  od_lineage_transforms_id(cfg, sk, id, sizeof id);
  od_sqlbuf b = {0};
  od_lineage_transforms_json(cfg, sk, NULL, NULL, &b);
  if (!b.oom) od_audit_session(cfg->name, sk->name, checkpoint, id, b.p);
  od_sqlbuf_free(&b);
}

void od_gov_schema_change(const char *pipeline, const od_relation *rel, const char *change) {
  if (!od_audit_enabled()) return;
  od_sqlbuf b = {0};
  char name[300];
  snprintf(name, sizeof name, "%s.%s", rel->schema, rel->name);
  od_sqlbuf_add(&b, "\"table\":");
  od_audit_json_str(&b, name);
  od_sqlbuf_addf(&b, ",\"version\":%u,\"change\":", rel->version);
  od_audit_json_str(&b, change);
  od_sqlbuf_add(&b, ",\"columns\":[");
  for (int i = 0; i < rel->ncolumns; i++) {
    const od_column *c = &rel->columns[i];
    od_sqlbuf_add(&b, i ? ",[" : "[");
    od_audit_json_str(&b, c->name);
    od_sqlbuf_add(&b, ",");
    od_audit_json_str(&b, c->type_name);
    od_sqlbuf_add(&b, c->key ? ",true]" : ",false]");
  }
  od_sqlbuf_add(&b, "]");
  if (!b.oom) od_audit_record(pipeline, rel->version <= 1 ? "schema" : "schema_change", b.p);
  od_sqlbuf_free(&b);
}

void od_gov_snapshot_table(const char *pipeline, const char *ckpt_name, const char *table, const char *event,
                           uint64_t rows) {
  if (!od_audit_enabled()) return;
  size_t n = strlen(pipeline);
  const char *sink = !strncmp(ckpt_name, pipeline, n) && ckpt_name[n] == '.' ? ckpt_name + n + 1 : "default";
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "\"sink\":");
  od_audit_json_str(&b, sink);
  od_sqlbuf_add(&b, ",\"table\":");
  od_audit_json_str(&b, table);
  if (!strcmp(event, "snapshot_table_done")) od_sqlbuf_addf(&b, ",\"rows\":%llu", (unsigned long long)rows);
  if (!b.oom) od_audit_record(pipeline, event, b.p);
  od_sqlbuf_free(&b);
}

void od_gov_isnap(const char *pipeline, const char *table, const char *event, uint64_t rows, uint64_t from_stream) {
  if (!od_audit_enabled()) return;
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "\"table\":");
  od_audit_json_str(&b, table);
  if (!strcmp(event, "isnap_table_done"))
    od_sqlbuf_addf(&b, ",\"rows\":%llu,\"rows_from_stream\":%llu", (unsigned long long)rows,
                   (unsigned long long)from_stream);
  if (!b.oom) od_audit_record(pipeline, event, b.p);
  od_sqlbuf_free(&b);
}
