/* status.c — see status.h. */
#include "server/status.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/breaker.h"
#include "core/lineage.h"
#include "core/log.h"
#include "core/pipeline_metrics.h"

#define RATE_WINDOW_US 10000000LL    /* throughput: over the last 10 s */
#define LATENCY_WINDOW_US 60000000LL /* percentiles: over the last minute */

typedef struct sample {
  int64_t t;                /* wall µs */
  uint64_t changes, txns;
  double lag_s;
  uint64_t lag_bytes;
  od_histogram_snap lat;
} sample;

struct od_status_view {
  od_pipeline **pipes; /* borrowed */
  int n;
  pthread_mutex_t lock;
  sample *ring; /* n * OD_STATUS_HISTORY */
  int head, count;
  int64_t started;
};

/* What one pipeline looks like now. */
typedef struct row {
  const od_pipeline_metrics *pm;
  const char *name;
  int state;
  char source_pos[OD_POS_TEXT_MAX], sink_pos[OD_POS_TEXT_MAX];
  uint64_t lag_bytes, changes, txns, queue, sessions, errors;
  double lag_s, cps, tps, p50, p95, p99;
  int snap_active;
  uint64_t snap_rows, snap_est;
  char err_msg[OD_ERROR_MSG_MAX], err_class[32];
  int64_t err_at;
} row;

od_status_view *od_status_new(od_pipeline **pipes, int n) {
  od_status_view *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->ring = calloc((size_t)(n > 0 ? n : 1) * OD_STATUS_HISTORY, sizeof *s->ring);
  if (!s->ring) {
    free(s);
    return NULL;
  }
  s->pipes = pipes;
  s->n = n;
  s->started = od_now_us();
  pthread_mutex_init(&s->lock, NULL);
  return s;
}

void od_status_keep_start(od_status_view *s, const od_status_view *from) {
  if (s && from) s->started = from->started;
}

void od_status_free(od_status_view *s) {
  if (!s) return;
  pthread_mutex_destroy(&s->lock);
  free(s->ring);
  free(s);
}

static od_pipeline_metrics *pm_of(od_pipeline *p) { return od_pipeline_get_stats(p)->metrics; }

/* The pipeline as its slowest sink sees it (fewest changes, most lag); latency over every sink. */
static void take(od_pipeline *p, sample *out) {
  od_pipeline_metrics *pm = pm_of(p);
  out->t = od_now_us();
  out->changes = od_pm_min_changes(pm);
  out->txns = od_pm_min_txns(pm);
  out->lag_s = od_pm_max_lag_seconds(pm);
  out->lag_bytes = od_pm_max_lag_bytes(pm);
  od_pm_latency(pm, &out->lat);
}

void od_status_sample(od_status_view *s) {
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->n; i++) take(s->pipes[i], &s->ring[i * OD_STATUS_HISTORY + s->head]);
  s->head = (s->head + 1) % OD_STATUS_HISTORY;
  if (s->count < OD_STATUS_HISTORY) s->count++;
  pthread_mutex_unlock(&s->lock);
}

/* The k-th sample of pipeline i, oldest first (k < count). Under the lock. */
static const sample *at(const od_status_view *s, int i, int k) {
  int idx = (s->head - s->count + k + 2 * OD_STATUS_HISTORY) % OD_STATUS_HISTORY;
  return &s->ring[i * OD_STATUS_HISTORY + idx];
}

/* The newest sample of pipeline i at least `window` older than `now`, else the oldest. */
static const sample *before(const od_status_view *s, int i, int64_t now, int64_t window) {
  if (!s->count) return NULL;
  for (int k = s->count - 1; k >= 0; k--)
    if (at(s, i, k)->t <= now - window) return at(s, i, k);
  return at(s, i, 0);
}

static void fill_row(od_status_view *s, int i, row *r) {
  od_pipeline *p = s->pipes[i];
  od_pipeline_stats *st = od_pipeline_get_stats(p);
  od_pipeline_metrics *pm = st->metrics;
  memset(r, 0, sizeof *r);
  r->pm = pm;
  r->name = od_pipeline_name(p);
  r->state = atomic_load(&st->state);
  sample now;
  take(p, &now);
  od_pos sp = pm ? od_pos_cell_get(&pm->source_pos) : od_pos_none();
  od_pos dp = od_pos_cell_get(&st->durable);
  od_pos_display(&sp, r->source_pos, sizeof r->source_pos);
  od_pos_display(&dp, r->sink_pos, sizeof r->sink_pos);
  r->lag_bytes = now.lag_bytes;
  r->lag_s = now.lag_s;
  r->changes = now.changes;
  r->txns = now.txns;
  r->queue = atomic_load(&st->queued_rows);
  r->sessions = atomic_load(&st->sessions);
  r->errors = pm ? atomic_load(&pm->errors) : 0;
  r->snap_active = atomic_load(&st->snapshot.active);
  r->snap_rows = atomic_load(&st->snapshot.rows_done);
  r->snap_est = atomic_load(&st->snapshot.rows_estimated);
  r->err_at = od_pm_last_error(pm, r->err_msg, sizeof r->err_msg, r->err_class, sizeof r->err_class);
  r->cps = r->tps = 0;
  r->p50 = r->p95 = r->p99 = NAN;
  pthread_mutex_lock(&s->lock);
  const sample *old = before(s, i, now.t, RATE_WINDOW_US);
  if (old && now.t > old->t) {
    double dt = (double)(now.t - old->t) / 1e6;
    r->cps = (double)(now.changes - old->changes) / dt;
    r->tps = (double)(now.txns - old->txns) / dt;
  }
  const sample *lold = before(s, i, now.t, LATENCY_WINDOW_US);
  od_histogram_snap win = now.lat;
  if (lold) od_histogram_diff(&now.lat, &lold->lat, &win);
  pthread_mutex_unlock(&s->lock);
  r->p50 = od_histogram_quantile(&win, 0.50);
  r->p95 = od_histogram_quantile(&win, 0.95);
  r->p99 = od_histogram_quantile(&win, 0.99);
}

bool od_status_ready(od_status_view *s, od_sqlbuf *why) {
  bool ready = true;
  for (int i = 0; i < s->n; i++) {
    int st = atomic_load(&od_pipeline_get_stats(s->pipes[i])->state);
    if (st == OD_PIPELINE_STREAMING || st == OD_PIPELINE_SNAPSHOT) continue;
    ready = false;
    if (why) od_sqlbuf_addf(why, "pipeline %s: %s\n", od_pipeline_name(s->pipes[i]), od_pipeline_state_name(st));
  }
  return ready;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static void json_str(od_sqlbuf *o, const char *v) {
  od_sqlbuf_add(o, "\"");
  for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
    if (*c == '"') od_sqlbuf_add(o, "\\\"");
    else if (*c == '\\') od_sqlbuf_add(o, "\\\\");
    else if (*c == '\n') od_sqlbuf_add(o, "\\n");
    else if (*c < 0x20) od_sqlbuf_addf(o, "\\u%04x", *c);
    else {
      char ch[2] = {(char)*c, 0};
      od_sqlbuf_add(o, ch);
    }
  }
  od_sqlbuf_add(o, "\"");
}

static void json_num(od_sqlbuf *o, double v) {
  if (isnan(v) || isinf(v)) od_sqlbuf_add(o, "null");
  else od_sqlbuf_addf(o, "%.6g", v);
}

static void iso_time(int64_t us, char *buf, size_t n) {
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_history(od_status_view *s, int i, od_sqlbuf *o) {
  pthread_mutex_lock(&s->lock);
  od_sqlbuf_add(o, ",\"history\":{\"t\":[");
  for (int k = 1; k < s->count; k++) od_sqlbuf_addf(o, "%s%.3f", k > 1 ? "," : "", at(s, i, k)->t / 1e6);
  od_sqlbuf_add(o, "],\"changes_per_second\":[");
  for (int k = 1; k < s->count; k++) {
    const sample *a = at(s, i, k - 1), *b = at(s, i, k);
    double dt = (double)(b->t - a->t) / 1e6;
    od_sqlbuf_add(o, k > 1 ? "," : "");
    json_num(o, dt > 0 ? (double)(b->changes - a->changes) / dt : 0);
  }
  od_sqlbuf_add(o, "],\"lag_seconds\":[");
  for (int k = 1; k < s->count; k++) {
    od_sqlbuf_add(o, k > 1 ? "," : "");
    json_num(o, at(s, i, k)->lag_s);
  }
  od_sqlbuf_add(o, "],\"latency_p95_seconds\":[");
  for (int k = 1; k < s->count; k++) {
    const sample *b = at(s, i, k), *a = at(s, i, k >= 10 ? k - 10 : 0);
    od_histogram_snap d;
    od_histogram_diff(&b->lat, &a->lat, &d);
    od_sqlbuf_add(o, k > 1 ? "," : "");
    json_num(o, od_histogram_quantile(&d, 0.95));
  }
  od_sqlbuf_add(o, "]}");
  pthread_mutex_unlock(&s->lock);
}

int od_status_json(od_status_view *s, bool history, od_sqlbuf *o) {
  int64_t now = od_now_us();
  char when[32];
  iso_time(now, when, sizeof when);
  od_sqlbuf_addf(o, "{\"version\":\"%s\",\"time\":\"%s\",\"uptime_seconds\":%.0f,\"ready\":%s,\"pipelines\":[",
                 ODSYNC_VERSION, when, (now - s->started) / 1e6, od_status_ready(s, NULL) ? "true" : "false");
  for (int i = 0; i < s->n; i++) {
    row r;
    fill_row(s, i, &r);
    od_sqlbuf_add(o, i ? ",{\"name\":" : "{\"name\":");
    json_str(o, r.name);
    od_sqlbuf_addf(o, ",\"state\":\"%s\",\"ready\":%s", od_pipeline_state_name(r.state),
                   r.state == OD_PIPELINE_STREAMING || r.state == OD_PIPELINE_SNAPSHOT ? "true" : "false");
    od_sqlbuf_addf(o, ",\"paused\":%s",
                   atomic_load(&od_pipeline_get_stats(s->pipes[i])->paused) ? "true" : "false");
    if (r.pm) {
      od_sqlbuf_add(o, ",\"source\":");
      json_str(o, r.pm->source);
      od_sqlbuf_add(o, ",\"consistency\":");
      json_str(o, r.pm->consistency);
      od_sqlbuf_add(o, ",\"sinks\":[");
      for (int k = 0; k < r.pm->nsinks; k++) {
        od_sink_metrics *sm = (od_sink_metrics *)&r.pm->sinks[k];
        char pos[OD_POS_TEXT_MAX];
        od_pos d = od_pos_cell_get(&sm->stats->durable);
        od_pos_display(&d, pos, sizeof pos);
        od_sqlbuf_add(o, k ? ",{\"name\":" : "{\"name\":");
        json_str(o, sm->stats->name);
        od_sqlbuf_add(o, ",\"type\":");
        json_str(o, sm->stats->type);
        od_sqlbuf_add(o, ",\"position\":");
        json_str(o, pos);
        od_sqlbuf_addf(o, ",\"changes_applied\":%llu,\"transactions_applied\":%llu,\"lag_bytes\":%llu,\"lag_seconds\":",
                       (unsigned long long)od_pm_changes(sm), (unsigned long long)od_counter_value(sm->txns),
                       (unsigned long long)od_pm_lag_bytes(sm));
        json_num(o, od_pm_lag_seconds(sm));
        od_sqlbuf_addf(o, ",\"circuit\":\"%s\",\"circuit_transitions\":%llu,\"dead_letters\":%lld,"
                       "\"dead_letters_total\":%llu",
                       od_breaker_state_name(atomic_load(&sm->stats->circuit_state)),
                       (unsigned long long)atomic_load(&sm->stats->circuit_transitions),
                       (long long)atomic_load(&sm->stats->dead_letters),
                       (unsigned long long)atomic_load(&sm->stats->dead_letters_total));
        od_sqlbuf_addf(o, ",\"helper_changes\":%llu,\"carrier_changes\":%llu",
                       (unsigned long long)atomic_load(&sm->stats->helper_changes),
                       (unsigned long long)atomic_load(&sm->stats->carrier_changes));
        od_sqlbuf_addf(o, ",\"spool_bytes\":%llu,\"spool_full\":%s,\"down\":%s}",
                       (unsigned long long)atomic_load(&sm->stats->spool_bytes),
                       atomic_load(&sm->stats->spool_full) ? "true" : "false",
                       atomic_load(&sm->stats->down) ? "true" : "false");
      }
      od_sqlbuf_add(o, "]");
      /* The sink whose full spool holds the source back, if any. */
      od_sqlbuf_add(o, ",\"blocked_by\":");
      const char *blocked = NULL;
      for (int k = 0; k < r.pm->nsinks && !blocked; k++)
        if (atomic_load(&r.pm->sinks[k].stats->spool_full)) blocked = r.pm->sinks[k].stats->name;
      if (blocked) json_str(o, blocked);
      else od_sqlbuf_add(o, "null");
    }
    od_sqlbuf_add(o, ",\"source_position\":");
    json_str(o, r.source_pos);
    od_sqlbuf_add(o, ",\"sink_position\":");
    json_str(o, r.sink_pos);
    od_sqlbuf_addf(o, ",\"lag_bytes\":%llu,\"lag_seconds\":", (unsigned long long)r.lag_bytes);
    json_num(o, r.lag_s);
    od_sqlbuf_addf(o, ",\"changes_applied\":%llu,\"transactions_applied\":%llu,\"changes_per_second\":",
                   (unsigned long long)r.changes, (unsigned long long)r.txns);
    json_num(o, r.cps);
    od_sqlbuf_add(o, ",\"transactions_per_second\":");
    json_num(o, r.tps);
    od_sqlbuf_add(o, ",\"latency_p50_seconds\":");
    json_num(o, r.p50);
    od_sqlbuf_add(o, ",\"latency_p95_seconds\":");
    json_num(o, r.p95);
    od_sqlbuf_add(o, ",\"latency_p99_seconds\":");
    json_num(o, r.p99);
    od_sqlbuf_addf(o, ",\"queue_rows\":%llu,\"sessions\":%llu,\"errors\":%llu", (unsigned long long)r.queue,
                   (unsigned long long)r.sessions, (unsigned long long)r.errors);
    /* What the source server keeps for the pipeline (PostgreSQL: the slot's WAL); null: not read yet. */
    od_source_health sh;
    if (od_pm_source_health_get((od_pipeline_metrics *)r.pm, &sh)) {
      od_sqlbuf_addf(o, ",\"source_health\":{\"retained_bytes\":%lld,\"safe_bytes\":%lld,\"spilled_bytes\":%lld,"
                     "\"warning\":%s,\"status\":",
                     (long long)sh.retained_bytes, (long long)sh.safe_bytes, (long long)sh.spilled_bytes,
                     sh.warning ? "true" : "false");
      json_str(o, sh.status);
      od_sqlbuf_addf(o, ",\"batch_decoding\":%s,\"catchups\":%lld}",
                     sh.batch_decoding < 0 ? "null" : sh.batch_decoding ? "true" : "false", (long long)sh.catchups);
    } else {
      od_sqlbuf_add(o, ",\"source_health\":null");
    }
    od_sqlbuf_addf(o, ",\"snapshot\":{\"active\":%s,\"rows_done\":%llu,\"rows_estimated\":%llu,\"tables\":[",
                   r.snap_active ? "true" : "false", (unsigned long long)r.snap_rows, (unsigned long long)r.snap_est);
    od_snapshot_stats *ss = &od_pipeline_get_stats(s->pipes[i])->snapshot;
    int nt = atomic_load(&ss->ntables);
    for (int t = 0; t < nt && t < OD_SNAPSHOT_MAX_TABLES; t++) {
      od_snapshot_table_stats *ts = &ss->tables[t];
      od_sqlbuf_add(o, t ? ",{\"name\":" : "{\"name\":");
      json_str(o, ts->name);
      od_sqlbuf_addf(o, ",\"rows_done\":%llu,\"rows_estimated\":%llu,\"chunks_done\":%u,\"chunks_total\":%u}",
                     (unsigned long long)atomic_load(&ts->rows_done),
                     (unsigned long long)atomic_load(&ts->rows_estimated),
                     atomic_load(&ts->chunks_done) + atomic_load(&ts->chunks_skipped), atomic_load(&ts->chunks_total));
    }
    od_sqlbuf_add(o, "]},\"last_error\":");
    if (r.err_at) {
      iso_time(r.err_at, when, sizeof when);
      od_sqlbuf_addf(o, "{\"class\":\"%s\",\"at\":\"%s\",\"message\":", r.err_class, when);
      json_str(o, r.err_msg);
      od_sqlbuf_add(o, "}");
    } else {
      od_sqlbuf_add(o, "null");
    }
    od_sqlbuf_add(o, ",\"lineage\":"); /* where each sink's rows come from (core/lineage.h) */
    od_lineage_pipeline_json(od_pipeline_config_of(s->pipes[i]), o);
    if (history) json_history(s, i, o);
    od_sqlbuf_add(o, "}");
  }
  od_sqlbuf_add(o, "]}\n");
  return o->oom ? -1 : 0;
}

/* ---- terminal table ------------------------------------------------------------------------ */

static const char *human_count(double v, char *buf, size_t n) {
  if (v >= 1e9) snprintf(buf, n, "%.1fG", v / 1e9);
  else if (v >= 1e6) snprintf(buf, n, "%.1fM", v / 1e6);
  else if (v >= 1e4) snprintf(buf, n, "%.1fk", v / 1e3);
  else snprintf(buf, n, "%.0f", v);
  return buf;
}

static const char *human_secs(double v, char *buf, size_t n) {
  if (isnan(v)) snprintf(buf, n, "-");
  else if (v < 1) snprintf(buf, n, "%.0f ms", v * 1000);
  else if (v < 120) snprintf(buf, n, "%.1f s", v);
  else snprintf(buf, n, "%.0f min", v / 60);
  return buf;
}

int od_status_text(od_status_view *s, od_sqlbuf *o) {
  od_sqlbuf_addf(o, "%-20s %-10s %-18s %12s %9s %8s %10s %8s %7s %-14s %s\n", "PIPELINE", "STATE", "SOURCE->SINK",
                 "CHANGES", "CHANGES/S", "LAG", "LAG BYTES", "P95", "QUEUE", "SINK POSITION", "LAST ERROR");
  for (int i = 0; i < s->n; i++) {
    row r;
    fill_row(s, i, &r);
    char flow[160], total[24], rate[16], lag[16], lagb[24], p95[16], err[OD_ERROR_MSG_MAX + 64];
    int fo = snprintf(flow, sizeof flow, "%s->", r.pm ? r.pm->source : "?");
    for (int k = 0; r.pm && k < r.pm->nsinks && fo > 0 && (size_t)fo < sizeof flow; k++)
      fo += snprintf(flow + fo, sizeof flow - (size_t)fo, "%s%s", k ? "," : "", r.pm->sinks[k].stats->type);
    snprintf(total, sizeof total, "%llu", (unsigned long long)r.changes);
    const char *pos = r.sink_pos;
    if (r.err_at) {
      char when[32];
      iso_time(r.err_at, when, sizeof when);
      snprintf(err, sizeof err, "%s %s: %.160s", when, r.err_class, r.err_msg);
      for (char *e = err; *e; e++)
        if (*e == '\t' || *e == '\n' || *e == '\r') *e = ' ';
    } else {
      snprintf(err, sizeof err, "-");
    }
    od_sqlbuf_addf(o, "%-20s %-10s %-18s %12s %9s %8s %10s %8s %7llu %-14s %s\n", r.name,
                   od_pipeline_state_name(r.state), flow, total, human_count(r.cps, rate, sizeof rate),
                   human_secs(r.lag_s, lag, sizeof lag), od_fmt_bytes((int64_t)r.lag_bytes, lagb, sizeof lagb),
                   human_secs(r.p95, p95, sizeof p95), (unsigned long long)r.queue, pos, err);
    if (r.snap_active)
      od_sqlbuf_addf(o, "%-20s snapshot: %llu of ~%llu rows copied\n", "", (unsigned long long)r.snap_rows,
                     (unsigned long long)r.snap_est);
    /* The source server spilled decoded changes to its disk (decoding them is 2-3x slower). */
    od_source_health sh;
    bool known = od_pm_source_health_get((od_pipeline_metrics *)r.pm, &sh);
    if (known && sh.batch_decoding > 0)
      od_sqlbuf_addf(o, "%-20s source: reading a backlog by batch decoding (catch-up %lld since start)\n", "",
                     (long long)sh.catchups);
    if (known && sh.spilled_bytes > 0) {
      char sp[24];
      od_sqlbuf_addf(o, "%-20s source: spilled %s of decoded changes to its disk since start (the log names the "
                     "setting to change)\n", "", od_fmt_bytes(sh.spilled_bytes, sp, sizeof sp));
    }
    /* A sink whose circuit breaker is not closed, or that holds dead letters: one line each. */
    for (int k = 0; r.pm && k < r.pm->nsinks; k++) {
      od_sink_stats *st = r.pm->sinks[k].stats;
      int circuit = atomic_load(&st->circuit_state);
      long long dead = (long long)atomic_load(&st->dead_letters);
      if (circuit != OD_BREAKER_CLOSED || dead > 0)
        od_sqlbuf_addf(o, "%-20s sink %s: circuit %s, %lld dead letter%s%s\n", "", st->name,
                       od_breaker_state_name(circuit), dead, dead == 1 ? "" : "s",
                       dead > 0 ? " (odsync dlq list)" : "");
    }
  }
  return o->oom ? -1 : 0;
}
