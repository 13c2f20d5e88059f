/* sinks/postgres_schema.c — makes an existing PostgreSQL target table fit a new relation version.
 *
 * Owns: the rows of the table _odsync_columns (in the checkpoint table's schema; one row per
 * column of every target table: its source attnum, type and the schema version it was written
 * under), written in the same sink transaction as the DDL and the data, so they always describe
 * the table as committed. With them a source column is matched to a target column by attnum (by
 * name when either side does not know the attnum), and, under the DDL advisory lock:
 *   target column no longer sent, attnums known -> ALTER TABLE DROP COLUMN (OD_ESCHEMA when it is
 *                                                 part of the target's primary key)
 *   same attnum, new name                       -> RENAME COLUMN (via a temporary name when names
 *                                                 are swapped)
 *   same attnum, new type                       -> ALTER COLUMN TYPE when it widens safely (int2 ->
 *                                                 int4 -> int8, varchar(n) -> longer/text, numeric
 *                                                 precision up with the same scale, time/timestamp
 *                                                 precision up); any other change: OD_ESCHEMA,
 *                                                 before anything is altered
 *   new attnum                                  -> ADD COLUMN, with the source's missing value
 *                                                 (od_column.missing_value) as DEFAULT, then DROP
 *                                                 DEFAULT: rows already there hold that value
 *   a different key (table known to odsync)     -> OD_ESCHEMA
 * A first catalog look takes no lock; only when something differs is the lock taken, the table
 * read again (another writer may have done the work meanwhile: then nothing is left to do) and
 * the change applied. (Statements of older versions of the table on this connection are
 * deallocated by postgres_table.c, pgs_rels_forget_table.)
 * Never touches: statement text, the pipeline, COMMIT, the checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "common/schema_plan.h"
#include "core/log.h"
#include "sinks/postgres_internal.h"

/* Built-in type OIDs used by the widening rules. */
enum {
  T_INT2 = OD_PGT_INT2, T_INT4 = OD_PGT_INT4, T_INT8 = OD_PGT_INT8, T_TEXT = OD_PGT_TEXT, T_VARCHAR = OD_PGT_VARCHAR,
  T_NUMERIC = OD_PGT_NUMERIC,
  T_TIME = OD_PGT_TIME, T_TIMETZ = OD_PGT_TIMETZ, T_TIMESTAMP = OD_PGT_TIMESTAMP, T_TIMESTAMPTZ = OD_PGT_TIMESTAMPTZ,
  T_INTERVAL = OD_PGT_INTERVAL, T_VARBIT = OD_PGT_VARBIT
};
#define FIRST_USER_OID 16384u

typedef struct tcol {
  char *name;
  uint32_t ttype;    /* the target column's type */
  int32_t ttypmod;
  bool pk;           /* in the target's primary key */
  bool meta;         /* has an _odsync_columns row */
  int attnum;        /* from the row: the source's attnum (0 unknown) */
  uint32_t type_oid; /* from the row: the source's type the column was written with */
  int32_t typmod;
  char type_name[128];
  int rel_col;       /* matching relation column, -1 none */
} tcol;

typedef struct tstate {
  bool exists;
  tcol *t;
  int n;
} tstate;

static void tstate_free(tstate *ts) {
  for (int i = 0; ts->t && i < ts->n; i++) free(ts->t[i].name);
  free(ts->t);
  memset(ts, 0, sizeof *ts);
}

static int oom(pgs_sink *s, const pg_rel *r, od_error *err) {
  return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: table %s: out of memory", s->where, r->target);
}

static int exec_sql(pgs_sink *s, const pg_rel *r, const char *what, od_error *err) {
  if (s->sql.oom) return oom(s, r, err);
  PGresult *res = pgs_exec(s, r->target, what, s->sql.p, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  return OD_OK;
}

/* The target's columns with their _odsync_columns rows; exists = false when there is no table. */
static int read_table(pgs_sink *s, const pg_rel *r, tstate *ts, od_error *err) {
  tstate_free(ts);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT a.attname, a.atttypid, a.atttypmod, coalesce(a.attnum = ANY (i.indkey), false), "
                 "m.attnum IS NOT NULL, coalesce(m.attnum, 0), coalesce(m.type_oid, 0), coalesce(m.typmod, -1), "
                 "coalesce(m.type_name, ''), c.oid IS NOT NULL "
                 "FROM (SELECT to_regclass($1) AS oid) c "
                 "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                 "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary LEFT JOIN ");
  od_sqlbuf_add(b, s->cols_q);
  od_sqlbuf_add(b, " m ON m.tbl_schema = $2 AND m.tbl_name = $3 AND m.name = a.attname ORDER BY a.attnum");
  if (b->oom) return oom(s, r, err);
  const char *p[] = {r->qtarget, r->tschema, r->tname};
  PGresult *res = pgs_exec(s, r->target, "reading the table's columns", b->p, 3, p, err);
  if (!res) return err->code;
  int rows = PQntuples(res);
  ts->exists = rows > 0 && strcmp(PQgetvalue(res, 0, 9), "t") == 0;
  if (ts->exists && !(ts->t = calloc((size_t)rows, sizeof *ts->t))) {
    PQclear(res);
    return oom(s, r, err);
  }
  for (int k = 0; ts->exists && k < rows; k++) {
    if (PQgetisnull(res, k, 0)) continue; /* a table without columns */
    tcol *c = &ts->t[ts->n];
    if (!(c->name = strdup(PQgetvalue(res, k, 0)))) {
      PQclear(res);
      return oom(s, r, err);
    }
    ts->n++;
    c->ttype = (uint32_t)strtoul(PQgetvalue(res, k, 1), NULL, 10);
    c->ttypmod = (int32_t)strtol(PQgetvalue(res, k, 2), NULL, 10);
    c->pk = strcmp(PQgetvalue(res, k, 3), "t") == 0;
    c->meta = strcmp(PQgetvalue(res, k, 4), "t") == 0;
    c->attnum = (int)strtol(PQgetvalue(res, k, 5), NULL, 10);
    c->type_oid = (uint32_t)strtoul(PQgetvalue(res, k, 6), NULL, 10);
    c->typmod = (int32_t)strtol(PQgetvalue(res, k, 7), NULL, 10);
    snprintf(c->type_name, sizeof c->type_name, "%s", PQgetvalue(res, k, 8));
    c->rel_col = -1;
  }
  PQclear(res);
  return OD_OK;
}

/* Which target column each relation column is (common/schema_plan.h); fills t[k].rel_col and, when
 * `plan` is not NULL, the steps that make the table fit. OD_OK or OD_ENOMEM. */
static int match_plan(const od_relation *rel, tcol *t, int n, od_schema_plan *plan) {
  od_schema_plan local;
  od_plan_col *pc = calloc((size_t)(n ? n : 1), sizeof *pc);
  if (!pc) return OD_ENOMEM;
  for (int k = 0; k < n; k++) pc[k] = (od_plan_col){.name = t[k].name, .attnum = t[k].attnum, .meta = t[k].meta};
  int rc = od_schema_plan_make(rel, pc, n, false, plan ? plan : &local);
  free(pc);
  if (rc) return rc;
  for (int k = 0; k < n; k++) t[k].rel_col = (plan ? plan : &local)->match[k];
  if (!plan) od_schema_plan_free(&local);
  return OD_OK;
}

static bool mod_widens(int32_t om, int32_t nm) { return nm < 0 || (om >= 0 && nm >= om); }

static bool is_int(uint32_t o) { return o == T_INT2 || o == T_INT4 || o == T_INT8; }
static int int_size(uint32_t o) { return o == T_INT2 ? 2 : o == T_INT4 ? 4 : 8; }

/* Does every value of type (oo, om) keep its value and text form as (no, nm)? */
bool pgs_type_widens(uint32_t oo, int32_t om, uint32_t no, int32_t nm) {
  if (oo == no && om == nm) return true;
  if (pgs_type_as_text(oo) && pgs_type_as_text(no)) return true; /* both stored as text */
  if (is_int(oo) || is_int(no)) return is_int(oo) && is_int(no) && int_size(no) >= int_size(oo);
  if (oo == T_VARCHAR && no == T_TEXT) return true;
  if (oo == T_VARCHAR && no == T_VARCHAR) return mod_widens(om, nm);
  if (oo == T_TEXT && no == T_VARCHAR) return nm < 0;
  if (oo != no) return false;
  switch (oo) {
    case T_NUMERIC: /* typmod = (precision << 16 | scale) + 4: the scale decides the text form */
      if (nm < 0) return true;
      return om >= 0 && ((om - 4) & 0xffff) == ((nm - 4) & 0xffff) && nm >= om;
    case T_TIME: case T_TIMETZ: case T_TIMESTAMP: case T_TIMESTAMPTZ: case T_VARBIT:
      return mod_widens(om, nm);
    case T_INTERVAL: /* typmod also holds the field range: only to unconstrained */
      return nm < 0;
    default:
      return false;
  }
}

/* What must be done; filled by plan(). */
typedef struct todo {
  int drops, renames, retypes, adds, meta;
  od_schema_plan steps; /* drops, renames, adds (common/schema_plan.h) */
} todo;

/* The SQL spelling of a type: format_type() on the target for built-in types (their OIDs are the
 * same on every server, and the name the source read from its catalog may be newer or older than
 * the change), else the source's name. */
static int type_sql(pgs_sink *s, const pg_rel *r, uint32_t oid, int32_t typmod, const char *name, char *buf,
                    size_t size, od_error *err) {
  if (oid && oid < FIRST_USER_OID) {
    char o[16], m[16];
    snprintf(o, sizeof o, "%u", oid);
    snprintf(m, sizeof m, "%d", typmod);
    const char *p[] = {o, m};
    PGresult *res = pgs_exec(s, r->target, "naming a column type", "SELECT format_type($1::oid, $2::int)", 2, p, err);
    if (!res) return err->code;
    bool ok = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    if (ok) snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (ok) return OD_OK;
  }
  if (name && name[0]) snprintf(buf, size, "%s", name);
  else snprintf(buf, size, "type oid %u", oid);
  return OD_OK;
}

/* Compare relation and table; fail (OD_ESCHEMA) on what cannot be applied. Changes nothing. */
static int plan(pgs_sink *s, const pg_rel *r, const tstate *ts, todo *td, od_error *err) {
  const od_relation *rel = r->rel;
  tcol *t = ts->t;
  int n = ts->n;
  od_schema_plan_free(&td->steps);
  memset(td, 0, sizeof *td);
  if (match_plan(rel, t, n, &td->steps)) return oom(s, r, err);
  bool known = false;
  for (int k = 0; k < n; k++) known = known || t[k].meta;
  char from[160], to[160];
  for (int k = 0; k < n; k++) {
    if (t[k].rel_col < 0) {
      if (!td->steps.drop[k]) continue; /* not known to odsync: keep it */
      if (t[k].pk)
        return OD_FAIL(err, OD_ESCHEMA, "postgres sink %s: table %s: column %s was dropped on the source but is part "
                       "of the target table's primary key; nothing was changed. Re-create the table (drop it on "
                       "the target and re-snapshot), or run with schema_changes: ignore", s->where, r->target,
                       t[k].name);
      td->drops++;
      continue;
    }
    const od_column *c = &rel->columns[t[k].rel_col];
    if (strcmp(t[k].name, c->name) != 0) td->renames++;
    if (!t[k].meta || (c->attnum && t[k].attnum != c->attnum)) td->meta++;
    if (!t[k].meta || !t[k].type_oid || (t[k].type_oid == c->type_oid && t[k].typmod == c->typmod)) continue;
    td->meta++;
    if (!pgs_type_widens(t[k].type_oid, t[k].typmod, c->type_oid, c->typmod)) {
      int rc = type_sql(s, r, t[k].type_oid, t[k].typmod, t[k].type_name, from, sizeof from, err);
      if (!rc) rc = type_sql(s, r, c->type_oid, c->typmod, c->type_name, to, sizeof to, err);
      if (rc) return rc;
      return OD_FAIL(err, OD_ESCHEMA, "postgres sink %s: table %s: column %s changed from %s to %s on the source; "
                     "the sink applies only safe widenings (int2->int4->int8, varchar(n)->longer/text, numeric "
                     "precision up with the same scale, time/timestamp precision up), so nothing of this "
                     "transaction was written and the target table is unchanged. Re-create the table from a "
                     "snapshot, or run with schema_changes: ignore", s->where, r->target, c->name, from, to);
    }
    /* Alter only a target column that still has the old source type (not one the user chose). */
    if (!pgs_type_as_text(c->type_oid) && t[k].ttype == t[k].type_oid && t[k].ttypmod == t[k].typmod) td->retypes++;
  }
  for (int i = 0; i < rel->ncolumns; i++) {
    bool have = false;
    for (int k = 0; k < n; k++) have = have || t[k].rel_col == i;
    if (!have) td->adds++, td->meta++;
  }
  /* The key, for tables odsync knows (other keys of user-made tables are the user's business). */
  /* A key dropped at the source (the relation has none now) is a key change too: the target's
   * primary key would reject rows the source now allows, and keyless matching would ignore it. */
  if (known) {
    int tk = 0;
    bool same = true;
    for (int k = 0; k < n; k++) {
      if (!t[k].pk) continue;
      tk++;
      same = same && r->keyed && t[k].rel_col >= 0 && rel->columns[t[k].rel_col].key;
    }
    if (tk && (!same || tk != (r->keyed ? r->nkey : 0))) {
      char from[256], to[256];
      size_t a = (size_t)snprintf(from, sizeof from, "(");
      for (int k = 0, first = 1; k < n && a < sizeof from; k++)
        if (t[k].pk) a += (size_t)snprintf(from + a, sizeof from - a, "%s%s", first ? "" : ", ", t[k].name), first = 0;
      if (a < sizeof from) snprintf(from + a, sizeof from - a, ")");
      size_t b = (size_t)snprintf(to, sizeof to, "(");
      for (int i = 0, first = 1; i < rel->ncolumns && b < sizeof to; i++)
        if (r->keyed && rel->columns[i].key)
          b += (size_t)snprintf(to + b, sizeof to - b, "%s%s", first ? "" : ", ", rel->columns[i].name), first = 0;
      if (b < sizeof to) snprintf(to + b, sizeof to - b, ")");
      return OD_FAIL(err, OD_ESCHEMA, "postgres sink %s: table %s: the source's row key changed from %s to %s, and "
                     "the target table's primary key is %s; nothing was changed. Re-create the table from a "
                     "snapshot", s->where, r->target, from, to, from);
    }
  }
  return OD_OK;
}

static int rename_col(pgs_sink *s, const pg_rel *r, const char *from, const char *to, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " RENAME COLUMN ");
  od_sqlbuf_ident(b, from);
  od_sqlbuf_add(b, " TO ");
  od_sqlbuf_ident(b, to);
  char what[300];
  snprintf(what, sizeof what, "renaming column %.120s to %.120s", from, to);
  return exec_sql(s, r, what, err);
}

static int set_name(pgs_sink *s, const pg_rel *r, tcol *c, const char *name, od_error *err) {
  char *p = strdup(name);
  if (!p) return oom(s, r, err);
  free(c->name);
  c->name = p;
  return OD_OK;
}


/* ADD COLUMN; rows already there get the source's missing value through a DEFAULT that is
 * dropped again at once (a constant default fills them without rewriting the table). */
static int add_col(pgs_sink *s, const pg_rel *r, int i, od_error *err) {
  const od_column *c = &r->rel->columns[i];
  char type[160] = "text"; /* user-defined types may not exist on the target (pgs_type_as_text) */
  int rc = pgs_type_as_text(c->type_oid) ? OD_OK
                                         : type_sql(s, r, c->type_oid, c->typmod, c->type_name, type, sizeof type, err);
  if (rc) return rc;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " ADD COLUMN ");
  od_sqlbuf_ident(b, c->name);
  od_sqlbuf_add(b, " ");
  od_sqlbuf_add(b, type);
  if (c->missing_value) {
    char *lit = PQescapeLiteral(s->conn, c->missing_value, strlen(c->missing_value));
    if (!lit) return pgs_fail(s, r->target, "quoting a default value", NULL, err);
    od_sqlbuf_add(b, " DEFAULT ");
    od_sqlbuf_add(b, lit);
    PQfreemem(lit);
  }
  char what[200];
  snprintf(what, sizeof what, "adding column %.150s", c->name);
  if ((rc = exec_sql(s, r, what, err))) return rc;
  if (c->missing_value) {
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "ALTER TABLE ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " ALTER COLUMN ");
    od_sqlbuf_ident(b, c->name);
    od_sqlbuf_add(b, " DROP DEFAULT");
    if ((rc = exec_sql(s, r, what, err))) return rc;
    od_info("postgres sink %s: table %s: column %s added; existing rows hold '%.40s%s' (the source's default)",
            s->where, r->target, c->name, c->missing_value, strlen(c->missing_value) > 40 ? "..." : "");
  } else {
    od_info("postgres sink %s: table %s: column %s added", s->where, r->target, c->name);
  }
  return OD_OK;
}

int pgs_clear_columns(pgs_sink *s, const pg_rel *r, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "DELETE FROM ");
  od_sqlbuf_add(b, s->cols_q);
  od_sqlbuf_add(b, " WHERE tbl_schema = $1 AND tbl_name = $2");
  if (b->oom) return oom(s, r, err);
  const char *p[] = {r->tschema, r->tname};
  PGresult *res = pgs_exec(s, r->target, "writing _odsync_columns", b->p, 2, p, err);
  if (!res) return err->code;
  PQclear(res);
  return OD_OK;
}

int pgs_write_columns(pgs_sink *s, const pg_rel *r, od_error *err) {
  tstate ts = {0};
  int rc = read_table(s, r, &ts, err);
  if (rc) return rc;
  if (match_plan(r->rel, ts.t, ts.n, NULL)) {
    tstate_free(&ts);
    return oom(s, r, err);
  }
  if ((rc = pgs_clear_columns(s, r, err))) {
    tstate_free(&ts);
    return rc;
  }
  od_sqlbuf *b = &s->sql;
  const char *p[8] = {r->tschema, r->tname};
  PGresult *res;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, s->cols_q);
  od_sqlbuf_add(b, " (tbl_schema, tbl_name, name, attnum, type_oid, typmod, type_name, version) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
  char *sql = b->oom ? NULL : strdup(b->p);
  if (!sql) {
    tstate_free(&ts);
    return oom(s, r, err);
  }
  for (int i = 0; i < r->rel->ncolumns && rc == OD_OK; i++) {
    const od_column *c = &r->rel->columns[i];
    int attnum = c->attnum;
    for (int k = 0; !attnum && k < ts.n; k++) /* keep a known attnum the relation does not carry */
      if (ts.t[k].rel_col == i && ts.t[k].meta) attnum = ts.t[k].attnum;
    char a[16], o[16], m[16], v[24];
    snprintf(a, sizeof a, "%d", attnum);
    snprintf(o, sizeof o, "%u", c->type_oid);
    snprintf(m, sizeof m, "%d", c->typmod);
    snprintf(v, sizeof v, "%u", r->rel->version);
    p[2] = c->name;
    p[3] = a;
    p[4] = o;
    p[5] = m;
    p[6] = c->type_name;
    p[7] = v;
    res = pgs_exec(s, r->target, "writing _odsync_columns", sql, 8, p, err);
    if (!res) rc = err->code;
    PQclear(res);
  }
  free(sql);
  tstate_free(&ts);
  return rc;
}

static int take_lock(pgs_sink *s, const pg_rel *r, od_error *err) {
  PGresult *res = pgs_exec(s, r->target, "taking the DDL lock", PGS_DDL_LOCK, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  return OD_OK;
}

int pgs_evolve_table(pgs_sink *s, pg_rel *r, bool locked, bool *exists, od_error *err) {
  tstate ts = {0};
  todo td = {0};
  int rc = read_table(s, r, &ts, err);
  if (rc == OD_OK) *exists = ts.exists;
  if (rc || !ts.exists) goto done;
  if ((rc = plan(s, r, &ts, &td, err))) goto done;
  if (!(td.drops || td.renames || td.retypes || td.adds || td.meta)) goto done;
  if (!locked) {
    /* Someone else (another writer of this pipeline) may be doing the same: serialize, then look
     * again. The lock is held until this sink transaction ends; writers never wait for each other
     * while holding it (helpers commit on their own, the carrier starts after them). */
    if ((rc = take_lock(s, r, err)) || (rc = read_table(s, r, &ts, err))) goto done;
    *exists = ts.exists;
    if (!ts.exists || (rc = plan(s, r, &ts, &td, err))) goto done;
    if (!(td.drops || td.renames || td.retypes || td.adds || td.meta)) goto done;
  }
  const od_relation *rel = r->rel;
  tcol *t = ts.t;
  od_sqlbuf *b = &s->sql;
  char what[200];
  /* 1. Drops and 2. renames, as planned (common/schema_plan.h). */
  int first_add = td.steps.nsteps;
  for (int i = 0; i < td.steps.nsteps && rc == OD_OK; i++) {
    const od_plan_step *st = &td.steps.steps[i];
    if (st->kind == OD_PLAN_ADD) {
      first_add = i;
      break;
    }
    tcol *c = &t[st->tcol];
    if (st->kind == OD_PLAN_DROP) {
      od_sqlbuf_reset(b);
      od_sqlbuf_add(b, "ALTER TABLE ");
      od_sqlbuf_add(b, r->qtarget);
      od_sqlbuf_add(b, " DROP COLUMN ");
      od_sqlbuf_ident(b, c->name);
      snprintf(what, sizeof what, "dropping column %.150s", c->name);
      if ((rc = exec_sql(s, r, what, err)) == OD_OK)
        od_info("postgres sink %s: table %s: column %s dropped", s->where, r->target, c->name);
      c->name[0] = '\0'; /* gone */
      continue;
    }
    if ((rc = rename_col(s, r, st->from, st->to, err))) break;
    if (st->rcol >= 0) od_info("postgres sink %s: table %s: column %s renamed to %s", s->where, r->target, st->from, st->to);
    rc = set_name(s, r, c, st->to, err);
  }
  /* 3. Safe widenings, on target columns that still have the old source type. */
  for (int k = 0; k < ts.n && rc == OD_OK; k++) {
    if (t[k].rel_col < 0 || !t[k].meta || !t[k].type_oid) continue;
    const od_column *c = &rel->columns[t[k].rel_col];
    if ((t[k].type_oid == c->type_oid && t[k].typmod == c->typmod) || pgs_type_as_text(c->type_oid) ||
        t[k].ttype != t[k].type_oid || t[k].ttypmod != t[k].typmod)
      continue;
    char from[160], to[160];
    if ((rc = type_sql(s, r, t[k].type_oid, t[k].typmod, t[k].type_name, from, sizeof from, err)) ||
        (rc = type_sql(s, r, c->type_oid, c->typmod, c->type_name, to, sizeof to, err)))
      break;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "ALTER TABLE ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " ALTER COLUMN ");
    od_sqlbuf_ident(b, c->name);
    od_sqlbuf_add(b, " TYPE ");
    od_sqlbuf_add(b, to);
    snprintf(what, sizeof what, "changing the type of column %.150s", c->name);
    if ((rc = exec_sql(s, r, what, err)) == OD_OK)
      od_info("postgres sink %s: table %s: column %s changed from %s to %s", s->where, r->target, c->name, from, to);
  }
  /* 4. Adds. */
  for (int i = first_add; i < td.steps.nsteps && rc == OD_OK; i++)
    if (td.steps.steps[i].kind == OD_PLAN_ADD) rc = add_col(s, r, td.steps.steps[i].rcol, err);
  /* 5. What odsync knows about the table now. */
  if (rc == OD_OK) rc = pgs_write_columns(s, r, err);
done:
  od_schema_plan_free(&td.steps);
  tstate_free(&ts);
  return rc;
}
