/* metrics.c — see metrics.h. The registry, the sharded hot path, reads and quantiles.
 * Exposition (text formats) lives in metrics_text.c. */
#include "core/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics_internal.h"

#define CELLS_PER_LINE 8 /* 64-byte cache line / 8-byte cell */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static od_metrics *global_registry;

static void global_init(void) { global_registry = od_metrics_new(); }

od_metrics *od_metrics_global(void) {
  pthread_once(&global_once, global_init);
  return global_registry;
}

od_metrics *od_metrics_new(void) {
  od_metrics *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  pthread_mutex_init(&m->lock, NULL);
  return m;
}

static void series_free(od_metric *s) {
  for (int i = 0; i < OD_METRICS_MAX_LABELS; i++) free(s->values[i]);
  free(s->cells);
  free(s);
}

void od_metrics_free(od_metrics *m) {
  if (!m) return;
  od_metric_family *f = m->families;
  while (f) {
    od_metric_family *fn = f->next;
    od_metric *s = f->series;
    while (s) {
      od_metric *sn = s->next;
      series_free(s);
      s = sn;
    }
    free(f->name);
    free(f->help);
    for (int i = 0; i < f->nlabels; i++) free(f->labels[i]);
    free(f);
    f = fn;
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static bool valid_name(const char *n, bool colon) {
  if (!n || !*n || (*n >= '0' && *n <= '9')) return false;
  for (; *n; n++) {
    char c = *n;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              (colon && c == ':');
    if (!ok) return false;
  }
  return true;
}

static od_metric_family *family_find(od_metrics *m, const char *name) {
  for (od_metric_family *f = m->families; f; f = f->next)
    if (strcmp(f->name, name) == 0) return f;
  return NULL;
}

static bool def_valid(const od_metric_family_def *def) {
  if (!valid_name(def->name, true) || !def->help) return false;
  if (def->type == OD_METRIC_HISTOGRAM) {
    if (def->nbounds < 1 || def->nbounds > OD_METRICS_MAX_BUCKETS || !def->bounds) return false;
    for (int i = 1; i < def->nbounds; i++)
      if (!(def->bounds[i] > def->bounds[i - 1])) return false;
  }
  int n = 0;
  for (const char *const *l = def->labels; l && *l; l++, n++)
    if (n >= OD_METRICS_MAX_LABELS || !valid_name(*l, false) || strcmp(*l, "le") == 0) return false;
  return true;
}

od_metric_family *od_metrics_family(od_metrics *m, const od_metric_family_def *def) {
  if (!m || !def || !def_valid(def)) return NULL;
  pthread_mutex_lock(&m->lock);
  od_metric_family *f = family_find(m, def->name);
  if (f) goto out;
  f = calloc(1, sizeof *f);
  if (!f) goto out;
  f->registry = m;
  f->type = def->type;
  f->scale = def->scale > 0 ? def->scale : 1.0;
  f->name = strdup(def->name);
  f->help = strdup(def->help);
  bool ok = f->name && f->help;
  for (const char *const *l = def->labels; ok && l && *l; l++) {
    f->labels[f->nlabels] = strdup(*l);
    ok = f->labels[f->nlabels++] != NULL;
  }
  f->nbounds = def->type == OD_METRIC_HISTOGRAM ? def->nbounds : 0;
  for (int i = 0; i < f->nbounds; i++) {
    f->bounds[i] = def->bounds[i];
    f->ubounds[i] = def->bounds[i] / f->scale;
  }
  if (!ok) {
    free(f->name);
    free(f->help);
    for (int i = 0; i < f->nlabels; i++) free(f->labels[i]);
    free(f);
    f = NULL;
    goto out;
  }
  od_metric_family **tail = &m->families;
  while (*tail) tail = &(*tail)->next;
  *tail = f;
out:
  pthread_mutex_unlock(&m->lock);
  return f;
}

static bool labels_equal(const od_metric_family *f, const od_metric *s, const char *const *values) {
  for (int i = 0; i < f->nlabels; i++)
    if (strcmp(s->values[i], values[i]) != 0) return false;
  return true;
}

static od_metric *series_new(od_metric_family *f, const char *const *values) {
  od_metric *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->family = f;
  for (int i = 0; i < f->nlabels; i++) {
    if (!(s->values[i] = strdup(values[i]))) {
      series_free(s);
      return NULL;
    }
  }
  if (f->type != OD_METRIC_GAUGE) {
    /* counters: 1 cell; histograms: nbounds + 1 buckets and the sum; rounded to whole lines */
    unsigned cells = f->type == OD_METRIC_COUNTER ? 1 : (unsigned)f->nbounds + 2;
    s->stride = (cells + CELLS_PER_LINE - 1) / CELLS_PER_LINE * CELLS_PER_LINE;
    size_t bytes = (size_t)s->stride * OD_METRICS_SHARDS * sizeof(_Atomic uint64_t);
    s->cells = aligned_alloc(64, bytes);
    if (!s->cells) {
      series_free(s);
      return NULL;
    }
    for (size_t i = 0; i < (size_t)s->stride * OD_METRICS_SHARDS; i++) atomic_init(&s->cells[i], 0);
  }
  return s;
}

static od_metric *series_get(od_metric_family *f, const char *const *values, int64_t (*fn)(void *), void *ctx) {
  if (!f) return NULL;
  for (int i = 0; i < f->nlabels; i++)
    if (!values || !values[i]) return NULL;
  od_metrics *m = f->registry;
  pthread_mutex_lock(&m->lock);
  od_metric *s = NULL, **tail = &f->series;
  for (; *tail; tail = &(*tail)->next)
    if (labels_equal(f, *tail, values)) {
      s = *tail;
      break;
    }
  if (!s && f->nseries < OD_METRICS_MAX_SERIES && (s = series_new(f, values))) {
    *tail = s;
    f->nseries++;
  }
  if (s && fn) {
    s->fn = fn;
    s->ctx = ctx;
  }
  pthread_mutex_unlock(&m->lock);
  return s;
}

od_metric *od_metrics_series(od_metric_family *f, const char *const *values) {
  return series_get(f, values, NULL, NULL);
}

od_metric *od_metrics_series_fn(od_metric_family *f, const char *const *values, int64_t (*fn)(void *ctx),
                                void *ctx) {
  if (!f || f->type == OD_METRIC_HISTOGRAM || !fn) return NULL;
  return series_get(f, values, fn, ctx);
}

void od_metrics_remove(od_metric *s) {
  if (!s) return;
  od_metric_family *f = s->family;
  pthread_mutex_lock(&f->registry->lock);
  for (od_metric **p = &f->series; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      f->nseries--;
      series_free(s);
      break;
    }
  pthread_mutex_unlock(&f->registry->lock);
}

/* ---- hot path ---- */

static atomic_uint next_shard;
static _Thread_local int my_shard = -1;

static inline unsigned shard(void) {
  if (my_shard < 0) my_shard = (int)(atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % OD_METRICS_SHARDS);
  return (unsigned)my_shard;
}

void od_counter_add(od_metric *s, uint64_t n) {
  if (!s || !s->cells) return;
  atomic_fetch_add_explicit(&s->cells[shard() * s->stride], n, memory_order_relaxed);
}

void od_gauge_set(od_metric *s, int64_t v) {
  if (s) atomic_store_explicit(&s->gauge, v, memory_order_relaxed);
}

void od_gauge_add(od_metric *s, int64_t delta) {
  if (s) atomic_fetch_add_explicit(&s->gauge, delta, memory_order_relaxed);
}

void od_histogram_observe(od_metric *s, uint64_t v) { od_histogram_observe_n(s, v, 1); }

void od_histogram_observe_n(od_metric *s, uint64_t v, uint64_t n) {
  if (!s || !s->cells || !n) return;
  const od_metric_family *f = s->family;
  int b = 0;
  while (b < f->nbounds && (double)v > f->ubounds[b]) b++;
  _Atomic uint64_t *row = &s->cells[shard() * s->stride];
  atomic_fetch_add_explicit(&row[b], n, memory_order_relaxed);
  atomic_fetch_add_explicit(&row[f->nbounds + 1], v * n, memory_order_relaxed);
}

/* ---- reads ---- */

uint64_t od_counter_value(const od_metric *s) {
  if (!s) return 0;
  if (s->fn) {
    int64_t v = s->fn(s->ctx);
    return v > 0 ? (uint64_t)v : 0;
  }
  if (!s->cells) return 0;
  uint64_t v = 0;
  for (unsigned i = 0; i < OD_METRICS_SHARDS; i++)
    v += atomic_load_explicit(&s->cells[i * s->stride], memory_order_relaxed);
  return v;
}

int64_t od_gauge_value(const od_metric *s) {
  if (!s) return 0;
  if (s->fn) return s->fn(s->ctx);
  return atomic_load_explicit(&s->gauge, memory_order_relaxed);
}

void od_histogram_read(const od_metric *s, od_histogram_snap *out) {
  memset(out, 0, sizeof *out);
  if (!s || !s->cells) return;
  const od_metric_family *f = s->family;
  out->nbounds = f->nbounds;
  out->scale = f->scale;
  memcpy(out->bounds, f->bounds, sizeof(double) * (size_t)f->nbounds);
  for (unsigned sh = 0; sh < OD_METRICS_SHARDS; sh++) {
    _Atomic uint64_t *row = &s->cells[sh * s->stride];
    for (int b = 0; b <= f->nbounds; b++) out->buckets[b] += atomic_load_explicit(&row[b], memory_order_relaxed);
    out->sum += atomic_load_explicit(&row[f->nbounds + 1], memory_order_relaxed);
  }
  for (int b = 0; b <= f->nbounds; b++) out->count += out->buckets[b];
}

void od_histogram_diff(const od_histogram_snap *b, const od_histogram_snap *a, od_histogram_snap *out) {
  *out = *b;
  if (a->nbounds != b->nbounds) return;
  out->count = 0;
  for (int i = 0; i <= b->nbounds; i++) {
    out->buckets[i] = b->buckets[i] >= a->buckets[i] ? b->buckets[i] - a->buckets[i] : 0;
    out->count += out->buckets[i];
  }
  out->sum = b->sum >= a->sum ? b->sum - a->sum : 0;
}

double od_histogram_quantile(const od_histogram_snap *h, double q) {
  if (!h->count || h->nbounds < 1) return NAN;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  double rank = q * (double)h->count;
  uint64_t cum = 0;
  for (int b = 0; b <= h->nbounds; b++) {
    uint64_t prev = cum;
    cum += h->buckets[b];
    if ((double)cum >= rank && h->buckets[b]) {
      if (b == h->nbounds) return h->bounds[h->nbounds - 1];
      double lo = b == 0 ? (h->bounds[0] > 0 ? 0 : h->bounds[0]) : h->bounds[b - 1];
      double hi = h->bounds[b];
      return lo + (hi - lo) * ((rank - (double)prev) / (double)h->buckets[b]);
    }
  }
  return h->bounds[h->nbounds - 1];
}
