/* alerts.h — SLA alerts and anomaly detection over the pipelines' metrics.
 *
 * Once a second (od_alerts_tick) every pipeline is judged against its `alerts:` thresholds (lag
 * seconds, end-to-end p95 of the last minute, errors in the last minute) and, unless switched
 * off, against its own baseline (EWMA 3-sigma bands on throughput and lag; core/ewma.h; an
 * anomaly needs 3 samples in a row outside the band, and 3 inside to clear). Each alert and
 * anomaly is a gauge (odsync_alert_firing, odsync_anomaly) and one log line per transition;
 * alert transitions are also POSTed as JSON to the pipeline's webhook, from a thread of their
 * own with a bounded queue, so a slow or dead receiver never delays a tick or a pipeline.
 *
 * Owns: its per-pipeline windows, the webhook queue and the two threads (ticker, webhook).
 * Borrows the pipelines' configs and stats (they must outlive od_alerts_free) and the registry.
 * Never touches: the pipelines' control, sources, sinks.
 */
#ifndef ODSYNC_ALERTS_H
#define ODSYNC_ALERTS_H

#include <stdint.h>

#include "core/metrics.h"
#include "core/pipeline.h"
#include "odsync/config.h"

typedef struct od_alerts od_alerts;

/* cfgs[i] and stats[i] describe pipeline i. NULL when out of memory. */
od_alerts *od_alerts_new(od_metrics *registry, const od_pipeline_config *const *cfgs, od_pipeline_stats *const *stats,
                         int n);
/* Judge every pipeline once (now: wall clock µs). The ticker thread calls it every second. */
void od_alerts_tick(od_alerts *a, int64_t now_us);
/* Start the ticker and webhook threads. 0, or -1 when a thread cannot be created. */
int od_alerts_start(od_alerts *a);
/* Stop the threads (a webhook POST in flight is given its timeout), free. NULL is ignored. */
void od_alerts_free(od_alerts *a);

#endif
