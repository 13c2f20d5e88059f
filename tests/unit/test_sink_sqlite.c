/* Unit tests for the SQLite sink: changes built in memory, applied through the vtable, and the
 * database file read back with a separate sqlite3 connection. */
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
static const od_sink_ops *ops = &od_sink_sqlite;

/* ---- helpers ------------------------------------------------------------------------------- */

static char db_path[512];

/* A fresh database path in a fresh temporary directory (inside a subdirectory that does not
 * exist yet, to exercise directory creation). */
static const char *fresh_path(void) {
  char tmpl[] = "/tmp/odsync-sqlite-XXXXXX";
  char *dir = mkdtemp(tmpl);
  if (!dir) OD_TEST_FAIL("mkdtemp failed");
  snprintf(db_path, sizeof db_path, "%s/sub/dir/target.db", dir);
  return db_path;
}

static int open_with(const char *path, const char *busy, const char *pipeline, od_sink **out,
                     od_error *err) {
  od_config_entry e[3];
  int n = 0;
  if (path) e[n++] = (od_config_entry){.key = "path", .value = (char *)path, .line = 3, .col = 11};
  if (busy) e[n++] = (od_config_entry){.key = "busy_timeout_ms", .value = (char *)busy, .line = 4, .col = 11};
  od_config_section sec = {.file = "test.yaml", .path = "pipelines[0].sink", .type = "sqlite",
                           .line = 2, .col = 5, .entries = e, .nentries = n};
  return ops->open(&sec, pipeline, out, err);
}

static od_sink *open_sink(const char *path) {
  od_sink *s = NULL;
  od_error err = {0};
  int rc = open_with(path, NULL, "p1", &s, &err);
  if (rc != OD_OK) OD_TEST_FAIL("open: %s", err.msg);
  return s;
}

/* First column of the first row of `sql` as text ("NULL" for NULL, "(none)" without rows). */
static char qbuf[4096];
static const char *q(const char *sql) {
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
static double qd(const char *sql) {
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

static od_change ch_ins(const od_relation *rel, od_value *v) {
  return (od_change){.op = OD_OP_INSERT, .rel = rel, .newtup = {rel->ncolumns, v}};
}
static od_change ch_upd(const od_relation *rel, char old_kind, od_value *oldv, od_value *newv) {
  return (od_change){.op = OD_OP_UPDATE, .rel = rel, .old_kind = old_kind,
                     .oldtup = {oldv ? rel->ncolumns : 0, oldv}, .newtup = {rel->ncolumns, newv}};
}
static od_change ch_del(const od_relation *rel, char old_kind, od_value *oldv) {
  return (od_change){.op = OD_OP_DELETE, .rel = rel, .old_kind = old_kind, .oldtup = {rel->ncolumns, oldv}};
}

/* Positions in these tests are PostgreSQL LSNs given as numbers; 0 commits the data alone. */
static int commit_at(od_sink *s, uint64_t v, od_error *err) {
  if (!v) return s->ops->commit_data(s, err);
  od_pos p = od_pos_legacy_lsn(v);
  return s->ops->commit(s, &p, err);
}

static int read_pos(od_sink *s, uint64_t *out, od_error *err) {
  od_pos p;
  int rc = s->ops->read_position(s, &p, err);
  *out = od_pos_to_u64(&p);
  return rc;
}

/* One sink transaction of n changes committed at `pos`; returns the apply/commit status. */
static int txn(od_sink *s, const od_change *c, size_t n, uint64_t pos, od_error *err) {
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

static od_sqlite_stats stats(od_sink *s) {
  od_sqlite_stats st;
  CHECK_INT(od_sink_sqlite_stats(s, &st), OD_OK);
  return st;
}

/* users(id int4 key, name text, score float8) */
static od_column users_cols[] = {
    {.name = "id", .type_oid = 23, .key = true},
    {.name = "name", .type_oid = 25},
    {.name = "score", .type_oid = 701},
};
static od_relation users = {.oid = 1, .schema = "public", .name = "users", .replica_identity = 'd',
                            .ncolumns = 3, .columns = users_cols, .version = 1, .has_primary_key = true};

/* ---- tests --------------------------------------------------------------------------------- */

TEST(registered_as_sqlite) {
  CHECK(od_sink_find("sqlite") == &od_sink_sqlite);
  CHECK_STR(od_sink_sqlite.type, "sqlite");
}

TEST(open_creates_directories_wal_and_checkpoint_table) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  CHECK(access(path, F_OK) == 0);
  CHECK_STR(q("PRAGMA journal_mode"), "wal");
  CHECK_STR(q("SELECT group_concat(name || ' ' || type || ' ' || pk, ', ') FROM "
              "pragma_table_info('_odsync_checkpoint')"),
            "pipeline TEXT 1, position INTEGER 0, position_lsn TEXT 0, updated_at TEXT 0, position_text TEXT 0");
  uint64_t pos = 99;
  od_error err = {0};
  CHECK_INT(read_pos(s, &pos, &err), OD_OK);
  CHECK_INT(pos, 0);
  ops->close(s);
}

TEST(config_errors_name_the_key_and_the_path) {
  od_sink *s = NULL;
  od_error err = {0};
  CHECK_INT(open_with(NULL, NULL, "p1", &s, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "path");
  CHECK(s == NULL);

  od_config_entry e[] = {{.key = "path", .value = "/tmp/x.db"}, {.key = "pth", .value = "y"}};
  od_config_section sec = {.file = "test.yaml", .path = "pipelines[0].sink", .type = "sqlite",
                           .entries = e, .nentries = 2};
  CHECK_INT(ops->open(&sec, "p1", &s, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "pth");

  fresh_path();
  CHECK_INT(open_with(db_path, "-5", "p1", &s, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "busy_timeout_ms");

  CHECK(open_with("/proc/odsync-no/such.db", NULL, "p1", &s, &err) != OD_OK);
  CHECK_CONTAINS(err.msg, "sqlite sink /proc/odsync-no/such.db");
}

TEST(cache_mb_sets_the_page_cache_of_the_sink_connection) {
  od_config_entry e[] = {{.key = "path", .value = (char *)fresh_path()}, {.key = "cache_mb", .value = "0"}};
  od_config_section sec = {.file = "test.yaml", .path = "pipelines[0].sink", .type = "sqlite",
                           .entries = e, .nentries = 2};
  od_sink *s = NULL;
  od_error err = {0};
  CHECK_INT(ops->open(&sec, "p1", &s, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "cache_mb");
  e[1].value = "96";
  CHECK_INT(ops->open(&sec, "p1", &s, &err), OD_OK);
  sqlite3_stmt *st;
  CHECK_INT(sqlite3_prepare_v2(((sq_sink *)s)->db, "PRAGMA cache_size", -1, &st, NULL), SQLITE_OK);
  CHECK_INT(sqlite3_step(st), SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(st, 0), -96 * 1024);
  sqlite3_finalize(st);
  ops->close(s);
  s = open_sink(fresh_path()); /* default: 32 MB */
  CHECK_INT(sqlite3_prepare_v2(((sq_sink *)s)->db, "PRAGMA cache_size", -1, &st, NULL), SQLITE_OK);
  CHECK_INT(sqlite3_step(st), SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(st, 0), -32 * 1024);
  sqlite3_finalize(st);
  ops->close(s);
}

TEST(create_table_with_declared_types_in_source_order) {
  od_column cols[] = {
      {.name = "k2", .type_oid = 21}, {.name = "k4", .type_oid = 23, .key = true},
      {.name = "k8", .type_oid = 20}, {.name = "o", .type_oid = 26},
      {.name = "b", .type_oid = 16},  {.name = "f4", .type_oid = 700},
      {.name = "f8", .type_oid = 701}, {.name = "raw", .type_oid = 17},
      {.name = "num", .type_oid = 1700}, {.name = "ts", .type_oid = 1184},
      {.name = "j", .type_oid = 3802}, {.name = "u", .type_oid = 2950},
      {.name = "arr", .type_oid = 1007}, {.name = "t", .type_oid = 25, .key = true},
  };
  od_relation rel = {.oid = 2, .schema = "public", .name = "all_types", .ncolumns = 14, .columns = cols};
  od_sink *s = open_sink(fresh_path());
  TXN(s, 10, {.op = OD_OP_TRUNCATE, .rel = &rel});
  CHECK_STR(q("SELECT group_concat(name || ':' || type || ':' || pk, ' ') FROM pragma_table_info('all_types')"),
            "k2:INTEGER:0 k4:INTEGER:1 k8:INTEGER:0 o:INTEGER:0 b:INTEGER:0 f4::0 f8::0 "
            "raw:BLOB:0 num:TEXT:0 ts:TEXT:0 j:TEXT:0 u:TEXT:0 arr:TEXT:0 t:TEXT:2");
  ops->close(s);
}

TEST(type_mapping_of_values) {
  od_column cols[] = {
      {.name = "id", .type_oid = 20, .key = true}, {.name = "i2", .type_oid = 21},
      {.name = "o", .type_oid = 26},  {.name = "bt", .type_oid = 16},
      {.name = "bf", .type_oid = 16}, {.name = "f", .type_oid = 701},
      {.name = "pinf", .type_oid = 700}, {.name = "ninf", .type_oid = 701},
      {.name = "nan", .type_oid = 701}, {.name = "raw", .type_oid = 17},
      {.name = "raw0", .type_oid = 17}, {.name = "empty", .type_oid = 25},
      {.name = "nul", .type_oid = 25}, {.name = "num", .type_oid = 1700},
      {.name = "bin", .type_oid = 17},
  };
  od_relation rel = {.oid = 3, .schema = "public", .name = "vals", .ncolumns = 15, .columns = cols};
  od_value v[] = {TV("-9223372036854775808"), TV("-32768"), TV("4294967295"), TV("t"), TV("f"),
                  TV("1.5e-7"), TV("Infinity"), TV("-Infinity"), TV("NaN"), TV("\\x0a0bFF00"), TV("\\x"),
                  TV(""), NV, TV("12345678901234567890.000000000001"),
                  {.data = "\x01\x02", .len = 2, .kind = OD_VALUE_BINARY}};
  od_sink *s = open_sink(fresh_path());
  TXN(s, 1, ch_ins(&rel, v));
  CHECK_STR(q("SELECT typeof(id) || ' ' || id FROM vals"), "integer -9223372036854775808");
  CHECK_STR(q("SELECT typeof(i2) || ' ' || i2 || ' ' || typeof(o) || ' ' || o FROM vals"),
            "integer -32768 integer 4294967295");
  CHECK_STR(q("SELECT typeof(bt) || bt || typeof(bf) || bf FROM vals"), "integer1integer0");
  CHECK_STR(q("SELECT typeof(f) || ' ' || (f = 1.5e-7) FROM vals"), "real 1");
  CHECK_STR(q("SELECT typeof(pinf) || (pinf > 1e308) || typeof(ninf) || (ninf < -1e308) FROM vals"),
            "real1real1");
  CHECK_STR(q("SELECT typeof(nan) || ' ' || nan FROM vals"), "text NaN");
  CHECK_STR(q("SELECT typeof(raw) || ' ' || hex(raw) FROM vals"), "blob 0A0BFF00");
  CHECK_STR(q("SELECT typeof(raw0) || ' ' || length(raw0) FROM vals"), "blob 0");
  CHECK_STR(q("SELECT typeof(empty) || ' [' || empty || ']' FROM vals"), "text []");
  CHECK_STR(q("SELECT typeof(nul) FROM vals"), "null");
  CHECK_STR(q("SELECT typeof(num) || ' ' || num FROM vals"), "text 12345678901234567890.000000000001");
  CHECK_STR(q("SELECT typeof(bin) || ' ' || hex(bin) FROM vals"), "blob 0102");
  ops->close(s);
}

/* docs/TYPES.md edge values: -0 -> REAL -0.0 (float columns have no declared type, so no affinity
 * drops the sign), float4 text read as a double, the extreme doubles, numbers that do not fit
 * INTEGER/REAL stay TEXT, bytea with NULs, 'NaN' stays TEXT. */
TEST(type_mapping_edge_values) {
  od_column cols[] = {
      {.name = "id", .type_oid = 23, .key = true}, {.name = "nz8", .type_oid = 701},
      {.name = "nz4", .type_oid = 700},             {.name = "f4", .type_oid = 700},
      {.name = "tiny", .type_oid = 701},            {.name = "huge", .type_oid = 701},
      {.name = "xid8", .type_oid = 5069},           {.name = "num", .type_oid = 1700},
      {.name = "nul", .type_oid = 17},              {.name = "nan4", .type_oid = 700},
      {.name = "chr", .type_oid = 1042},            {.name = "money", .type_oid = 790},
  };
  od_relation rel = {.oid = 4, .schema = "public", .name = "edges", .ncolumns = 12, .columns = cols};
  od_value v[] = {TV("1"), TV("-0"), TV("-0"), TV("1.1"), TV("5e-324"), TV("1.7976931348623157e+308"),
                  TV("18446744073709551615"), TV("1e-1000"), TV("\\x000100"), TV("NaN"), TV("ab   "),
                  TV("-$92,233,720,368,547,758.08")};
  od_sink *s = open_sink(fresh_path());
  TXN(s, 1, ch_ins(&rel, v));
  /* SQLite's text form of -0.0 is "0.0"; the stored double keeps its sign. */
  CHECK_STR(q("SELECT typeof(nz8) || ' ' || (nz8 = 0) || ' ' || typeof(nz4) || ' ' || (nz4 = 0) FROM edges"),
            "real 1 real 1");
  CHECK(qd("SELECT nz8 FROM edges") == 0 && signbit(qd("SELECT nz8 FROM edges")));
  CHECK(qd("SELECT nz4 FROM edges") == 0 && signbit(qd("SELECT nz4 FROM edges")));
  /* Compared as doubles read back through the C API against glibc's strtod: SQLite's own parsing
   * of a literal uses long double, which valgrind does not emulate bit-exactly. */
  CHECK(qd("SELECT f4 FROM edges") == strtod("1.1", NULL));
  CHECK(qd("SELECT tiny FROM edges") == strtod("5e-324", NULL));
  CHECK(qd("SELECT huge FROM edges") == strtod("1.7976931348623157e+308", NULL));
  CHECK_STR(q("SELECT typeof(xid8) || ' ' || xid8 || ' ' || typeof(num) || ' ' || num FROM edges"),
            "text 18446744073709551615 text 1e-1000");
  CHECK_STR(q("SELECT typeof(nul) || ' ' || hex(nul) FROM edges"), "blob 000100");
  CHECK_STR(q("SELECT typeof(nan4) || ' ' || nan4 || '|' || chr || '|' || money FROM edges"),
            "text NaN|ab   |-$92,233,720,368,547,758.08");
  ops->close(s);
}

TEST(bad_integer_names_table_column_and_value) {
  od_sink *s = open_sink(fresh_path());
  od_value v[] = {TV("12abc"), TV("x"), NV};
  od_change c = ch_ins(&users, v);
  od_error err = {0};
  CHECK_INT(txn(s, &c, 1, 5, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "users.id");
  CHECK_CONTAINS(err.msg, "12abc");
  CHECK_CONTAINS(err.msg, db_path);
  od_value w[] = {TV("99999999999999999999"), TV("x"), NV};
  c = ch_ins(&users, w);
  CHECK_INT(txn(s, &c, 1, 5, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "99999999999999999999");
  od_value b[] = {TV("1"), TV("x"), TV("1.2.3")};
  c = ch_ins(&users, b);
  CHECK_INT(txn(s, &c, 1, 5, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "users.score");
  CHECK_STR(q("SELECT count(*) FROM _odsync_checkpoint"), "0");
  /* just past int64 either way, a lone sign, empty, blanks, hex: not integers */
  const char *bad[] = {"9223372036854775808", "-9223372036854775809", "-", "", " 1", "1 ", "0x10"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    od_value w2[] = {TV(bad[i]), TV("x"), NV};
    c = ch_ins(&users, w2);
    CHECK_INT(txn(s, &c, 1, 5, &err), OD_ESINK);
    CHECK_CONTAINS(err.msg, "as an integer");
  }
  od_value edge[] = {TV("9223372036854775807"), TV("max"), NV}, zero[] = {TV("-0"), TV("zero"), NV};
  od_change ce[] = {ch_ins(&users, edge), ch_ins(&users, zero)};
  CHECK_INT(txn(s, ce, 2, 6, &err), OD_OK);
  CHECK_STR(q("SELECT group_concat(id || name, ' ') FROM (SELECT * FROM users ORDER BY id)"),
            "0zero 9223372036854775807max");
  ops->close(s);
}

TEST(keyed_insert_update_delete) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), TV("1.5")}, b[] = {TV("2"), TV("bob"), NV};
  TXN(s, 1, ch_ins(&users, a), ch_ins(&users, b));
  CHECK_STR(q("SELECT group_concat(id || '=' || name, ',') FROM (SELECT * FROM users ORDER BY id)"), "1=ann,2=bob");
  /* replayed insert is an upsert */
  od_value a2[] = {TV("1"), TV("anne"), TV("2.5")};
  TXN(s, 2, ch_ins(&users, a2));
  CHECK_STR(q("SELECT name || ' ' || score FROM users WHERE id = 1"), "anne 2.5");
  CHECK_STR(q("SELECT count(*) FROM users"), "2");
  /* update without old tuple matches on the new key */
  od_value b2[] = {TV("2"), TV("bobby"), TV("3")};
  TXN(s, 3, ch_upd(&users, 0, NULL, b2));
  CHECK_STR(q("SELECT name || ' ' || score FROM users WHERE id = 2"), "bobby 3.0");
  od_value oldk[] = {TV("1"), NV, NV};
  TXN(s, 4, ch_del(&users, 'K', oldk));
  CHECK_STR(q("SELECT group_concat(id, ',') FROM users"), "2");
  od_value gone[] = {TV("77"), NV, NV};
  TXN(s, 5, ch_del(&users, 'K', gone));
  od_sqlite_stats st = stats(s);
  CHECK_INT(st.inserted, 3);
  CHECK_INT(st.updated, 1);
  CHECK_INT(st.deleted, 1);
  CHECK_INT(st.delete_missing, 1);
  ops->close(s);
}

TEST(key_changing_update_uses_the_old_key) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), NV}, b[] = {TV("2"), TV("bob"), NV};
  TXN(s, 1, ch_ins(&users, a), ch_ins(&users, b));
  od_value oldk[] = {TV("1"), NV, NV}, nv[] = {TV("10"), TV("ann"), TV("4")};
  TXN(s, 2, ch_upd(&users, 'K', oldk, nv));
  CHECK_STR(q("SELECT group_concat(id || '=' || name, ',') FROM (SELECT * FROM users ORDER BY id)"), "2=bob,10=ann");
  /* 'O' (full old row) also matches on its key columns */
  od_value oldo[] = {TV("2"), TV("bob"), NV}, nv2[] = {TV("20"), TV("bob"), NV};
  TXN(s, 3, ch_upd(&users, 'O', oldo, nv2));
  CHECK_STR(q("SELECT group_concat(id, ',') FROM (SELECT id FROM users ORDER BY id)"), "10,20");
  ops->close(s);
}

TEST(unchanged_toast_values_keep_the_stored_value) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("a very long toasted text"), TV("1")};
  TXN(s, 1, ch_ins(&users, a));
  od_value nv[] = {TV("1"), UV, TV("2")};
  TXN(s, 2, ch_upd(&users, 0, NULL, nv));
  CHECK_STR(q("SELECT name || ' ' || score FROM users"), "a very long toasted text 2.0");
  CHECK_INT(stats(s).updated, 1);
  ops->close(s);
}

TEST(update_of_missing_row_upserts_or_warns) {
  od_sink *s = open_sink(fresh_path());
  od_value full[] = {TV("5"), TV("eve"), TV("1")};
  TXN(s, 1, ch_upd(&users, 0, NULL, full));
  CHECK_STR(q("SELECT name FROM users WHERE id = 5"), "eve");
  od_value toast[] = {TV("6"), UV, TV("1")};
  TXN(s, 2, ch_upd(&users, 0, NULL, toast));
  CHECK_STR(q("SELECT count(*) FROM users WHERE id = 6"), "0");
  od_sqlite_stats st = stats(s);
  CHECK_INT(st.missing_upserted, 1);
  CHECK_INT(st.missing_skipped, 1);
  CHECK_INT(st.updated, 0);
  ops->close(s);
}

static od_column log_cols[] = {{.name = "msg", .type_oid = 25}, {.name = "n", .type_oid = 23},
                               {.name = "note", .type_oid = 25}};
static od_relation logrel = {.oid = 4, .schema = "public", .name = "log", .replica_identity = 'f',
                             .ncolumns = 3, .columns = log_cols};

TEST(keyless_table_updates_and_deletes_exactly_one_matching_row) {
  od_sink *s = open_sink(fresh_path());
  od_value r[] = {TV("dup"), TV("1"), NV}, o[] = {TV("other"), TV("2"), TV("")};
  TXN(s, 1, ch_ins(&logrel, r), ch_ins(&logrel, r), ch_ins(&logrel, o));
  CHECK_STR(q("SELECT count(*) FROM pragma_table_info('log') WHERE pk > 0"), "0");
  CHECK_STR(q("SELECT count(*) FROM log"), "3");
  /* the old row has a NULL: matched with IS */
  od_value nv[] = {TV("dup"), TV("7"), NV};
  TXN(s, 2, ch_upd(&logrel, 'O', r, nv));
  CHECK_STR(q("SELECT group_concat(n, ',') FROM (SELECT n FROM log ORDER BY n)"), "1,2,7");
  TXN(s, 3, ch_del(&logrel, 'O', r));
  CHECK_STR(q("SELECT group_concat(n, ',') FROM (SELECT n FROM log ORDER BY n)"), "2,7");
  /* empty string is not NULL: an old row with NULL note does not match '' */
  od_value onull[] = {TV("other"), TV("2"), NV};
  TXN(s, 4, ch_del(&logrel, 'O', onull));
  CHECK_STR(q("SELECT count(*) FROM log"), "2");
  TXN(s, 5, ch_del(&logrel, 'O', o));
  CHECK_STR(q("SELECT group_concat(msg || n, ',') FROM log"), "dup7");
  od_sqlite_stats st = stats(s);
  CHECK_INT(st.deleted, 2);
  CHECK_INT(st.delete_missing, 1);
  ops->close(s);
}

TEST(keyless_update_skips_unchanged_old_values_in_the_match) {
  od_sink *s = open_sink(fresh_path());
  od_value r[] = {TV("big"), TV("1"), TV("x")};
  TXN(s, 1, ch_ins(&logrel, r));
  od_value oldv[] = {UV, TV("1"), TV("x")}, nv[] = {UV, TV("2"), TV("y")};
  TXN(s, 2, ch_upd(&logrel, 'O', oldv, nv));
  CHECK_STR(q("SELECT msg || n || note FROM log"), "big2y");
  ops->close(s);
}

TEST(keyless_update_without_old_row_is_an_error) {
  od_sink *s = open_sink(fresh_path());
  od_value nv[] = {TV("a"), TV("1"), NV};
  od_change c = ch_upd(&logrel, 0, NULL, nv);
  od_error err = {0};
  CHECK_INT(txn(s, &c, 1, 1, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "table log");
  CHECK_CONTAINS(err.msg, "REPLICA IDENTITY FULL");
  CHECK(!err.retriable);
  od_value oldk[] = {TV("a"), NV, NV};
  c = ch_del(&logrel, 'K', oldk);
  CHECK_INT(txn(s, &c, 1, 1, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "primary key");
  ops->close(s);
}

TEST(truncate_empties_the_table_and_creates_unseen_ones) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), NV}, b[] = {TV("2"), TV("bob"), NV};
  TXN(s, 1, ch_ins(&users, a), ch_ins(&users, b));
  TXN(s, 2, {.op = OD_OP_TRUNCATE, .rel = &users}, {.op = OD_OP_TRUNCATE, .rel = &logrel});
  CHECK_STR(q("SELECT count(*) FROM users"), "0");
  CHECK_STR(q("SELECT count(*) FROM log"), "0");
  CHECK_INT(stats(s).truncated, 2);
  ops->close(s);
}

TEST(messages_are_ignored) {
  od_sink *s = open_sink(fresh_path());
  od_value m[] = {TV("prefix"), TV("content")};
  TXN(s, 1, {.op = OD_OP_MESSAGE, .newtup = {2, m}});
  CHECK_STR(q("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN ('_odsync_checkpoint', '_odsync_columns', '_odsync_tables')"), "0");
  ops->close(s);
}

/* ---- table ownership (sqlite_owner.c) ---- */

static od_column xy_cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "v", .type_oid = 25}};
static od_relation xy_public = {.oid = 10, .schema = "public", .name = "x.y", .replica_identity = 'd', .ncolumns = 2,
                                .columns = xy_cols, .version = 1, .has_primary_key = true};
static od_relation xy_schema = {.oid = 11, .schema = "x", .name = "y", .replica_identity = 'd', .ncolumns = 2,
                                .columns = xy_cols, .version = 1, .has_primary_key = true};
static od_relation users_caps = {.oid = 12, .schema = "public", .name = "USERS", .replica_identity = 'd',
                                 .ncolumns = 3, .columns = users_cols, .version = 1, .has_primary_key = true};

TEST(owner_a_second_source_table_in_one_target_is_refused) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("public")}, b[] = {TV("1"), TV("schema x")}, u[] = {TV("1"), TV("ann"), NV};
  TXN(s, 1, ch_ins(&xy_public, a), ch_ins(&users, u));
  od_error err = {0};
  od_change c = ch_ins(&xy_schema, b);
  CHECK_INT(txn(s, &c, 1, 2, &err), OD_ESCHEMA);
  CHECK(!err.retriable);
  CHECK_CONTAINS(err.msg, "table x.y: source table x.y of pipeline p1 would be written to table x.y, which already "
                          "holds source table public.\"x.y\" of the same pipeline");
  /* SQLite names ignore case: public."USERS" meets public.users */
  c = ch_ins(&users_caps, u);
  CHECK_INT(txn(s, &c, 1, 2, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "holds source table public.users");
  CHECK_STR(q("SELECT group_concat(v) FROM \"x.y\""), "public");
  CHECK_STR(q("SELECT position FROM _odsync_checkpoint"), "1");
  /* a second pipeline in the same file */
  ops->close(s);
  od_sink *s2 = NULL;
  CHECK_INT(open_with(db_path, NULL, "p2", &s2, &err), OD_OK);
  c = ch_ins(&users, u);
  CHECK_INT(txn(s2, &c, 1, 5, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "which already holds source table public.users of pipeline p1");
  ops->close(s2);
}

static int nproblems;
static char last_problem[2048];
static void note_problem(void *ctx, bool fatal, const char *msg) {
  (void)ctx;
  if (fatal) nproblems++;
  snprintf(last_problem, sizeof last_problem, "%s", msg);
}

TEST(owner_check_tables_finds_collisions_before_anything_is_written) {
  od_sink *s = open_sink(fresh_path());
  const char *schemas[] = {"public", "x", "public", "public"}, *names[] = {"x.y", "y", "Users", "users"};
  const bool keyed[] = {true, true, true, true};
  od_error err = {0};
  nproblems = 0;
  CHECK_INT(ops->check_tables(s, 2, schemas, names, keyed, note_problem, NULL, &err), 1);
  CHECK_CONTAINS(last_problem, "source tables public.\"x.y\" and x.y would both be written to table x.y");
  CHECK_INT(ops->check_tables(s, 2, schemas + 2, names + 2, keyed, note_problem, NULL, &err), 1);
  CHECK_CONTAINS(last_problem, "source tables public.\"Users\" and public.users would both be written to table users");
  CHECK_INT(ops->check_tables(s, 1, schemas, names, keyed, note_problem, NULL, &err), 0);
  const char *rs[] = {"public"}, *rn[] = {"SQLite_stat"};
  CHECK_INT(ops->check_tables(s, 1, rs, rn, keyed, note_problem, NULL, &err), 1);
  CHECK_CONTAINS(last_problem, "SQLite reserves the names beginning with sqlite_");
  ops->close(s);
}

TEST(owner_a_dropped_table_is_refused_until_it_is_re_copied) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_value u[] = {TV("1"), TV("ann"), NV}, v[] = {TV("2"), TV("bob"), NV};
  TXN(s, 7, ch_ins(&users, u));
  ops->close(s);
  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_INT(sqlite3_exec(db, "DROP TABLE users", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  s = open_sink(path);
  od_error err = {0};
  const char *schemas[] = {"public"}, *names[] = {"users"};
  const bool keyed[] = {true};
  nproblems = 0;
  CHECK_INT(ops->check_tables(s, 1, schemas, names, keyed, note_problem, NULL, &err), 1);
  CHECK_CONTAINS(last_problem, "odsync snapshot -c CONFIG -p p1 --table public.users");
  od_change c = ch_ins(&users, v);
  CHECK_INT(txn(s, &c, 1, 8, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "table users (source table public.users, pipeline p1) is gone from the sink");
  CHECK_STR(q("SELECT count(*) FROM sqlite_master WHERE name = 'users'"), "0");
  bool recreate = false;
  CHECK_INT(ops->resnapshot_table(s, "public", "users", &recreate, &err), OD_OK);
  CHECK(recreate);
  CHECK_INT(ops->check_tables(s, 1, schemas, names, keyed, note_problem, NULL, &err), 0);
  CHECK_INT(txn(s, &c, 1, 8, &err), OD_OK);
  CHECK_STR(q("SELECT group_concat(name) FROM users"), "bob");
  CHECK_STR(q("SELECT recreate FROM _odsync_tables WHERE tbl = 'users'"), "0");
  /* a table that exists is left alone by resnapshot_table */
  CHECK_INT(ops->resnapshot_table(s, "public", "users", &recreate, &err), OD_OK);
  CHECK(!recreate);
  ops->close(s);
}

TEST(checkpoint_is_atomic_with_the_data) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_error err = {0};
  od_value a[] = {TV("1"), TV("ann"), NV};
  od_change c = ch_ins(&users, a);
  /* rolled back: neither the table, the row nor the checkpoint */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_OK);
  ops->rollback(s);
  CHECK_STR(q("SELECT count(*) FROM sqlite_master WHERE name = 'users'"), "0");
  CHECK_STR(q("SELECT count(*) FROM _odsync_checkpoint"), "0");
  /* the sink recreates what the rollback removed */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_OK);
  /* a reader during the open transaction sees nothing of it */
  CHECK_STR(q("SELECT count(*) FROM sqlite_master WHERE name = 'users'"), "0");
  uint64_t pos = ((uint64_t)0x16 << 32) | 0xB374D848;
  CHECK_INT(commit_at(s, pos, &err), OD_OK);
  CHECK_STR(q("SELECT count(*) FROM users"), "1");
  CHECK_STR(q("SELECT position || ' ' || position_lsn FROM _odsync_checkpoint WHERE pipeline = 'p1'"),
            "97500059720 16/B374D848");
  CHECK_STR(q("SELECT updated_at LIKE '____-__-__T__:__:__.___Z' FROM _odsync_checkpoint"), "1");
  /* a second transaction rolled back keeps the first checkpoint */
  od_value b[] = {TV("2"), TV("bob"), NV};
  c = ch_ins(&users, b);
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_OK);
  ops->rollback(s);
  ops->close(s);

  s = open_sink(path);
  uint64_t got = 0;
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK(got == pos);
  CHECK_STR(q("SELECT count(*) FROM users"), "1");
  ops->close(s);

  /* another pipeline in the same file has its own row */
  od_sink *s2 = NULL;
  CHECK_INT(open_with(path, NULL, "p2", &s2, &err), OD_OK);
  CHECK_INT(read_pos(s2, &got, &err), OD_OK);
  CHECK_INT(got, 0);
  ops->close(s2);
}

TEST(busy_database_is_a_retriable_error) {
  const char *path = fresh_path();
  od_sink *s = NULL;
  od_error err = {0};
  CHECK_INT(open_with(path, "0", "p1", &s, &err), OD_OK);
  sqlite3 *other;
  CHECK_INT(sqlite3_open(path, &other), SQLITE_OK);
  CHECK_INT(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  CHECK_INT(ops->begin(s, &err), OD_ESINK);
  CHECK(err.retriable);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "locked");
  sqlite3_exec(other, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(other);
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(commit_at(s, 3, &err), OD_OK);
  ops->close(s);
}

/* Disk full (SQLITE_FULL, here from max_page_count on the sink's own connection, as ENOSPC gives
 * on a full file system): retriable, the message names the file and says what to do; the failed
 * transaction leaves nothing behind, and the same transaction commits once there is room again. */
TEST(disk_full_is_retriable_and_resumes) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_value a[] = {TV("1"), TV("ann"), TV("1")};
  TXN(s, 1, ch_ins(&users, a));
  sq_sink *sq = (sq_sink *)s;
  CHECK_INT(sqlite3_exec(sq->db, "PRAGMA max_page_count = 1", NULL, NULL, NULL), SQLITE_OK); /* = current size */
  static char big[64 * 1024];
  memset(big, 'x', sizeof big - 1);
  od_value b[] = {TV("2"), TV(big), TV("2")};
  od_change c = ch_ins(&users, b);
  od_error err = {0};
  CHECK_INT(txn(s, &c, 1, 2, &err), OD_ESINK);
  CHECK(err.retriable);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "full");
  CHECK_CONTAINS(err.msg, "free space");
  uint64_t pos = 0;
  CHECK_INT(read_pos(s, &pos, &err), OD_OK);
  CHECK_INT(pos, 1);
  CHECK_INT(sqlite3_exec(sq->db, "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL), SQLITE_OK);
  CHECK_INT(txn(s, &c, 1, 2, &err), OD_OK);
  CHECK_INT(read_pos(s, &pos, &err), OD_OK);
  CHECK_INT(pos, 2);
  ops->close(s);
  CHECK_STR(q("SELECT count(*) || ':' || sum(length(name)) FROM users"), "2:65538");
}

TEST(new_relation_version_adds_columns) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), TV("1")};
  TXN(s, 1, ch_ins(&users, a));
  od_column cols2[] = {
      {.name = "id", .type_oid = 23, .key = true}, {.name = "name", .type_oid = 25},
      {.name = "score", .type_oid = 701}, {.name = "active", .type_oid = 16},
      {.name = "photo", .type_oid = 17},
  };
  od_relation v2 = users;
  v2.columns = cols2;
  v2.ncolumns = 5;
  v2.version = 2;
  v2.previous = &users;
  od_value b[] = {TV("2"), TV("bob"), NV, TV("t"), TV("\\xff")};
  TXN(s, 2, ch_ins(&v2, b));
  CHECK_STR(q("SELECT group_concat(name || ':' || type, ' ') FROM pragma_table_info('users')"),
            "id:INTEGER name:TEXT score: active:INTEGER photo:BLOB");
  CHECK_STR(q("SELECT quote(active) || quote(photo) FROM users WHERE id = 1"), "NULLNULL");
  CHECK_STR(q("SELECT active || hex(photo) FROM users WHERE id = 2"), "1FF");
  /* a relation lacking a column the table has: that column gets NULL (the old version still works) */
  od_value c[] = {TV("3"), TV("cy"), NV};
  TXN(s, 3, ch_ins(&users, c));
  CHECK_STR(q("SELECT quote(active) FROM users WHERE id = 3"), "NULL");
  ops->close(s);
}

TEST(schema_qualified_names_and_quoting) {
  od_column cols[] = {{.name = "we\"ird col", .type_oid = 23, .key = true}, {.name = "select", .type_oid = 25}};
  od_relation rel = {.oid = 5, .schema = "sales", .name = "or\"ders", .ncolumns = 2, .columns = cols};
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("x")}, b[] = {TV("1"), TV("y")};
  TXN(s, 1, ch_ins(&rel, a));
  TXN(s, 2, ch_upd(&rel, 0, NULL, b));
  CHECK_STR(q("SELECT \"select\" FROM \"sales.or\"\"ders\" WHERE \"we\"\"ird col\" = 1"), "y");
  ops->close(s);
}

TEST(statements_are_reused_and_variants_evicted) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), TV("1")};
  TXN(s, 1, ch_ins(&users, a));
  od_value nv[] = {TV("1"), UV, TV("2")};
  TXN(s, 2, ch_upd(&users, 0, NULL, nv));
  uint64_t prepared = stats(s).prepared;
  for (int i = 0; i < 50; i++) {
    char score[16];
    snprintf(score, sizeof score, "%d", i);
    od_value v[] = {TV("1"), UV, TV(score)}, w[] = {TV("1"), TV("ann"), TV(score)};
    TXN(s, 3 + (uint64_t)i, ch_upd(&users, 0, NULL, v), ch_ins(&users, w));
  }
  CHECK_INT(stats(s).prepared, prepared);
  CHECK_STR(q("SELECT score FROM users"), "49.0");

  /* more update shapes than cache slots: still correct */
  od_column cols[12];
  char names[12][8];
  for (int i = 0; i < 12; i++) {
    snprintf(names[i], sizeof names[i], "c%d", i);
    cols[i] = (od_column){.name = names[i], .type_oid = 23, .key = i == 0};
  }
  od_relation wide = {.oid = 6, .schema = "public", .name = "wide", .ncolumns = 12, .columns = cols};
  od_value row[12];
  for (int i = 0; i < 12; i++) row[i] = TV("0");
  TXN(s, 100, ch_ins(&wide, row));
  for (int round = 0; round < 2; round++) {
    for (int k = 1; k < 12; k++) {
      od_value u[12];
      for (int i = 0; i < 12; i++) u[i] = (i == k) ? UV : TV(round ? "2" : "1");
      u[0] = TV("0");
      TXN(s, 101 + (uint64_t)(round * 12 + k), ch_upd(&wide, 0, NULL, u));
    }
  }
  CHECK_STR(q("SELECT c1 || c2 || c11 FROM wide"), "222");
  ops->close(s);
}

TEST(apply_outside_a_transaction_is_refused) {
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("1"), TV("ann"), NV};
  od_change c = ch_ins(&users, a);
  od_error err = {0};
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_EINVAL);
  CHECK_INT(commit_at(s, 1, &err), OD_EINVAL);
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->begin(s, &err), OD_EINVAL);
  ops->rollback(s);
  ops->close(s);
}

/* ---- schema evolution (sqlite_schema.c) ----------------------------------------------------- */

/* Run SQL on the sink database through a second connection (setup the sink does not do). */
static void x(const char *sql) {
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

static int txn_err(od_sink *s, od_change c, uint64_t pos, od_error *err) {
  memset(err, 0, sizeof *err);
  return txn(s, &c, 1, pos, err);
}

#define C(n, oid, mod, tname, att, k) \
  {.name = (n), .type_oid = (oid), .typmod = (mod), .type_name = tname, .attnum = (att), .key = (k)}
#define TABLE_INFO "SELECT group_concat(name || ':' || type, ' ') FROM pragma_table_info('orders')"

static od_relation orders_rel(od_column *cols, uint16_t n, uint32_t version) {
  return (od_relation){.oid = 9, .schema = "public", .name = "orders", .replica_identity = 'd',
                       .ncolumns = n, .columns = cols, .version = version, .has_primary_key = true};
}

static od_column o1[] = {C("id", 23, -1, "integer", 1, true), C("qty", 23, -1, "integer", 2, false),
                         C("price", 1700, 655366, "numeric(10,2)", 3, false),
                         C("label", 1043, 14, "character varying(10)", 4, false)};

TEST(evolve_add_with_default_drop_rename_and_widen_by_attnum) {
  od_sink *s = open_sink(fresh_path());
  od_relation v1 = orders_rel(o1, 4, 1);
  od_value a[] = {TV("1"), TV("5"), TV("9.50"), TV("a")}, b[] = {TV("2"), TV("6"), NV, TV("b")};
  TXN(s, 1, ch_ins(&v1, a), ch_ins(&v1, b));
  CHECK_STR(q("SELECT group_concat(name || '/' || attnum || '/' || type_name || '/' || version, ' ') "
              "FROM (SELECT * FROM _odsync_columns WHERE tbl = 'orders' ORDER BY attnum)"),
            "id/1/integer/1 qty/2/integer/1 price/3/numeric(10,2)/1 label/4/character varying(10)/1");

  /* ADD COLUMN status text DEFAULT 'new': rows already there get the source's missing value */
  od_column o2[] = {o1[0], o1[1], o1[2], o1[3], C("status", 25, -1, "text", 5, false)};
  o2[4].missing_value = "new";
  od_relation v2 = orders_rel(o2, 5, 2);
  v2.previous = &v1;
  od_value c[] = {TV("3"), TV("7"), TV("1.00"), TV("c"), TV("paid")};
  TXN(s, 2, ch_ins(&v2, c));
  CHECK_STR(q(TABLE_INFO), "id:INTEGER qty:INTEGER price:TEXT label:TEXT status:TEXT");
  CHECK_STR(q("SELECT group_concat(id || '=' || status, ',') FROM orders"), "1=new,2=new,3=paid");

  /* DROP COLUMN price (attnum 3 gone) */
  od_column o3[] = {o2[0], o2[1], o2[3], o2[4]};
  od_relation v3 = orders_rel(o3, 4, 3);
  od_value d[] = {TV("4"), TV("8"), TV("d"), TV("open")};
  TXN(s, 3, ch_ins(&v3, d));
  CHECK_STR(q(TABLE_INFO), "id:INTEGER qty:INTEGER label:TEXT status:TEXT");

  /* RENAME COLUMN qty TO quantity (same attnum), and int4 -> int8, varchar(10) -> text */
  od_column o4[] = {o3[0], C("quantity", 20, -1, "bigint", 2, false), C("label", 25, -1, "text", 4, false), o3[3]};
  od_relation v4 = orders_rel(o4, 4, 4);
  od_value e[] = {TV("5"), TV("9000000000"), TV("a long label"), TV("x")};
  uint64_t prepared = stats(s).prepared;
  TXN(s, 4, ch_ins(&v4, e));
  CHECK(stats(s).prepared > prepared); /* the new version got its own statements */
  CHECK_STR(q(TABLE_INFO), "id:INTEGER quantity:INTEGER label:TEXT status:TEXT");
  CHECK_STR(q("SELECT group_concat(id || ':' || quantity || ':' || label, ',') FROM orders"),
            "1:5:a,2:6:b,3:7:c,4:8:d,5:9000000000:a long label");
  CHECK_STR(q("SELECT type_name || '/' || version FROM _odsync_columns WHERE tbl = 'orders' AND name = 'quantity'"),
            "bigint/4");
  ops->close(s);

  /* a restart: new relation pointers without `previous`; the attnums in _odsync_columns still
   * tell a rename (quantity -> amount) from a drop plus an add */
  s = open_sink(db_path);
  od_column o5[] = {o4[0], C("amount", 20, -1, "bigint", 2, false), o4[2], o4[3]};
  od_relation v5 = orders_rel(o5, 4, 5);
  od_value f[] = {TV("6"), TV("1"), TV("f"), TV("y")};
  TXN(s, 5, ch_ins(&v5, f));
  CHECK_STR(q(TABLE_INFO), "id:INTEGER amount:INTEGER label:TEXT status:TEXT");
  CHECK_STR(q("SELECT amount FROM orders WHERE id = 1"), "5");
  ops->close(s);
}

TEST(evolve_swapped_names_and_numeric_precision) {
  od_sink *s = open_sink(fresh_path());
  od_relation v1 = orders_rel(o1, 4, 1);
  od_value a[] = {TV("1"), TV("5"), TV("9.50"), TV("a")};
  TXN(s, 1, ch_ins(&v1, a));
  /* qty <-> label swapped names (attnums 2 and 4); price numeric(10,2) -> numeric(12,2) */
  od_column o2[] = {o1[0], C("label", 23, -1, "integer", 2, false), C("price", 1700, 786438, "numeric(12,2)", 3, false),
                    C("qty", 1043, 14, "character varying(10)", 4, false)};
  od_relation v2 = orders_rel(o2, 4, 2);
  od_value b[] = {TV("2"), TV("6"), TV("1.25"), TV("b")};
  TXN(s, 2, ch_ins(&v2, b));
  CHECK_STR(q(TABLE_INFO), "id:INTEGER label:INTEGER price:TEXT qty:TEXT");
  CHECK_STR(q("SELECT group_concat(label || '|' || qty, ',') FROM orders"), "5|a,6|b");
  ops->close(s);
}

TEST(evolve_refuses_unsafe_changes_with_clear_errors) {
  od_sink *s = open_sink(fresh_path());
  od_relation v1 = orders_rel(o1, 4, 1);
  od_value a[] = {TV("1"), TV("5"), TV("9.50"), TV("a")};
  TXN(s, 1, ch_ins(&v1, a));
  od_error err;
  /* int -> text changes the storage class */
  od_column t1[] = {o1[0], C("qty", 25, -1, "text", 2, false), o1[2], o1[3]};
  od_relation bad = orders_rel(t1, 4, 2);
  od_value b[] = {TV("2"), TV("lots"), TV("1.00"), TV("b")};
  CHECK_INT(txn_err(s, ch_ins(&bad, b), 2, &err), OD_ESCHEMA);
  CHECK(!err.retriable);
  CHECK_CONTAINS(err.msg, "table orders: column qty changed from integer to text on the source; the sink cannot "
                          "carry this change safely (rows already stored would keep the old storage form: "
                          "SQLite type INTEGER, needed TEXT)");
  /* numeric scale change: same storage class, but stored texts would differ ("9.50" vs "9.500") */
  od_column t2[] = {o1[0], o1[1], C("price", 1700, 786439, "numeric(12,3)", 3, false), o1[3]};
  od_relation scale = orders_rel(t2, 4, 3);
  CHECK_INT(txn_err(s, ch_ins(&scale, b), 3, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "column price changed from numeric(10,2) to numeric(12,3)");
  /* dropping a key column */
  od_column t3[] = {o1[1], o1[2], o1[3]};
  od_relation nokey = orders_rel(t3, 3, 4);
  od_value c[] = {TV("2"), TV("1.00"), TV("b")};
  CHECK_INT(txn_err(s, ch_ins(&nokey, c), 4, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "column id was dropped on the source but is part of the sink table's primary key");
  /* dropping an indexed column */
  x("CREATE INDEX orders_label ON orders(label)");
  od_column t4[] = {o1[0], o1[1], o1[2]};
  od_relation nolabel = orders_rel(t4, 3, 5);
  od_value d[] = {TV("2"), TV("6"), TV("1.00")};
  CHECK_INT(txn_err(s, ch_ins(&nolabel, d), 5, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "column label was dropped on the source but index orders_label of the sink uses it");
  /* nothing of the failed transactions is there, the table is unchanged */
  CHECK_STR(q(TABLE_INFO), "id:INTEGER qty:INTEGER price:TEXT label:TEXT");
  CHECK_STR(q("SELECT count(*) || ':' || max(position) FROM orders, _odsync_checkpoint"), "1:1");
  /* a version the sink can apply still works afterwards */
  od_column ok[] = {o1[0], C("qty", 21, -1, "smallint", 2, false), o1[2], o1[3]};
  od_relation v6 = orders_rel(ok, 4, 6);
  od_value e[] = {TV("2"), TV("6"), TV("1.00"), TV("b")};
  TXN(s, 6, ch_ins(&v6, e));
  CHECK_STR(q("SELECT count(*) FROM orders"), "2");
  ops->close(s);
}

TEST(type_change_safety_rules) {
  extern bool sq_type_change_safe(uint32_t, int32_t, uint32_t, int32_t);
  CHECK(sq_type_change_safe(23, -1, 20, -1));          /* int4 -> int8 */
  CHECK(sq_type_change_safe(21, -1, 23, -1));          /* int2 -> int4 */
  CHECK(sq_type_change_safe(1043, 14, 25, -1));        /* varchar(10) -> text */
  CHECK(sq_type_change_safe(1043, 14, 1043, 24));      /* varchar(10) -> varchar(20) */
  CHECK(!sq_type_change_safe(1043, 24, 1043, 14));     /* a cast to varchar(10) may cut */
  CHECK(sq_type_change_safe(1700, 524294, 1700, 786438)); /* numeric(8,2) -> numeric(12,2) */
  CHECK(sq_type_change_safe(1700, 524294, 1700, -1));  /* numeric(8,2) -> numeric */
  CHECK(!sq_type_change_safe(1700, -1, 1700, 524294)); /* numeric -> numeric(8,2) rounds */
  CHECK(!sq_type_change_safe(1700, 786438, 1700, 524294)); /* precision down */
  CHECK(sq_type_change_safe(1114, 3, 1114, 6));        /* timestamp(3) -> timestamp(6) */
  CHECK(!sq_type_change_safe(1114, 6, 1114, 3));
  CHECK(!sq_type_change_safe(23, -1, 25, -1));         /* int -> text */
  CHECK(!sq_type_change_safe(25, -1, 23, -1));         /* text -> int */
  CHECK(!sq_type_change_safe(700, -1, 701, -1));       /* float4 -> float8 prints differently */
  CHECK(!sq_type_change_safe(1042, 5, 1042, 10));      /* char(n) pads */
}

/* ---- snapshot marks (set_mark / get_mark) ------------------------------------------------- */

TEST(marks_commit_with_the_data_and_roll_back_with_it) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_error err = {0};
  uint64_t got = 7;
  CHECK(ops->set_mark && ops->get_mark);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/0", &got, &err), OD_OK);
  CHECK_INT(got, 0); /* absent */
  /* outside a transaction: refused */
  CHECK(ops->set_mark(s, "p1/snapshot/public.users/0", 1, &err) != OD_OK);
  /* rolled back with its chunk */
  od_value a[] = {TV("1"), TV("ann"), NV};
  od_change c = ch_ins(&users, a);
  c.op = OD_OP_READ;
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/snapshot/public.users/0", 5, &err), OD_OK);
  ops->rollback(s);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/0", &got, &err), OD_OK);
  CHECK_INT(got, 0);
  CHECK_STR(q("SELECT count(*) FROM sqlite_master WHERE name = 'users'"), "0");
  /* committed with it (commit(0): the checkpoint stays absent) */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &c, 1, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/snapshot/public.users/0", 5, &err), OD_OK);
  uint64_t big = ((uint64_t)0xFFFFFFFF << 32) | 0x12345678; /* opaque 64-bit values survive */
  CHECK_INT(ops->set_mark(s, "p1/snapshot/public.users/lo", big, &err), OD_OK);
  CHECK_INT(commit_at(s, 0, &err), OD_OK);
  CHECK_STR(q("SELECT count(*) FROM users"), "1");
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK_INT(got, 0);
  ops->close(s);
  /* durable across reopen; overwritten and removed (value 0) in later transactions */
  s = open_sink(path);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/0", &got, &err), OD_OK);
  CHECK_INT(got, 5);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/lo", &got, &err), OD_OK);
  CHECK(got == big);
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/snapshot/public.users/0", 9, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/snapshot/public.users/lo", 0, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/snapshot", 42, &err), OD_OK);
  CHECK_INT(commit_at(s, 42, &err), OD_OK);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/0", &got, &err), OD_OK);
  CHECK_INT(got, 9);
  CHECK_INT(ops->get_mark(s, "p1/snapshot/public.users/lo", &got, &err), OD_OK);
  CHECK_INT(got, 0);
  CHECK_INT(ops->get_mark(s, "p1/snapshot", &got, &err), OD_OK);
  CHECK_INT(got, 42);
  /* marks never disturb the pipeline's own checkpoint row */
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK_INT(got, 42);
  CHECK_STR(q("SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = 'p1'"), "1");
  ops->close(s);
}

TEST(text_marks_commit_with_the_data_and_replace_integer_marks) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_error err = {0};
  char *text = (char *)"x";
  uint64_t got = 7;
  CHECK(ops->set_text_mark && ops->get_text_mark);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK(text == NULL); /* absent */
  CHECK(ops->set_text_mark(s, "p1/isnap/public.t/pos", "K1 0:", &err) != OD_OK); /* outside a transaction */
  /* rolled back with its data */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_text_mark(s, "p1/isnap/public.t/pos", "gone", &err), OD_OK);
  ops->rollback(s);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK(text == NULL);
  /* committed, durable across reopen; an integer mark next to it is a separate key */
  const char *mark = "K1 0: 1:2 2:id 7:integer 2:42 4:name 4:text 5:a b:c";
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_text_mark(s, "p1/isnap/public.t/pos", mark, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/isnap/public.t/requested", 77, &err), OD_OK);
  CHECK_INT(commit_at(s, 100, &err), OD_OK);
  ops->close(s);
  s = open_sink(path);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK_STR(text, mark);
  free(text);
  CHECK_INT(ops->get_mark(s, "p1/isnap/public.t/pos", &got, &err), OD_OK);
  CHECK_INT(got, 0); /* a text mark reads as no integer */
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/requested", &text, &err), OD_OK);
  CHECK(text == NULL); /* an integer mark reads as no text */
  CHECK_INT(ops->get_mark(s, "p1/isnap/public.t/requested", &got, &err), OD_OK);
  CHECK_INT(got, 77);
  /* one key holds one kind of value: an integer replaces the text, a text the integer */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_mark(s, "p1/isnap/public.t/pos", 5, &err), OD_OK);
  CHECK_INT(ops->set_text_mark(s, "p1/isnap/public.t/requested", "now text", &err), OD_OK);
  CHECK_INT(commit_at(s, 101, &err), OD_OK);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK(text == NULL);
  CHECK_INT(ops->get_mark(s, "p1/isnap/public.t/pos", &got, &err), OD_OK);
  CHECK_INT(got, 5);
  CHECK_INT(ops->get_mark(s, "p1/isnap/public.t/requested", &got, &err), OD_OK);
  CHECK_INT(got, 0);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/requested", &text, &err), OD_OK);
  CHECK_STR(text, "now text");
  free(text);
  /* removed (NULL text), and the checkpoint row untouched by all of it */
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_text_mark(s, "p1/isnap/public.t/requested", NULL, &err), OD_OK);
  CHECK_INT(commit_at(s, 102, &err), OD_OK);
  CHECK_STR(q("SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = 'p1/isnap/public.t/requested'"), "0");
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK_INT(got, 102);
  /* the checkpoint row holds the position's text form (odsync/position.h) */
  CHECK_STR(q("SELECT coalesce(position_text, 'NULL') FROM _odsync_checkpoint WHERE pipeline = 'p1'"), "pg:0/66");
  ops->close(s);
}

TEST(checkpoint_table_of_an_earlier_version_gains_position_text) {
  /* A sink written before text marks: its table has no position_text, and holds a checkpoint and
   * an integer progress mark of an incremental snapshot (key 1234 biased by 2^63). */
  const char *path = fresh_path();
  od_sink *s = open_sink(path); /* creates the directories; the table is replaced below */
  ops->close(s);
  sqlite3 *db;
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_INT(sqlite3_exec(db,
                         "DROP TABLE _odsync_checkpoint;"
                         "CREATE TABLE _odsync_checkpoint(pipeline TEXT PRIMARY KEY, position INTEGER NOT NULL, "
                         "position_lsn TEXT NOT NULL, updated_at TEXT NOT NULL);"
                         "INSERT INTO _odsync_checkpoint VALUES ('p1', 4096, '0/1000', '2026-01-01T00:00:00.000Z');"
                         "INSERT INTO _odsync_checkpoint VALUES ('p1/isnap/public.t/pos', -9223372036854774574, "
                         "'80000000/4D2', '2026-01-01T00:00:00.000Z')",
                         NULL, NULL, NULL),
            SQLITE_OK);
  sqlite3_close(db);
  CHECK_STR(q("SELECT count(*) FROM pragma_table_info('_odsync_checkpoint') WHERE name = 'position_text'"), "0");
  s = open_sink(path);
  CHECK_STR(q("SELECT count(*) FROM pragma_table_info('_odsync_checkpoint') WHERE name = 'position_text'"), "1");
  od_error err = {0};
  uint64_t got = 0;
  char *text = (char *)"x";
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK_INT(got, 4096);
  CHECK_INT(ops->get_mark(s, "p1/isnap/public.t/pos", &got, &err), OD_OK);
  CHECK((got ^ (UINT64_C(1) << 63)) == 1234);
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK(text == NULL);
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->set_text_mark(s, "p1/isnap/public.t/pos", "K1 0: 1:1 2:id 6:bigint 4:1300", &err), OD_OK);
  CHECK_INT(commit_at(s, 5000, &err), OD_OK);
  ops->close(s);
  s = open_sink(path); /* a second open finds the column and changes nothing */
  CHECK_INT(ops->get_text_mark(s, "p1/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK_STR(text, "K1 0: 1:1 2:id 6:bigint 4:1300");
  free(text);
  CHECK_INT(read_pos(s, &got, &err), OD_OK);
  CHECK_INT(got, 5000);
  ops->close(s);
}

TEST(key_changing_update_onto_an_existing_key_replaces_it) {
  /* A resumed snapshot replays changes the copy may already hold: moving key 1 to key 2 when a
   * row with key 2 was copied under a later view must not fail. */
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_value r1[] = {TV("1"), TV("ann"), NV}, r2[] = {TV("2"), TV("ann moved"), NV};
  od_change ins1 = ch_ins(&users, r1), ins2 = ch_ins(&users, r2);
  od_change up = ch_ins(&users, r2);
  up.op = OD_OP_UPDATE;
  up.old_kind = 'K';
  od_value k1[] = {TV("1"), NV, NV};
  up.oldtup = (od_tuple){.ncolumns = 3, .values = k1};
  od_error err = {0};
  CHECK_INT(ops->begin(s, &err), OD_OK);
  CHECK_INT(ops->apply(s, &ins1, 1, &err), OD_OK);
  CHECK_INT(ops->apply(s, &ins2, 1, &err), OD_OK);
  CHECK_INT(ops->apply(s, &up, 1, &err), OD_OK);
  CHECK_INT(commit_at(s, 10, &err), OD_OK);
  CHECK_STR(q("SELECT group_concat(id || ':' || name) FROM users"), "2:ann moved");
  ops->close(s);
}

/* ---- -0 (docs/TYPES.md): kept in the columns the sink creates ------------------------------- */

/* Sign of the float in column `col` of the row `where` (1 negative, 0 positive, -1 not a REAL). */
static int sign_of(const char *table, const char *col, const char *where) {
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

static od_column zrow_cols[] = {{.name = "k", .type_oid = 23}, {.name = "f", .type_oid = 701},
                                {.name = "g", .type_oid = 700}};
static od_relation zrow = {.oid = 20, .schema = "public", .name = "zrow", .replica_identity = 'f',
                           .ncolumns = 3, .columns = zrow_cols};

TEST(negative_zero_round_trips_through_insert_update_and_upsert) {
  od_sink *s = open_sink(fresh_path());
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "f", .type_oid = 701}};
  od_relation rel = {.oid = 21, .schema = "public", .name = "zk", .replica_identity = 'd', .ncolumns = 2,
                     .columns = cols, .version = 1, .has_primary_key = true};
  od_value a[] = {TV("1"), TV("-0")}, b[] = {TV("2"), TV("0")};
  TXN(s, 1, ch_ins(&rel, a), ch_ins(&rel, b));
  CHECK_INT(sign_of("zk", "f", "id = 1"), 1);
  CHECK_INT(sign_of("zk", "f", "id = 2"), 0);
  od_value k2[] = {TV("2"), NV}, b2[] = {TV("2"), TV("-0")};
  TXN(s, 2, ch_upd(&rel, 'K', k2, b2)); /* 0 -> -0: equal by =, still an update of the sign */
  CHECK_INT(sign_of("zk", "f", "id = 2"), 1);
  od_value a2[] = {TV("1"), TV("0")};
  od_change rd = ch_ins(&rel, a2);
  rd.op = OD_OP_READ; /* a snapshot row onto an existing key: the upsert writes +0 */
  TXN(s, 3, rd);
  CHECK_INT(sign_of("zk", "f", "id = 1"), 0);
  CHECK_STR(q("SELECT count(*) || ' ' || sum(f = 0) FROM zk"), "2 2");

  /* A float primary key: the conflict on 0 = -0 takes the sign the source sent. */
  od_column pcols[] = {{.name = "f", .type_oid = 701, .key = true}, {.name = "v", .type_oid = 25}};
  od_relation prel = {.oid = 22, .schema = "public", .name = "zp", .replica_identity = 'd', .ncolumns = 2,
                      .columns = pcols, .version = 1, .has_primary_key = true};
  od_value p1[] = {TV("0"), TV("a")}, p2[] = {TV("-0"), TV("b")};
  TXN(s, 4, ch_ins(&prel, p1), ch_ins(&prel, p2));
  CHECK_STR(q("SELECT count(*) || v FROM zp"), "1b");
  CHECK_INT(sign_of("zp", "f", "1"), 1);
  od_column only[] = {{.name = "f", .type_oid = 701, .key = true}}; /* every column a key: still sets f */
  od_relation orel = {.oid = 23, .schema = "public", .name = "zo", .replica_identity = 'd', .ncolumns = 1,
                      .columns = only, .version = 1, .has_primary_key = true};
  od_value o1[] = {TV("-0")}, o2[] = {TV("0")};
  TXN(s, 5, ch_ins(&orel, o1), ch_ins(&orel, o2));
  CHECK_STR(q("SELECT count(*) FROM zo"), "1");
  CHECK_INT(sign_of("zo", "f", "1"), 0);
  ops->close(s);
}

TEST(keyless_rows_differing_only_in_the_sign_of_zero_are_told_apart) {
  od_sink *s = open_sink(fresh_path());
  od_value pz[] = {TV("1"), TV("0"), TV("-0")}, nz[] = {TV("1"), TV("-0"), TV("-0")};
  TXN(s, 1, ch_ins(&zrow, pz), ch_ins(&zrow, nz));
  CHECK_STR(q("SELECT type FROM pragma_table_info('zrow') WHERE name = 'f'"), "");
  /* The row with f = -0 changes, not the first row equal to it by `IS` (+0 was inserted first). */
  od_value moved[] = {TV("2"), TV("-0"), TV("-0")};
  TXN(s, 2, ch_upd(&zrow, 'O', nz, moved));
  CHECK_INT(sign_of("zrow", "f", "k = 1"), 0);
  CHECK_INT(sign_of("zrow", "f", "k = 2"), 1);
  /* Delete the +0 row by its old image: the -0 row stays. */
  od_value back[] = {TV("1"), TV("-0"), TV("-0")};
  TXN(s, 3, ch_upd(&zrow, 'O', moved, back), ch_del(&zrow, 'O', pz));
  CHECK_STR(q("SELECT count(*) || ':' || k FROM zrow"), "1:1");
  CHECK_INT(sign_of("zrow", "f", "k = 1"), 1);
  CHECK_INT(sign_of("zrow", "g", "k = 1"), 1);
  ops->close(s);
}

TEST(float_columns_of_an_older_table_declared_real_keep_working) {
  /* The table as odsync created it before floats had no declared type. */
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  ops->close(s);
  x("CREATE TABLE zrow (k INTEGER, f REAL, g REAL);"
    "INSERT INTO _odsync_columns VALUES ('zrow', 'k', 1, 23, 0, 'integer', 1), "
    "('zrow', 'f', 2, 701, 0, 'double precision', 1), ('zrow', 'g', 3, 700, 0, 'real', 1);"
    "INSERT INTO zrow VALUES (1, 0.0, 0.0)");
  s = open_sink(path);
  od_value nz[] = {TV("1"), TV("-0"), TV("-0")}, v2[] = {TV("2"), TV("-0"), TV("1.5")};
  /* -0 in a REAL column is 0.0 (its affinity), and an old -0 image matches the stored 0.0 */
  TXN(s, 1, ch_ins(&zrow, nz), ch_upd(&zrow, 'O', nz, v2));
  CHECK_STR(q("SELECT group_concat(k || ':' || typeof(f) || ':' || g, ' ') FROM (SELECT * FROM zrow ORDER BY k)"),
            "1:real:0.0 2:real:1.5");
  CHECK_INT(sign_of("zrow", "f", "k = 2"), 0);
  CHECK_STR(q("SELECT group_concat(name || ':' || type, ' ') FROM pragma_table_info('zrow')"), "k:INTEGER f:REAL g:REAL");
  /* A float column added to it later has no declared type and keeps -0. */
  od_column cols2[] = {{.name = "k", .type_oid = 23, .attnum = 1}, {.name = "f", .type_oid = 701, .attnum = 2},
                       {.name = "g", .type_oid = 700, .attnum = 3}, {.name = "h", .type_oid = 701, .attnum = 4}};
  od_relation z2 = zrow;
  z2.columns = cols2;
  z2.ncolumns = 4;
  z2.version = 2;
  z2.previous = &zrow;
  od_value v3[] = {TV("3"), TV("-0"), TV("-0"), TV("-0")};
  TXN(s, 2, ch_ins(&z2, v3));
  CHECK_STR(q("SELECT group_concat(name || ':' || type, ' ') FROM pragma_table_info('zrow')"),
            "k:INTEGER f:REAL g:REAL h:");
  CHECK_INT(sign_of("zrow", "f", "k = 3"), 0);
  CHECK_INT(sign_of("zrow", "h", "k = 3"), 1);
  ops->close(s);
}

/* ---- runs of inserts: SQ_INSERT_MANY rows per statement ------------------------------------- */

TEST(runs_of_inserts_are_written_many_rows_per_statement) {
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "raw", .type_oid = 17},
                      {.name = "f", .type_oid = 701}, {.name = "t", .type_oid = 25}};
  od_relation rel = {.oid = 30, .schema = "public", .name = "many", .replica_identity = 'd', .ncolumns = 4,
                     .columns = cols, .version = 1, .has_primary_key = true};
  enum { N = 100 };
  static char ids[N][16], raws[N][16];
  static od_value vals[N][4];
  static od_change cs[N + 2];
  for (int i = 0; i < N; i++) {
    /* keys 0..69 then 0..29 again, and row 40 repeats key 33 inside the same statement (rows
     * 32..63): the later row of a key wins, as if applied one by one */
    snprintf(ids[i], sizeof ids[i], "%d", i == 40 ? 33 : i % 70);
    snprintf(raws[i], sizeof raws[i], "\\x%02x%02x", i, 255 - i);
    vals[i][0] = TV(ids[i]);
    vals[i][1] = TV(raws[i]);
    vals[i][2] = i == 99 || i == 90 ? TV("-0") : TV("1.5"); /* 90: in a multi-row statement */
    vals[i][3] = i % 7 ? TV("x") : NV;
    cs[i] = ch_ins(&rel, vals[i]);
    if (i % 2) cs[i].op = OD_OP_READ;
  }
  od_sink *s = open_sink(fresh_path());
  od_error err = {0};
  CHECK_INT(txn(s, cs, N, 1, &err), OD_OK);
  od_sqlite_stats st = stats(s);
  CHECK_INT(st.inserted, N);
  CHECK_INT(st.multi_inserts, 3); /* rows 0..95 in three statements, 96..99 one by one */
  CHECK_STR(q("SELECT count(*) || ' ' || sum(id) FROM many"), "69 2375");
  /* each key holds its last row: key 5 from row 75 (0x4bb4), key 45 from row 45, key 33 from row 40 */
  CHECK_STR(q("SELECT hex(raw) || ' ' || hex((SELECT raw FROM many WHERE id = 45)) || ' ' || "
              "hex((SELECT raw FROM many WHERE id = 33)) FROM many WHERE id = 5"), "4BB4 2DD2 28D7");
  CHECK_INT(sign_of("many", "f", "id = 29"), 1);
  CHECK_INT(sign_of("many", "f", "id = 20"), 1);
  CHECK_INT(sign_of("many", "f", "id = 21"), 0);
  CHECK_STR(q("SELECT count(*) FROM many WHERE t IS NULL"), "10");

  /* A bad value inside a run fails the transaction with the column and value named. */
  vals[40][0] = TV("4x");
  CHECK_INT(txn(s, cs, N, 2, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "many.id");
  CHECK_CONTAINS(err.msg, "4x");
  CHECK_STR(q("SELECT count(*) || ' ' || sum(id) FROM many"), "69 2375");
  vals[40][0] = TV(ids[40]);

  /* Runs broken by another table or operation still apply in order. */
  od_value d5[] = {TV("5"), NV, NV, NV};
  cs[50] = ch_del(&rel, 'K', d5); /* row 50 (key 50) becomes: delete key 5 */
  od_value lv[] = {TV("m"), TV("1"), NV};
  cs[N] = ch_ins(&logrel, lv);
  cs[N + 1] = ch_ins(&rel, vals[5]); /* key 5 again, after the delete */
  CHECK_INT(txn(s, cs, N + 2, 3, &err), OD_OK);
  CHECK_STR(q("SELECT count(*) || ' ' || hex((SELECT raw FROM many WHERE id = 5)) FROM many"), "69 05FA");
  CHECK_STR(q("SELECT count(*) FROM log"), "1");
  ops->close(s);
}

/* Runs of full-row updates that keep their key go through the multi-row upsert too; updates that
 * change the key or carry UNCHANGED values break the run and keep their own statements. */
TEST(runs_of_full_row_updates_are_upserted_many_rows_per_statement) {
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "v", .type_oid = 25},
                      {.name = "n", .type_oid = 20}};
  od_relation rel = {.oid = 31, .schema = "public", .name = "upd", .replica_identity = 'd', .ncolumns = 3,
                     .columns = cols, .version = 1, .has_primary_key = true};
  enum { N = 64 };
  static char ids[N][16], vs[N][16], old_ids[N][16];
  static od_value ins[N][3], upd[N][3], oldv[N][3];
  static od_change cs[N];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "%d", i);
    ins[i][0] = TV(ids[i]);
    ins[i][1] = TV("orig");
    ins[i][2] = TV("1");
    cs[i] = ch_ins(&rel, ins[i]);
  }
  od_sink *s = open_sink(fresh_path());
  od_error err = {0};
  CHECK_INT(txn(s, cs, N, 1, &err), OD_OK);
  od_value gone[] = {TV("10"), NV, NV};
  TXN(s, 2, ch_del(&rel, 'K', gone)); /* row 10 is missing when its update comes */
  od_sqlite_stats before = stats(s);

  for (int i = 0; i < N; i++) {
    snprintf(vs[i], sizeof vs[i], "u%d", i);
    snprintf(old_ids[i], sizeof old_ids[i], "%d", i);
    upd[i][0] = TV(ids[i]);
    upd[i][1] = TV(vs[i]);
    upd[i][2] = TV("2");
    oldv[i][0] = TV(old_ids[i]);
    oldv[i][1] = TV("orig");
    oldv[i][2] = TV("1");
    /* rows 0..31 without an old tuple (PostgreSQL, key unchanged); 32..63 with the full old row
     * (MariaDB, FULL images) holding the same key */
    cs[i] = i < 32 ? ch_upd(&rel, 0, NULL, upd[i]) : ch_upd(&rel, 'O', oldv[i], upd[i]);
  }
  /* row 40: its key changes from 40 to 100 (breaks the second run); row 45: n is UNCHANGED */
  upd[40][0] = TV("100");
  upd[45][2] = UV;
  CHECK_INT(txn(s, cs, N, 3, &err), OD_OK);
  od_sqlite_stats st = stats(s);
  CHECK_INT(st.multi_inserts - before.multi_inserts, 1); /* rows 0..31; 32..63 are broken by 40 and 45 */
  CHECK_INT(st.updated - before.updated, N);
  CHECK_STR(q("SELECT count(*) || ' ' || sum(n) FROM upd"), "64 127"); /* 10 written again; 45 keeps n = 1 */
  CHECK_STR(q("SELECT v || ' ' || n FROM upd WHERE id = 10"), "u10 2");
  CHECK_STR(q("SELECT v || ' ' || n FROM upd WHERE id = 45"), "u45 1");
  CHECK_STR(q("SELECT count(*) FROM upd WHERE id = 40"), "0");
  CHECK_STR(q("SELECT v FROM upd WHERE id = 100"), "u40");
  CHECK_STR(q("SELECT count(*) FROM upd WHERE v = 'u' || id"), "63");

  /* Without the key change and the UNCHANGED value, 0..63 are two multi-row statements. */
  upd[40][0] = TV(ids[40]);
  upd[45][2] = TV("2");
  for (int i = 0; i < N; i++) upd[i][2] = TV("3");
  CHECK_INT(txn(s, cs, N, 4, &err), OD_OK);
  CHECK_INT(stats(s).multi_inserts - st.multi_inserts, 2);
  CHECK_STR(q("SELECT count(*) || ' ' || sum(n) FROM upd"), "65 194"); /* id 100 keeps n = 2 */
  ops->close(s);
}

/* A change of another table that breaks a run may start its own right there. */
TEST(a_run_starts_at_the_change_that_broke_the_previous_one) {
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}};
  od_relation ra = {.oid = 35, .schema = "public", .name = "ra", .replica_identity = 'd', .ncolumns = 1,
                    .columns = cols, .version = 1, .has_primary_key = true};
  od_relation rb = {.oid = 36, .schema = "public", .name = "rb", .replica_identity = 'd', .ncolumns = 1,
                    .columns = cols, .version = 1, .has_primary_key = true};
  enum { N = 63 };
  static char ids[N][16];
  static od_value v[N][1];
  static od_change cs[N];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "%d", i);
    v[i][0] = TV(ids[i]);
    cs[i] = ch_ins(i < 31 ? &ra : &rb, v[i]); /* 31 rows of ra (no run), then 32 of rb (a run) */
  }
  od_sink *s = open_sink(fresh_path());
  od_error err = {0};
  CHECK_INT(txn(s, cs, N, 1, &err), OD_OK);
  CHECK_INT(stats(s).multi_inserts, 1);
  CHECK_STR(q("SELECT (SELECT count(*) FROM ra) || ' ' || (SELECT sum(id) FROM rb)"), "31 1488");
  ops->close(s);
}

/* An update that keeps the key leaves the key out of its SET, except float keys, which are set
 * again: the key 0 finds the row -0 (they are equal) and the row must get the sign the source sent. */
TEST(update_keeping_a_float_key_still_sets_its_sign) {
  od_column cols[] = {{.name = "f", .type_oid = 701, .key = true}, {.name = "v", .type_oid = 25}};
  od_relation rel = {.oid = 32, .schema = "public", .name = "fkey", .replica_identity = 'd', .ncolumns = 2,
                     .columns = cols, .version = 1, .has_primary_key = true};
  od_sink *s = open_sink(fresh_path());
  od_value a[] = {TV("0"), TV("a")};
  TXN(s, 1, ch_ins(&rel, a));
  od_value b[] = {TV("-0"), TV("b")};
  TXN(s, 2, ch_upd(&rel, 0, NULL, b));
  CHECK_STR(q("SELECT count(*) || ' ' || max(v) FROM fkey"), "1 b");
  CHECK_INT(sign_of("fkey", "f", "v = 'b'"), 1);
  /* a key-only table: an update of a missing row still writes it */
  od_column kcols[] = {{.name = "k", .type_oid = 23, .key = true}};
  od_relation krel = {.oid = 33, .schema = "public", .name = "konly", .replica_identity = 'd', .ncolumns = 1,
                      .columns = kcols, .version = 1, .has_primary_key = true};
  od_value k[] = {TV("7")};
  TXN(s, 3, ch_upd(&krel, 0, NULL, k));
  CHECK_STR(q("SELECT group_concat(k) FROM konly"), "7");
  CHECK_INT(stats(s).missing_upserted, 1);
  ops->close(s);
}

/* ---- WAL checkpoints on the sink's own thread (sqlite_ckpt.c) ------------------------------- */

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

TEST(wal_is_checkpointed_by_the_sink_thread) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "t", .type_oid = 25}};
  od_relation rel = {.oid = 40, .schema = "public", .name = "big", .replica_identity = 'd', .ncolumns = 2,
                     .columns = cols, .version = 1, .has_primary_key = true};
  enum { N = 3000 }; /* 3000 rows of 4 KB: well past the 1000-page threshold */
  static char ids[N][12], text[4000];
  static od_value vals[N][2];
  static od_change cs[N];
  memset(text, 'x', sizeof text - 1);
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "%d", i);
    vals[i][0] = TV(ids[i]);
    vals[i][1] = TV(text);
    cs[i] = ch_ins(&rel, vals[i]);
  }
  od_error err = {0};
  CHECK_INT(txn(s, cs, N, 7, &err), OD_OK);
  /* The commit only signals; the thread copies the pages into the database file. */
  for (int i = 0; i < 500 && (stats(s).wal_checkpoints == 0 || file_size(path) < 12000000); i++) usleep(10000);
  CHECK(stats(s).wal_checkpoints >= 1);
  CHECK(file_size(path) >= 12000000);
  CHECK_STR(q("SELECT count(*) || ' ' || sum(length(t)) FROM big"), "3000 11997000");
  /* A second round reuses the WAL from its start once the first is checkpointed. */
  char wal[600];
  snprintf(wal, sizeof wal, "%s-wal", path);
  long long wal1 = file_size(wal);
  CHECK_INT(txn(s, cs, N, 8, &err), OD_OK);
  CHECK(file_size(wal) <= wal1 + 65536);
  CHECK_STR(q("SELECT count(*) FROM big"), "3000");
  ops->close(s);
  CHECK_INT(file_size(wal), -1); /* the last connection's close checkpoints and removes the WAL */
  CHECK_STR(q("SELECT count(*) FROM big"), "3000");
}

TEST(wal_of_a_busy_writer_stays_bounded) {
  /* Transactions back to back (like snapshot chunks) always begin while the checkpoint of the one
   * before still runs; past 64 MB of WAL a transaction waits for it and starts the WAL over. */
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_column cols[] = {{.name = "id", .type_oid = 23, .key = true}, {.name = "t", .type_oid = 25}};
  od_relation rel = {.oid = 41, .schema = "public", .name = "busy", .replica_identity = 'd', .ncolumns = 2,
                     .columns = cols, .version = 1, .has_primary_key = true};
  enum { N = 3000, ROUNDS = 10 }; /* 10 x 12 MB */
  static char ids[ROUNDS][N][12], text[4000];
  static od_value vals[N][2];
  static od_change cs[N];
  memset(text, 'y', sizeof text - 1);
  char wal[600];
  snprintf(wal, sizeof wal, "%s-wal", path);
  long long max_wal = 0;
  od_error err = {0};
  for (int round = 0; round < ROUNDS; round++) {
    for (int i = 0; i < N; i++) {
      snprintf(ids[round][i], sizeof ids[round][i], "%d", round * N + i);
      vals[i][0] = TV(ids[round][i]);
      vals[i][1] = TV(text);
      cs[i] = ch_ins(&rel, vals[i]);
    }
    CHECK_INT(txn(s, cs, N, (uint64_t)round + 1, &err), OD_OK);
    long long w = file_size(wal);
    if (w > max_wal) max_wal = w;
  }
  /* 64 MB (16384 pages) + one transaction (~3100 pages) of 4120-byte frames, and some slack */
  CHECK(max_wal > 0);
  CHECK(max_wal < (16384LL + 2 * 3100) * 4120);
  CHECK_STR(q("SELECT count(*) FROM busy"), "30000");
  ops->close(s);
}

/* A TRUNCATE flagged OD_TRUNCATE_START_OVER for a relation the sink has no state for (a table
 * dropped and re-created at the source) replaces the table: the new shape (text id, another
 * key, a bit(16) column) whatever the old one, only the new rows, in the same transaction; a
 * rollback keeps the old table. A plain truncate of a known relation only empties it. */
TEST(start_over_replaces_the_table_with_the_new_shape) {
  const char *path = fresh_path();
  od_sink *s = open_sink(path);
  od_value a1[] = {TV("1"), TV("ann"), TV("1.5")};
  TXN(s, 100, ch_ins(&users, a1));
  od_column b_cols[] = {
      {.name = "code", .type_oid = 25, .key = true, .attnum = 1},
      {.name = "flags", .type_oid = 1560, .typmod = 16, .attnum = 2},
  };
  od_relation b = {.oid = 99, .schema = "public", .name = "users", .replica_identity = 'd', .ncolumns = 2,
                   .columns = b_cols, .version = 2, .has_primary_key = true};
  od_value b1[] = {TV("x"), TV("1010101010101010")};
  od_change over = {.op = OD_OP_TRUNCATE, .truncate_flags = OD_TRUNCATE_START_OVER, .rel = &b};
  /* rolled back: the old table stays */
  od_error err = {0};
  CHECK_INT(ops->begin(s, &err), OD_OK);
  od_change cs[] = {over, ch_ins(&b, b1)};
  CHECK_INT(ops->apply(s, cs, 2, &err), OD_OK);
  ops->rollback(s);
  CHECK_STR(q("SELECT group_concat(name) FROM pragma_table_info('users')"), "id,name,score");
  CHECK_STR(q("SELECT count(*) FROM users"), "1");
  TXN(s, 200, over, ch_ins(&b, b1));
  CHECK_STR(q("SELECT group_concat(name) FROM pragma_table_info('users')"), "code,flags");
  CHECK_STR(q("SELECT group_concat(code || '=' || flags) FROM users"), "x=1010101010101010");
  CHECK_STR(q("SELECT group_concat(name) FROM _odsync_columns WHERE tbl = 'users'"), "code,flags");
  /* the state exists now: a start-over truncate of the same relation only empties the table */
  TXN(s, 300, over);
  CHECK_STR(q("SELECT count(*) FROM users"), "0");
  CHECK_STR(q("SELECT group_concat(name) FROM pragma_table_info('users')"), "code,flags");
  ops->close(s);
}
