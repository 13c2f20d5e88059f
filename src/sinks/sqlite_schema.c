/* sinks/sqlite_schema.c — makes an existing SQLite table fit a new relation version.
 *
 * Owns: the table _odsync_columns (one row per column of every target table: its source attnum,
 * type and the schema version it was written under), written in the same sink transaction as the
 * DDL and the data, so it always describes the table as committed. With it, a source column is
 * matched to a table column by attnum (by name when either side does not know the attnum), and:
 *   table column no longer sent, attnums known  -> ALTER TABLE DROP COLUMN (not when it is part of
 *                                                  the primary key or an index: OD_ESCHEMA)
 *   same attnum, new name                        -> ALTER TABLE RENAME COLUMN (via a temporary name
 *                                                  when names are swapped)
 *   same attnum, new type                        -> nothing when existing values keep their text
 *                                                  form and storage class (int2/4/8, varchar(n) ->
 *                                                  longer/text, numeric precision up with the same
 *                                                  scale, timestamp precision up); else OD_ESCHEMA
 *   new attnum                                   -> ALTER TABLE ADD COLUMN, then the source's
 *                                                  missing value (od_column.missing_value) into the
 *                                                  rows that are already there
 *   a different key                              -> OD_ESCHEMA (SQLite cannot change a primary key)
 *   float column declared REAL (a table created  -> kept as it is (SQ_REAL_AFF: -0 is stored as 0.0
 *   before floats were created without a type)      there; new float columns get no declared type)
 * Never touches: statements of relation versions (sqlite_table.c), transactions, the checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/schema_plan.h"
#include "core/log.h"
#include "sinks/sqlite_internal.h"

typedef struct tcol {
  char *name;
  char decl[32];
  bool pk;
  bool meta; /* has a _odsync_columns row */
  int attnum;
  uint32_t type_oid;
  int32_t typmod;
  char type_name[128];
  int rel_col; /* matching relation column, -1 none */
} tcol;

static void tcols_free(tcol *t, int n) {
  for (int i = 0; t && i < n; i++) free(t[i].name);
  free(t);
}

static int step_all(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const char *what, od_error *err) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sq_fail(s, r->target, what, rc, err);
  return OD_OK;
}

/* The table's columns (pragma_table_info) with their _odsync_columns rows. */
static int read_table(sq_sink *s, sq_rel *r, tcol **out, int *nout, od_error *err) {
  sqlite3_stmt *st = NULL;
  tcol *t = NULL;
  int n = 0, cap = 0, rc;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_add(&s->sql, "SELECT name, upper(type), pk FROM pragma_table_info(?1) ORDER BY cid");
  if ((rc = sq_prepare_sql(s, r, "reading table_info", &st, err))) return rc;
  sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      tcol *p = realloc(t, (size_t)cap * sizeof *p);
      if (!p) goto oom;
      t = p;
    }
    tcol *c = &t[n];
    memset(c, 0, sizeof *c);
    c->rel_col = -1;
    if (!(c->name = strdup((const char *)sqlite3_column_text(st, 0)))) goto oom;
    n++;
    snprintf(c->decl, sizeof c->decl, "%s", (const char *)sqlite3_column_text(st, 1));
    c->pk = sqlite3_column_int(st, 2) > 0;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc != SQLITE_DONE) {
    tcols_free(t, n);
    return sq_fail(s, r->target, "reading table_info", rc, err);
  }
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_add(&s->sql, "SELECT name, attnum, type_oid, typmod, type_name FROM _odsync_columns WHERE tbl = ?1");
  if ((rc = sq_prepare_sql(s, r, "reading _odsync_columns", &st, err))) {
    tcols_free(t, n);
    return rc;
  }
  sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    for (int i = 0; name && i < n; i++) {
      if (sqlite3_stricmp(t[i].name, name) != 0) continue;
      t[i].meta = true;
      t[i].attnum = sqlite3_column_int(st, 1);
      t[i].type_oid = (uint32_t)sqlite3_column_int64(st, 2);
      t[i].typmod = sqlite3_column_int(st, 3);
      snprintf(t[i].type_name, sizeof t[i].type_name, "%s", (const char *)sqlite3_column_text(st, 4));
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    tcols_free(t, n);
    return sq_fail(s, r->target, "reading _odsync_columns", rc, err);
  }
  *out = t;
  *nout = n;
  return OD_OK;
oom:
  sqlite3_finalize(st);
  tcols_free(t, n);
  return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: out of memory", s->path, r->target);
}

static void type_text(uint32_t oid, const char *name, char *buf, size_t size) {
  if (name && name[0]) snprintf(buf, size, "%s", name);
  else snprintf(buf, size, "type oid %u", oid);
}

/* The column is in an index other than the primary key: its name, else NULL (into buf). */
static const char *index_of(sq_sink *s, sq_rel *r, const char *col, char *buf, size_t size) {
  sqlite3_stmt *st;
  const char *sql = "SELECT il.name FROM pragma_index_list(?1) il, pragma_index_info(il.name) ii "
                    "WHERE il.origin <> 'pk' AND ii.name = ?2 COLLATE NOCASE LIMIT 1";
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
  sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
  const char *found = NULL;
  if (sqlite3_step(st) == SQLITE_ROW) {
    snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    found = buf;
  }
  sqlite3_finalize(st);
  return found;
}

static int alter(sq_sink *s, sq_rel *r, const char *what, od_error *err) {
  return sq_exec_sql(s, r, what, err);
}

static int rename_col(sq_sink *s, sq_rel *r, const char *from, const char *to, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " RENAME COLUMN ");
  od_sqlbuf_ident(b, from);
  od_sqlbuf_add(b, " TO ");
  od_sqlbuf_ident(b, to);
  char what[300];
  snprintf(what, sizeof what, "renaming column %s to %s", from, to);
  return alter(s, r, what, err);
}

/* ADD COLUMN, then the value rows that predate the column hold on the source. */
static int add_col(sq_sink *s, sq_rel *r, int i, od_error *err) {
  const od_column *c = &r->rel->columns[i];
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " ADD COLUMN ");
  od_sqlbuf_ident(b, c->name);
  od_sqlbuf_addf(b, " %s", sq_class_decl(r->cls[i]));
  char what[300];
  snprintf(what, sizeof what, "adding column %s", c->name);
  int rc = alter(s, r, what, err);
  if (rc || !c->missing_value) return rc;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " SET ");
  od_sqlbuf_ident(b, c->name);
  od_sqlbuf_add(b, " = ?1");
  sqlite3_stmt *st;
  snprintf(what, sizeof what, "filling added column %s with its default", c->name);
  if ((rc = sq_prepare_sql(s, r, what, &st, err))) return rc;
  od_value *vals = calloc(r->rel->ncolumns, sizeof *vals);
  if (!vals) {
    sqlite3_finalize(st);
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: table %s: out of memory", s->path, r->target);
  }
  for (int k = 0; k < r->rel->ncolumns; k++) vals[k].kind = OD_VALUE_NULL;
  vals[i] = (od_value){.data = c->missing_value, .len = (uint32_t)strlen(c->missing_value), .kind = OD_VALUE_TEXT};
  od_tuple t = {.ncolumns = r->rel->ncolumns, .values = vals};
  uint16_t plan[1] = {(uint16_t)i};
  rc = sq_bind(s, r, st, plan, 1, &t, &t, err);
  if (rc == OD_OK) rc = step_all(s, r, st, what, err);
  if (rc == OD_OK)
    od_info("sqlite sink %s: table %s: column %s added; %d existing rows set to '%.40s%s' (the source's default)",
            s->path, r->target, c->name, sqlite3_changes(s->db), c->missing_value,
            strlen(c->missing_value) > 40 ? "..." : "");
  sqlite3_finalize(st);
  free(vals);
  return rc;
}

static int write_meta(sq_sink *s, sq_rel *r, const tcol *t, int n, od_error *err) {
  sqlite3_stmt *st;
  int rc;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_add(&s->sql, "DELETE FROM _odsync_columns WHERE tbl = ?1");
  if ((rc = sq_prepare_sql(s, r, "writing _odsync_columns", &st, err))) return rc;
  sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
  rc = step_all(s, r, st, "writing _odsync_columns", err);
  sqlite3_finalize(st);
  if (rc) return rc;
  od_sqlbuf_reset(&s->sql);
  od_sqlbuf_add(&s->sql, "INSERT INTO _odsync_columns(tbl, name, attnum, type_oid, typmod, type_name, version) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if ((rc = sq_prepare_sql(s, r, "writing _odsync_columns", &st, err))) return rc;
  for (int i = 0; i < r->rel->ncolumns && rc == OD_OK; i++) {
    const od_column *c = &r->rel->columns[i];
    int attnum = c->attnum;
    for (int k = 0; !attnum && k < n; k++) /* keep a known attnum the relation does not carry */
      if (t[k].rel_col == i && t[k].meta) attnum = t[k].attnum;
    sqlite3_bind_text(st, 1, r->target, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, attnum);
    sqlite3_bind_int64(st, 4, c->type_oid);
    sqlite3_bind_int(st, 5, c->typmod);
    sqlite3_bind_text(st, 6, c->type_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r->rel->version);
    rc = step_all(s, r, st, "writing _odsync_columns", err);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  return rc;
}

/* Key of the table (pk columns, by their relation column) equals the relation's key? */
static bool same_key(const sq_rel *r, const tcol *t, int n) {
  int tk = 0;
  for (int k = 0; k < n; k++) {
    if (!t[k].pk) continue;
    tk++;
    if (t[k].rel_col < 0 || !r->keyed || !r->rel->columns[t[k].rel_col].key) return false;
  }
  return tk == (r->keyed ? r->nkey : 0);
}

static void key_text(char *buf, size_t size, const tcol *t, int n) {
  size_t used = (size_t)snprintf(buf, size, "(");
  for (int k = 0, first = 1; k < n && used < size; k++)
    if (t[k].pk) {
      used += (size_t)snprintf(buf + used, size - used, "%s%s", first ? "" : ", ", t[k].name);
      first = 0;
    }
  if (used < size) snprintf(buf + used, size - used, ")");
}

int sq_evolve_table(sq_sink *s, sq_rel *r, od_error *err) {
  const od_relation *rel = r->rel;
  tcol *t = NULL;
  int n = 0;
  int rc = read_table(s, r, &t, &n, err);
  if (rc) return rc;
  /* Which steps (common/schema_plan.h); this file only checks what SQLite cannot do and writes SQL. */
  od_plan_col *pc = calloc((size_t)(n ? n : 1), sizeof *pc);
  od_schema_plan plan;
  if (!pc) {
    tcols_free(t, n);
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  }
  for (int k = 0; k < n; k++) pc[k] = (od_plan_col){.name = t[k].name, .attnum = t[k].attnum, .meta = t[k].meta};
  rc = od_schema_plan_make(rel, pc, n, true, &plan);
  free(pc);
  if (rc) {
    tcols_free(t, n);
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  }
  for (int k = 0; k < n; k++) t[k].rel_col = plan.match[k];
  char from[160], to[160], idx[128];

  /* 0. Float columns of tables created by older versions are declared REAL: keep them (their
   *    affinity stores -0 as 0.0, the mapping of that time); docs/TYPES.md says how to upgrade. */
  int nlegacy = 0;
  for (int k = 0; k < n; k++) {
    int i = t[k].rel_col;
    if (i < 0 || r->cls[i] != SQ_REAL || sqlite3_stricmp(t[k].decl, "REAL") != 0) continue;
    r->cls[i] = SQ_REAL_AFF;
    if (nlegacy++ == 0)
      od_info("sqlite sink %s: table %s: float column %s is declared REAL (created by an older odsync): it stores "
              "-0 as 0.0; re-create the table to keep -0 (docs/TYPES.md)", s->path, r->target, t[k].name);
  }

  /* 1. Check everything before changing anything. */
  for (int k = 0; k < n && rc == OD_OK; k++) {
    if (t[k].rel_col < 0) {
      if (!plan.drop[k]) continue; /* unknown: keep it (NULL on inserts) */
      if (t[k].pk)
        rc = OD_FAIL(err, OD_ESCHEMA, "sqlite sink %s: table %s: column %s was dropped on the source but is part "
                     "of the sink table's primary key, which SQLite cannot change; re-create the table "
                     "(drop it in the sink and re-snapshot)", s->path, r->target, t[k].name);
      else if (index_of(s, r, t[k].name, idx, sizeof idx))
        rc = OD_FAIL(err, OD_ESCHEMA, "sqlite sink %s: table %s: column %s was dropped on the source but index "
                     "%s of the sink uses it; drop that index in the sink, then restart", s->path, r->target,
                     t[k].name, idx);
      continue;
    }
    const od_column *c = &rel->columns[t[k].rel_col];
    const char *new_decl = sq_class_decl(r->cls[t[k].rel_col]);
    bool typed = t[k].meta && t[k].type_oid;
    bool changed = typed && (t[k].type_oid != c->type_oid || t[k].typmod != c->typmod);
    if (sqlite3_stricmp(t[k].decl, new_decl) != 0 ||
        (changed && !sq_type_change_safe(t[k].type_oid, t[k].typmod, c->type_oid, c->typmod))) {
      type_text(t[k].type_oid, typed ? t[k].type_name : t[k].decl, from, sizeof from);
      type_text(c->type_oid, c->type_name, to, sizeof to);
      rc = OD_FAIL(err, OD_ESCHEMA, "sqlite sink %s: table %s: column %s changed from %s to %s on the source; "
                   "the sink cannot carry this change safely (rows already stored would keep the old %s form: "
                   "SQLite type %s, needed %s). Re-create the table from a snapshot, or run with "
                   "schema_changes: ignore", s->path, r->target, c->name, from, to,
                   sqlite3_stricmp(t[k].decl, new_decl) ? "storage" : "text", t[k].decl, new_decl);
    }
  }
  if (rc == OD_OK && !same_key(r, t, n)) {
    key_text(from, sizeof from, t, n);
    size_t b = (size_t)snprintf(to, sizeof to, "(");
    for (int i = 0, first = 1; i < rel->ncolumns && b < sizeof to; i++)
      if (r->keyed && rel->columns[i].key)
        b += (size_t)snprintf(to + b, sizeof to - b, "%s%s", first ? "" : ", ", rel->columns[i].name), first = 0;
    if (b < sizeof to) snprintf(to + b, sizeof to - b, ")");
    rc = OD_FAIL(err, OD_ESCHEMA, "sqlite sink %s: table %s: the source's row key changed from %s to %s, and the "
                 "sink table's primary key is %s, which SQLite cannot change; re-create the table from a snapshot",
                 s->path, r->target, from, to, from);
  }
  /* 2. The plan's steps: drops, renames (through temporary names where they form a cycle), adds. */
  for (int i = 0; i < plan.nsteps && rc == OD_OK; i++) {
    const od_plan_step *st = &plan.steps[i];
    if (st->kind == OD_PLAN_DROP) {
      tcol *c = &t[st->tcol];
      od_sqlbuf_reset(&s->sql);
      od_sqlbuf_add(&s->sql, "ALTER TABLE ");
      od_sqlbuf_add(&s->sql, r->qtarget);
      od_sqlbuf_add(&s->sql, " DROP COLUMN ");
      od_sqlbuf_ident(&s->sql, c->name);
      snprintf(idx, sizeof idx, "dropping column %.100s", c->name);
      if ((rc = alter(s, r, idx, err)) == OD_OK)
        od_info("sqlite sink %s: table %s: column %s dropped", s->path, r->target, c->name);
      c->name[0] = '\0'; /* gone */
    } else if (st->kind == OD_PLAN_RENAME) {
      tcol *c = &t[st->tcol];
      if ((rc = rename_col(s, r, st->from, st->to, err))) break;
      if (st->rcol >= 0) od_info("sqlite sink %s: table %s: column %s renamed to %s", s->path, r->target, st->from, st->to);
      char *name = strdup(st->to);
      if (!name) rc = OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
      else {
        free(c->name);
        c->name = name;
      }
    } else {
      rc = add_col(s, r, st->rcol, err);
    }
  }
  if (rc == OD_OK) rc = write_meta(s, r, t, n, err);
  od_schema_plan_free(&plan);
  tcols_free(t, n);
  return rc;
}
