/* pipeline.c — see pipeline.h. The reader side (source -> chunks -> queue) and the supervisor
 * loop live here; the apply side (queue -> sink, checkpoint) lives in apply.c. */
#include "core/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/apply.h"
#include "core/isnap.h"
#include "core/log.h"
#include "core/queue.h"
#include "core/schema.h"
#include "core/snapshot.h"
#include "odsync/registry.h"

/* A chunk is handed to the queue when it reaches either size, or when the source has nothing
 * more to deliver right now and the chunk ends at a transaction boundary. */
#define CHUNK_MAX_ROWS 2048
#define CHUNK_MAX_BYTES (4u << 20)
#define HEARTBEAT_MIN_INTERVAL_US 1000000
#define POLL_TIMEOUT_MS 100
/* Connection failures before a pipeline's first session ever got through: then it stops. */
#define OD_FIRST_CONNECT_ATTEMPTS 8

struct od_pipeline {
  const od_config *root;
  const od_pipeline_config *cfg;
  const od_source_ops *source_ops;
  const od_sink_ops *sink_ops;
  long reconnect_max_ms;
  od_apply_options apply_opt;

  pthread_t thread;
  bool thread_started;
  atomic_bool stop;
  atomic_bool finished;
  int lock_fd;

  od_pipeline_stats stats;
  od_error final_err;
  int final_rc;
};

/* State of the reader for one session: the chunk being filled and the skip rule. */
typedef struct reader {
  od_pipeline *p;
  od_source *source;
  od_queue *queue;
  od_apply *apply;
  od_schema *schema;
  od_chunk *cur;
  od_lsn skip_before;   /* transactions whose commit record lies before this are in the sink */
  bool skipping;
  od_txn_info txn;      /* the transaction being read (relation messages arrive inside it) */
  od_lsn last_heartbeat;
  int64_t last_heartbeat_at;
  /* Tables the snapshot copied under a later view than the stream's start: their changes from
   * transactions committed before that view are in the sink already (snapshot.h). Resolved once
   * per relation version in reader_relation; looked up only while final_lsn < skips->max. */
  const od_snapshot_skips *skips;
  struct rel_skip { const od_relation *rel; od_lsn until; } *rel_skips;
  int nrel_skips;
  od_isnap *isnap; /* incremental snapshots (core/isnap.h), or NULL */
} reader;

int64_t od_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct timespec od_deadline_ms(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

int64_t od_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *od_pipeline_name(const od_pipeline *p) { return p->cfg->name; }
od_pipeline_stats *od_pipeline_get_stats(od_pipeline *p) { return &p->stats; }
bool od_pipeline_finished(od_pipeline *p) {
  /* A pipeline asked to stop before it was started is finished too. */
  return atomic_load(&p->finished) || (!p->thread_started && atomic_load(&p->stop));
}
void od_pipeline_request_stop(od_pipeline *p) { atomic_store(&p->stop, true); }

static int find_adapters(const od_pipeline_config *cfg, const od_source_ops **src,
                         const od_sink_ops **snk, od_error *err) {
  *src = od_source_find(cfg->source.type);
  if (!*src)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.type '%s' is not a known source (known: %s)",
                   cfg->source.file, cfg->source.line, cfg->source.col, cfg->source.path,
                   cfg->source.type ? cfg->source.type : "", od_source_types());
  *snk = od_sink_find(cfg->sink.type);
  if (!*snk)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.type '%s' is not a known sink (known: %s)",
                   cfg->sink.file, cfg->sink.line, cfg->sink.col, cfg->sink.path,
                   cfg->sink.type ? cfg->sink.type : "", od_sink_types());
  return OD_OK;
}

int od_pipeline_new(const od_config *root, const od_pipeline_config *cfg, od_pipeline **out,
                    od_error *err) {
  const od_source_ops *src;
  const od_sink_ops *snk;
  int rc = find_adapters(cfg, &src, &snk, err);
  if (rc) return rc;
  long reconnect_max_ms;
  rc = od_config_int(&cfg->source, "reconnect_max_ms", 30000, 100, 3600000, &reconnect_max_ms, err);
  if (rc) return rc;
  /* Validate both sections now, so a bad key fails before anything starts. */
  od_source *s = NULL;
  rc = src->open(&cfg->source, cfg->name, &s, err);
  if (rc) return rc;
  src->close(s);
  od_pipeline *p = calloc(1, sizeof *p);
  if (!p) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", cfg->name);
  p->root = root;
  p->cfg = cfg;
  p->source_ops = src;
  p->sink_ops = snk;
  p->reconnect_max_ms = reconnect_max_ms;
  unsigned max_writers = snk->max_writers ? snk->max_writers : 1;
  int writers = cfg->apply_workers < (int)max_writers ? cfg->apply_workers : (int)max_writers;
  p->apply_opt = (od_apply_options){.consistency = cfg->consistency,
                                    .writers = cfg->consistency == OD_CONSISTENCY_STRONG ? 1 : writers};
  p->lock_fd = -1;
  *out = p;
  return OD_OK;
}

/* ---- reader: source callbacks that fill chunks -------------------------------------------- */

static od_lsn durable_of(reader *r) { return atomic_load(&r->p->stats.durable_lsn); }

/* Hand the current chunk to the queue, waiting while it is full. While waiting, keep the
 * source's server informed (standby status), so a slow sink never times the connection out. */
static int reader_push(reader *r, od_error *err) {
  if (!r->cur) return OD_OK;
  for (;;) {
    int rc = od_queue_push(r->queue, r->cur, 200);
    if (rc == OD_OK) {
      r->cur = NULL;
      return OD_OK;
    }
    if (rc == OD_ECANCELLED) {
      r->cur = NULL;
      return OD_FAIL(err, OD_ECANCELLED, "pipeline %s: apply stopped", r->p->cfg->name);
    }
    if (atomic_load(&r->p->stop) || od_apply_failed(r->apply)) {
      od_queue_recycle(r->queue, r->cur);
      r->cur = NULL;
      return OD_FAIL(err, OD_ECANCELLED, "pipeline %s: stopping", r->p->cfg->name);
    }
    rc = r->source->ops->ack(r->source, durable_of(r), false, err);
    if (rc) return rc;
  }
}

static int reader_begin(void *ctx, const od_txn_info *txn, od_error *err) {
  (void)err;
  reader *r = ctx;
  r->skipping = txn->final_lsn < r->skip_before;
  r->txn = *txn;
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

static bool snapshot_has_it(const reader *r, const od_txn_info *txn, const od_relation *rel) {
  for (int i = 0; i < r->nrel_skips; i++)
    if (r->rel_skips[i].rel == rel) return txn->final_lsn < r->rel_skips[i].until;
  return false;
}

static int reader_add(reader *r, const od_change *ch, od_error *err);
static int reader_isnap_row(void *ctx, const od_change *row, od_error *err) { return reader_add(ctx, row, err); }
static int reader_isnap_mark(void *ctx, const char *key, od_lsn value, od_error *err) {
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
  if (txn->final_lsn < r->skips->max && ch->rel && snapshot_has_it(r, txn, ch->rel)) return OD_OK;
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
  for (int i = 0; i < r->skips->n; i++) {
    const char *name = r->skips->items[i].name, *dot = strchr(name, '.');
    if (!dot || strncmp(name, rel->schema, (size_t)(dot - name)) || rel->schema[dot - name] || strcmp(dot + 1, rel->name))
      continue;
    struct rel_skip *n = realloc(r->rel_skips, (size_t)(r->nrel_skips + 1) * sizeof *n);
    if (!n) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
    r->rel_skips = n;
    n[r->nrel_skips++] = (struct rel_skip){.rel = rel, .until = r->skips->items[i].until};
    break;
  }
  /* A table dropped and re-created at the source starts over in the sink: emptied inside the
   * transaction that first writes the new table (src/core/schema.h, od_schema_relation_at). */
  char at[32];
  snprintf(at, sizeof at, OD_LSN_FMT, OD_LSN_ARGS(r->txn.final_lsn));
  bool starts_over = false;
  int rc = od_schema_relation_at(r->schema, rel, at, &starts_over, err);
  if (!rc) od_isnap_relation(r->isnap, rel);
  if (!rc && starts_over && !r->skipping &&
      !(r->txn.final_lsn < r->skips->max && snapshot_has_it(r, &r->txn, rel))) {
    od_change empty = {.op = OD_OP_TRUNCATE, .truncate_flags = OD_TRUNCATE_START_OVER, .rel = rel};
    rc = reader_add(r, &empty, err);
  }
  return rc;
}

static int reader_commit(void *ctx, const od_txn_info *txn, od_error *err) {
  reader *r = ctx;
  if (r->skipping) {
    r->skipping = false;
    atomic_fetch_add(&r->p->stats.txns_skipped, 1);
    return OD_OK;
  }
  if (!r->cur && !(r->cur = od_queue_take_free(r->queue)))
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory for a chunk", r->p->cfg->name);
  r->cur->ends_txn = true;
  r->cur->boundary = r->cur->nchanges;
  r->cur->end_lsn = txn->end_lsn;
  r->cur->commit_time = txn->commit_time;
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

static int reader_idle(void *ctx, od_lsn pos, od_error *err) {
  reader *r = ctx;
  if (r->cur && r->cur->ends_txn) {
    int rc = reader_push(r, err);
    if (rc) return rc;
  }
  if (r->cur) return OD_OK; /* mid-transaction: not idle after all */
  int64_t now = od_mono_us();
  if (pos <= r->last_heartbeat || pos <= durable_of(r) ||
      now - r->last_heartbeat_at < HEARTBEAT_MIN_INTERVAL_US)
    return OD_OK;
  od_chunk *c = od_queue_take_free(r->queue);
  if (!c) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", r->p->cfg->name);
  c->heartbeat = true;
  c->end_lsn = pos;
  r->cur = c;
  r->last_heartbeat = pos;
  r->last_heartbeat_at = now;
  return reader_push(r, err);
}

/* ---- one session -------------------------------------------------------------------------- */

static int run_session(od_pipeline *p, od_error *err) {
  const od_pipeline_config *cfg = p->cfg;
  od_sink *sink = NULL;
  od_source *source = NULL;
  od_queue queue;
  od_apply *apply = NULL;
  od_schema *schema = NULL;
  od_snapshot_skips skips = {0};
  od_isnap *isnap = NULL;
  reader r = {0};
  bool queue_ready = false;
  int rc = od_schema_open(p->root->state_dir, cfg->name, cfg->schema_changes, &schema, err);
  if (rc) goto out;
  rc = p->sink_ops->open(&cfg->sink, cfg->name, &sink, err);
  if (rc) goto out;
  od_lsn start = 0;
  rc = sink->ops->read_position(sink, &start, err);
  if (rc) goto out;
  atomic_store(&p->stats.durable_lsn, start);
  rc = p->source_ops->open(&cfg->source, cfg->name, &source, err);
  if (rc) goto out;
  /* A new pipeline first copies the existing rows (src/core/snapshot.c); start becomes the
   * position the copy lines up with. */
  od_snapshot_env senv = {.cfg = cfg, .source = source, .sink = sink, .sink_ops = p->sink_ops,
                          .schema = schema, .stats = &p->stats, .stop = &p->stop};
  rc = od_snapshot_session(&senv, &start, &skips, err);
  if (rc == OD_ECANCELLED && atomic_load(&p->stop)) {
    rc = OD_OK;
    goto out;
  }
  if (rc) goto out;
  rc = source->ops->start(source, start, err);
  if (rc) goto out;
  static const char *const levels[] = {"strong", "causal", "eventual"};
  od_info("pipeline %s: streaming from " OD_LSN_FMT "%s; consistency %s, %d sink writer%s", cfg->name,
          OD_LSN_ARGS(start),
          start ? " (the sink's checkpoint)" : " (the slot's confirmed position; the sink is empty)",
          levels[p->apply_opt.consistency], p->apply_opt.writers, p->apply_opt.writers > 1 ? "s" : "");

  /* Incremental snapshots: pending requests are read from the sink before apply owns it. */
  if ((rc = od_isnap_open(cfg, p->source_ops, sink, schema, &p->stats, &p->stop, &isnap, err))) goto out;
  rc = od_queue_init(&queue, cfg->queue.max_rows, cfg->queue.max_bytes);
  if (rc) {
    OD_FAIL(err, rc, "pipeline %s: cannot create the queue", cfg->name);
    goto out;
  }
  queue_ready = true;
  rc = od_apply_start(&apply, cfg, &p->apply_opt, sink, &queue, &p->stats, err);
  if (rc) goto out;
  atomic_store(&p->stats.state, OD_PIPELINE_STREAMING);

  r = (reader){.p = p, .source = source, .queue = &queue, .apply = apply, .schema = schema, .skip_before = start,
               .skips = &skips, .isnap = isnap};
  od_change_handler h = {.ctx = &r,
                         .begin = reader_begin,
                         .change = reader_change,
                         .commit = reader_commit,
                         .relation = reader_relation,
                         .idle = reader_idle};
  while (!atomic_load(&p->stop) && !od_apply_failed(apply)) {
    rc = source->ops->poll(source, &h, POLL_TIMEOUT_MS, err);
    if (rc) break;
    if (r.cur && r.cur->ends_txn && (rc = reader_push(&r, err))) break;
    size_t rows;
    od_queue_stats(&queue, &rows, NULL);
    atomic_store(&p->stats.queued_rows, rows);
    if ((rc = source->ops->ack(source, durable_of(&r), false, err))) break;
  }
  if (rc == OD_ECANCELLED && (atomic_load(&p->stop) || od_apply_failed(apply))) rc = OD_OK;
  /* Complete transactions still in hand are applied; a partial one is dropped (it was never
   * acknowledged, so the next session receives it again). */
  if (r.cur && r.cur->ends_txn && (rc == OD_OK || rc == OD_ESCHEMA)) {
    od_error ignored;
    reader_push(&r, &ignored);
  }
  if (r.cur) od_queue_recycle(&queue, r.cur);
  r.cur = NULL;
  od_queue_close(&queue);
  od_error apply_err;
  int arc = od_apply_join(apply, &apply_err);
  apply = NULL;
  if (arc && !rc) {
    *err = apply_err;
    rc = arc;
  }
  if (rc == OD_OK) {
    /* Tell the server what the sink now holds before disconnecting. */
    od_error ack_err;
    if (source->ops->ack(source, atomic_load(&p->stats.durable_lsn), true, &ack_err))
      od_warn("pipeline %s: final acknowledgement failed: %s", cfg->name, ack_err.msg);
  }
out:
  if (apply) od_apply_join(apply, NULL);
  od_isnap_close(isnap); /* after the queue is drained: queued rows point at its relations */
  if (source) source->ops->close(source);
  if (sink) sink->ops->close(sink);
  if (queue_ready) od_queue_destroy(&queue);
  od_schema_close(schema);
  free(r.rel_skips);
  od_snapshot_skips_free(&skips);
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

static void *supervisor_main(void *arg) {
  od_pipeline *p = arg;
  long backoff_ms = 200;
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
    int st = atomic_load(&p->stats.state);
    connected = connected || st == OD_PIPELINE_STREAMING || st == OD_PIPELINE_SNAPSHOT;
    /* A pipeline that never got through to a server is most likely misconfigured (host, port):
     * bounded, so it ends with an error instead of warning forever. Once it has run, outages are
     * waited out. */
    if (err.retriable && !connected && err.code == OD_ECONNECT && ++connect_failures >= OD_FIRST_CONNECT_ATTEMPTS) {
      od_error_prefix(&err, "gave up after %d attempts without ever connecting (check the host and port of the "
                      "dsn, and that the server runs; once a pipeline has connected, odsync retries outages "
                      "without limit): ", connect_failures);
      err.retriable = false;
    }
    if (!err.retriable) {
      od_error_log("pipeline %s: %s", p->cfg->name, err.msg);
      break;
    }
    if (od_mono_us() - started > 30 * 1000000LL) backoff_ms = 200; /* it had been healthy */
    atomic_store(&p->stats.state, OD_PIPELINE_RETRYING);
    od_warn("pipeline %s: %s; retrying in %.1f s", p->cfg->name, err.msg, backoff_ms / 1000.0);
    sleep_interruptible(p, backoff_ms);
    backoff_ms = backoff_ms * 2 > p->reconnect_max_ms ? p->reconnect_max_ms : backoff_ms * 2;
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
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.lock", dir, p->cfg->name);
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
    close(fd);
    return OD_FAIL(err, OD_EIO, "cannot write %s: %s", path, strerror(errno));
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
    snprintf(msg, size, "state_dir %s does not exist and cannot be created (%s is %s)", dir, parent,
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
  const od_sink_ops *snk;
  int fatal = 0;
  char msg[OD_ERROR_MSG_MAX + 64];
  if (find_adapters(cfg, &src, &snk, &err)) {
    problem(ctx, true, err.msg);
    return 1;
  }
  /* What od_pipeline_new and a session would refuse before connecting anywhere. */
  long reconnect_max_ms;
  if (od_config_int(&cfg->source, "reconnect_max_ms", 30000, 100, 3600000, &reconnect_max_ms, &err)) {
    problem(ctx, true, err.msg);
    fatal++;
  }
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
    src->close(source);
  }
  od_sink *sink = NULL;
  if (snk->open(&cfg->sink, cfg->name, &sink, &err)) {
    snprintf(msg, sizeof msg, "pipeline %s: sink: %s", cfg->name, err.msg);
    problem(ctx, true, msg);
    fatal++;
  } else {
    od_lsn pos;
    if (sink->ops->read_position(sink, &pos, &err)) {
      snprintf(msg, sizeof msg, "pipeline %s: sink: %s", cfg->name, err.msg);
      problem(ctx, true, msg);
      fatal++;
    }
    sink->ops->close(sink);
  }
  return fatal;
}
