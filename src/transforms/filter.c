/* filter.c — the filter transform: only rows for which `where` is true reach the sink.
 *
 *   transforms:
 *     - { type: filter, tables: [public.orders], where: "status IN ('open', 'paid') AND amount >= 100" }
 *
 * The expression language is filter_expr.h's (docs/TRANSFORMS.md); it is parsed when the config is
 * read and bound to each relation version once. Per change (snapshot rows included):
 *   insert/read   kept when the new row passes;
 *   delete        dropped when the old row is known (a full old row, or an old key and a filter on
 *                 key columns only) and does not pass; otherwise kept (a delete of a row the sink
 *                 does not have changes nothing);
 *   update        new passes, old passes        -> the update;
 *                 new passes, old does not      -> an insert (the sink upserts it); unchanged TOAST
 *                                                  values are taken from the old row;
 *                 new passes, old unknown       -> the update (sinks write a missing row whose values
 *                                                  they all have);
 *                 new fails, old does not pass  -> dropped;
 *                 new fails, old passes/unknown -> a delete of the old row's key;
 *                 new cannot be evaluated (a value the filter reads is unchanged TOAST and no old
 *                 row holds it) -> the update as it is.
 *   truncate      kept.
 * A table the filter names a missing column of is an error naming the table and column. Values are
 * read in text form, so keeps_values is false. Owns: the parsed expression, the output relations and
 * their bindings. Never touches: values (never rewritten), the sink.
 */
#include <stdlib.h>
#include <string.h>

#include "transforms/filter_expr.h"
#include "transforms/tx_util.h"

typedef struct filter {
  od_transform base;
  fx_expr *expr;
  char *const *tables;
  int ntables;
  tx_outrels outs;
} filter;

extern const od_transform_ops od_transform_filter;
static const char *const allowed[] = {"where", "tables", NULL};

static void bound_free(void *b) { fx_bound_free(b); }

static int fl_relation(od_transform *t, const od_relation *in, const od_relation **out, od_error *err) {
  filter *f = (filter *)t;
  *out = in;
  if (!tx_table_matches(f->tables, f->ntables, in)) return OD_OK;
  fx_bound *b;
  int rc = fx_bind(f->expr, in, &b, err);
  if (rc) return rc;
  tx_outrel *o;
  if ((rc = tx_outrel_new(&f->outs, in, &o, err))) {
    fx_bound_free(b);
    return rc;
  }
  o->data = b; /* the output is a copy of the input: only the binding is new */
  *out = &o->rel;
  return OD_OK;
}

/* The update's new row as an insert: unchanged values from the full old row. false when one stays
 * unchanged. */
static int as_insert(const od_change *in, od_change *out, od_scratch *s, bool *ok, od_error *err) {
  *ok = false;
  for (uint16_t i = 0; i < in->newtup.ncolumns; i++) /* first: can every unchanged value be filled? */
    if (in->newtup.values[i].kind == OD_VALUE_UNCHANGED &&
        (in->old_kind != 'O' || i >= in->oldtup.ncolumns || in->oldtup.values[i].kind == OD_VALUE_UNCHANGED))
      return OD_OK;
  od_value *v = tx_values_copy(s, &in->newtup); /* may be the chain's own copy (tx_util.h): written only now */
  if (!v && in->newtup.ncolumns) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (uint16_t i = 0; i < in->newtup.ncolumns; i++)
    if (v[i].kind == OD_VALUE_UNCHANGED) v[i] = in->oldtup.values[i];
  out->op = OD_OP_INSERT;
  out->newtup = (od_tuple){in->newtup.ncolumns, v};
  out->old_kind = 0;
  out->oldtup = (od_tuple){0};
  *ok = true;
  return OD_OK;
}

/* The update as a delete of the old row: its old tuple when it has one, else the key of the new
 * row (the key did not change when there is no old tuple). */
static int as_delete(const od_relation *rel, const od_change *in, od_change *out, od_scratch *s, od_error *err) {
  out->op = OD_OP_DELETE;
  out->newtup = (od_tuple){0};
  if (in->old_kind == 'K' || in->old_kind == 'O') return OD_OK; /* oldtup already copied */
  od_value *v = s->alloc(s, (in->newtup.ncolumns ? in->newtup.ncolumns : 1) * sizeof *v);
  if (!v) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (uint16_t i = 0; i < in->newtup.ncolumns; i++)
    v[i] = i < rel->ncolumns && rel->columns[i].key ? in->newtup.values[i] : (od_value){.kind = OD_VALUE_NULL};
  out->old_kind = 'K';
  out->oldtup = (od_tuple){in->newtup.ncolumns, v};
  return OD_OK;
}

static int fl_change(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *s,
                     bool *keep, od_error *err) {
  filter *f = (filter *)t;
  *keep = true;
  *out = *in;
  out->rel = rel;
  const tx_outrel *o = tx_outrel_find(&f->outs, rel);
  if (!o) return OD_OK;
  const fx_bound *b = o->data;
  bool key_only = fx_bound_key_only(b);
  /* Can the old row be judged? A full old row, or a key when the filter reads only key columns. */
  bool old_known = in->old_kind == 'O' || (in->old_kind == 'K' && key_only);
  enum fx_result r, old;
  switch (in->op) {
    case OD_OP_INSERT:
    case OD_OP_READ:
      r = fx_eval(f->expr, b, &in->newtup, NULL);
      if (r == FX_CANT)
        return OD_FAIL(err, OD_EUNSUPPORTED, "filter: a value of the row is not in text form or is missing");
      *keep = r == FX_TRUE;
      return OD_OK;
    case OD_OP_DELETE:
      if (old_known) {
        old = fx_eval(f->expr, b, &in->oldtup, NULL);
        *keep = old != FX_FALSE && old != FX_UNKNOWN;
      }
      return OD_OK;
    case OD_OP_UPDATE:
      break;
    default:
      return OD_OK;
  }
  r = fx_eval(f->expr, b, &in->newtup, in->old_kind == 'O' ? &in->oldtup : NULL);
  if (r == FX_CANT) return OD_OK;
  if (old_known) old = fx_eval(f->expr, b, &in->oldtup, NULL);
  else if (!in->old_kind && key_only) old = fx_eval(f->expr, b, &in->newtup, NULL); /* same key */
  else old = FX_CANT;
  bool old_out = old == FX_FALSE || old == FX_UNKNOWN;
  if (r == FX_TRUE) {
    if (!old_out) return OD_OK; /* in -> in, or unknown -> in: the update */
    bool ok; /* false: a value stays unchanged, so the update goes as it is */
    return as_insert(in, out, s, &ok, err);
  }
  if (old_out) {
    *keep = false;
    return OD_OK;
  }
  return as_delete(rel, in, out, s, err);
}

static void fl_close(od_transform *t) {
  filter *f = (filter *)t;
  tx_outrels_free(&f->outs, bound_free);
  fx_free(f->expr);
  free(f);
}

static int fl_open(const od_config_section *cfg, od_transform **out, od_error *err) {
  int rc = od_config_check_keys(cfg, allowed, err);
  if (rc) return rc;
  const od_config_entry *e = od_config_find(cfg, "where");
  if (!e || !e->value || !*e->value)
    return od_config_fail_key(cfg, "where", err, ": filter needs 'where: \"<expression>\"' (docs/TRANSFORMS.md)");
  filter *f = calloc(1, sizeof *f);
  if (!f) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  f->base.ops = &od_transform_filter;
  if ((rc = od_config_list(cfg, "tables", &f->tables, &f->ntables, err))) {
    free(f);
    return rc;
  }
  if ((rc = fx_parse(e->value, &f->expr, err))) {
    free(f);
    if (e->secret) /* the message quotes a piece of the expression: not one read from a secret */
      return OD_FAIL(err, rc, "%s:%d:%d: %s.where: the expression (from a ${env:}/${file:} reference, not shown) "
                     "does not parse", cfg->file, e->line, e->col, cfg->path);
    return od_error_prefix(err, "%s:%d:%d: %s.where: ", cfg->file, e->line, e->col, cfg->path);
  }
  *out = &f->base;
  return OD_OK;
}

const od_transform_ops od_transform_filter = {
    .type = "filter",
    .keeps_values = false,
    .open = fl_open,
    .relation = fl_relation,
    .change = fl_change,
    .close = fl_close,
};
