/* test_metrics.c — the metrics registry (core/metrics.h) and a pipeline's metrics
 * (core/pipeline_metrics.h): sharded counters under threads, histograms and quantiles, bounded
 * label sets, the Prometheus text exposition byte for byte, derived lag values. */
#include <math.h>
#include <pthread.h>

#include "core/metrics.h"
#include "core/pipeline_metrics.h"
#include "test.h"

static const char *const L_A[] = {"pipeline", NULL};

static char *expose(od_metrics *m) {
  od_sqlbuf b = {0};
  CHECK_INT(od_metrics_write_prometheus(m, &b), 0);
  return b.p; /* caller frees */
}

TEST(counter_series_identity_and_exposition) {
  od_metrics *m = od_metrics_new();
  od_metric_family_def d = {.name = "t_rows_total", .help = "Rows", .type = OD_METRIC_COUNTER, .labels = L_A};
  od_metric_family *f = od_metrics_family(m, &d);
  CHECK(f != NULL);
  CHECK(od_metrics_family(m, &d) == f);
  const char *a[] = {"shop", NULL}, *b[] = {"crm", NULL};
  od_metric *sa = od_metrics_series(f, a), *sb = od_metrics_series(f, b);
  CHECK(sa && sb && sa != sb);
  CHECK(od_metrics_series(f, a) == sa);
  od_counter_add(sa, 5);
  od_counter_add(sa, 7);
  od_counter_add(sb, 1);
  CHECK_INT(od_counter_value(sa), 12);
  char *text = expose(m);
  CHECK_STR(text, "# HELP t_rows_total Rows\n# TYPE t_rows_total counter\n"
                  "t_rows_total{pipeline=\"shop\"} 12\nt_rows_total{pipeline=\"crm\"} 1\n");
  free(text);
  od_metrics_free(m);
}

struct worker_arg { od_metric *c, *h; };
static void *worker(void *p) {
  struct worker_arg *w = p;
  for (int i = 0; i < 100000; i++) {
    od_counter_add(w->c, 1);
    od_histogram_observe(w->h, (uint64_t)(i % 10));
  }
  return NULL;
}

TEST(sharded_counters_are_exact_under_threads) {
  od_metrics *m = od_metrics_new();
  od_metric_family_def dc = {.name = "t_c_total", .help = "c", .type = OD_METRIC_COUNTER};
  static const double bounds[] = {4.5};
  od_metric_family_def dh = {.name = "t_h", .help = "h", .type = OD_METRIC_HISTOGRAM, .bounds = bounds, .nbounds = 1};
  struct worker_arg w = {od_metrics_series(od_metrics_family(m, &dc), NULL),
                         od_metrics_series(od_metrics_family(m, &dh), NULL)};
  CHECK(w.c && w.h);
  pthread_t t[12];
  for (int i = 0; i < 12; i++) pthread_create(&t[i], NULL, worker, &w);
  for (int i = 0; i < 12; i++) pthread_join(t[i], NULL);
  CHECK_INT(od_counter_value(w.c), 1200000);
  od_histogram_snap h;
  od_histogram_read(w.h, &h);
  CHECK_INT(h.count, 1200000);
  CHECK_INT(h.buckets[0], 600000); /* 0..4 */
  CHECK_INT(h.buckets[1], 600000); /* 5..9 -> +Inf */
  CHECK_INT(h.sum, 12 * 10000 * 45);
  od_metrics_free(m);
}

TEST(histogram_exposition_scale_and_quantile) {
  od_metrics *m = od_metrics_new();
  static const double bounds[] = {0.001, 0.01, 0.1};
  od_metric_family_def d = {.name = "t_latency_seconds", .help = "Latency", .type = OD_METRIC_HISTOGRAM,
                            .labels = L_A, .scale = 1e-6, .bounds = bounds, .nbounds = 3};
  const char *a[] = {"p", NULL};
  od_metric *s = od_metrics_series(od_metrics_family(m, &d), a);
  od_histogram_observe(s, 500);     /* 0.0005 s -> le 0.001 */
  od_histogram_observe(s, 1000);    /* exactly on the bound -> le 0.001 */
  od_histogram_observe(s, 5000);    /* -> le 0.01 */
  od_histogram_observe(s, 2000000); /* 2 s -> +Inf */
  char *text = expose(m);
  CHECK_STR(text, "# HELP t_latency_seconds Latency\n# TYPE t_latency_seconds histogram\n"
                  "t_latency_seconds_bucket{pipeline=\"p\",le=\"0.001\"} 2\n"
                  "t_latency_seconds_bucket{pipeline=\"p\",le=\"0.01\"} 3\n"
                  "t_latency_seconds_bucket{pipeline=\"p\",le=\"0.1\"} 3\n"
                  "t_latency_seconds_bucket{pipeline=\"p\",le=\"+Inf\"} 4\n"
                  "t_latency_seconds_sum{pipeline=\"p\"} 2.0065\n"
                  "t_latency_seconds_count{pipeline=\"p\"} 4\n");
  free(text);
  od_histogram_snap h, before, d2;
  od_histogram_read(s, &h);
  /* median: rank 2 of 4 falls at the end of the first bucket */
  CHECK(fabs(od_histogram_quantile(&h, 0.5) - 0.001) < 1e-12);
  /* p95 falls into +Inf: the highest finite bound */
  CHECK(fabs(od_histogram_quantile(&h, 0.95) - 0.1) < 1e-12);
  before = h;
  for (int i = 0; i < 10; i++) od_histogram_observe(s, 5000);
  od_histogram_read(s, &h);
  od_histogram_diff(&h, &before, &d2);
  CHECK_INT(d2.count, 10);
  /* all ten in (0.001, 0.01]: p50 interpolates to the middle of that bucket */
  CHECK(fabs(od_histogram_quantile(&d2, 0.5) - 0.0055) < 1e-9);
  od_histogram_snap empty = {.nbounds = 1};
  CHECK(isnan(od_histogram_quantile(&empty, 0.5)));
  od_metrics_free(m);
}

TEST(bounded_label_sets_and_null_handles) {
  od_metrics *m = od_metrics_new();
  od_metric_family_def d = {.name = "t_many_total", .help = "m", .type = OD_METRIC_COUNTER, .labels = L_A};
  od_metric_family *f = od_metrics_family(m, &d);
  char name[32];
  for (int i = 0; i < OD_METRICS_MAX_SERIES; i++) {
    snprintf(name, sizeof name, "p%d", i);
    const char *v[] = {name, NULL};
    CHECK(od_metrics_series(f, v) != NULL);
  }
  const char *over[] = {"one-too-many", NULL};
  CHECK(od_metrics_series(f, over) == NULL);
  const char *missing[] = {NULL};
  CHECK(od_metrics_series(f, missing) == NULL);
  /* writes to NULL are no-ops, reads are 0 */
  od_counter_add(NULL, 1);
  od_gauge_set(NULL, 1);
  od_histogram_observe(NULL, 1);
  CHECK_INT(od_counter_value(NULL), 0);
  od_metrics_free(m);
}

TEST(invalid_definitions_are_refused) {
  od_metrics *m = od_metrics_new();
  static const char *const le[] = {"le", NULL};
  static const char *const bad[] = {"bad-label", NULL};
  static const double down[] = {2, 1};
  od_metric_family_def d1 = {.name = "9starts_with_digit", .help = "x", .type = OD_METRIC_COUNTER};
  od_metric_family_def d2 = {.name = "t_ok", .help = "x", .type = OD_METRIC_COUNTER, .labels = le};
  od_metric_family_def d3 = {.name = "t_ok", .help = "x", .type = OD_METRIC_COUNTER, .labels = bad};
  od_metric_family_def d4 = {.name = "t_h", .help = "x", .type = OD_METRIC_HISTOGRAM, .bounds = down, .nbounds = 2};
  od_metric_family_def d5 = {.name = "t_h", .help = "x", .type = OD_METRIC_HISTOGRAM};
  CHECK(od_metrics_family(m, &d1) == NULL);
  CHECK(od_metrics_family(m, &d2) == NULL);
  CHECK(od_metrics_family(m, &d3) == NULL);
  CHECK(od_metrics_family(m, &d4) == NULL);
  CHECK(od_metrics_family(m, &d5) == NULL);
  od_sqlbuf b = {0};
  CHECK_INT(od_metrics_write_prometheus(m, &b), 0);
  CHECK_INT(b.len, 0);
  od_sqlbuf_free(&b);
  od_metrics_free(m);
}

static int64_t seven(void *ctx) { return *(int64_t *)ctx; }

TEST(gauges_functions_escaping_and_removal) {
  od_metrics *m = od_metrics_new();
  od_metric_family_def d = {.name = "t_g", .help = "line1\nback\\slash", .type = OD_METRIC_GAUGE, .labels = L_A,
                            .scale = 0.5};
  od_metric_family *f = od_metrics_family(m, &d);
  const char *esc[] = {"a\"b\\c\nd", NULL};
  od_metric *g = od_metrics_series(f, esc);
  od_gauge_set(g, 10);
  od_gauge_add(g, -3);
  CHECK_INT(od_gauge_value(g), 7);
  int64_t v = 4;
  const char *fv[] = {"fn", NULL};
  od_metric *fs = od_metrics_series_fn(f, fv, seven, &v);
  CHECK(fs != NULL);
  v = 9;
  CHECK_INT(od_gauge_value(fs), 9);
  char *text = expose(m);
  CHECK_STR(text, "# HELP t_g line1\\nback\\\\slash\n# TYPE t_g gauge\n"
                  "t_g{pipeline=\"a\\\"b\\\\c\\nd\"} 3.5\nt_g{pipeline=\"fn\"} 4.5\n");
  free(text);
  od_metrics_remove(g);
  text = expose(m);
  CHECK_STR(text, "# HELP t_g line1\\nback\\\\slash\n# TYPE t_g gauge\nt_g{pipeline=\"fn\"} 4.5\n");
  free(text);
  od_metrics_free(m);
}

TEST(pipeline_metrics_batches_errors_and_lag) {
  od_metrics *m = od_metrics_new();
  od_pipeline_stats *st = calloc(1, sizeof *st);
  st->nsinks = 2;
  snprintf(st->sinks[0].name, sizeof st->sinks[0].name, "default");
  snprintf(st->sinks[0].type, sizeof st->sinks[0].type, "sqlite");
  snprintf(st->sinks[1].name, sizeof st->sinks[1].name, "warehouse");
  snprintf(st->sinks[1].type, sizeof st->sinks[1].type, "postgres");
  od_pos_cell_init(&st->durable);
  for (int i = 0; i < 2; i++) od_pos_cell_init(&st->sinks[i].durable);
  od_pipeline_metrics *pm = od_pipeline_metrics_new(m, st, "shop", "postgres", "strong");
  CHECK(pm != NULL);
  CHECK(st->sinks[0].metrics == &pm->sinks[0] && st->sinks[1].metrics == &pm->sinks[1]);
  od_sink_metrics *s0 = &pm->sinks[0], *s1 = &pm->sinks[1];
  od_change ch[5] = {{.op = OD_OP_INSERT}, {.op = OD_OP_INSERT}, {.op = OD_OP_UPDATE},
                     {.op = OD_OP_DELETE}, {.op = OD_OP_READ}};
  uint64_t tally[OD_PM_NOPS] = {0};
  od_pm_tally(tally, ch, 5);
  CHECK_INT(tally[OD_PM_INSERT], 2);
  CHECK_INT(tally[OD_PM_UPDATE], 1);
  CHECK_INT(tally[OD_PM_DELETE], 1);
  CHECK_INT(tally[OD_PM_READ], 1);
  od_pm_batch(s0, tally, 3, 1000, 2500, od_now_us() - 20000);
  od_pm_batch(s1, tally, 3, 1000, 2500, od_now_us() - 20000);
  od_pm_batch(s1, tally, 3, 1000, 2500, od_now_us() - 20000);
  /* latency is per transaction: s0's 3 transactions (2 decoded together, 1 alone), s1's 6 */
  int64_t now = od_now_us();
  od_pm_txn_latency(s0, now - 30000, 2, now);
  od_pm_txn_latency(s0, now - 20000, 1, now);
  od_pm_txn_latency(s1, now - 20000, 6, now);
  od_pm_txn_latency(s1, 0, 4, now); /* unknown commit time (a snapshot): not counted */
  uint64_t none[OD_PM_NOPS] = {0};
  od_pm_batch(s0, none, 0, 0, 10, 0); /* heartbeat: no batch, lag back to 0 */
  CHECK_INT(od_counter_value(s0->changes[OD_PM_INSERT]), 2);
  CHECK_INT(od_counter_value(s0->txns), 3);
  CHECK_INT(od_counter_value(s0->batches), 1);
  CHECK_INT(od_pm_changes(s1), 10);
  CHECK_INT(od_pm_min_changes(pm), 5); /* the slowest sink's view */
  CHECK_INT(od_pm_min_txns(pm), 3);
  od_histogram_snap h;
  od_histogram_read(s0->latency, &h);
  CHECK_INT(h.count, 3);
  CHECK_INT(h.sum, 2 * 30000 + 20000);
  od_pm_latency(pm, &h);
  CHECK_INT(h.count, 9);
  CHECK(od_pm_lag_seconds(s0) == 0);
  /* rows wait in the queue and the sink has not committed for 2 s: lag is at least that */
  atomic_store(&st->queued_rows, 10);
  atomic_store(&s1->last_sink_commit_us, od_now_us() - 2000000);
  CHECK(od_pm_lag_seconds(s1) >= 2.0);
  CHECK(od_pm_max_lag_seconds(pm) >= 2.0);
  od_pos src = od_pos_legacy_lsn(5000), d0 = od_pos_legacy_lsn(4200), d1 = od_pos_legacy_lsn(6000);
  od_pm_source_position(pm, &src);
  od_pos_cell_set(&st->sinks[0].durable, &d0);
  od_pos_cell_set(&st->sinks[1].durable, &d1);
  CHECK_INT(od_pm_lag_bytes(s0), 800);
  CHECK_INT(od_pm_lag_bytes(s1), 0);
  CHECK_INT(od_pm_max_lag_bytes(pm), 800);
  /* caught up: nothing queued and the sink holds the source's newest position -> no lag */
  atomic_store(&st->queued_rows, 0);
  atomic_store(&s1->last_lag_us, 3000000);
  CHECK(od_pm_lag_seconds(s1) == 0);
  CHECK(od_pm_lag_seconds(s0) == 0); /* s0 is 800 bytes behind, but its last batch had no lag */
  atomic_store(&s0->last_lag_us, 1500000);
  CHECK(od_pm_lag_seconds(s0) == 1.5);
  od_error e;
  od_error_clear(&e);
  OD_FAIL_RETRY(&e, OD_ECONNECT, "server 127.0.0.1:5432/shop: connection refused");
  od_pm_error(pm, &e, true);
  od_pm_error(pm, &e, true);
  atomic_store(&st->state, OD_PIPELINE_STREAMING);
  char msg[OD_ERROR_MSG_MAX], cls[32];
  CHECK(od_pm_last_error(pm, msg, sizeof msg, cls, sizeof cls) > 0);
  CHECK_STR(cls, "econnect");
  CHECK_CONTAINS(msg, "connection refused");
  /* snapshot tables appear on refresh */
  snprintf(st->snapshot.tables[0].name, sizeof st->snapshot.tables[0].name, "public.orders");
  atomic_store(&st->snapshot.tables[0].rows_done, 42);
  atomic_store(&st->snapshot.ntables, 1);
  od_pipeline_metrics_refresh(pm);
  char *text = expose(m);
  CHECK_CONTAINS(text, "odsync_changes_applied_total{pipeline=\"shop\",sink=\"default\",op=\"insert\"} 2\n");
  CHECK_CONTAINS(text, "odsync_changes_applied_total{pipeline=\"shop\",sink=\"warehouse\",op=\"insert\"} 4\n");
  CHECK_CONTAINS(text, "odsync_sink_position{pipeline=\"shop\",sink=\"default\"} 4200\n");
  CHECK_CONTAINS(text, "odsync_source_position{pipeline=\"shop\"} 5000\n");
  CHECK_CONTAINS(text, "odsync_lag_bytes{pipeline=\"shop\",sink=\"default\"} 800\n");
  CHECK_CONTAINS(text, "odsync_errors_total{pipeline=\"shop\",class=\"econnect\"} 2\n");
  CHECK_CONTAINS(text, "odsync_retries_total{pipeline=\"shop\"} 2\n");
  CHECK_CONTAINS(text, "odsync_pipeline_state{pipeline=\"shop\",state=\"streaming\"} 1\n");
  CHECK_CONTAINS(text, "odsync_pipeline_state{pipeline=\"shop\",state=\"retrying\"} 0\n");
  CHECK_CONTAINS(text, "odsync_pipeline_ready{pipeline=\"shop\"} 1\n");
  CHECK_CONTAINS(text, "odsync_snapshot_rows{pipeline=\"shop\",table=\"public.orders\"} 42\n");
  CHECK_CONTAINS(text, "odsync_end_to_end_latency_seconds_count{pipeline=\"shop\",sink=\"warehouse\"} 6\n");
  CHECK_CONTAINS(text, "odsync_pipeline_info{pipeline=\"shop\",source=\"postgres\",consistency=\"strong\"} 1\n");
  CHECK_CONTAINS(text, "odsync_sink_info{pipeline=\"shop\",sink=\"warehouse\",type=\"postgres\"} 1\n");
  free(text);
  od_pipeline_metrics_free(pm);
  CHECK(st->sinks[0].metrics == NULL);
  text = expose(m);
  CHECK(!text || !strstr(text, "odsync_changes_applied_total{"));
  CHECK_CONTAINS(text, "odsync_errors_total{pipeline=\"shop\",class=\"econnect\"} 2\n");
  free(text);
  od_pos_cell_destroy(&st->durable);
  for (int i = 0; i < 2; i++) od_pos_cell_destroy(&st->sinks[i].durable);
  free(st);
  od_metrics_free(m);
}
