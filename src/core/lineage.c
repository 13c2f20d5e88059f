/* lineage.c — see lineage.h. */
#include "core/lineage.h"

#include <string.h>

#include <openssl/evp.h>

#include "core/audit.h"

/* Keys of a transform section that describe it without revealing a secret. */
static const char *const SHOWN_KEYS[] = {"tables", "columns", "where", "style", "unit", "keep", "length", "prefix",
                                         "with", "char", NULL};

bool od_lineage_table_listed(char *const *tables, int n, const char *schema, const char *table) {
  if (!n) return true;
  for (int i = 0; i < n; i++) {
    const char *t = tables[i], *dot = strchr(t, '.');
    if (dot ? (schema && !strncmp(t, schema, (size_t)(dot - t)) && !schema[dot - t] && !strcmp(dot + 1, table))
            : !strcmp(t, table))
      return true;
  }
  return false;
}

static const od_config_entry *entry(const od_config_section *s, const char *key) {
  for (int i = 0; i < s->nentries; i++)
    if (!strcmp(s->entries[i].key, key)) return &s->entries[i];
  return NULL;
}

static bool applies(const od_config_section *s, const char *schema, const char *table) {
  if (!table) return true;
  const od_config_entry *e = entry(s, "tables");
  if (!e) return true;
  if (e->list) return od_lineage_table_listed(e->list, e->nlist, schema, table);
  char *one[1] = {e->value};
  return e->value ? od_lineage_table_listed(one, 1, schema, table) : true;
}

static void section_json(const od_config_section *s, od_sqlbuf *out) {
  od_sqlbuf_add(out, "{\"type\":");
  od_audit_json_str(out, s->type);
  for (int k = 0; SHOWN_KEYS[k]; k++) {
    const od_config_entry *e = entry(s, SHOWN_KEYS[k]);
    if (!e || e->secret) continue;
    od_sqlbuf_add(out, ",");
    od_audit_json_str(out, e->key);
    od_sqlbuf_add(out, ":");
    if (e->list) {
      od_sqlbuf_add(out, "[");
      for (int i = 0; i < e->nlist; i++) {
        if (i) od_sqlbuf_add(out, ",");
        od_audit_json_str(out, e->list[i]);
      }
      od_sqlbuf_add(out, "]");
    } else {
      od_audit_json_str(out, e->value);
    }
  }
  if (entry(s, "key")) od_sqlbuf_add(out, ",\"keyed\":true");
  od_sqlbuf_add(out, "}");
}

void od_lineage_transforms_json(const od_pipeline_config *cfg, const od_sink_config *sk, const char *schema,
                                const char *table, od_sqlbuf *out) {
  const od_transform_list *lists[2] = {&cfg->transforms, &sk->transforms};
  od_sqlbuf_add(out, "[");
  bool first = true;
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < lists[l]->n; i++) {
      const od_config_section *s = &lists[l]->items[i];
      if (!applies(s, schema, table)) continue;
      if (!first) od_sqlbuf_add(out, ",");
      first = false;
      section_json(s, out);
    }
  od_sqlbuf_add(out, "]");
}

void od_lineage_transforms_id(const od_pipeline_config *cfg, const od_sink_config *sk, char *out, size_t n) {
  if (cfg->transforms.n + sk->transforms.n == 0) {
    snprintf(out, n, "none");
    return;
  }
  od_sqlbuf b = {0};
  od_lineage_transforms_json(cfg, sk, NULL, NULL, &b);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (b.oom || !EVP_Digest(b.p, b.len, md, &len, EVP_sha256(), NULL)) {
    snprintf(out, n, "unknown");
  } else {
    char hexs[17];
    for (int i = 0; i < 8; i++) snprintf(hexs + 2 * i, 3, "%02x", md[i]);
    snprintf(out, n, "%s", hexs);
  }
  od_sqlbuf_free(&b);
}

static bool in_list(const od_config_entry *e, const char *name) {
  if (!e) return false;
  if (e->list) {
    for (int i = 0; i < e->nlist; i++)
      if (!strcmp(e->list[i], name)) return true;
    return false;
  }
  return e->value && !strcmp(e->value, name);
}

bool od_lineage_column_protected(const od_pipeline_config *cfg, const od_sink_config *sk, const char *schema,
                                 const char *table, const char *column) {
  static const char *const PROTECTING[] = {"drop_columns", "mask", "hash", "pseudonymize", "null", NULL};
  char name[256];
  snprintf(name, sizeof name, "%s", column);
  const od_transform_list *lists[2] = {&cfg->transforms, &sk->transforms};
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < lists[l]->n; i++) {
      const od_config_section *s = &lists[l]->items[i];
      if (!s->type || !applies(s, schema, table)) continue;
      const od_config_entry *cols = entry(s, "columns");
      if (!strcmp(s->type, "rename") && cols) { /* follow the column under its new name */
        int n = cols->list ? cols->nlist : 1;
        for (int k = 0; k < n; k++) {
          const char *item = cols->list ? cols->list[k] : cols->value;
          const char *eq = item ? strchr(item, '=') : NULL;
          if (eq && strlen(name) == (size_t)(eq - item) && !strncmp(item, name, (size_t)(eq - item))) {
            snprintf(name, sizeof name, "%s", eq + 1);
            break;
          }
        }
        continue;
      }
      for (int k = 0; PROTECTING[k]; k++)
        if (!strcmp(s->type, PROTECTING[k]) && in_list(cols, name)) return true;
    }
  return false;
}

static void source_json(const od_pipeline_config *cfg, od_sqlbuf *out) {
  od_sqlbuf_add(out, "{\"type\":");
  od_audit_json_str(out, cfg->source.type);
  const od_config_entry *t = entry(&cfg->source, "tables");
  od_sqlbuf_add(out, ",\"tables\":");
  if (!t) {
    od_sqlbuf_add(out, "\"all\"");
  } else {
    od_sqlbuf_add(out, "[");
    int n = t->list ? t->nlist : 1;
    for (int i = 0; i < n; i++) {
      if (i) od_sqlbuf_add(out, ",");
      od_audit_json_str(out, t->list ? t->list[i] : t->value);
    }
    od_sqlbuf_add(out, "]");
  }
  od_sqlbuf_add(out, "}");
}

void od_lineage_pipeline_json(const od_pipeline_config *cfg, od_sqlbuf *out) {
  od_sqlbuf_add(out, "{\"source\":");
  source_json(cfg, out);
  od_sqlbuf_add(out, ",\"sinks\":[");
  for (int i = 0; i < cfg->nsinks; i++) {
    const od_sink_config *sk = &cfg->sinks[i];
    char id[32];
    od_lineage_transforms_id(cfg, sk, id, sizeof id);
    od_sqlbuf_add(out, i ? ",{\"name\":" : "{\"name\":");
    od_audit_json_str(out, sk->name);
    od_sqlbuf_add(out, ",\"type\":");
    od_audit_json_str(out, sk->section.type);
    od_sqlbuf_add(out, ",\"transforms_id\":");
    od_audit_json_str(out, id);
    od_sqlbuf_add(out, ",\"transforms\":");
    od_lineage_transforms_json(cfg, sk, NULL, NULL, out);
    od_sqlbuf_add(out, "}");
  }
  od_sqlbuf_add(out, "]}");
}

/* The captured table of the source that `table` names, or NULL when the source captures it not.
 * A source without `tables:` captures every table: the name itself is returned. */
static const char *captured(const od_pipeline_config *cfg, const char *table) {
  const od_config_entry *t = entry(&cfg->source, "tables");
  if (!t) return table;
  int n = t->list ? t->nlist : 1;
  const char *dot = strchr(table, '.');
  for (int i = 0; i < n; i++) {
    const char *c = t->list ? t->list[i] : t->value;
    if (!c) continue;
    const char *cdot = strchr(c, '.');
    if (!strcmp(c, table) || (!dot && cdot && !strcmp(cdot + 1, table)) || (dot && !cdot && !strcmp(dot + 1, c)))
      return c;
  }
  return NULL;
}

int od_lineage_print(const od_config *root, const char *table, FILE *out) {
  int blocks = 0;
  for (int p = 0; p < root->npipelines; p++) {
    const od_pipeline_config *cfg = &root->pipelines[p];
    const char *src = captured(cfg, table);
    if (!src) continue;
    char schema[128] = "", name[256];
    const char *dot = strchr(src, '.');
    if (dot && (size_t)(dot - src) < sizeof schema) {
      memcpy(schema, src, (size_t)(dot - src));
      schema[dot - src] = 0;
      snprintf(name, sizeof name, "%s", dot + 1);
    } else {
      snprintf(name, sizeof name, "%s", src);
    }
    for (int s = 0; s < cfg->nsinks; s++) {
      const od_sink_config *sk = &cfg->sinks[s];
      fprintf(out, "%s%s\n", blocks ? "\n" : "", table);
      fprintf(out, "  pipeline:     %s\n", cfg->name);
      fprintf(out, "  source:       %s, table %s%s\n", cfg->source.type, src,
              entry(&cfg->source, "tables") ? "" : " (the source captures every table)");
      fprintf(out, "  sink:         %s (%s)\n", sk->name, sk->section.type);
      int n = 0;
      const od_transform_list *lists[2] = {&cfg->transforms, &sk->transforms};
      for (int l = 0; l < 2; l++)
        for (int i = 0; i < lists[l]->n; i++) {
          const od_config_section *sec = &lists[l]->items[i];
          if (!applies(sec, schema[0] ? schema : NULL, name)) continue;
          od_sqlbuf b = {0};
          section_json(sec, &b);
          fprintf(out, "  transform %d:  %s (%s, %s:%d)\n", ++n, b.oom ? sec->type : b.p,
                  l ? "sink" : "pipeline", sec->file ? sec->file : "", sec->line);
          od_sqlbuf_free(&b);
        }
      if (!n) fprintf(out, "  transforms:   none (rows arrive as the source has them)\n");
      blocks++;
    }
  }
  return blocks;
}
