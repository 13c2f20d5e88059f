/* Unit tests for src/sources/pg/pg_mesh.c: a mesh node's stream reader — stamps and the hybrid
 * logical clock.
 * Asserts: a local transaction's stamp is "v2 node LSN time hlc [vv]" with hlc = its commit time
 * when nothing ahead of it was applied; a transaction with an origin is dropped (nothing passed on)
 * and its "odsync.hlc" message sets the version vector's time (the Begin's is PostgreSQL's epoch) and
 * the running maximum, so the next local transaction whose clock is behind gets that hlc + 1 and one
 * whose clock is ahead keeps its time; seeded _odsync_hlc rows count only for transactions
 * committed after them (by commit time) and a new seed forgets the previous stream's maximum; the
 * commit time reported for a dropped transaction is its message's author time; at its commit, a
 * dropped transaction that raised the version vector hands on exactly one "odsync.meshvv" message
 * with the whole vector, one that raised nothing (a repeat, a checkpoint-only commit) and a local
 * transaction hand on nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sources/pg/pg_mesh.h"
#include "sources/pg/pg_position.h"
#include "test.h"

#define PG_EPOCH_US 946684800000000LL

static char got[4096];
static int ncalls;

static char vvmsg[4096];

static int on_change(void *ctx, const od_txn_info *t, const od_change *c, od_error *err) {
  (void)ctx, (void)t, (void)err;
  ncalls++;
  if (c->op == OD_OP_MESSAGE && c->newtup.ncolumns == 2 && c->newtup.values[0].len == strlen(OD_MESH_VV_PREFIX) &&
      memcmp(c->newtup.values[0].data, OD_MESH_VV_PREFIX, c->newtup.values[0].len) == 0)
    snprintf(vvmsg, sizeof vvmsg, "%.*s", (int)c->newtup.values[1].len, c->newtup.values[1].data);
  if (c->op == OD_OP_MESSAGE && c->newtup.ncolumns == 2 && c->newtup.values[0].len == strlen(OD_MESH_PREFIX) &&
      memcmp(c->newtup.values[0].data, OD_MESH_PREFIX, c->newtup.values[0].len) == 0)
    snprintf(got, sizeof got, "%.*s", (int)c->newtup.values[1].len, c->newtup.values[1].data);
  return OD_OK;
}

static const od_change_handler out = {.change = on_change};

/* One local transaction (one insert): returns its stamp text. */
static const char *local_txn(pg_mesh *m, uint64_t lsn, int64_t ts) {
  od_txn_info t = {.xid = 7, .start = od_pg_pos(lsn), .commit_time = ts};
  od_change c = {.op = OD_OP_INSERT, .index = 0};
  od_error err = {0};
  got[0] = '\0';
  ncalls = 0;
  od_pg_mesh_begin(m);
  CHECK_INT(od_pg_mesh_change(m, &t, &c, &out, &err), OD_OK);
  CHECK_INT(ncalls, 2); /* the stamp, then the change */
  return got;
}

/* One transaction a mesh sink applied from node `from`: an insert and its odsync.hlc message. */
static void applied_txn(pg_mesh *m, const char *from, uint64_t origin_lsn, int64_t author_ts, int64_t hlc) {
  char origin[64], msg[64];
  snprintf(origin, sizeof origin, "odsync_%s", from);
  snprintf(msg, sizeof msg, "%" PRId64 " %" PRId64, author_ts, hlc);
  od_txn_info t = {.xid = 8, .start = od_pg_pos(0x5000), .commit_time = PG_EPOCH_US, .origin = origin,
                   .origin_lsn = origin_lsn};
  od_value vals[2] = {{.data = OD_MESH_HLC_PREFIX, .len = (uint32_t)strlen(OD_MESH_HLC_PREFIX), .kind = OD_VALUE_TEXT},
                      {.data = msg, .len = (uint32_t)strlen(msg), .kind = OD_VALUE_TEXT}};
  od_change ins = {.op = OD_OP_INSERT, .index = 0};
  od_change mc = {.op = OD_OP_MESSAGE, .index = 1, .newtup = {.ncolumns = 2, .values = vals}};
  od_error err = {0};
  ncalls = 0;
  od_pg_mesh_begin(m);
  CHECK_INT(od_pg_mesh_change(m, &t, &ins, &out, &err), OD_OK);
  CHECK_INT(od_pg_mesh_change(m, &t, &mc, &out, &err), OD_OK);
  CHECK_INT(ncalls, 0); /* dropped: never echoed */
  CHECK(od_pg_mesh_commit_time(m, &t) == author_ts);
}

TEST(local_stamp_is_its_commit_time_without_applied_clocks) {
  pg_mesh *m = od_pg_mesh_new("c");
  CHECK_STR(local_txn(m, 0x1000, 1000000), "v2 c 1000 1000000 1000000");
  od_pg_mesh_free(m);
}

TEST(applied_clock_ahead_lifts_the_next_local_write) {
  pg_mesh *m = od_pg_mesh_new("c");
  applied_txn(m, "a", 0x2A0, 5000000, 5000007); /* a's write: its hlc already past its own time */
  CHECK_INT((long)od_pg_mesh_dropped(m), 1);
  /* c's clock is behind: its write follows a's, so it ranks after it */
  CHECK_STR(local_txn(m, 0x3000, 1000000), "v2 c 3000 1000000 5000008 a:2A0:5000000");
  CHECK(od_pg_mesh_hlc(m, 5000007) == 5000008);
  /* a clock ahead of everything applied keeps its own time */
  CHECK_STR(local_txn(m, 0x3100, 9000000), "v2 c 3100 9000000 9000000 a:2A0:5000000");
  od_pg_mesh_free(m);
}

TEST(seeded_rows_count_from_their_commit_time) {
  pg_mesh *m = od_pg_mesh_new("c");
  int64_t at[3] = {300, 100, 200}, hlc[3] = {7000, 5000, 4000};
  od_error err = {0};
  applied_txn(m, "b", 0x10, 10, 99999999); /* the previous stream's maximum */
  CHECK_INT(od_pg_mesh_seed(m, at, hlc, 3, &err), OD_OK);
  CHECK(od_pg_mesh_hlc(m, 100) == 100);   /* committed before every row: its own time */
  CHECK(od_pg_mesh_hlc(m, 101) == 5001);  /* after the row at 100 */
  CHECK(od_pg_mesh_hlc(m, 250) == 5001);  /* rows at 100 and 200: the highest is 5000 */
  CHECK(od_pg_mesh_hlc(m, 301) == 7001);
  CHECK(od_pg_mesh_hlc(m, 8000) == 8000); /* its clock is past them all */
  applied_txn(m, "a", 0x20, 20, 9000);    /* the stream adds to the seed */
  CHECK(od_pg_mesh_hlc(m, 150) == 9001);
  CHECK_INT(od_pg_mesh_seed(m, NULL, NULL, 0, &err), OD_OK);
  CHECK(od_pg_mesh_hlc(m, 150) == 150);
  od_pg_mesh_free(m);
}

TEST(local_commit_time_is_reported_unchanged) {
  pg_mesh *m = od_pg_mesh_new("c");
  od_txn_info t = {.xid = 7, .start = od_pg_pos(0x1000), .commit_time = 1234};
  local_txn(m, 0x1000, 1234);
  CHECK(od_pg_mesh_commit_time(m, &t) == 1234);
  od_pg_mesh_free(m);
}


/* The commit of the last transaction: how many changes it handed on, the message in vvmsg. */
static int commit_txn(pg_mesh *m) {
  od_txn_info t = {.xid = 8};
  od_error err = {0};
  vvmsg[0] = '\0';
  ncalls = 0;
  CHECK_INT(od_pg_mesh_commit(m, &t, &out, &err), OD_OK);
  return ncalls;
}

TEST(dropped_transaction_that_raised_the_vector_hands_it_on_at_commit) {
  pg_mesh *m = od_pg_mesh_new("c");
  applied_txn(m, "a", 0x2A0, 5000000, 5000000);
  CHECK_INT(commit_txn(m), 1);
  CHECK_STR(vvmsg, "v1 c a:2A0:5000000");
  applied_txn(m, "b", 0x3B0, 6000000, 6000000);
  CHECK_INT(commit_txn(m), 1);
  CHECK_STR(vvmsg, "v1 c a:2A0:5000000 b:3B0:6000000");
  /* the same position again (a replayed commit) raises nothing: nothing handed on */
  applied_txn(m, "b", 0x3B0, 6000000, 6000000);
  CHECK_INT(commit_txn(m), 0);
  /* a local transaction's commit hands on nothing (its stamp carried the vector) */
  local_txn(m, 0x4000, 7000000);
  CHECK_INT(commit_txn(m), 0);
  /* a transaction with an origin and no odsync.hlc message (a sink's checkpoint-only commit): the
   * origin LSN is the one already noted, the Begin's time PostgreSQL's epoch: nothing */
  od_txn_info t = {.xid = 9, .commit_time = PG_EPOCH_US, .origin = "odsync_b", .origin_lsn = 0x3B0};
  od_change ins = {.op = OD_OP_INSERT, .index = 0};
  od_error err = {0};
  od_pg_mesh_begin(m);
  CHECK_INT(od_pg_mesh_change(m, &t, &ins, &out, &err), OD_OK);
  CHECK_INT(commit_txn(m), 0);
  od_pg_mesh_free(m);
}

/* The echo count (odsync_pgoutput leaves these rows at the server; with pgoutput they arrive and
 * are dropped here): row changes of dropped transactions and their values' bytes; their messages
 * and local transactions' changes are not counted. */
TEST(echo_counts_the_rows_of_dropped_transactions_only) {
  pg_mesh *m = od_pg_mesh_new("c");
  uint64_t rows = 9, bytes = 9;
  od_pg_mesh_echo(m, &rows, &bytes);
  CHECK(rows == 0 && bytes == 0);
  applied_txn(m, "a", 0x2A0, 5000000, 5000007); /* one insert without values, one message */
  od_pg_mesh_echo(m, &rows, &bytes);
  CHECK(rows == 1 && bytes == 0);
  od_txn_info t = {.xid = 10, .commit_time = PG_EPOCH_US, .origin = "odsync_a", .origin_lsn = 0x2B0};
  od_value nv[2] = {{.data = "42", .len = 2, .kind = OD_VALUE_TEXT}, {.data = "abc", .len = 3, .kind = OD_VALUE_TEXT}};
  od_value ov[1] = {{.data = "41", .len = 2, .kind = OD_VALUE_TEXT}};
  od_change up = {.op = OD_OP_UPDATE, .index = 0, .newtup = {.ncolumns = 2, .values = nv},
                  .oldtup = {.ncolumns = 1, .values = ov}};
  od_error err = {0};
  ncalls = 0;
  od_pg_mesh_begin(m);
  CHECK_INT(od_pg_mesh_change(m, &t, &up, &out, &err), OD_OK);
  CHECK_INT(ncalls, 0);
  od_pg_mesh_echo(m, &rows, &bytes);
  CHECK(rows == 2 && bytes == 7);
  local_txn(m, 0x4000, 7000000);
  od_pg_mesh_echo(m, &rows, &bytes);
  CHECK(rows == 2 && bytes == 7);
  CHECK_INT((long)od_pg_mesh_dropped(m), 2);
  od_pg_mesh_free(m);
}
