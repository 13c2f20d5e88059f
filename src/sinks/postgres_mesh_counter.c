/* sinks/postgres_mesh_counter.c — a mesh sink's counter columns (mesh_counters; docs/MULTI_MASTER.md,
 * "Counter columns" and "Counters on a column_merge table").
 *
 * Owns: which columns of a table are counters, a change's deltas (new - old of an update with its
 * full old row), the counter values a key state carries through the run (d->val, d->ctr), the merge
 * local + delta of an update on its own (an override of the change when it applies; else the key is
 * fixed after the run's apply: its counters set to the merged values), and the run's overrides
 * (m->ovr: room for one more, the values a change is applied with, freeing them), which column
 * merges (postgres_mesh_colmerge.c) fill too. Exact counters (tables of every policy but
 * column_merge): each write's contribution new - seen (an insert's seen from the "odsync.ctr" message
 * its author's trigger wrote before it, a delete's -old), where the sum goes (an override, a fix of
 * the row, or the tombstone's balance _odsync_tombstones.ctr written after the run's apply), and the
 * function the key-lock trigger runs on counter tables, which writes those messages.
 * Never touches: which write wins (postgres_mesh_decide.c), column versions and column merges
 * (postgres_mesh_colmerge.c, which adds a merge's counters with the helpers here), transactions, the
 * apply path's statements (postgres_apply.c, postgres_bulk.c).
 * Pointer ownership: overrides own their value arrays and texts (freed by pgs_mesh_overrides_free;
 * the values they do not replace are borrowed from the change); a key state's counter values are its
 * own (malloc'd, replaced here); a ctr_in borrows its column indexes; m->ctr_carry is the mesh's
 * (malloc'd here, replaced at every flush, freed with the mesh).
 */
#include "sinks/postgres_mesh_internal.h"

/* ---- counters ---------------------------------------------------------------------------------- */

bool pgs_mesh_has_counters(const pgs_mesh *m, const char *table) {
  char q[300];
  snprintf(q, sizeof q, "%s%s", strchr(table, '.') ? "" : "public.", table);
  size_t tl = strlen(q);
  for (int i = 0; i < m->ncounters; i++)
    if (strncmp(m->counters[i], q, tl) == 0 && m->counters[i][tl] == '.') return true;
  return false;
}

void pgs_mesh_counter_ddl(const pgs_mesh *m, od_sqlbuf *b) {
  /* The key-lock trigger's function on counter tables (postgres_mesh.c installs it under that
   * trigger): an application's insert of a key whose tombstone holds a balance starts from it (its
   * author saw those deltas), so it names it in a transactional message right before the row, which
   * the peers' sinks read with the insert, and clears it (the row holds it now); so does an update
   * that moves a row onto such a key (its peers apply it as that insert). Locks in a sink's
   * order, tombstone then stripe: a balance seen before the stripe is read again under the
   * tombstone's lock (a sink writing it commits first); a tombstone without one is read again after
   * the stripe (a sink that wrote one since held the stripe and has committed; a later one waits for
   * this transaction), and a balance found only then is named but left in the tombstone: locking the
   * tombstone there could deadlock with a sink that holds it and waits for the stripe, and no one
   * reads it while the row lives (the next delete resets it). No tombstone: one probe. */
  od_sqlbuf msg = {0};
  od_sqlbuf_add(&msg, "PERFORM pg_logical_emit_message(true, '" CTR_PREFIX "', t || chr(30) || k || (SELECT "
                      "string_agg(chr(30) || e.value || '=' || e.key, '' ORDER BY e.key) FROM jsonb_each_text(c) e)); ");
  od_sqlbuf probe = {0};
  od_sqlbuf_add(&probe, " d WHERE d.tbl = t AND d.key = k");
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->cifn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE k text; j jsonb := to_jsonb(NEW); t text "
                   ":= TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME; c jsonb; f boolean; BEGIN SELECT string_agg(j ->> a, "
                   "chr(31) ORDER BY o) INTO k FROM unnest(TG_ARGV) WITH ORDINALITY AS u(a, o); IF TG_OP = 'INSERT' "
                   "OR k IS DISTINCT FROM (SELECT string_agg(to_jsonb(OLD) ->> a, chr(31) ORDER BY o) FROM "
                   "unnest(TG_ARGV) WITH ORDINALITY AS u(a, o)) THEN SELECT true, d.ctr INTO f, c FROM ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, probe.p);
  od_sqlbuf_add(b, "; IF c IS NOT NULL THEN f := false; SELECT d.ctr INTO c FROM ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, probe.p);
  od_sqlbuf_add(b, " FOR UPDATE; IF c IS NOT NULL THEN ");
  od_sqlbuf_add(b, msg.p);
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " SET ctr = NULL WHERE tbl = t AND key = k; END IF; END IF; END IF; PERFORM "
                   "pg_advisory_xact_lock_shared(hashtext(t), hashtext(k) & 255); IF f THEN SELECT d.ctr INTO c FROM ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, probe.p);
  od_sqlbuf_add(b, "; IF c IS NOT NULL THEN ");
  od_sqlbuf_add(b, msg.p);
  od_sqlbuf_add(b, "END IF; END IF; RETURN NEW; END $odsync$; ");
  if (msg.oom || probe.oom) b->oom = true;
  od_sqlbuf_free(&msg);
  od_sqlbuf_free(&probe);
}


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

bool pgs_mesh_ctr_to_row(decision *d, const ctr_in *k) {
  for (int i = 0; d->row && i < k->n && i < d->nval; i++) {
    if (k->cols[i] >= d->nrow || !d->val[i]) continue;
    char *t = strdup(d->val[i]);
    if (!t) return false;
    free(d->row[k->cols[i]]);
    d->row[k->cols[i]] = t;
  }
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
  /* on top of an earlier override of the change (a re-creation's), whose texts it borrows */
  const od_value *base = pgs_mesh_applied_vals(m, idx, c);
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
  memcpy(o->vals, base, c->newtup.ncolumns * sizeof *o->vals);
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

/* ---- exact counters: every write adds new - seen ------------------------------------------------ */

bool pgs_mesh_is_ctr_msg(const od_change *c) {
  if (c->op != OD_OP_MESSAGE || c->newtup.ncolumns < 2) return false;
  const od_value *p = &c->newtup.values[0];
  return p->data && p->len == strlen(CTR_PREFIX) && memcmp(p->data, CTR_PREFIX, p->len) == 0;
}

/* The balance named by an "odsync.ctr" message's content (len bytes: "<table>\x1e<key>{\x1e<value>=<column>}")
 * for table and key: seen[i] for counter i of k (left 0 when not named). false: another key. */
static bool parse_seen(const char *p, size_t len, const pg_rel *r, const char *key, const ctr_in *k, long long *seen) {
  const char *end = p + len, *sep = memchr(p, '\x1e', len);
  size_t tl = strlen(r->target), kl = strlen(key);
  if (!sep || (size_t)(sep - p) != tl || memcmp(p, r->target, tl) != 0) return false;
  p = sep + 1;
  sep = memchr(p, '\x1e', (size_t)(end - p));
  const char *kend = sep ? sep : end;
  if ((size_t)(kend - p) != kl || memcmp(p, key, kl) != 0) return false;
  while (sep && sep < end) {
    p = sep + 1;
    sep = memchr(p, '\x1e', (size_t)(end - p));
    const char *e = sep ? sep : end, *eq = memchr(p, '=', (size_t)(e - p));
    if (!eq) continue;
    char num[32];
    size_t nl = (size_t)(eq - p) < sizeof num - 1 ? (size_t)(eq - p) : sizeof num - 1;
    memcpy(num, p, nl);
    num[nl] = '\0';
    for (int i = 0; i < k->n; i++) {
      const char *col = r->rel->columns[k->cols[i]].name;
      if (strlen(col) == (size_t)(e - eq - 1) && memcmp(col, eq + 1, (size_t)(e - eq - 1)) == 0)
        seen[i] = strtoll(num, NULL, 10);
    }
  }
  return true;
}

/* The balance insert changes[ci] started from at its author: the "odsync.ctr" message right before
 * it in its source transaction (the previous run's last change when the insert opens this one). */
static void seen_of(const pgs_mesh *m, const od_change *changes, size_t ci, const pg_rel *r, const char *key,
                    const ctr_in *k, long long *seen) {
  for (int i = 0; i < k->n; i++) seen[i] = 0;
  /* the insert of a key-changing update (postgres_mesh.c, pend_add): its message came before the
   * update, which is the delete of the old key right before it now (same position in the source
   * transaction) */
  if (ci > 0 && changes[ci - 1].op == OD_OP_DELETE && changes[ci - 1].rel == changes[ci].rel &&
      changes[ci - 1].index == changes[ci].index && m->sidx[ci - 1] == m->sidx[ci])
    ci--;
  if (ci > 0 && m->sidx[ci - 1] == m->sidx[ci] && pgs_mesh_is_ctr_msg(&changes[ci - 1])) {
    const od_value *v = &changes[ci - 1].newtup.values[1];
    parse_seen(v->data, v->len, r, key, k, seen);
  } else if (ci == 0 && m->ctr_carry && m->sidx[0] >= 0 && m->st[m->sidx[0]].seq == m->ctr_carry_seq) {
    parse_seen(m->ctr_carry, strlen(m->ctr_carry), r, key, k, seen);
  }
}

void pgs_mesh_ctr_carry(pgs_mesh *m) {
  free(m->ctr_carry);
  m->ctr_carry = NULL;
  if (!m->npend || !pgs_mesh_is_ctr_msg(&m->pend[m->npend - 1]) || m->sidx[m->npend - 1] < 0) return;
  const od_value *v = &m->pend[m->npend - 1].newtup.values[1];
  if ((m->ctr_carry = malloc((size_t)v->len + 1))) {
    memcpy(m->ctr_carry, v->data, v->len);
    m->ctr_carry[v->len] = '\0';
    m->ctr_carry_seq = m->st[m->sidx[m->npend - 1]].seq;
  }
}

bool pgs_mesh_ctr_add(const pgs_mesh *m, const pg_rel *r, const od_change *changes, size_t ci, decision *d,
                      const ctr_in *k, ctr_acc *a) {
  const od_change *c = &changes[ci];
  long long add[COUNTERS_MAX], seen[COUNTERS_MAX];
  *a = (ctr_acc){0};
  if (c->op == OD_OP_UPDATE) {
    if (!k->delta_ok) return true;
    for (int i = 0; i < k->n; i++) add[i] = k->delta[i];
  } else if (c->op == OD_OP_DELETE) { /* removes what its author saw: the old row (REPLICA IDENTITY FULL) */
    for (int i = 0; i < k->n; i++)
      if (c->old_kind != 'O' || k->cols[i] >= c->oldtup.ncolumns || !pgs_mesh_int_of(&c->oldtup.values[k->cols[i]], &add[i]))
        return true;
    for (int i = 0; i < k->n; i++) add[i] = -add[i];
  } else if (c->op == OD_OP_INSERT) {
    seen_of(m, changes, ci, r, d->key, k, seen);
    for (int i = 0; i < k->n; i++) {
      if (k->cols[i] >= c->newtup.ncolumns || !pgs_mesh_int_of(&c->newtup.values[k->cols[i]], &add[i])) return true;
      add[i] -= seen[i];
    }
  } else {
    return true;
  }
  bool was_tomb = d->has_ver && d->tomb;
  if (d->has_ver) {
    for (int i = 0; i < k->n; i++)
      if (i >= d->nval || !d->val[i]) return true; /* the local value is unknown: the policy decides */
  } else if (c->op != OD_OP_INSERT) {
    return true; /* an update or delete of a key never seen here: as before */
  }
  long long v[COUNTERS_MAX];
  bool zero = true;
  for (int i = 0; i < k->n; i++) {
    long long base = d->has_ver ? d->ctr[i] : 0;
    a->balance0 = a->balance0 || (was_tomb && base != 0);
    v[i] = base + add[i];
    zero = zero && v[i] == 0;
    a->changed = a->changed || add[i] != 0;
    long long nv = 0;
    if (c->op != OD_OP_DELETE && pgs_mesh_int_of(&c->newtup.values[k->cols[i]], &nv)) a->differs = a->differs || nv != v[i];
  }
  a->zero = zero;
  for (int i = 0; i < k->n; i++) {
    char t[32];
    snprintf(t, sizeof t, "%lld", v[i]);
    od_value tv = {.data = t, .len = (uint32_t)strlen(t), .kind = OD_VALUE_TEXT};
    if (!set_ctr(d, i, &tv)) return false;
  }
  a->done = true;
  return true;
}

int pgs_mesh_ctr_place(pgs_sink *s, pgs_mesh *m, const od_change *c, size_t ci, decision *d, const ctr_in *k,
                       const ctr_acc *a, bool apply, od_error *err) {
  if (!a->done) return OD_OK;
  if (apply && c->op != OD_OP_DELETE) {
    /* the row (live, re-created or new) holds the sum; a tombstone's balance went into it */
    if (a->balance0) d->ctr_tomb = true;
    if (a->differs) return pgs_mesh_write_counters(s, m, c, ci, d, k, true, err);
    return d->ctr_tomb && !pgs_mesh_wr_push(m, d) ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where)
                                                  : OD_OK;
  }
  /* an applied delete: the tombstone's balance is what its author had not seen (nothing to write
   * when that is zero on a key whose row existed when the run read it: the DELETE meets that row and
   * the delete trigger's fresh tombstone holds NULL; without one, the tombstone there keeps what it
   * held); a losing write: its contribution to where the key's counters are (row or tombstone) */
  if (apply ? (a->zero && d->live0) : !a->changed) return OD_OK;
  return pgs_mesh_write_counters(s, m, c, ci, d, k, false, err);
}

void pgs_mesh_json_str(od_sqlbuf *b, const char *name) {
  od_sqlbuf_add(b, "\"");
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
    if (*p == '"' || *p == '\\') od_sqlbuf_addf(b, "\\%c", *p);
    else if (*p < 0x20) od_sqlbuf_addf(b, "\\u%04x", *p);
    else od_sqlbuf_addn(b, (const char *)p, 1);
  }
  od_sqlbuf_add(b, "\"");
}

int pgs_mesh_ctr_write_balances(pgs_sink *s, pgs_mesh *m, od_error *err) {
  od_sqlbuf tt = {0}, tk = {0}, tc = {0};
  od_sqlbuf_add(&tt, "{");
  od_sqlbuf_add(&tk, "{");
  od_sqlbuf_add(&tc, "{");
  size_t n = 0;
  for (size_t i = 0; i < m->nwr; i++) {
    decision *d = &m->dec[m->wr[i]];
    bool bal = d->fix && d->tomb, reset = d->ctr_tomb && !d->tomb;
    d->ctr_tomb = false;
    if (!bal && !reset) continue; /* (both only ever set on counter tables) */
    d->fix = false;
    pgs_mesh_arr_add(&tt, d->r->target);
    pgs_mesh_arr_add(&tk, d->key);
    int cols[COUNTERS_MAX];
    int nc = pgs_mesh_counter_cols(m, d->r, cols);
    od_sqlbuf j = {0};
    for (int k = 0; bal && k < nc; k++) {
      if (!d->ctr[k]) continue;
      od_sqlbuf_add(&j, j.len ? ", " : "{");
      pgs_mesh_json_str(&j, d->r->rel->columns[cols[k]].name);
      od_sqlbuf_addf(&j, ": %lld", d->ctr[k]);
    }
    if (j.len) od_sqlbuf_add(&j, "}");
    if (j.len && !j.oom) pgs_mesh_arr_add(&tc, j.p);
    else od_sqlbuf_add(&tc, tc.len > 1 ? ",NULL" : "NULL");
    if (j.oom) tc.oom = true;
    od_sqlbuf_free(&j);
    n++;
  }
  od_sqlbuf_add(&tt, "}");
  od_sqlbuf_add(&tk, "}");
  od_sqlbuf_add(&tc, "}");
  int rc = OD_OK;
  if (n) {
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "UPDATE ");
    od_sqlbuf_add(b, m->tomb_q);
    od_sqlbuf_add(b, " AS d SET ctr = u.c::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS u (t, k, c) WHERE "
                     "d.tbl = u.t AND d.key = u.k");
    const char *p[3] = {tt.p, tk.p, tc.p};
    bool oom = b->oom || tt.oom || tk.oom || tc.oom;
    PGresult *res = oom ? NULL : pgs_exec(s, m->tomb_q, "writing counter balances of tombstones (mesh)", b->p, 3, p, err);
    if (!res) rc = oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
    PQclear(res);
  }
  od_sqlbuf_free(&tt);
  od_sqlbuf_free(&tk);
  od_sqlbuf_free(&tc);
  return rc;
}

void pgs_mesh_ctr_detail(const pg_rel *r, const ctr_in *k, od_sqlbuf *b) {
  od_sqlbuf_add(b, "{\"counters\": [");
  for (int i = 0; i < k->n; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    pgs_mesh_json_str(b, r->rel->columns[k->cols[i]].name);
  }
  od_sqlbuf_add(b, "]}");
}
