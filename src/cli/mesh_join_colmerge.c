/* mesh_join_colmerge.c — the part of `odsync mesh join`'s copy that column_merge tables need beyond
 * a row's version (docs/MULTI_MASTER.md, "Adding a node to a running mesh", step 4, and "column_merge:
 * which columns, and why the nodes converge").
 *
 * A column_merge key's version is a version per column. On the seed S its sinks read it as: for
 * each column, the local write recorded in public._odsync_colver (an xid, resolved at read time to
 * (S, its commit time, its hlc)), else the entry of the side table's list (_odsync_versions.also,
 * written by S's sinks), else the row's version, weak. On the joining node every copied row carries
 * an origin and _odsync_colver is empty, so its sinks read the list from _odsync_versions.also alone:
 * the copy writes there, per column, S's local write resolved exactly as S's sinks resolve it
 * (postgres_mesh_colver.c, pgs_mesh_colver_read_sql) or S's list's entry, and leaves a column S
 * knows neither way empty (both nodes then fall back to the same row version). A tombstone's last
 * row (_odsync_tombstones.img) is copied with the tombstone by mesh_join.c.
 * Owns: the SQL text of that per-column list, the column_merge test of a table from the pipeline's
 * sink keys, and the check that the seed has the tables and columns the copy reads.
 * Never touches: any database (the check only reads the catalog); the copy itself (mesh_join.c).
 */
#include "cli/mesh_join_colmerge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mesh_cli_util.h"
#include "common/mesh_sql.h"

/* "schema.table" equals a mesh table name (one without a schema names public.<table>). */
static bool same_table(const char *name, size_t len, const char *target) {
  if (strlen(target) == len && strncmp(target, name, len) == 0) return true;
  if (memchr(name, '.', len) || strncmp(target, "public.", 7) != 0) return false;
  return strlen(target + 7) == len && strncmp(target + 7, name, len) == 0;
}

bool mesh_join_colmerge_table(const od_pipeline_config *p, const char *target) {
  if (!p || !p->nsinks) return false;
  const od_config_section *s = &p->sinks[0].section;
  /* mesh_table_policies: "schema.table policy fallback p1,p2|-" (config_mesh.c) */
  const od_config_entry *t = od_config_find(s, "mesh_table_policies");
  for (int i = 0; t && i < t->nlist; i++) {
    const char *e = t->list[i], *sp = strchr(e, ' ');
    if (!sp || !same_table(e, (size_t)(sp - e), target)) continue;
    return strncmp(sp + 1, "column_merge ", 13) == 0;
  }
  const char *pol = mesh_cli_sval(s, "mesh_policy");
  return pol && strcmp(pol, "column_merge") == 0;
}

bool mesh_join_colmerge_any(const od_pipeline_config *p) {
  if (!p || !p->nsinks) return false;
  const od_config_section *s = &p->sinks[0].section;
  const od_config_entry *t = od_config_find(s, "mesh_table_policies");
  for (int i = 0; t && i < t->nlist; i++)
    if (strstr(t->list[i], " column_merge ")) return true;
  const char *pol = mesh_cli_sval(s, "mesh_policy");
  return pol && strcmp(pol, "column_merge") == 0;
}

void mesh_join_also_sql(od_sqlbuf *b, bool merge, const char *seed_lit, const char *tbl_lit) {
  if (!merge) { /* the seed's sinks read a side-table list only for a row a sink wrote */
    od_sqlbuf_addf(b, ", CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.also END FROM x LEFT JOIN "
                      "public._odsync_versions v ON v.tbl = %s AND v.key = x.k", tbl_lit);
    return;
  }
  /* lc.la: per column "<commit time µs>:<hlc>" of the seed's local write that last changed it, ""
   * none (NULL: no _odsync_colver row) — as the seed's sinks read it (common/mesh_sql.c). */
  od_sqlbuf_addf(b,
                 ", (SELECT nullif(string_agg(CASE WHEN coalesce(lc.la[i], '') <> '' THEN %s || ':' || lc.la[i] "
                 "ELSE coalesce(va.a[i], '') END, ',' ORDER BY i), '') FROM (SELECT string_to_array(v.also, ',') AS "
                 "a) va CROSS JOIN LATERAL generate_series(1, greatest(cardinality(lc.la), cardinality(va.a))) i) "
                 "FROM x LEFT JOIN public._odsync_versions v ON v.tbl = %s AND v.key = x.k LEFT JOIN LATERAL (SELECT "
                 "string_to_array(",
                 seed_lit, tbl_lit);
  od_mesh_sql_colver_list(b, "public._odsync_hlc", "public._odsync_colver", tbl_lit, "x.k");
  od_sqlbuf_add(b, ", ',') AS la) lc ON true");
}

int mesh_join_colmerge_check(PGconn *seed, bool merge, bool *img, char *msg, size_t cap) {
  PGresult *r = PQexec(seed, "SELECT to_regclass('public._odsync_colver') IS NOT NULL, EXISTS (SELECT 1 FROM "
                             "pg_attribute WHERE attrelid = to_regclass('public._odsync_versions') AND attname = "
                             "'also' AND NOT attisdropped), EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
                             "to_regclass('public._odsync_tombstones') AND attname = 'img' AND NOT attisdropped)");
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    snprintf(msg, cap, "reading the catalog failed: %s", PQresultErrorMessage(r));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(r);
    return 1;
  }
  bool cv = PQgetvalue(r, 0, 0)[0] == 't', also = PQgetvalue(r, 0, 1)[0] == 't';
  *img = PQgetvalue(r, 0, 2)[0] == 't';
  PQclear(r);
  if (!merge || (cv && also && *img)) return 0;
  snprintf(msg, cap,
           "it has column_merge tables but no %s: the copy would lose their column versions. Run odsync with this "
           "configuration (its sinks into the seed create them) and run the join again",
           !cv ? "public._odsync_colver" : !also ? "column _odsync_versions.also" : "column _odsync_tombstones.img");
  return 2;
}
