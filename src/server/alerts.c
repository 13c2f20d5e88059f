/* alerts.c — see alerts.h. */
#include "server/alerts.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sqlbuf.h"
#include "core/ewma.h"
#include "core/log.h"
#include "core/pipeline_metrics.h"

#define WINDOW 61          /* samples kept: one minute at one per second, plus one */
#define WEBHOOK_QUEUE 64   /* pending POSTs; more are dropped (and counted) */
#define STREAK 3           /* anomaly: samples in a row outside (or back inside) the band */

enum { A_LAG, A_P95, A_ERRORS, NALERTS };
enum { S_THROUGHPUT, S_LAG, NSIGNALS };
static const char *const ALERT_NAMES[NALERTS] = {"lag_seconds", "latency_p95_seconds", "errors_per_minute"};
static const char *const SIGNAL_NAMES[NSIGNALS] = {"throughput", "lag_seconds"};

typedef struct win_sample {
  int64_t t;
  uint64_t changes, errors;
  od_histogram_snap lat;
} win_sample;

typedef struct watched {
  const od_pipeline_config *cfg;
  od_pipeline_stats *stats;
  win_sample win[WINDOW];
  int head, count;
  bool firing[NALERTS];
  od_metric *firing_g[NALERTS];
  od_ewma ewma[NSIGNALS];
  int streak[NSIGNALS];
  bool anomalous[NSIGNALS];
  od_metric *anomaly_g[NSIGNALS];
  od_metric *webhook_failed, *webhook_dropped;
} watched;

typedef struct hook_msg {
  const char *url; /* borrowed from the config */
  bool secret;
  const char *pipeline;
  od_metric *failed;
  char *body;      /* owned */
} hook_msg;

struct od_alerts {
  watched *w;
  int n;
  pthread_t ticker, hooker;
  bool ticker_started, hooker_started;
  atomic_bool stop;
  pthread_mutex_t lock; /* the webhook queue */
  pthread_cond_t cond;
  hook_msg queue[WEBHOOK_QUEUE];
  int qhead, qlen;
};

static const od_metric_family_def F_FIRING = {
    .name = "odsync_alert_firing",
    .help = "1 while an alert threshold of the pipeline is breached",
    .type = OD_METRIC_GAUGE,
    .labels = (const char *const[]){"pipeline", "alert", NULL}};
static const od_metric_family_def F_ANOMALY = {
    .name = "odsync_anomaly",
    .help = "1 while a signal is outside its own EWMA 3-sigma band (3 samples in a row)",
    .type = OD_METRIC_GAUGE,
    .labels = (const char *const[]){"pipeline", "signal", NULL}};
static const od_metric_family_def F_HOOK_FAILED = {
    .name = "odsync_alert_webhook_failures_total",
    .help = "Alert webhook POSTs that failed (no answer, or not 2xx)",
    .type = OD_METRIC_COUNTER,
    .labels = (const char *const[]){"pipeline", NULL}};
static const od_metric_family_def F_HOOK_DROPPED = {
    .name = "odsync_alert_webhook_dropped_total",
    .help = "Alert webhook POSTs dropped because the queue was full",
    .type = OD_METRIC_COUNTER,
    .labels = (const char *const[]){"pipeline", NULL}};

od_alerts *od_alerts_new(od_metrics *registry, const od_pipeline_config *const *cfgs, od_pipeline_stats *const *stats,
                         int n) {
  od_alerts *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->w = calloc((size_t)(n > 0 ? n : 1), sizeof *a->w);
  if (!a->w) {
    free(a);
    return NULL;
  }
  a->n = n;
  curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread of ours uses libcurl */
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->cond, NULL);
  for (int i = 0; i < n; i++) {
    watched *w = &a->w[i];
    w->cfg = cfgs[i];
    w->stats = stats[i];
    const char *name = cfgs[i]->name;
    const od_alerts_config *ac = &cfgs[i]->alerts;
    double thr[NALERTS] = {ac->lag_seconds, ac->latency_p95_seconds, ac->errors_per_minute};
    for (int k = 0; k < NALERTS; k++) {
      if (thr[k] <= 0) continue;
      const char *v[] = {name, ALERT_NAMES[k], NULL};
      w->firing_g[k] = od_metrics_series(od_metrics_family(registry, &F_FIRING), v);
      od_gauge_set(w->firing_g[k], 0);
    }
    if (ac->anomalies) {
      od_ewma_init(&w->ewma[S_THROUGHPUT], 0.1, 3, 10.0, 30); /* changes/s; the band is never under +-30/s */
      od_ewma_init(&w->ewma[S_LAG], 0.1, 3, 0.5, 30);         /* seconds; never under +-1.5 s */
      for (int s = 0; s < NSIGNALS; s++) {
        const char *v[] = {name, SIGNAL_NAMES[s], NULL};
        w->anomaly_g[s] = od_metrics_series(od_metrics_family(registry, &F_ANOMALY), v);
      }
    }
    if (ac->webhook) {
      const char *v[] = {name, NULL};
      w->webhook_failed = od_metrics_series(od_metrics_family(registry, &F_HOOK_FAILED), v);
      w->webhook_dropped = od_metrics_series(od_metrics_family(registry, &F_HOOK_DROPPED), v);
    }
  }
  return a;
}

/* ---- webhook ------------------------------------------------------------------------------- */

static size_t discard(char *d, size_t s, size_t n, void *ctx) {
  (void)d;
  (void)ctx;
  return s * n;
}

static void post(const hook_msg *m) {
  CURL *c = curl_easy_init();
  if (!c) return;
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, m->url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, m->body);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (rc == CURLE_OK && code >= 200 && code < 300) return;
  od_counter_add(m->failed, 1);
  /* The URL may carry a token: it is named only when it did not come from a secret. */
  if (rc != CURLE_OK)
    od_warn("pipeline %s: alert webhook %s failed: %s", m->pipeline, m->secret ? "(secret URL)" : m->url,
            cerr[0] ? cerr : curl_easy_strerror(rc));
  else
    od_warn("pipeline %s: alert webhook %s answered HTTP %ld", m->pipeline, m->secret ? "(secret URL)" : m->url, code);
}

static void *hook_main(void *arg) {
  od_alerts *a = arg;
  pthread_mutex_lock(&a->lock);
  for (;;) {
    while (!a->qlen && !atomic_load(&a->stop)) pthread_cond_wait(&a->cond, &a->lock);
    if (atomic_load(&a->stop)) break; /* what is still queued is dropped (freed by od_alerts_free) */
    hook_msg m = a->queue[a->qhead];
    a->qhead = (a->qhead + 1) % WEBHOOK_QUEUE;
    a->qlen--;
    pthread_mutex_unlock(&a->lock);
    post(&m);
    free(m.body);
    pthread_mutex_lock(&a->lock);
  }
  pthread_mutex_unlock(&a->lock);
  return NULL;
}

static void enqueue(od_alerts *a, watched *w, char *body) {
  pthread_mutex_lock(&a->lock);
  if (a->qlen == WEBHOOK_QUEUE) {
    pthread_mutex_unlock(&a->lock);
    od_counter_add(w->webhook_dropped, 1);
    free(body);
    return;
  }
  a->queue[(a->qhead + a->qlen) % WEBHOOK_QUEUE] =
      (hook_msg){.url = w->cfg->alerts.webhook, .secret = w->cfg->alerts.webhook_secret, .pipeline = w->cfg->name,
                 .failed = w->webhook_failed, .body = body};
  a->qlen++;
  pthread_cond_signal(&a->cond);
  pthread_mutex_unlock(&a->lock);
}

/* ---- judging ------------------------------------------------------------------------------- */

static const win_sample *ago(const watched *w, int64_t now, int64_t us) {
  for (int k = w->count - 1; k >= 0; k--) {
    const win_sample *s = &w->win[(w->head - w->count + k + 2 * WINDOW) % WINDOW];
    if (s->t <= now - us) return s;
  }
  return w->count ? &w->win[(w->head - w->count + WINDOW) % WINDOW] : NULL;
}

static void transition(od_alerts *a, watched *w, int k, bool firing, double value, double threshold, int64_t now) {
  w->firing[k] = firing;
  od_gauge_set(w->firing_g[k], firing);
  if (firing)
    od_warn("pipeline %s: alert %s firing: %.3g > %.3g", w->cfg->name, ALERT_NAMES[k], value, threshold);
  else
    od_info("pipeline %s: alert %s resolved: %.3g <= %.3g", w->cfg->name, ALERT_NAMES[k], isnan(value) ? 0 : value,
            threshold);
  if (!w->cfg->alerts.webhook) return;
  char when[32];
  time_t t = (time_t)(now / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  od_sqlbuf b = {0};
  od_sqlbuf_addf(&b, "{\"pipeline\":\"%s\",\"alert\":\"%s\",\"state\":\"%s\",\"value\":%.6g,\"threshold\":%.6g,\"at\":\"%s\"}",
                 w->cfg->name, ALERT_NAMES[k], firing ? "firing" : "resolved", isnan(value) ? 0 : value, threshold,
                 when);
  if (b.oom) {
    od_sqlbuf_free(&b);
    return;
  }
  enqueue(a, w, b.p);
}

static void judge_anomaly(watched *w, int s, double x) {
  int verdict = od_ewma_update(&w->ewma[s], x);
  bool out = verdict != 0;
  if (out != w->anomalous[s]) {
    if (++w->streak[s] < STREAK) return;
  } else {
    w->streak[s] = 0;
    return;
  }
  w->streak[s] = 0;
  w->anomalous[s] = out;
  od_gauge_set(w->anomaly_g[s], out);
  const od_ewma *e = &w->ewma[s];
  if (out)
    od_warn("pipeline %s: anomaly: %s %.3g is %s its baseline %.3g +- %.3g (EWMA 3-sigma band)", w->cfg->name,
            SIGNAL_NAMES[s], x, verdict > 0 ? "above" : "below", e->mean, 3 * od_ewma_sigma(e));
  else
    od_info("pipeline %s: anomaly over: %s %.3g is back within its baseline", w->cfg->name, SIGNAL_NAMES[s], x);
}

void od_alerts_tick(od_alerts *a, int64_t now) {
  for (int i = 0; i < a->n; i++) {
    watched *w = &a->w[i];
    od_pipeline_metrics *pm = w->stats->metrics;
    if (!pm) continue;
    /* the pipeline as its slowest sink sees it; latency over every sink's commits */
    win_sample cur = {.t = now, .changes = od_pm_min_changes(pm), .errors = atomic_load(&pm->errors)};
    od_pm_latency(pm, &cur.lat);
    const win_sample *prev = w->count ? &w->win[(w->head - 1 + WINDOW) % WINDOW] : NULL;
    const win_sample *minute = ago(w, now, 60000000LL);
    const od_alerts_config *ac = &w->cfg->alerts;
    double lag = od_pm_max_lag_seconds(pm);
    double p95 = NAN, errors = 0;
    if (minute) {
      od_histogram_snap d;
      od_histogram_diff(&cur.lat, &minute->lat, &d);
      p95 = od_histogram_quantile(&d, 0.95);
      errors = (double)(cur.errors - minute->errors);
    } else {
      p95 = od_histogram_quantile(&cur.lat, 0.95);
      errors = (double)cur.errors;
    }
    double value[NALERTS] = {lag, p95, errors};
    double thr[NALERTS] = {ac->lag_seconds, ac->latency_p95_seconds, ac->errors_per_minute};
    for (int k = 0; k < NALERTS; k++) {
      if (thr[k] <= 0) continue;
      bool breach = !isnan(value[k]) && value[k] > thr[k];
      if (breach != w->firing[k]) transition(a, w, k, breach, value[k], thr[k], now);
    }
    if (ac->anomalies && prev && now > prev->t) {
      judge_anomaly(w, S_THROUGHPUT, (double)(cur.changes - prev->changes) / ((double)(now - prev->t) / 1e6));
      judge_anomaly(w, S_LAG, lag);
    }
    w->win[w->head] = cur;
    w->head = (w->head + 1) % WINDOW;
    if (w->count < WINDOW) w->count++;
  }
}

static void *tick_main(void *arg) {
  od_alerts *a = arg;
  while (!atomic_load(&a->stop)) {
    od_alerts_tick(a, od_now_us());
    for (int i = 0; i < 10 && !atomic_load(&a->stop); i++) {
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

int od_alerts_start(od_alerts *a) {
  if (pthread_create(&a->hooker, NULL, hook_main, a) != 0) return -1;
  a->hooker_started = true;
  if (pthread_create(&a->ticker, NULL, tick_main, a) != 0) return -1;
  a->ticker_started = true;
  return 0;
}

void od_alerts_free(od_alerts *a) {
  if (!a) return;
  pthread_mutex_lock(&a->lock);
  atomic_store(&a->stop, true);
  pthread_cond_broadcast(&a->cond);
  pthread_mutex_unlock(&a->lock);
  if (a->ticker_started) pthread_join(a->ticker, NULL);
  if (a->hooker_started) pthread_join(a->hooker, NULL);
  for (int i = 0; i < a->qlen; i++) free(a->queue[(a->qhead + i) % WEBHOOK_QUEUE].body);
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  free(a->w);
  free(a);
  curl_global_cleanup();
}
