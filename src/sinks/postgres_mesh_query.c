/* sinks/postgres_mesh_query.c — how a mesh sink runs its statements (postgres_mesh_decide.c and
 * postgres_mesh.c build them): a named prepared statement per statement text (the text is fixed per
 * table shape, the keys are array parameters); the lock statement and the versions read go out in
 * one pipeline round trip — the first takes the row and tombstone locks (waiting for whoever holds
 * them), the second, whose snapshot is taken after the first has finished, reads the versions.
 * Owns: the cache of prepared mesh statements of the sink's session (texts malloc'd, forgotten
 * on every new session: prepared statements die with the connection).
 * Never touches: the statement's text, transactions (begin/commit), the apply path's statements.
 * Pointer ownership: the PGresult handed back belongs to the caller; params are borrowed.
 */
#include "sinks/postgres_mesh_internal.h"

void pgs_mesh_vq_forget(pgs_mesh *m) {
  for (int i = 0; i < m->nvq; i++) free(m->vq[i].sql);
  m->nvq = 0;
}

const char *pgs_mesh_prepared(pgs_sink *s, pgs_mesh *m, const char *table, const char *sql, od_error *err) {
  for (int i = 0; i < m->nvq; i++)
    if (strcmp(m->vq[i].sql, sql) == 0) return m->vq[i].name;
  if (m->nvq == VQ_MAX) return "";
  char *copy = strdup(sql);
  if (!copy) {
    OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    return NULL;
  }
  struct vq *q = &m->vq[m->nvq];
  snprintf(q->name, sizeof q->name, "odsync_mesh_v%u", ++m->vq_seq);
  PGresult *r = PQprepare(s->conn, q->name, sql, 0, NULL);
  s->stats.round_trips++;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    pgs_fail(s, table, "preparing a statement (mesh)", r, err);
    PQclear(r);
    free(copy);
    return NULL;
  }
  PQclear(r);
  s->stats.prepared++;
  q->sql = copy;
  m->nvq++;
  return q->name;
}

int pgs_mesh_versions_exec(pgs_sink *s, pgs_mesh *m, const char *table, const char *lock_sql, const char *sql,
                           int n, const char *const *params, PGresult **res, od_error *err) {
  *res = NULL;
  if (!s->conn) return pgs_fail(s, table, "reading local row versions (mesh)", NULL, err);
  if (s->copy_rel && pgs_load_end(s, err)) return err->code;
  const char *lname = pgs_mesh_prepared(s, m, table, lock_sql, err);
  if (!lname) return err->code;
  const char *name = pgs_mesh_prepared(s, m, table, sql, err);
  if (!name) return err->code;
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, table, "entering pipeline mode (mesh)", NULL, err);
  bool begin = !s->begin_sent; /* the sink transaction's BEGIN goes out in the same round trip */
  bool sent = !begin || PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
  for (int k = 0; k < 2 && sent; k++) {
    const char *nm = k ? name : lname, *q = k ? sql : lock_sql;
    sent = *nm ? PQsendQueryPrepared(s->conn, nm, n, params, NULL, NULL, 0) == 1
               : PQsendQueryParams(s->conn, q, n, NULL, params, NULL, NULL, 0) == 1;
  }
  sent = sent && PQpipelineSync(s->conn) == 1;
  s->stats.round_trips++;
  /* Results: [BEGIN,] lock, read (each then NULL), the sync; after an error the rest is aborted. */
  int rc = sent ? OD_OK : pgs_fail(s, table, "sending the versions query (mesh)", NULL, err);
  const char *what[3] = {"BEGIN", "locking local rows (mesh)", "reading local row versions (mesh)"};
  for (int k = begin ? 0 : 1; k < 3 && sent; k++) {
    PGresult *r = PQgetResult(s->conn);
    if (!r) break; /* connection lost */
    ExecStatusType st = PQresultStatus(r);
    if ((st == PGRES_TUPLES_OK || (k == 0 && st == PGRES_COMMAND_OK)) && rc == OD_OK) {
      if (k == 0) s->begin_sent = true;
      if (k == 2) *res = r;
      else PQclear(r);
    } else {
      if (rc == OD_OK) rc = pgs_fail(s, table, what[k], r, err);
      PQclear(r);
    }
    while ((r = PQgetResult(s->conn))) PQclear(r); /* the NULL that ends this query's results */
  }
  if (sent)
    for (int nulls = 0; nulls < 4;) { /* up to the sync's result */
      PGresult *r = PQgetResult(s->conn);
      if (!r) {
        if (PQstatus(s->conn) == CONNECTION_BAD) break;
        nulls++;
        continue;
      }
      ExecStatusType st = PQresultStatus(r);
      PQclear(r);
      if (st == PGRES_PIPELINE_SYNC) break;
    }
  if (!PQexitPipelineMode(s->conn) && rc == OD_OK) rc = pgs_fail(s, table, "leaving pipeline mode (mesh)", NULL, err);
  if (rc) {
    PQclear(*res);
    *res = NULL;
  }
  return rc;
}
