/* metrics.h — the one registry of counters, gauges and histograms of the process.
 *
 * Every reader of operational state (the admin server's /metrics, /status and dashboard, the
 * `odsync status` command, the progress line, later traces and alerts) reads it here; every writer
 * (the apply thread, the reader, the supervisor, the snapshot) writes through the handles below.
 *
 * Model: a *family* (name, help, type, label names, for histograms the bucket bounds) holds
 * *series* (one per set of label values). Label sets are fixed and bounded: a family holds at
 * most OD_METRICS_MAX_SERIES series; past that od_metrics_series returns NULL, and every write
 * function accepts NULL as "count nowhere" (so an unbounded label can never grow memory).
 *
 * Values are integers in the family's unit (µs, rows, bytes); `scale` converts them for
 * exposition (1e-6 turns µs into the `_seconds` Prometheus wants). Bucket bounds are given in
 * exposed units.
 *
 * Hot path: counters and histograms are split into OD_METRICS_SHARDS cache-line-aligned shards;
 * a thread writes only its own shard (picked once per thread) with relaxed atomic adds — no lock,
 * no false sharing between writer threads. Readers sum the shards. Gauges are one atomic value
 * (set/add), or a function the registry calls when it is read (for values that already live
 * elsewhere as atomics, e.g. the queue depth).
 *
 * Ownership: the registry owns its families and series; handles (od_metric *) stay valid until
 * od_metrics_free. Label values and names are copied. A gauge function's ctx is borrowed: whoever
 * registers it must od_metrics_remove its series before ctx dies.
 * Locking: creating, removing and reading (exposition) take the registry's mutex; writes never do.
 * Never touches: I/O (exposition writes into a caller's buffer), pipelines, sockets.
 */
#ifndef ODSYNC_METRICS_H
#define ODSYNC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sqlbuf.h"

#define OD_METRICS_SHARDS 8
#define OD_METRICS_MAX_LABELS 4
#define OD_METRICS_MAX_BUCKETS 24
#define OD_METRICS_MAX_SERIES 1024

typedef enum od_metric_type { OD_METRIC_COUNTER, OD_METRIC_GAUGE, OD_METRIC_HISTOGRAM } od_metric_type;

typedef struct od_metrics od_metrics;
typedef struct od_metric_family od_metric_family;
typedef struct od_metric od_metric;

typedef struct od_metric_family_def {
  const char *name;                 /* [a-zA-Z_:][a-zA-Z0-9_:]*, e.g. "odsync_changes_applied_total" */
  const char *help;
  od_metric_type type;
  const char *const *labels;        /* NULL-terminated label names (at most OD_METRICS_MAX_LABELS), or NULL */
  double scale;                     /* exposed = stored * scale; 0 means 1 */
  const double *bounds;             /* histograms: ascending upper bounds in exposed units */
  int nbounds;                      /* at most OD_METRICS_MAX_BUCKETS */
} od_metric_family_def;

od_metrics *od_metrics_new(void);
void od_metrics_free(od_metrics *m);
/* The process's registry (created on first use, lives until exit). */
od_metrics *od_metrics_global(void);

/* Find or create a family. A second call with the same name returns the first family (its
 * definition wins); NULL when the definition is invalid or memory runs out. */
od_metric_family *od_metrics_family(od_metrics *m, const od_metric_family_def *def);
/* Find or create the series of these label values (one per label name, in order). NULL when
 * the family is full, a value is missing, or memory runs out. Not for the hot path. */
od_metric *od_metrics_series(od_metric_family *f, const char *const *values);
/* A counter or gauge series whose value is fn(ctx) at read time (in the family's unit), for values
 * that already live elsewhere as atomics. fn runs under the registry's lock: it must only load
 * atomics (never call into the registry). Writes to such a series are ignored. */
od_metric *od_metrics_series_fn(od_metric_family *f, const char *const *values, int64_t (*fn)(void *ctx),
                                void *ctx);
/* Drop a series (its handle becomes invalid). NULL is ignored. */
void od_metrics_remove(od_metric *s);

/* ---- writes (hot path; any thread; NULL is a no-op) ---- */
void od_counter_add(od_metric *s, uint64_t n);
void od_gauge_set(od_metric *s, int64_t v);
void od_gauge_add(od_metric *s, int64_t delta);
/* One observation, in the family's unit. */
void od_histogram_observe(od_metric *s, uint64_t v);
/* n observations of the same value v (one bucket add, one sum add). */
void od_histogram_observe_n(od_metric *s, uint64_t v, uint64_t n);

/* ---- reads (any thread) ---- */
uint64_t od_counter_value(const od_metric *s);
int64_t od_gauge_value(const od_metric *s);

/* A histogram's state: per-bucket (not cumulative) counts, the last one is +Inf. */
typedef struct od_histogram_snap {
  int nbounds;
  double bounds[OD_METRICS_MAX_BUCKETS]; /* exposed units */
  uint64_t buckets[OD_METRICS_MAX_BUCKETS + 1];
  uint64_t count;
  uint64_t sum; /* family unit */
  double scale;
} od_histogram_snap;
void od_histogram_read(const od_metric *s, od_histogram_snap *out);
/* b - a, bucket by bucket (the observations between two reads of the same series). */
void od_histogram_diff(const od_histogram_snap *b, const od_histogram_snap *a, od_histogram_snap *out);
/* The q-quantile (0..1) in exposed units, interpolated linearly inside its bucket (Prometheus'
 * histogram_quantile rule); NaN when there are no observations; the highest finite bound when
 * it falls into +Inf. */
double od_histogram_quantile(const od_histogram_snap *h, double q);

/* ---- exposition ---- */
/* Prometheus text format 0.0.4 of every family, in registration order. Returns 0, or -1 when
 * out of memory (the buffer's oom flag is set). */
int od_metrics_write_prometheus(od_metrics *m, od_sqlbuf *out);

#endif
