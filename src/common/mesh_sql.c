/* mesh_sql.c — see mesh_sql.h. */
#include "common/mesh_sql.h"

void od_mesh_sql_local_hlc(od_sqlbuf *b, const char *hlc_q, const char *ct) {
  od_sqlbuf_addf(b, "greatest((extract(epoch FROM %s) * 1000000)::int8, (SELECT h.hlc + 1 FROM ", ct);
  od_sqlbuf_add(b, hlc_q);
  od_sqlbuf_addf(b, " h WHERE pg_xact_commit_timestamp(h.xmin) < %s ORDER BY h.hlc DESC LIMIT 1))", ct);
}

void od_mesh_sql_colver_list(od_sqlbuf *b, const char *hlc_q, const char *cv_q, const char *tbl, const char *key) {
  od_sqlbuf_add(b, "(SELECT string_agg(CASE WHEN z.c IS NULL THEN '' ELSE z.s::text || ':' || ");
  od_mesh_sql_local_hlc(b, hlc_q, "z.c");
  od_sqlbuf_add(b, "::text END, ',' ORDER BY z.i) FROM ");
  od_sqlbuf_add(b, cv_q);
  od_sqlbuf_addf(b, " cv CROSS JOIN LATERAL (SELECT e.i, y.c, (extract(epoch FROM y.c) * 1000000)::int8 AS s FROM "
                    "unnest(cv.xids) WITH ORDINALITY AS e (x, i) CROSS JOIN LATERAL (SELECT "
                    "pg_xact_commit_timestamp(e.x) AS c) y) z WHERE cv.tbl = %s AND cv.key = %s)", tbl, key);
}
