/* rewrite.c — see rewrite.h. */
#include "transforms/rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"

typedef struct version {
  uint16_t *cols;         /* the rewritten columns' positions, ascending (owned), ncols of them */
  uint16_t ncols;
  char **missing;         /* rewritten missing_value per column (owned), or NULL */
  uint16_t ncolumns;
} version;

static void version_free(void *p) {
  version *v = p;
  for (uint16_t i = 0; i < v->ncolumns; i++) free(v->missing[i]);
  free(v->missing);
  free(v->cols);
  free(v);
}

size_t tx_utf8_len(const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

/* A scratch on malloc for rewriting defaults at relation time; frees what it handed out. */
typedef struct heap_scratch {
  od_scratch s;
  void *p[8];
  int n;
} heap_scratch;

static void *heap_alloc(od_scratch *s, size_t size) {
  heap_scratch *h = (heap_scratch *)s;
  if (h->n == 8) return NULL;
  return h->p[h->n++] = malloc(size ? size : 1);
}

static void heap_free(heap_scratch *h) {
  for (int i = 0; i < h->n; i++) free(h->p[i]);
  h->n = 0;
}

int tx_rewrite_relation(od_transform *t, const od_relation *in, const od_relation **out, od_error *err) {
  tx_rewrite *r = (tx_rewrite *)t;
  *out = in;
  if (!tx_table_matches(r->tables, r->ntables, in)) return OD_OK;
  bool any = false;
  for (uint16_t i = 0; i < in->ncolumns; i++) {
    const od_column *c = &in->columns[i];
    if (tx_list_index(r->columns, r->ncolumns, c->name) < 0) continue;
    any = true;
    if (c->key && !r->kind->key_allowed)
      return OD_FAIL(err, OD_ECONFIG, "column %s is part of the key of %s.%s, which the sink matches rows on; %s "
                     "would break row identity (use hash or pseudonymize for a key column, or remove it from %s.columns)",
                     c->name, in->schema, in->name, r->kind->ops->type, r->kind->ops->type);
    if (r->kind->column) {
      int rc = r->kind->column(r, in, c, err);
      if (rc) return rc;
    }
  }
  if (!any) return OD_OK;
  tx_outrel *o;
  int rc = tx_outrel_new(&r->outs, in, &o, err);
  if (rc) return rc;
  version *v = calloc(1, sizeof *v);
  if (!v || !(v->missing = calloc(in->ncolumns, sizeof *v->missing)) ||
      !(v->cols = calloc(in->ncolumns, sizeof *v->cols))) {
    if (v) free(v->missing);
    free(v);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  v->ncolumns = in->ncolumns;
  o->data = v;
  for (uint16_t i = 0; i < in->ncolumns; i++) {
    od_column *c = &o->rel.columns[i];
    if (tx_list_index(r->columns, r->ncolumns, c->name) < 0) continue;
    v->cols[v->ncols++] = i;
    if (r->kind->to_text) {
      c->type_oid = OD_PGT_TEXT;
      c->typmod = -1;
      strcpy(c->type_name, "text");
    }
    if (c->missing_value) { /* the default older rows hold must not leak either */
      heap_scratch h = {.s = {.alloc = heap_alloc}};
      od_value val = {.data = c->missing_value, .len = (uint32_t)strlen(c->missing_value), .kind = OD_VALUE_TEXT},
               res;
      rc = r->kind->value(r, &in->columns[i], &val, &res, &h.s, err);
      if (!rc && res.kind == OD_VALUE_TEXT && !(v->missing[i] = strndup(res.data, res.len)))
        rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      heap_free(&h);
      if (rc) return od_error_prefix(err, "column %s (its default for older rows): ", c->name);
      c->missing_value = v->missing[i];
    }
  }
  *out = &o->rel;
  return OD_OK;
}

static int rewrite_tuple(tx_rewrite *r, const tx_outrel *o, const od_tuple *in, od_tuple *out, od_scratch *s,
                         od_error *err) {
  const version *v = o->data;
  *out = *in;
  od_value *vals = NULL; /* copied at the first value rewritten (or the chain's copy: tx_values_copy) */
  for (uint16_t j = 0; j < v->ncols; j++) {
    uint16_t i = v->cols[j];
    if (i >= in->ncolumns) break;
    const od_value *x = &in->values[i];
    if (x->kind == OD_VALUE_NULL || x->kind == OD_VALUE_UNCHANGED) continue;
    if (x->kind != OD_VALUE_TEXT)
      return OD_FAIL(err, OD_EUNSUPPORTED, "column %s: %s needs the value's text form, got a binary value",
                     o->in->columns[i].name, r->kind->ops->type);
    if (!vals && !(vals = tx_values_copy(s, in))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    od_value res;
    int rc = r->kind->value(r, &o->in->columns[i], &vals[i], &res, s, err);
    if (rc) return od_error_prefix(err, "column %s: ", o->in->columns[i].name);
    vals[i] = res;
  }
  if (vals) out->values = vals;
  return OD_OK;
}

int tx_rewrite_change(od_transform *t, const od_relation *rel, const od_change *in, od_change *out, od_scratch *s,
                      bool *keep, od_error *err) {
  tx_rewrite *r = (tx_rewrite *)t;
  *keep = true;
  *out = *in;
  out->rel = rel;
  const tx_outrel *o = tx_outrel_find(&r->outs, rel);
  if (!o) return OD_OK;
  int rc = rewrite_tuple(r, o, &in->newtup, &out->newtup, s, err);
  if (!rc) rc = rewrite_tuple(r, o, &in->oldtup, &out->oldtup, s, err);
  return rc;
}

void tx_rewrite_close(od_transform *t) {
  tx_rewrite *r = (tx_rewrite *)t;
  tx_outrels_free(&r->outs, version_free);
  if (r->kind->close) r->kind->close(r);
  free(r);
}

int tx_rewrite_open(const od_config_section *cfg, const tx_rewrite_kind *kind, od_transform **out, od_error *err) {
  const char *allowed[16];
  int na = 0;
  allowed[na++] = "columns";
  allowed[na++] = "tables";
  for (int i = 0; kind->keys && kind->keys[i] && na < 15; i++) allowed[na++] = kind->keys[i];
  allowed[na] = NULL;
  int rc = od_config_check_keys(cfg, allowed, err);
  if (rc) return rc;
  tx_rewrite *r = calloc(1, kind->size);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  r->base.ops = kind->ops;
  r->kind = kind;
  if ((rc = od_config_list(cfg, "columns", &r->columns, &r->ncolumns, err)) ||
      (rc = od_config_list(cfg, "tables", &r->tables, &r->ntables, err))) {
    free(r);
    return rc;
  }
  if (!r->ncolumns) {
    free(r);
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: %s needs 'columns: [name, ...]'", cfg->file, cfg->line, cfg->col,
                   cfg->path, kind->ops->type);
  }
  if (kind->open && (rc = kind->open(r, cfg, err))) {
    tx_rewrite_close(&r->base);
    return rc;
  }
  *out = &r->base;
  return OD_OK;
}
