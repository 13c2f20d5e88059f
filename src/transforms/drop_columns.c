/* drop_columns.c — the drop_columns transform: columns named in `columns` never reach the sink.
 *
 *   transforms:
 *     - { type: drop_columns, columns: [ssn, notes], tables: [public.customers] }  # tables: optional
 *
 * Owns: the output relations it makes (a copy of each input version without those columns) and
 * their index maps, freed at close. A key column cannot be dropped (the sink matches rows on it):
 * that is an error naming the table and column. Values are moved, never rewritten, so the sink may
 * still take the source's binary form. Never touches: the sink, the input relations.
 */
#include <stdlib.h>
#include <string.h>

#include "odsync/transform.h"

typedef struct out_rel {
  const od_relation *in;
  od_relation rel;  /* columns owned; names borrowed from `in` */
  uint16_t *from;   /* from[i]: index in `in` of output column i */
} out_rel;

typedef struct drop_columns {
  od_transform base;
  char *const *columns;
  int ncolumns;
  char *const *tables;
  int ntables;
  out_rel **outs;
  size_t nouts, cap;
} drop_columns;

static const char *const allowed[] = {"columns", "tables", NULL};

static int dc_open(const od_config_section *cfg, od_transform **out, od_error *err);

static bool listed(char *const *list, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i], s)) return true;
  return false;
}

static bool table_matches(const drop_columns *d, const od_relation *r) {
  if (!d->ntables) return true;
  for (int i = 0; i < d->ntables; i++) {
    const char *t = d->tables[i], *dot = strchr(t, '.');
    if (dot ? (!strncmp(t, r->schema, (size_t)(dot - t)) && !r->schema[dot - t] && !strcmp(dot + 1, r->name))
            : !strcmp(t, r->name))
      return true;
  }
  return false;
}

static const od_relation *output_of(drop_columns *d, const od_relation *in) {
  for (size_t i = 0; i < d->nouts; i++)
    if (d->outs[i]->in == in) return &d->outs[i]->rel;
  return in; /* untouched (or not seen): the input itself */
}

static int dc_relation(od_transform *t, const od_relation *in, const od_relation **out, od_error *err) {
  drop_columns *d = (drop_columns *)t;
  *out = in;
  if (!table_matches(d, in)) return OD_OK;
  uint16_t keep = 0;
  for (uint16_t i = 0; i < in->ncolumns; i++) {
    const od_column *c = &in->columns[i];
    if (!listed(d->columns, d->ncolumns, c->name)) {
      keep++;
      continue;
    }
    if (c->key)
      return OD_FAIL(err, OD_ECONFIG, "column %s is part of the key of %s.%s, which the sink matches rows on; a key "
                     "column cannot be dropped (remove it from drop_columns.columns)", c->name, in->schema, in->name);
  }
  if (keep == in->ncolumns) return OD_OK;
  out_rel *o = calloc(1, sizeof *o);
  if (!o || !(o->rel.columns = calloc(keep ? keep : 1, sizeof *o->rel.columns)) ||
      !(o->from = calloc(keep ? keep : 1, sizeof *o->from))) {
    if (o) free(o->rel.columns);
    free(o);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  od_column *cols = o->rel.columns; /* allocated above; the copy of *in must not replace it */
  o->in = in;
  o->rel = *in;
  o->rel.columns = cols;
  uint16_t k = 0;
  for (uint16_t i = 0; i < in->ncolumns; i++) {
    if (listed(d->columns, d->ncolumns, in->columns[i].name)) continue;
    cols[k] = in->columns[i];
    o->from[k++] = i;
  }
  o->rel.ncolumns = k;
  o->rel.previous = in->previous ? (od_relation *)output_of(d, in->previous) : NULL;
  if (d->nouts == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    out_rel **n = realloc(d->outs, cap * sizeof *n);
    if (!n) {
      free(o->rel.columns);
      free(o->from);
      free(o);
      return OD_FAIL(err, OD_ENOMEM, "out of memory");
    }
    d->outs = n;
    d->cap = cap;
  }
  d->outs[d->nouts++] = o;
  *out = &o->rel;
  return OD_OK;
}

static int map_tuple(const out_rel *o, const od_tuple *in, od_tuple *out, od_scratch *s) {
  out->ncolumns = 0;
  out->values = NULL;
  if (!in->ncolumns) return OD_OK;
  od_value *v = s->alloc(s, sizeof *v * (o->rel.ncolumns ? o->rel.ncolumns : 1));
  if (!v) return OD_ENOMEM;
  for (uint16_t i = 0; i < o->rel.ncolumns; i++)
    v[i] = o->from[i] < in->ncolumns ? in->values[o->from[i]] : (od_value){.kind = OD_VALUE_NULL};
  out->ncolumns = o->rel.ncolumns;
  out->values = v;
  return OD_OK;
}

static int dc_change(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *s,
                     bool *keep, od_error *err) {
  drop_columns *d = (drop_columns *)t;
  *keep = true;
  *out = *in;
  out->rel = rel;
  const out_rel *o = NULL;
  for (size_t i = d->nouts; i-- > 0 && !o;)
    if (&d->outs[i]->rel == rel) o = d->outs[i];
  if (!o) return OD_OK;
  if (map_tuple(o, &in->newtup, &out->newtup, s) || map_tuple(o, &in->oldtup, &out->oldtup, s))
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  return OD_OK;
}

static void dc_close(od_transform *t) {
  drop_columns *d = (drop_columns *)t;
  for (size_t i = 0; i < d->nouts; i++) {
    free((void *)d->outs[i]->rel.columns);
    free(d->outs[i]->from);
    free(d->outs[i]);
  }
  free(d->outs);
  free(d);
}

const od_transform_ops od_transform_drop_columns = {
    .type = "drop_columns",
    .keeps_values = true,
    .open = dc_open,
    .relation = dc_relation,
    .change = dc_change,
    .close = dc_close,
};

static int dc_open(const od_config_section *cfg, od_transform **out, od_error *err) {
  int rc = od_config_check_keys(cfg, allowed, err);
  if (rc) return rc;
  drop_columns *d = calloc(1, sizeof *d);
  if (!d) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  d->base.ops = &od_transform_drop_columns;
  if ((rc = od_config_list(cfg, "columns", &d->columns, &d->ncolumns, err)) ||
      (rc = od_config_list(cfg, "tables", &d->tables, &d->ntables, err))) {
    free(d);
    return rc;
  }
  if (!d->ncolumns) {
    free(d);
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: drop_columns needs 'columns: [name, ...]'", cfg->file, cfg->line,
                   cfg->col, cfg->path);
  }
  *out = &d->base;
  return OD_OK;
}
