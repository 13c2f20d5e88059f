/* sinks/postgres_owner.c — which pipeline and source table own each target table of the PostgreSQL
 * sink.
 *
 * Owns: the table _odsync_tables in the checkpoint table's schema (one row per target table odsync
 * created or first wrote: target schema and name, the pipeline, the source table as PostgreSQL
 * prints it, and the recreate flag, set by `odsync snapshot` for a table the sink lost, or by hand
 * to accept it empty). A target is claimed in the sink transaction that first uses it in a session (pgs_owner_claim, called by
 * postgres_table.c before the table is made), under the DDL advisory lock when a row is written,
 * so the row commits or rolls back with the table and its data. Refused there:
 *   - a target that another source table or pipeline owns (schema: flat with a.dup and b.dup,
 *     table_map, two pipelines into one database): their rows would mix;
 *   - a target owned by this pipeline (or described in _odsync_columns) that no longer exists,
 *     unless it may be made anew (recreate flag) or the pipeline starts over (no checkpoint row).
 * Never touches: the checkpoint row, the data, table DDL (postgres_table.c / postgres_schema.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tblowner.h"
#include "core/log.h"
#include "sinks/postgres_internal.h"

#define FIX_PG                                                                                                      \
  "Capture only one of them (source.tables), or write one elsewhere (sink.table_map, sink.schema, or another "      \
  "database); docs/adapters/postgres.md, \"Table ownership\""

int pgs_owner_open(pgs_sink *s, const char *schema_q, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, schema_q);
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, "_odsync_tables");
  free(s->own_q);
  if (b->oom || !(s->own_q = strdup(b->p))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "BEGIN; SELECT pg_advisory_xact_lock(7180055063212440403); CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, s->own_q);
  od_sqlbuf_add(b, " (tbl_schema text NOT NULL, tbl_name text NOT NULL, pipeline text NOT NULL, source text NOT NULL, "
                 "recreate boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL DEFAULT now(), "
                 "PRIMARY KEY (tbl_schema, tbl_name)); COMMIT");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  PGresult *r = PQexec(s->conn, b->p);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = pgs_fail(s, s->own_q, "creating the table", r, err);
    PQclear(r);
    PQclear(PQexec(s->conn, "ROLLBACK"));
    return rc;
  }
  PQclear(r);
  /* No checkpoint row yet: the pipeline starts over (initial snapshot), so tables it owned and
   * lost may be made again: the snapshot fills them. */
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT 1 FROM ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " WHERE pipeline = $1");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  const char *p[] = {s->pipeline};
  if (!(r = pgs_exec(s, s->ck_q, "reading the position", b->p, 1, p, err))) return err->code;
  s->fresh = PQntuples(r) == 0;
  PQclear(r);
  return OD_OK;
}

typedef struct owner {
  bool found, recreate, exists, known;
  char pipeline[128];
  char source[400];
} owner;

/* The owner row of tschema.tname and whether the table (quoted qname) exists / was described. */
static int get_owner(pgs_sink *s, const char *qname, const char *tschema, const char *tname, owner *o,
                     od_error *err) {
  memset(o, 0, sizeof *o);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT to_regclass($1) IS NOT NULL, o.pipeline, o.source, o.recreate, EXISTS (SELECT 1 FROM ");
  od_sqlbuf_add(b, s->cols_q);
  od_sqlbuf_add(b, " m WHERE m.tbl_schema = $2 AND m.tbl_name = $3) FROM (SELECT 1) x LEFT JOIN ");
  od_sqlbuf_add(b, s->own_q);
  od_sqlbuf_add(b, " o ON o.tbl_schema = $2 AND o.tbl_name = $3");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *p[] = {qname, tschema, tname};
  PGresult *r = pgs_exec(s, s->own_q, "reading the owner of a table", b->p, 3, p, err);
  if (!r) return err->code;
  o->exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  o->found = !PQgetisnull(r, 0, 1);
  if (o->found) {
    snprintf(o->pipeline, sizeof o->pipeline, "%s", PQgetvalue(r, 0, 1));
    snprintf(o->source, sizeof o->source, "%s", PQgetvalue(r, 0, 2));
    o->recreate = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
  }
  o->known = o->found || strcmp(PQgetvalue(r, 0, 4), "t") == 0;
  PQclear(r);
  return OD_OK;
}

static int put_owner(pgs_sink *s, const char *tschema, const char *tname, const char *source, bool recreate,
                     od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, s->own_q);
  od_sqlbuf_add(b, " (tbl_schema, tbl_name, pipeline, source, recreate) VALUES ($1, $2, $3, $4, $5) "
                 "ON CONFLICT (tbl_schema, tbl_name) DO UPDATE SET recreate = excluded.recreate, updated_at = now()");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *p[] = {tschema, tname, s->pipeline, source, recreate ? "t" : "f"};
  PGresult *r = pgs_exec(s, s->own_q, "recording the owner of a table", b->p, 5, p, err);
  if (!r) return err->code;
  PQclear(r);
  return OD_OK;
}

/* "schema.table" and "schema"."table" of a target. */
static int names_of(pgs_sink *s, const char *tschema, const char *tname, char **target, char **qname, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "%s.%s", tschema, tname);
  *target = b->oom ? NULL : strdup(b->p);
  od_sqlbuf_reset(b);
  od_sqlbuf_ident(b, tschema);
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, tname);
  *qname = b->oom ? NULL : strdup(b->p);
  if (*target && *qname) return OD_OK;
  free(*target);
  free(*qname);
  *target = *qname = NULL;
  return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
}

static int fail_dropped(pgs_sink *s, const char *target, const char *tschema, const char *tname, const char *schema,
                        const char *name, bool keyed, od_error *err) {
  char sink[260], forget[700];
  snprintf(sink, sizeof sink, "postgres sink %s", s->where);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "run UPDATE ");
  od_sqlbuf_add(b, s->own_q);
  char *ls = PQescapeLiteral(s->conn, tschema, strlen(tschema)), *ln = PQescapeLiteral(s->conn, tname, strlen(tname));
  od_sqlbuf_addf(b, " SET recreate = true WHERE tbl_schema = %s AND tbl_name = %s on the target", ls ? ls : "?", ln ? ln : "?");
  PQfreemem(ls);
  PQfreemem(ln);
  snprintf(forget, sizeof forget, "%s", b->oom ? "delete its row from _odsync_tables" : b->p);
  return od_owner_fail_dropped(err, sink, target, s->pipeline, schema, name, keyed, forget);
}

/* The findings shared by claim and check_tables (o filled). *claim: write the owner row. */
static int judge(pgs_sink *s, const owner *o, const char *target, const char *tschema, const char *tname,
                 const char *schema, const char *name, bool keyed, bool *claim, od_error *err) {
  char source[400], sink[260];
  od_owner_source_name(source, sizeof source, schema, name);
  snprintf(sink, sizeof sink, "postgres sink %s", s->where);
  *claim = !o->found || o->recreate; /* writing the row clears a recreate flag no longer needed */
  if (o->found && (strcmp(o->pipeline, s->pipeline) != 0 || strcmp(o->source, source) != 0))
    return od_owner_fail_taken(err, sink, target, o->pipeline, o->source, s->pipeline, source, FIX_PG);
  if (o->exists || !o->known) return OD_OK;
  if ((o->found && o->recreate) || s->fresh) {
    *claim = true;
    return OD_OK;
  }
  return fail_dropped(s, target, tschema, tname, schema, name, keyed, err);
}

int pgs_owner_claim(pgs_sink *s, pg_rel *r, od_error *err) {
  /* A mesh's pipelines into one node all write its tables, which belong to the application. */
  if (s->mesh) return OD_OK;
  const od_relation *rel = r->rel;
  owner o;
  bool claim = false;
  int rc = pgs_ensure_begin(s, err);
  if (!rc) rc = get_owner(s, r->qtarget, r->tschema, r->tname, &o, err);
  if (!rc) rc = judge(s, &o, r->target, r->tschema, r->tname, rel->schema, rel->name, r->keyed, &claim, err);
  if (rc || !claim) return rc;
  /* Writers of other sessions may claim it too: serialize, then look again. */
  PGresult *res = pgs_exec(s, r->target, "taking the DDL lock", PGS_DDL_LOCK, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  if ((rc = get_owner(s, r->qtarget, r->tschema, r->tname, &o, err)) ||
      (rc = judge(s, &o, r->target, r->tschema, r->tname, rel->schema, rel->name, r->keyed, &claim, err)) || !claim)
    return rc;
  char source[400];
  od_owner_source_name(source, sizeof source, rel->schema, rel->name);
  if (!o.exists && o.known)
    od_info("postgres sink %s: table %s: creating it again (it was dropped; %s)", s->where, r->target,
            s->fresh ? "the pipeline starts over" : "odsync snapshot re-copies it");
  return put_owner(s, r->tschema, r->tname, source, false, err);
}

int pgs_check_tables(od_sink *base, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                     void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (s->mesh) return 0; /* see pgs_owner_claim */
  char **ts = calloc((size_t)(n ? n : 1), sizeof *ts), **tn = calloc((size_t)(n ? n : 1), sizeof *tn);
  int fatal = 0, rc = OD_OK;
  if (!ts || !tn) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  char msg[OD_ERROR_MSG_MAX + 1600];
  for (int i = 0; i < n && rc == OD_OK; i++) {
    char sbuf[256];
    const char *sch, *tab;
    pgs_target_of(s, schemas[i], names[i], &sch, &tab, sbuf, sizeof sbuf);
    ts[i] = strdup(sch);
    tn[i] = strdup(tab);
    if (!ts[i] || !tn[i]) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      break;
    }
    bool dup = false;
    for (int k = 0; k < i && !dup; k++) {
      if (strcmp(ts[k], ts[i]) != 0 || strcmp(tn[k], tn[i]) != 0) continue;
      dup = true;
      char a[400], b2[400];
      od_owner_source_name(a, sizeof a, schemas[k], names[k]);
      od_owner_source_name(b2, sizeof b2, schemas[i], names[i]);
      snprintf(msg, sizeof msg,
               "postgres sink %s: source tables %.300s and %.300s would both be written to table %.150s.%.150s "
               "(sink.schema puts every table in one schema; table_map may name one target twice): their rows "
               "would mix. " FIX_PG,
               s->where, a, b2, ts[i], tn[i]);
      problem(ctx, true, msg);
      fatal++;
    }
    if (dup) continue;
    char *target = NULL, *qname = NULL;
    if ((rc = names_of(s, ts[i], tn[i], &target, &qname, err))) break;
    owner o;
    od_error e;
    od_error_clear(&e);
    bool claim;
    int jr = get_owner(s, qname, ts[i], tn[i], &o, &e);
    if (!jr) jr = judge(s, &o, target, ts[i], tn[i], schemas[i], names[i], keyed[i], &claim, &e);
    free(target);
    free(qname);
    if (jr == OD_ESCHEMA) {
      problem(ctx, true, e.msg);
      fatal++;
    } else if (jr) {
      *err = e;
      rc = jr;
    }
  }
  for (int i = 0; i < n && ts && tn; i++) {
    free(ts[i]);
    free(tn[i]);
  }
  free(ts);
  free(tn);
  return rc ? rc : fatal;
}

int pgs_resnapshot_table(od_sink *base, const char *schema, const char *name, bool *recreate, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  *recreate = false;
  char sbuf[256], source[400], sink[260];
  const char *sch, *tab;
  pgs_target_of(s, schema, name, &sch, &tab, sbuf, sizeof sbuf);
  od_owner_source_name(source, sizeof source, schema, name);
  snprintf(sink, sizeof sink, "postgres sink %s", s->where);
  char *target = NULL, *qname = NULL;
  int rc = names_of(s, sch, tab, &target, &qname, err);
  if (rc) return rc;
  owner o;
  PGresult *r = pgs_exec(s, target, "BEGIN", "BEGIN", 0, NULL, err);
  if (!r) rc = err->code;
  PQclear(r);
  if (!rc && (r = pgs_exec(s, target, "taking the DDL lock", PGS_DDL_LOCK, 0, NULL, err))) PQclear(r);
  else if (!rc) rc = err->code;
  if (!rc) rc = get_owner(s, qname, sch, tab, &o, err);
  if (!rc && o.found && (strcmp(o.pipeline, s->pipeline) != 0 || strcmp(o.source, source) != 0))
    rc = od_owner_fail_taken(err, sink, target, o.pipeline, o.source, s->pipeline, source, FIX_PG);
  if (!rc && !o.exists && o.known && !(rc = put_owner(s, sch, tab, source, true, err))) *recreate = true;
  if (!rc && (r = pgs_exec(s, target, "COMMIT", "COMMIT", 0, NULL, err))) PQclear(r);
  else if (!rc) rc = err->code;
  if (rc) PQclear(PQexec(s->conn, "ROLLBACK"));
  free(target);
  free(qname);
  return rc;
}
