/* sinks/postgres_mesh_vv.c — a mesh sink's persisted copy of its peer's version vector
 * (docs/MULTI_MASTER.md, "Version vectors across restarts").
 *
 * Owns: _odsync_peer_vv (peer, node, lsn, ts), next to the checkpoint table: per peer X and node Z,
 * the highest (commit LSN, commit time) of Z's transactions that X had applied, as far as X's stream
 * reached this sink's checkpoint; and its in-memory copies in pgs_mesh (pvv, pvv_ok, pvv_wr).
 * Why it is exact: X's vectors only grow along X's commit order and this sink receives X's stream in
 * that order, resuming after its checkpoint; the table is written in the transaction that moves the
 * checkpoint, so it holds the maximum of exactly the vectors before the resume point, each of which
 * X had before any transaction that follows. A stream reader that restarted forgets its vector; a
 * stamp's vector is completed with this maximum (never more than its writer had seen).
 * Never touches: the data, the checkpoint row, the origin's progress, the decisions.
 * Pointer ownership: everything is in pgs_mesh; change values are borrowed during the call.
 */
#include "sinks/postgres_mesh_internal.h"

bool pgs_mesh_is_vv(const od_change *c) {
  if (c->op != OD_OP_MESSAGE || c->newtup.ncolumns < 2) return false;
  const od_value *p = &c->newtup.values[0];
  return p->data && p->len == strlen(MESH_VV_PREFIX) && memcmp(p->data, MESH_VV_PREFIX, p->len) == 0;
}

void pgs_mesh_pvv_ddl(const pgs_mesh *m, od_sqlbuf *b) {
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->pvv_q);
  od_sqlbuf_add(b, " (peer text NOT NULL, node text NOT NULL, lsn pg_lsn NOT NULL, ts int8 NOT NULL, "
                   "PRIMARY KEY (peer, node)); ");
}

/* into = max(into, e) (an entry past VV_MAX nodes is dropped: a mesh has at most 8) */
static void vv_raise(vv_entry *into, int *n, const vv_entry *e) {
  vv_entry *x = (vv_entry *)pgs_mesh_vv_find(into, *n, e->node);
  if (!x) {
    if (*n == VV_MAX) return; /* more nodes than a mesh has */
    x = &into[(*n)++];
    *x = (vv_entry){.lsn = 0, .ts = INT64_MIN};
    snprintf(x->node, sizeof x->node, "%s", e->node);
  }
  if (e->lsn > x->lsn) x->lsn = e->lsn;
  if (e->ts > x->ts) x->ts = e->ts;
}

int pgs_mesh_pvv_load(pgs_sink *s, pgs_mesh *m, od_error *err) {
  const char *p[] = {m->peer};
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT node, (lsn - '0/0'::pg_lsn)::text, ts FROM ");
  od_sqlbuf_add(b, m->pvv_q);
  od_sqlbuf_add(b, " WHERE peer = $1");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *r = pgs_exec(s, m->pvv_q, "reading the peer's version vector (mesh)", b->p, 1, p, err);
  if (!r) return err->code;
  m->npvv = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    vv_entry e = {.lsn = strtoull(PQgetvalue(r, i, 1), NULL, 10), .ts = strtoll(PQgetvalue(r, i, 2), NULL, 10)};
    snprintf(e.node, sizeof e.node, "%s", PQgetvalue(r, i, 0));
    vv_raise(m->pvv, &m->npvv, &e);
  }
  PQclear(r);
  /* PQexec of the session's DDL left no transaction open: what was read is committed */
  memcpy(m->pvv_ok, m->pvv, sizeof m->pvv);
  memcpy(m->pvv_wr, m->pvv, sizeof m->pvv);
  m->npvv_ok = m->npvv_wr = m->npvv;
  return OD_OK;
}

void pgs_mesh_pvv_stamp(pgs_mesh *m, stamp *st) {
  for (int i = 0; i < st->nvv; i++) vv_raise(m->pvv, &m->npvv, &st->vv[i]);
  for (int i = 0; i < m->npvv; i++) vv_raise(st->vv, &st->nvv, &m->pvv[i]);
}

int pgs_mesh_pvv_message(pgs_sink *s, pgs_mesh *m, const od_change *c, od_error *err) {
  const od_value *v = &c->newtup.values[1];
  char buf[4096];
  size_t n = v->len < sizeof buf - 1 ? v->len : sizeof buf - 1;
  memcpy(buf, v->data, n);
  buf[n] = '\0';
  char *save = NULL, *tok = strtok_r(buf, " ", &save);
  if (!tok || strcmp(tok, "v1") != 0 || !(tok = strtok_r(NULL, " ", &save)))
    return OD_FAIL(err, OD_EPROTOCOL, "postgres sink %s: mesh: unreadable version-vector message", s->where);
  if (strcmp(tok, m->peer) != 0)
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh: the stream comes from node '%s' but this sink's "
                   "mesh_peer is '%s'; check the mesh's dsn entries", s->where, tok, m->peer);
  while ((tok = strtok_r(NULL, " ", &save))) {
    char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) return OD_FAIL(err, OD_EPROTOCOL, "postgres sink %s: mesh: unreadable version-vector message", s->where);
    *c1 = '\0';
    vv_entry e = {.lsn = strtoull(c1 + 1, NULL, 16), .ts = strtoll(c2 + 1, NULL, 10)};
    snprintf(e.node, sizeof e.node, "%s", tok);
    vv_raise(m->pvv, &m->npvv, &e);
  }
  return OD_OK;
}

static bool grew(const pgs_mesh *m, const vv_entry *e) {
  const vv_entry *w = pgs_mesh_vv_find(m->pvv_wr, m->npvv_wr, e->node);
  return !w || e->lsn > w->lsn || e->ts > w->ts;
}

bool pgs_mesh_pvv_dirty(const pgs_mesh *m) {
  for (int i = 0; i < m->npvv; i++)
    if (grew(m, &m->pvv[i])) return true;
  return false;
}

void pgs_mesh_pvv_arrays(const pgs_mesh *m, od_sqlbuf a[3]) {
  for (int k = 0; k < 3; k++) od_sqlbuf_add(&a[k], "{");
  for (int i = 0; i < m->npvv; i++) {
    const vv_entry *e = &m->pvv[i];
    if (!grew(m, e)) continue;
    char lsn[32], ts[32];
    snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(e->lsn >> 32), (unsigned)e->lsn);
    snprintf(ts, sizeof ts, "%" PRId64, e->ts == INT64_MIN ? 0 : e->ts);
    od_sqlbuf_addf(&a[0], "%s\"%s\"", a[0].len > 1 ? "," : "", e->node); /* node names: [A-Za-z0-9_] */
    od_sqlbuf_addf(&a[1], "%s%s", a[1].len > 1 ? "," : "", lsn);
    od_sqlbuf_addf(&a[2], "%s%s", a[2].len > 1 ? "," : "", ts);
  }
  for (int k = 0; k < 3; k++) od_sqlbuf_add(&a[k], "}");
}

void pgs_mesh_pvv_upsert(const pgs_mesh *m, od_sqlbuf *b, int first) {
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, m->pvv_q);
  od_sqlbuf_addf(b, " AS v (peer, node, lsn, ts) SELECT $%d, n, l, t FROM unnest($%d::text[], $%d::pg_lsn[], "
                    "$%d::int8[]) AS u (n, l, t) ON CONFLICT (peer, node) DO UPDATE SET lsn = greatest(v.lsn, "
                    "excluded.lsn), ts = greatest(v.ts, excluded.ts)", first, first + 1, first + 2, first + 3);
}

void pgs_mesh_pvv_written(pgs_mesh *m) {
  memcpy(m->pvv_wr, m->pvv, sizeof m->pvv);
  m->npvv_wr = m->npvv;
}

int pgs_mesh_pvv_write(pgs_sink *s, pgs_mesh *m, od_error *err) {
  od_sqlbuf a[3] = {{0}};
  pgs_mesh_pvv_arrays(m, a);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  pgs_mesh_pvv_upsert(m, b, 1);
  const char *p[4] = {m->peer, a[0].p, a[1].p, a[2].p};
  bool oom = b->oom || a[0].oom || a[1].oom || a[2].oom;
  int rc = OD_OK;
  PGresult *r = NULL;
  if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  else if ((rc = pgs_ensure_begin(s, err)) == OD_OK &&
           !(r = pgs_exec(s, m->pvv_q, "writing the peer's version vector (mesh)", b->p, 4, p, err)))
    rc = err->code;
  PQclear(r);
  for (int k = 0; k < 3; k++) od_sqlbuf_free(&a[k]);
  if (rc == OD_OK) pgs_mesh_pvv_written(m);
  return rc;
}

void pgs_mesh_pvv_committed(pgs_mesh *m) {
  /* what the committed transaction wrote; pvv may be ahead (stamps parsed but not flushed) only
   * within an apply() call, which always ends with a flush */
  memcpy(m->pvv_ok, m->pvv_wr, sizeof m->pvv);
  m->npvv_ok = m->npvv_wr;
}

void pgs_mesh_pvv_rollback(pgs_mesh *m) {
  memcpy(m->pvv, m->pvv_ok, sizeof m->pvv);
  memcpy(m->pvv_wr, m->pvv_ok, sizeof m->pvv);
  m->npvv = m->npvv_wr = m->npvv_ok;
}
