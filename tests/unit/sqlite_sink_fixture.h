/* sqlite_sink_fixture.h — what the SQLite sink's unit tests share: a fresh database path per
 * test, the sink opened through its vtable, changes built in memory, one-transaction helpers, and
 * a second sqlite3 connection to read (q, qd, sign_of) or set up (x) the database file.
 *
 * Include after test.h (the helpers fail a test through OD_TEST_FAIL). Header-only, one copy per
 * test program: everything is static. Owns db_path (the current test's database, set by
 * fresh_path) and qbuf (q's result, valid until the next call); the relations below are static
 * test data. Never touches: the sink's internals beyond its public stats call.
 */
#ifndef ODSYNC_TEST_SQLITE_SINK_FIXTURE_H
#define ODSYNC_TEST_SQLITE_SINK_FIXTURE_H

#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "odsync/registry.h"
#include "odsync/sink.h"
#include "sinks/sqlite.h"
#include "sinks/sqlite_internal.h"
#include "test.h"

extern const od_sink_ops od_sink_sqlite;
#define SQF_UNUSED __attribute__((unused))
static const od_sink_ops *ops SQF_UNUSED = &od_sink_sqlite;

static char db_path[512] SQF_UNUSED;

/* A fresh database path in a fresh temporary directory (inside a subdirectory that does not
 * exist yet, to exercise directory creation). */
static inline const char *fresh_path(void) {
  char tmpl[] = "/tmp/odsync-sqlite-XXXXXX";
  char *dir = mkdtemp(tmpl);
  if (!dir) OD_TEST_FAIL("mkdtemp failed");
  snprintf(db_path, sizeof db_path, "%s/sub/dir/target.db", dir);
  return db_path;
}

static inline int open_with(const char *path, const char *busy, const char *pipeline, od_sink **out,
                     od_error *err) {
  od_config_entry e[3];
  int n = 0;
  if (path) e[n++] = (od_config_entry){.key = "path", .value = (char *)path, .line = 3, .col = 11};
  if (busy) e[n++] = (od_config_entry){.key = "busy_timeout_ms", .value = (char *)busy, .line = 4, .col = 11};
  od_config_section sec = {.file = "test.yaml", .path = "pipelines[0].sink", .type = "sqlite",
                           .line = 2, .col = 5, .entries = e, .nentries = n};
  return ops->open(&sec, pipeline, out, err);
}

static inline od_sink *open_sink(const char *path) {
  od_sink *s = NULL;
  od_error err = {0};
  int rc = open_with(path, NULL, "p1", &s, &err);
  if (rc != OD_OK) OD_TEST_FAIL("open: %s", err.msg);
  return s;
}

/* First column of the first row of `sql` as text ("NULL" for NULL, "(none)" without rows). */
static char qbuf[4096] SQF_UNUSED;
static inline const char *q(const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) OD_TEST_FAIL("open reader");
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    snprintf(qbuf, sizeof qbuf, "prepare %s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
    OD_TEST_FAIL("%s", qbuf);
  }
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(qbuf, sizeof qbuf, "%s", t ? (const char *)t : "NULL");
  } else {
    snprintf(qbuf, sizeof qbuf, "(none)");
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return qbuf;
}

/* First column of the first row of `sql` as a double (the stored REAL, bit for bit). */
static inline double qd(const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  double d = -1;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) OD_TEST_FAIL("open reader");
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    OD_TEST_FAIL("prepare %s", sql);
  }
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_FLOAT) d = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return d;
}

#define TV(s) ((od_value){.data = (s), .len = (uint32_t)strlen(s), .kind = OD_VALUE_TEXT})
#define NV ((od_value){.kind = OD_VALUE_NULL})
#define UV ((od_value){.kind = OD_VALUE_UNCHANGED})

static inline od_change ch_ins(const od_relation *rel, od_value *v) {
  return (od_change){.op = OD_OP_INSERT, .rel = rel, .newtup = {rel->ncolumns, v}};
}
static inline od_change ch_upd(const od_relation *rel, char old_kind, od_value *oldv, od_value *newv) {
  return (od_change){.op = OD_OP_UPDATE, .rel = rel, .old_kind = old_kind,
                     .oldtup = {oldv ? rel->ncolumns : 0, oldv}, .newtup = {rel->ncolumns, newv}};
}
static inline od_change ch_del(const od_relation *rel, char old_kind, od_value *oldv) {
  return (od_change){.op = OD_OP_DELETE, .rel = rel, .old_kind = old_kind, .oldtup = {rel->ncolumns, oldv}};
}

/* Positions in these tests are PostgreSQL LSNs given as numbers; 0 commits the data alone. */
static inline int commit_at(od_sink *s, uint64_t v, od_error *err) {
  if (!v) return s->ops->commit_data(s, err);
  od_pos p = od_pos_legacy_lsn(v);
  return s->ops->commit(s, &p, err);
}

static inline int read_pos(od_sink *s, uint64_t *out, od_error *err) {
  od_pos p;
  int rc = s->ops->read_position(s, &p, err);
  *out = od_pos_to_u64(&p);
  return rc;
}

/* One sink transaction of n changes committed at `pos`; returns the apply/commit status. */
static inline int txn(od_sink *s, const od_change *c, size_t n, uint64_t pos, od_error *err) {
  int rc = ops->begin(s, err);
  if (rc) return rc;
  rc = ops->apply(s, c, n, err);
  if (rc == OD_OK) rc = commit_at(s, pos, err);
  if (rc) ops->rollback(s);
  return rc;
}
#define TXN(s, pos, ...)                                                                  \
  do {                                                                                    \
    od_change cs_[] = {__VA_ARGS__};                                                      \
    od_error e_ = {0};                                                                    \
    int rc_ = txn((s), cs_, sizeof cs_ / sizeof cs_[0], (pos), &e_);                      \
    if (rc_ != OD_OK) OD_TEST_FAIL("transaction failed: %s", e_.msg);                     \
  } while (0)

static inline od_sqlite_stats stats(od_sink *s) {
  od_sqlite_stats st;
  CHECK_INT(od_sink_sqlite_stats(s, &st), OD_OK);
  return st;
}

/* users(id int4 key, name text, score float8) */
static od_column users_cols[] SQF_UNUSED = {
    {.name = "id", .type_oid = 23, .key = true},
    {.name = "name", .type_oid = 25},
    {.name = "score", .type_oid = 701},
};
static od_relation users SQF_UNUSED = {.oid = 1, .schema = "public", .name = "users", .replica_identity = 'd',
                            .ncolumns = 3, .columns = users_cols, .version = 1, .has_primary_key = true};

/* log(msg text, n int, note text): keyless, REPLICA IDENTITY FULL */
static od_column log_cols[] SQF_UNUSED = {{.name = "msg", .type_oid = 25}, {.name = "n", .type_oid = 23},
                               {.name = "note", .type_oid = 25}};
static od_relation logrel SQF_UNUSED = {.oid = 4, .schema = "public", .name = "log", .replica_identity = 'f',
                             .ncolumns = 3, .columns = log_cols};

/* Run SQL on the sink database through a second connection (setup the sink does not do). */
static inline void x(const char *sql) {
  sqlite3 *db;
  if (sqlite3_open(db_path, &db) != SQLITE_OK) OD_TEST_FAIL("open writer");
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(qbuf, sizeof qbuf, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
    OD_TEST_FAIL("%s", qbuf);
  }
  sqlite3_close(db);
}

/* Sign of the float in column `col` of the row `where` (1 negative, 0 positive, -1 not a REAL). */
static inline int sign_of(const char *table, const char *col, const char *where) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s", col, table, where);
  sqlite3 *db;
  sqlite3_stmt *st;
  int out = -1;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) OD_TEST_FAIL("open reader");
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    OD_TEST_FAIL("prepare %s", sql);
  }
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_FLOAT)
    out = signbit(sqlite3_column_double(st, 0)) ? 1 : 0;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

#endif
