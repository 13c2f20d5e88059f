/* apply.h — the apply thread: queue -> sink, in source commit order, with the checkpoint.
 *
 * Owns: the thread and the batch state (open sink transaction, its commit point). Batching
 * rule: a sink transaction is committed only at a source transaction boundary, once it holds
 * batch.max_rows rows or batch.max_bytes bytes, or has been open batch.max_delay_ms, or the
 * queue has nothing more ready (so light load gets low latency and heavy load gets big batches).
 * Every commit stores the position of the last transaction it contains; after the commit
 * returns, that position is published as stats->durable_lsn — the only value the source may
 * acknowledge. Borrows the sink, queue and stats from the pipeline; never touches the source.
 */
#ifndef ODSYNC_APPLY_H
#define ODSYNC_APPLY_H

#include <stdbool.h>

#include "core/pipeline.h"
#include "core/queue.h"
#include "odsync/config.h"
#include "odsync/sink.h"

typedef struct od_apply od_apply;

/* strong: one writer applies every source transaction whole and in commit order.
 * causal / eventual: `writers` sink instances apply each batch in parallel (see route.h for
 * what goes where); the apply thread's own sink is the carrier and commits last, with the
 * checkpoint, after every helper writer committed. */
typedef struct od_apply_options {
  int consistency; /* enum od_consistency (odsync/config.h) */
  int writers;     /* total sink writers including the carrier; 1 = no parallel apply */
} od_apply_options;

/* `opt` NULL: strong, one writer. */
int od_apply_start(od_apply **out, const od_pipeline_config *cfg, const od_apply_options *opt,
                   od_sink *sink, od_queue *queue, od_pipeline_stats *stats, od_error *err);
/* True once the apply thread has failed (the reader should stop). */
bool od_apply_failed(od_apply *a);
/* Wait for the thread (it ends when the queue is closed and drained, or on failure); frees it.
 * Returns the apply error, if any, copied into err (may be NULL). */
int od_apply_join(od_apply *a, od_error *err);

#endif
