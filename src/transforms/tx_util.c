/* tx_util.c — see tx_util.h. */
#include "transforms/tx_util.h"

#include <stdlib.h>
#include <string.h>

bool tx_table_matches(char *const *tables, int n, const od_relation *r) {
  if (!n) return true;
  for (int i = 0; i < n; i++) {
    const char *t = tables[i], *dot = strchr(t, '.');
    if (dot ? (!strncmp(t, r->schema, (size_t)(dot - t)) && !r->schema[dot - t] && !strcmp(dot + 1, r->name))
            : !strcmp(t, r->name))
      return true;
  }
  return false;
}

int tx_list_index(char *const *list, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i], s)) return i;
  return -1;
}

const od_relation *tx_output_of(const tx_outrels *o, const od_relation *in) {
  for (size_t i = o->n; i-- > 0;)
    if (o->v[i]->in == in) return &o->v[i]->rel;
  return NULL;
}

int tx_outrel_new(tx_outrels *o, const od_relation *in, tx_outrel **out, od_error *err) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 8;
    tx_outrel **v = realloc(o->v, cap * sizeof *v);
    if (!v) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    o->v = v;
    o->cap = cap;
  }
  tx_outrel *r = calloc(1, sizeof *r);
  od_column *cols = calloc(in->ncolumns ? in->ncolumns : 1, sizeof *cols);
  if (!r || !cols) {
    free(r);
    free(cols);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  if (in->ncolumns) memcpy(cols, in->columns, in->ncolumns * sizeof *cols);
  r->in = in;
  r->rel = *in;
  r->rel.columns = cols;
  const od_relation *prev = in->previous ? tx_output_of(o, in->previous) : NULL;
  r->rel.previous = (od_relation *)(prev ? prev : in->previous);
  o->v[o->n++] = r;
  *out = r;
  return OD_OK;
}

const tx_outrel *tx_outrel_find(tx_outrels *o, const od_relation *rel) {
  if (o->last && &o->last->rel == rel) return o->last;
  for (size_t i = o->n; i-- > 0;)
    if (&o->v[i]->rel == rel) return o->last = o->v[i];
  return NULL;
}

void tx_outrels_free(tx_outrels *o, void (*free_data)(void *)) {
  for (size_t i = 0; i < o->n; i++) {
    if (free_data && o->v[i]->data) free_data(o->v[i]->data);
    free(o->v[i]->rel.columns);
    free(o->v[i]);
  }
  free(o->v);
  *o = (tx_outrels){0};
}

od_value *tx_values_copy(od_scratch *s, const od_tuple *t) {
  if (!t->ncolumns) return NULL;
  if (s->reuse) /* a copy this chain made for the same change: ours to rewrite (od_scratch) */
    for (unsigned i = 0; i < 4; i++)
      if (s->owned[i] == t->values) return (od_value *)t->values;
  od_value *v = s->alloc(s, t->ncolumns * sizeof *v);
  if (!v) return NULL;
  memcpy(v, t->values, t->ncolumns * sizeof *v);
  if (s->reuse) s->owned[s->nowned++ & 3] = v;
  return v;
}
