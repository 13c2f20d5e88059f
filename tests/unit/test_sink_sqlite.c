/* Unit tests for the SQLite sink: opening and configuration, type mapping, keyed and keyless
 * changes, table ownership, the checkpoint, busy and full databases, statement reuse. Changes are
 * built in memory, applied through the vtable, and the database file read back with a separate
 * sqlite3 connection (sqlite_sink_fixture.h). */
#include "sqlite_sink_fixture.h"
#include "test.h"

/* ---- tests --------------------------------------------------------------------------------- */

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
  char names[12][16];
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

