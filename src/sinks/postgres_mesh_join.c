/* sinks/postgres_mesh_join.c — a mesh sink on a node that is joining a running mesh
 * (docs/MULTI_MASTER.md, "Adding a node to a running mesh").
 *
 * Owns: the sink's mesh_join_from setting (the seed node this node copies from) and the gate: a
 * sink on a joining node refuses its session (retriable) until public._odsync_join on its own node
 * holds the row (node, seed, 'done') that `odsync mesh join` commits in the transaction that copies
 * the seed's data, versions, checkpoints and vectors (src/cli/mesh_join.c). So a pipeline into a
 * node that has not joined never streams into it (its checkpoint would be missing and its data
 * incomplete), and it starts by itself, at the copied checkpoint, once the join has committed.
 * And the removal gate: a sink whose node or peer `odsync mesh remove` marked removed
 * (public._odsync_removed on its node, src/cli/mesh_remove.c) refuses its session (retriable) before
 * it creates the origin odsync_<peer> again, so an odsync still running the removed node's pipelines
 * waits, logging why, instead of undoing the removal (its sources never reach their slot either:
 * the pipeline opens its sinks first).
 * It also keeps the sink's list of removed nodes (pgs_mesh.removed), which causal delivery does not
 * wait for (postgres_mesh.c: their origins are dropped here, and the removal waited until this node
 * had applied all they wrote).
 * Never touches: _odsync_join's or _odsync_removed's rows (the commands write them), the data, the
 * checkpoint.
 * Pointer ownership: nothing allocated; the query result is freed before returning.
 */
#include "sinks/postgres_mesh_internal.h"

int pgs_mesh_join_config(pgs_mesh *m, const od_config_section *cfg, od_error *err) {
  const char *from = NULL;
  int rc = od_config_string(cfg, "mesh_join_from", NULL, &from, err);
  if (rc) return rc;
  snprintf(m->join_from, sizeof m->join_from, "%s", from ? from : "");
  return OD_OK;
}

int pgs_mesh_join_gate(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m || !m->join_from[0]) return OD_OK;
  const char *p[] = {m->node};
  PGresult *r = PQexecParams(s->conn, "SELECT to_regclass('public._odsync_join') IS NOT NULL", 0, NULL, NULL, NULL,
                             NULL, 0);
  bool table = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  bool failed = PQresultStatus(r) != PGRES_TUPLES_OK;
  PQclear(r);
  if (failed) return pgs_fail(s, NULL, "looking up public._odsync_join (mesh join)", NULL, err);
  bool done = false;
  if (table) {
    r = PQexecParams(s->conn, "SELECT state FROM public._odsync_join WHERE node = $1", 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      int rc = pgs_fail(s, NULL, "reading public._odsync_join (mesh join)", r, err);
      PQclear(r);
      return rc;
    }
    done = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "done") == 0;
    PQclear(r);
  }
  if (done) return OD_OK;
  return OD_FAIL_RETRY(err, OD_EBUSY,
                       "postgres sink %s: mesh node %s has not joined the mesh yet (join_from: %s): run `odsync "
                       "mesh join -c <config> %s` (it copies %s into %s while the mesh runs); pipeline %s waits "
                       "and retries until then. Applications must not write to %s before the join reports it "
                       "joined",
                       s->where, m->node, m->join_from, m->node, m->join_from, m->node, s->pipeline, m->node);
}

int pgs_mesh_removed_read(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  m->nremoved = 0;
  PGresult *r = PQexecParams(s->conn, "SELECT to_regclass('public._odsync_removed') IS NOT NULL", 0, NULL, NULL, NULL,
                             NULL, 0);
  bool table = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  bool failed = PQresultStatus(r) != PGRES_TUPLES_OK;
  PQclear(r);
  if (failed) return pgs_fail(s, NULL, "looking up public._odsync_removed (mesh remove)", NULL, err);
  if (!table) return OD_OK;
  r = PQexecParams(s->conn, "SELECT node FROM public._odsync_removed ORDER BY node", 0, NULL, NULL, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    int rc = pgs_fail(s, NULL, "reading public._odsync_removed (mesh remove)", r, err);
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r) && m->nremoved < VV_MAX; i++)
    snprintf(m->removed[m->nremoved++], sizeof m->removed[0], "%s", PQgetvalue(r, i, 0));
  PQclear(r);
  return OD_OK;
}

bool pgs_mesh_removed_has(const pgs_mesh *m, const char *node) {
  for (int i = 0; i < m->nremoved; i++)
    if (strcmp(m->removed[i], node) == 0) return true;
  return false;
}

int pgs_mesh_removed_gate(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m) return OD_OK;
  int rc = pgs_mesh_removed_read(s, err);
  if (rc) return rc;
  const char *gone = pgs_mesh_removed_has(m, m->node) ? m->node : pgs_mesh_removed_has(m, m->peer) ? m->peer : NULL;
  if (!gone) return OD_OK;
  return OD_FAIL_RETRY(err, OD_EBUSY,
                       "postgres sink %s: mesh node %s was removed from the mesh (`odsync mesh remove`, "
                       "public._odsync_removed on node %s): pipeline %s waits; delete %s from mesh.nodes and restart "
                       "odsync (to bring it back, add it with join_from and run `odsync mesh join`)",
                       s->where, gone, m->node, s->pipeline, gone);
}
