/* pg_tables.c — the tables a PostgreSQL source captures, read without changing anything (the
 * vtable's `tables`, used by `odsync check` and at the start of each session to find two source
 * tables that a sink would write to one target table before anything is written).
 * The publication's tables when it exists; before it does, what odsync would publish: the tables
 * in source.tables (each parsed by the server as PostgreSQL parses a table name, `public.` when it
 * has no schema), or every ordinary and partitioned table outside the system schemas; partitions
 * as their root (partitions: root, PostgreSQL 13+) or as their leaves.
 * Owns: nothing after it returns (opens the ordinary connection `meta` when it is not open yet,
 * which the source keeps). Never touches: the slot, the publication, the stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/pg/pg_internal.h"

/* Has table c a key the stream identifies rows by (primary key under the default replica
 * identity, or the replica identity index)? Column 3 of every listing below. */
#define KEYED                                                                                                       \
  "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND ((i.indisprimary AND c.relreplident = 'd') "      \
  "OR (i.indisreplident AND c.relreplident = 'i')))"

static int report(PGresult *r, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed), void *ctx) {
  for (int i = 0; i < PQntuples(r); i++) fn(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)[0] == 't');
  return OD_OK;
}

int od_pg_tables(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                 void *ctx, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  bool via_root = s->via_root && PQserverVersion(s->meta) >= 130000;
  const char *p[] = {s->publication};
  PGresult *r = od_pg_query(s, s->meta, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, p, err);
  if (!r) return err->code;
  bool exists = PQntuples(r) > 0;
  PQclear(r);
  /* A partitioned table stands for itself (root) or for its leaf partitions. */
  const char *expand =
      via_root ? "SELECT n.nspname, c.relname, " KEYED " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.oid = ANY ($1::oid[]) ORDER BY 1, 2"
               : "SELECT DISTINCT n.nspname, c.relname, " KEYED " FROM unnest($1::oid[]) t(oid), "
                 "LATERAL (SELECT t.oid AS relid, true AS isleaf WHERE (SELECT relkind FROM pg_class WHERE oid = t.oid) <> 'p' "
                 "UNION ALL SELECT relid, isleaf FROM pg_partition_tree(t.oid) "
                 "WHERE (SELECT relkind FROM pg_class WHERE oid = t.oid) = 'p') x "
                 "JOIN pg_class c ON c.oid = x.relid AND x.isleaf AND c.relkind = 'r' "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2";
  if (exists) {
    r = od_pg_query(s, s->meta,
                    "SELECT pt.schemaname, pt.tablename, " KEYED " FROM pg_publication_tables pt "
                    "JOIN pg_namespace n ON n.nspname = pt.schemaname "
                    "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
                    "WHERE pt.pubname = $1 ORDER BY 1, 2",
                    1, p, err);
    if (!r) return od_error_prefix(err, "listing the tables of publication %s: ", s->publication);
    report(r, fn, ctx);
    PQclear(r);
    return OD_OK;
  }
  /* The oids as an array literal, then expanded. */
  size_t cap = 64 + (size_t)s->ntables * 16;
  char *oids = malloc(cap);
  if (!oids) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  size_t len = (size_t)snprintf(oids, cap, "{");
  if (s->ntables) {
    for (int i = 0; i < s->ntables; i++) {
      char name[600];
      snprintf(name, sizeof name, "%s%s", strchr(s->tables[i], '.') ? "" : "public.", s->tables[i]);
      const char *q[] = {name};
      r = od_pg_query(s, s->meta, "SELECT to_regclass($1)::oid", 1, q, err);
      if (!r) {
        free(oids);
        return err->code;
      }
      /* A name that does not resolve is the source check's to report. */
      if (!PQgetisnull(r, 0, 0)) len += (size_t)snprintf(oids + len, cap - len, "%s%s", len > 1 ? "," : "", PQgetvalue(r, 0, 0));
      PQclear(r);
    }
    snprintf(oids + len, cap - len, "}");
  } else {
    free(oids);
    r = od_pg_query(s, s->meta,
                    via_root ? "SELECT coalesce(array_agg(c.oid)::text, '{}') FROM pg_class c "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                               "AND c.relpersistence = 'p' AND NOT c.relispartition "
                               "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"
                             : "SELECT coalesce(array_agg(c.oid)::text, '{}') FROM pg_class c "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                               "AND c.relpersistence = 'p' "
                               "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'",
                    0, NULL, err);
    if (!r) return err->code;
    oids = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!oids) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  const char *q[] = {oids};
  r = od_pg_query(s, s->meta, expand, 1, q, err);
  free(oids);
  if (!r) return err->code;
  report(r, fn, ctx);
  PQclear(r);
  return OD_OK;
}
