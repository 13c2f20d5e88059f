/* apply.c — see apply.h. Also keeps the account of where the latency of each committed batch went
 * (stage histograms, core/lathist.h: owned by the od_apply, logged once when its thread ends). */
#include "core/apply.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <time.h>

#include "core/audit.h"
#include "core/lineage.h"
#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "core/breaker.h"
#include "core/clock.h"
#include "core/lathist.h"
#include "core/poison.h"
#include "core/route.h"
#include "core/spool_feed.h"
#include "core/trace.h"
#include "core/writers.h"

struct od_apply {
  const od_pipeline_config *cfg;
  od_apply_env env;
  od_apply_options opt;
  od_sink *sink;       /* the carrier: its commits carry the checkpoint */
  od_queue *queue;
  od_sink_stats *stats;
  bool caught_up;      /* past every transaction the sink held at session start */
  /* The last position committed to the carrier. stats->durable trails it while the sink reports
   * commits durable later (OD_SINK_DEFERRED_DURABILITY); otherwise the two are equal. */
  od_pos committed;
  int64_t committed_at, durable_polled_at; /* monotonic µs of the last commit, of the last poll */
  char mark_key[512];  /* scratch: prefix + relative mark key */
  pthread_t thread;
  atomic_bool failed;
  int rc;
  od_error err;

  /* batch state */
  bool open;           /* a carrier sink transaction is open */
  bool at_boundary;    /* the batch ends at the end of a source transaction */
  od_pos boundary;     /* position of that transaction (or of an idle heartbeat) */
  int64_t commit_time; /* its source commit time */
  uint64_t rows;       /* rows in the batch */
  uint64_t txns;       /* transactions completed in the batch */
  size_t bytes;
  int64_t opened_at;   /* monotonic µs when the batch started */
  int64_t sink_us;     /* time spent in the sink (apply + commit) for the batch */
  uint64_t limit_rows; /* the batch size limit: batch.max_rows, or the adaptive (AIMD) limit */
  uint64_t max_rows;   /* batch.max_rows, or OD_LINGER_ROWS for a lingering batch without one */
  int max_delay_ms;    /* batch.max_delay_ms, or OD_LINGER_DELAY_MS likewise */
  uint64_t tally[OD_PM_NOPS]; /* rows of the batch by operation (metrics) */
  int64_t tr_taken, tr_pushed, tr_popped; /* traces: the batch's first chunk (monotonic µs) */
  uint64_t tr_xid;                        /* traces: the last source transaction id seen */
  struct lat_sample { int64_t commit_time; uint32_t ntxns; } *lat; /* the batch's transactions by chunk */
  size_t nlat, lat_cap;                   /* (end-to-end latency per transaction, observed at commit) */
  char tr_cid_first[129], tr_cid_last[129]; /* traces: correlation ids of the batch (http source) */
  /* Stage account of the batches' first transactions (metrics odsync_stage_latency_seconds, and a
   * line logged at the end with finer percentiles, see log_stages): the
   * source commit time of the first transaction (0: this batch gives no sample) and when the reader
   * took its chunk, on the wall clock. The histograms are owned (NULL when out of memory: no account). */
  int64_t st_commit, st_taken_real;
  od_lathist *stages; /* ST_N */

  /* parallel apply (causal, eventual) */
  od_writers *writers;     /* opt.writers - 1 helpers */
  od_router router;
  od_chunk **pending;      /* chunks of the batch, kept until it is committed */
  size_t npending, pending_cap;
  uint32_t pend_from;      /* the batch starts at this change of pending[0]: the tail of a chunk whose
                              head (complete transactions) an earlier batch applied */
  bool cut_ok;             /* pending[cut_idx] ends a transaction before its own end, and no later
                              pending chunk ends one (chunks are cut every CHUNK_MAX_ROWS rows,
                              mostly inside transactions): the batch may end there; that chunk's tail
                              and the chunks after it start the next batch */
  size_t cut_idx;
  bool serial;             /* a transaction too large for one batch is streaming through the carrier */
  uint64_t helper0, carrier0; /* stats->helper_changes / carrier_changes when this session started */

  /* audit log (core/audit.h): one record per committed batch */
  bool audit;
  od_audit_tally atally;   /* rows per table of the batch */
  char tx_id[32];          /* the sink's transform set id */
  /* spooling (env.spool): the chunks of the open batch, kept until it commits, so a sink failure
   * can replay them to the reopened sink; and that replay, encoded (core/spool_codec.h) */
  od_chunk **held;
  size_t nheld, held_cap, held_bytes;
  bool held_lost;          /* the batch outgrew the queue's bytes: a failure ends the session */
  od_sbuf *replay;
  size_t nreplay, replay_next;
  od_pos floor;            /* the end of the last transaction that passed here: a later chunk's
                              transaction starting before it is a repeat (spool and memory overlap
                              after a restart, a spool read again after a reconnect) */
  bool spool_left;         /* the session ends with spooled chunks unread: they stay for the next */
  od_spool_rels *replay_rels;
};


static bool parallel(const od_apply *a) { return a->writers != NULL; }

/* The stages of a batch's first transaction, from its commit at the source to its commit on the
 * sink: until the reader took a chunk for its first change (the source's commit, its sender);
 * decoded and queued by the reader; waiting in the queue; taken by this writer until the sink
 * commit starts (apply() calls, and the batch waiting for more transactions); the commit. */
enum { ST_TOTAL = OD_PM_NSTAGES, ST_N }; /* the stages are OD_PM_ST_*, then the total */
static const char *const stage_names[ST_N] = {"source", "decode", "queue", "apply", "commit", "total"};

static void note_stages(od_apply *a, int64_t commit_start, int64_t commit_end) {
  if (!a->st_commit) return;
  int64_t us[OD_PM_NSTAGES];
  us[OD_PM_ST_SOURCE] = a->st_taken_real - a->st_commit;
  us[OD_PM_ST_DECODE] = a->tr_pushed - a->tr_taken;
  us[OD_PM_ST_QUEUE] = a->tr_popped - a->tr_pushed;
  us[OD_PM_ST_APPLY] = commit_start - a->tr_popped;
  us[OD_PM_ST_COMMIT] = commit_end - commit_start;
  od_pm_stages(a->stats->metrics, us); /* the same account, as metrics */
  if (!a->stages) return;
  for (int i = 0; i < OD_PM_NSTAGES; i++) od_lathist_add(&a->stages[i], us[i]);
  od_lathist_add(&a->stages[ST_TOTAL], od_now_us() - a->st_commit);
}

/* One line: p50/p95/p99/max in ms of each stage (the bench reads it; so may an operator). */
static void log_stages(const od_apply *a) {
  if (!a->stages || !a->stages[ST_TOTAL].n) return;
  char line[640];
  size_t len = 0;
  for (int i = 0; i < ST_N && len < sizeof line; i++) {
    const od_lathist *h = &a->stages[i];
    int w = snprintf(line + len, sizeof line - len, "%s%s %.2f/%.2f/%.2f/%.2f", i ? ", " : "", stage_names[i],
                     od_lathist_quantile(h, 0.50) / 1000.0, od_lathist_quantile(h, 0.95) / 1000.0,
                     od_lathist_quantile(h, 0.99) / 1000.0, h->max / 1000.0);
    if (w < 0) break;
    len += (size_t)w;
  }
  od_info("pipeline %s: sink %s: head latency by stage of %llu batches' first transactions, p50/p95/p99/max ms: %s",
          a->cfg->name, a->stats->name, (unsigned long long)a->stages[ST_TOTAL].n, line);
}
static bool batch_started(const od_apply *a) { return a->open || a->npending; }

/* Remember the transactions a chunk ends for the latency histogram (observed once committed).
 * The array is reused from batch to batch; on out of memory the sample is dropped (metrics only). */
static void note_latency(od_apply *a, const od_chunk *c) {
  if (!c->ntxns || c->first_commit_time <= 0) return;
  if (a->nlat && a->lat[a->nlat - 1].commit_time == c->first_commit_time) {
    a->lat[a->nlat - 1].ntxns += c->ntxns;
    return;
  }
  if (a->nlat == a->lat_cap) {
    size_t cap = a->lat_cap ? a->lat_cap * 2 : 64;
    struct lat_sample *grown = realloc(a->lat, cap * sizeof *grown);
    if (!grown) return;
    a->lat = grown;
    a->lat_cap = cap;
  }
  a->lat[a->nlat++] = (struct lat_sample){c->first_commit_time, c->ntxns};
}

static void release_held(od_apply *a) {
  for (size_t i = 0; i < a->nheld; i++) od_queue_recycle(a->queue, a->held[i]);
  a->nheld = a->held_bytes = 0;
  a->held_lost = false;
}

#define DURABLE_POLL_US 50000

/* Whether the carrier holds commits it has not yet reported durable. */
static bool durability_pending(const od_apply *a) {
  od_pos d = od_pos_cell_get(&a->stats->durable);
  return a->sink && od_sink_can(a->sink, OD_SINK_DEFERRED_DURABILITY) && od_pos_lt(&d, &a->committed);
}

/* Publish what the carrier now holds durably: every commit, or (deferred durability) what the sink
 * reports; with `poll`, the sink may ask its server. The spool keeps what is not durable yet. */
static int publish_durable(od_apply *a, bool poll) {
  od_pos d = a->committed;
  if (a->sink && od_sink_can(a->sink, OD_SINK_DEFERRED_DURABILITY)) {
    int rc = od_sink_durable(a->sink, poll, &d, &a->err);
    if (rc) return rc;
    od_pos cur = od_pos_cell_get(&a->stats->durable);
    if (od_pos_is_none(&d) || od_pos_le(&d, &cur)) return OD_OK;
    if (od_pos_lt(&a->committed, &d)) d = a->committed;
  }
  if (a->env.spool) od_spool_feed_prune(a->env.spool, &d);
  od_pos_cell_set(&a->stats->durable, &d);
  return OD_OK;
}

static int publish(od_apply *a) {
  int64_t now = od_now_us();
  for (size_t i = 0; i < a->nlat; i++) od_pm_txn_latency(a->stats->metrics, a->lat[i].commit_time, a->lat[i].ntxns, now);
  a->nlat = 0;
  release_held(a);
  a->committed = a->boundary;
  a->committed_at = od_mono_us();
  int rc = publish_durable(a, false);
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
  return rc;
}

/* AIMD on the sink's latency: a batch that took longer than the target halves the limit; a
 * full batch that stayed under it raises the limit by a step. Light load never fills a batch (it
 * closes when the queue is empty), so the limit only grows while throughput needs it. */
static void adapt(od_apply *a) {
  const od_batch_config *b = &a->cfg->batch;
  if (!b->adaptive) return;
  uint64_t lo = (uint64_t)b->min_rows, hi = a->max_rows;
  if (a->sink_us > (int64_t)b->target_latency_ms * 1000) {
    a->limit_rows = a->limit_rows / 2 > lo ? a->limit_rows / 2 : lo;
  } else if (a->rows >= a->limit_rows) {
    uint64_t step = hi / 20 > lo ? hi / 20 : lo;
    a->limit_rows = a->limit_rows + step < hi ? a->limit_rows + step : hi;
  }
  atomic_store(&a->stats->batch_limit, a->limit_rows);
}

/* A sampled batch's timings for the trace exporter (core/trace.h). */
static void trace_batch(od_apply *a, int64_t commit_start, int64_t commit_end) {
  od_trace_batch t = {.decode_start = a->tr_taken, .decode_end = a->tr_pushed, .queue_end = a->tr_popped,
                      .apply_start = a->opened_at, .commit_start = commit_start, .commit_end = commit_end,
                      .rows = a->rows, .txns = a->txns, .xid = a->tr_xid};
  snprintf(t.pipeline, sizeof t.pipeline, "%s", a->cfg->name);
  snprintf(t.sink, sizeof t.sink, "%s", a->stats->name);
  od_pos_to_text(&a->boundary, t.end_pos, sizeof t.end_pos);
  memcpy(t.correlation_first, a->tr_cid_first, sizeof t.correlation_first);
  memcpy(t.correlation_last, a->tr_cid_last, sizeof t.correlation_last);
  od_trace_submit(&t);
}

static int batch_commit(od_apply *a) {
  int64_t t0 = od_mono_us();
  int rc = a->sink->ops->commit(a->sink, &a->boundary, &a->err);
  if (rc) return rc;
  int64_t t1 = od_mono_us();
  if (a->audit) {
    od_pos from = a->committed;
    if (a->rows || a->txns)
      od_audit_batch(a->cfg->name, a->stats->name, a->tx_id, &from, &a->boundary, a->rows, a->txns, &a->atally);
    else
      od_audit_position(a->cfg->name, a->stats->name, "idle", &a->boundary);
  }
  if ((a->rows || a->txns) && a->tr_taken && od_trace_sample()) trace_batch(a, t0, t1);
  if (a->rows || a->txns) note_stages(a, t0, t1);
  a->tr_taken = 0;
  a->st_commit = 0;
  a->tr_cid_first[0] = a->tr_cid_last[0] = '\0';
  a->sink_us += t1 - t0;
  adapt(a);
  od_pm_batch(a->stats->metrics, a->tally, a->txns, a->bytes, a->sink_us, a->commit_time);
  if (a->env.breaker) od_breaker_success(a->env.breaker, t1);
  if (a->env.poison) od_poison_committed(a->env.poison);
  a->sink_us = 0;
  return publish(a);
}

/* A lingering batch does not commit when the queue runs empty: it waits for more rows until one of
 * its limits (batch.linger; auto: as the sink asks, OD_SINK_LINGER). */
static bool lingers(const od_apply *a) {
  int l = a->cfg->batch.linger;
  return l == OD_LINGER_ON || (l == OD_LINGER_AUTO && a->sink && (a->sink->ops->caps & OD_SINK_LINGER));
}

/* The batch reached one of its limits (rows, bytes, delay). */
static bool batch_full(const od_apply *a) {
  return a->rows >= a->limit_rows || a->bytes >= a->cfg->batch.max_bytes ||
         od_mono_us() - a->opened_at >= (int64_t)a->max_delay_ms * 1000;
}

/* The batch holds a complete transaction to end at: its last chunk ends one, or (parallel path) ends
 * one before going on with the next. */
static bool can_end(const od_apply *a) { return a->at_boundary || a->cut_ok; }

static bool batch_due(od_apply *a) {
  if (!batch_started(a) || !can_end(a)) return false;
  /* Work isolated after a row rejection commits on its own: a later rejection rolls back no dead letter. */
  if ((a->env.poison && a->env.poison->in_batch) || batch_full(a)) return true;
  /* A batch that is not lingering commits when the queue runs empty; a lingering one when the
   * source said it is idle since (caught up after a backlog, waiting for the sinks): waiting for
   * max_delay_ms then would only delay the end of a catch-up. */
  return lingers(a) ? od_queue_drained_idle(a->queue, a->env.consumer) : od_queue_empty(a->queue, a->env.consumer);
}

static int open_batch(od_apply *a) {
  if (a->open) return OD_OK;
  int rc = a->sink->ops->begin(a->sink, &a->err);
  if (rc) return rc;
  a->open = true;
  if (!a->npending) a->opened_at = od_mono_us();
  return OD_OK;
}

/* ---- the sink's own skip rule ------------------------------------------------------------- */

/* Whether this sink needs a change: not held at session start, not in its snapshot's copy. Once a
 * change of a transaction past the checkpoint is seen, every later one is too (commit order). */
static bool keep(od_apply *a, const od_change *ch) {
  if (!a->caught_up) {
    if (ch->txn_start && od_pos_lt(ch->txn_start, &a->env.skip_before)) return false;
    a->caught_up = true;
  }
  const od_snapshot_skips *sk = a->env.skips;
  if (sk && sk->n && ch->rel && ch->txn_start && od_pos_lt(ch->txn_start, &sk->max) &&
      od_snapshot_skips_has(sk, ch->rel->schema, ch->rel->name, ch->txn_start))
    return false;
  return true;
}

static bool filtering(const od_apply *a) { return !a->caught_up || (a->env.skips && a->env.skips->n); }

/* Whether the transactions that end in chunk c are all held by the sink already. */
static bool chunk_held(od_apply *a, const od_chunk *c) {
  return !a->caught_up && od_pos_le(&c->end, &a->env.skip_before);
}

static int apply_run(od_apply *a, const od_change *ch, size_t n) {
  if (!n) return OD_OK;
  int64_t t0 = od_mono_us();
  int rc;
  if (a->env.poison && od_poison_isolating(a->env.poison, ch)) { /* after a row rejection: change by change */
    size_t dead;
    rc = od_poison_apply(a->env.poison, a->sink, ch, n, &dead, &a->err);
  } else {
    rc = a->sink->ops->apply(a->sink, ch, n, &a->err);
  }
  a->sink_us += od_mono_us() - t0;
  if (rc) return rc;
  if (parallel(a)) atomic_fetch_add(&a->stats->carrier_changes, n);
  a->rows += n;
  od_pm_tally(a->tally, ch, n);
  if (a->audit) od_audit_tally_add(&a->atally, ch, n);
  return OD_OK;
}

/* Apply changes [from, to) of a chunk, minus what the sink's skip rule drops (in runs). */
static int apply_range(od_apply *a, od_chunk *c, uint32_t from, uint32_t to) {
  if (!filtering(a)) return apply_run(a, c->changes + from, to - from);
  uint32_t run = from;
  for (uint32_t i = from; i < to; i++) {
    if (keep(a, &c->changes[i])) continue;
    int rc = apply_run(a, c->changes + run, i - run);
    if (rc) return rc;
    run = i + 1;
  }
  return apply_run(a, c->changes + run, to - run);
}

/* Marks carried by a chunk (incremental snapshot progress), in the open carrier transaction. Keys
 * in chunks are relative ("isnap/public.t/pos"); the sink's namespace is put in front. */
static int apply_marks(od_apply *a, const od_chunk *c) {
  for (uint32_t i = 0; i < c->nmarks; i++) {
    const od_chunk_mark *m = &c->marks[i];
    snprintf(a->mark_key, sizeof a->mark_key, "%s/%s", a->env.mark_prefix, m->key);
    int rc = m->text ? od_sink_set_text_mark(a->sink, a->mark_key, m->text, &a->err)
                     : od_sink_set_mark(a->sink, a->mark_key, m->value, &a->err);
    if (rc) return od_error_prefix(&a->err, "pipeline %s: ", a->cfg->name);
  }
  return OD_OK;
}

/* An idle position: checkpoint it so the slot can advance past WAL we have no use for. */
static int apply_heartbeat(od_apply *a, const od_chunk *c) {
  if (batch_started(a)) {
    if (a->at_boundary && od_pos_lt(&a->boundary, &c->end)) a->boundary = c->end;
    return OD_OK;
  }
  if (od_pos_le(&c->end, &a->committed)) return OD_OK;
  int rc = open_batch(a);
  if (rc) return rc;
  a->boundary = c->end;
  return batch_commit(a);
}

/* The complete transactions at the head of chunk c (changes before c->boundary, and the marks
 * riding on the last of them) into the carrier's open batch, which may then end there. */
static int apply_head(od_apply *a, od_chunk *c) {
  int rc;
  if ((rc = open_batch(a)) || (rc = apply_range(a, c, 0, c->boundary)) || (rc = apply_marks(a, c))) return rc;
  a->txns += c->ntxns;
  a->at_boundary = true;
  a->boundary = c->end;
  a->commit_time = c->commit_time;
  note_latency(a, c);
  return OD_OK;
}

/* Strong (and serial) path: apply a chunk to the carrier at once. */
static int apply_chunk(od_apply *a, od_chunk *c) {
  int rc;
  /* The complete transactions at the head of the chunk... */
  uint32_t complete = c->ntxns ? c->boundary : 0;
  if (c->ntxns && chunk_held(a, c)) {
    atomic_fetch_add(&a->stats->txns_skipped, c->ntxns);
  } else if (c->ntxns && (rc = apply_head(a, c))) {
    return rc;
  }
  /* ...then the start of a transaction that continues in later chunks. It begins in a sink
   * transaction of its own, so stopping before its end loses no complete transaction — except in
   * a lingering batch (a sink whose every write costs, OD_SINK_LINGER): committing here would cut
   * the batch at nearly every chunk when transactions straddle chunks (a backlog of 1000-row
   * transactions gave 2000-row ClickHouse inserts); there a stop in the middle of a transaction
   * rolls the batch back and the next session replays its complete transactions from the
   * checkpoint (never acknowledged, so nothing is lost). A lingering batch that reached its limits
   * does commit here, at its last complete transaction: chunks are cut every CHUNK_MAX_ROWS rows,
   * mostly inside transactions, so a chunk that ends at a commit is rare and batches would
   * otherwise outgrow batch.max_rows by far (100,000-row inserts with max_rows 50,000). */
  if (complete < c->nchanges) {
    const od_change *first = &c->changes[complete];
    if (filtering(a) && !a->caught_up && first->txn_start && od_pos_lt(first->txn_start, &a->env.skip_before))
      return OD_OK; /* a transaction the sink holds */
    if (a->open && a->at_boundary && (!lingers(a) || batch_full(a)) && (rc = batch_commit(a))) return rc;
    if ((rc = open_batch(a)) || (rc = apply_range(a, c, complete, c->nchanges))) return rc;
    a->at_boundary = false;
  }
  a->bytes += od_chunk_bytes(c);
  return OD_OK;
}

static void recycle_pending(od_apply *a) {
  for (size_t i = 0; i < a->npending; i++) od_queue_recycle(a->queue, a->pending[i]);
  a->npending = 0;
}

/* A transaction outgrew the batch: apply what is pending through the carrier and stream the
 * rest of that transaction the strong way (memory stays bounded). */
static int go_serial(od_apply *a) {
  a->rows = a->txns = 0;
  memset(a->tally, 0, sizeof a->tally);
  od_audit_tally_reset(&a->atally);
  a->bytes = 0;
  a->at_boundary = false;
  a->serial = true;
  a->cut_ok = false;
  int rc = OD_OK;
  for (size_t i = 0; i < a->npending && !rc; i++) {
    od_chunk *c = a->pending[i];
    if (i == 0 && a->pend_from) { /* a tail: the start of a transaction, its head already committed */
      if (!(rc = open_batch(a)) && !(rc = apply_range(a, c, a->pend_from, c->nchanges))) {
        a->at_boundary = false;
        a->bytes += od_chunk_bytes(c);
      }
    } else {
      rc = apply_chunk(a, c);
    }
  }
  a->pend_from = 0;
  recycle_pending(a);
  return rc;
}

/* Room for one more pending chunk; OD_ENOMEM (with c recycled) when there is none. */
static int pending_room(od_apply *a, od_chunk *c) {
  if (a->npending < a->pending_cap) return OD_OK;
  size_t cap = a->pending_cap ? a->pending_cap * 2 : 64;
  od_chunk **grown = realloc(a->pending, cap * sizeof *grown);
  if (!grown) {
    od_queue_recycle(a->queue, c);
    return OD_FAIL(&a->err, OD_ENOMEM, "pipeline %s: out of memory", a->cfg->name);
  }
  a->pending = grown;
  a->pending_cap = cap;
  return OD_OK;
}

/* What is pending (from change `from` of pending[0]: the start of a transaction later chunks
 * complete, and whole chunks of it after) begins the next parallel batch. */
static void restart_pending(od_apply *a, uint32_t from) {
  a->pend_from = from;
  a->rows = 0;
  a->bytes = 0;
  for (size_t i = 0; i < a->npending; i++) {
    a->rows += a->pending[i]->nchanges - (i ? 0 : from);
    a->bytes += od_chunk_bytes(a->pending[i]);
  }
  a->at_boundary = false;
  a->cut_ok = false;
  a->opened_at = od_mono_us();
}

/* Parallel path: keep the chunk for the batch. Takes the loan of c. */
static int collect(od_apply *a, od_chunk *c) {
  if (c->ntxns && chunk_held(a, c) && c->boundary == c->nchanges) { /* nothing in it for this sink */
    atomic_fetch_add(&a->stats->txns_skipped, c->ntxns);
    od_queue_recycle(a->queue, c);
    return OD_OK;
  }
  int rc = pending_room(a, c);
  if (rc) return rc;
  if (!a->npending) a->opened_at = od_mono_us();
  a->pending[a->npending++] = c;
  a->rows += c->nchanges;
  a->bytes += od_chunk_bytes(c);
  if (c->ntxns && !chunk_held(a, c)) {
    a->txns += c->ntxns;
    a->boundary = c->end;
    a->commit_time = c->commit_time;
    note_latency(a, c);
  }
  a->at_boundary = c->ends_txn;
  if (c->ends_txn) {
    a->cut_ok = false;
  } else if (c->ntxns) {
    a->cut_ok = true;
    a->cut_idx = a->npending - 1;
  }
  const od_batch_config *b = &a->cfg->batch;
  if (!can_end(a) && (a->rows >= 4 * a->max_rows || a->bytes >= b->max_bytes)) return go_serial(a);
  return OD_OK;
}

static bool route_keep(void *ctx, const od_change *ch) { return keep(ctx, ch); }

/* Apply the pending batch over every writer. The helpers apply and commit first (their work is
 * idempotent); only then does the carrier apply the serial work and commit with the checkpoint.
 * The carrier never holds locks (its DDL, its rows) while helpers wait on them.
 * The batch ends at its last complete transaction: the end of its last chunk, or (cut_ok) the last
 * transaction end inside pending[cut_idx]; then that chunk's tail and the chunks after it (the
 * start of a transaction later chunks complete) begin the next batch. */
static int run_parallel(od_apply *a) {
  if (!can_end(a)) return OD_OK;
  int64_t t0 = od_mono_us();
  size_t last = a->at_boundary ? a->npending - 1 : a->cut_idx;
  od_chunk *cut = a->at_boundary ? NULL : a->pending[last];
  uint32_t to = cut ? cut->boundary : OD_ROUTE_ALL;
  /* A small batch (the head of a stream: a few transactions per commit) is not split: the helpers'
   * commits and then the carrier's would be two sink commits in a row, one more flush of latency
   * for no gain. The carrier applies it whole, as strong would (stronger than what causal and
   * eventual promise, and atomic with the checkpoint). */
  /* What the batch holds, exactly (collect counted whole chunks). */
  a->rows = 0;
  for (size_t i = 0; i <= last; i++) {
    const od_chunk *c = a->pending[i];
    uint32_t from, end;
    od_route_span(a->pending, last + 1, i, a->pend_from, to, &from, &end);
    a->rows += end - from;
    od_pm_tally(a->tally, c->changes + from, end - from);
    if (a->audit) od_audit_tally_add(&a->atally, c->changes + from, end - from);
  }
  int mode = a->rows < a->opt.parallel_min_rows            ? OD_ROUTE_CARRIER
             : a->opt.consistency == OD_CONSISTENCY_CAUSAL ? OD_ROUTE_CAUSAL
                                                          : OD_ROUTE_EVENTUAL;
  int rc = od_route_batch(&a->router, mode, a->pending, last + 1, a->pend_from, to,
                          filtering(a) ? route_keep : NULL, a, &a->err);
  if (rc) return rc;
  for (int w = 1; w < a->router.nwriters; w++) atomic_fetch_add(&a->stats->helper_changes, a->router.counts[w]);
  atomic_fetch_add(&a->stats->carrier_changes, a->router.counts[0]);
  od_writers_run(a->writers, a->router.lists + 1, a->router.counts + 1);
  rc = od_writers_wait(a->writers, &a->err);
  if (!rc) rc = open_batch(a);
  if (!rc && a->router.counts[0])
    rc = a->sink->ops->apply(a->sink, a->router.lists[0], a->router.counts[0], &a->err);
  /* marks ride on the chunk that ends their transaction: a tail's were applied with its head */
  for (size_t i = a->pend_from ? 1 : 0; i <= last && !rc; i++)
    if (!chunk_held(a, a->pending[i])) rc = apply_marks(a, a->pending[i]);
  a->sink_us += od_mono_us() - t0;
  if (!rc && a->txns == 0) { /* every transaction was held: nothing to checkpoint */
    a->sink->ops->rollback(a->sink);
    a->open = false;
    a->rows = a->txns = 0;
    a->bytes = 0;
    od_audit_tally_reset(&a->atally);
    memset(a->tally, 0, sizeof a->tally);
  } else if (!rc) {
    rc = batch_commit(a);
  }
  if (rc) return rc;
  size_t keep = cut ? last : a->npending; /* the cut chunk stays for its tail, the later ones whole */
  for (size_t i = 0; i < keep; i++) od_queue_recycle(a->queue, a->pending[i]);
  a->npending -= keep;
  memmove(a->pending, a->pending + keep, a->npending * sizeof *a->pending);
  a->pend_from = 0;
  a->cut_ok = false;
  if (cut) restart_pending(a, to);
  return OD_OK;
}

/* Serial mode (go_serial) lasts as long as the transaction that caused it. When that transaction
 * ends inside chunk c and another begins there, the end goes to the carrier and commits, and the
 * rest of the chunk starts a parallel batch again. (Before, serial mode ended only at a batch that
 * ended with its chunk, which a backlog of transactions straddling chunks almost never has: every
 * later change went through the carrier.) Not when the next transaction is being isolated after a
 * row rejection (it stays serial). */
static bool serial_ends_in(od_apply *a, const od_chunk *c) {
  od_poison *pz = a->env.poison;
  return parallel(a) && a->serial && c->ntxns && c->boundary < c->nchanges && !chunk_held(a, c) &&
         !(pz && od_poison_isolating(pz, &c->changes[c->boundary]));
}

static int flush(od_apply *a);

static int end_serial(od_apply *a, od_chunk *c) {
  int rc = apply_head(a, c);
  if (rc || (rc = flush(a))) { /* flush commits the carrier's batch: serial mode ends */
    od_queue_recycle(a->queue, c);
    return rc;
  }
  if ((rc = pending_room(a, c))) return rc; /* (c recycled) */
  a->pending[a->npending++] = c;
  restart_pending(a, c->boundary);
  return OD_OK;
}

static int flush(od_apply *a) {
  if (parallel(a) && a->npending) return run_parallel(a);
  int rc = batch_commit(a);
  if (!rc) a->serial = false;
  return rc;
}

/* Keep a chunk of the open batch (spooling only), or recycle it. */
static void hold(od_apply *a, od_chunk *c, bool failed) {
  if (!a->env.spool || parallel(a) || a->held_lost || (!batch_started(a) && !failed)) {
    od_queue_recycle(a->queue, c);
    return;
  }
  if (a->nheld == a->held_cap) {
    size_t cap = a->held_cap ? a->held_cap * 2 : 16;
    od_chunk **g = realloc(a->held, cap * sizeof *g);
    if (!g) {
      release_held(a);
      a->held_lost = true;
      od_queue_recycle(a->queue, c);
      return;
    }
    a->held = g;
    a->held_cap = cap;
  }
  a->held[a->nheld++] = c;
  a->held_bytes += od_chunk_bytes(c);
  if (a->held_bytes > a->cfg->queue.max_bytes) { /* a huge transaction: memory first */
    release_held(a);
    a->held_lost = true;
  }
}

/* Repeats: transactions that start before the floor were applied (or skipped) already. */
static void check_floor(od_apply *a, const od_chunk *c) {
  if (od_pos_is_none(&a->floor)) return;
  for (uint32_t i = 0; i < c->nchanges; i++) {
    const od_pos *start = c->changes[i].txn_start;
    if (!start) continue;
    if (od_pos_lt(start, &a->floor)) {
      if (od_pos_lt(&a->env.skip_before, &a->floor)) a->env.skip_before = a->floor;
      a->caught_up = false;
    }
    return;
  }
}

static int take(od_apply *a, od_chunk *c) {
  int rc;
  if (!c->heartbeat) {
    check_floor(a, c);
    if (c->ntxns && od_pos_lt(&a->floor, &c->end)) a->floor = c->end;
  }
  if (!c->heartbeat && !a->tr_taken) { /* the batch's first chunk: its decode and queue wait (traces) */
    a->tr_taken = c->taken_us;
    a->tr_pushed = c->pushed_us;
    a->tr_popped = od_mono_us();
    a->st_commit = 0;
    if (!c->from_spool && c->ntxns && c->first_commit_time > 0 && c->pushed_us && c->taken_us) {
      a->st_commit = c->first_commit_time;
      a->st_taken_real = od_now_us() - (a->tr_popped - c->taken_us);
    }
  }
  if (c->ntxns) a->tr_xid = c->xid;
  od_poison *pz = a->env.poison;
  if (pz && c->nchanges && c->changes[c->nchanges - 1].txn_start)
    pz->last_seen = *c->changes[c->nchanges - 1].txn_start; /* what a row rejection may be in */
  if (c->nchanges && c->changes[0].correlation_id) { /* sources that carry ids set them on every change */
    if (!a->tr_cid_first[0]) snprintf(a->tr_cid_first, sizeof a->tr_cid_first, "%s", c->changes[0].correlation_id);
    const char *last = c->changes[c->nchanges - 1].correlation_id;
    if (last) snprintf(a->tr_cid_last, sizeof a->tr_cid_last, "%s", last);
  }
  if (c->heartbeat) {
    rc = apply_heartbeat(a, c);
    od_queue_recycle(a->queue, c);
    return rc;
  }
  if (serial_ends_in(a, c)) return end_serial(a, c);
  if (parallel(a) && !a->serial) {
    /* Transactions isolated after a row rejection take the serial path, change by change. */
    if (!(pz && c->nchanges && od_poison_isolating(pz, &c->changes[0]))) return collect(a, c);
    if ((rc = go_serial(a))) {
      od_queue_recycle(a->queue, c);
      return rc;
    }
  }
  rc = apply_chunk(a, c);
  hold(a, c, rc != OD_OK);
  return rc;
}

/* ---- spooling: the next chunk, and surviving a sink failure ------------------------------------ */

/* The next chunk for this sink: the replay of a failed batch, then its spool, then memory. NULL
 * with OD_OK when nothing is ready within wait_ms. */
static int next_chunk(od_apply *a, int wait_ms, od_chunk **out) {
  *out = NULL;
  if (a->replay_next < a->nreplay) {
    od_sbuf *b = &a->replay[a->replay_next++];
    od_chunk *c = od_queue_take_free(a->queue);
    if (!c) return OD_FAIL(&a->err, OD_ENOMEM, "pipeline %s: out of memory", a->cfg->name);
    int rc = od_spool_decode(b->data, b->len, 0, a->replay_rels, c, &a->err);
    od_sbuf_free(b);
    if (rc) {
      od_queue_recycle(a->queue, c);
      return rc;
    }
    *out = c;
    return OD_OK;
  }
  bool spooled = false;
  od_chunk *c = od_queue_pop_or_spool(a->queue, a->env.consumer, wait_ms, &spooled);
  if (spooled && od_queue_closed(a->queue)) { /* stopping: the spool keeps the rest for the next session */
    a->spool_left = true;
    return OD_OK;
  }
  if (spooled) return od_spool_feed_read(a->env.spool, a->queue, out, &a->err);
  *out = c;
  return OD_OK;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A retriable sink failure with a spool: keep the uncommitted batch (encoded), close the sink,
 * reopen it with backoff while the reader spools for it, and restart from its checkpoint. OD_OK
 * when the sink is back; OD_ECANCELLED when the session ended meanwhile. */
static int reconnect(od_apply *a) {
  od_error first = a->err;
  if (a->open && a->sink) a->sink->ops->rollback(a->sink);
  a->open = false;
  /* The failed batch goes back in front of what the sink reads next: into its spool when it can
   * (durable: the source may be acknowledged past it), else kept in memory (encoded). */
  size_t keep = a->nreplay - a->replay_next;
  od_pos durable = od_pos_cell_get(&a->stats->durable);
  int rq = keep ? OD_AGAIN : od_spool_feed_requeue(a->env.spool, a->queue, a->held, a->nheld, &durable, &a->err);
  if (rq != OD_OK && rq != OD_AGAIN) return rq;
  if (rq == OD_OK) release_held(a);
  od_sbuf *list = calloc(a->nheld + keep + 1, sizeof *list);
  if (!list) return OD_FAIL(&a->err, OD_ENOMEM, "pipeline %s: out of memory", a->cfg->name);
  size_t n = 0;
  for (size_t i = 0; i < a->nheld; i++) {
    if (od_spool_encode(a->held[i], 0, &list[n])) {
      for (size_t k = 0; k <= n; k++) od_sbuf_free(&list[k]);
      free(list);
      return OD_FAIL(&a->err, OD_ENOMEM, "pipeline %s: out of memory", a->cfg->name);
    }
    n++;
  }
  for (size_t i = a->replay_next; i < a->nreplay; i++) list[n++] = a->replay[i];
  free(a->replay);
  a->replay = list;
  a->nreplay = n;
  a->replay_next = 0;
  release_held(a);
  a->rows = a->txns = 0;
  a->bytes = 0;
  a->commit_time = 0;
  a->at_boundary = false;
  memset(a->tally, 0, sizeof a->tally);
  a->nlat = 0; /* the replayed batch counts its transactions again */
  od_audit_tally_reset(&a->atally);
  a->tr_taken = 0;
  a->st_commit = 0;
  atomic_store(&a->stats->down, true);
  od_queue_spill_eager(a->queue, a->env.consumer, true);
  od_spool *spool = od_spool_feed_spool(a->env.spool);
  od_error ferr;
  if (od_spool_write_held(spool, &durable, &ferr)) od_warn("%s", ferr.msg); /* a restart meanwhile then waits for the sink */
  if (a->sink) a->sink->ops->close(a->sink);
  a->sink = NULL;
  *a->env.sink_home = NULL;
  long backoff = 200;
  od_warn("pipeline %s: sink %s: %s; the other sinks go on, this one's changes go to its spool (%s) and it "
          "reconnects", a->cfg->name, a->stats->name, first.msg, od_spool_dir(spool));
  for (;;) {
    for (long waited = 0; waited < backoff; waited += 50) {
      if (od_queue_closed(a->queue)) return OD_FAIL(&a->err, OD_ECANCELLED, "pipeline %s: stopping", a->cfg->name);
      sleep_ms(50);
    }
    od_sink *sink = NULL;
    od_error err;
    od_pos ck;
    int rc = a->env.open_writer(a->env.open_ctx, &sink, &err);
    if (!rc && (rc = sink->ops->read_position(sink, &ck, &err))) sink->ops->close(sink);
    if (!rc && (rc = od_spool_clear_held(spool, &err))) { /* before the sink commits again */
      sink->ops->close(sink);
      a->err = err;
      return rc;
    }
    if (!rc) {
      a->sink = sink;
      *a->env.sink_home = sink;
      a->env.skip_before = ck;
      a->floor = ck;
      a->caught_up = od_pos_is_none(&ck);
      a->committed = ck;
      od_pos_cell_set(&a->stats->durable, &ck);
      atomic_store(&a->stats->down, false);
      od_queue_spill_eager(a->queue, a->env.consumer, false);
      char at[OD_POS_TEXT_MAX];
      od_info("pipeline %s: sink %s is back at %s; draining its spool", a->cfg->name, a->stats->name,
              od_pos_display(&ck, at, sizeof at));
      return OD_OK;
    }
    if (!err.retriable) {
      a->err = err;
      return rc;
    }
    backoff = backoff * 2 > a->cfg->reconnect_max_ms ? a->cfg->reconnect_max_ms : backoff * 2;
    if (backoff > 5000) backoff = 5000; /* a spooling sink comes back soon after its server */
    od_debug("pipeline %s: sink %s still down: %s", a->cfg->name, a->stats->name, err.msg);
  }
}

/* In place, the sink restarts from its checkpoint with what is kept here and in its spool; commits
 * not yet durable are in neither (the source still has them: a new session reads them again). */
static bool can_reconnect(const od_apply *a, int rc) {
  return rc && a->env.spool && a->err.retriable && !parallel(a) && !a->held_lost && !a->serial && a->env.sink_home &&
         a->env.open_writer && !od_queue_closed(a->queue) && !durability_pending(a);
}

static void *apply_main(void *arg) {
  od_apply *a = arg;
  od_log_set_thread_pipeline(a->cfg->name);
  int rc = OD_OK;
  if (!a->sink) { /* unreachable when the session started (the pipeline used its spool's `held`) */
    rc = OD_FAIL_RETRY(&a->err, OD_ECONNECT, "pipeline %s: sink %s was unreachable when the session started",
                       a->cfg->name, a->stats->name);
    if (!can_reconnect(a, rc) || (rc = reconnect(a)) != OD_OK) {
      if (rc == OD_ECANCELLED && od_queue_closed(a->queue)) rc = OD_OK;
      goto done;
    }
  }
  for (;;) {
    int wait_ms = durability_pending(a) ? DURABLE_POLL_US / 1000 : 100;
    if (batch_started(a) && can_end(a)) {
      int64_t left = (int64_t)a->max_delay_ms * 1000 - (od_mono_us() - a->opened_at);
      wait_ms = left <= 0 ? 0 : (int)(left / 1000) + 1;
    }
    od_chunk *c = NULL;
    if (!(rc = next_chunk(a, wait_ms, &c))) {
      if (!c) {
        if (batch_due(a) && (rc = flush(a))) goto failed;
        /* Nothing to commit for a while: ask the sink how far its commits are durable (at most
         * every DURABLE_POLL_US; under load every commit brings that news without asking). */
        int64_t now = od_mono_us();
        if (!batch_started(a) && durability_pending(a) && now - a->committed_at >= DURABLE_POLL_US &&
            now - a->durable_polled_at >= DURABLE_POLL_US) {
          a->durable_polled_at = now;
          if ((rc = publish_durable(a, true))) goto failed;
        }
        if (od_queue_closed(a->queue) && a->replay_next >= a->nreplay &&
            (a->spool_left || od_queue_empty(a->queue, a->env.consumer)))
          break;
        continue;
      }
      if ((rc = take(a, c))) goto failed;
      if (batch_due(a) && (rc = flush(a))) goto failed;
      continue;
    }
  failed:
    if (can_reconnect(a, rc) && (rc = reconnect(a)) == OD_OK) continue;
    if (rc == OD_ECANCELLED && od_queue_closed(a->queue) && !a->sink) rc = OD_OK; /* stopped while down */
    break;
  }
done:
  if (rc == OD_OK && a->sink && batch_started(a) && can_end(a)) rc = flush(a);
  /* A clean end acknowledges what the sink holds durably by now (the rest: the next session). */
  if (rc == OD_OK && !batch_started(a) && durability_pending(a)) rc = publish_durable(a, true);
  if (rc == OD_OK && a->audit) { /* a clean end: the last position, idle advances included */
    od_pos last = od_pos_cell_get(&a->stats->durable);
    od_audit_position(a->cfg->name, a->stats->name, "checkpoint", &last);
  }
  if (a->open && a->sink) {
    /* A partial source transaction (or a failed batch) never reaches the sink. */
    a->sink->ops->rollback(a->sink);
    a->open = false;
    if (a->env.poison) od_poison_discarded(a->env.poison);
  }
  recycle_pending(a);
  release_held(a);
  log_stages(a);
  uint64_t by_helpers = atomic_load(&a->stats->helper_changes) - a->helper0,
           by_carrier = atomic_load(&a->stats->carrier_changes) - a->carrier0;
  if (parallel(a) && (by_helpers || by_carrier))
    od_info("pipeline %s: sink %s: %llu changes applied by the %d helper writers, %llu by the carrier (the serial "
            "work: keyless tables, key changes, truncates, transactions larger than a batch, batches below "
            "apply_parallel_min_rows)",
            a->cfg->name, a->stats->name, (unsigned long long)by_helpers, a->opt.writers - 1,
            (unsigned long long)by_carrier);
  if (rc) {
    if (a->env.poison && od_poison_on_failure(a->env.poison, &a->err))
      od_error_prefix(&a->err, "row rejected; the next session applies this batch change by change to find it: ");
    od_error_prefix(&a->err, "sink %s: ", a->stats->name);
    a->rc = rc;
    atomic_store(&a->failed, true);
    /* Unblock the reader and discard what this sink can no longer apply in this session; the
     * other sinks of the pipeline drain what is complete and stop too. */
    od_queue_close(a->queue);
    od_chunk *c;
    while ((c = od_queue_pop(a->queue, a->env.consumer, 0))) od_queue_recycle(a->queue, c);
  }
  return NULL;
}

static int open_one_writer(void *ctx, od_sink **out, od_error *err) {
  od_apply *a = ctx;
  return a->env.open_writer(a->env.open_ctx, out, err);
}

int od_apply_start(od_apply **out, const od_apply_env *env, od_error *err) {
  const od_pipeline_config *cfg = env->cfg;
  od_apply *a = calloc(1, sizeof *a);
  if (!a) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  a->cfg = cfg;
  a->env = *env;
  a->opt = env->opt;
  if (a->opt.consistency == OD_CONSISTENCY_STRONG || a->opt.writers < 1 || !env->open_writer) a->opt.writers = 1;
  a->sink = env->sink;
  a->queue = env->queue;
  a->stats = env->stats;
  a->caught_up = od_pos_is_none(&env->skip_before);
  a->floor = env->skip_before;
  a->committed = od_pos_cell_get(&env->stats->durable);
  a->helper0 = atomic_load(&a->stats->helper_changes);
  a->carrier0 = atomic_load(&a->stats->carrier_changes);
  if (env->spool && !(a->replay_rels = od_spool_rels_new())) {
    free(a);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  }
  const od_batch_config *b = &cfg->batch;
  a->max_rows = (uint64_t)b->max_rows;
  a->max_delay_ms = b->max_delay_ms;
  if (lingers(a) && (!b->max_rows_set || !b->max_delay_set)) {
    /* A sink that lingers wants few large writes: the SQL sinks' defaults (5000 rows, 20 ms)
     * would make ClickHouse a part every 20 ms. */
    if (!b->max_rows_set) a->max_rows = OD_LINGER_ROWS;
    if (!b->max_delay_set) a->max_delay_ms = OD_LINGER_DELAY_MS;
    od_info("pipeline %s: sink %s: batches of up to %llu rows or %d ms (a sink that takes few large writes; "
            "batch.max_rows and batch.max_delay_ms change it)", cfg->name, a->stats->name,
            (unsigned long long)a->max_rows, a->max_delay_ms);
  }
  a->limit_rows = a->max_rows;
  if (b->adaptive) { /* start low; grow while batches fill and the sink keeps up */
    uint64_t start = a->max_rows / 10;
    a->limit_rows = start > (uint64_t)b->min_rows ? start : (uint64_t)b->min_rows;
  }
  atomic_store(&a->stats->batch_limit, a->limit_rows);
  if ((a->audit = od_audit_enabled())) {
    snprintf(a->tx_id, sizeof a->tx_id, "none");
    for (int i = 0; i < cfg->nsinks; i++)
      if (!strcmp(cfg->sinks[i].name, a->stats->name)) od_lineage_transforms_id(cfg, &cfg->sinks[i], a->tx_id, sizeof a->tx_id);
  }
  if (a->opt.writers > 1) {
    int rc = od_router_init(&a->router, a->opt.writers);
    if (!rc) rc = od_writers_start(&a->writers, open_one_writer, a, cfg, a->opt.writers - 1, err);
    else OD_FAIL(err, rc, "pipeline %s: out of memory", cfg->name);
    if (rc) {
      od_router_free(&a->router);
      free(a);
      return rc;
    }
  }
  a->stages = calloc(ST_N, sizeof *a->stages); /* NULL: no stage account (nothing else depends on it) */
  if (pthread_create(&a->thread, NULL, apply_main, a) != 0) {
    od_writers_stop(a->writers);
    od_router_free(&a->router);
    free(a->stages);
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
  free(a->pending);
  free(a->lat);
  free(a->stages);
  free(a->held);
  for (size_t i = a->replay_next; i < a->nreplay; i++) od_sbuf_free(&a->replay[i]);
  free(a->replay);
  od_spool_rels_free(a->replay_rels);
  od_audit_tally_free(&a->atally);
  free(a);
  return rc;
}
