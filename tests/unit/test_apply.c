/* Unit tests for the checkpoint logic of the apply thread, against the real SQLite sink:
 * commits happen only at source transaction boundaries, the durable position is exactly the
 * last committed boundary, a partial transaction never reaches the sink, and idle heartbeats
 * advance the checkpoint. */
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/apply.h"
#include "core/queue.h"
#include "odsync/registry.h"
#include "test.h"

static char db_path[256];
static od_column cols[] = {{.name = "id", .type_oid = 23, .typmod = -1, .key = true},
                           {.name = "v", .type_oid = 25, .typmod = -1}};
static od_relation rel = {.oid = 42, .schema = "public", .name = "t", .replica_identity = 'd',
                          .ncolumns = 2, .columns = cols, .version = 1, .has_primary_key = true};

static od_sink *open_sink(void) {
  char tmpl[] = "/tmp/odsync-apply-XXXXXX";
  if (!mkdtemp(tmpl)) OD_TEST_FAIL("mkdtemp");
  snprintf(db_path, sizeof db_path, "%s/t.db", tmpl);
  od_config_entry e = {.key = "path", .value = db_path, .line = 1, .col = 1};
  od_config_section sec = {.file = "t.yml", .path = "pipelines[0].sink", .type = "sqlite", .entries = &e,
                           .nentries = 1};
  od_sink *s = NULL;
  od_error err = {0};
  if (od_sink_find("sqlite")->open(&sec, "p", &s, &err)) OD_TEST_FAIL("open: %s", err.msg);
  return s;
}

static long long count_rows(void) {
  sqlite3 *db;
  sqlite3_stmt *st;
  long long n = -1;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  } else {
    n = 0; /* table not created yet */
  }
  sqlite3_close(db);
  return n;
}

/* Adds rows [first, first+n) to a chunk; ends the transaction at `end` when end != 0. */
static od_chunk *rows_chunk(od_queue *q, int first, int n, uint64_t end) {
  od_chunk *c = od_queue_take_free(q);
  for (int i = 0; i < n; i++) {
    od_change *ch = od_chunk_add(c);
    od_value *v = od_arena_alloc(&c->arena, 2 * sizeof *v);
    char *id = od_arena_alloc(&c->arena, 16);
    int len = snprintf(id, 16, "%d", first + i);
    v[0] = (od_value){.data = id, .len = (uint32_t)len, .kind = OD_VALUE_TEXT};
    v[1] = (od_value){.data = "x", .len = 1, .kind = OD_VALUE_TEXT};
    ch->op = OD_OP_INSERT;
    ch->rel = &rel;
    ch->newtup = (od_tuple){2, v};
  }
  if (end) {
    c->ends_txn = true;
    c->boundary = c->nchanges;
    c->end = od_pos_legacy_lsn(end);
    c->ntxns = 1;
    c->commit_time = 1;
  }
  return c;
}

static uint64_t durable_u64(od_sink_stats *st) {
  od_pos p = od_pos_cell_get(&st->durable);
  return od_pos_to_u64(&p);
}

static int start_apply(od_apply **a, const od_pipeline_config *pc, od_sink *sink, od_queue *q, od_sink_stats *st,
                       od_error *err) {
  od_apply_env env = {.cfg = pc, .sink = sink, .mark_prefix = "p", .queue = q, .consumer = 0, .stats = st};
  return od_apply_start(a, &env, err);
}

static od_pipeline_config cfg(int max_rows) {
  od_pipeline_config c = {.name = "p"};
  c.batch.max_rows = max_rows;
  c.batch.max_bytes = 64 << 20;
  c.batch.max_delay_ms = 20;
  return c;
}

TEST(commits_whole_transactions_and_publishes_their_position) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  /* Two complete transactions, then a third split over two chunks whose end never arrives. */
  od_queue_push(&q, rows_chunk(&q, 1, 10, 0x100), 0);
  od_queue_push(&q, rows_chunk(&q, 11, 5, 0x200), 0);
  od_queue_push(&q, rows_chunk(&q, 16, 7, 0), 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  CHECK_INT(durable_u64(&stats), 0x200);
  CHECK_INT(atomic_load(&stats.txns_applied), 2);
  CHECK_INT(atomic_load(&stats.changes_applied), 15);
  od_pos read;
  CHECK_INT(sink->ops->read_position(sink, &read, &err), OD_OK);
  uint64_t pos = od_pos_to_u64(&read);
  CHECK_INT(pos, 0x200);
  CHECK_INT(count_rows(), 15); /* the partial third transaction is not there */
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(a_large_transaction_spanning_chunks_is_committed_once_at_its_end) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(100); /* max_rows far below the transaction size */
  for (int i = 0; i < 9; i++) od_queue_push(&q, rows_chunk(&q, i * 100, 100, 0), 0);
  od_queue_push(&q, rows_chunk(&q, 900, 100, 0x900), 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  CHECK_INT(atomic_load(&stats.batches), 1);
  CHECK_INT(durable_u64(&stats), 0x900);
  CHECK_INT(count_rows(), 1000);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

/* Transactions A (one chunk), B (over two chunks), C: batches with the given linger setting. */
static int64_t batches_with_linger(int linger) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  pc.batch.linger = linger;
  od_queue_push(&q, rows_chunk(&q, 1, 10, 0x100), 0);
  od_queue_push(&q, rows_chunk(&q, 11, 5, 0), 0);
  od_queue_push(&q, rows_chunk(&q, 16, 5, 0x200), 0);
  od_queue_push(&q, rows_chunk(&q, 21, 5, 0x300), 0);
  od_apply *a;
  od_error err = {0};
  if (start_apply(&a, &pc, sink, &q, &stats, &err)) OD_TEST_FAIL("start: %s", err.msg);
  od_queue_close(&q);
  if (od_apply_join(a, &err)) OD_TEST_FAIL("join: %s", err.msg);
  CHECK_INT(durable_u64(&stats), 0x300);
  CHECK_INT(count_rows(), 25);
  int64_t n = (int64_t)atomic_load(&stats.batches);
  sink->ops->close(sink);
  od_queue_destroy(&q);
  return n;
}

TEST(a_lingering_batch_is_not_cut_before_a_transaction_that_continues) {
  /* The SQL sinks' rule: the batch before B's first chunk commits on its own (stopping there
   * loses no complete transaction), then B and C. Lingering (ClickHouse: a part per write): one. */
  CHECK_INT(batches_with_linger(OD_LINGER_OFF), 2);
  CHECK_INT(batches_with_linger(OD_LINGER_AUTO), 2); /* SQLite does not ask to linger */
  CHECK_INT(batches_with_linger(OD_LINGER_ON), 1);
}

TEST(heartbeat_advances_the_checkpoint_when_idle_and_never_backwards) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  od_queue_push(&q, rows_chunk(&q, 1, 3, 0x300), 0);
  od_chunk *hb = od_queue_take_free(&q);
  hb->heartbeat = true;
  hb->end = od_pos_legacy_lsn(0x500);
  od_queue_push(&q, hb, 0);
  od_chunk *old = od_queue_take_free(&q);
  old->heartbeat = true;
  old->end = od_pos_legacy_lsn(0x400); /* older than what is durable: ignored */
  od_queue_push(&q, old, 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  od_pos read;
  CHECK_INT(sink->ops->read_position(sink, &read, &err), OD_OK);
  uint64_t pos = od_pos_to_u64(&read);
  CHECK_INT(pos, 0x500);
  CHECK_INT(durable_u64(&stats), 0x500);
  CHECK_INT(count_rows(), 3);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(complete_transactions_before_a_partial_one_in_the_same_chunk_survive_a_stop) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  /* One chunk: a complete transaction (rows 1-4, ends at 0x100) followed by the first rows of
   * a transaction whose end never arrives. */
  od_chunk *c = rows_chunk(&q, 1, 4, 0x100);
  od_chunk *tail = rows_chunk(&q, 5, 3, 0);
  for (uint32_t i = 0; i < tail->nchanges; i++) {
    od_change *ch = od_chunk_add(c);
    *ch = tail->changes[i];
    od_value *v = od_arena_alloc(&c->arena, 2 * sizeof *v);
    v[0] = (od_value){.data = od_arena_strndup(&c->arena, tail->changes[i].newtup.values[0].data,
                                               tail->changes[i].newtup.values[0].len),
                      .len = tail->changes[i].newtup.values[0].len, .kind = OD_VALUE_TEXT};
    v[1] = tail->changes[i].newtup.values[1];
    ch->newtup.values = v;
  }
  c->ends_txn = false;
  od_queue_recycle(&q, tail);
  od_queue_push(&q, c, 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  CHECK_INT(durable_u64(&stats), 0x100);
  CHECK_INT(count_rows(), 4);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(a_failing_apply_rolls_back_reports_and_unblocks_the_reader) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  od_queue_push(&q, rows_chunk(&q, 1, 2, 0x100), 0);
  /* A keyless update without an old row cannot be applied: the sink must refuse it. */
  static od_column kcols[] = {{.name = "a", .type_oid = 23, .typmod = -1}};
  static od_relation keyless = {.oid = 43, .schema = "public", .name = "k", .replica_identity = 'd',
                                .ncolumns = 1, .columns = kcols, .version = 1};
  od_chunk *bad = od_queue_take_free(&q);
  od_change *ch = od_chunk_add(bad);
  od_value *v = od_arena_alloc(&bad->arena, sizeof *v);
  *v = (od_value){.data = "1", .len = 1, .kind = OD_VALUE_TEXT};
  ch->op = OD_OP_UPDATE;
  ch->rel = &keyless;
  ch->newtup = (od_tuple){1, v};
  bad->ends_txn = true;
  bad->boundary = 1;
  bad->ntxns = 1;
  bad->end = od_pos_legacy_lsn(0x200);
  od_queue_push(&q, bad, 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  /* The reader sees the failure through a closed queue (its push is refused). */
  for (int i = 0; i < 200 && !od_apply_failed(a); i++) usleep(10000);
  CHECK(od_apply_failed(a));
  CHECK_INT(od_queue_push(&q, rows_chunk(&q, 5, 1, 0x300), 0), OD_ECANCELLED);
  CHECK(od_apply_join(a, &err) != OD_OK);
  CHECK_CONTAINS(err.msg, "k");
  od_pos read;
  CHECK_INT(sink->ops->read_position(sink, &read, &err), OD_OK);
  uint64_t pos = od_pos_to_u64(&read);
  CHECK(pos == 0 || pos == 0x100); /* never the failed transaction's position */
  CHECK_INT(durable_u64(&stats), pos);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(adaptive_batching_grows_while_the_sink_keeps_up) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 1000000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(1000);
  pc.batch.adaptive = true;
  pc.batch.min_rows = 100;
  pc.batch.target_latency_ms = 60000; /* never too slow */
  for (int i = 0; i < 40; i++) od_queue_push(&q, rows_chunk(&q, i * 100, 100, (uint64_t)(i + 1) * 0x100), 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  CHECK_INT(count_rows(), 4000);
  CHECK(atomic_load(&stats.batch_limit) > 100);   /* it grew from max_rows / 10 */
  CHECK(atomic_load(&stats.batch_limit) <= 1000); /* never past max_rows */
  CHECK(atomic_load(&stats.batches) < 40);         /* fewer commits than transactions */
  CHECK_INT(durable_u64(&stats), 40 * 0x100);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(adaptive_batching_halves_when_the_sink_is_slower_than_the_target) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 1000000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(10000);
  pc.batch.adaptive = true;
  pc.batch.min_rows = 100;
  pc.batch.target_latency_ms = 1; /* 5,000 inserts and an fsync take longer than 1 ms */
  od_queue_push(&q, rows_chunk(&q, 1, 2000, 0), 0);
  od_queue_push(&q, rows_chunk(&q, 2001, 3000, 0x500), 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  CHECK_INT(count_rows(), 5000);
  CHECK_INT(atomic_load(&stats.batch_limit), 500); /* started at 1,000, halved once */
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(marks_on_a_chunk_commit_with_the_transaction_that_ends_there) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  /* A transaction with a mark that ends; then one with a mark that never ends (its mark is lost
   * with it: it was never acknowledged, the stream brings it again). */
  od_chunk *c1 = rows_chunk(&q, 1, 3, 0x100);
  CHECK_INT(od_chunk_add_mark(c1, "isnap/public.t/pos", 77), OD_OK);
  CHECK_INT(od_chunk_add_mark(c1, "isnap/public.t/requested", 5), OD_OK);
  od_chunk *c2 = rows_chunk(&q, 4, 2, 0);
  CHECK_INT(od_chunk_add_mark(c2, "isnap/public.t/pos", 99), OD_OK);
  od_queue_push(&q, c1, 0);
  od_queue_push(&q, c2, 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  uint64_t v = 0;
  CHECK_INT(sink->ops->get_mark(sink, "p/isnap/public.t/pos", &v, &err), OD_OK);
  CHECK_INT(v, 77);
  CHECK_INT(sink->ops->get_mark(sink, "p/isnap/public.t/requested", &v, &err), OD_OK);
  CHECK_INT(v, 5);
  CHECK_INT(count_rows(), 3);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

TEST(text_marks_on_a_chunk_commit_with_the_transaction_that_ends_there) {
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(5000);
  od_chunk *c1 = rows_chunk(&q, 1, 3, 0x100);
  char key[] = "K1 0: 1:1 2:id 4:text 3:abc";
  CHECK_INT(od_chunk_add_text_mark(c1, "isnap/public.t/pos", key), OD_OK);
  key[0] = 'X'; /* the chunk holds its own copy */
  CHECK_INT(od_chunk_add_mark(c1, "isnap/public.t/requested", 5), OD_OK);
  od_chunk *c2 = rows_chunk(&q, 4, 2, 0); /* never ends: its text mark is lost with it */
  CHECK_INT(od_chunk_add_text_mark(c2, "isnap/public.t/pos", "K1 0: 1:1 2:id 4:text 3:zzz"), OD_OK);
  od_queue_push(&q, c1, 0);
  od_queue_push(&q, c2, 0);
  od_apply *a;
  od_error err = {0};
  CHECK_INT(start_apply(&a, &pc, sink, &q, &stats, &err), OD_OK);
  od_queue_close(&q);
  CHECK_INT(od_apply_join(a, &err), OD_OK);
  char *text = NULL;
  CHECK_INT(sink->ops->get_text_mark(sink, "p/isnap/public.t/pos", &text, &err), OD_OK);
  CHECK_STR(text, "K1 0: 1:1 2:id 4:text 3:abc");
  free(text);
  uint64_t v = 0;
  CHECK_INT(sink->ops->get_mark(sink, "p/isnap/public.t/requested", &v, &err), OD_OK);
  CHECK_INT(v, 5);
  CHECK_INT(count_rows(), 3);
  sink->ops->close(sink);
  od_queue_destroy(&q);
}

/* ---- parallel apply (eventual, 4 writers: the carrier and 3 helpers on the same SQLite file) ---- */

static int open_helper(void *ctx, od_sink **out, od_error *err) {
  (void)ctx;
  od_config_entry e = {.key = "path", .value = db_path, .line = 1, .col = 1};
  od_config_section sec = {.file = "t.yml", .path = "pipelines[0].sink", .type = "sqlite", .entries = &e,
                           .nentries = 1};
  return od_sink_find("sqlite")->open(&sec, "p", out, err);
}

/* Pushes transactions of the given sizes (ids 1.., transaction t ends at position 0x1000 + t) as the
 * reader would: chunks of chunk_rows rows, cut wherever they fill, mostly inside transactions. */
static void push_stream(od_queue *q, const int *sizes, int ntxns, int chunk_rows) {
  od_chunk *c = NULL;
  int id = 1;
  for (int t = 0; t < ntxns; t++) {
    for (int i = 0; i < sizes[t]; i++) {
      if (!c) c = od_queue_take_free(q);
      od_change *ch = od_chunk_add(c);
      od_value *v = od_arena_alloc(&c->arena, 2 * sizeof *v);
      char *txt = od_arena_alloc(&c->arena, 16);
      int len = snprintf(txt, 16, "%d", id++);
      v[0] = (od_value){.data = txt, .len = (uint32_t)len, .kind = OD_VALUE_TEXT};
      v[1] = (od_value){.data = "x", .len = 1, .kind = OD_VALUE_TEXT};
      ch->op = OD_OP_INSERT;
      ch->rel = &rel;
      ch->index = (uint32_t)i;
      ch->newtup = (od_tuple){2, v};
      if (i == sizes[t] - 1) { /* the transaction ends here */
        c->ntxns++;
        c->boundary = c->nchanges;
        c->end = od_pos_legacy_lsn(0x1000 + (uint64_t)t);
        c->commit_time = 1;
      }
      c->ends_txn = c->ntxns && c->boundary == c->nchanges;
      if ((int)c->nchanges == chunk_rows) {
        od_queue_push(q, c, 0);
        c = NULL;
      }
    }
  }
  if (c) od_queue_push(q, c, 0);
}

/* 40 transactions of 4 rows, one of 61 (more than 4 x max_rows = 40), 40 more of 4, in chunks of 11
 * rows: a chunk ends exactly at a transaction end only every 44 rows, past 4 x max_rows. Returns the
 * changes the helpers applied. */
static uint64_t parallel_backlog_min(uint64_t *by_carrier, size_t parallel_min_rows) {
  int sizes[81];
  for (int t = 0; t < 81; t++) sizes[t] = t == 40 ? 61 : 4;
  od_sink *sink = open_sink();
  od_queue q;
  od_queue_init(&q, 100000, 1 << 30, 1);
  od_sink_stats stats = {0};
  od_pos_cell_init(&stats.durable);
  od_pipeline_config pc = cfg(10);
  push_stream(&q, sizes, 81, 11);
  od_apply_env env = {.cfg = &pc, .sink = sink, .mark_prefix = "p", .queue = &q, .consumer = 0, .stats = &stats,
                      .opt = {.consistency = OD_CONSISTENCY_EVENTUAL, .writers = 4, .parallel_min_rows = parallel_min_rows},
                      .open_writer = open_helper};
  od_apply *a;
  od_error err = {0};
  if (od_apply_start(&a, &env, &err)) OD_TEST_FAIL("start: %s", err.msg);
  od_queue_close(&q);
  if (od_apply_join(a, &err)) OD_TEST_FAIL("join: %s", err.msg);
  CHECK_INT(count_rows(), 80 * 4 + 61);
  CHECK_INT(durable_u64(&stats), 0x1000 + 80);
  CHECK_INT(atomic_load(&stats.txns_applied), 81);
  CHECK_INT(atomic_load(&stats.changes_applied), 80 * 4 + 61);
  od_pos read;
  CHECK_INT(sink->ops->read_position(sink, &read, &err), OD_OK);
  CHECK_INT(od_pos_to_u64(&read), 0x1000 + 80);
  sink->ops->close(sink);
  od_queue_destroy(&q);
  *by_carrier = atomic_load(&stats.carrier_changes);
  return atomic_load(&stats.helper_changes);
}

static uint64_t parallel_backlog(uint64_t *by_carrier) { return parallel_backlog_min(by_carrier, 0); }

TEST(parallel_batches_end_inside_chunks_and_only_the_large_transaction_goes_serial) {
  uint64_t carrier = 0, helpers = parallel_backlog(&carrier);
  /* The small transactions go to the helpers; the carrier applies the 61-row one (a batch may end
   * inside a chunk, and serial mode ends with the chunk where the transaction that caused it ends). */
  CHECK_INT(helpers + carrier, 80 * 4 + 61);
  CHECK(carrier >= 61);
  CHECK(carrier < 61 + 11); /* with it, at most the small transactions that end in the chunk where it ends */
}

TEST(batches_below_parallel_min_rows_go_to_the_carrier_whole) {
  /* max_rows 10: every batch holds at most 4 x 10 rows; with parallel_min_rows 41 none is split,
   * with 8 the batches of 8+ rows are (the helpers get the keyed work of those). Same rows, same
   * checkpoint either way (parallel_backlog_min checks them). */
  uint64_t carrier = 0, helpers = parallel_backlog_min(&carrier, 41);
  CHECK_INT(helpers, 0);
  CHECK_INT(carrier, 80 * 4 + 61);
  helpers = parallel_backlog_min(&carrier, 8);
  CHECK(helpers > 0);
  CHECK_INT(helpers + carrier, 80 * 4 + 61);
}
