/* otlp.h — OpenTelemetry traces over OTLP/HTTP (JSON), exported with libcurl.
 *
 * Each sampled batch (core/trace.h) becomes one trace: a root span "odsync.batch" with children
 * "odsync.decode" (the reader filled the batch's first chunk), "odsync.queue_wait" (that chunk
 * waited in the queue), "odsync.sink.apply" and "odsync.sink.commit"; the root carries the
 * pipeline, the sink, rows, transactions, the source transaction id and the checkpoint position.
 *
 * Owns: a bounded queue of batch records (OD_OTLP_QUEUE; more are dropped and counted), the
 * exporter thread (POSTs at most every second, or when 64 batches wait; 2 s connect / 5 s total
 * timeouts), its counters. The apply threads only copy a record under a mutex the exporter holds
 * for the copy, never for the POST: a slow or dead collector never blocks a pipeline.
 * Never touches: pipelines, sources, sinks.
 */
#ifndef ODSYNC_OTLP_H
#define ODSYNC_OTLP_H

#include <stdint.h>

#include "common/sqlbuf.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "odsync/config.h"
#include "odsync/error.h"

#define OD_OTLP_QUEUE 1024

typedef struct od_otlp od_otlp;

/* Start exporting to cfg->tracing (which must be enabled) and install the hook. */
int od_otlp_start(const od_config *cfg, od_metrics *registry, od_otlp **out, od_error *err);
/* Remove the hook, send what is queued (one last POST), stop, free. NULL is ignored. Call after
 * the apply threads stopped. */
void od_otlp_stop(od_otlp *o);

/* One ExportTraceServiceRequest (JSON) for n batches: 5 spans each (fewer when a stamp is
 * missing). `wall_minus_mono` turns monotonic µs into Unix µs; ids come from rand64(ctx).
 * Returns 0, -1 when out of memory. */
int od_otlp_encode(const od_trace_batch *b, int n, const char *service, int64_t wall_minus_mono,
                   uint64_t (*rand64)(void *ctx), void *ctx, od_sqlbuf *out);

#endif
