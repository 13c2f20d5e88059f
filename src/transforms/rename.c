/* rename.c — the rename transform: columns reach the sink under new names.
 *
 *   transforms:
 *     - { type: rename, columns: [email=contact_email, ssn=tax_id], tables: [public.customers] }
 *
 * `columns` is a list of OLD=NEW items (config values are scalars or lists, so a mapping is written
 * as pairs); `tables` is optional (default every table; a name without a schema matches any schema).
 * Columns a table does not have are ignored. A renamed column keeps its values, type and key role, so
 * row identity is unchanged and the sink may still take the source's binary values. A new name that
 * another column of the table already has is an error naming the table and both columns.
 * Owns: the pairs (split from the config's strings) and the output relations (names borrowed from
 * the pairs). Never touches: values, the sink, the input relations.
 */
#include <stdlib.h>
#include <string.h>

#include "transforms/tx_util.h"

typedef struct rename {
  od_transform base;
  char **from, **to; /* owned copies */
  int n;
  char *const *tables;
  int ntables;
  tx_outrels outs;
} rename_t;

static const char *const allowed[] = {"columns", "tables", NULL};

extern const od_transform_ops od_transform_rename;

static int new_name(const rename_t *r, const char *old) {
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->from[i], old)) return i;
  return -1;
}

static int rn_relation(od_transform *t, const od_relation *in, const od_relation **out, od_error *err) {
  rename_t *r = (rename_t *)t;
  *out = in;
  if (!tx_table_matches(r->tables, r->ntables, in)) return OD_OK;
  bool any = false;
  for (uint16_t i = 0; i < in->ncolumns; i++) any = any || new_name(r, in->columns[i].name) >= 0;
  if (!any) return OD_OK;
  tx_outrel *o;
  int rc = tx_outrel_new(&r->outs, in, &o, err);
  if (rc) return rc;
  for (uint16_t i = 0; i < in->ncolumns; i++) {
    int k = new_name(r, in->columns[i].name);
    if (k >= 0) o->rel.columns[i].name = r->to[k];
  }
  for (uint16_t i = 0; i < in->ncolumns; i++)
    for (uint16_t j = i + 1; j < in->ncolumns; j++)
      if (!strcmp(o->rel.columns[i].name, o->rel.columns[j].name))
        return OD_FAIL(err, OD_ECONFIG, "rename gives columns %s and %s of %s.%s the same name %s", in->columns[i].name,
                       in->columns[j].name, in->schema, in->name, o->rel.columns[i].name);
  *out = &o->rel;
  return OD_OK;
}

static int rn_change(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *s,
                     bool *keep, od_error *err) {
  (void)t, (void)s, (void)err;
  *keep = true;
  *out = *in;
  out->rel = rel; /* same values in the same order: only the names differ */
  return OD_OK;
}

static void rn_close(od_transform *t) {
  rename_t *r = (rename_t *)t;
  tx_outrels_free(&r->outs, NULL);
  for (int i = 0; i < r->n; i++) free(r->from[i]); /* to[i] points into the same allocation */
  free(r->from);
  free(r->to);
  free(r);
}

static bool ident_ok(const char *s, size_t n) {
  if (!n) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == '=' || s[i] == '"') return false;
  return true;
}

static int rn_open(const od_config_section *cfg, od_transform **out, od_error *err) {
  int rc = od_config_check_keys(cfg, allowed, err);
  if (rc) return rc;
  rename_t *r = calloc(1, sizeof *r);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  r->base.ops = &od_transform_rename;
  char *const *items;
  int n;
  if ((rc = od_config_list(cfg, "columns", &items, &n, err)) ||
      (rc = od_config_list(cfg, "tables", &r->tables, &r->ntables, err))) {
    free(r);
    return rc;
  }
  const od_config_entry *e = od_config_find(cfg, "columns");
  if (!n) {
    free(r);
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: rename needs 'columns: [old=new, ...]'", cfg->file, cfg->line,
                   cfg->col, cfg->path);
  }
  r->from = calloc((size_t)n, sizeof *r->from);
  r->to = calloc((size_t)n, sizeof *r->to);
  if (!r->from || !r->to) {
    rn_close(&r->base);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    const char *eq = strchr(items[i], '=');
    if (!eq || !ident_ok(items[i], (size_t)(eq - items[i])) || !ident_ok(eq + 1, strlen(eq + 1))) {
      rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.columns[%d]: '%s' is not OLD=NEW (a column name, '=', the new name)",
                   cfg->file, e->line, e->col, cfg->path, i, items[i]);
      break;
    }
    if (!(r->from[i] = strdup(items[i]))) {
      rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      break;
    }
    r->n = i + 1;
    r->from[i][eq - items[i]] = '\0';
    r->to[i] = r->from[i] + (eq - items[i]) + 1;
    for (int j = 0; j < i && !rc; j++)
      if (!strcmp(r->from[j], r->from[i]))
        rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.columns: column %s is renamed twice", cfg->file, e->line, e->col,
                     cfg->path, r->from[i]);
    if (rc) break;
  }
  if (rc) {
    rn_close(&r->base);
    return rc;
  }
  *out = &r->base;
  return OD_OK;
}

const od_transform_ops od_transform_rename = {
    .type = "rename",
    .keeps_values = true,
    .open = rn_open,
    .relation = rn_relation,
    .change = rn_change,
    .close = rn_close,
};
