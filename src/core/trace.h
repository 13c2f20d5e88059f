/* trace.h — the hook through which the apply threads hand a sampled batch's timings to a trace
 * exporter (src/server/otlp.c), without knowing it.
 *
 * Owns: the process-wide exporter hook (function, context, sample ratio) and each thread's random
 * state for sampling. od_trace_sample is one load when tracing is off; od_trace_submit copies the
 * record and returns (the exporter must never block). Never touches: I/O, the network.
 */
#ifndef ODSYNC_TRACE_H
#define ODSYNC_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "odsync/position.h"

/* One sink commit of a batch. Times are monotonic µs (core/clock.h). The decode and queue-wait
 * stamps are those of the batch's first chunk. */
typedef struct od_trace_batch {
  char pipeline[64], sink[64];
  int64_t decode_start, decode_end; /* the reader took the chunk .. pushed it into the queue */
  int64_t queue_end;                /* this sink's apply thread popped it */
  int64_t apply_start;              /* the batch's first sink call */
  int64_t commit_start, commit_end; /* the sink's commit */
  uint64_t rows, txns, xid;         /* xid: the source transaction id of the batch's last transaction */
  char end_pos[OD_POS_TEXT_MAX];    /* the checkpoint the commit stored ("pg:0/16B3748") */
  /* The correlation ids (od_change.correlation_id) of the batch's first and last change that had
   * one ("" when none had: every source but http); longer ids are cut at 128 bytes. */
  char correlation_first[129], correlation_last[129];
} od_trace_batch;

typedef void (*od_trace_fn)(void *ctx, const od_trace_batch *b);

/* Install (fn non-NULL) or remove (NULL) the exporter; ratio in [0, 1]. Call while no apply thread
 * runs (before pipelines start, after they stop). */
void od_trace_set_exporter(od_trace_fn fn, void *ctx, double ratio);
/* True for a sampled batch (probability = the ratio); false at once when no exporter is set. */
bool od_trace_sample(void);
void od_trace_submit(const od_trace_batch *b);

#endif
