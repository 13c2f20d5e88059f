/* apply.c — see apply.h. */
#include "core/apply.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "core/route.h"
#include "core/writers.h"

struct od_apply {
  const od_pipeline_config *cfg;
  od_apply_options opt;
  od_sink *sink;       /* the carrier: its commits carry the checkpoint */
  od_queue *queue;
  od_pipeline_stats *stats;
  pthread_t thread;
  atomic_bool failed;
  int rc;
  od_error err;

  /* batch state */
  bool open;           /* a carrier sink transaction is open */
  bool at_boundary;    /* the batch ends at the end of a source transaction */
  od_lsn boundary;     /* position of that transaction (or of an idle heartbeat) */
  int64_t commit_time; /* its source commit time */
  uint64_t rows;       /* rows in the batch */
  uint64_t txns;       /* transactions completed in the batch */
  size_t bytes;
  int64_t opened_at;   /* monotonic µs when the batch started */
  int64_t sink_us;     /* time spent in the sink (apply + commit) for the batch */
  uint64_t limit_rows; /* the batch size limit: batch.max_rows, or the adaptive (AIMD) limit */
  uint64_t tally[OD_PM_NOPS]; /* rows of the batch by operation (metrics) */

  /* parallel apply (causal, eventual) */
  od_writers *writers;     /* opt.writers - 1 helpers */
  od_router router;
  od_chunk *pending, *pending_tail; /* chunks of the batch, kept until it is committed */
  bool serial;             /* a transaction too large for one batch is streaming through the carrier */
};

static bool parallel(const od_apply *a) { return a->writers != NULL; }
static bool batch_started(const od_apply *a) { return a->open || a->pending; }

static void publish(od_apply *a) {
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
  memset(a->tally, 0, sizeof a->tally);
}

/* AIMD on the sink's latency: a batch that took longer than the target halves the limit; a
 * full batch that stayed under it raises the limit by a step. Light load never fills a batch (it
 * closes when the queue is empty), so the limit only grows while throughput needs it. */
static void adapt(od_apply *a) {
  const od_batch_config *b = &a->cfg->batch;
  if (!b->adaptive) return;
  uint64_t lo = (uint64_t)b->min_rows, hi = (uint64_t)b->max_rows;
  if (a->sink_us > (int64_t)b->target_latency_ms * 1000) {
    a->limit_rows = a->limit_rows / 2 > lo ? a->limit_rows / 2 : lo;
  } else if (a->rows >= a->limit_rows) {
    uint64_t step = hi / 20 > lo ? hi / 20 : lo;
    a->limit_rows = a->limit_rows + step < hi ? a->limit_rows + step : hi;
  }
  atomic_store(&a->stats->batch_limit, a->limit_rows);
}

static int batch_commit(od_apply *a) {
  int64_t t0 = od_mono_us();
  int rc = a->sink->ops->commit(a->sink, a->boundary, &a->err);
  if (rc) return rc;
  a->sink_us += od_mono_us() - t0;
  adapt(a);
  od_pm_batch(a->stats->metrics, a->tally, a->txns, a->bytes, a->sink_us, a->commit_time);
  a->sink_us = 0;
  publish(a);
  return OD_OK;
}

static bool batch_due(od_apply *a) {
  if (!batch_started(a) || !a->at_boundary) return false;
  const od_batch_config *b = &a->cfg->batch;
  return a->rows >= a->limit_rows || a->bytes >= b->max_bytes ||
         od_mono_us() - a->opened_at >= (int64_t)b->max_delay_ms * 1000 ||
         od_queue_empty(a->queue);
}

static int open_batch(od_apply *a) {
  if (a->open) return OD_OK;
  int rc = a->sink->ops->begin(a->sink, &a->err);
  if (rc) return rc;
  a->open = true;
  if (!a->pending) a->opened_at = od_mono_us();
  return OD_OK;
}

static int apply_range(od_apply *a, od_chunk *c, uint32_t from, uint32_t to) {
  if (from == to) return OD_OK;
  int64_t t0 = od_mono_us();
  int rc = a->sink->ops->apply(a->sink, c->changes + from, to - from, &a->err);
  a->sink_us += od_mono_us() - t0;
  if (rc) return rc;
  a->rows += to - from;
  od_pm_tally(a->tally, c->changes + from, to - from);
  return OD_OK;
}

/* Marks carried by a chunk (incremental snapshot progress), in the open carrier transaction. */
static int apply_marks(od_apply *a, const od_chunk *c) {
  const od_sink_ops *ops = a->sink->ops;
  for (uint32_t i = 0; i < c->nmarks; i++) {
    const od_chunk_mark *m = &c->marks[i];
    int rc;
    if (m->text)
      rc = ops->set_text_mark ? ops->set_text_mark(a->sink, m->key, m->text, &a->err)
                              : OD_FAIL(&a->err, OD_EUNSUPPORTED, "pipeline %s: the sink cannot store text marks",
                                        a->cfg->name);
    else
      rc = ops->set_mark ? ops->set_mark(a->sink, m->key, m->value, &a->err)
                         : OD_FAIL(&a->err, OD_EUNSUPPORTED, "pipeline %s: the sink cannot store marks", a->cfg->name);
    if (rc) return rc;
  }
  return OD_OK;
}

/* An idle position: checkpoint it so the slot can advance past WAL we have no use for. */
static int apply_heartbeat(od_apply *a, const od_chunk *c) {
  if (batch_started(a)) {
    if (a->at_boundary && c->end_lsn > a->boundary) a->boundary = c->end_lsn;
    return OD_OK;
  }
  if (c->end_lsn <= atomic_load(&a->stats->durable_lsn)) return OD_OK;
  int rc = open_batch(a);
  if (rc) return rc;
  a->boundary = c->end_lsn;
  return batch_commit(a);
}

/* Strong (and serial) path: apply a chunk to the carrier at once. */
static int apply_chunk(od_apply *a, od_chunk *c) {
  int rc;
  /* The complete transactions at the head of the chunk... */
  uint32_t complete = c->ntxns ? c->boundary : 0;
  if (c->ntxns) {
    if ((rc = open_batch(a)) || (rc = apply_range(a, c, 0, complete)) || (rc = apply_marks(a, c))) return rc;
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

static void recycle_pending(od_apply *a) {
  while (a->pending) {
    od_chunk *next = a->pending->next;
    od_queue_recycle(a->queue, a->pending);
    a->pending = next;
  }
  a->pending_tail = NULL;
}

/* A transaction outgrew the batch: apply what is pending through the carrier and stream the
 * rest of that transaction the strong way (memory stays bounded). */
static int go_serial(od_apply *a) {
  a->rows = a->txns = 0;
  memset(a->tally, 0, sizeof a->tally);
  a->bytes = 0;
  a->at_boundary = false;
  a->serial = true;
  int rc = OD_OK;
  for (od_chunk *c = a->pending; c && !rc; c = c->next) rc = apply_chunk(a, c);
  recycle_pending(a);
  return rc;
}

/* Parallel path: keep the chunk for the batch. Takes ownership of c. */
static int collect(od_apply *a, od_chunk *c) {
  if (!a->pending) a->opened_at = od_mono_us();
  c->next = NULL;
  if (a->pending_tail)
    a->pending_tail->next = c;
  else
    a->pending = c;
  a->pending_tail = c;
  a->rows += c->nchanges;
  od_pm_tally(a->tally, c->changes, c->nchanges);
  a->bytes += od_chunk_bytes(c);
  if (c->ntxns) {
    a->txns += c->ntxns;
    a->boundary = c->end_lsn;
    a->commit_time = c->commit_time;
  }
  a->at_boundary = c->ends_txn;
  const od_batch_config *b = &a->cfg->batch;
  if (!a->at_boundary && (a->rows >= 4 * (uint64_t)b->max_rows || a->bytes >= b->max_bytes)) return go_serial(a);
  return OD_OK;
}

/* Apply the pending batch over every writer. The helpers apply and commit first (their work is
 * idempotent); only then does the carrier apply the serial work and commit with the checkpoint.
 * The carrier never holds locks (its DDL, its rows) while helpers wait on them. */
static int run_parallel(od_apply *a) {
  int mode = a->opt.consistency == OD_CONSISTENCY_CAUSAL ? OD_ROUTE_CAUSAL : OD_ROUTE_EVENTUAL;
  int64_t t0 = od_mono_us();
  int rc = od_route_batch(&a->router, mode, a->pending, &a->err);
  if (rc) return rc;
  od_writers_run(a->writers, a->router.lists + 1, a->router.counts + 1);
  rc = od_writers_wait(a->writers, &a->err);
  if (!rc) rc = open_batch(a);
  if (!rc && a->router.counts[0])
    rc = a->sink->ops->apply(a->sink, a->router.lists[0], a->router.counts[0], &a->err);
  for (od_chunk *c = a->pending; c && !rc; c = c->next) rc = apply_marks(a, c);
  a->sink_us += od_mono_us() - t0;
  if (!rc) rc = batch_commit(a);
  if (!rc) recycle_pending(a);
  return rc;
}

static int flush(od_apply *a) {
  if (parallel(a) && a->pending) return run_parallel(a);
  int rc = batch_commit(a);
  if (!rc) a->serial = false;
  return rc;
}

static int take(od_apply *a, od_chunk *c) {
  int rc;
  if (c->heartbeat) {
    rc = apply_heartbeat(a, c);
    od_queue_recycle(a->queue, c);
    return rc;
  }
  if (parallel(a) && !a->serial) return collect(a, c);
  rc = apply_chunk(a, c);
  od_queue_recycle(a->queue, c);
  return rc;
}

static void *apply_main(void *arg) {
  od_apply *a = arg;
  od_log_set_thread_pipeline(a->cfg->name);
  int rc = OD_OK;
  for (;;) {
    int wait_ms = 100;
    if (batch_started(a) && a->at_boundary) {
      int64_t left = (int64_t)a->cfg->batch.max_delay_ms * 1000 - (od_mono_us() - a->opened_at);
      wait_ms = left <= 0 ? 0 : (int)(left / 1000) + 1;
    }
    od_chunk *c = od_queue_pop(a->queue, wait_ms);
    if (!c) {
      if (batch_due(a) && (rc = flush(a))) break;
      if (od_queue_closed(a->queue) && od_queue_empty(a->queue)) break;
      continue;
    }
    if ((rc = take(a, c))) break;
    if (batch_due(a) && (rc = flush(a))) break;
  }
  if (rc == OD_OK && batch_started(a) && a->at_boundary) rc = flush(a);
  if (a->open) {
    /* A partial source transaction (or a failed batch) never reaches the sink. */
    a->sink->ops->rollback(a->sink);
    a->open = false;
  }
  recycle_pending(a);
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

int od_apply_start(od_apply **out, const od_pipeline_config *cfg, const od_apply_options *opt,
                   od_sink *sink, od_queue *queue, od_pipeline_stats *stats, od_error *err) {
  od_apply *a = calloc(1, sizeof *a);
  if (!a) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  a->cfg = cfg;
  a->opt = opt ? *opt : (od_apply_options){.consistency = OD_CONSISTENCY_STRONG, .writers = 1};
  if (a->opt.consistency == OD_CONSISTENCY_STRONG || a->opt.writers < 1) a->opt.writers = 1;
  a->sink = sink;
  a->queue = queue;
  a->stats = stats;
  const od_batch_config *b = &cfg->batch;
  a->limit_rows = (uint64_t)b->max_rows;
  if (b->adaptive) { /* start low; grow while batches fill and the sink keeps up */
    uint64_t start = (uint64_t)b->max_rows / 10;
    a->limit_rows = start > (uint64_t)b->min_rows ? start : (uint64_t)b->min_rows;
  }
  atomic_store(&stats->batch_limit, a->limit_rows);
  if (a->opt.writers > 1) {
    int rc = od_router_init(&a->router, a->opt.writers);
    if (!rc) rc = od_writers_start(&a->writers, sink->ops, cfg, a->opt.writers - 1, err);
    else OD_FAIL(err, rc, "pipeline %s: out of memory", cfg->name);
    if (rc) {
      od_router_free(&a->router);
      free(a);
      return rc;
    }
  }
  if (pthread_create(&a->thread, NULL, apply_main, a) != 0) {
    od_writers_stop(a->writers);
    od_router_free(&a->router);
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
  od_writers_stop(a->writers);
  od_router_free(&a->router);
  free(a);
  return rc;
}
