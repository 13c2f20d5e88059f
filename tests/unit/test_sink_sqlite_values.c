/* Unit tests for the SQLite sink: -0 kept through every write path, runs of inserts and updates
 * many rows per statement, WAL checkpoints on the sink's thread, start-over truncates
 * (fixture: sqlite_sink_fixture.h). */
#include "sqlite_sink_fixture.h"
#include "test.h"

/* ---- -0 (docs/TYPES.md): kept in the columns the sink creates ------------------------------- */

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

