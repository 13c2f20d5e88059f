/* apply.h — one sink's apply thread: queue -> sink, in source commit order, with the checkpoint.
 *
 * Owns: the thread and the batch state (open sink transaction, its commit point). Batching
 * rule: a sink transaction is committed only at a source transaction boundary, once it holds
 * batch.max_rows rows or batch.max_bytes bytes, or has been open batch.max_delay_ms, or the
 * queue has nothing more ready (so light load gets low latency and heavy load gets big batches).
 * Every commit stores the position of the last transaction it contains; after the commit
 * returns, that position is published as the sink's stats->durable — the pipeline acknowledges
 * the least of its sinks' durable positions to the source. A sink with deferred durability
 * (OD_SINK_DEFERRED_DURABILITY) reports later which commits are durable: only those are
 * published (asked between transactions when nothing else brings the news), and while some are
 * not, a failed sink is not reconnected in place (a new session reads them from the source again).
 * The skip rule is per sink (the reader reads from the least checkpoint of all sinks): changes of
 * transactions that start before this sink's checkpoint, and changes the sink's initial snapshot
 * already copied (od_snapshot_skips), are dropped here.
 * Repeats are dropped by a floor too: a transaction that starts before the end of the last one that
 * passed here (a spool and memory overlapping after a restart, a spool read again). With a spool
 * (env.spool) the thread reads its spool before memory, keeps its open batch's chunks until commit
 * and, on a retriable sink failure, puts them back and reconnects in place (see od_apply_env).
 * Borrows the sink, queue, skips and stats from the pipeline; reads chunks, never writes them;
 * never touches the source.
 */
#ifndef ODSYNC_APPLY_H
#define ODSYNC_APPLY_H

#include <stdbool.h>

#include "core/pipeline.h"
#include "core/queue.h"
#include "core/snapshot.h"
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
  size_t parallel_min_rows; /* with writers > 1: a batch of fewer rows goes to the carrier alone,
                               applied and committed once, the strong way (0: every batch is split) */
} od_apply_options;

/* Opens one more instance of the sink (transforms included) for a parallel writer. */
typedef int (*od_sink_open_fn)(void *ctx, od_sink **out, od_error *err);

typedef struct od_apply_env {
  const od_pipeline_config *cfg;
  od_apply_options opt;      /* strong, one writer when zeroed */
  od_sink *sink;             /* the carrier: its commits carry the checkpoint */
  od_sink_open_fn open_writer; /* for parallel writers (NULL: none) */
  void *open_ctx;
  const char *mark_prefix;   /* this sink's mark namespace ("<pipeline>" or "<pipeline>.<sink>") */
  od_queue *queue;
  int consumer;              /* this sink's consumer index in the queue */
  od_pos skip_before;        /* the sink's checkpoint at session start: transactions starting before it are held */
  const struct od_snapshot_skips *skips; /* tables this sink's snapshot copied under a later view (may be NULL) */
  od_sink_stats *stats;
  struct od_poison *poison;  /* poison-row isolation of this sink (core/poison.h), NULL: none */
  struct od_breaker *breaker; /* told of every committed batch (core/breaker.h), NULL: none */
  /* Spooling (core/spool_feed.h), NULL without: the apply thread reads its spool before memory;
   * with one writer, a retriable sink failure no longer ends the session: the thread keeps the
   * uncommitted batch, closes the sink, reopens it (open_writer) with backoff while the reader
   * spools for it, reads its checkpoint and carries on. The sink it opens replaces *sink_home. */
  struct od_spool_feed *spool;
  od_sink **sink_home;
} od_apply_env;

int od_apply_start(od_apply **out, const od_apply_env *env, od_error *err);
/* True once the apply thread has failed (the reader should stop). */
bool od_apply_failed(od_apply *a);
/* Wait for the thread (it ends when the queue is closed and drained, or on failure); frees it.
 * Returns the apply error, if any, copied into err (may be NULL). */
int od_apply_join(od_apply *a, od_error *err);

#endif
