/* test_sink_clickhouse_keyless.c — rows of tables without a key in the ClickHouse sink
 * (src/sinks/clickhouse_keyless.c), without a server: which signed rows each change becomes, that
 * identical contents hash alike and different ones not, that (version, seq) is unique per change
 * and the same on a replay, unchanged values from the before-image, the refusal of a delete
 * without a before-image, and the snapshot sequence across commit and rollback. */
#include <stdlib.h>
#include <string.h>

#include "sinks/clickhouse_internal.h"
#include "test.h"

#define T(s) {.data = s, .len = sizeof(s) - 1, .kind = OD_VALUE_TEXT}
#define NUL {.kind = OD_VALUE_NULL}
#define UNCH {.kind = OD_VALUE_UNCHANGED}

static od_column cols[2] = {{.name = "kind", .type_oid = 25, .typmod = -1, .key = true},
                            {.name = "qty", .type_oid = 23, .typmod = -1, .key = true}};
static od_relation rel = {.oid = 1, .schema = "public", .name = "events", .replica_identity = 'f', .ncolumns = 2,
                          .columns = cols, .version = 1, .match_full_row = true};

static ch_sink *sink_new(void) {
  ch_sink *s = calloc(1, sizeof *s);
  s->http.name = strdup("test");
  return s;
}

static ch_rel *rel_new(void) {
  ch_rel *r = calloc(1, sizeof *r);
  r->rel = &rel;
  r->ncol = 2;
  r->table = strdup("events");
  r->kind = calloc(2, 1);
  r->kind[0] = CHK_STRING;
  r->kind[1] = CHK_INT;
  r->keyless = true;
  return r;
}

static void rel_done(ch_rel *r) {
  free(r->rows);
  free(r->cells);
  od_sqlbuf_free(&r->data);
  free(r->kind);
  free(r->table);
  free(r);
}

static void sink_done(ch_sink *s) {
  ch_keyless_seqs_free(s);
  free(s->http.name);
  free(s);
}

static const char *cell(const ch_rel *r, size_t row, int col) {
  static char buf[64];
  const ch_cell *c = &r->cells[row * r->ncol + col];
  snprintf(buf, sizeof buf, "%.*s", (int)c->len, r->data.p + c->off);
  return buf;
}

/* The changes of one source transaction at position 0/500: three inserts (two identical), an
 * update of one of the identical rows with qty unchanged, a delete of the third row. */
static int feed(ch_sink *s, ch_rel *r, const od_pos *start, od_error *err) {
  od_value a[] = {T("a"), T("1")}, a2[] = {T("a"), T("1")}, b[] = {T("b"), NUL}, up[] = {T("z"), UNCH};
  od_change c[] = {
      {.op = OD_OP_INSERT, .rel = &rel, .newtup = {2, a}, .index = 0, .txn_start = start},
      {.op = OD_OP_INSERT, .rel = &rel, .newtup = {2, a2}, .index = 1, .txn_start = start},
      {.op = OD_OP_INSERT, .rel = &rel, .newtup = {2, b}, .index = 2, .txn_start = start},
      {.op = OD_OP_UPDATE, .rel = &rel, .old_kind = 'O', .oldtup = {2, a}, .newtup = {2, up}, .index = 3,
       .txn_start = start},
      {.op = OD_OP_DELETE, .rel = &rel, .old_kind = 'O', .oldtup = {2, b}, .index = 4, .txn_start = start},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    int rc = ch_keyless_change(s, r, &c[i], err);
    if (rc) return rc;
  }
  return OD_OK;
}

TEST(changes_become_signed_rows) {
  od_error err = {0};
  od_pos start;
  CHECK_INT(od_pos_from_text("pg:0/500", &start, &err), OD_OK);
  ch_sink *s = sink_new();
  ch_rel *r = rel_new();
  CHECK_INT(feed(s, r, &start, &err), OD_OK);
  CHECK_INT((int)r->nrows, 6); /* 3 inserts, an update as two rows, a delete */
  static const int sign[] = {1, 1, 1, -1, 1, -1};
  static const unsigned seq[] = {0, 2, 4, 6, 7, 8};
  for (size_t i = 0; i < r->nrows; i++) {
    CHECK_INT(r->rows[i].sign, sign[i]);
    CHECK_INT((int)r->rows[i].seq, (int)seq[i]);
    CHECK(r->rows[i].version == start.kind->version(&start));
  }
  /* identical contents hash alike: both inserts of ('a',1) and the update's before-image */
  CHECK(ch_keyless_hash(r, 0) == ch_keyless_hash(r, 1));
  CHECK(ch_keyless_hash(r, 0) == ch_keyless_hash(r, 3));
  CHECK(ch_keyless_hash(r, 2) == ch_keyless_hash(r, 5)); /* ('b',NULL) inserted, then deleted */
  CHECK(ch_keyless_hash(r, 0) != ch_keyless_hash(r, 2));
  CHECK(ch_keyless_hash(r, 0) != ch_keyless_hash(r, 4));
  /* the update's unchanged qty comes from the before-image */
  CHECK_STR(cell(r, 4, 0), "z");
  CHECK_STR(cell(r, 4, 1), "1");
  CHECK_STR(cell(r, 2, 1), "\\N");
  rel_done(r);
  sink_done(s);
}

TEST(a_replay_gives_the_same_rows) {
  od_error err = {0};
  od_pos start;
  CHECK_INT(od_pos_from_text("pg:0/500", &start, &err), OD_OK);
  ch_sink *s = sink_new();
  ch_rel *r1 = rel_new(), *r2 = rel_new();
  CHECK_INT(feed(s, r1, &start, &err), OD_OK);
  CHECK_INT(feed(s, r2, &start, &err), OD_OK);
  CHECK_INT((int)r2->nrows, (int)r1->nrows);
  for (size_t i = 0; i < r1->nrows; i++) {
    CHECK(ch_keyless_hash(r1, i) == ch_keyless_hash(r2, i));
    CHECK(r1->rows[i].version == r2->rows[i].version);
    CHECK(r1->rows[i].seq == r2->rows[i].seq);
    CHECK_INT(r1->rows[i].sign, r2->rows[i].sign);
  }
  /* a later transaction: other versions, so its rows never collapse with these */
  od_pos later;
  CHECK_INT(od_pos_from_text("pg:0/600", &later, &err), OD_OK);
  ch_rel *r3 = rel_new();
  CHECK_INT(feed(s, r3, &later, &err), OD_OK);
  CHECK(r3->rows[0].version > r1->rows[0].version);
  rel_done(r1);
  rel_done(r2);
  rel_done(r3);
  sink_done(s);
}

TEST(delete_without_before_image_is_refused) {
  od_error err = {0};
  od_pos start;
  CHECK_INT(od_pos_from_text("pg:0/500", &start, &err), OD_OK);
  ch_sink *s = sink_new();
  ch_rel *r = rel_new();
  od_value k[] = {T("a"), T("1")};
  od_change d = {.op = OD_OP_DELETE, .rel = &rel, .old_kind = 'K', .oldtup = {2, k}, .txn_start = &start};
  CHECK(ch_keyless_change(s, r, &d, &err) != OD_OK);
  CHECK_CONTAINS(err.msg, "table events has no key");
  CHECK_CONTAINS(err.msg, "REPLICA IDENTITY FULL");
  CHECK_INT((int)r->nrows, 0);
  rel_done(r);
  sink_done(s);
}

TEST(snapshot_rows_number_per_table_and_roll_back) {
  od_error err = {0};
  ch_sink *s = sink_new();
  ch_rel *r = rel_new(), *again = rel_new(); /* two relation versions of one table */
  od_value a[] = {T("a"), T("1")};
  od_change snap = {.op = OD_OP_READ, .rel = &rel, .newtup = {2, a}};
  CHECK_INT(ch_keyless_change(s, r, &snap, &err), OD_OK);
  CHECK_INT(ch_keyless_change(s, again, &snap, &err), OD_OK);
  CHECK_INT((int)r->rows[0].seq, 0);
  CHECK_INT((int)again->rows[0].seq, 1); /* identical rows of the snapshot stay two rows */
  CHECK(r->rows[0].version == 0);
  ch_keyless_seqs_commit(s);
  CHECK_INT(ch_keyless_change(s, r, &snap, &err), OD_OK);
  CHECK_INT((int)r->rows[1].seq, 2);
  ch_keyless_seqs_rollback(s); /* the batch is dropped and delivered again: same numbers */
  CHECK_INT(ch_keyless_change(s, again, &snap, &err), OD_OK);
  CHECK_INT((int)again->rows[1].seq, 2);
  rel_done(r);
  rel_done(again);
  sink_done(s);
}

