/* sinks/postgres_mesh_decide.c — a mesh sink's decisions on one batch (docs/MULTI_MASTER.md).
 *
 * Owns: the per-key version states of the open target transaction (the database's version of a
 * key until a remote change of this sink wins, then the peer's), the versions query's text (locks,
 * then a fresh read: rows, tombstones, _odsync_versions, and which keys have a side-table row;
 * run by postgres_mesh_query.c), the causal check of each change against its own
 * transaction's version vector, the decision per change: the policies (per table:
 * mesh_table_policies), the business rules' verdict, and which path a change takes (applied whole,
 * skipped, a counter merge, a column merge, a re-creation, a tombstone's image), the conflict log
 * entries (_odsync_conflicts) and the audit records of conflicts.
 * Never touches: transactions (begin/commit), the origin session, the stamps' parsing, the apply
 * path's statements (postgres_apply.c, postgres_bulk.c), the counters' deltas and the run's
 * overrides (postgres_mesh_counter.c), column versions, column rules and the column merges
 * themselves (postgres_mesh_colmerge.c).
 * Pointer ownership: key states own their key text and fetched column values (freed by
 * pgs_mesh_dec_clear); versions read from a PGresult are copied into the state before the result is
 * freed.
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sql.h"

/* ---- per-key state ---------------------------------------------------------------------------- */

static const od_tuple *key_tuple(const od_change *c) {
  if (c->op == OD_OP_INSERT || c->op == OD_OP_READ) return &c->newtup;
  if (c->old_kind == 'K' || c->old_kind == 'O') return &c->oldtup;
  return &c->newtup;
}

/* The key's text ("v1\x1fv2"), malloc'd; NULL when a key value is not text. */
static char *key_text(const pg_rel *r, const od_tuple *t) {
  od_sqlbuf b = {0};
  for (int k = 0; k < r->nkey; k++) {
    int col = PGS_COL(r->key_plan[k]);
    if (col >= t->ncolumns || t->values[col].kind != OD_VALUE_TEXT) {
      od_sqlbuf_free(&b);
      return NULL;
    }
    if (k) od_sqlbuf_add(&b, "\x1f");
    od_sqlbuf_addn(&b, t->values[col].data, t->values[col].len);
  }
  if (b.oom || !b.p) {
    od_sqlbuf_free(&b);
    return NULL;
  }
  return b.p; /* ownership of the buffer's bytes passes to the caller */
}

static size_t dec_hash(const od_relation *rel, const char *key) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)rel;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return (size_t)(h ^ (h >> 29));
}

static decision *dec_find(pgs_mesh *m, const od_relation *rel, const char *key) {
  if (!m->slot_cap) return NULL;
  for (size_t i = dec_hash(rel, key) & (m->slot_cap - 1);; i = (i + 1) & (m->slot_cap - 1)) {
    uint32_t v = m->slots[i];
    if (!v) return NULL;
    decision *d = &m->dec[v - 1];
    if (d->rel == rel && strcmp(d->key, key) == 0) return d;
  }
}

static void slot_put(pgs_mesh *m, size_t idx) {
  for (size_t i = dec_hash(m->dec[idx].rel, m->dec[idx].key) & (m->slot_cap - 1);; i = (i + 1) & (m->slot_cap - 1))
    if (!m->slots[i]) {
      m->slots[i] = (uint32_t)idx + 1;
      return;
    }
}

decision *pgs_mesh_dec_peek(pgs_mesh *m, const pg_rel *r, const char *key) { return dec_find(m, r->rel, key); }

/* Append a key state (takes ownership of key); NULL on out-of-memory (key freed). */
static decision *dec_add(pgs_mesh *m, const od_relation *rel, char *key) {
  if (m->ndec == m->dec_cap) {
    size_t cap = m->dec_cap ? m->dec_cap * 2 : 64;
    decision *g = realloc(m->dec, cap * sizeof *g);
    if (!g) {
      free(key);
      return NULL;
    }
    m->dec = g;
    m->dec_cap = cap;
  }
  if (2 * (m->ndec + 1) >= m->slot_cap) {
    size_t cap = m->slot_cap ? m->slot_cap * 2 : 128;
    uint32_t *g = calloc(cap, sizeof *g);
    if (!g) {
      free(key);
      return NULL;
    }
    free(m->slots);
    m->slots = g;
    m->slot_cap = cap;
    for (size_t i = 0; i < m->ndec; i++) slot_put(m, i);
  }
  m->dec[m->ndec] = (decision){.rel = rel, .key = key};
  slot_put(m, m->ndec);
  return &m->dec[m->ndec++];
}

void pgs_mesh_dec_clear(pgs_mesh *m) {
  for (size_t i = 0; i < m->ndec; i++) {
    free(m->dec[i].key);
    for (int k = 0; k < m->dec[i].nval; k++) free(m->dec[i].val[k]);
    for (int k = 0; k < m->dec[i].nrow; k++) free(m->dec[i].row[k]);
    free(m->dec[i].row);
    free(m->dec[i].also);
    free(m->dec[i].img);
    pgs_mesh_unique_dec_free(&m->dec[i]);
  }
  if (m->slot_cap > 4096 && m->ndec < m->slot_cap / 16) { /* after a big transaction: shrink */
    free(m->slots);
    m->slots = NULL;
    m->slot_cap = 0;
  } else if (m->ndec && m->slots) {
    memset(m->slots, 0, m->slot_cap * sizeof *m->slots);
  }
  m->ndec = 0;
  m->nwr = 0;
}

static bool wr_push(pgs_mesh *m, decision *d);
bool pgs_mesh_wr_push(pgs_mesh *m, decision *d) { return wr_push(m, d); }

decision *pgs_mesh_dec_get(pgs_mesh *m, const pg_rel *r, const char *key) {
  decision *d = dec_find(m, r->rel, key);
  if (d) return d;
  char *k = strdup(key);
  if (!k || !(d = dec_add(m, r->rel, k))) return NULL;
  d->r = r;
  d->ts = d->hlc = INT64_MIN;
  return d;
}

static bool wr_push(pgs_mesh *m, decision *d) {
  if (d->queued) return true;
  if (m->nwr == m->wr_cap) {
    size_t cap = m->wr_cap ? m->wr_cap * 2 : 64;
    size_t *g = realloc(m->wr, cap * sizeof *g);
    if (!g) return false;
    m->wr = g;
    m->wr_cap = cap;
  }
  m->wr[m->nwr++] = (size_t)(d - m->dec);
  d->queued = true;
  return true;
}

/* ---- conflicts --------------------------------------------------------------------------------- */

/* JSON text of a tuple (values as strings), appended to b. */
void pgs_mesh_tuple_json(od_sqlbuf *b, const od_relation *rel, const od_tuple *t) {
  od_sqlbuf_add(b, "{");
  for (int i = 0; i < t->ncolumns && i < rel->ncolumns; i++) {
    const od_value *v = &t->values[i];
    if (v->kind == OD_VALUE_UNCHANGED) continue;
    if (b->len > 1 && b->p[b->len - 1] != '{') od_sqlbuf_add(b, ",");
    const char *strs[2] = {rel->columns[i].name, v->kind == OD_VALUE_TEXT ? v->data : NULL};
    size_t lens[2] = {strlen(rel->columns[i].name), v->kind == OD_VALUE_TEXT ? v->len : 0};
    for (int j = 0; j < 2; j++) {
      if (j) od_sqlbuf_add(b, ":");
      if (j && !strs[j]) {
        od_sqlbuf_add(b, "null");
        continue;
      }
      od_sqlbuf_json_str(b, strs[j], lens[j]);
    }
  }
  od_sqlbuf_add(b, "}");
}

static const char *node_of_origin(const pgs_mesh *m, const char *origin) {
  if (!origin || !*origin) return m->node;
  if (strncmp(origin, "odsync_", 7) == 0) return origin + 7;
  return origin;
}

/* Log a conflict in _odsync_conflicts (in the open transaction) and the audit log. The local row
 * is read by key in the same statement: a conflict is always with a version this sink has not
 * overwritten, so the row (if any) is still the one that competed. */
static int log_conflict(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st,
                        const char *kind, const decision *d, bool remote_wins, const char *policy,
                        const char *merged, const char *winner, od_error *err) {
  m->conflicts++;
  for (int k = 0; k < KINDS; k++)
    if (strcmp(kind, KIND_NAMES[k]) == 0) od_counter_add(m->m_conflicts[k], 1);
  char keyshow[512];
  snprintf(keyshow, sizeof keyshow, "%s", d->key);
  for (char *p = keyshow; *p; p++)
    if (*p == '\x1f') *p = ',';
  od_sqlbuf remote = {0};
  if (c->op != OD_OP_DELETE) pgs_mesh_tuple_json(&remote, c->rel, &c->newtup);
  /* SQL-rule tables: a delete's side as the row it deleted, when known (the rules rank it so) */
  bool oom = false;
  char *rimg = c->op == OD_OP_DELETE && pgs_mesh_has_sqlrule(m, r->target) ? pgs_mesh_sqlrule_image(r, c, &oom) : NULL;
  if (oom) {
    od_sqlbuf_free(&remote);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  char lts[32], rts[32], rlsn[32], lhlc[32], rhlc[32];
  snprintf(lts, sizeof lts, "%" PRId64, d->ts);
  snprintf(rts, sizeof rts, "%" PRId64, st->ts);
  snprintf(lhlc, sizeof lhlc, "%" PRId64, d->hlc);
  snprintf(rhlc, sizeof rhlc, "%" PRId64, st->hlc);
  snprintf(rlsn, sizeof rlsn, "%X/%X", (unsigned)(st->lsn >> 32), (unsigned)st->lsn);
  const char *lnode = d->node[0] ? d->node : m->node;
  if (!winner) winner = remote_wins ? m->peer : lnode;
  const char *p[16 + 64] = {m->node, kind, r->target, keyshow, d->tomb ? d->img : NULL,
                            c->op != OD_OP_DELETE ? (!remote.oom ? remote.p : NULL) : rimg, lnode, m->peer,
                            d->ts != INT64_MIN ? lts : NULL, rts, rlsn, policy, winner, merged,
                            d->hlc != INT64_MIN ? lhlc : NULL, rhlc};
  int np = 16;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, m->log_q);
  od_sqlbuf_add(b, " (node, kind, table_name, key, local_row, remote_row, local_origin, remote_origin, "
                   "local_commit_ts, remote_commit_ts, remote_lsn, policy, winner, merged, local_hlc, remote_hlc) "
                   "VALUES ($1, $2, $3, $4, ");
  if (d->tomb || !d->has_ver) {
    od_sqlbuf_add(b, "$5::jsonb");
  } else {
    od_sqlbuf_add(b, "coalesce($5::jsonb, (SELECT to_jsonb(t.*) FROM ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " t WHERE ");
    const od_tuple *kt = key_tuple(c);
    for (int k = 0; k < r->nkey && np < 16 + 64; k++) {
      int col = PGS_COL(r->key_plan[k]);
      if (k) od_sqlbuf_add(b, " AND ");
      od_sqlbuf_add(b, "t.");
      od_sqlbuf_ident(b, r->rel->columns[col].name);
      p[np] = kt->values[col].data;
      od_sqlbuf_addf(b, " = $%d", ++np);
    }
    od_sqlbuf_add(b, "))");
  }
  od_sqlbuf_add(b, ", $6::jsonb, $7, $8, '1970-01-01 00:00:00+00'::timestamptz + $9::bigint * interval '1 microsecond', "
                   "'1970-01-01 00:00:00+00'::timestamptz + $10::bigint * interval '1 microsecond', $11::pg_lsn, $12, $13, "
                   "$14::jsonb, $15::int8, $16::int8)");
  PGresult *res = b->oom ? NULL : pgs_exec(s, m->log_q, "logging a conflict", b->p, np, p, err);
  od_sqlbuf_free(&remote);
  free(rimg);
  if (!res) return b->oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  PQclear(res);
  od_debug("postgres sink %s: mesh %s: %s conflict on %s (%s): %s wins", s->where, m->node, kind, r->target, keyshow,
           winner);
  /* The audit log (docs/AUDIT.md) gets it when detected: a transaction replayed after a crash may
   * record its conflicts there again; _odsync_conflicts, written in the transaction, is exact. */
  od_sqlbuf ab = {0};
  od_sqlbuf_add(&ab, "\"node\":");
  od_audit_json_str(&ab, m->node);
  od_sqlbuf_add(&ab, ",\"peer\":");
  od_audit_json_str(&ab, m->peer);
  od_sqlbuf_add(&ab, ",\"conflict\":");
  od_audit_json_str(&ab, kind);
  od_sqlbuf_add(&ab, ",\"table\":");
  od_audit_json_str(&ab, r->target);
  od_sqlbuf_add(&ab, ",\"policy\":");
  od_audit_json_str(&ab, policy);
  od_sqlbuf_add(&ab, ",\"winner\":");
  od_audit_json_str(&ab, winner);
  od_sqlbuf_addf(&ab, ",\"remote_lsn\":\"%s\"", rlsn);
  char pipeline[128];
  snprintf(pipeline, sizeof pipeline, "%s", s->pipeline ? s->pipeline : "");
  pipeline[strcspn(pipeline, ".")] = '\0'; /* the checkpoint name "<pipeline>[.<sink>]" */
  if (!ab.oom) od_audit_record(pipeline[0] ? pipeline : NULL, "conflict", ab.p);
  od_sqlbuf_free(&ab);
  return OD_OK;
}

static int prio_rank(const mesh_pol *pol, const char *node) {
  for (int i = 0; i < pol->nprio; i++)
    if (strcmp(pol->prio[i], node) == 0) return i;
  return pol->nprio;
}

/* Whether the remote write wins a conflict with the concurrent local version. Every node computes
 * the same answer for the same pair: only the two versions' (clock, node) enter it. */
bool pgs_mesh_remote_wins(const pgs_mesh *m, const mesh_pol *pol, const stamp *st, const decision *d) {
  /* whole rows: column_merge's fallback */
  return pgs_mesh_remote_wins_by(m, pol->policy == POL_COLUMN_MERGE ? pol->fallback : pol->policy, pol, st, d);
}

bool pgs_mesh_remote_wins_by(const pgs_mesh *m, int policy, const mesh_pol *pol, const stamp *st, const decision *d) {
  const char *lnode = d->node[0] ? d->node : m->node;
  if (policy == POL_KEEP_LOCAL) return false;
  if (policy == POL_APPLY_REMOTE) return true;
  if (policy == POL_PRIORITY) {
    int a = prio_rank(pol, m->peer), b = prio_rank(pol, lnode);
    if (a != b) return a < b;
  }
  /* last_writer_wins (and priority between equals): clock, then node name */
  if (st->hlc != d->hlc) return st->hlc > d->hlc;
  return strcmp(m->peer, lnode) > 0;
}

/* ---- deciding a run ---------------------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
  return strcmp(((const local_ver *)a)->key, ((const local_ver *)b)->key);
}

/* A new key state from the versions query's row (lv NULL: the key has no version here). */
static decision *dec_from(pgs_mesh *m, const pg_rel *r, char *key, const local_ver *lv, int nfetch, int nctr,
                          const PGresult *res, int nall) {
  decision *d = dec_add(m, r->rel, key);
  if (!d) return NULL;
  d->r = r;
  d->ts = d->hlc = INT64_MIN;
  if (!lv) return d;
  d->has_ver = true;
  d->tomb = lv->tomb;
  d->live0 = !lv->tomb;
  d->ts = lv->ts;
  d->hlc = lv->hlc;
  snprintf(d->node, sizeof d->node, "%s", node_of_origin(m, lv->origin));
  for (int k = 0; k < nfetch; k++) {
    d->val[k] = lv->ctr[k] ? strdup(lv->ctr[k]) : NULL;
    d->nval = k + 1;
    if (lv->ctr[k] && !d->val[k]) return NULL;
    if (k < nctr && lv->ctr[k]) d->ctr[k] = strtoll(lv->ctr[k], NULL, 10);
  }
  if (lv->also && *lv->also && !(d->also = strdup(lv->also))) return NULL;
  if (lv->tomb && lv->img && !(d->img = strdup(lv->img))) return NULL;
  /* column_merge: every column's version (the side table's, local writes' since) */
  if (nall && !pgs_mesh_colver_resolve(m, d, lv, nall < MERGE_COLS_MAX ? nall : MERGE_COLS_MAX)) return NULL;
  /* column_merge: the whole live row, or a tombstone's last row (NULL when it has none) */
  bool img = lv->tomb && nall && !PQgetisnull(res, lv->prow, 5 + nfetch + (r->nkey ? PGS_COL(r->key_plan[0]) : 0));
  if (nall && (!lv->tomb || img)) {
    if (!(d->row = calloc((size_t)nall, sizeof *d->row))) return NULL;
    d->nrow = nall;
    for (int k = 0; k < nall; k++)
      if (!PQgetisnull(res, lv->prow, 5 + nfetch + k) && !(d->row[k] = strdup(PQgetvalue(res, lv->prow, 5 + nfetch + k))))
        return NULL;
  }
  return d;
}

/* Build and run the versions query of the keys keys[q0, q1) not yet known; *res owns the rows. */
static int query_versions(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, const size_t *idx,
                          char **keys, const bool *known, size_t q0, size_t q1, const int *cols, int nfetch,
                          int nall, const char **params, PGresult **res, od_error *err) {
  bool rimg = !nall && pgs_mesh_has_sqlrule(m, r->target); /* SQL rules rank a delete by its tombstone's image */
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "WITH live AS (SELECT ");
  size_t ke0 = b->len; /* the key expression, the predicate: reused by the lock statement */
  od_sqlbuf_add(b, "concat_ws(chr(31)");
  for (int k = 0; k < r->nkey; k++) {
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
    od_sqlbuf_add(b, "::text");
  }
  size_t ke1 = b->len + 1;
  /* column_merge: a row this target transaction wrote (an earlier run of it) has no commit time
   * yet; its version is the side table's, also written by that run (a merged row is not simply
   * "seen": it holds local columns the peer has not seen). Marked as written by a sink. */
  if (nall)
    od_sqlbuf_add(b, ") AS k, c.timestamp AS cts, CASE WHEN t.xmin::text::int8 = "
                     "pg_current_xact_id_if_assigned()::text::int8 % 4294967296 THEN 4294967295::oid ELSE c.roident "
                     "END AS rid, o.roname AS origin");
  else
    od_sqlbuf_add(b, ") AS k, c.timestamp AS cts, c.roident AS rid, o.roname AS origin");
  for (int k = 0; k < nfetch; k++) {
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[cols[k]].name);
    od_sqlbuf_addf(b, "::text AS c%d", k);
  }
  for (int k = 0; k < nall; k++) { /* column_merge: every column of the live row */
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[k].name);
    od_sqlbuf_addf(b, "::text AS a%d", k);
  }
  od_sqlbuf_add(b, " FROM ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " t CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) c LEFT JOIN "
                   "pg_catalog.pg_replication_origin o ON o.roident = c.roident WHERE ");
  size_t w0 = b->len;
  /* The keys are array parameters (one per key column, typed like the column): the statement's
   * text is the same for every batch of the table, prepared once per session. */
  if (r->nkey > 1) od_sqlbuf_add(b, "(");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, "t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(b, r->nkey > 1 ? ") IN (SELECT * FROM unnest(" : " = ANY (");
  int rc = OD_OK;
  for (int k = 0; k < r->nkey && rc == OD_OK; k++) {
    int col = PGS_COL(r->key_plan[k]);
    od_sqlbuf_addf(b, "%s$%d::", k ? ", " : "", k + 1);
    if (r->ucast && col < r->nucast && r->ucast[col]) od_sqlbuf_add(b, r->ucast[col]);
    else rc = pgs_add_type(s, r, col, err);
    od_sqlbuf_add(b, "[]");
  }
  if (rc) return rc;
  od_sqlbuf_add(b, r->nkey > 1 ? "))" : ")");
  const int np = r->nkey;
  od_sqlbuf arr = {0}, karr[8] = {{0}};
  if (r->nkey > 8)
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh table %s has %d key columns; a mesh supports up to 8",
                   s->where, r->target, r->nkey);
  od_sqlbuf_add(&arr, "{");
  for (int k = 0; k < np; k++) od_sqlbuf_add(&karr[k], "{");
  size_t nq = 0;
  for (size_t j = q0; j < q1; j++) {
    if (!keys[j] || known[j - q0]) continue;
    const od_tuple *t = key_tuple(&changes[idx[j]]);
    for (int k = 0; k < np; k++) pgs_mesh_arr_add(&karr[k], t->values[PGS_COL(r->key_plan[k])].data);
    pgs_mesh_arr_add(&arr, keys[j]);
    nq++;
  }
  od_sqlbuf_add(&arr, "}");
  for (int k = 0; k < np; k++) {
    od_sqlbuf_add(&karr[k], "}");
    params[k] = karr[k].p;
  }
  if (!nq) { /* nothing to read; what follows (conflict log rows) still needs the transaction */
    od_sqlbuf_free(&arr);
    for (int k = 0; k < np; k++) od_sqlbuf_free(&karr[k]);
    *res = NULL;
    return pgs_ensure_begin(s, err);
  }
  /* The version: the side table's when the row (or tombstone) was last written by a mesh sink
   * (its xmin has a replication origin); else the xmin's commit time and origin (a local write). */
  /* Rows are locked in key order: the mesh's other sinks on this node lock theirs in the same
   * order, so two sinks never wait for each other in a cycle. The tombstones of keys without a row
   * are locked too: an application's delete of such a key (inserted meanwhile) waits for this
   * transaction instead of leaving a newer tombstone this run did not judge. */
  od_sqlbuf_add(b, " ORDER BY ");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, "t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(b, " FOR UPDATE OF t");
  size_t w1 = b->len;
  /* column_merge: a tombstone this transaction rewrote (a losing write's columns kept in it) has
   * no commit time yet; its version is the side table's, written with it */
  od_sqlbuf_add(b, nall ? "), dead AS (SELECT d.key AS k, c.timestamp AS cts, CASE WHEN d.xmin::text::int8 = "
                          "pg_current_xact_id_if_assigned()::text::int8 % 4294967296 THEN 4294967295::oid ELSE "
                          "c.roident END AS rid, o.roname AS origin, d.img, d.ctr FROM "
                        : "), dead AS (SELECT d.key AS k, c.timestamp AS cts, c.roident AS rid, o.roname AS origin, "
                          "d.ctr, nullif(d.img, 'null'::jsonb)::text AS img FROM ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_addf(b, " d CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(d.xmin) c LEFT JOIN "
                    "pg_catalog.pg_replication_origin o ON o.roident = c.roident WHERE d.tbl = $%d AND "
                    "d.key = ANY ($%d::text[]) AND NOT EXISTS (SELECT 1 FROM live WHERE live.k = d.key) ORDER BY "
                    "d.key FOR UPDATE OF d), "
                    "x AS (SELECT k, cts, rid, origin, false AS tomb", np + 1, np + 2);
  for (int k = 0; k < nfetch; k++) od_sqlbuf_addf(b, ", c%d", k);
  for (int k = 0; k < nall; k++) od_sqlbuf_addf(b, ", a%d", k);
  if (rimg) od_sqlbuf_add(b, ", NULL::text AS img");
  od_sqlbuf_add(b, " FROM live UNION ALL SELECT k, cts, rid, origin, true");
  /* exact counters: a tombstone's balance (what its deleters had not seen; NULL: 0) */
  int ccols[COUNTERS_MAX];
  int nbal = pgs_mesh_counter_cols(m, r, ccols);
  for (int k = 0; k < nfetch; k++) {
    if (k >= nbal) {
      od_sqlbuf_add(b, ", NULL");
      continue;
    }
    od_sqlbuf_add(b, ", coalesce(ctr ->> '");
    for (const char *ch = r->rel->columns[cols[k]].name; *ch; ch++) od_sqlbuf_add(b, *ch == '\'' ? "''" : (char[2]){*ch, 0});
    od_sqlbuf_add(b, "', '0')");
  }
  for (int k = 0; k < nall; k++) { /* column_merge: the deleted row's last values (postgres_mesh_colver.c) */
    bool bal = false; /* ... a counter's: the balance */
    for (int i = 0; i < nbal; i++) bal = bal || ccols[i] == k;
    od_sqlbuf_add(b, bal ? ", coalesce(ctr ->> '" : ", img ->> '");
    for (const char *ch = r->rel->columns[k].name; *ch; ch++) od_sqlbuf_add(b, *ch == '\'' ? "''" : (char[2]){*ch, 0});
    od_sqlbuf_add(b, bal ? "', '0')" : "'");
  }
  if (rimg) od_sqlbuf_add(b, ", img");
  od_sqlbuf_add(b, " FROM dead) SELECT x.k, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.ts ELSE "
                   "(extract(epoch FROM x.cts) * 1000000)::int8 END, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL "
                   "THEN v.node ELSE x.origin END, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.hlc WHEN x.rid = 0 "
                   "THEN ");
  /* A local write's hlc: its commit time, or one tick past the highest hlc applied here before it
   * (_odsync_hlc rows committed before it; the stream readers of this node compute the same). */
  od_mesh_sql_local_hlc(b, m->hlc_q, "x.cts");
  od_sqlbuf_add(b, " ELSE (extract(epoch FROM x.cts) * 1000000)::int8 END, x.tomb");
  for (int k = 0; k < nfetch; k++) od_sqlbuf_addf(b, ", x.c%d", k);
  for (int k = 0; k < nall; k++) od_sqlbuf_addf(b, ", x.a%d", k);
  /* column_merge: the side table's column versions (the last sink write's) also under a later
   * local write, whose changed columns _odsync_colver holds (postgres_mesh_colver.c) */
  od_sqlbuf_add(b, nall ? ", v.also"
                        : ", CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.also END");
  if (nall) pgs_mesh_colver_read_sql(m, b, np + 1);
  if (rimg) od_sqlbuf_add(b, ", x.img"); /* SQL rules: a tombstone's image */
  /* Last column: whether the key has a side-table row. Read here, with every key row-locked or under
   * its stripe lock, and only mesh sinks holding that lock write a key's side-table row (the clean-up
   * and a join's copy only delete, or run before any sink), so a key found without one keeps having
   * none until this transaction writes it: finish_run then writes it with a plain INSERT instead of
   * the costlier upsert (docs/MULTI_MASTER.md, "The versions write"). Keys with neither a row nor a
   * tombstone that do have one (after a TRUNCATE, say) come as extra rows with a NULL tomb column. */
  /* Both probe the side table one key at a time (LATERAL ... LIMIT 1: a parameterized primary-key
   * lookup): a prepared statement's generic plan, made while the table was small, would otherwise
   * scan every side-table row of the table per batch (seen: "Index Cond: tbl = $2", the keys a
   * filter). */
  od_sqlbuf_add(b, ", v.key IS NOT NULL FROM x LEFT JOIN LATERAL (SELECT * FROM ");
  od_sqlbuf_add(b, m->ver_q);
  od_sqlbuf_addf(b, " v WHERE v.tbl = $%d AND v.key = x.k LIMIT 1) v ON true UNION ALL SELECT u.k, NULL, NULL, NULL, "
                    "NULL", np + 1);
  for (int k = 0; k < nfetch + nall + (nall ? 2 : 1) + (rimg ? 1 : 0); k++) od_sqlbuf_add(b, ", NULL");
  od_sqlbuf_addf(b, ", true FROM unnest($%d::text[]) AS u (k) CROSS JOIN LATERAL (SELECT 1 FROM ", np + 2);
  od_sqlbuf_add(b, m->ver_q);
  od_sqlbuf_addf(b, " v WHERE v.tbl = $%d AND v.key = u.k LIMIT 1) w WHERE NOT EXISTS (SELECT 1 FROM x WHERE x.k = "
                    "u.k)", np + 1);
  params[np] = r->target;
  params[np + 1] = arr.p;
  /* Two statements in one round trip: the first takes the locks (waiting for any transaction that
   * holds them, e.g. the mesh's other sink on this node) — the same rows and tombstones in the same
   * order as the read, without reading versions; the second, the read (FOR UPDATE as well: a row
   * inserted in between is locked too), gets a snapshot taken after those waits, so a delete or
   * re-insert that committed meanwhile is seen (read committed gives a statement the snapshot of
   * its start: a row deleted while we waited would just be missing, and its new tombstone
   * invisible). */
  od_sqlbuf lock = {0};
  if (!b->oom) {
    od_sqlbuf_add(&lock, "WITH live AS (SELECT ");
    od_sqlbuf_addn(&lock, b->p + ke0, ke1 - ke0);
    od_sqlbuf_add(&lock, " AS k FROM ");
    od_sqlbuf_add(&lock, r->qtarget);
    od_sqlbuf_add(&lock, " t WHERE ");
    od_sqlbuf_addn(&lock, b->p + w0, w1 - w0);
    od_sqlbuf_add(&lock, "), dead AS (SELECT 1 FROM ");
    od_sqlbuf_add(&lock, m->tomb_q);
    od_sqlbuf_addf(&lock, " d WHERE d.tbl = $%d AND d.key = ANY ($%d::text[]) AND NOT EXISTS (SELECT 1 FROM live "
                          "WHERE live.k = d.key) ORDER BY d.key FOR UPDATE OF d), ", np + 1, np + 2);
    /* Then the keys with no live row (the never-existing-key race, docs/MULTI_MASTER.md): an
     * exclusive transaction-level advisory lock on each one's stripe, in stripe order, each stripe
     * once (at most 256 per table); applications' inserts take the same stripe shared through the
     * key-lock trigger, which computes it from the table and the key's text alike. */
    od_sqlbuf_addf(&lock, "absent AS (SELECT count(pg_advisory_xact_lock(hashtext($%d::text), a.st)) AS n FROM (SELECT "
                          "DISTINCT hashtext(u.k) & 255 AS st FROM unnest($%d::text[]) AS u (k) WHERE NOT EXISTS "
                          "(SELECT 1 FROM live WHERE live.k = u.k) ORDER BY 1) a) SELECT (SELECT count(*) FROM live), "
                          "(SELECT count(*) FROM dead), (SELECT n FROM absent)", np + 1, np + 2);
  }
  bool oom = b->oom || arr.oom || lock.oom;
  for (int k = 0; k < np; k++) oom = oom || karr[k].oom;
  if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  else rc = pgs_mesh_versions_exec(s, m, r->target, lock.p, b->p, np + 2, params, res, err);
  od_sqlbuf_free(&lock);
  od_sqlbuf_free(&arr);
  for (int k = 0; k < np; k++) od_sqlbuf_free(&karr[k]);
  return rc;
}

/* SQL-rule tables: the key state after an applied change c — a delete leaves a tombstone whose
 * image is the row it deleted as its author had it (or none: the change lacks it), rewritten after
 * the apply (touch: the trigger's image is this node's row); a write leaves a live row. */
static int note_image(pgs_sink *s, const pg_rel *r, const od_change *c, decision *d, od_error *err) {
  free(d->img);
  d->img = NULL;
  if (c->op != OD_OP_DELETE) {
    d->tomb = false;
    return OD_OK;
  }
  bool oom;
  d->img = pgs_mesh_sqlrule_image(r, c, &oom);
  if (oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  d->tomb = true;
  d->touch = true;
  return OD_OK;
}

/* Decide one change against its key's state: fills *keep, logs a conflict, updates the state. */
static int decide_change(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const mesh_pol *pol, const od_change *changes,
                         size_t ci, const stamp *st, decision *d, const int *cols, int nctr, int nfetch,
                         const int *rule_of, sqlrule_run *sq, bool *keep, od_error *err) {
  const od_change *c = &changes[ci];
  bool exact = pol->policy == POL_COLUMN_MERGE; /* a version per column for every write */
  ctr_in k = pgs_mesh_ctr_of(c, cols, nctr); /* counter columns, and the change's deltas */
  /* The key's first change in this source transaction decides for the rest — but on a column_merge
   * table not for a delete after it: the first change may have been merged (its columns taken, the
   * row kept), which says nothing about the row's existence; the delete competes for that itself,
   * as one in its own transaction would (and where it is applied, its tombstone image is the row as
   * the transaction left it: d->touch below). */
  if (d->seq == st->seq && !(exact && c->op == OD_OP_DELETE)) {
    *keep = d->apply;
    int rc = OD_OK;
    bool merged = d->apply && d->merge && pgs_mesh_mergeable(r, c, d);
    /* Counters: a later change of the row in the same source transaction adds its contribution too
     * (postgres_mesh_counter.c); where it goes follows the first change's decision: the row, or the
     * tombstone's balance (a column merge places it itself) */
    ctr_acc ka = {0};
    if (nctr && !pgs_mesh_ctr_add(m, r, changes, ci, d, &k, &ka))
      return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    bool kexact = ka.done;
    bool kdelta = kexact || (nctr && c->op == OD_OP_UPDATE && d->has_ver && !d->tomb && pgs_mesh_add_deltas(s, r, c, d, &k));
    if (merged && exact) {
      /* ... a column merge, judged by the columns' versions as they are now: a column the first
       * change took is the peer's own (seen), one the local version kept or no change touched yet
       * goes to the fallback against its writer; not logged again */
      ver_entry cv[MERGE_COLS_MAX];
      int ncv = pgs_mesh_ncols_of(d);
      pgs_mesh_col_vers(d, ncv, cv);
      ver_entry rowv = pgs_mesh_row_ver(m, d);
      if (!(rc = pgs_mesh_merge_columns(s, m, r, pol, st, c, ci, d, cv, &rowv, &k, kdelta, keep, NULL, NULL, err)))
        rc = pgs_mesh_set_col_vers(s, m, d, cv, ncv, err);
      if (rc == OD_OK && nctr && !pgs_mesh_ctr_sync_row(d, &k)) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      return rc;
    }
    if (merged) /* ... a column merge: what the local version kept stays */
      rc = pgs_mesh_merge_columns(s, m, r, pol, st, c, ci, d, NULL, NULL, &k, kdelta, keep, NULL, NULL, err);
    else if (kdelta && !kexact) /* applied: its row with the merged counters; else they are set after the apply */
      rc = pgs_mesh_write_counters(s, m, c, ci, d, &k, d->apply, err);
    else if (exact && nctr && !d->apply && d->tomb && d->row && d->also && c->op == OD_OP_UPDATE && k.delta_ok)
      rc = pgs_mesh_image_columns(s, m, r, c, st, d, &k, true, err); /* lost to a tombstone: its column versions */
    if (rc == OD_OK && kexact && !merged) rc = pgs_mesh_ctr_place(s, m, c, ci, d, &k, &ka, d->apply, err);
    if (rc == OD_OK && kexact && d->row && !pgs_mesh_ctr_to_row(d, &k))
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    const od_value *vals = pgs_mesh_applied_vals(m, ci, c);
    if (rc == OD_OK && exact && d->apply &&
        (!pgs_mesh_colver_note(m, d, c, st, true, merged ? d->lmask : 0, pgs_mesh_ncols_of(d)) ||
         (!merged && c->op != OD_OP_DELETE && !pgs_mesh_colver_row_set(d, vals, c->newtup.ncolumns))))
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    if (rc == OD_OK && nctr && d->apply && c->op != OD_OP_DELETE && !kdelta && !kexact && !merged &&
        !pgs_mesh_ctr_sync(d, &k, vals, c->newtup.ncolumns))
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    /* SQL rules: a delete that follows leaves its own image in the tombstone (the set-based apply
     * merges the transaction's changes of the key into one DELETE, which meets the row as it was) */
    if (rc == OD_OK && sq->n && d->apply) rc = note_image(s, r, c, d, err);
    return rc;
  }
  int rc;
  const char *kind = NULL, *policy = POLICIES[pol->policy == POL_COLUMN_MERGE ? pol->fallback : pol->policy];
  bool apply = true, merge = false;
  decision cmp = *d; /* the local write the remote one competes with (column_merge: of the row's set) */
  if (!pgs_mesh_seen_by_remote(m, st, d)) { /* concurrent */
    cmp = pgs_mesh_competitor(m, st, d);
    if (d->tomb && exact && pgs_mesh_wrote_nothing(c) && pgs_mesh_all_cols_known(d)) {
      /* column_merge: an update that changed no column wrote nothing, not even the row's
       * existence. Where it arrives before the delete, the delete is judged against the columns'
       * writes only and applied (the no-op has no column version): so here it must not re-create
       * the row, or the nodes differ for ever (docs/MULTI_MASTER.md, "An update that changed no
       * column"). Not a conflict: nothing of it is lost. Only when every column of the key has a
       * recorded write: a column never recorded (a row from before the trigger) stands, on the
       * live row, for the row's version, which the no-op did set; then it competes as before. */
      apply = false;
    } else if (d->tomb) {
      /* A delete against a tombstone competes too: the winner's version becomes the tombstone's
       * on every node, so later writes of the key are judged against the same version. */
      kind = c->op == OD_OP_INSERT ? "insert_delete" : c->op == OD_OP_UPDATE ? "update_delete" : "delete_delete";
      /* an insert or update against the tombstone: SQL rules with `local` NULL, then with the
       * tombstone ranked as its image; two deletes: only ranked as the rows they deleted, when both
       * are known (with both records NULL no rule can tell them apart) */
      int ruled = 0;
      if ((c->op != OD_OP_DELETE || (sq->n && d->img)) &&
          (rc = pgs_mesh_rules_decide(s, m, r, changes, ci, d, cols, nctr, nfetch, rule_of, sq, true, &ruled, err)))
        return rc;
      apply = ruled ? ruled > 0 : pgs_mesh_remote_wins(m, pol, st, &cmp);
      if (ruled) policy = "rule";
      /* column_merge: a write that loses to the delete still wins the columns it wrote whose
       * versions are older: kept in the tombstone's last row for a later re-creation */
      if (exact && !apply && c->op != OD_OP_DELETE && d->row && d->also &&
          (rc = pgs_mesh_image_columns(s, m, r, c, st, d, &k, false, err)))
        return rc;
    } else {
      kind = c->op == OD_OP_DELETE ? "update_delete" : c->op == OD_OP_UPDATE ? "update_update" : "insert_insert";
      int ruled = 0;
      /* a remote delete against the live row: SQL rules only, with `remote` NULL, then ranked as
       * the row it deleted */
      /* (column_merge: column rules order one column's writes in the merge, never a whole pair) */
      if ((rc = pgs_mesh_rules_decide(s, m, r, changes, ci, d, cols, nctr, nfetch, rule_of, sq, c->op == OD_OP_DELETE || exact,
                                      &ruled, err)))
        return rc;
      merge = !ruled && pol->policy == POL_COLUMN_MERGE && (pgs_mesh_mergeable(r, c, d) || pgs_mesh_insert_ruled(m, r, c, d));
      if (pol->policy == POL_COLUMN_MERGE && !ruled && !merge && c->op == OD_OP_UPDATE && c->old_kind != 'O' &&
          !m->merge_warned) {
        m->merge_warned = true;
        od_warn("postgres sink %s: mesh %s: table %s has policy column_merge but its updates arrive without the "
                "old row (REPLICA IDENTITY FULL is missing on node %s): concurrent updates are resolved by the "
                "fallback %s as whole rows; run ALTER TABLE %s REPLICA IDENTITY FULL on every node",
                s->where, m->node, r->target, m->peer, policy, r->target);
      }
      apply = ruled ? ruled > 0 : pgs_mesh_remote_wins(m, pol, st, &cmp);
      if (ruled) policy = "rule";
    }
  }
  /* Counters take every write as a contribution to the local value, conflict or not (a row merged
   * here holds deltas its writer's peer has not seen, so "seen" does not mean "same value"): an
   * update's delta, a delete's -old, an insert's value minus its author's balance, on a row or a
   * tombstone (postgres_mesh_counter.c). */
  ctr_acc ka = {0};
  if (nctr && !pgs_mesh_ctr_add(m, r, changes, ci, d, &k, &ka))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  bool kexact = ka.done;
  /* (column_merge: a merge places the sum itself; a whole write after its re-creation's override) */
  if (kexact && !exact && (rc = pgs_mesh_ctr_place(s, m, c, ci, d, &k, &ka, apply, err))) return rc;
  if (kexact && exact && !merge && !apply && (rc = pgs_mesh_ctr_place(s, m, c, ci, d, &k, &ka, false, err))) return rc;
  bool kdelta =
      kexact || (nctr && c->op == OD_OP_UPDATE && d->has_ver && !d->tomb && pgs_mesh_add_deltas(s, r, c, d, &k));
  if (merge) { /* concurrent updates of one row, merged by column (docs/MULTI_MASTER.md, "column_merge") */
    ver_entry cv[MERGE_COLS_MAX];
    int ncv = pgs_mesh_ncols_of(d);
    char winner[WINNER_MAX] = "merged";
    od_sqlbuf detail = {0};
    ver_entry rowv = pgs_mesh_row_ver(m, d);
    pgs_mesh_col_vers(d, ncv, cv);
    /* A first merge: every column holds the row's version (the local write, whose changed columns
     * are not known): weak, so it counts for "seen" and the columns are still judged by value. */
    for (int j = 0; !d->also && j < ncv; j++) {
      cv[j] = rowv;
      cv[j].weak = true;
    }
    d->lmask = 0;
    if (!(rc = pgs_mesh_merge_columns(s, m, r, pol, st, c, ci, d, cv, &rowv, &k, kdelta, &apply, &detail, winner, err)))
      rc = detail.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where)
                      : log_conflict(s, m, r, c, st, kind, &cmp, apply, "column_merge", detail.p, winner, err);
    od_sqlbuf_free(&detail);
    /* The merged row is written by this sink (its xmin gets the peer's origin): the side table
     * keeps each column's write, so later writes are judged per column. */
    if (rc || (rc = pgs_mesh_set_col_vers(s, m, d, cv, ncv, err))) return rc;
    if (nctr && !pgs_mesh_ctr_sync_row(d, &k)) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    *keep = apply;
    d->seq = st->seq;
    d->apply = apply;
    d->merge = true;
    if (!wr_push(m, d)) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    return OD_OK;
  }
  if (kdelta && !kexact && (rc = pgs_mesh_write_counters(s, m, c, ci, d, &k, apply, err))) return rc;
  if (kind) { /* exact counters: the conflict lists the counters whose contribution was summed */
    od_sqlbuf detail = {0};
    if (kexact) pgs_mesh_ctr_detail(r, &k, &detail);
    rc = detail.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where)
                    : log_conflict(s, m, r, c, st, kind, &cmp, apply, policy, detail.p, NULL, err);
    od_sqlbuf_free(&detail);
    if (rc) return rc;
  }
  if (od_log_level() >= OD_LOG_DEBUG) { /* per change: its arguments only when the line is written */
    const vv_entry *e = pgs_mesh_vv_find(st->vv, st->nvv, d->node[0] ? d->node : m->node);
    od_debug("postgres sink %s: mesh %s <- %s: %s %s key %s: local %s %s/%" PRId64 "/h%" PRId64 "%s; remote %" PRIX64
             " ts %" PRId64 " h%" PRId64 " vv[%s]=%" PRId64 ": %s, %s", s->where, m->node, m->peer,
             c->op == OD_OP_DELETE ? "delete" : c->op == OD_OP_UPDATE ? "update" : "insert", r->target, d->key,
             !d->has_ver ? "none" : d->tomb ? "tombstone" : "row", d->node[0] ? d->node : m->node, d->ts, d->hlc,
             d->ours ? " (ours)" : "", st->lsn, st->ts, st->hlc, d->node[0] ? d->node : m->node, e ? e->ts : -1,
             kind ? kind : "seen", apply ? "applied" : "skipped");
  }
  *keep = apply;
  d->seq = st->seq;
  d->apply = apply;
  d->merge = false;
  d->lmask = 0;
  if (apply) { /* the key's version is now the peer's */
    bool partial = d->has_ver && (!d->tomb || d->row); /* the columns it did not change keep their versions */
    uint64_t kept = 0; /* columns a re-creation left to the tombstone's (a column rule) */
    if (exact && d->has_ver && d->tomb && d->row && (rc = pgs_mesh_recreate_override(s, m, r, c, ci, d, &k, st, &kept, err)))
      return rc;
    if (kexact && exact && (rc = pgs_mesh_ctr_place(s, m, c, ci, d, &k, &ka, true, err))) return rc;
    /* A re-creation holds the tombstone's columns, which its author had not seen: later changes of
     * the key in the same source transaction are merged by column (as where the write met the live
     * row and was merged), never applied whole with their author's values of those columns. */
    if (exact && d->has_ver && d->tomb && d->row && c->op == OD_OP_UPDATE) d->merge = true;
    /* A delete of a key that had no row when the run read its versions: the DELETE the set-based
     * apply sends (the key's last operation in the run: a tombstone, or a row this run re-created
     * and deletes again, merged by key into one DELETE) finds no row and the tombstone trigger
     * does not fire, so the tombstone would keep its old version: an older local delete (origin
     * 0) would then stand for the key's version and later writes be judged against it. */
    if (c->op == OD_OP_DELETE && !d->live0) d->touch = true;
    /* column_merge: a delete after this run's earlier writes of the live row. The set-based apply
     * keeps a key's last operation only, so the DELETE meets the row as it was before the run and
     * the trigger's tombstone image misses those writes, while the columns' versions name them: a
     * re-creation from that image would hold a value apart from its version. Rewrite the image
     * from the row as the run left it, as for a key without a row. */
    if (c->op == OD_OP_DELETE && exact && d->queued && !d->tomb && d->row) d->touch = true;
    d->has_ver = true;
    d->ours = true;
    d->tomb = c->op == OD_OP_DELETE;
    snprintf(d->node, sizeof d->node, "%s", m->peer);
    d->ts = st->ts;
    d->hlc = st->hlc;
    if (exact) { /* the columns it wrote get its version, the others keep theirs */
      const od_value *vals = c->newtup.values;
      for (size_t o = 0; o < m->novr; o++)
        if (m->ovr[o].idx == ci) vals = m->ovr[o].vals; /* a re-created row's values */
      if (!pgs_mesh_colver_note(m, d, c, st, partial, kept, pgs_mesh_ncols_of(d)) ||
          (c->op != OD_OP_DELETE && !pgs_mesh_colver_row_set(d, vals, c->newtup.ncolumns)))
        return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    } else {
      free(d->also); /* a write that won whole (or saw the whole set) is the row's only version */
      d->also = NULL;
    }
    /* counters written as values (an insert, a re-created row): later deltas of the run add to them */
    if (nctr && c->op != OD_OP_DELETE && !kdelta && !pgs_mesh_ctr_sync(d, &k, pgs_mesh_applied_vals(m, ci, c), c->newtup.ncolumns))
      return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    if (!wr_push(m, d)) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    if (sq->n && (rc = note_image(s, r, c, d, err))) return rc;
  }
  /* column_merge: the key state's row (a tombstone's image, a re-creation's base) holds the sum */
  if (kexact && exact && d->row && !pgs_mesh_ctr_to_row(d, &k))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  return OD_OK;
}

/* The key state of *key (its text, malloc'd: moved into a new state, *key then NULL; else left to
 * the caller), made from the versions read (vers, sorted; only: keys with just a side-table row) when
 * the run has none yet. NULL: out of memory. */
static decision *state_of(pgs_mesh *m, const pg_rel *r, char **key, const local_ver *vers, int nv,
                          const local_ver *only, int nonly, int nfetch, int nctr, const PGresult *res, int nall) {
  decision *d = dec_find(m, r->rel, *key);
  if (d) return d;
  local_ver probe = {.key = *key};
  const local_ver *lv = nv ? bsearch(&probe, vers, (size_t)nv, sizeof *vers, cmp_key) : NULL;
  char *owned = *key;
  *key = NULL; /* owned by the key state now */
  if (!(d = dec_from(m, r, owned, lv, nfetch, nctr, res, nall))) return NULL;
  /* read under the key's lock: whether its side-table row exists (finish_run) */
  d->vrow = (lv ? lv->vrow : nonly && bsearch(&probe, only, (size_t)nonly, sizeof *only, cmp_key)) ? 1 : -1;
  return d;
}

/* SQL rules: the key states of keys[q0, q1) made now, then every change among them that is
 * concurrent with its key's version as read (a version it had not seen, not two deletes; not a later
 * change of a source transaction already decided for the key) evaluated in one statement. */
static int sqlrule_prefetch(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, const size_t *idx,
                            char **keys, size_t q0, size_t q1, const local_ver *vers, int nv, const local_ver *only,
                            int nonly, int nfetch, int nctr, const PGresult *res, int nall, sqlrule_run *sq,
                            od_error *err) {
  size_t *cis = calloc(q1 - q0 + 1, sizeof *cis);
  decision **ds = calloc(q1 - q0 + 1, sizeof *ds);
  char **dk = calloc(q1 - q0 + 1, sizeof *dk);
  size_t n = 0;
  int rc = OD_OK;
  if (!cis || !ds || !dk) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  for (size_t j = q0; j < q1 && rc == OD_OK; j++) {
    if (!keys[j]) continue; /* not text: applied without a check */
    char *copy = strdup(keys[j]); /* keys[j] stays for the decisions (state_of takes the copy or not) */
    decision *d = copy ? state_of(m, r, &copy, vers, nv, only, nonly, nfetch, nctr, res, nall) : NULL;
    free(copy);
    if (!d) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    else dk[j - q0] = d->key; /* the state's key text: stays put when the states move */
  }
  for (size_t j = q0; j < q1 && rc == OD_OK; j++) {
    const od_change *c = &changes[idx[j]];
    const stamp *st = &m->st[m->sidx[idx[j]]];
    decision *d = dk[j - q0] ? dec_find(m, r->rel, dk[j - q0]) : NULL;
    if (!d || !d->has_ver || (c->op == OD_OP_DELETE && d->tomb && !d->img) || d->seq == st->seq || pgs_mesh_seen_by_remote(m, st, d))
      continue;
    cis[n] = idx[j];
    ds[n++] = d;
  }
  if (rc == OD_OK && n) rc = pgs_mesh_sqlrule_eval(s, m, r, sq, changes, cis, ds, n, err);
  free(cis);
  free(ds);
  free(dk);
  return rc;
}

/* Decide the changes of one relation in changes[from, to): fills keepflag[i - from]. */
int pgs_mesh_decide_rel(pgs_sink *s, pgs_mesh *m, pg_rel *r, const od_change *changes, size_t from, size_t to,
                        bool *keepflag, od_error *err) {
  size_t nkeys = 0;
  for (size_t i = from; i < to; i++)
    if (changes[i].rel == r->rel && m->sidx[i] >= 0) nkeys++;
  if (!nkeys) return OD_OK;
  int cols[COUNTERS_MAX], rule_of[COUNTERS_MAX];
  int nctr = pgs_mesh_counter_cols(m, r, cols);
  int nfetch = pgs_mesh_rule_cols(m, r, cols, nctr, rule_of);
  const mesh_pol *pol = pgs_mesh_pol(m, r->target);
  int nall = pol->policy == POL_COLUMN_MERGE ? r->rel->ncolumns : 0; /* column_merge reads the whole row */
  if (nall > MERGE_COLS_MAX)
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh table %s has %d columns; column_merge supports up to "
                   "%d: give it another policy in mesh.policies", s->where, r->target, nall, MERGE_COLS_MAX);
  size_t per_query = (size_t)(30000 / (r->nkey ? r->nkey : 1));
  if (per_query > 5000) per_query = 5000;
  char **keys = calloc(nkeys, sizeof *keys);
  size_t *idx = calloc(nkeys, sizeof *idx);
  bool *known = calloc(per_query, sizeof *known);
  const char **params = calloc(per_query * (size_t)r->nkey + 3, sizeof *params);
  int rc = OD_OK;
  PGresult *res = NULL;
  local_ver *vers = NULL, *only = NULL; /* only: keys with a side-table row and no version (key only) */
  uniq_set uq = {0}; /* clashes on the table's other unique indexes (postgres_mesh_unique.c) */
  sqlrule_run sq = {0};
  if ((rc = pgs_mesh_sqlrule_begin(s, m, r, from, to, &sq, err))) goto done;
  if (!keys || !idx || !known || !params) {
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    goto done;
  }
  size_t nk = 0;
  for (size_t i = from; i < to; i++) {
    if (changes[i].rel != r->rel || m->sidx[i] < 0) continue;
    idx[nk] = i;
    keys[nk] = key_text(r, key_tuple(&changes[i]));
    nk++;
  }
  for (size_t q0 = 0; q0 < nk; q0 += per_query) {
    size_t q1 = q0 + per_query < nk ? q0 + per_query : nk;
    for (size_t j = q0; j < q1; j++) known[j - q0] = keys[j] && dec_find(m, r->rel, keys[j]) != NULL;
    PQclear(res);
    res = NULL;
    free(vers);
    vers = NULL;
    if ((rc = query_versions(s, m, r, changes, idx, keys, known, q0, q1, cols, nfetch, nall, params, &res, err)))
      goto done;
    pgs_mesh_test_pause();
    int nv = res ? PQntuples(res) : 0;
    free(only);
    only = NULL;
    if (!(vers = calloc((size_t)nv + 1, sizeof *vers)) || !(only = calloc((size_t)nv + 1, sizeof *only))) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      goto done;
    }
    /* rows with a NULL tomb column: keys with only a side-table row (no version), apart in `only` */
    const bool rimg = !nall && pgs_mesh_has_sqlrule(m, r->target); /* query_versions: the image column */
    const int vcol = 6 + nfetch + (nall ? nall + 1 : 0) + (rimg ? 1 : 0);
    int nrows = nv, nonly = 0;
    nv = 0;
    for (int row = 0; row < nrows; row++) {
      if (PQgetisnull(res, row, 4)) {
        only[nonly++].key = PQgetvalue(res, row, 0);
        continue;
      }
      int v = nv++;
      vers[v].key = PQgetvalue(res, row, 0);
      vers[v].vrow = strcmp(PQgetvalue(res, row, vcol), "t") == 0;
      vers[v].prow = row;
      vers[v].also = PQgetisnull(res, row, 5 + nfetch + nall) ? NULL : PQgetvalue(res, row, 5 + nfetch + nall);
      vers[v].local = !nall || PQgetisnull(res, row, 6 + nfetch + nall) ? NULL : PQgetvalue(res, row, 6 + nfetch + nall);
      vers[v].img = !rimg || PQgetisnull(res, row, 6 + nfetch) ? NULL : PQgetvalue(res, row, 6 + nfetch);
      vers[v].ts = PQgetisnull(res, row, 1) ? INT64_MIN : strtoll(PQgetvalue(res, row, 1), NULL, 10);
      vers[v].origin = PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2);
      vers[v].hlc = PQgetisnull(res, row, 3) ? INT64_MIN : strtoll(PQgetvalue(res, row, 3), NULL, 10);
      vers[v].tomb = strcmp(PQgetvalue(res, row, 4), "t") == 0;
      for (int k = 0; k < nfetch; k++) vers[v].ctr[k] = PQgetisnull(res, row, 5 + k) ? NULL : PQgetvalue(res, row, 5 + k);
    }
    qsort(vers, (size_t)nv, sizeof *vers, cmp_key);
    qsort(only, (size_t)nonly, sizeof *only, cmp_key);
    pgs_mesh_unique_clear(&uq);
    if ((rc = pgs_mesh_unique_query(s, m, r, changes, idx, keys, q0, q1, &uq, err))) goto done;

    /* SQL rules: every pair this read finds concurrent (a version the change had not seen; not two
     * deletes) evaluated in one statement before the decisions; a pair that only becomes
     * concurrent while deciding is evaluated then (pgs_mesh_sqlrule_get) */
    if (sq.n && (rc = sqlrule_prefetch(s, m, r, changes, idx, keys, q0, q1, vers, nv, only, nonly, nfetch, nctr, res,
                                       nall, &sq, err)))
      goto done;
    for (size_t j = q0; j < q1; j++) {
      size_t ci = idx[j];
      bool *keep = &keepflag[ci - from];
      *keep = true;
      if (!keys[j]) continue; /* not text: applied without a check */
      decision *d = state_of(m, r, &keys[j], vers, nv, only, nonly, nfetch, nctr, res, nall);
      if (!d) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        goto done;
      }
      size_t ntodel = m->ntodel;
      const char *dkey = d->key; /* malloc'd: stays where it is when the key states move */
      if ((rc = decide_change(s, m, r, pol, changes, ci, &m->st[m->sidx[ci]], d, cols, nctr, nfetch, rule_of, &sq,
                              keep, err)) ||
          (uq.n && (rc = pgs_mesh_unique_resolve(s, m, r, pol, &changes[ci], ci, &m->st[m->sidx[ci]], d, &uq, keep,
                                                 err))))
        goto done;
      d = dec_find(m, r->rel, dkey); /* the key states may have moved */
      if ((rc = pgs_mesh_unique_note(s, m, r, &changes[ci], &m->st[m->sidx[ci]], d, *keep, m->ntodel > ntodel, err)))
        goto done;
    }
  }
done:
  pgs_mesh_sqlrule_end(&sq);
  pgs_mesh_unique_clear(&uq);
  if (keys)
    for (size_t j = 0; j < nkeys; j++) free(keys[j]);
  free(keys);
  free(idx);
  free(known);
  free(params);
  free(vers);
  free(only);
  PQclear(res);
  return rc;
}

