/* Unit tests for the SQLite sink's schema evolution (sqlite_schema.c), snapshot marks, the
 * checkpoint table's upgrade and key-changing updates (fixture: sqlite_sink_fixture.h). */
#include "sqlite_sink_fixture.h"
#include "test.h"

/* ---- schema evolution (sqlite_schema.c) ----------------------------------------------------- */

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

