/* metrics_internal.h — the registry's structures, shared by metrics.c (registry, hot path) and
 * metrics_text.c (exposition). Nobody else includes this: everyone else uses metrics.h. */
#ifndef ODSYNC_METRICS_INTERNAL_H
#define ODSYNC_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/metrics.h"

struct od_metric {
  od_metric_family *family;
  char *values[OD_METRICS_MAX_LABELS]; /* owned */
  int64_t (*fn)(void *ctx);            /* gauge read at read time, or NULL */
  void *ctx;                           /* borrowed */
  _Atomic int64_t gauge;
  unsigned stride;                     /* cells per shard (whole cache lines) */
  _Atomic uint64_t *cells;             /* OD_METRICS_SHARDS * stride, 64-byte aligned; NULL for gauges */
  od_metric *next;
};

struct od_metric_family {
  od_metrics *registry;
  char *name, *help;                   /* owned */
  od_metric_type type;
  char *labels[OD_METRICS_MAX_LABELS]; /* owned */
  int nlabels;
  double scale;
  double bounds[OD_METRICS_MAX_BUCKETS];  /* exposed units */
  double ubounds[OD_METRICS_MAX_BUCKETS]; /* family units (bounds / scale) */
  int nbounds;
  od_metric *series;
  int nseries;
  od_metric_family *next;
};

struct od_metrics {
  pthread_mutex_t lock; /* families and series lists; never taken by writes */
  od_metric_family *families;
};

#endif
