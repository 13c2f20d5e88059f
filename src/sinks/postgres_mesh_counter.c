/* sinks/postgres_mesh_counter.c — a mesh sink's counter columns (mesh_counters; docs/MULTI_MASTER.md,
 * "Counter columns" and "Counters on a column_merge table").
 *
 * Owns: which columns of a table are counters, a change's deltas (new - old of an update with its
 * full old row), the counter values a key state carries through the run (d->val, d->ctr), the merge
 * local + delta of an update on its own (an override of the change when it applies; else the key is
 * fixed after the run's apply: its counters set to the merged values), and the run's overrides
 * (m->ovr: room for one more, the values a change is applied with, freeing them), which column
 * merges (postgres_mesh_colmerge.c) fill too.
 * Never touches: which write wins (postgres_mesh_decide.c), column versions and column merges
 * (postgres_mesh_colmerge.c, which adds a merge's counters with the helpers here), transactions, the
 * apply path's statements (postgres_apply.c, postgres_bulk.c).
 * Pointer ownership: overrides own their value arrays and texts (freed by pgs_mesh_overrides_free;
 * the values they do not replace are borrowed from the change); a key state's counter values are its
 * own (malloc'd, replaced here); a ctr_in borrows its column indexes.
 */
#include "sinks/postgres_mesh_internal.h"

/* ---- counters ---------------------------------------------------------------------------------- */

/* The counter columns of r (column indexes), from mesh_counters "schema.table.column". */
int pgs_mesh_counter_cols(const pgs_mesh *m, const pg_rel *r, int *cols) {
  int n = 0;
  size_t tl = strlen(r->target);
  for (int i = 0; i < m->ncounters && n < COUNTERS_MAX; i++) {
    const char *c = m->counters[i];
    if (strncmp(c, r->target, tl) != 0 || c[tl] != '.') continue;
    for (int j = 0; j < r->rel->ncolumns; j++)
      if (strcmp(r->rel->columns[j].name, c + tl + 1) == 0) cols[n++] = j;
  }
  return n;
}

void pgs_mesh_overrides_free(pgs_mesh *m) {
  for (size_t i = 0; i < m->novr; i++) {
    for (int j = 0; j < m->ovr[i].ntexts; j++) free(m->ovr[i].texts[j]);
    free(m->ovr[i].texts);
    free(m->ovr[i].vals);
  }
  m->novr = 0;
}

bool pgs_mesh_int_of(const od_value *v, long long *out) {
  if (v->kind != OD_VALUE_TEXT) return false;
  char *end = NULL;
  *out = strtoll(v->data, &end, 10);
  return end && *end == '\0' && end != v->data;
}

/* Room for one more entry in m->ovr (doubling). */
int pgs_mesh_reserve_override(pgs_sink *s, pgs_mesh *m, od_error *err) {
  if (m->novr < m->ovr_cap) return OD_OK;
  size_t cap = m->ovr_cap ? m->ovr_cap * 2 : 16;
  struct override *g = realloc(m->ovr, cap * sizeof *g);
  if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  m->ovr = g;
  m->ovr_cap = cap;
  return OD_OK;
}

/* The values change idx is applied with: its override's, else its own new row. */
const od_value *pgs_mesh_applied_vals(const pgs_mesh *m, size_t idx, const od_change *c) {
  const od_value *vals = c->newtup.values;
  for (size_t o = 0; o < m->novr; o++)
    if (m->ovr[o].idx == idx) vals = m->ovr[o].vals;
  return vals;
}


ctr_in pgs_mesh_ctr_of(const od_change *c, const int *cols, int n) {
  ctr_in k = {.cols = cols, .n = n};
  if (!n || c->op != OD_OP_UPDATE || c->old_kind != 'O' || c->oldtup.ncolumns != c->newtup.ncolumns) return k;
  for (int i = 0; i < n; i++) {
    long long o, nv;
    if (cols[i] >= c->newtup.ncolumns || !pgs_mesh_int_of(&c->oldtup.values[cols[i]], &o) ||
        !pgs_mesh_int_of(&c->newtup.values[cols[i]], &nv))
      return k;
    k.delta[i] = nv - o;
  }
  k.delta_ok = true;
  return k;
}

/* Which counter column col is (its index in k), -1 none. */
int pgs_mesh_ctr_index(const ctr_in *k, int col) {
  for (int i = 0; k && i < k->n; i++)
    if (k->cols[i] == col) return i;
  return -1;
}

/* A text of v, malloc'd. */
char *pgs_mesh_ll_text(long long v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", v);
  return strdup(buf);
}

/* Counter i of d takes the value v (an integer; else the local value is unknown: no delta merges on
 * it until a write sets it again). false: out of memory. */
static bool set_ctr(decision *d, int i, const od_value *v) {
  long long x = 0;
  bool ok = pgs_mesh_int_of(v, &x);
  if (i >= d->nval) {
    for (int j = d->nval; j <= i; j++) d->val[j] = NULL;
    d->nval = i + 1;
  }
  free(d->val[i]);
  d->val[i] = ok ? pgs_mesh_ll_text(x) : NULL;
  d->ctr[i] = ok ? x : 0;
  return !ok || d->val[i];
}

/* After a change wrote the counters as values (an insert, a re-created row, an update without a
 * delta): d->ctr and the local values follow what the row now holds (vals: the values applied,
 * UNCHANGED ones left as they were), so a later update of the key in the same run adds its delta
 * to them. false: out of memory. */
bool pgs_mesh_ctr_sync(decision *d, const ctr_in *k, const od_value *vals, int nvals) {
  for (int i = 0; i < k->n; i++)
    if (k->cols[i] < nvals && vals[k->cols[i]].kind != OD_VALUE_UNCHANGED && !set_ctr(d, i, &vals[k->cols[i]]))
      return false;
  return true;
}

/* column_merge: the same from the key state's row (d->row: the row as the run leaves it). */
bool pgs_mesh_ctr_sync_row(decision *d, const ctr_in *k) {
  for (int i = 0; d->row && i < k->n; i++) {
    if (k->cols[i] >= d->nrow) continue;
    const char *t = d->row[k->cols[i]];
    od_value v = t ? (od_value){.data = t, .len = (uint32_t)strlen(t), .kind = OD_VALUE_TEXT}
                   : (od_value){.kind = OD_VALUE_NULL};
    if (!set_ctr(d, i, &v)) return false;
  }
  return true;
}

/* An update of a live row of a table with counter columns: every counter ends at local + (new -
 * old) on every node (each node adds every other node's delta exactly once, in the transaction that
 * applies it). d->ctr holds the counters' value after the changes decided so far; this adds the
 * change's deltas to it. false: no counter to merge (no old row image: warned; not integers; no
 * local value). */
bool pgs_mesh_add_deltas(pgs_sink *s, const pg_rel *r, const od_change *c, decision *d, const ctr_in *k) {
  if (c->old_kind != 'O' || c->oldtup.ncolumns != c->newtup.ncolumns) {
    od_warn("postgres sink %s: mesh: table %s: counter columns need the old row (REPLICA IDENTITY FULL on every "
            "node); merged by the policy instead", s->where, r->target);
    return false;
  }
  if (!k->delta_ok) return false;
  for (int i = 0; i < k->n; i++)
    if (i >= d->nval || !d->val[i]) return false;
  for (int i = 0; i < k->n; i++) d->ctr[i] += k->delta[i];
  return true;
}

/* The counters after pgs_mesh_add_deltas, written: the remote change applies (apply): its new row with the
 * merged counters replaces the change (an override); it does not: the key is marked for a fix (its
 * counters set to d->ctr after the run's apply). */
int pgs_mesh_write_counters(pgs_sink *s, pgs_mesh *m, const od_change *c, size_t idx, decision *d, const ctr_in *k,
                            bool apply, od_error *err) {
  if (!apply) {
    d->fix = true;
    return pgs_mesh_wr_push(m, d) ? OD_OK : OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  int grown = pgs_mesh_reserve_override(s, m, err);
  if (grown) return grown;
  struct override *o = &m->ovr[m->novr];
  *o = (struct override){.idx = idx};
  o->vals = malloc(c->newtup.ncolumns * sizeof *o->vals);
  o->texts = calloc((size_t)k->n, sizeof *o->texts);
  if (!o->vals || !o->texts) {
    free(o->vals);
    free(o->texts);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  m->novr++;
  memcpy(o->vals, c->newtup.values, c->newtup.ncolumns * sizeof *o->vals);
  for (int i = 0; i < k->n; i++) {
    if (!(o->texts[i] = pgs_mesh_ll_text(d->ctr[i]))) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    o->ntexts++;
    o->vals[k->cols[i]] = (od_value){.data = o->texts[i], .len = (uint32_t)strlen(o->texts[i]), .kind = OD_VALUE_TEXT};
  }
  return OD_OK;
}

/* After the run's apply: counters of rows whose remote update lost get their merged values. */
int pgs_mesh_fix_counters(pgs_sink *s, pgs_mesh *m, decision *d, od_error *err) {
  int cols[COUNTERS_MAX];
  int ncols = pgs_mesh_counter_cols(m, d->r, cols);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, d->r->qtarget);
  od_sqlbuf_add(b, " SET ");
  for (int k = 0; k < ncols; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, d->r->rel->columns[cols[k]].name);
    od_sqlbuf_addf(b, " = %lld", d->ctr[k]);
  }
  od_sqlbuf_add(b, " WHERE concat_ws(chr(31)");
  for (int k = 0; k < d->r->nkey; k++) {
    od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, d->r->rel->columns[PGS_COL(d->r->key_plan[k])].name);
    od_sqlbuf_add(b, "::text");
  }
  od_sqlbuf_add(b, ") = $1 AND (");
  /* the key columns, each compared with its own value too, so an index on the key is used */
  char *copy = strdup(d->key);
  if (!copy) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *params[1 + 64] = {d->key};
  int np = 1;
  char *save = NULL, *tok = copy;
  for (int k = 0; k < d->r->nkey && np < 65; k++) {
    char *sep = strchr(tok, '\x1f');
    if (sep) *sep = '\0';
    if (k) od_sqlbuf_add(b, " AND ");
    od_sqlbuf_ident(b, d->r->rel->columns[PGS_COL(d->r->key_plan[k])].name);
    params[np] = tok;
    od_sqlbuf_addf(b, " = $%d", ++np);
    tok = sep ? sep + 1 : tok + strlen(tok);
  }
  (void)save;
  od_sqlbuf_add(b, ")");
  PGresult *res = b->oom ? NULL : pgs_exec(s, d->r->target, "setting merged counters (mesh)", b->p, np, params, err);
  free(copy);
  if (!res) return b->oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  PQclear(res);
  d->fix = false;
  return OD_OK;
}
