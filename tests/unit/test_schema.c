/* Unit tests for the schema history (src/core/schema.c): real files in a mkdtemp state dir.
 * Asserts: the history file is created and reloaded, versions persist across open/close (an old
 * shape seen again keeps its old version), each kind of difference is described, the stop policy
 * fails with OD_ESCHEMA naming table/change/policy without recording, the ignore policy maps
 * changes onto the kept shape (renamed by attnum, new columns dropped, dropped columns NULL),
 * a truncated last line is cut off and a corrupt line is an error naming FILE:LINE. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/schema.h"
#include "test.h"

static char state_dir[256];

static const char *fresh_dir(void) {
  snprintf(state_dir, sizeof state_dir, "/tmp/odsync-schema-XXXXXX");
  if (!mkdtemp(state_dir)) OD_TEST_FAIL("mkdtemp failed");
  return state_dir;
}

static char file_buf[16384];
static const char *history(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/shop.schema.jsonl", state_dir);
  FILE *f = fopen(path, "rb");
  if (!f) return "(missing)";
  size_t n = fread(file_buf, 1, sizeof file_buf - 1, f);
  fclose(f);
  file_buf[n] = '\0';
  return file_buf;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static od_schema *open_policy(int policy) {
  od_schema *s = NULL;
  od_error err = {0};
  int rc = od_schema_open(state_dir, "shop", policy, &s, &err);
  if (rc) OD_TEST_FAIL("open: %s", err.msg);
  return s;
}

#define COL(n, oid, mod, tname, att, k) \
  {.name = (n), .type_oid = (oid), .typmod = (mod), .type_name = tname, .attnum = (att), .key = (k)}

/* orders v1: id int4 key (1), qty int4 (2), price numeric(10,2) (3) */
static od_column v1_cols[] = {
    COL("id", 23, -1, "integer", 1, true),
    COL("qty", 23, -1, "integer", 2, false),
    COL("price", 1700, 655366, "numeric(10,2)", 3, false),
};
static od_relation rel_of(od_column *cols, uint16_t n) {
  return (od_relation){.oid = 16384, .schema = "public", .name = "orders", .replica_identity = 'd',
                       .ncolumns = n, .columns = cols, .version = 1, .has_primary_key = true};
}

static int relation(od_schema *s, od_relation *r, od_error *err) {
  memset(err, 0, sizeof *err);
  return od_schema_relation(s, r, err);
}

TEST(history_is_created_and_versions_persist_across_reopen) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_APPLY);
  CHECK_STR(history(), "");
  od_error err;
  od_relation r1 = rel_of(v1_cols, 3);
  r1.version = 7; /* whatever the decoder said: the history decides */
  CHECK_INT(relation(s, &r1, &err), OD_OK);
  CHECK_INT(r1.version, 1);
  CHECK_CONTAINS(history(), "{\"table\":\"public.orders\",\"version\":1,\"recorded_at\":\"");
  CHECK_CONTAINS(history(), "\"columns\":[{\"name\":\"id\",\"type\":\"integer\",\"type_oid\":23,\"typmod\":-1,"
                            "\"attnum\":1,\"key\":true},{\"name\":\"qty\"");
  CHECK_CONTAINS(history(), "\"change\":\"first seen\"}\n");

  od_column v2_cols[] = {v1_cols[0], v1_cols[1], v1_cols[2], COL("note", 25, -1, "text", 4, false)};
  od_relation r2 = rel_of(v2_cols, 4);
  CHECK_INT(relation(s, &r2, &err), OD_OK);
  CHECK_INT(r2.version, 2);
  CHECK_CONTAINS(history(), "\"version\":2,");
  CHECK_CONTAINS(history(), "\"change\":\"column note text added\"}\n");
  /* the same shape again (a new decoder pointer) keeps its version, records nothing */
  od_relation r2b = rel_of(v2_cols, 4);
  CHECK_INT(relation(s, &r2b, &err), OD_OK);
  CHECK_INT(r2b.version, 2);
  CHECK_INT(count_lines(history()), 2);
  od_schema_close(s);

  s = open_policy(OD_SCHEMA_APPLY);
  od_relation again1 = rel_of(v1_cols, 3), again2 = rel_of(v2_cols, 4);
  CHECK_INT(relation(s, &again2, &err), OD_OK);
  CHECK_INT(again2.version, 2);
  CHECK_INT(relation(s, &again1, &err), OD_OK); /* replay from before the change: old version */
  CHECK_INT(again1.version, 1);
  CHECK_INT(count_lines(history()), 2);
  od_column v3_cols[] = {v1_cols[0], COL("quantity", 23, -1, "integer", 2, false), v1_cols[2], v2_cols[3]};
  od_relation r3 = rel_of(v3_cols, 4);
  CHECK_INT(relation(s, &r3, &err), OD_OK);
  CHECK_INT(r3.version, 3);
  CHECK_CONTAINS(history(), "\"change\":\"column qty renamed to quantity\"}\n");
  /* another table starts at 1 */
  od_relation other = rel_of(v1_cols, 3);
  other.name = "customers";
  CHECK_INT(relation(s, &other, &err), OD_OK);
  CHECK_INT(other.version, 1);
  od_schema_close(s);
  s = open_policy(OD_SCHEMA_APPLY);
  od_relation r3b = rel_of(v3_cols, 4);
  CHECK_INT(relation(s, &r3b, &err), OD_OK);
  CHECK_INT(r3b.version, 3);
  CHECK_INT(count_lines(history()), 4);
  od_schema_close(s);
}

TEST(each_kind_of_difference_is_described) {
  char buf[512];
  od_relation from = rel_of(v1_cols, 3);
  CHECK_INT(od_schema_describe_diff(&from, &from, buf, sizeof buf), 0);
  CHECK_STR(buf, "");

  od_column add[] = {v1_cols[0], v1_cols[1], v1_cols[2], COL("note", 25, -1, "text", 4, false)};
  od_relation to = rel_of(add, 4);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 1);
  CHECK_STR(buf, "column note text added");

  od_column drop[] = {v1_cols[0], v1_cols[2]};
  to = rel_of(drop, 2);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 1);
  CHECK_STR(buf, "column qty dropped");

  od_column ren[] = {v1_cols[0], COL("quantity", 23, -1, "integer", 2, false), v1_cols[2]};
  to = rel_of(ren, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 1);
  CHECK_STR(buf, "column qty renamed to quantity");

  od_column typ[] = {v1_cols[0], COL("qty", 20, -1, "bigint", 2, false), COL("price", 25, -1, "text", 3, false)};
  to = rel_of(typ, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 2);
  CHECK_STR(buf, "column qty changed from integer to bigint; column price changed from numeric(10,2) to text");

  /* numeric precision up: same oid, new typmod */
  od_column wide[] = {v1_cols[0], v1_cols[1], COL("price", 1700, 786438, "numeric(12,2)", 3, false)};
  to = rel_of(wide, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 1);
  CHECK_STR(buf, "column price changed from numeric(10,2) to numeric(12,2)");

  /* dropped and re-added under the same name: a new attnum is a new column */
  od_column readd[] = {v1_cols[0], v1_cols[1], COL("price", 25, -1, "text", 4, false)};
  to = rel_of(readd, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 2);
  CHECK_STR(buf, "column price dropped; column price text added");

  /* unknown attnums (0): matched by name */
  od_column noatt[] = {COL("id", 23, -1, "", 0, true), COL("qty", 23, -1, "", 0, false),
                       COL("price", 1700, 655366, "", 0, false)};
  to = rel_of(noatt, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 0);
  od_column noatt2[] = {COL("id", 23, -1, "", 0, true), COL("quantity", 20, -1, "", 0, false)};
  to = rel_of(noatt2, 2);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 3);
  CHECK_STR(buf, "column qty dropped; column price dropped; column quantity type oid 20 added");

  /* key change, several changes at once */
  od_column key[] = {v1_cols[0], COL("qty", 23, -1, "integer", 2, true), v1_cols[2]};
  to = rel_of(key, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, buf, sizeof buf), 1);
  CHECK_STR(buf, "key changed from (id) to (id, qty)");

  /* a short buffer is cut, never overrun */
  char small[12];
  to = rel_of(typ, 3);
  CHECK_INT(od_schema_describe_diff(&from, &to, small, sizeof small), 2);
  CHECK_STR(small, "column qty ");
}

TEST(stop_policy_fails_with_table_change_and_policy_and_records_nothing) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_STOP);
  od_error err;
  od_relation r1 = rel_of(v1_cols, 3);
  CHECK_INT(relation(s, &r1, &err), OD_OK); /* first sight is fine under every policy */
  CHECK_INT(r1.version, 1);
  od_relation same = rel_of(v1_cols, 3);
  CHECK_INT(relation(s, &same, &err), OD_OK);
  od_column v2_cols[] = {v1_cols[0], v1_cols[1], v1_cols[2], COL("note", 25, -1, "text", 4, false)};
  od_relation r2 = rel_of(v2_cols, 4);
  CHECK_INT(relation(s, &r2, &err), OD_ESCHEMA);
  CHECK_INT(err.code, OD_ESCHEMA);
  CHECK(!err.retriable);
  CHECK_STR(err.msg, "pipeline shop: table public.orders changed on the source (column note text added); "
                     "schema_changes is 'stop', so nothing written under the new shape is applied. To go on, "
                     "set schema_changes: apply (or ignore) and restart");
  od_column typ[] = {v1_cols[0], v1_cols[1], COL("price", 25, -1, "text", 3, false)};
  od_relation r3 = rel_of(typ, 3);
  CHECK_INT(relation(s, &r3, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "(column price changed from numeric(10,2) to text)");
  CHECK_INT(count_lines(history()), 1);
  od_schema_close(s);
  /* a restart under stop hits the same error again */
  s = open_policy(OD_SCHEMA_STOP);
  od_relation r2b = rel_of(v2_cols, 4);
  CHECK_INT(relation(s, &r2b, &err), OD_ESCHEMA);
  od_schema_close(s);
}

#define TV(s) ((od_value){.data = (s), .len = (uint32_t)strlen(s), .kind = OD_VALUE_TEXT})
#define NV ((od_value){.kind = OD_VALUE_NULL})

TEST(ignore_policy_maps_changes_onto_the_kept_shape) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_IGNORE);
  od_error err;
  od_arena a;
  od_arena_init(&a, 4096);
  od_relation r1 = rel_of(v1_cols, 3);
  CHECK_INT(relation(s, &r1, &err), OD_OK);
  /* a change of the first version: same columns, c->rel becomes the kept copy */
  od_value v1[] = {TV("1"), TV("5"), TV("9.50")};
  od_change c = {.op = OD_OP_INSERT, .rel = &r1, .newtup = {3, v1}};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK(c.rel != &r1);
  CHECK_INT(c.rel->version, 1);
  CHECK_STR(c.rel->columns[1].name, "qty");
  CHECK(c.newtup.values == v1);
  const od_relation *pinned = c.rel;

  /* v2: qty renamed to quantity (attnum 2), price dropped, note added */
  od_column v2_cols[] = {v1_cols[0], COL("quantity", 23, -1, "integer", 2, false),
                         COL("note", 25, -1, "text", 4, false)};
  od_relation r2 = rel_of(v2_cols, 3);
  CHECK_INT(relation(s, &r2, &err), OD_OK);
  CHECK_INT(r2.version, 2);
  CHECK_CONTAINS(history(), "\"policy\":\"ignore\",\"applied\":false");
  od_value v2[] = {TV("2"), TV("7"), TV("hello")};
  od_value o2[] = {TV("2"), NV, NV};
  c = (od_change){.op = OD_OP_UPDATE, .rel = &r2, .old_kind = 'K', .newtup = {3, v2}, .oldtup = {3, o2}};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK(c.rel == pinned);
  CHECK_INT(c.newtup.ncolumns, 3);
  CHECK_STR(c.newtup.values[0].data, "2");
  CHECK_STR(c.newtup.values[1].data, "7"); /* quantity -> qty (same attnum) */
  CHECK_INT(c.newtup.values[2].kind, OD_VALUE_NULL); /* price is gone: NULL */
  CHECK_INT(c.oldtup.ncolumns, 3);
  CHECK_STR(c.oldtup.values[0].data, "2");
  /* truncate and messages pass */
  c = (od_change){.op = OD_OP_TRUNCATE, .rel = &r2};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK(c.rel == pinned);
  c = (od_change){.op = OD_OP_MESSAGE};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK(c.rel == NULL);
  od_schema_close(s);

  /* after a restart the kept shape is still version 1 */
  s = open_policy(OD_SCHEMA_IGNORE);
  od_relation r2b = rel_of(v2_cols, 3);
  CHECK_INT(relation(s, &r2b, &err), OD_OK);
  CHECK_INT(r2b.version, 2);
  c = (od_change){.op = OD_OP_INSERT, .rel = &r2b, .newtup = {3, v2}};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK_INT(c.rel->version, 1);
  CHECK_STR(c.rel->columns[1].name, "qty");
  CHECK_STR(c.newtup.values[1].data, "7");
  /* a version without the kept key column cannot be mapped */
  od_column nokey[] = {COL("quantity", 23, -1, "integer", 2, false)};
  od_relation r3 = rel_of(nokey, 1);
  CHECK_INT(relation(s, &r3, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "table public.orders: key column id of the shape the sink keeps (version 1) is gone");
  od_schema_close(s);

  /* under apply, mapping is a no-op */
  s = open_policy(OD_SCHEMA_APPLY);
  od_relation r2c = rel_of(v2_cols, 3);
  CHECK_INT(relation(s, &r2c, &err), OD_OK);
  c = (od_change){.op = OD_OP_INSERT, .rel = &r2c, .newtup = {3, v2}};
  CHECK_INT(od_schema_map_change(s, &c, &a, &err), OD_OK);
  CHECK(c.rel == &r2c);
  CHECK(c.newtup.values == v2);
  od_schema_close(s);
  od_arena_destroy(&a);
}

static void write_history(const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/shop.schema.jsonl", state_dir);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  fputs(text, f);
  fclose(f);
}

TEST(truncated_last_line_is_cut_and_corrupt_lines_are_errors) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_APPLY);
  od_error err;
  od_column odd[] = {COL("we\"ird\\ \x01 ☃", 25, -1, "text", 1, true)};
  od_relation r1 = rel_of(odd, 1);
  CHECK_INT(relation(s, &r1, &err), OD_OK);
  od_schema_close(s);
  char good[16384];
  snprintf(good, sizeof good, "%s", history());
  CHECK_CONTAINS(good, "\"name\":\"we\\\"ird\\\\ \\u0001 ☃\"");

  char text[2 * 16384 + 64];
  snprintf(text, sizeof text, "%s{\"table\":\"public.orders\",\"vers", good);
  write_history(text);
  s = open_policy(OD_SCHEMA_APPLY);
  CHECK_STR(history(), good);
  od_relation again = rel_of(odd, 1);
  CHECK_INT(relation(s, &again, &err), OD_OK); /* the escaped name reads back exactly */
  CHECK_INT(again.version, 1);
  CHECK_INT(count_lines(history()), 1);
  od_schema_close(s);

  snprintf(text, sizeof text, "%s\n{\"table\":\"public.x\",\"version\":1,\"columns\":[{\"name\":\"a\"}]}\n", good);
  write_history(text);
  od_schema *bad = NULL;
  memset(&err, 0, sizeof err);
  CHECK_INT(od_schema_open(state_dir, "shop", OD_SCHEMA_APPLY, &bad, &err), OD_ESCHEMA);
  CHECK(bad == NULL);
  char want[600];
  snprintf(want, sizeof want, "schema history %s/shop.schema.jsonl:3: column 1 lacks \"type_oid\"", state_dir);
  CHECK_CONTAINS(err.msg, want);
  snprintf(text, sizeof text, "%s%s", good, good);
  write_history(text);
  CHECK_INT(od_schema_open(state_dir, "shop", OD_SCHEMA_APPLY, &bad, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, ":2: table public.orders version 1 is not above the previous version 1");
  write_history("not json\n");
  CHECK_INT(od_schema_open(state_dir, "shop", OD_SCHEMA_APPLY, &bad, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, ":1: expected '{'");
}

TEST(open_creates_the_state_dir_and_rejects_bad_policy) {
  fresh_dir();
  char sub[400];
  snprintf(sub, sizeof sub, "%s/state", state_dir);
  od_schema *s = NULL;
  od_error err = {0};
  CHECK_INT(od_schema_open(sub, "p", OD_SCHEMA_APPLY, &s, &err), OD_OK);
  struct stat st;
  char path[500];
  snprintf(path, sizeof path, "%s/p.schema.jsonl", sub);
  CHECK_INT(stat(path, &st), 0);
  od_schema_close(s);
  CHECK_INT(od_schema_open(sub, "p", 7, &s, &err), OD_EINVAL);
}

/* A table dropped and re-created (new relation OID, same name and shape) is a new version that
 * starts over in the transaction that first used it — also when that transaction is replayed
 * after a restart — and only there; under stop it fails naming the table and the way out. */
TEST(recreated_table_is_a_new_version_that_starts_over_once) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_APPLY);
  od_error err = {0};
  bool over = true;
  od_relation a = rel_of(v1_cols, 3);
  CHECK_INT(od_schema_relation_at(s, &a, "0/100", &over, &err), OD_OK);
  CHECK(!over);
  od_relation b = rel_of(v1_cols, 3);
  b.oid = 16999;
  CHECK_INT(od_schema_relation_at(s, &b, "0/200", &over, &err), OD_OK);
  CHECK(over);
  CHECK_INT(b.version, 2);
  CHECK_CONTAINS(history(), "\"change\":\"table dropped and re-created at the source (relation oid 16384, now 16999)\","
                            "\"recreated_at\":\"0/200\"}\n");
  /* later transactions of the new table: no new start */
  CHECK_INT(od_schema_relation_at(s, &b, "0/300", &over, &err), OD_OK);
  CHECK(!over);
  od_schema_close(s);
  /* after a restart: the old table's shape replays as version 1, the new one in 0/200 starts over again */
  s = open_policy(OD_SCHEMA_APPLY);
  od_relation a2 = rel_of(v1_cols, 3);
  CHECK_INT(od_schema_relation_at(s, &a2, "0/150", &over, &err), OD_OK);
  CHECK(!over);
  CHECK_INT(a2.version, 1);
  od_relation b2 = rel_of(v1_cols, 3);
  b2.oid = 16999;
  CHECK_INT(od_schema_relation_at(s, &b2, "0/200", &over, &err), OD_OK);
  CHECK(over);
  CHECK_INT(b2.version, 2);
  CHECK_INT(count_lines(history()), 2);
  od_schema_close(s);
  s = open_policy(OD_SCHEMA_STOP);
  od_relation c = rel_of(v1_cols, 3);
  c.oid = 17001;
  CHECK_INT(od_schema_relation_at(s, &c, "0/400", &over, &err), OD_ESCHEMA);
  CHECK_CONTAINS(err.msg, "table public.orders was dropped and re-created on the source (relation oid 16999, now 17001)");
  CHECK_CONTAINS(err.msg, "set schema_changes: apply");
  CHECK_INT(count_lines(history()), 2);
  od_schema_close(s);
}

/* A replayed old shape whose attnums came from today's catalog (a column that took the name
 * later) but that sends the same columns as a recorded version takes that version and its
 * attnums. */
TEST(replayed_shape_takes_the_recorded_version_and_its_attnums) {
  fresh_dir();
  od_schema *s = open_policy(OD_SCHEMA_APPLY);
  od_error err = {0};
  od_relation a = rel_of(v1_cols, 3);
  CHECK_INT(relation(s, &a, &err), OD_OK);
  od_column replay[] = {COL("id", 23, -1, "integer", 1, true), COL("qty", 23, -1, "integer", 5, false),
                        COL("price", 1700, 655366, "numeric(10,2)", 3, false)};
  od_relation r = rel_of(replay, 3);
  CHECK_INT(relation(s, &r, &err), OD_OK);
  CHECK_INT(r.version, 1);
  CHECK_INT(replay[1].attnum, 2);
  CHECK_INT(count_lines(history()), 1);
  od_schema_close(s);
}
