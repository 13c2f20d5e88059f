/* test_alerts.c — SLA alerts and anomalies (server/alerts.h) driven tick by tick on a pipeline's
 * metrics: a lag threshold fires once and resolves once (gauge and one log line per transition),
 * errors per minute count only the last minute, a throughput step is an anomaly after 3 samples
 * out of band and clears once the new level is the baseline. No threads, no webhook. */
#include <stdio.h>

#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "server/alerts.h"
#include "test.h"

static char logbuf[16384];
static FILE *logf_;

static void capture_start(void) {
  memset(logbuf, 0, sizeof logbuf);
  logf_ = fmemopen(logbuf, sizeof logbuf, "w");
  od_log_set_output(logf_);
}
static void capture_stop(void) {
  od_log_set_output(NULL);
  fclose(logf_);
}
static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

typedef struct fixture {
  od_metrics *m;
  od_pipeline_stats *st;
  od_pipeline_metrics *pm;
  od_pipeline_config cfg;
  od_alerts *a;
} fixture;

static void setup(fixture *f, double lag, double errors, bool anomalies) {
  memset(f, 0, sizeof *f);
  f->m = od_metrics_new();
  f->st = calloc(1, sizeof *f->st);
  f->st->nsinks = 1;
  snprintf(f->st->sinks[0].name, sizeof f->st->sinks[0].name, "default");
  snprintf(f->st->sinks[0].type, sizeof f->st->sinks[0].type, "sqlite");
  od_pos_cell_init(&f->st->durable);
  od_pos_cell_init(&f->st->sinks[0].durable);
  f->pm = od_pipeline_metrics_new(f->m, f->st, "shop", "postgres", "strong");
  f->st->metrics = f->pm;
  f->cfg.name = "shop";
  f->cfg.alerts = (od_alerts_config){.lag_seconds = lag, .errors_per_minute = errors, .anomalies = anomalies};
  const od_pipeline_config *cfgs[] = {&f->cfg};
  od_pipeline_stats *sts[] = {f->st};
  f->a = od_alerts_new(f->m, cfgs, sts, 1);
  CHECK(f->a != NULL);
}

static void teardown(fixture *f) {
  od_alerts_free(f->a);
  od_pipeline_metrics_free(f->pm);
  od_pos_cell_destroy(&f->st->durable);
  od_pos_cell_destroy(&f->st->sinks[0].durable);
  free(f->st);
  od_metrics_free(f->m);
}

static int64_t gauge(od_metrics *m, const char *needle) {
  od_sqlbuf b = {0};
  od_metrics_write_prometheus(m, &b);
  const char *p = b.p ? strstr(b.p, needle) : NULL;
  int64_t v = p ? atoll(p + strlen(needle)) : -1;
  od_sqlbuf_free(&b);
  return v;
}

TEST(lag_alert_fires_once_and_resolves_once) {
  fixture f;
  setup(&f, 2.0, 0, false);
  capture_start();
  int64_t t = 1000000000000LL;
  od_alerts_tick(f.a, t);
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"lag_seconds\"} "), 0);
  atomic_store(&f.pm->sinks[0].last_lag_us, 5000000); /* the last batch arrived 5 s after its commit */
  for (int i = 1; i <= 5; i++) od_alerts_tick(f.a, t + i * 1000000LL);
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"lag_seconds\"} "), 1);
  atomic_store(&f.pm->sinks[0].last_lag_us, 100000);
  for (int i = 6; i <= 8; i++) od_alerts_tick(f.a, t + i * 1000000LL);
  capture_stop();
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"lag_seconds\"} "), 0);
  CHECK_INT(count_of(logbuf, "pipeline shop: alert lag_seconds firing: 5 > 2"), 1);
  CHECK_INT(count_of(logbuf, "pipeline shop: alert lag_seconds resolved"), 1);
  teardown(&f);
}

TEST(errors_per_minute_counts_the_last_minute) {
  fixture f;
  setup(&f, 0, 1, false);
  capture_start();
  int64_t t = 2000000000000LL;
  od_error e;
  od_error_clear(&e);
  OD_FAIL_RETRY(&e, OD_ECONNECT, "postgres 127.0.0.1:5432/shop: connection refused");
  od_alerts_tick(f.a, t);
  od_pm_error(f.pm, &e, true);
  od_alerts_tick(f.a, t + 1000000);
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"errors_per_minute\"} "), 0); /* 1 is not > 1 */
  od_pm_error(f.pm, &e, true);
  od_alerts_tick(f.a, t + 2000000);
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"errors_per_minute\"} "), 1);
  for (int s = 3; s <= 70; s++) od_alerts_tick(f.a, t + s * 1000000LL); /* a quiet minute */
  capture_stop();
  CHECK_INT(gauge(f.m, "odsync_alert_firing{pipeline=\"shop\",alert=\"errors_per_minute\"} "), 0);
  CHECK_INT(count_of(logbuf, "alert errors_per_minute firing: 2 > 1"), 1);
  CHECK_INT(count_of(logbuf, "alert errors_per_minute resolved"), 1);
  teardown(&f);
}

TEST(throughput_step_is_an_anomaly_then_the_new_baseline) {
  fixture f;
  setup(&f, 0, 0, true);
  capture_start();
  int64_t t = 3000000000000LL;
  uint64_t none[OD_PM_NOPS] = {0};
  uint32_t seed = 1;
  int s = 0;
  /* 60 s at ~1000 changes/s (+-5 %), then ~5000/s */
  for (; s < 60; s++) {
    seed = seed * 1664525u + 1013904223u;
    uint64_t tally[OD_PM_NOPS] = {0};
    tally[OD_PM_INSERT] = 950 + (seed >> 16) % 100;
    od_pm_batch(&f.pm->sinks[0], tally, 1, 0, 0, 0);
    od_alerts_tick(f.a, t + s * 1000000LL);
  }
  CHECK_INT(gauge(f.m, "odsync_anomaly{pipeline=\"shop\",signal=\"throughput\"} "), 0);
  int raised_at = -1, cleared_at = -1;
  for (; s < 400; s++) {
    seed = seed * 1664525u + 1013904223u;
    uint64_t tally[OD_PM_NOPS] = {0};
    tally[OD_PM_INSERT] = 4950 + (seed >> 16) % 100;
    od_pm_batch(&f.pm->sinks[0], tally, 1, 0, 0, 0);
    od_alerts_tick(f.a, t + s * 1000000LL);
    int64_t g = gauge(f.m, "odsync_anomaly{pipeline=\"shop\",signal=\"throughput\"} ");
    if (g == 1 && raised_at < 0) raised_at = s;
    if (g == 0 && raised_at >= 0 && cleared_at < 0) cleared_at = s;
  }
  od_pm_batch(&f.pm->sinks[0], none, 0, 0, 0, 0);
  capture_stop();
  CHECK_INT(raised_at, 62); /* the third sample in a row above the band */
  CHECK(cleared_at > raised_at);
  CHECK_INT(count_of(logbuf, "pipeline shop: anomaly: throughput"), 1);
  CHECK_CONTAINS(logbuf, "above its baseline");
  CHECK_INT(count_of(logbuf, "pipeline shop: anomaly over: throughput"), 1);
  teardown(&f);
}
