/* Unit tests of the pipeline's rules with the fake source and sink (tests/unit/fakes): several sinks
 * at different positions each end with every transaction exactly once, the source is acknowledged
 * only up to what every sink holds, a retriable sink failure restarts the session without loss or
 * duplicates, a fatal one stops the pipeline with its error, and a transform shapes what one sink
 * sees without touching the other. No servers. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/pipeline.h"
#include "core/pipeline_metrics.h"
#include "fakes/fakes.h"
#include "test.h"

static char state_dir[64];

static od_config *config(const char *sinks_yaml, int txns) {
  strcpy(state_dir, "/tmp/odsync-pipeline-XXXXXX");
  if (!mkdtemp(state_dir)) OD_TEST_FAIL("mkdtemp");
  char text[4096];
  snprintf(text, sizeof text,
           "state_dir: %s\n"
           "log_level: error\n"
           "pipelines:\n"
           "  - name: p\n"
           "    source: { type: fake, txns: %d, per_poll: 5 }\n"
           "    reconnect_max_ms: 100\n"
           "    batch: { max_rows: 7, max_delay_ms: 1 }\n"
           "%s",
           state_dir, txns, sinks_yaml);
  od_config *cfg = NULL;
  od_error err = {0};
  if (od_config_parse(text, strlen(text), "t.yaml", &cfg, &err)) OD_TEST_FAIL("config: %s", err.msg);
  return cfg;
}

static void cleanup(od_config *cfg) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", state_dir);
  if (system(cmd) != 0) OD_TEST_FAIL("cleanup");
  od_config_free(cfg);
}

static uint64_t checkpoint_of(fake_store *st) {
  pthread_mutex_lock(&st->mu);
  uint64_t v = od_pos_to_u64(&st->checkpoint);
  pthread_mutex_unlock(&st->mu);
  return v;
}

/* Run until every store holds transaction `txns` (or 20 s), then stop; returns the pipeline's
 * result. */
static int run_until(od_config *cfg, int txns, fake_store **st, int n, od_error *err) {
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, err)) OD_TEST_FAIL("new: %s", err->msg);
  if (od_pipeline_start(p, err)) OD_TEST_FAIL("start: %s", err->msg);
  for (int t = 0; t < 2000 && !od_pipeline_finished(p); t++) {
    bool all = true;
    for (int i = 0; i < n; i++) all = all && checkpoint_of(st[i]) >= fake_end(txns);
    if (all) break;
    usleep(10000);
  }
  od_pipeline_request_stop(p);
  int rc = od_pipeline_wait(p, err);
  od_pipeline_free(p);
  return rc;
}

/* Every row 1..txns holds what the source wrote: "u<i>" after txn i+1 updated it, v<txns> last. */
static void check_exact(fake_store *st, int txns, bool with_secret) {
  for (int i = 1; i <= txns; i++) {
    char want[32];
    snprintf(want, sizeof want, i < txns ? "u%d" : "v%d", i);
    if (!st->rows[i] || strcmp(st->rows[i], want)) OD_TEST_FAIL("store %s row %d: '%s', want '%s'", st->name, i,
                                                                st->rows[i] ? st->rows[i] : "(absent)", want);
    char sec[32];
    snprintf(sec, sizeof sec, "s%d", i);
    if (with_secret) CHECK_STR(st->secret[i], sec);
    else CHECK(st->secret[i] == NULL);
  }
  CHECK(st->rows[txns + 1] == NULL);
  CHECK_INT(st->duplicates, 0);
  CHECK_INT(st->losses, 0);
}

TEST(two_sinks_at_different_positions_each_get_everything_once) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("a"), *b = fake_store_get("b");
  /* Sink b already holds transactions 1..40 (as after an earlier run); a holds nothing. */
  for (int i = 1; i <= 40; i++) {
    char v[16], s[16];
    snprintf(v, sizeof v, i < 40 ? "u%d" : "v%d", i);
    snprintf(s, sizeof s, "s%d", i);
    b->rows[i] = strdup(v);
    b->secret[i] = strdup(s);
  }
  b->checkpoint = od_pos_from_u64(&fake_position, fake_end(40));
  od_config *cfg = config("    sinks:\n"
                          "      - { name: a, type: fakesink, store: a }\n"
                          "      - { name: b, type: fakesink, store: b }\n",
                          120);
  od_error err = {0};
  fake_store *both[] = {a, b};
  CHECK_INT(run_until(cfg, 120, both, 2, &err), OD_OK);
  check_exact(a, 120, true);
  check_exact(b, 120, true);
  /* b applied only what it lacked: 80 inserts and 80 updates; a everything: 120 + 119. */
  CHECK_INT(b->changes, 160);
  CHECK_INT(a->changes, 239);
  CHECK_INT(checkpoint_of(a), fake_end(120) + 3); /* the idle heartbeat past the last transaction */
  CHECK(fake_acked() <= checkpoint_of(a) && fake_acked() <= checkpoint_of(b));
  CHECK(fake_acked() >= fake_end(120));
  CHECK(!fake_ack_regressed());
  cleanup(cfg);
}

/* The end-to-end latency histogram counts every applied transaction once (not once per batch),
 * with a latency no smaller than the newest one's. */
TEST(the_latency_histogram_counts_each_transaction_once) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("a");
  od_config *cfg = config("    sink: { type: fakesink, store: a }\n", 60);
  od_error err = {0};
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err)) OD_TEST_FAIL("new: %s", err.msg);
  if (od_pipeline_start(p, &err)) OD_TEST_FAIL("start: %s", err.msg);
  for (int t = 0; t < 2000 && checkpoint_of(a) < fake_end(60); t++) usleep(10000);
  od_pipeline_request_stop(p);
  CHECK_INT(od_pipeline_wait(p, &err), OD_OK);
  od_histogram_snap h;
  od_histogram_read(od_pipeline_get_stats(p)->metrics->sinks[0].latency, &h);
  CHECK_INT(h.count, 60);
  /* the fake source's commit times are 1970 + i seconds: every latency is decades */
  CHECK(h.sum / h.count > 1000000ull * 3600 * 24 * 365 * 50);
  od_pipeline_free(p);
  check_exact(a, 60, true);
  cleanup(cfg);
}

TEST(a_retriable_sink_failure_restarts_without_loss_or_duplicates) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("ra"), *b = fake_store_get("rb");
  od_config *cfg = config("    sinks:\n"
                          "      - { name: a, type: fakesink, store: ra }\n"
                          "      - { name: b, type: fakesink, store: rb, fail_commit_at: 5 }\n",
                          90);
  od_error err = {0};
  fake_store *both[] = {a, b};
  CHECK_INT(run_until(cfg, 90, both, 2, &err), OD_OK);
  CHECK(b->failed_once);
  check_exact(a, 90, true);
  check_exact(b, 90, true);
  CHECK(!fake_ack_regressed());
  cleanup(cfg);
}

TEST(a_fatal_sink_failure_stops_the_pipeline_and_never_acks_past_it) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("fa"), *b = fake_store_get("fb");
  od_config *cfg = config("    sinks:\n"
                          "      - { name: a, type: fakesink, store: fa }\n"
                          "      - { name: b, type: fakesink, store: fb, fail_commit_at: 3, retriable: false }\n",
                          200);
  od_error err = {0};
  fake_store *both[] = {a, b};
  CHECK_INT(run_until(cfg, 200, both, 2, &err), OD_ESINK);
  CHECK_CONTAINS(err.msg, "sink b: fake sink fb: injected fatal failure");
  CHECK(fake_acked() <= checkpoint_of(b));
  CHECK(checkpoint_of(b) < fake_end(200));
  CHECK_INT(a->duplicates + b->duplicates, 0);
  cleanup(cfg);
}

TEST(a_transform_shapes_one_sink_only) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("ta"), *b = fake_store_get("tb");
  od_config *cfg = config("    sinks:\n"
                          "      - { name: a, type: fakesink, store: ta }\n"
                          "      - name: b\n"
                          "        type: fakesink\n"
                          "        store: tb\n"
                          "        transforms: [{ type: drop_columns, columns: [secret] }]\n",
                          50);
  od_error err = {0};
  fake_store *both[] = {a, b};
  CHECK_INT(run_until(cfg, 50, both, 2, &err), OD_OK);
  check_exact(a, 50, true);
  check_exact(b, 50, false);
  CHECK_INT(a->ncolumns_seen, 3);
  CHECK_INT(b->ncolumns_seen, 2);
  cleanup(cfg);
}

TEST(dropping_a_key_column_is_an_error_naming_table_and_column) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("ka");
  od_config *cfg = config("    sink:\n"
                          "      type: fakesink\n"
                          "      store: ka\n"
                          "      transforms: [{ type: drop_columns, columns: [id] }]\n",
                          10);
  od_error err = {0};
  fake_store *one[] = {a};
  CHECK_INT(run_until(cfg, 10, one, 1, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "column id is part of the key of public.t");
  CHECK_INT(a->changes, 0);
  cleanup(cfg);
}

TEST(a_sink_of_another_kind_of_source_is_refused) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("pa");
  a->checkpoint = od_pos_legacy_lsn(1); /* a PostgreSQL position (below the fake end: run_until waits) */
  od_config *cfg = config("    sink: { type: fakesink, store: pa }\n", 10);
  od_error err = {0};
  fake_store *one[] = {a};
  CHECK_INT(run_until(cfg, 10, one, 1, &err), OD_ECONFIG);
  CHECK_CONTAINS(err.msg, "holds a 'pg' position but the source (type fake) makes 'fake' positions");
  cleanup(cfg);
}

TEST(dead_letter_policy_needs_a_sink_that_keeps_dead_letters) {
  fake_register();
  fake_reset();
  /* The fake sink has no OD_SINK_DEAD_LETTERS: on_poison: dead_letter is refused before anything
   * starts, naming the sink and the way out; stop (the default) is fine. */
  od_config *cfg = config("    on_poison: dead_letter\n"
                          "    sink: { type: fakesink, store: a }\n",
                          3);
  od_pipeline *p = NULL;
  od_error err = {0};
  CHECK_INT(od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err), OD_ECONFIG);
  CHECK(strstr(err.msg, "on_poison: dead_letter") && strstr(err.msg, "fakesink") && strstr(err.msg, "on_poison: stop"));
  cleanup(cfg);
  cfg = config("    on_poison: stop\n"
               "    sink: { type: fakesink, store: a }\n",
               3);
  CHECK_INT(od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err), OD_OK);
  od_pipeline_free(p);
  cleanup(cfg);
}

/* Fan-out with spools: sink b fails, then its "server" refuses connections for a while. Sink a
 * finishes the whole stream while b is down (the session never restarts; b's chunks go to its spool
 * on disk), then b comes back, drains its spool and ends exact. */
TEST(a_down_sink_spools_while_the_other_keeps_up) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("da"), *b = fake_store_get("db");
  int txns = 3000;
  od_config *cfg = config("    queue: { max_rows: 1000 }\n"
                          "    sinks:\n"
                          "      - { name: a, type: fakesink, store: da }\n"
                          "      - { name: b, type: fakesink, store: db, fail_commit_at: 3, down_opens: 30,\n"
                          "          spool: { max_bytes: 64MiB, compression: zstd } }\n",
                          txns);
  od_error err = {0};
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err)) OD_TEST_FAIL("new: %s", err.msg);
  if (od_pipeline_start(p, &err)) OD_TEST_FAIL("start: %s", err.msg);
  od_pipeline_stats *st = od_pipeline_get_stats(p);
  bool a_done_while_b_down = false, saw_down = false;
  uint64_t spool_max = 0;
  for (int t = 0; t < 6000 && !od_pipeline_finished(p); t++) {
    pthread_mutex_lock(&b->mu);
    bool down = b->failed_once && b->opens_refused < b->down_opens;
    pthread_mutex_unlock(&b->mu);
    saw_down = saw_down || atomic_load(&st->sinks[1].down);
    uint64_t sb = atomic_load(&st->sinks[1].spool_bytes);
    if (sb > spool_max) spool_max = sb;
    if (down && checkpoint_of(a) >= fake_end(txns)) a_done_while_b_down = true;
    if (checkpoint_of(a) >= fake_end(txns) && checkpoint_of(b) >= fake_end(txns)) break;
    usleep(10000);
  }
  uint64_t sessions = atomic_load(&st->sessions);
  od_pipeline_request_stop(p);
  CHECK_INT(od_pipeline_wait(p, &err), OD_OK);
  od_pipeline_free(p);
  CHECK(b->failed_once);
  CHECK(saw_down);
  CHECK(a_done_while_b_down);
  CHECK(spool_max > 0);
  CHECK_INT(sessions, 1);
  check_exact(a, txns, true);
  check_exact(b, txns, true);
  CHECK(!fake_ack_regressed());
  cleanup(cfg);
}

/* The source is acknowledged past a down sink up to what its spool holds durably; the pipeline
 * stops while that sink is still down; the next run starts the stream after the spool (the source
 * no longer has those transactions to give), replays the spool into the sink and ends exact. */
TEST(a_spool_left_by_a_stopped_run_is_replayed_by_the_next) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("sa"), *b = fake_store_get("sb");
  int txns = 3000;
  const char *sinks = "    queue: { max_rows: 1000 }\n"
                      "    sinks:\n"
                      "      - { name: a, type: fakesink, store: sa }\n"
                      "      - { name: b, type: fakesink, store: sb, fail_commit_at: 3, down_opens: 1000000 }\n";
  od_config *cfg = config(sinks, txns);
  od_error err = {0};
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err)) OD_TEST_FAIL("new: %s", err.msg);
  if (od_pipeline_start(p, &err)) OD_TEST_FAIL("start: %s", err.msg);
  for (int t = 0; t < 3000 && checkpoint_of(a) < fake_end(txns); t++) usleep(10000);
  for (int t = 0; t < 3000 && fake_acked() < fake_end(txns); t++) usleep(10000); /* valgrind is slow */
  od_pipeline_request_stop(p);
  CHECK_INT(od_pipeline_wait(p, &err), OD_OK);
  od_pipeline_free(p);
  CHECK(checkpoint_of(a) >= fake_end(txns));
  CHECK(checkpoint_of(b) < fake_end(100));      /* b held almost nothing */
  CHECK(fake_acked() >= fake_end(txns));        /* acknowledged: b's spool holds the rest durably */
  /* The next run, b's server is back. */
  pthread_mutex_lock(&b->mu);
  b->down_opens = 0;
  pthread_mutex_unlock(&b->mu);
  fake_store *both[] = {a, b}; /* the same config and state dir: a restart */
  CHECK_INT(run_until(cfg, txns, both, 2, &err), OD_OK);
  check_exact(a, txns, true);
  check_exact(b, txns, true);
  CHECK(!fake_ack_regressed());
  cleanup(cfg);
}

/* A sink still down when the next run starts: its spool's `held` (written when it went down) stands
 * in for its checkpoint, so the other sink starts and goes on; when it is back it drains its spool. */
TEST(a_sink_down_at_start_does_not_hold_the_others) {
  fake_register();
  fake_reset();
  fake_store *a = fake_store_get("ha"), *b = fake_store_get("hb");
  int txns = 3000;
  const char *sinks = "    queue: { max_rows: 1000 }\n"
                      "    sinks:\n"
                      "      - { name: a, type: fakesink, store: ha }\n"
                      "      - { name: b, type: fakesink, store: hb, fail_commit_at: 3, down_opens: 1000000 }\n";
  od_config *cfg = config(sinks, txns);
  od_error err = {0};
  od_pipeline *p = NULL;
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err)) OD_TEST_FAIL("new: %s", err.msg);
  if (od_pipeline_start(p, &err)) OD_TEST_FAIL("start: %s", err.msg);
  od_pipeline_stats *st = od_pipeline_get_stats(p);
  for (int t = 0; t < 3000 && !(atomic_load(&st->sinks[1].down) && checkpoint_of(a) >= fake_end(200)); t++)
    usleep(10000);
  od_pipeline_request_stop(p);
  CHECK_INT(od_pipeline_wait(p, &err), OD_OK);
  od_pipeline_free(p);
  CHECK(checkpoint_of(b) < fake_end(100));
  /* The next run (same config and state dir): b still down for its first 30 opens. */
  pthread_mutex_lock(&b->mu);
  b->down_opens = b->opens_refused + 30;
  pthread_mutex_unlock(&b->mu);
  if (od_pipeline_new(cfg, &cfg->pipelines[0], &p, &err)) OD_TEST_FAIL("new: %s", err.msg);
  if (od_pipeline_start(p, &err)) OD_TEST_FAIL("start: %s", err.msg);
  st = od_pipeline_get_stats(p);
  bool a_done_while_b_down = false;
  for (int t = 0; t < 6000 && !od_pipeline_finished(p); t++) {
    pthread_mutex_lock(&b->mu);
    bool down = b->opens_refused < b->down_opens;
    pthread_mutex_unlock(&b->mu);
    if (down && checkpoint_of(a) >= fake_end(txns)) a_done_while_b_down = true;
    if (checkpoint_of(a) >= fake_end(txns) && checkpoint_of(b) >= fake_end(txns)) break;
    usleep(10000);
  }
  uint64_t sessions = atomic_load(&st->sessions);
  od_pipeline_request_stop(p);
  CHECK_INT(od_pipeline_wait(p, &err), OD_OK);
  od_pipeline_free(p);
  CHECK(a_done_while_b_down);
  CHECK_INT(sessions, 1);
  check_exact(a, txns, true);
  check_exact(b, txns, true);
  CHECK(!fake_ack_regressed());
  cleanup(cfg);
}
