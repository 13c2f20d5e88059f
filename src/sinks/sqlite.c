/* sinks/sqlite.c — the SQLite sink (type "sqlite"): the embedded default target.
 *
 * Owns: the sqlite3 connection to `path` (WAL, synchronous=FULL; its checkpoints run on a thread
 * of sqlite_ckpt.c), the sink transaction
 * (BEGIN IMMEDIATE ... COMMIT), the checkpoint row of this pipeline in _odsync_checkpoint written
 * in the same transaction as the data (plus the snapshot's marks, rows keyed "<pipeline>/...", whose
 * value is an integer or, in column position_text, a text), the table _odsync_columns (written by
 * sqlite_schema.c), and
 * the apply semantics per operation (upsert, keyed or
 * rowid-matched update/delete, TOAST-unchanged values left alone, truncate).
 * Per-relation tables and statements live in sqlite_table.c; value conversion in sqlite_types.c.
 * Never touches: the source, acknowledgements, retries (errors say whether they are retriable),
 * process exit. Change memory is borrowed for the length of apply(); relations for the sink's life.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "sinks/sqlite_internal.h"

extern const od_sink_ops od_sink_sqlite;

int sq_fail(sq_sink *s, const char *table, const char *what, int rc, od_error *err) {
  int prim = rc & 0xff;
  /* Retriable at the origin: a busy or locked file, an I/O error, and a file that cannot be written
   * for now — disk full (SQLITE_FULL), a read-only or unwritable directory (SQLITE_READONLY,
   * SQLITE_CANTOPEN for the -wal/-shm files). The database file exists by then (open() creates a new
   * one first and fails for good when it cannot), so these are outages of a sink that worked: the
   * pipeline pauses, says why and where, and resumes once the space or the permission is back. */
  bool space = prim == SQLITE_FULL || prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN;
  bool retry = prim == SQLITE_BUSY || prim == SQLITE_LOCKED || prim == SQLITE_IOERR || space;
  const char *msg = (s->db && sqlite3_errcode(s->db) != SQLITE_OK) ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
  int ext = (s->db && sqlite3_errcode(s->db) == prim) ? sqlite3_extended_errcode(s->db) : rc;
  const char *hint = space ? " (the file system under the sink is full or not writable: free space or make its "
                             "directory writable; odsync retries until it can write)"
                           : "";
  if (table)
    od_error_set(err, OD_ESINK, retry, __FILE__, __LINE__, "sqlite sink %s: table %s: %s: %s%s", s->path, table,
                 what, msg, hint);
  else
    od_error_set(err, OD_ESINK, retry, __FILE__, __LINE__, "sqlite sink %s: %s: %s%s", s->path, what, msg, hint);
  if (err) err->sqlite_code = ext; /* the cause, for the core's classification (core/error_class.h) */
  return OD_ESINK;
}

/* Step a statement that returns no rows, then reset it. *changes = rows changed (may be NULL). */
static int step_done(sq_sink *s, const char *table, const char *what, sqlite3_stmt *st, int *changes,
                     od_error *err) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    rc = sq_fail(s, table, what, rc, err);
    sqlite3_reset(st);
    return rc;
  }
  if (changes) *changes = sqlite3_changes(s->db);
  sqlite3_reset(st);
  return OD_OK;
}

static int prepare_fixed(sq_sink *s, const char *sql, sqlite3_stmt **out, od_error *err) {
  int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
  if (rc != SQLITE_OK) return sq_fail(s, NULL, "preparing statement", rc, err);
  s->stats.prepared++;
  return OD_OK;
}

/* ---- open / close -------------------------------------------------------------------------- */

/* mkdir -p of the directory part of `path`; directories it creates are 0700 (the sink holds the
 * replicated data). */
static int make_parent_dirs(const char *path, od_error *err) {
  char *dir = strdup(path);
  if (!dir) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", path);
  char *slash = strrchr(dir, '/');
  int rc = OD_OK;
  if (slash && slash != dir) {
    *slash = '\0';
    for (char *p = dir + 1; rc == OD_OK; p++) {
      if (*p != '/' && *p != '\0') continue;
      char c = *p;
      *p = '\0';
      if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        rc = OD_FAIL(err, OD_EIO, "sqlite sink %s: cannot create directory %s: %s", path, dir, strerror(errno));
      *p = c;
      if (c == '\0') break;
    }
  }
  free(dir);
  return rc;
}

static void sq_close(od_sink *base) {
  sq_sink *s = (sq_sink *)base;
  if (!s) return;
  if (s->db && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  sq_rels_drop(s, false);
  if (s->db) sq_ckpt_stop(s);
  sqlite3_finalize(s->st_begin);
  sqlite3_finalize(s->st_commit);
  sqlite3_finalize(s->st_rollback);
  sqlite3_finalize(s->ck_write);
  sqlite3_finalize(s->ck_read);
  sq_owner_close(s);
  if (s->db) sqlite3_close_v2(s->db);
  od_sqlbuf_free(&s->sql);
  free(s->blob);
  free(s->path);
  free(s->pipeline);
  free(s);
}

/* A checkpoint table created before text marks existed lacks position_text: add it (NULL in every
 * existing row, so integer marks and checkpoints read as before). Checked and altered inside one
 * write transaction, so two processes opening the same file cannot both add it. */
static int migrate_checkpoint(sq_sink *s, od_error *err) {
  int src = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (src != SQLITE_OK) return sq_fail(s, "_odsync_checkpoint", "checking its columns", src, err);
  sqlite3_stmt *st = NULL;
  bool has = false;
  src = sqlite3_prepare_v2(s->db, "SELECT 1 FROM pragma_table_info('_odsync_checkpoint') WHERE name = 'position_text'",
                           -1, &st, NULL);
  if (src == SQLITE_OK) {
    src = sqlite3_step(st);
    has = src == SQLITE_ROW;
    if (src == SQLITE_ROW || src == SQLITE_DONE) src = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (src == SQLITE_OK && !has)
    src = sqlite3_exec(s->db, "ALTER TABLE _odsync_checkpoint ADD COLUMN position_text TEXT", NULL, NULL, NULL);
  if (src == SQLITE_OK) src = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    int rc = sq_fail(s, "_odsync_checkpoint", "adding column position_text", src, err);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  if (!has) od_info("sqlite sink %s: table _odsync_checkpoint: added column position_text (text marks)", s->path);
  return OD_OK;
}

static int sq_open(const od_config_section *cfg, const char *pipeline, od_sink **out, od_error *err) {
  static const char *const keys[] = {"path", "busy_timeout_ms", "cache_mb", NULL};
  const char *path = NULL;
  long busy_ms = 5000, cache_mb = 32;
  int rc = od_config_check_keys(cfg, keys, err);
  if (rc == OD_OK) rc = od_config_require_string(cfg, "path", &path, err);
  if (rc == OD_OK) rc = od_config_int(cfg, "busy_timeout_ms", 5000, 0, 3600000, &busy_ms, err);
  if (rc == OD_OK) rc = od_config_int(cfg, "cache_mb", 32, 1, 65536, &cache_mb, err);
  if (rc) return rc;

  sq_sink *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", path);
  s->base.ops = &od_sink_sqlite;
  s->path = strdup(path);
  s->pipeline = strdup(pipeline ? pipeline : "");
  if (!s->path || !s->pipeline) {
    sq_close(&s->base);
    return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", path);
  }
  rc = make_parent_dirs(path, err);
  if (rc) goto fail;
  /* A new database file is created 0600 here, before SQLite would create it 0644 (less the umask):
   * it holds the replicated data. SQLite gives its -wal and -shm files the database file's mode.
   * An existing file keeps the mode its owner gave it. */
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    close(fd);
  } else if (errno != EEXIST) {
    rc = OD_FAIL(err, OD_EIO, "sqlite sink %s: cannot create the database file: %s", path, strerror(errno));
    goto fail;
  }

  int src = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, NULL, "opening the database", src, err);
    goto fail;
  }
  sqlite3_busy_timeout(s->db, (int)busy_ms);
  /* The page cache of the writer's connection (SQLite's default is 2 MB): updates and deletes seek
   * the key's b-tree pages, which a table larger than the cache reads again from the file. */
  char pragma[64];
  snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%ld", cache_mb * 1024);
  if ((src = sqlite3_exec(s->db, pragma, NULL, NULL, NULL)) != SQLITE_OK) {
    rc = sq_fail(s, NULL, "setting cache_size", src, err);
    goto fail;
  }
  if ((src = sq_register_functions(s->db)) != SQLITE_OK) {
    rc = sq_fail(s, NULL, "registering function odsync_signbit", src, err);
    goto fail;
  }

  /* WAL: readers never block the writer and never see half a transaction. FULL: every commit
   * carries the checkpoint, so it must survive power loss before we report it. */
  sqlite3_stmt *wal = NULL;
  src = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &wal, NULL);
  if (src == SQLITE_OK) src = sqlite3_step(wal);
  if (src != SQLITE_ROW) {
    rc = sq_fail(s, NULL, "setting journal_mode=WAL", src, err);
    sqlite3_finalize(wal);
    goto fail;
  }
  const char *mode = (const char *)sqlite3_column_text(wal, 0);
  if (!mode || sqlite3_stricmp(mode, "wal") != 0) {
    rc = OD_FAIL(err, OD_ESINK, "sqlite sink %s: could not switch to WAL journal mode (got %s); "
                 "use a file on a local filesystem", s->path, mode ? mode : "nothing");
    sqlite3_finalize(wal);
    goto fail;
  }
  sqlite3_finalize(wal);
  src = sqlite3_exec(s->db,
                     "PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS _odsync_checkpoint("
                     "pipeline TEXT PRIMARY KEY, position INTEGER NOT NULL, "
                     "position_lsn TEXT NOT NULL, updated_at TEXT NOT NULL, position_text TEXT);"
                     "CREATE TABLE IF NOT EXISTS _odsync_columns("
                     "tbl TEXT NOT NULL, name TEXT NOT NULL, attnum INTEGER NOT NULL, "
                     "type_oid INTEGER NOT NULL, typmod INTEGER NOT NULL, type_name TEXT NOT NULL, "
                     "version INTEGER NOT NULL, PRIMARY KEY (tbl, name))",
                     NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    rc = sq_fail(s, NULL, "creating tables _odsync_checkpoint and _odsync_columns", src, err);
    goto fail;
  }
  if ((rc = migrate_checkpoint(s, err))) goto fail;
  if ((rc = sq_owner_open(s, err))) goto fail;
  if ((rc = prepare_fixed(s, "BEGIN IMMEDIATE", &s->st_begin, err)) ||
      (rc = prepare_fixed(s, "COMMIT", &s->st_commit, err)) ||
      (rc = prepare_fixed(s, "ROLLBACK", &s->st_rollback, err)) ||
      (rc = prepare_fixed(s,
                          "INSERT INTO _odsync_checkpoint(pipeline, position, position_lsn, updated_at, position_text) "
                          "VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?4) "
                          "ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, "
                          "position_lsn = excluded.position_lsn, updated_at = excluded.updated_at, "
                          "position_text = excluded.position_text",
                          &s->ck_write, err)) ||
      (rc = prepare_fixed(s, "SELECT position, position_text FROM _odsync_checkpoint WHERE pipeline = ?1",
                          &s->ck_read, err)) ||
      (rc = sq_ckpt_start(s, err)))
    goto fail;
  *out = &s->base;
  return OD_OK;
fail:
  sq_close(&s->base);
  return rc;
}

/* ---- transactions and the checkpoint ------------------------------------------------------- */

/* The checkpoint row holds the position's text form in position_text ("pg:0/16B3748"); a row of an
 * earlier version holds only an LSN in position, read as od_pos_legacy_lsn. */
static int sq_read_position(od_sink *base, od_pos *out, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  *out = od_pos_none();
  sqlite3_bind_text(s->ck_read, 1, s->pipeline, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s->ck_read);
  if (rc == SQLITE_ROW) {
    sqlite3_int64 pos = sqlite3_column_int64(s->ck_read, 0);
    if (sqlite3_column_type(s->ck_read, 1) != SQLITE_NULL) {
      rc = od_pos_from_text((const char *)sqlite3_column_text(s->ck_read, 1), out, err);
      sqlite3_reset(s->ck_read);
      if (rc) od_error_prefix(err, "sqlite sink %s: table _odsync_checkpoint: pipeline %s: ", s->path, s->pipeline);
      return rc;
    }
    sqlite3_reset(s->ck_read);
    if (pos < 0)
      return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table _odsync_checkpoint: pipeline %s has a negative "
                     "position %lld", s->path, s->pipeline, (long long)pos);
    *out = od_pos_legacy_lsn((uint64_t)pos);
    return OD_OK;
  }
  if (rc != SQLITE_DONE) {
    rc = sq_fail(s, "_odsync_checkpoint", "reading the position", rc, err);
    sqlite3_reset(s->ck_read);
    return rc;
  }
  sqlite3_reset(s->ck_read);
  return OD_OK;
}

static int sq_begin(od_sink *base, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: begin inside an open transaction", s->path);
  sq_ckpt_before_begin(s);
  int rc = step_done(s, NULL, "BEGIN IMMEDIATE", s->st_begin, NULL, err);
  if (rc) return rc;
  s->in_txn = true;
  s->txn_seq++;
  return OD_OK;
}

/* Commit the open transaction; with a position, the checkpoint row is written in it. The row keeps
 * the text form (position_text), and for people the position's display form (position_lsn) and, for
 * counters, its number (position). */
static int commit_with(sq_sink *s, const od_pos *position, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: commit without begin", s->path);
  int rc;
  if (position) {
    char shown[OD_POS_TEXT_MAX], text[OD_POS_TEXT_MAX];
    od_pos_display(position, shown, sizeof shown);
    od_pos_to_text(position, text, sizeof text);
    uint64_t n = od_pos_to_u64(position);
    sqlite3_bind_text(s->ck_write, 1, s->pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->ck_write, 2, n > (uint64_t)INT64_MAX ? 0 : (sqlite3_int64)n);
    sqlite3_bind_text(s->ck_write, 3, shown, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->ck_write, 4, text, -1, SQLITE_STATIC);
    rc = step_done(s, "_odsync_checkpoint", "writing the checkpoint", s->ck_write, NULL, err);
    if (rc) return rc;
  }
  rc = step_done(s, NULL, "COMMIT", s->st_commit, NULL, err);
  if (rc) return rc; /* the transaction may still be open: the caller rolls back */
  s->in_txn = false;
  return OD_OK;
}

static int sq_commit(od_sink *base, const od_pos *position, od_error *err) {
  return commit_with((sq_sink *)base, position, err);
}

static int sq_commit_data(od_sink *base, od_error *err) { return commit_with((sq_sink *)base, NULL, err); }

static void sq_rollback(od_sink *base) {
  sq_sink *s = (sq_sink *)base;
  if (!sqlite3_get_autocommit(s->db)) {
    if (sqlite3_step(s->st_rollback) != SQLITE_DONE)
      od_warn("sqlite sink %s: ROLLBACK failed: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_reset(s->st_rollback);
  }
  /* Tables created or altered in this transaction are gone again: forget their statements. */
  if (s->in_txn) sq_rels_drop(s, true);
  s->in_txn = false;
}

/* ---- marks (snapshot progress): rows of _odsync_checkpoint keyed "<pipeline>/..." ----------- */

/* Upsert a mark row: an integer (text NULL) or a text (position 0). Prepared per call: marks are
 * written once per snapshot chunk, and the checkpoint's own statement stays untouched. */
static int mark_write(sq_sink *s, const char *key, uint64_t value, const char *text, od_error *err) {
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(s->db,
                               "INSERT INTO _odsync_checkpoint(pipeline, position, position_lsn, updated_at, "
                               "position_text) VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?4) "
                               "ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, "
                               "position_lsn = excluded.position_lsn, updated_at = excluded.updated_at, "
                               "position_text = excluded.position_text",
                               -1, &st, NULL);
  if (src != SQLITE_OK) return sq_fail(s, "_odsync_checkpoint", "preparing a mark", src, err);
  /* The value is opaque: stored as its 64-bit pattern (may read as a negative INTEGER). */
  char lsn[32];
  snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(value >> 32), (unsigned)value);
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)value);
  sqlite3_bind_text(st, 3, lsn, -1, SQLITE_STATIC);
  if (text)
    sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 4);
  int rc = step_done(s, "_odsync_checkpoint", "writing a mark", st, NULL, err);
  sqlite3_finalize(st);
  return rc;
}

static int mark_remove(sq_sink *s, const char *key, od_error *err) {
  sqlite3_stmt *del = NULL;
  int src = sqlite3_prepare_v2(s->db, "DELETE FROM _odsync_checkpoint WHERE pipeline = ?1", -1, &del, NULL);
  if (src != SQLITE_OK) return sq_fail(s, "_odsync_checkpoint", "preparing a mark removal", src, err);
  sqlite3_bind_text(del, 1, key, -1, SQLITE_STATIC);
  int rc = step_done(s, "_odsync_checkpoint", "removing a mark", del, NULL, err);
  sqlite3_finalize(del);
  return rc;
}

static int sq_set_mark(od_sink *base, const char *key, uint64_t value, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: set_mark outside a transaction", s->path);
  return value ? mark_write(s, key, value, NULL, err) : mark_remove(s, key, err);
}

static int sq_set_text_mark(od_sink *base, const char *key, const char *text, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: set_text_mark outside a transaction", s->path);
  return text ? mark_write(s, key, 0, text, err) : mark_remove(s, key, err);
}

static int sq_get_mark(od_sink *base, const char *key, uint64_t *out, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  sqlite3_bind_text(s->ck_read, 1, key, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(s->ck_read);
  *out = 0;
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_type(s->ck_read, 1) == SQLITE_NULL) *out = (uint64_t)sqlite3_column_int64(s->ck_read, 0);
  } else if (rc != SQLITE_DONE) {
    rc = sq_fail(s, "_odsync_checkpoint", "reading a mark", rc, err);
    sqlite3_reset(s->ck_read);
    return rc;
  }
  sqlite3_reset(s->ck_read);
  return OD_OK;
}

static int sq_get_text_mark(od_sink *base, const char *key, char **out, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  *out = NULL;
  sqlite3_stmt *st = NULL;
  int src = sqlite3_prepare_v2(s->db, "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = ?1", -1, &st,
                               NULL);
  if (src != SQLITE_OK) return sq_fail(s, "_odsync_checkpoint", "preparing a mark read", src, err);
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  int rc = OD_OK;
  src = sqlite3_step(st);
  if (src == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    const char *t = (const char *)sqlite3_column_text(st, 0);
    if (!t || !(*out = strdup(t))) rc = OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  } else if (src != SQLITE_ROW && src != SQLITE_DONE) {
    rc = sq_fail(s, "_odsync_checkpoint", "reading a mark", src, err);
  }
  sqlite3_finalize(st);
  return rc;
}

/* ---- applying changes ---------------------------------------------------------------------- */

static int check_tuple(sq_sink *s, sq_rel *r, const od_tuple *t, const char *which, od_error *err) {
  if (t->ncolumns == r->rel->ncolumns && t->values) return OD_OK;
  return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table %s: %s tuple has %d values, relation has %d columns",
                 s->path, r->target, which, t->ncolumns, r->rel->ncolumns);
}

static int need_old_row(sq_sink *s, sq_rel *r, const od_change *c, const char *op, od_error *err) {
  if (c->old_kind == 'O') return check_tuple(s, r, &c->oldtup, "old", err);
  return OD_FAIL(err, OD_ESINK,
                 "sqlite sink %s: table %s: %s on a table without key needs the full old row; set "
                 "REPLICA IDENTITY FULL on the source table or give it a primary key",
                 s->path, r->target, op);
}

/* "id=42, region='eu'" of the key (keyed) for log lines. */
static void describe_key(const sq_rel *r, const od_tuple *t, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (int k = 0; k < r->nkey && n < cap; k++) {
    int col = SQ_COL(r->key_plan[k]);
    const od_value *v = &t->values[col];
    const char *val = v->kind == OD_VALUE_TEXT ? v->data : v->kind == OD_VALUE_NULL ? "NULL" : "?";
    int w = snprintf(out + n, cap - n, "%s%s=%.64s", k ? ", " : "", r->rel->columns[col].name, val);
    if (w < 0) break;
    n += (size_t)w;
  }
}

static int apply_insert(sq_sink *s, sq_rel *r, const od_tuple *nt, od_error *err) {
  sqlite3_stmt *st;
  int rc = sq_stmt_insert(s, r, &st, err);
  if (!rc) rc = sq_bind(s, r, st, r->ident_plan, r->rel->ncolumns, nt, nt, err);
  if (!rc) rc = step_done(s, r->target, "insert", st, NULL, err);
  return rc;
}

/* The row keeps its key: every key value of the tuple that finds the row (mt) equals the new one
 * (same kind, same bytes; trivially when mt is the new tuple: no old key was sent). */
static bool key_kept(const sq_rel *r, const od_tuple *mt, const od_tuple *nt) {
  if (mt == nt) return true;
  for (int k = 0; k < r->nkey; k++) {
    int col = SQ_COL(r->key_plan[k]);
    const od_value *a = &mt->values[col], *b = &nt->values[col];
    if (a->kind != b->kind || a->kind == OD_VALUE_UNCHANGED) return false;
    if (a->kind == OD_VALUE_NULL) continue;
    if (a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0)) return false;
  }
  return true;
}

static int apply_update(sq_sink *s, sq_rel *r, const od_change *c, od_error *err) {
  const od_tuple *mt = &c->newtup;
  int rc;
  if (r->keyed) {
    if (c->old_kind == 'K' || c->old_kind == 'O') {
      mt = &c->oldtup;
      if ((rc = check_tuple(s, r, mt, "old", err))) return rc;
    }
  } else {
    if ((rc = need_old_row(s, r, c, "update", err))) return rc;
    mt = &c->oldtup;
  }
  sq_variant *v;
  bool keep = r->keyed && key_kept(r, mt, &c->newtup);
  rc = sq_variant_get(s, r, keep ? SQ_V_UPDATE_KEEP : SQ_V_UPDATE, &c->newtup, r->keyed ? NULL : mt, &v, err);
  /* Nothing but the key to set (a key-only table, or every other value UNCHANGED): the full
   * update, which tells a present row from a missing one (written, or skipped with a warning). */
  if (!rc && !v && keep) rc = sq_variant_get(s, r, SQ_V_UPDATE, &c->newtup, NULL, &v, err);
  if (rc) return rc;
  if (!v) { /* every value unchanged: nothing to write */
    s->stats.updated++;
    return OD_OK;
  }
  int changes = 0;
  if ((rc = sq_bind(s, r, v->stmt, v->plan, v->nplan, &c->newtup, mt, err)) ||
      (rc = step_done(s, r->target, "update", v->stmt, &changes, err)))
    return rc;
  if (changes > 0) {
    s->stats.updated++;
    return OD_OK;
  }
  if (!v->new_unchanged) { /* the row is missing but we have all of it: write it */
    if ((rc = apply_insert(s, r, &c->newtup, err))) return rc;
    s->stats.missing_upserted++;
    return OD_OK;
  }
  char key[256];
  if (r->keyed)
    describe_key(r, mt, key, sizeof key);
  else
    snprintf(key, sizeof key, "no row equal to the old row");
  od_warn("sqlite sink %s: table %s: update of a missing row (%s) has unchanged TOAST values; "
          "row skipped", s->path, r->target, key);
  s->stats.missing_skipped++;
  return OD_OK;
}

static int apply_delete(sq_sink *s, sq_rel *r, const od_change *c, od_error *err) {
  sqlite3_stmt *st;
  const uint16_t *plan;
  int nplan, rc;
  if (r->keyed) {
    if (c->old_kind != 'K' && c->old_kind != 'O')
      return OD_FAIL(err, OD_ESINK, "sqlite sink %s: table %s: delete without the old key", s->path, r->target);
    if ((rc = check_tuple(s, r, &c->oldtup, "old", err))) return rc;
    if ((rc = sq_stmt_delete_keyed(s, r, &st, err))) return rc;
    plan = r->key_plan;
    nplan = r->nkey;
  } else {
    if ((rc = need_old_row(s, r, c, "delete", err))) return rc;
    sq_variant *v;
    if ((rc = sq_variant_get(s, r, SQ_V_DELETE, NULL, &c->oldtup, &v, err))) return rc;
    st = v->stmt;
    plan = v->plan;
    nplan = v->nplan;
  }
  int changes = 0;
  if ((rc = sq_bind(s, r, st, plan, nplan, &c->oldtup, &c->oldtup, err)) ||
      (rc = step_done(s, r->target, "delete", st, &changes, err)))
    return rc;
  if (changes > 0)
    s->stats.deleted++;
  else
    s->stats.delete_missing++;
  return OD_OK;
}

static bool is_insert(const od_change *c) { return c->op == OD_OP_INSERT || c->op == OD_OP_READ; }

/* A change the multi-row upsert (INSERT ... ON CONFLICT (key) DO UPDATE SET every other column)
 * writes exactly as its own statement would: an insert, or, in a keyed table, an update that
 * carries every value (no UNCHANGED TOAST value) and keeps its key. Such an update sets the row to
 * the new tuple when it is there and writes it when it is missing, which is what apply_update does
 * (UPDATE, then INSERT of the full row when nothing matched). */
static bool upsertable(const sq_rel *r, const od_change *c) {
  if (c->rel != r->rel) return false;
  if (is_insert(c)) return true;
  if (c->op != OD_OP_UPDATE || !r->keyed) return false;
  const od_tuple *nt = &c->newtup, *mt = nt;
  if (nt->ncolumns != r->rel->ncolumns || !nt->values) return false;
  for (int j = 0; j < nt->ncolumns; j++)
    if (nt->values[j].kind == OD_VALUE_UNCHANGED) return false;
  if (c->old_kind == 'K' || c->old_kind == 'O') {
    mt = &c->oldtup;
    if (mt->ncolumns != r->rel->ncolumns || !mt->values) return false;
  }
  return key_kept(r, mt, nt);
}

/* When changes[i..] start a run of SQ_INSERT_MANY upsertable changes of r's relation, write its
 * first r->many_rows (SQ_INSERT_MANY, or fewer for a very wide table) in one statement: one step,
 * one cursor and one statement halt instead of one per row. *done = how many were written (0: not
 * such a run, or the table is too wide for a multi-row statement); *next_try = the first index
 * where a run may start (no run starts before the change that broke this one). Updates written this
 * way count as `updated` (a missing row among them is written too, but not told apart). */
static int apply_upsert_run(sq_sink *s, sq_rel *r, const od_change *changes, size_t i, size_t n, size_t *done,
                            size_t *next_try, od_error *err) {
  *done = 0;
  if (n - i < SQ_INSERT_MANY || r->many_rows < 0) {
    *next_try = n - i < SQ_INSERT_MANY ? n : i + 1;
    return OD_OK;
  }
  size_t k = 0;
  while (k < SQ_INSERT_MANY && upsertable(r, &changes[i + k])) k++;
  if (k < SQ_INSERT_MANY) {
    *next_try = i + (k ? k : 1); /* the change that broke the run (another table's) may start one */
    return OD_OK;
  }
  sqlite3_stmt *st;
  int rows, rc = sq_stmt_insert_many(s, r, &st, &rows, err);
  if (rc || !st) return rc;
  for (int j = 0; j < rows; j++)
    if ((rc = check_tuple(s, r, &changes[i + (size_t)j].newtup, "new", err))) return rc;
  if ((rc = sq_bind_rows(s, r, st, changes + i, rows, err)) || (rc = step_done(s, r->target, "insert", st, NULL, err)))
    return rc;
  for (int j = 0; j < rows; j++) {
    if (is_insert(&changes[i + (size_t)j]))
      s->stats.inserted++;
    else
      s->stats.updated++;
  }
  s->stats.multi_inserts++;
  *done = (size_t)rows;
  *next_try = i + (size_t)rows;
  return OD_OK;
}

static int sq_apply(od_sink *base, const od_change *changes, size_t n, od_error *err) {
  sq_sink *s = (sq_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: apply without begin", s->path);
  size_t next_run = 0; /* no run of upserts starts before this index */
  for (size_t i = 0; i < n; i++) {
    const od_change *c = &changes[i];
    if (c->op == OD_OP_MESSAGE) continue;
    if (!c->rel)
      return OD_FAIL(err, OD_EINVAL, "sqlite sink %s: change %zu (op %c) has no relation", s->path, i, c->op);
    sq_rel *r;
    if (c->op == OD_OP_TRUNCATE && (c->truncate_flags & OD_TRUNCATE_START_OVER) && !od_relmap_find(&s->rels, c->rel))
      s->start_over = c->rel;
    int rc = sq_rel_get(s, c->rel, &r, err);
    s->start_over = NULL;
    if (rc) return rc;
    if (i >= next_run && (is_insert(c) || c->op == OD_OP_UPDATE)) {
      size_t done;
      if ((rc = apply_upsert_run(s, r, changes, i, n, &done, &next_run, err))) return rc;
      if (done) {
        i += done - 1;
        continue;
      }
    }
    switch (c->op) {
      case OD_OP_INSERT:
      case OD_OP_READ:
        if (!(rc = check_tuple(s, r, &c->newtup, "new", err))) rc = apply_insert(s, r, &c->newtup, err);
        if (!rc) s->stats.inserted++;
        break;
      case OD_OP_UPDATE:
        if (!(rc = check_tuple(s, r, &c->newtup, "new", err))) rc = apply_update(s, r, c, err);
        break;
      case OD_OP_DELETE:
        rc = apply_delete(s, r, c, err);
        break;
      case OD_OP_TRUNCATE: {
        sqlite3_stmt *st;
        if (!(rc = sq_stmt_truncate(s, r, &st, err))) rc = step_done(s, r->target, "truncate", st, NULL, err);
        if (!rc) s->stats.truncated++;
        break;
      }
      default:
        return OD_FAIL(err, OD_EUNSUPPORTED, "sqlite sink %s: table %s: unknown operation %d", s->path,
                       r->target, c->op);
    }
    if (rc) return rc;
  }
  return OD_OK;
}

int od_sink_sqlite_stats(const od_sink *s, od_sqlite_stats *out) {
  if (!s || s->ops != &od_sink_sqlite || !out) return OD_EINVAL;
  *out = ((const sq_sink *)s)->stats;
  out->wal_checkpoints = sq_ckpt_runs((const sq_sink *)s);
  return OD_OK;
}

const od_sink_ops od_sink_sqlite = {
    .type = "sqlite",
    .caps = OD_SINK_ATOMIC_CHECKPOINT | OD_SINK_MARKS | OD_SINK_TEXT_MARKS | OD_SINK_TABLE_OWNERSHIP |
            OD_SINK_DEAD_LETTERS,
    .max_writers = 1, /* SQLite has one writer at a time */
    .open = sq_open,
    .read_position = sq_read_position,
    .begin = sq_begin,
    .apply = sq_apply,
    .commit = sq_commit,
    .commit_data = sq_commit_data,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .put_dead_letter = sq_put_dead_letter,
    .list_dead_letters = sq_list_dead_letters,
    .drop_dead_letter = sq_drop_dead_letter,
    .close = sq_close,
    .set_mark = sq_set_mark,
    .get_mark = sq_get_mark,
    .set_text_mark = sq_set_text_mark,
    .get_text_mark = sq_get_text_mark,
    .check_tables = sq_check_tables,
    .resnapshot_table = sq_resnapshot_table,
};
