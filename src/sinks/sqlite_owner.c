/* sinks/sqlite_owner.c — which pipeline and source table own each target table of the SQLite sink.
 *
 * Owns: the table _odsync_tables (one row per target table odsync created or first wrote: the
 * pipeline, the source table as PostgreSQL prints it, and the recreate flag, set by `odsync
 * snapshot` for a table the sink lost, or by hand to accept it empty) and its statements. A target
 * table is claimed in the sink transaction that first uses it in a session (sq_owner_claim,
 * called by sqlite_table.c before the table is made), so the row commits or rolls back with the table and its data. Refused there:
 *   - a target that another source table or pipeline owns (SQLite table names ignore ASCII case,
 *     and public."x.y" and table y of schema x are both "x.y"): their rows would mix;
 *   - a target owned by this pipeline (or listed in _odsync_columns) that no longer exists, unless
 *     it may be made anew (recreate flag) or the pipeline starts over (no checkpoint row yet).
 * Never touches: the checkpoint row, the data, table DDL (sqlite_table.c / sqlite_schema.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tblowner.h"
#include "core/log.h"
#include "sinks/sqlite_internal.h"

#define FIX_SQLITE                                                                                                  \
  "Capture only one of them (source.tables), or write one to another SQLite file (a pipeline of its own); "         \
  "docs/adapters/sqlite.md, \"Table ownership\""

char *sq_target_of(const char *schema, const char *name) {
  const char *sch = schema ? schema : "";
  size_t n = strlen(sch) + strlen(name ? name : "") + 2;
  char *t = malloc(n);
  if (!t) return NULL;
  if (*sch && strcmp(sch, "public") != 0) snprintf(t, n, "%s.%s", sch, name ? name : "");
  else snprintf(t, n, "%s", name ? name : "");
  return t;
}

int sq_owner_open(sq_sink *s, od_error *err) {
  int rc = sqlite3_exec(s->db,
                        "CREATE TABLE IF NOT EXISTS _odsync_tables("
                        "tbl TEXT NOT NULL COLLATE NOCASE PRIMARY KEY, pipeline TEXT NOT NULL, source TEXT NOT NULL, "
                        "recreate INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL)",
                        NULL, NULL, NULL);
  if (rc != SQLITE_OK) return sq_fail(s, "_odsync_tables", "creating the table", rc, err);
  static const char *const sql[] = {
      "SELECT pipeline, source, recreate FROM _odsync_tables WHERE tbl = ?1",
      "INSERT INTO _odsync_tables(tbl, pipeline, source, recreate, updated_at) "
      "VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
      "ON CONFLICT (tbl) DO UPDATE SET recreate = excluded.recreate, updated_at = excluded.updated_at",
      "SELECT (SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE), "
      "(SELECT count(*) FROM _odsync_columns WHERE tbl = ?1)",
      "SELECT 1 FROM _odsync_checkpoint WHERE pipeline = ?1",
  };
  sqlite3_stmt **st[] = {&s->own_get, &s->own_put, &s->own_exists, &s->own_fresh};
  for (int i = 0; i < 4; i++) {
    rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL);
    if (rc != SQLITE_OK) return sq_fail(s, "_odsync_tables", "preparing a statement", rc, err);
  }
  /* No checkpoint row yet: the pipeline starts over (initial snapshot), so tables it owned and
   * lost may be made again: the snapshot fills them. */
  sqlite3_bind_text(s->own_fresh, 1, s->pipeline, -1, SQLITE_STATIC);
  rc = sqlite3_step(s->own_fresh);
  s->fresh = rc == SQLITE_DONE;
  sqlite3_reset(s->own_fresh);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_fail(s, "_odsync_checkpoint", "reading the position", rc, err);
  return OD_OK;
}

void sq_owner_close(sq_sink *s) {
  sqlite3_finalize(s->own_get);
  sqlite3_finalize(s->own_put);
  sqlite3_finalize(s->own_exists);
  sqlite3_finalize(s->own_fresh);
  s->own_get = s->own_put = s->own_exists = s->own_fresh = NULL;
}

typedef struct owner {
  bool found, recreate;
  char pipeline[128];
  char source[400];
} owner;

static int get_owner(sq_sink *s, const char *target, owner *o, od_error *err) {
  memset(o, 0, sizeof *o);
  sqlite3_bind_text(s->own_get, 1, target, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s->own_get);
  if (rc == SQLITE_ROW) {
    o->found = true;
    snprintf(o->pipeline, sizeof o->pipeline, "%s", (const char *)sqlite3_column_text(s->own_get, 0));
    snprintf(o->source, sizeof o->source, "%s", (const char *)sqlite3_column_text(s->own_get, 1));
    o->recreate = sqlite3_column_int(s->own_get, 2) != 0;
  }
  sqlite3_reset(s->own_get);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sq_fail(s, "_odsync_tables", "reading the owner of a table", rc, err);
  return OD_OK;
}

/* *exists: the table is in the database; *known: _odsync_columns describes it (odsync wrote it). */
static int table_state(sq_sink *s, const char *target, bool *exists, bool *known, od_error *err) {
  sqlite3_bind_text(s->own_exists, 1, target, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s->own_exists);
  if (rc == SQLITE_ROW) {
    *exists = sqlite3_column_int(s->own_exists, 0) > 0;
    *known = sqlite3_column_int(s->own_exists, 1) > 0;
  }
  sqlite3_reset(s->own_exists);
  if (rc != SQLITE_ROW) return sq_fail(s, target, "looking the table up", rc, err);
  return OD_OK;
}

static int put_owner(sq_sink *s, const char *target, const char *source, bool recreate, od_error *err) {
  sqlite3_bind_text(s->own_put, 1, target, -1, SQLITE_STATIC);
  sqlite3_bind_text(s->own_put, 2, s->pipeline, -1, SQLITE_STATIC);
  sqlite3_bind_text(s->own_put, 3, source, -1, SQLITE_STATIC);
  sqlite3_bind_int(s->own_put, 4, recreate ? 1 : 0);
  int rc = sqlite3_step(s->own_put);
  sqlite3_reset(s->own_put);
  if (rc != SQLITE_DONE) return sq_fail(s, "_odsync_tables", "recording the owner of a table", rc, err);
  return OD_OK;
}

static void forget_sql(char *out, size_t cap, const char *target) {
  /* Table names with a quote are written doubled inside the SQL string literal. */
  size_t at = (size_t)snprintf(out, cap, "run UPDATE _odsync_tables SET recreate = 1 WHERE tbl = '");
  for (const char *p = target; *p && at + 3 < cap; p++) {
    if (*p == '\'') out[at++] = '\'';
    out[at++] = *p;
  }
  snprintf(out + (at < cap ? at : cap - 1), cap - (at < cap ? at : cap - 1), "' in the sink file");
}

/* The checks shared by claim and check_tables. *claim: the caller should record (or refresh) the
 * owner row; *exists: the table is in the database, *known: the sink had it before. */
static int judge(sq_sink *s, const char *target, const char *schema, const char *name, bool keyed, bool *claim,
                 bool *exists, bool *known, od_error *err) {
  char source[400], sink[300];
  od_owner_source_name(source, sizeof source, schema, name);
  snprintf(sink, sizeof sink, "sqlite sink %.280s", s->path);
  owner o;
  *exists = *known = false; /* (also keeps -O2's maybe-uninitialized analysis quiet) */
  int rc = get_owner(s, target, &o, err);
  if (!rc) rc = table_state(s, target, exists, known, err);
  if (rc) return rc;
  *known = *known || o.found;
  *claim = !o.found || o.recreate; /* writing the row clears a recreate flag the table no longer needs */
  if (o.found && (strcmp(o.pipeline, s->pipeline) != 0 || strcmp(o.source, source) != 0))
    return od_owner_fail_taken(err, sink, target, o.pipeline, o.source, s->pipeline, source, FIX_SQLITE);
  if (*exists || !*known) return OD_OK;
  /* The sink had it (an owner row, or columns recorded by an odsync before _odsync_tables). */
  if ((o.found && o.recreate) || s->fresh) {
    *claim = true;
    return OD_OK;
  }
  char forget[600];
  forget_sql(forget, sizeof forget, target);
  return od_owner_fail_dropped(err, sink, target, s->pipeline, schema, name, keyed, forget);
}

int sq_owner_claim(sq_sink *s, sq_rel *r, od_error *err) {
  const od_relation *rel = r->rel;
  const char *schema = rel->schema ? rel->schema : "";
  bool claim = false, exists = false, known = false;
  int rc = judge(s, r->target, schema, rel->name, r->keyed, &claim, &exists, &known, err);
  if (rc || !claim) return rc;
  char source[400];
  od_owner_source_name(source, sizeof source, schema, rel->name);
  if (!exists && known)
    od_info("sqlite sink %s: table %s: creating it again (it was dropped; %s)", s->path, r->target,
            s->fresh ? "the pipeline starts over" : "odsync snapshot re-copies it");
  return put_owner(s, r->target, source, false, err);
}

int sq_check_tables(od_sink *base, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                    void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  char **targets = calloc((size_t)(n ? n : 1), sizeof *targets);
  if (!targets) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  int fatal = 0, rc = OD_OK;
  char msg[OD_ERROR_MSG_MAX + 1600];
  for (int i = 0; i < n && rc == OD_OK; i++) {
    if (!(targets[i] = sq_target_of(schemas[i], names[i]))) {
      rc = OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
      break;
    }
    if (sqlite3_strnicmp(targets[i], "sqlite_", 7) == 0) {
      char a[400];
      od_owner_source_name(a, sizeof a, schemas[i], names[i]);
      snprintf(msg, sizeof msg,
               "sqlite sink %.200s: source table %.300s would be written to table %.300s, but SQLite reserves the names "
               "beginning with sqlite_ for itself. Leave it out of source.tables, or write it to another kind of sink",
               s->path, a, targets[i]);
      problem(ctx, true, msg);
      fatal++;
      continue;
    }
    bool dup = false;
    for (int k = 0; k < i && !dup; k++) {
      if (sqlite3_stricmp(targets[k], targets[i]) != 0) continue;
      dup = true;
      char a[400], b[400];
      od_owner_source_name(a, sizeof a, schemas[k], names[k]);
      od_owner_source_name(b, sizeof b, schemas[i], names[i]);
      snprintf(msg, sizeof msg,
               "sqlite sink %.200s: source tables %.300s and %.300s would both be written to table %.300s (SQLite table names "
               "ignore case, and a table of schema public named \"x.y\" meets table y of schema x): their rows "
               "would mix. " FIX_SQLITE,
               s->path, a, b, targets[i]);
      problem(ctx, true, msg);
      fatal++;
    }
    if (dup) continue;
    bool claim, exists, known;
    od_error e;
    od_error_clear(&e);
    int jr = judge(s, targets[i], schemas[i], names[i], keyed[i], &claim, &exists, &known, &e);
    if (jr == OD_ESCHEMA) {
      problem(ctx, true, e.msg);
      fatal++;
    } else if (jr) {
      *err = e;
      rc = jr;
    }
  }
  for (int i = 0; i < n; i++) free(targets[i]);
  free(targets);
  return rc ? rc : fatal;
}

int sq_resnapshot_table(od_sink *base, const char *schema, const char *name, bool *recreate, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  *recreate = false;
  char *target = sq_target_of(schema, name);
  if (!target) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  char source[400], sink[300];
  od_owner_source_name(source, sizeof source, schema, name);
  snprintf(sink, sizeof sink, "sqlite sink %.280s", s->path);
  owner o;
  bool exists = false, known = false;
  int rc = get_owner(s, target, &o, err);
  if (!rc) rc = table_state(s, target, &exists, &known, err);
  if (!rc && o.found && (strcmp(o.pipeline, s->pipeline) != 0 || strcmp(o.source, source) != 0))
    rc = od_owner_fail_taken(err, sink, target, o.pipeline, o.source, s->pipeline, source, FIX_SQLITE);
  if (!rc && !exists && (o.found || known) && !(rc = put_owner(s, target, source, true, err))) *recreate = true;
  free(target);
  return rc;
}
