/* apply.c — see apply.h. */
#include "core/apply.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct od_apply {
  const od_pipeline_config *cfg;
  od_sink *sink;
  od_queue *queue;
  od_pipeline_stats *stats;
  pthread_t thread;
  atomic_bool failed;
  int rc;
  od_error err;

  /* batch state */
  bool open;           /* a sink transaction is open */
  bool at_boundary;    /* the last applied chunk ended a source transaction */
  od_lsn boundary;     /* position of that transaction (or of an idle heartbeat) */
  int64_t commit_time; /* its source commit time */
  uint64_t rows;       /* rows applied in the open batch */
  uint64_t txns;       /* transactions completed in the open batch */
  size_t bytes;
  int64_t opened_at;
};

static int batch_commit(od_apply *a) {
  int rc = a->sink->ops->commit(a->sink, a->boundary, &a->err);
  if (rc) return rc;
  int64_t now = od_now_us();
  atomic_store(&a->stats->durable_lsn, a->boundary);
  atomic_fetch_add(&a->stats->changes_applied, a->rows);
  atomic_fetch_add(&a->stats->txns_applied, a->txns);
  atomic_fetch_add(&a->stats->batches, 1);
  if (a->commit_time) {
    atomic_store(&a->stats->last_commit_time, a->commit_time);
    atomic_store(&a->stats->last_lag_us, now - a->commit_time);
  }
  atomic_store(&a->stats->last_apply_at, now);
  a->open = false;
  a->rows = a->txns = 0;
  a->bytes = 0;
  a->commit_time = 0;
  return OD_OK;
}

static bool batch_due(od_apply *a) {
  if (!a->open || !a->at_boundary) return false;
  const od_batch_config *b = &a->cfg->batch;
  return a->rows >= (uint64_t)b->max_rows || a->bytes >= b->max_bytes ||
         od_mono_us() - a->opened_at >= (int64_t)b->max_delay_ms * 1000 ||
         od_queue_empty(a->queue);
}

static int open_batch(od_apply *a) {
  if (a->open) return OD_OK;
  int rc = a->sink->ops->begin(a->sink, &a->err);
  if (rc) return rc;
  a->open = true;
  a->opened_at = od_mono_us();
  return OD_OK;
}

static int apply_range(od_apply *a, od_chunk *c, uint32_t from, uint32_t to) {
  if (from == to) return OD_OK;
  int rc = a->sink->ops->apply(a->sink, c->changes + from, to - from, &a->err);
  if (rc) return rc;
  a->rows += to - from;
  return OD_OK;
}

static int apply_chunk(od_apply *a, od_chunk *c) {
  int rc;
  if (c->heartbeat) {
    /* An idle position: checkpoint it so the slot can advance past WAL we have no use for. */
    if (a->open) {
      if (a->at_boundary && c->end_lsn > a->boundary) a->boundary = c->end_lsn;
      return OD_OK;
    }
    if (c->end_lsn <= atomic_load(&a->stats->durable_lsn)) return OD_OK;
    if ((rc = a->sink->ops->begin(a->sink, &a->err))) return rc;
    a->open = true;
    a->boundary = c->end_lsn;
    return batch_commit(a);
  }
  /* The complete transactions at the head of the chunk... */
  uint32_t complete = c->ntxns ? c->boundary : 0;
  if (c->ntxns) {
    if ((rc = open_batch(a)) || (rc = apply_range(a, c, 0, complete))) return rc;
    a->txns += c->ntxns;
    a->at_boundary = true;
    a->boundary = c->end_lsn;
    a->commit_time = c->commit_time;
  }
  /* ...then the start of a transaction that continues in later chunks. It begins in a sink
   * transaction of its own, so stopping before its end loses no complete transaction. */
  if (complete < c->nchanges) {
    if (a->open && a->at_boundary && (rc = batch_commit(a))) return rc;
    if ((rc = open_batch(a)) || (rc = apply_range(a, c, complete, c->nchanges))) return rc;
    a->at_boundary = false;
  }
  a->bytes += od_chunk_bytes(c);
  return OD_OK;
}

static void *apply_main(void *arg) {
  od_apply *a = arg;
  int rc = OD_OK;
  for (;;) {
    int wait_ms = 100;
    if (a->open && a->at_boundary) {
      int64_t left = (int64_t)a->cfg->batch.max_delay_ms * 1000 - (od_mono_us() - a->opened_at);
      wait_ms = left <= 0 ? 0 : (int)(left / 1000) + 1;
    }
    od_chunk *c = od_queue_pop(a->queue, wait_ms);
    if (!c) {
      if (batch_due(a) && (rc = batch_commit(a))) break;
      if (od_queue_closed(a->queue) && od_queue_empty(a->queue)) break;
      continue;
    }
    rc = apply_chunk(a, c);
    od_queue_recycle(a->queue, c);
    if (rc) break;
    if (batch_due(a) && (rc = batch_commit(a))) break;
  }
  if (rc == OD_OK && a->open && a->at_boundary) rc = batch_commit(a);
  if (a->open) {
    /* A partial source transaction (or a failed batch) never reaches the sink. */
    a->sink->ops->rollback(a->sink);
    a->open = false;
  }
  if (rc) {
    a->rc = rc;
    atomic_store(&a->failed, true);
    /* Unblock the reader and discard what can no longer be applied in this session. */
    od_queue_close(a->queue);
    od_chunk *c;
    while ((c = od_queue_pop(a->queue, 0))) od_queue_recycle(a->queue, c);
  }
  return NULL;
}

int od_apply_start(od_apply **out, const od_pipeline_config *cfg, od_sink *sink, od_queue *queue,
                   od_pipeline_stats *stats, od_error *err) {
  od_apply *a = calloc(1, sizeof *a);
  if (!a) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  a->cfg = cfg;
  a->sink = sink;
  a->queue = queue;
  a->stats = stats;
  if (pthread_create(&a->thread, NULL, apply_main, a) != 0) {
    free(a);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: cannot start the apply thread", cfg->name);
  }
  *out = a;
  return OD_OK;
}

bool od_apply_failed(od_apply *a) { return atomic_load(&a->failed); }

int od_apply_join(od_apply *a, od_error *err) {
  if (!a) return OD_OK;
  pthread_join(a->thread, NULL);
  int rc = a->rc;
  if (rc && err) *err = a->err;
  free(a);
  return rc;
}
