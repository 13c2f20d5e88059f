/* sinks/sqlite_dlq.c — the SQLite sink's poison-row support (OD_SINK_DEAD_LETTERS): one
 * savepoint inside the sink transaction, and the table _odsync_dead_letters next to the
 * checkpoint (created on first use), written in the open transaction so a dead letter commits
 * with the rest of its source transaction and the checkpoint.
 * Owns: that table's SQL. Never touches: the checkpoint, the data tables (a ROLLBACK TO forgets
 * the table states of this transaction, as a rollback does, so they are looked at again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/sqlite_internal.h"

#define DL_TABLE "_odsync_dead_letters"

static int exec(sq_sink *s, const char *what, const char *sql, od_error *err) {
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? OD_OK : sq_fail(s, DL_TABLE, what, rc, err);
}

static int ensure_table(sq_sink *s, od_error *err) {
  return exec(s, "creating the dead-letter table",
              "CREATE TABLE IF NOT EXISTS " DL_TABLE " (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, "
              "position TEXT NOT NULL, source_table TEXT, op TEXT, change TEXT NOT NULL, error TEXT, code TEXT, "
              "attempts INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), "
              "updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))",
              err);
}

int sq_savepoint(od_sink *base, int op, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: savepoint outside a transaction", s->path);
  switch (op) {
    case OD_SAVEPOINT_SET: return exec(s, "SAVEPOINT", "SAVEPOINT od_row", err);
    case OD_SAVEPOINT_RELEASE: return exec(s, "RELEASE SAVEPOINT", "RELEASE od_row", err);
    case OD_SAVEPOINT_ROLLBACK:
      sq_rels_drop(s, true); /* tables made since may be gone again: look at them anew */
      return exec(s, "ROLLBACK TO SAVEPOINT", "ROLLBACK TO od_row; RELEASE od_row", err);
  }
  return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: unknown savepoint operation %d", s->path, op);
}

int sq_put_dead_letter(od_sink *base, const od_dead_letter *dl, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: dead letter outside a transaction", s->path);
  int rc = ensure_table(s, err);
  if (rc) return rc;
  const char *sql = dl->id > 0 ? "UPDATE " DL_TABLE " SET error = ?1, code = ?2, attempts = ?3, "
                                 "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?4"
                               : "INSERT INTO " DL_TABLE " (error, code, attempts, pipeline, position, source_table, "
                                 "op, change) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (src != SQLITE_OK) return sq_fail(s, DL_TABLE, "preparing the dead-letter statement", src, err);
  sqlite3_bind_text(st, 1, dl->error ? dl->error : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, dl->code ? dl->code : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 3, dl->attempts);
  if (dl->id > 0) {
    sqlite3_bind_int64(st, 4, dl->id);
  } else {
    sqlite3_bind_text(st, 4, dl->pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, dl->position, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, dl->table ? dl->table : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, dl->op ? dl->op : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, dl->change, -1, SQLITE_STATIC);
  }
  src = sqlite3_step(st);
  if (src != SQLITE_DONE) rc = sq_fail(s, DL_TABLE, "writing a dead letter", src, err);
  sqlite3_finalize(st);
  return rc;
}

static const char *col(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? (const char *)t : "";
}

int sq_list_dead_letters(od_sink *base, const char *pipeline, int64_t id,
                         int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '" DL_TABLE "'",
                               -1, &st, NULL);
  if (src != SQLITE_OK) return sq_fail(s, DL_TABLE, "looking up the dead-letter table", src, err);
  src = sqlite3_step(st);
  sqlite3_finalize(st);
  if (src == SQLITE_DONE) return OD_OK; /* never had one */
  if (src != SQLITE_ROW) return sq_fail(s, DL_TABLE, "looking up the dead-letter table", src, err);
  src = sqlite3_prepare_v2(s->db,
                           "SELECT id, pipeline, position, source_table, op, change, error, code, attempts, created_at "
                           "FROM " DL_TABLE " WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 = 0 OR id = ?2) ORDER BY id",
                           -1, &st, NULL);
  if (src != SQLITE_OK) return sq_fail(s, DL_TABLE, "reading dead letters", src, err);
  if (pipeline) sqlite3_bind_text(st, 1, pipeline, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, id);
  int rc = OD_OK;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    od_dead_letter dl = {.id = sqlite3_column_int64(st, 0), .pipeline = col(st, 1), .position = col(st, 2),
                         .table = col(st, 3), .op = col(st, 4), .change = col(st, 5), .error = col(st, 6),
                         .code = col(st, 7), .attempts = sqlite3_column_int(st, 8), .created_at = col(st, 9)};
    if ((rc = each(ctx, &dl))) break;
  }
  if (!rc && src != SQLITE_DONE) rc = sq_fail(s, DL_TABLE, "reading dead letters", src, err);
  sqlite3_finalize(st);
  return rc;
}

int sq_drop_dead_letter(od_sink *base, int64_t id, bool *found, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  *found = false;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: dead letter outside a transaction", s->path);
  int rc = ensure_table(s, err);
  if (rc) return rc;
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(s->db, "DELETE FROM " DL_TABLE " WHERE id = ?1", -1, &st, NULL);
  if (src != SQLITE_OK) return sq_fail(s, DL_TABLE, "removing a dead letter", src, err);
  sqlite3_bind_int64(st, 1, id);
  src = sqlite3_step(st);
  if (src != SQLITE_DONE) rc = sq_fail(s, DL_TABLE, "removing a dead letter", src, err);
  else *found = sqlite3_changes(s->db) > 0;
  sqlite3_finalize(st);
  return rc;
}
