/* pipeline.c — see pipeline.h. The reader side (source -> chunks -> queue) and the supervisor
 * loop live here; the apply side (queue -> one sink, checkpoint) lives in apply.c, one per sink. */
#include "core/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/apply.h"
#include "core/backoff.h"
#include "core/breaker.h"
#include "core/error_class.h"
#include "core/isnap.h"
#include "core/log.h"
#include "core/pipeline_metrics.h"
#include "core/poison.h"
#include "core/queue.h"
#include "common/seal.h"
#include "core/audit.h"
#include "core/governance.h"
#include "core/schema.h"
#include "core/snapshot.h"
#include "core/spool_feed.h"
#include "core/targets.h"
#include "core/transform.h"
#include "odsync/registry.h"

/* A chunk is handed to the queue when it reaches either size, or when the source has nothing
 * more to deliver right now and the chunk ends at a transaction boundary. */
#define CHUNK_MAX_ROWS 2048
#define CHUNK_MAX_BYTES (4u << 20)
#define HEARTBEAT_MIN_INTERVAL_US 1000000
#define SOURCE_QUIET_US 20000 /* an idle source: nothing pushed for this long (reader_idle) */
#define POLL_TIMEOUT_MS 100
/* Connection failures before a pipeline's first session ever got through: then it stops. */
#define OD_FIRST_CONNECT_ATTEMPTS 8

/* One sink of the pipeline, as configured (lives as long as the pipeline). */
typedef struct psink {
  const od_sink_config *cfg;
  const od_sink_ops *ops;
  char name[128]; /* checkpoint row and mark namespace: "<pipeline>" for the default sink, else
                     "<pipeline>.<sink>" */
  od_apply_options apply_opt;
  od_poison poison;   /* poison-row isolation (core/poison.h); used when the sink has OD_SINK_DEAD_LETTERS */
  od_breaker breaker; /* its circuit breaker (core/breaker.h) */
} psink;

struct od_pipeline {
  const od_config *root;
  const od_pipeline_config *cfg;
  const od_source_ops *source_ops;
  psink sinks[OD_SINKS_MAX];
  int nsinks;
  long reconnect_max_ms;

  pthread_t thread;
  bool thread_started;
  atomic_bool stop;
  atomic_bool finished;
  int lock_fd;
  char lock_path[4096];
  int64_t lock_checked_at; /* od_mono_us of the last lock_check (supervisor thread only) */

  od_pipeline_stats stats;
  bool poison_restart; /* this session follows a poison-row restart (supervisor thread only) */
  od_keyring *kr; /* encryption at rest (`encryption:`), or NULL; owned */
  od_spool_feed *spools[OD_SINKS_MAX]; /* this session's spools (several sinks), NULL per sink without */
  od_pos acked_max; /* the most durable_of ever returned: with spools the least coverage can dip (a new
                       episode's base above a sink that has not committed its last heartbeat), while
                       what was covered stays covered (segments go only once the sink holds them) */
  od_error final_err;
  int final_rc;
};

/* One sink in one session. */
typedef struct sink_run {
  od_pipeline *p;
  psink *ps;
  int idx;
  od_sink *sink; /* the chain: transforms in front of the adapter */
  od_apply *apply;
  od_pos start;  /* its checkpoint when the session started (after its initial snapshot) */
  od_pos resume; /* where the stream continues it: start, or past what its spool holds */
  bool deferred;  /* unreachable at session start: its spool's `held` may stand in for its checkpoint */
  od_error open_err;
  od_snapshot_skips skips;
} sink_run;

/* State of the reader for one session: the chunk being filled and the skip rule. */
typedef struct reader {
  od_pipeline *p;
  od_source *source;
  od_queue *queue;
  sink_run *runs;
  int nruns;
  od_schema *schema;
  od_chunk *cur;
  od_pos skip_before;   /* transactions that start before this are in every sink */
  bool skipping;
  od_pos txn_start;     /* start of the transaction being read */
  const od_pos *cur_start; /* its copy in the current chunk's arena (NULL: not copied yet) */
  od_pos last_heartbeat;
  int64_t last_heartbeat_at;
  od_isnap *isnap; /* incremental snapshots (core/isnap.h), or NULL */
} reader;

const char *od_pipeline_name(const od_pipeline *p) { return p->cfg->name; }
void od_pipeline_set_paused(od_pipeline *p, bool paused) { atomic_store(&p->stats.paused, paused ? 1 : 0); }
const od_pipeline_config *od_pipeline_config_of(const od_pipeline *p) { return p->cfg; }
od_pipeline_stats *od_pipeline_get_stats(od_pipeline *p) { return &p->stats; }
bool od_pipeline_finished(od_pipeline *p) {
  /* A pipeline asked to stop before it was started is finished too. */
  return atomic_load(&p->finished) || (!p->thread_started && atomic_load(&p->stop));
}
void od_pipeline_request_stop(od_pipeline *p) { atomic_store(&p->stop, true); }

/* The least value of one counter over the sinks (the slowest sink's view). */
static uint64_t least_over_sinks(od_pipeline_stats *st, size_t offset) {
  uint64_t least = UINT64_MAX;
  for (int i = 0; i < st->nsinks; i++) {
    uint64_t v = atomic_load((_Atomic uint64_t *)((char *)&st->sinks[i] + offset));
    if (v < least) least = v;
  }
  return st->nsinks ? least : 0;
}

uint64_t od_stats_changes_applied(od_pipeline_stats *st) {
  return least_over_sinks(st, offsetof(od_sink_stats, changes_applied));
}

uint64_t od_stats_txns_applied(od_pipeline_stats *st) { return least_over_sinks(st, offsetof(od_sink_stats, txns_applied)); }

int64_t od_stats_last_lag_us(od_pipeline_stats *st) {
  int64_t most = 0;
  for (int i = 0; i < st->nsinks; i++) {
    int64_t v = atomic_load(&st->sinks[i].last_lag_us);
    if (v > most) most = v;
  }
  return most;
}

static int find_adapters(const od_pipeline_config *cfg, const od_source_ops **src, const od_sink_ops **snk,
                         od_error *err) {
  *src = od_source_find(cfg->source.type);
  if (!*src)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.type '%s' is not a known source (known: %s)",
                   cfg->source.file, cfg->source.line, cfg->source.col, cfg->source.path,
                   cfg->source.type ? cfg->source.type : "", od_source_types());
  for (int i = 0; i < cfg->nsinks; i++) {
    const od_config_section *s = &cfg->sinks[i].section;
    snk[i] = od_sink_find(s->type);
    if (!snk[i])
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.type '%s' is not a known sink (known: %s)", s->file, s->line,
                     s->col, s->path, s->type ? s->type : "", od_sink_types());
    int rc = od_sink_ops_check(snk[i], err);
    if (rc) return rc;
    if (cfg->on_poison == OD_POISON_DEAD_LETTER && !(snk[i]->caps & OD_SINK_DEAD_LETTERS))
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: on_poison: dead_letter needs a sink that keeps dead letters "
                     "in its own transactions (sqlite, postgres); the %s sink cannot: use on_poison: stop",
                     s->file, s->line, s->col, s->path, snk[i]->type);
  }
  return OD_OK;
}

static void sink_name(const od_pipeline_config *cfg, const od_sink_config *sk, char *out, size_t size) {
  if (!strcmp(sk->name, "default"))
    snprintf(out, size, "%s", cfg->name);
  else
    snprintf(out, size, "%s.%s", cfg->name, sk->name);
}

/* The checks of od_pipeline_new; the keyring is returned when kr is not NULL. */
static int validate(const od_config *root, const od_pipeline_config *cfg, const od_source_ops **src,
                    const od_sink_ops **snk, od_keyring **kr, od_error *err) {
  int rc = find_adapters(cfg, src, snk, err);
  if (rc) return rc;
  /* Validate the source section and every transform now, so a bad key fails before anything starts. */
  od_source *s = NULL;
  rc = (*src)->open(&cfg->source, cfg->name, &s, err);
  if (rc) return rc;
  (*src)->close(s);
  for (int i = 0; i < cfg->nsinks; i++)
    if ((rc = od_transforms_check(cfg, &cfg->sinks[i], err))) return rc;
  od_keyring *k = NULL;
  if ((rc = od_keyring_from_config(root, &k, err))) return rc;
  if (kr) *kr = k;
  else od_keyring_free(k);
  return OD_OK;
}

int od_pipeline_validate(const od_config *root, const od_pipeline_config *cfg, od_error *err) {
  const od_source_ops *src;
  const od_sink_ops *snk[OD_SINKS_MAX];
  return validate(root, cfg, &src, snk, NULL, err);
}

int od_pipeline_new(const od_config *root, const od_pipeline_config *cfg, od_pipeline **out,
                    od_error *err) {
  const od_source_ops *src;
  const od_sink_ops *snk[OD_SINKS_MAX];
  od_keyring *kr = NULL;
  int rc = validate(root, cfg, &src, snk, &kr, err);
  if (rc) return rc;
  od_pipeline *p = calloc(1, sizeof *p);
  if (!p) {
    od_keyring_free(kr);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  }
  p->kr = kr;
  p->root = root;
  p->cfg = cfg;
  p->source_ops = src;
  p->reconnect_max_ms = cfg->reconnect_max_ms ? cfg->reconnect_max_ms : 30000;
  p->nsinks = cfg->nsinks;
  od_pos_cell_init(&p->stats.durable);
  p->stats.nsinks = cfg->nsinks;
  for (int i = 0; i < cfg->nsinks; i++) {
    psink *ps = &p->sinks[i];
    ps->cfg = &cfg->sinks[i];
    ps->ops = snk[i];
    sink_name(cfg, ps->cfg, ps->name, sizeof ps->name);
    int writers = cfg->apply_workers < (int)snk[i]->max_writers ? cfg->apply_workers : (int)snk[i]->max_writers;
    ps->apply_opt = (od_apply_options){.consistency = cfg->consistency,
                                       .writers = cfg->consistency == OD_CONSISTENCY_STRONG ? 1 : writers,
                                       .parallel_min_rows = (size_t)cfg->apply_parallel_min_rows};
    od_sink_stats *st = &p->stats.sinks[i];
    snprintf(st->name, sizeof st->name, "%s", ps->cfg->name);
    snprintf(st->type, sizeof st->type, "%s", snk[i]->type);
    od_pos_cell_init(&st->durable);
    od_poison_init(&ps->poison, cfg, ps->cfg->name, ps->name);
    ps->poison.dead_letters_total = &st->dead_letters_total;
    ps->poison.dead_letters = &st->dead_letters;
    ps->poison.kr = p->kr;
    od_breaker_init(&ps->breaker, &cfg->breaker);
    ps->breaker.state_out = &st->circuit_state;
    ps->breaker.transitions_out = &st->circuit_transitions;
  }
  p->lock_fd = -1;
  static const char *const cons[] = {"strong", "causal", "eventual"};
  p->stats.metrics = od_pipeline_metrics_new(od_metrics_global(), &p->stats, cfg->name, cfg->source.type,
                                             cons[cfg->consistency]);
  *out = p;
  return OD_OK;
}

/* ---- reader: source callbacks that fill chunks -------------------------------------------- */

/* What the source may be told is durable: the least of every sink's checkpoint. */
static od_pos durable_of(od_pipeline *p) {
  od_pos least = od_pos_none();
  for (int i = 0; i < p->nsinks; i++) {
    od_pos d = od_pos_cell_get(&p->stats.sinks[i].durable);
    if (p->spools[i]) { /* what the sink holds, or its spool holds durably after it */
      d = od_spool_feed_covered(p->spools[i], &d);
      atomic_store(&p->stats.sinks[i].spool_bytes, od_spool_bytes(od_spool_feed_spool(p->spools[i])));
      atomic_store(&p->stats.sinks[i].spool_full, od_spool_feed_full(p->spools[i]));
    }
    if (i == 0 || od_pos_lt(&d, &least)) least = d;
  }
  if (od_pos_lt(&least, &p->acked_max)) least = p->acked_max;
  else p->acked_max = least;
  od_pos_cell_set(&p->stats.durable, &least);
  return least;
}

static bool any_apply_failed(const reader *r) {
  for (int i = 0; i < r->nruns; i++)
    if (r->runs[i].apply && od_apply_failed(r->runs[i].apply)) return true;
  return false;
}

/* Hand the current chunk to the queue, waiting while it is full. While waiting, keep the
 * source's server informed (standby status), so a slow sink never times the connection out. */
static int reader_push(reader *r, od_error *err) {
  if (!r->cur) return OD_OK;
  for (;;) {
    bool spilled = false;
    if (od_queue_full_for(r->queue, od_chunk_bytes(r->cur))) {
      int src = od_spool_relieve(r->p->spools, r->p->nsinks, r->queue, od_chunk_bytes(r->cur), &spilled, err);
      if (src) return od_error_prefix(err, "pipeline %s: ", r->p->cfg->name);
    }
    int rc = od_queue_push(r->queue, r->cur, spilled ? 0 : 200);
    if (rc == OD_OK) {
      r->cur = NULL;
      r->cur_start = NULL;
      return OD_OK;
    }
    if (rc == OD_ECANCELLED) {
      r->cur = NULL;
      return OD_FAIL(err, OD_ECANCELLED, "pipeline %s: apply stopped", r->p->cfg->name);
    }
    if (atomic_load(&r->p->stop) || any_apply_failed(r)) {
      od_queue_recycle(r->queue, r->cur);
      r->cur = NULL;
      return OD_FAIL(err, OD_ECANCELLED, "pipeline %s: stopping", r->p->cfg->name);
    }
    od_pos durable = durable_of(r->p);
    rc = r->source->ops->ack(r->source, &durable, false, err);
    if (rc) return rc;
  }
}

static int reader_begin(void *ctx, const od_txn_info *txn, od_error *err) {
  (void)err;
  reader *r = ctx;
  r->skipping = od_pos_lt(&txn->start, &r->skip_before);
  r->txn_start = txn->start;
  r->cur_start = NULL;
  return OD_OK;
}

static int copy_tuple(od_arena *a, od_tuple *dst, const od_tuple *src) {
  dst->ncolumns = src->ncolumns;
  dst->values = NULL;
  if (!src->ncolumns) return OD_OK;
  dst->values = od_arena_alloc(a, sizeof(od_value) * src->ncolumns);
  if (!dst->values) return OD_ENOMEM;
  for (uint16_t i = 0; i < src->ncolumns; i++) {
    const od_value *v = &src->values[i];
    od_value *d = &dst->values[i];
    d->kind = v->kind;
    d->len = v->len;
    d->data = NULL;
    if (v->kind == OD_VALUE_TEXT || v->kind == OD_VALUE_BINARY) {
      d->data = od_arena_strndup(a, v->data, v->len);
      if (!d->data) return OD_ENOMEM;
    }
  }
  return OD_OK;
}

static int reader_add(reader *r, const od_change *ch, od_error *err);
static int reader_isnap_row(void *ctx, const od_change *row, od_error *err) { return reader_add(ctx, row, err); }
static int reader_isnap_mark(void *ctx, const char *key, uint64_t value, od_error *err) {
  reader *r = ctx;
  if (od_chunk_add_mark(r->cur, key, value))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
  return OD_OK;
}
static int reader_isnap_text_mark(void *ctx, const char *key, const char *text, od_error *err) {
  reader *r = ctx;
  if (od_chunk_add_text_mark(r->cur, key, text))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
  return OD_OK;
}

static int reader_change(void *ctx, const od_txn_info *txn, const od_change *ch, od_error *err) {
  reader *r = ctx;
  if (r->skipping) return OD_OK;
  if (ch->op == OD_OP_MESSAGE && txn->xid == 0) return OD_OK; /* non-transactional message */
  if (r->isnap) {
    bool consumed;
    od_isnap_out out = {.ctx = r, .row = reader_isnap_row, .mark = reader_isnap_mark,
                        .text_mark = reader_isnap_text_mark};
    int irc = od_isnap_change(r->isnap, txn, ch, &out, &consumed, err);
    if (irc || consumed) return irc;
  }
  return reader_add(r, ch, err);
}

/* Copy a change into the current chunk (pushed when full). */
static int reader_add(reader *r, const od_change *ch, od_error *err) {
  if (!r->cur && !(r->cur = od_queue_take_free(r->queue)))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory for a chunk", r->p->cfg->name);
  od_chunk *c = r->cur;
  od_change *dst = od_chunk_add(c);
  if (!dst) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
  *dst = *ch;
  if (!r->cur_start) {
    od_pos *copy = od_arena_alloc(&c->arena, sizeof *copy);
    if (!copy) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
    *copy = r->txn_start;
    r->cur_start = copy;
  }
  dst->txn_start = r->cur_start;
  if (ch->correlation_id && !(dst->correlation_id = od_arena_strndup(&c->arena, ch->correlation_id,
                                                                     strlen(ch->correlation_id))))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory copying a change", r->p->cfg->name);
  if (copy_tuple(&c->arena, &dst->newtup, &ch->newtup) ||
      copy_tuple(&c->arena, &dst->oldtup, &ch->oldtup))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory copying a change", r->p->cfg->name);
  int mrc = od_schema_map_change(r->schema, dst, &c->arena, err);
  if (mrc) return mrc;
  c->ends_txn = false;
  if (c->nchanges >= CHUNK_MAX_ROWS || od_chunk_bytes(c) >= CHUNK_MAX_BYTES)
    return reader_push(r, err);
  return OD_OK;
}

static int reader_relation(void *ctx, od_relation *rel, od_error *err) {
  reader *r = ctx;
  uint64_t versions = od_schema_versions_recorded(r->schema);
  /* A table dropped and re-created at the source starts over in every sink: its table is
   * replaced inside the transaction that first writes the new table (core/schema.h,
   * od_schema_relation_at; OD_TRUNCATE_START_OVER). Each sink's apply skips it with the rest of
   * that transaction when the sink already holds it. */
  char at[OD_POS_TEXT_MAX];
  od_pos_to_text(&r->txn_start, at, sizeof at);
  bool starts_over = false;
  int rc = od_schema_relation_at(r->schema, rel, at, &starts_over, err);
  od_pm_schema_changes(r->p->stats.metrics, od_schema_versions_recorded(r->schema) - versions);
  if (!rc) od_isnap_relation(r->isnap, rel);
  if (!rc && starts_over && !r->skipping) {
    od_change empty = {.op = OD_OP_TRUNCATE, .truncate_flags = OD_TRUNCATE_START_OVER, .rel = rel};
    rc = reader_add(r, &empty, err);
  }
  return rc;
}

static int reader_commit(void *ctx, const od_txn_info *txn, od_error *err) {
  reader *r = ctx;
  if (r->skipping) {
    r->skipping = false;
    for (int i = 0; i < r->nruns; i++) atomic_fetch_add(&r->p->stats.sinks[i].txns_skipped, 1);
    return OD_OK;
  }
  if (!r->cur && !(r->cur = od_queue_take_free(r->queue)))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory for a chunk", r->p->cfg->name);
  r->cur->ends_txn = true;
  r->cur->boundary = r->cur->nchanges;
  r->cur->end = txn->end;
  r->cur->commit_time = txn->commit_time;
  if (!r->cur->ntxns) r->cur->first_commit_time = txn->commit_time;
  r->cur->xid = txn->xid;
  od_pm_source_position(r->p->stats.metrics, &txn->end);
  r->cur->ntxns++;
  if (r->isnap) { /* marks of this transaction (incremental snapshots) ride on the chunk that ends it */
    od_isnap_out out = {.ctx = r, .row = reader_isnap_row, .mark = reader_isnap_mark,
                        .text_mark = reader_isnap_text_mark};
    int rc = od_isnap_commit(r->isnap, txn, &out, err);
    if (rc) return rc;
    if (r->cur->nmarks) return reader_push(r, err);
  }
  if (r->cur->nchanges >= CHUNK_MAX_ROWS || od_chunk_bytes(r->cur) >= CHUNK_MAX_BYTES)
    return reader_push(r, err);
  return OD_OK;
}

static int reader_idle(void *ctx, const od_pos *pos, od_error *err) {
  reader *r = ctx;
  od_pm_source_position(r->p->stats.metrics, pos);
  if (r->cur && r->cur->ends_txn) {
    int rc = reader_push(r, err);
    if (rc) return rc;
  }
  if (r->cur) return OD_OK; /* mid-transaction: not idle after all */
  /* Tell the appliers: a batch kept open for more rows (batch.linger) commits now rather than at
   * its max_delay_ms, when nothing came for SOURCE_QUIET_US (a keepalive between two transactions
   * under load is no reason to cut a batch). */
  od_queue_set_idle(r->queue, SOURCE_QUIET_US);
  int64_t now = od_mono_us();
  od_pos durable = durable_of(r->p);
  if (od_pos_le(pos, &r->last_heartbeat) || od_pos_le(pos, &durable) ||
      now - r->last_heartbeat_at < HEARTBEAT_MIN_INTERVAL_US)
    return OD_OK;
  od_chunk *c = od_queue_take_free(r->queue);
  if (!c) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
  c->heartbeat = true;
  c->end = *pos;
  r->cur = c;
  r->cur_start = NULL;
  r->last_heartbeat = *pos;
  r->last_heartbeat_at = now;
  return reader_push(r, err);
}

/* The state-dir lock is what keeps a second instance out; once its file is gone (the state dir
 * deleted or replaced) a second instance would take a new lock and run alongside this one, and
 * the schema history is gone too: stop (not retriable) and say so. Checked at most once a second. */
static int lock_check(od_pipeline *p, od_error *err) {
  int64_t now = od_mono_us();
  if (p->lock_fd < 0 || now - p->lock_checked_at < 1000000) return OD_OK;
  p->lock_checked_at = now;
  struct stat held, named;
  if (fstat(p->lock_fd, &held) == 0 && stat(p->lock_path, &named) == 0 && held.st_dev == named.st_dev &&
      held.st_ino == named.st_ino)
    return OD_OK;
  return OD_FAIL(err, OD_EIO,
                 "pipeline %s: the lock file %s was deleted or replaced while the pipeline ran (state_dir %s "
                 "removed?): another instance could start next to this one, and the schema history kept there is "
                 "gone; stopping. Restore state_dir from a backup (or start afresh with a new sink) and start odsync again",
                 p->cfg->name, p->lock_path, p->root->state_dir);
}

/* ---- one session -------------------------------------------------------------------------- */

static int open_run_sink(void *ctx, od_sink **out, od_error *err) {
  sink_run *sr = ctx;
  return od_sink_open_chain(sr->p->cfg, sr->ps->cfg, sr->ps->ops, sr->ps->name, out, err);
}

/* Open every sink, read its checkpoint, and bring it to a position the stream can start from (its
 * initial snapshot when it needs one). */
static int prepare_sinks(od_pipeline *p, sink_run *runs, od_source *source, od_schema *schema, od_error *err) {
  const od_pipeline_config *cfg = p->cfg;
  for (int i = 0; i < p->nsinks; i++) {
    sink_run *sr = &runs[i];
    int rc = open_run_sink(sr, &sr->sink, err);
    if (rc && err->retriable && i > 0 && p->nsinks > 1 && !sr->ps->cfg->spool.disabled) {
      /* Down: the others may go on if its spool knows its checkpoint (open_spools decides). */
      sr->deferred = true;
      sr->open_err = *err;
      sr->sink = NULL;
      continue;
    }
    if (!rc) rc = sr->sink->ops->read_position(sr->sink, &sr->start, err);
    if (rc) { /* the sink cannot be reached: its breaker counts it */
      if (od_error_classify(err) == OD_ERRCLASS_RETRY) od_breaker_failure(&sr->ps->breaker, od_mono_us());
      return p->nsinks > 1 ? od_error_prefix(err, "sink %s: ", sr->ps->cfg->name) : rc;
    }
    if (!od_pos_is_none(&sr->start) && sr->start.kind != p->source_ops->position)
      return OD_FAIL(err, OD_ECONFIG, "sink %s holds a '%s' position but the source (type %s) makes "
                     "'%s' positions: it was filled from another kind of source; point the pipeline at an empty sink",
                     sr->ps->cfg->name, sr->start.kind->name, p->source_ops->type,
                     p->source_ops->position->name);
    od_pos_cell_set(&p->stats.sinks[i].durable, &sr->start);
    od_gov_session(cfg, sr->ps->cfg, &sr->start);
    /* Before anything is written: every captured table lands in a target table of its own. */
    if ((rc = od_targets_refuse(cfg->name, source, sr->sink, err)))
      return p->nsinks > 1 ? od_error_prefix(err, "sink %s: ", sr->ps->cfg->name) : rc;
  }
  /* A sink without a checkpoint first copies the existing rows (src/core/snapshot.c); its start
   * becomes the position the copy lines up with. One sink after the other: the first creates the
   * stream's slot with its view, later ones copy under views of their own. */
  for (int i = 0; i < p->nsinks; i++) {
    sink_run *sr = &runs[i];
    if (sr->deferred) continue;
    od_snapshot_env senv = {.cfg = cfg, .name = sr->ps->name, .source = source, .sink = sr->sink,
                            .open_writer = open_run_sink, .open_ctx = sr, .max_writers = sr->ps->ops->max_writers,
                            .schema = schema, .stats = &p->stats, .sink_stats = &p->stats.sinks[i], .stop = &p->stop};
    int rc = od_snapshot_session(&senv, &sr->start, &sr->skips, err);
    if (rc) return rc;
    od_audit_position(cfg->name, sr->ps->cfg->name, "snapshot_done", &sr->start);
  }
  return OD_OK;
}

static int count_one(void *ctx, const od_dead_letter *dl) {
  (void)dl;
  (*(int64_t *)ctx)++;
  return OD_OK;
}

/* The dead letters the sink holds for this pipeline (the gauge; `odsync dlq` may have changed it). */
static void count_dead_letters(sink_run *sr) {
  int64_t n = 0;
  od_error e;
  if (od_sink_list_dead_letters(sr->sink, sr->ps->name, 0, count_one, &n, &e) == OD_OK)
    atomic_store(&sr->p->stats.sinks[sr->idx].dead_letters, n);
}

/* With several sinks, each sink's spool (core/spool_feed.h): opened and indexed, cut after its
 * last episode of the chain that continues the sink's checkpoint; runs[i].resume is where the stream continues. */
static int open_spools(od_pipeline *p, sink_run *runs, od_error *err) {
  static _Atomic uint64_t sessions;
  uint64_t session = ((uint64_t)getpid() << 32) ^ (uint64_t)od_mono_us() ^ (atomic_fetch_add(&sessions, 1) + 1);
  for (int i = 0; i < p->nsinks; i++) {
    sink_run *sr = &runs[i];
    sr->resume = sr->start;
    const od_spool_config *sc = &sr->ps->cfg->spool;
    if (p->nsinks < 2 || sc->disabled) continue;
    char dir[1024];
    if (sc->dir) snprintf(dir, sizeof dir, "%s/%s.%s", sc->dir, p->cfg->name, sr->ps->cfg->name);
    else snprintf(dir, sizeof dir, "%s/spool/%s.%s", p->root->state_dir, p->cfg->name, sr->ps->cfg->name);
    od_spool_options opt = {.dir = dir, .max_bytes = sc->max_bytes, .compression = sc->compression, .kr = p->kr};
    uint64_t kept = 0;
    int rc = od_spool_feed_open(&opt, i, session, &p->spools[i], err);
    if (!rc && sr->deferred) {
      od_pos held;
      if (!od_spool_read_held(od_spool_feed_spool(p->spools[i]), &held)) { /* no stand-in: wait for it */
        *err = sr->open_err;
        return od_error_prefix(err, "sink %s: ", sr->ps->cfg->name);
      }
      sr->start = sr->resume = held;
      od_pos_cell_set(&p->stats.sinks[i].durable, &held);
      char at[OD_POS_TEXT_MAX];
      od_warn("pipeline %s: sink %s is unreachable (%s); the others start, it resumes from its spool at %s when "
              "it is back", p->cfg->name, sr->ps->cfg->name, sr->open_err.msg, od_pos_display(&held, at, sizeof at));
    }
    if (!rc) rc = od_spool_recover(od_spool_feed_spool(p->spools[i]), &sr->start, &sr->resume, &kept, err);
    if (rc) return od_error_prefix(err, "pipeline %s: sink %s: ", p->cfg->name, sr->ps->cfg->name);
    if (kept) {
      char a[OD_POS_TEXT_MAX], b[OD_POS_TEXT_MAX];
      od_info("pipeline %s: sink %s: %llu spooled chunks to apply first (%s to %s)", p->cfg->name,
              sr->ps->cfg->name, (unsigned long long)kept, od_pos_display(&sr->start, a, sizeof a),
              od_pos_display(&sr->resume, b, sizeof b));
    }
  }
  return OD_OK;
}

static int run_session(od_pipeline *p, od_error *err) {
  const od_pipeline_config *cfg = p->cfg;
  od_source *source = NULL;
  od_queue queue;
  od_schema *schema = NULL;
  od_isnap *isnap = NULL;
  sink_run runs[OD_SINKS_MAX];
  memset(runs, 0, sizeof runs);
  for (int i = 0; i < p->nsinks; i++) runs[i] = (sink_run){.p = p, .ps = &p->sinks[i], .idx = i};
  reader r = {0};
  bool queue_ready = false;
  int rc = od_schema_open_sealed(p->root->state_dir, cfg->name, cfg->schema_changes, p->kr, &schema, err);
  if (rc) goto out;
  rc = p->source_ops->open(&cfg->source, cfg->name, &source, err);
  if (rc) goto out;
  rc = prepare_sinks(p, runs, source, schema, err);
  if (rc == OD_ECANCELLED && atomic_load(&p->stop)) {
    rc = OD_OK;
    goto out;
  }
  if (rc) goto out;
  if ((rc = open_spools(p, runs, err))) goto out;
  /* The stream starts at the least of the sinks' positions (past what their spools hold); each sink
   * drops what it holds. */
  od_pos start = runs[0].resume;
  for (int i = 1; i < p->nsinks; i++)
    if (od_pos_lt(&runs[i].resume, &start)) start = runs[i].resume;
  rc = source->ops->start(source, &start, err);
  if (rc) goto out;
  static const char *const levels[] = {"strong", "causal", "eventual"};
  char shown[OD_POS_TEXT_MAX];
  int writers = 0;
  for (int i = 0; i < p->nsinks; i++) writers += p->sinks[i].apply_opt.writers;
  char nsinks[32] = "";
  if (p->nsinks > 1) snprintf(nsinks, sizeof nsinks, " over %d sinks", p->nsinks);
  od_info("pipeline %s: streaming from %s%s; consistency %s, %d sink writer%s%s", cfg->name,
          od_pos_display(&start, shown, sizeof shown),
          !od_pos_is_none(&start) ? " (the sinks' checkpoint)" : " (the source's own position; a sink is empty)",
          levels[cfg->consistency], writers, writers > 1 ? "s" : "", nsinks);

  /* Incremental snapshots: pending requests are read from the first sink before apply owns it. */
  if ((rc = od_isnap_open(cfg, runs[0].ps->name, p->source_ops, runs[0].sink, schema, &p->stats, &p->stop, &isnap,
                          err)))
    goto out;
  rc = od_queue_init(&queue, cfg->queue.max_rows, cfg->queue.max_bytes, p->nsinks);
  if (rc) {
    OD_FAIL(err, rc, "pipeline %s: cannot create the queue", cfg->name);
    goto out;
  }
  queue_ready = true;
  r = (reader){.p = p, .source = source, .queue = &queue, .runs = runs, .nruns = p->nsinks, .schema = schema,
               .skip_before = start, .isnap = isnap};
  for (int i = 0; i < p->nsinks && !rc; i++) {
    sink_run *sr = &runs[i];
    od_apply_env env = {.cfg = cfg, .opt = sr->ps->apply_opt, .sink = sr->sink, .open_writer = open_run_sink,
                        .open_ctx = sr, .mark_prefix = sr->ps->name, .queue = &queue, .consumer = i,
                        .skip_before = sr->start, .skips = &sr->skips, .stats = &p->stats.sinks[i],
                        .poison = (sr->ps->ops->caps & OD_SINK_DEAD_LETTERS) ? &sr->ps->poison : NULL,
                        .breaker = &sr->ps->breaker, .spool = p->spools[i], .sink_home = &sr->sink};
    if (env.poison && sr->sink && !p->poison_restart) count_dead_letters(sr); /* not again after a poison restart */
    if (p->spools[i]) {
      queue.spill_on[i] = true;
      od_queue_spill_add(&queue, i, od_spool_unread(od_spool_feed_spool(p->spools[i])));
    }
    rc = od_apply_start(&sr->apply, &env, err);
    if (!rc && sr->ps->apply_opt.writers > 1)
      od_info("pipeline %s: sink %s: %d parallel writers", cfg->name, sr->ps->cfg->name, sr->ps->apply_opt.writers);
  }
  if (rc) {
    od_queue_close(&queue);
    goto out;
  }
  atomic_store(&p->stats.state, OD_PIPELINE_STREAMING);

  od_change_handler h = {.ctx = &r,
                         .begin = reader_begin,
                         .change = reader_change,
                         .commit = reader_commit,
                         .relation = reader_relation,
                         .idle = reader_idle};
  while (!atomic_load(&p->stop) && !any_apply_failed(&r)) {
    if ((rc = lock_check(p, err))) break;
    if (atomic_load(&p->stats.paused) && !r.cur) { /* paused between transactions: keep the link alive */
      atomic_store(&p->stats.pause_held, 1);
      od_pos durable = durable_of(p);
      if ((rc = source->ops->ack(source, &durable, false, err))) break;
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    atomic_store(&p->stats.pause_held, 0);
    rc = source->ops->poll(source, &h, POLL_TIMEOUT_MS, err);
    if (rc) break;
    od_source_health health;
    if (source->ops->health && source->ops->health(source, &health)) od_pm_source_health(p->stats.metrics, &health);
    if (r.cur && r.cur->ends_txn && (rc = reader_push(&r, err))) break;
    bool spilled; /* a sink that is down: its chunks go to its spool at once (memory, acknowledgement) */
    if ((rc = od_spool_relieve(p->spools, p->nsinks, &queue, 0, &spilled, err))) break;
    size_t rows;
    od_queue_stats(&queue, &rows, NULL);
    atomic_store(&p->stats.queued_rows, rows);
    od_pos durable = durable_of(p);
    if ((rc = source->ops->ack(source, &durable, false, err))) break;
  }
  atomic_store(&p->stats.pause_held, 0);
  if (rc == OD_ECANCELLED && (atomic_load(&p->stop) || any_apply_failed(&r))) rc = OD_OK;
  /* Complete transactions still in hand are applied; a partial one is dropped (it was never
   * acknowledged, so the next session receives it again). */
  if (r.cur && r.cur->ends_txn && (rc == OD_OK || rc == OD_ESCHEMA)) {
    od_error ignored;
    reader_push(&r, &ignored);
  }
  if (r.cur) od_queue_recycle(&queue, r.cur);
  r.cur = NULL;
  od_queue_close(&queue);
  for (int i = 0; i < p->nsinks; i++) {
    od_error apply_err;
    int arc = od_apply_join(runs[i].apply, &apply_err);
    runs[i].apply = NULL;
    /* A sink that failed (a row it rejected is not the sink failing) counts on its breaker. */
    if (arc && od_error_classify(&apply_err) != OD_ERRCLASS_ROW) od_breaker_failure(&p->sinks[i].breaker, od_mono_us());
    if (arc && !rc) {
      *err = apply_err;
      rc = arc;
    }
  }
  if (rc == OD_OK) {
    /* Tell the server what the sinks now hold before disconnecting. */
    od_error ack_err;
    od_pos durable = durable_of(p);
    if (source->ops->ack(source, &durable, true, &ack_err))
      od_warn("pipeline %s: final acknowledgement failed: %s", cfg->name, ack_err.msg);
  }
out:
  for (int i = 0; i < p->nsinks; i++)
    if (runs[i].apply) od_apply_join(runs[i].apply, NULL);
  od_isnap_close(isnap); /* after the queue is drained: queued rows point at its relations */
  for (int i = 0; i < p->nsinks; i++)
    if (runs[i].sink) runs[i].sink->ops->close(runs[i].sink);
  if (source) source->ops->close(source);
  for (int i = 0; i < p->nsinks; i++) { /* after the sinks: they may point at relations decoded from them */
    od_spool_feed_close(p->spools[i]);
    p->spools[i] = NULL;
  }
  if (queue_ready) od_queue_destroy(&queue);
  od_schema_close(schema);
  for (int i = 0; i < p->nsinks; i++) od_snapshot_skips_free(&runs[i].skips);
  return rc;
}

/* ---- supervisor ---------------------------------------------------------------------------- */

static void sleep_interruptible(od_pipeline *p, long ms) {
  while (ms > 0 && !atomic_load(&p->stop)) {
    long step = ms < 100 ? ms : 100;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
    nanosleep(&ts, NULL);
    ms -= step;
  }
}

/* Whether the session that just failed ended on a poison row the next session isolates. */
static bool poison_restart(od_pipeline *p) {
  bool any = false;
  for (int i = 0; i < p->nsinks; i++) {
    any = any || p->sinks[i].poison.restart;
    p->sinks[i].poison.restart = false;
  }
  return any;
}

/* The longest cool-down of an open sink breaker. */
static long breaker_wait_ms(od_pipeline *p) {
  long most = 0;
  int64_t now = od_mono_us();
  for (int i = 0; i < p->nsinks; i++) {
    long w = od_breaker_wait_ms(&p->sinks[i].breaker, now);
    if (w > most) most = w;
    od_breaker_allow(&p->sinks[i].breaker, now); /* past its cool-down: half-open, the next session probes */
  }
  return most;
}

static void *supervisor_main(void *arg) {
  od_pipeline *p = arg;
  od_log_set_thread_pipeline(p->cfg->name);
  od_backoff backoff;
  od_backoff_init(&backoff, 200, p->reconnect_max_ms, (uint64_t)od_now_us() ^ (uint64_t)(uintptr_t)p);
  int rc = OD_OK;
  bool connected = false;  /* some session got as far as copying or streaming */
  int connect_failures = 0; /* connection failures before that */
  od_error err;
  while (!atomic_load(&p->stop)) {
    od_error_clear(&err);
    atomic_fetch_add(&p->stats.sessions, 1);
    int64_t started = od_mono_us();
    rc = run_session(p, &err);
    if (rc == OD_OK) break; /* stop requested and drained */
    /* The one classification (core/error_class.h): retry, stop, or a poison row to isolate. */
    od_error_class cls = od_error_classify(&err);
    bool isolate = cls == OD_ERRCLASS_ROW && poison_restart(p);
    p->poison_restart = isolate;
    bool retry = cls == OD_ERRCLASS_RETRY || isolate;
    od_pm_error(p->stats.metrics, &err, retry);
    int st = atomic_load(&p->stats.state);
    connected = connected || st == OD_PIPELINE_STREAMING || st == OD_PIPELINE_SNAPSHOT;
    /* A pipeline that never got through to a server is most likely misconfigured (host, port):
     * bounded, so it ends with an error instead of warning forever. Once it has run, outages are
     * waited out. */
    if (retry && !connected && err.code == OD_ECONNECT && ++connect_failures >= OD_FIRST_CONNECT_ATTEMPTS) {
      od_error_prefix(&err, "gave up after %d attempts without ever connecting (check the host and port of the "
                      "dsn, and that the server runs; once a pipeline has connected, odsync retries outages "
                      "without limit): ", connect_failures);
      err.retriable = false;
      retry = false;
    }
    if (!retry) {
      err.retriable = false;
      od_error_log("pipeline %s: %s", p->cfg->name, err.msg);
      break;
    }
    if (isolate) { /* not an outage: start over at once, change by change */
      od_warn("pipeline %s: %s", p->cfg->name, err.msg);
      rc = OD_OK;
      continue;
    }
    if (od_mono_us() - started > 30 * 1000000LL) od_backoff_reset(&backoff); /* it had been healthy */
    long wait_ms = od_backoff_next(&backoff);
    long open_ms = breaker_wait_ms(p);
    atomic_store(&p->stats.state, OD_PIPELINE_RETRYING);
    if (open_ms > wait_ms)
      od_warn("pipeline %s: %s; a sink's circuit breaker is open: retrying in %.1f s", p->cfg->name, err.msg,
              open_ms / 1000.0);
    else
      od_warn("pipeline %s: %s; retrying in %.1f s", p->cfg->name, err.msg, wait_ms / 1000.0);
    sleep_interruptible(p, open_ms > wait_ms ? open_ms : wait_ms);
    breaker_wait_ms(p);
    rc = OD_OK;
  }
  p->final_rc = rc;
  p->final_err = err;
  atomic_store(&p->stats.state, rc ? OD_PIPELINE_FAILED : OD_PIPELINE_STOPPED);
  atomic_store(&p->finished, true);
  return NULL;
}

/* One process per pipeline: an advisory lock in the state directory. */
static int take_lock(od_pipeline *p, od_error *err) {
  const char *dir = p->root->state_dir;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return OD_FAIL(err, OD_EIO, "cannot create state_dir %s: %s", dir, strerror(errno));
  char *path = p->lock_path;
  snprintf(path, sizeof p->lock_path, "%s/%s.lock", dir, p->cfg->name);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "cannot open %s: %s", path, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    close(fd);
    return OD_FAIL(err, OD_EBUSY,
                   "pipeline %s is already running (lock %s is held by pid %s); stop it first",
                   p->cfg->name, path, pid[0] ? pid : "?");
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    /* The lock is the flock, the pid only tells a second process who holds it: a full state_dir
     * (ENOSPC, EDQUOT) must not stop the pipeline here; the writes that matter (the schema
     * history) pause and retry until space is back. */
    if (errno == ENOSPC || errno == EDQUOT) {
      od_warn("pipeline %s: cannot write the pid into %s: %s (state_dir %s is full; the lock is held, "
              "free some space there)", p->cfg->name, path, strerror(errno), dir);
    } else {
      close(fd);
      return OD_FAIL(err, OD_EIO, "cannot write %s: %s", path, strerror(errno));
    }
  }
  p->lock_fd = fd;
  return OD_OK;
}

int od_pipeline_start(od_pipeline *p, od_error *err) {
  int rc = take_lock(p, err);
  if (rc == OD_OK && pthread_create(&p->thread, NULL, supervisor_main, p) != 0)
    rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: cannot start a thread", p->cfg->name);
  if (rc) {
    /* Never started: it is finished, with this error. */
    p->final_rc = rc;
    p->final_err = *err;
    atomic_store(&p->stats.state, OD_PIPELINE_FAILED);
    atomic_store(&p->finished, true);
    return rc;
  }
  p->thread_started = true;
  return OD_OK;
}

int od_pipeline_wait(od_pipeline *p, od_error *err) {
  if (p->thread_started) {
    pthread_join(p->thread, NULL);
    p->thread_started = false;
  }
  if (p->final_rc && err) *err = p->final_err;
  return p->final_rc;
}

void od_pipeline_free(od_pipeline *p) {
  if (!p) return;
  if (p->thread_started) {
    od_pipeline_request_stop(p);
    od_pipeline_wait(p, NULL);
  }
  if (p->lock_fd >= 0) close(p->lock_fd);
  od_pipeline_metrics_free(p->stats.metrics);
  od_pos_cell_destroy(&p->stats.durable);
  for (int i = 0; i < p->nsinks; i++) {
    od_pos_cell_destroy(&p->stats.sinks[i].durable);
    od_breaker_destroy(&p->sinks[i].breaker);
  }
  od_keyring_free(p->kr);
  free(p);
}

/* ---- check --------------------------------------------------------------------------------- */

/* The state dir must be (or become, created by mkdir) a directory odsync can write: the lock,
 * the schema history and snapshot state live there. Reads only; creates nothing. */
static int check_state_dir(const char *dir, char *msg, size_t size) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      snprintf(msg, size, "state_dir %s is not a directory", dir);
      return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
      snprintf(msg, size, "state_dir %s is not writable: %s (odsync keeps its lock, schema history and snapshot "
               "state there)", dir, strerror(errno));
      return -1;
    }
    return 0;
  }
  if (errno != ENOENT) {
    snprintf(msg, size, "state_dir %s cannot be created or used: %s", dir, strerror(errno));
    return -1;
  }
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash == parent) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(parent, sizeof parent, ".");
  if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode) || access(parent, W_OK | X_OK) != 0) {
    snprintf(msg, size, "state_dir %.400s does not exist and cannot be created (%.400s is %s)", dir, parent,
             stat(parent, &st) != 0 ? "missing" : !S_ISDIR(st.st_mode) ? "not a directory" : "not writable");
    return -1;
  }
  return 0;
}

int od_pipeline_check(const od_config *root, const od_pipeline_config *cfg,
                      void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx) {
  (void)root;
  od_error err;
  od_error_clear(&err);
  const od_source_ops *src;
  const od_sink_ops *snk[OD_SINKS_MAX];
  int fatal = 0;
  char msg[OD_ERROR_MSG_MAX + 256];
  if (find_adapters(cfg, &src, snk, &err)) {
    problem(ctx, true, err.msg);
    return 1;
  }
  /* What a session would refuse before connecting anywhere. */
  if (check_state_dir(root->state_dir, msg, sizeof msg)) {
    problem(ctx, true, msg);
    fatal++;
  }
  od_source *source = NULL;
  if (src->open(&cfg->source, cfg->name, &source, &err)) {
    problem(ctx, true, err.msg);
    fatal++;
  } else {
    int n = src->check(source, problem, ctx, &err);
    if (n < 0) {
      snprintf(msg, sizeof msg, "pipeline %s: source: %s", cfg->name, err.msg);
      problem(ctx, true, msg);
      fatal++;
    } else {
      fatal += n;
    }
    if (n != 0) {
      src->close(source);
      source = NULL;
    }
  }
  for (int i = 0; i < cfg->nsinks; i++) {
    const od_sink_config *sk = &cfg->sinks[i];
    char name[128], label[96];
    sink_name(cfg, sk, name, sizeof name);
    snprintf(label, sizeof label, cfg->nsinks > 1 ? "sink %s" : "sink", sk->name);
    od_sink *sink = NULL;
    if (od_transforms_check(cfg, sk, &err) || od_sink_open_chain(cfg, sk, snk[i], name, &sink, &err)) {
      snprintf(msg, sizeof msg, "pipeline %s: %s: %s", cfg->name, label, err.msg);
      problem(ctx, true, msg);
      fatal++;
      continue;
    }
    od_pos pos;
    if (sink->ops->read_position(sink, &pos, &err)) {
      snprintf(msg, sizeof msg, "pipeline %s: %s: %s", cfg->name, label, err.msg);
      problem(ctx, true, msg);
      fatal++;
    } else if (!od_pos_is_none(&pos) && pos.kind != src->position) {
      snprintf(msg, sizeof msg, "pipeline %s: %s holds a '%s' position but the source makes '%s' positions: it was "
               "filled from another kind of source", cfg->name, label, pos.kind->name, src->position->name);
      problem(ctx, true, msg);
      fatal++;
    } else if (source) {
      /* The captured tables against the sink's target tables (core/targets.h), as run does. */
      int n = od_targets_check(source, sink, problem, ctx, &err);
      if (n < 0) {
        snprintf(msg, sizeof msg, "pipeline %s: %s", cfg->name, err.msg);
        problem(ctx, true, msg);
        fatal++;
      } else {
        fatal += n;
      }
    }
    sink->ops->close(sink);
  }
  if (source) src->close(source);
  return fatal;
}
