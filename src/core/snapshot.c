/* snapshot.c — see snapshot.h; the argument is in docs/SNAPSHOTS.md.
 *
 * Marks (sink rows next to the checkpoint, written in the same transaction as what they record):
 *   <p>/snapshot/start            the stream position A this snapshot attempt leads to
 *   <p>/snapshot                  = A once every table is copied (same transaction as checkpoint A)
 *   <p>/snapshot/<t>/gen          G: the view point table t is being copied under in this attempt
 *                                 (A, or a temporary slot's point); valid only when G >= A
 *   <p>/snapshot/<t>/method|n|lo|step   t's chunk plan (generation G)
 *   <p>/snapshot/<t>/<i>          = G when chunk i of generation G is in the sink
 *   <p>/skip/<t>                  G when G > A: drop t's changes committed before G
 *   <p>/skip                      the largest of those (0: none)
 * A chunk is one sink transaction: its rows and its mark commit together, so after a crash a
 * chunk is either entirely in the sink and marked, or absent.
 */
#include "core/snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/governance.h"
#include "core/log.h"

#define APPLY_SLICE 4096
#define WORKER_BUFFER_BYTES (32u << 20) /* past this, a chunk streams into its open transaction */
#define LOG_INTERVAL_US 5000000

typedef struct snap_tbl {
  od_snap_table *t;
  od_snap_plan plan;
  od_pos gen;
  bool whole;        /* (re)copied whole in this run: initialised (truncated, marks) first */
  bool truncate;
  bool complete;     /* every chunk already in the sink */
  bool load;         /* chunks go through the sink's load() (bulk loading), not apply() */
  bool binary;       /* ... with values in the source's binary form */
  atomic_bool upsert; /* the target held rows of a chunk: apply() from then on */
  atomic_bool audited; /* its snapshot_table_start audit record is written */
  uint32_t done_before, todo;
  _Atomic uint32_t left;
  _Atomic uint64_t rows;
  int64_t started_us;
  od_snapshot_table_stats *st; /* progress slot, or NULL beyond the cap */
} snap_tbl;

typedef struct work_item {
  int tbl;
  uint32_t chunk;
} work_item;

typedef struct sink_slot {
  od_sink *sink;
  pthread_mutex_t lock;
  bool owned; /* opened here (closed here) */
} sink_slot;

typedef struct driver {
  const od_snapshot_env *env;
  const od_snapshot_ops *ops;
  od_snapshot_config cfg;
  od_snapshot_info info;
  const char *name; /* pipeline */
  snap_tbl *tbls;
  int ntbls;
  work_item *work;
  size_t nwork, next;
  pthread_mutex_t lock;
  sink_slot *sinks;
  int nsinks;
  atomic_bool failed;
  atomic_int running; /* worker threads not finished yet */
  pthread_cond_t finished; /* signalled (under lock) when `running` drops to 0 */
  int rc;
  od_error err;
} driver;

typedef struct worker {
  driver *d;
  int idx;
  od_snap_reader *reader;
  pthread_t thread;
  bool started;
  od_arena arena;
  od_change *buf;
  size_t n, cap;
  sink_slot *slot;
  bool holding, txn_open;
  bool loading;      /* the chunk in flight goes through load() */
  bool direct;       /* the worker's sink is its own: rows go to load() as they are read */
  snap_tbl *cur;
  uint64_t chunk_rows;
} worker;

static void mark_key(char *out, size_t cap, const char *pipeline, const char *what, const char *table,
                     const char *leaf) {
  snprintf(out, cap, "%s/%s%s%s%s%s", pipeline, what, table ? "/" : "", table ? table : "", leaf ? "/" : "",
           leaf ? leaf : "");
}

/* Integer marks (plans) and position marks (view points, generations, skips). */
static int get_mark(driver *d, const char *what, const char *table, const char *leaf, uint64_t *out, od_error *err) {
  char key[512];
  mark_key(key, sizeof key, d->name, what, table, leaf);
  return od_sink_get_mark(d->env->sink, key, out, err);
}

static int get_pos(driver *d, const char *what, const char *table, const char *leaf, od_pos *out, od_error *err) {
  char key[512];
  mark_key(key, sizeof key, d->name, what, table, leaf);
  return od_sink_get_pos_mark(d->env->sink, key, out, err);
}

static int set_mark(od_sink *s, const char *name, const char *what, const char *table, const char *leaf,
                    uint64_t v, od_error *err) {
  char key[512];
  mark_key(key, sizeof key, name, what, table, leaf);
  return od_sink_set_mark(s, key, v, err);
}

static int set_pos(od_sink *s, const char *name, const char *what, const char *table, const char *leaf,
                   const od_pos *v, od_error *err) {
  char key[512];
  mark_key(key, sizeof key, name, what, table, leaf);
  return od_sink_set_pos_mark(s, key, v, err);
}

static int chunk_mark(driver *d, const snap_tbl *t, uint32_t i, od_pos *out, od_error *err) {
  char leaf[16];
  snprintf(leaf, sizeof leaf, "%u", i);
  return get_pos(d, "snapshot", t->t->name, leaf, out, err);
}

static void fail_once(driver *d, int rc, const od_error *err) {
  pthread_mutex_lock(&d->lock);
  if (!d->rc) {
    d->rc = rc;
    d->err = *err;
  }
  pthread_mutex_unlock(&d->lock);
  atomic_store(&d->failed, true);
}

static bool stopping(driver *d) { return atomic_load(&d->failed) || atomic_load(d->env->stop); }

/* 1234567 -> "1,234,567" */
static const char *grouped(uint64_t v, char *buf, size_t size) {
  char raw[32];
  int n = snprintf(raw, sizeof raw, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < size; i++) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = raw[i];
  }
  buf[o] = '\0';
  return buf;
}

/* ---- skips (tables copied under a later view) -------------------------------------------- */

void od_snapshot_skips_free(od_snapshot_skips *s) {
  if (!s) return;
  free(s->items);
  *s = (od_snapshot_skips){0};
}

static int add_skip(od_snapshot_skips *s, const char *name, const od_pos *until) {
  od_snapshot_skip *n = realloc(s->items, (size_t)(s->n + 1) * sizeof *n);
  if (!n) return OD_ENOMEM;
  s->items = n;
  snprintf(n[s->n].name, sizeof n[s->n].name, "%s", name);
  n[s->n].until = *until;
  s->n++;
  if (od_pos_lt(&s->max, until)) s->max = *until;
  return OD_OK;
}

bool od_snapshot_skips_has(const od_snapshot_skips *s, const char *schema, const char *name, const od_pos *start) {
  size_t sl = strlen(schema);
  for (int i = 0; i < s->n; i++) {
    const char *n = s->items[i].name;
    if (!strncmp(n, schema, sl) && n[sl] == '.' && !strcmp(n + sl + 1, name)) return od_pos_lt(start, &s->items[i].until);
  }
  return false;
}

/* A finished snapshot whose skip rules still matter (the checkpoint is below <p>/skip). */
static int load_skips(driver *d, const od_pos *start, od_snapshot_skips *skips, od_error *err) {
  int rc = d->ops->prepare(d->env->source, false, &d->info, err);
  for (int i = 0; rc == OD_OK && i < d->info.ntables; i++) {
    od_pos until;
    const char *name = d->info.tables[i].name;
    if ((rc = get_pos(d, "skip", name, NULL, &until, err))) break;
    if (od_pos_lt(start, &until) && add_skip(skips, name, &until))
      rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", d->name);
  }
  d->ops->finish(d->env->source);
  return rc;
}

/* ---- workers -------------------------------------------------------------------------------- */

static int acquire(worker *w, od_error *err) {
  if (!w->holding) {
    pthread_mutex_lock(&w->slot->lock);
    w->holding = true;
  }
  if (!w->txn_open) {
    int rc = w->slot->sink->ops->begin(w->slot->sink, err);
    if (rc) return rc;
    w->txn_open = true;
  }
  return OD_OK;
}

static void release(worker *w, bool rollback) {
  if (w->txn_open && rollback) w->slot->sink->ops->rollback(w->slot->sink);
  w->txn_open = false;
  if (w->holding) pthread_mutex_unlock(&w->slot->lock);
  w->holding = false;
}

static int flush(worker *w, od_error *err) {
  if (!w->n) return OD_OK;
  int rc = acquire(w, err);
  od_sink *s = w->slot->sink;
  for (size_t o = 0; rc == OD_OK && o < w->n; o += APPLY_SLICE) {
    size_t k = w->n - o < APPLY_SLICE ? w->n - o : APPLY_SLICE;
    rc = w->loading ? s->ops->load(s, w->buf + o, k, err) : s->ops->apply(s, w->buf + o, k, err);
  }
  w->n = 0;
  od_arena_reset(&w->arena);
  return rc;
}

static int on_rows(void *ctx, const od_change *rows, size_t n, od_error *err) {
  worker *w = ctx;
  if (w->loading && w->direct) {
    /* The sink copies what it needs during the call: no buffering. */
    int rc = acquire(w, err);
    if (!rc) rc = w->slot->sink->ops->load(w->slot->sink, rows, n, err);
    if (rc) return rc;
    w->chunk_rows += n;
    return atomic_load(w->d->env->stop) ? OD_FAIL(err, OD_ECANCELLED, "pipeline %s: stopping", w->d->name) : OD_OK;
  }
  if (w->n + n > w->cap) {
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->n + n) cap *= 2;
    od_change *b = realloc(w->buf, cap * sizeof *b);
    if (!b) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: snapshot: out of memory", w->d->name);
    w->buf = b;
    w->cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    const od_change *src = &rows[i];
    od_change *dst = &w->buf[w->n];
    *dst = *src;
    uint16_t nc = src->newtup.ncolumns;
    od_value *vals = nc ? od_arena_alloc(&w->arena, sizeof(od_value) * nc) : NULL;
    if (nc && !vals) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: snapshot: out of memory", w->d->name);
    for (uint16_t c = 0; c < nc; c++) {
      vals[c] = src->newtup.values[c];
      if (vals[c].kind == OD_VALUE_TEXT || vals[c].kind == OD_VALUE_BINARY) {
        if (!(vals[c].data = od_arena_strndup(&w->arena, vals[c].data, vals[c].len)))
          return OD_FAIL(err, OD_ENOMEM, "pipeline %s: snapshot: out of memory", w->d->name);
      }
    }
    dst->newtup.values = vals;
    w->n++;
  }
  w->chunk_rows += n;
  if (w->arena.used + w->n * sizeof(od_change) >= WORKER_BUFFER_BYTES) return flush(w, err);
  return atomic_load(w->d->env->stop) ? OD_FAIL(err, OD_ECANCELLED, "pipeline %s: stopping", w->d->name) : OD_OK;
}

/* Read chunk `chunk` of t and commit it with its mark in one sink transaction. */
static int copy_once(worker *w, snap_tbl *t, uint32_t chunk, od_error *err) {
  driver *d = w->d;
  w->chunk_rows = 0;
  w->n = 0;
  od_arena_reset(&w->arena);
  w->loading = t->load && !atomic_load(&t->upsert);
  int rc = d->ops->read(w->reader, t->t, &t->plan, chunk, w->loading && t->binary, on_rows, w, err);
  if (!rc) rc = flush(w, err);
  if (!rc) rc = acquire(w, err); /* an empty chunk still records its mark */
  char leaf[16];
  snprintf(leaf, sizeof leaf, "%u", chunk);
  if (!rc) rc = set_pos(w->slot->sink, d->name, "snapshot", t->t->name, leaf, &t->gen, err);
  if (!rc) rc = w->slot->sink->ops->commit_data(w->slot->sink, err);
  if (!rc) w->txn_open = false;
  release(w, rc != OD_OK);
  return rc;
}

static int copy_chunk(worker *w, snap_tbl *t, uint32_t chunk, od_error *err) {
  driver *d = w->d;
  w->cur = t;
  int64_t now = od_mono_us();
  if (t->st) {
    int64_t zero = 0;
    atomic_compare_exchange_strong(&t->st->started_us, &zero, now);
  }
  if (!atomic_exchange(&t->audited, true))
    od_gov_snapshot_table(d->env->cfg->name, d->name, t->t->name, "snapshot_table_start", 0);
  int rc = copy_once(w, t, chunk, err);
  if (rc == OD_EDUPLICATE && w->loading) {
    /* The target held rows before odsync (a first attempt keeps them): this table's chunks
     * overwrite them by key from now on. */
    if (!atomic_exchange(&t->upsert, true))
      od_info("snapshot: %s: the target already holds rows with keys of chunk %u (%s); applying this table's "
              "chunks as upserts instead of bulk loading", t->t->name, chunk, err->msg);
    rc = copy_once(w, t, chunk, err);
  }
  if (rc) return rc;
  od_pipeline_stats *st = d->env->stats;
  atomic_fetch_add(&t->rows, w->chunk_rows);
  atomic_fetch_add(&st->snapshot.rows_done, w->chunk_rows);
  atomic_fetch_add(&st->snapshot.chunks_done, 1);
  if (d->env->sink_stats) atomic_fetch_add(&d->env->sink_stats->changes_applied, w->chunk_rows);
  if (t->st) {
    atomic_fetch_add(&t->st->rows_done, w->chunk_rows);
    atomic_fetch_add(&t->st->chunks_done, 1);
  }
  if (atomic_fetch_sub(&t->left, 1) == 1) {
    int64_t end = od_mono_us();
    if (t->st) atomic_store(&t->st->finished_us, end);
    od_gov_snapshot_table(d->env->cfg->name, d->name, t->t->name, "snapshot_table_done", atomic_load(&t->rows));
    char rows[32];
    double secs = (end - (t->st ? atomic_load(&t->st->started_us) : now)) / 1e6;
    od_info("snapshot: %s: copied %u chunk%s in this run (%u already done, %u in all), %s rows in %.1f s",
            t->t->name, t->todo, t->todo == 1 ? "" : "s", t->done_before, t->plan.nchunks,
            grouped(atomic_load(&t->rows), rows, sizeof rows), secs);
    /* The table is complete: what bulk loading left out (its primary key) is built now, in a
     * transaction of its own, while the other workers go on with other tables. The switch
     * transaction calls load_finish again, which then has nothing left to do. */
    if (t->load) {
      od_sink *s = w->slot->sink;
      int rc = acquire(w, err);
      if (!rc) rc = s->ops->load_finish(s, t->t->rel, err);
      if (!rc) rc = s->ops->commit_data(s, err);
      if (!rc) w->txn_open = false;
      release(w, rc != OD_OK);
      if (rc) return rc;
    }
  }
  return OD_OK;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  driver *d = w->d;
  od_log_set_thread_pipeline(d->name);
  od_error err;
  od_error_clear(&err);
  for (;;) {
    pthread_mutex_lock(&d->lock);
    bool have = !stopping(d) && d->next < d->nwork;
    work_item it = have ? d->work[d->next++] : (work_item){0};
    pthread_mutex_unlock(&d->lock);
    if (!have) break;
    int rc = copy_chunk(w, &d->tbls[it.tbl], it.chunk, &err);
    if (rc) {
      if (rc != OD_ECANCELLED || !atomic_load(d->env->stop)) fail_once(d, rc, &err);
      break;
    }
  }
  pthread_mutex_lock(&d->lock);
  if (atomic_fetch_sub(&d->running, 1) == 1) pthread_cond_signal(&d->finished);
  pthread_mutex_unlock(&d->lock);
  return NULL;
}

/* ---- planning -------------------------------------------------------------------------------- */

static int read_plan(driver *d, snap_tbl *t, od_error *err) {
  uint64_t m = 0, n = 0, lo = 0, step = 0;
  int rc;
  if ((rc = get_mark(d, "snapshot", t->t->name, "method", &m, err)) ||
      (rc = get_mark(d, "snapshot", t->t->name, "n", &n, err)) ||
      (rc = get_mark(d, "snapshot", t->t->name, "lo", &lo, err)) ||
      (rc = get_mark(d, "snapshot", t->t->name, "step", &step, err)))
    return rc;
  t->plan = (od_snap_plan){.method = (uint8_t)m, .nchunks = (uint32_t)n, .lo = (int64_t)lo, .step = (int64_t)step,
                           .estimated_rows = t->t->estimated_rows};
  return OD_OK;
}

/* How a plan cuts its table, for messages. */
static const char *method_name(uint8_t m) {
  switch (m) {
    case OD_SNAP_INT_KEY: return "key range";
    case OD_SNAP_CTID: return "physical position";
    case OD_SNAP_PARTITION: return "leaf partition";
    default: return "nothing";
  }
}

static void log_plan(const snap_tbl *t) {
  const od_snap_plan *p = &t->plan;
  if (p->method == OD_SNAP_INT_KEY && p->nchunks > 1)
    od_info("snapshot: %s: %u chunks by key range (%lld keys each from %lld)", t->t->name, p->nchunks,
            (long long)p->step, (long long)p->lo);
  else if (p->method == OD_SNAP_CTID && p->nchunks > 1)
    od_info("snapshot: %s: %u chunks by physical position (%lld pages each)", t->t->name, p->nchunks,
            (long long)p->step);
  else if (p->method == OD_SNAP_PARTITION)
    od_info("snapshot: %s: %u chunk%s by leaf partition", t->t->name, p->nchunks, p->nchunks == 1 ? "" : "s");
  else
    od_info("snapshot: %s: one chunk", t->t->name);
}

/* Decide, per table, what this run copies. `resume`: the sink holds part of this attempt. */
static int plan_tables(driver *d, od_snap_reader *r0, bool resume, bool any_prev, od_error *err) {
  const od_pos *A = &d->info.slot_point;
  for (int i = 0; i < d->ntbls; i++) {
    snap_tbl *t = &d->tbls[i];
    int rc;
    od_pos gen = od_pos_none();
    if (resume && (rc = get_pos(d, "snapshot", t->t->name, "gen", &gen, err))) return rc;
    if (resume && !od_pos_is_none(&gen) && od_pos_le(A, &gen)) {
      if ((rc = read_plan(d, t, err))) return rc;
      t->gen = gen;
      for (uint32_t c = 0; c < t->plan.nchunks; c++) {
        od_pos v;
        if ((rc = chunk_mark(d, t, c, &v, err))) return rc;
        if (od_pos_eq(&v, &gen)) t->done_before++;
      }
      if (t->done_before == t->plan.nchunks && t->plan.nchunks > 0) {
        t->complete = true;
        od_info("snapshot: %s: all %u chunks already done", t->t->name, t->plan.nchunks);
        continue;
      }
      if (t->plan.method == OD_SNAP_INT_KEY && t->plan.nchunks > 0) {
        /* Key ranges are idempotent under the stream's replay from A: copy what is missing. */
        t->todo = t->plan.nchunks - t->done_before;
        od_info("snapshot: %s: %u/%u chunks already done; copying the other %u", t->t->name, t->done_before,
                t->plan.nchunks, t->todo);
        continue;
      }
      od_info("snapshot: %s: %u/%u chunks were done, but a table cut by %s cannot be resumed chunk by chunk; "
              "emptying it and copying it again", t->t->name, t->done_before, t->plan.nchunks,
              method_name(t->plan.method));
      t->done_before = 0;
    }
    /* Copied whole under this run's view. */
    if ((rc = d->ops->plan(r0, t->t, d->cfg.chunk_rows, &t->plan, err))) return rc;
    log_plan(t);
    t->gen = d->info.point;
    t->whole = true;
    t->truncate = any_prev;
    t->todo = t->plan.nchunks;
  }
  return OD_OK;
}

/* One transaction before any chunk: the attempt's start mark, and for every table copied whole
 * its emptying (when an earlier attempt may have left rows), generation, plan and skip mark. */
static int init_tables(driver *d, bool resume, od_error *err) {
  od_sink *s = d->env->sink;
  int rc = s->ops->begin(s, err);
  if (rc) return rc;
  if (!resume) rc = set_pos(s, d->name, "snapshot/start", NULL, NULL, &d->info.slot_point, err);
  for (int i = 0; rc == OD_OK && od_sink_can(s, OD_SINK_BULK_LOAD) && i < d->ntbls; i++) {
    snap_tbl *t = &d->tbls[i];
    if (t->complete) continue;
    t->load = true;
    rc = s->ops->load_prepare(s, t->t->rel, d->info.binary_format, &t->binary, err);
  }
  for (int i = 0; rc == OD_OK && i < d->ntbls; i++) {
    snap_tbl *t = &d->tbls[i];
    if (!t->whole) continue;
    const char *n = t->t->name;
    if (t->truncate) {
      od_change tr = {.op = OD_OP_TRUNCATE, .rel = t->t->rel};
      rc = s->ops->apply(s, &tr, 1, err);
    }
    if (!rc) rc = set_pos(s, d->name, "snapshot", n, "gen", &t->gen, err);
    if (!rc) rc = set_mark(s, d->name, "snapshot", n, "method", t->plan.method, err);
    if (!rc) rc = set_mark(s, d->name, "snapshot", n, "n", t->plan.nchunks, err);
    if (!rc) rc = set_mark(s, d->name, "snapshot", n, "lo", (uint64_t)t->plan.lo, err);
    if (!rc) rc = set_mark(s, d->name, "snapshot", n, "step", (uint64_t)t->plan.step, err);
    od_pos none = od_pos_none();
    if (!rc) rc = set_pos(s, d->name, "skip", n, NULL, od_pos_lt(&d->info.slot_point, &t->gen) ? &t->gen : &none, err);
  }
  if (!rc) rc = s->ops->commit_data(s, err);
  if (rc) s->ops->rollback(s);
  return rc;
}

static int build_work(driver *d, od_error *err) {
  size_t total = 0;
  for (int i = 0; i < d->ntbls; i++) total += d->tbls[i].todo;
  d->work = calloc(total ? total : 1, sizeof *d->work);
  if (!d->work) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", d->name);
  od_snapshot_stats *ss = &d->env->stats->snapshot;
  /* Round robin over the tables (chunk 0 of each, then chunk 1, ...): every table makes progress
   * and the readers spread over several tables at once. */
  uint32_t maxn = 0;
  for (int i = 0; i < d->ntbls; i++)
    if (!d->tbls[i].complete && d->tbls[i].plan.nchunks > maxn) maxn = d->tbls[i].plan.nchunks;
  for (uint32_t c = 0; c < maxn; c++) {
    for (int i = 0; i < d->ntbls; i++) {
      snap_tbl *t = &d->tbls[i];
      if (t->complete || c >= t->plan.nchunks) continue;
      od_pos v;
      if (!t->whole) {
        int rc = chunk_mark(d, t, c, &v, err);
        if (rc) return rc;
        if (od_pos_eq(&v, &t->gen)) continue;
      }
      if (d->nwork < total) d->work[d->nwork++] = (work_item){.tbl = i, .chunk = c};
    }
  }
  for (int i = 0; i < d->ntbls; i++) {
    snap_tbl *t = &d->tbls[i];
    if (t->complete) continue;
    atomic_store(&t->left, t->todo);
    uint64_t est = t->plan.estimated_rows ? t->plan.estimated_rows : t->t->estimated_rows;
    if (t->plan.nchunks) est = est * t->todo / t->plan.nchunks;
    atomic_fetch_add(&ss->rows_estimated, est);
    atomic_fetch_add(&ss->chunks_total, t->plan.nchunks);
    atomic_fetch_add(&ss->chunks_skipped, t->done_before);
    int slot = atomic_load(&ss->ntables);
    if (slot < OD_SNAPSHOT_MAX_TABLES) {
      t->st = &ss->tables[slot];
      snprintf(t->st->name, sizeof t->st->name, "%.127s", t->t->name);
      atomic_store(&t->st->rows_estimated, est);
      atomic_store(&t->st->chunks_total, t->plan.nchunks);
      atomic_store(&t->st->chunks_skipped, t->done_before);
      atomic_store(&ss->ntables, slot + 1);
    }
  }
  return OD_OK;
}

static void reset_stats(od_snapshot_stats *ss) {
  atomic_store(&ss->ntables, 0);
  atomic_store(&ss->rows_done, 0);
  atomic_store(&ss->rows_estimated, 0);
  atomic_store(&ss->chunks_done, 0);
  atomic_store(&ss->chunks_total, 0);
  atomic_store(&ss->chunks_skipped, 0);
  for (int i = 0; i < OD_SNAPSHOT_MAX_TABLES; i++) {
    od_snapshot_table_stats *t = &ss->tables[i];
    atomic_store(&t->rows_done, 0);
    atomic_store(&t->chunks_done, 0);
    atomic_store(&t->started_us, 0);
    atomic_store(&t->finished_us, 0);
  }
}

/* Periodic progress lines (for logs that are not a terminal; the terminal gets bars). */
static void log_progress(driver *d) {
  for (int i = 0; i < d->ntbls; i++) {
    snap_tbl *t = &d->tbls[i];
    if (!t->st || !atomic_load(&t->st->started_us) || atomic_load(&t->st->finished_us)) continue;
    uint64_t done = atomic_load(&t->st->rows_done), est = atomic_load(&t->st->rows_estimated);
    double tsecs = (od_mono_us() - atomic_load(&t->st->started_us)) / 1e6;
    double rate = tsecs > 0 ? done / tsecs : 0;
    char a[32], b[32];
    od_info("snapshot: %s %s/%s rows (chunks %u/%u), %.0f rows/s, ETA %.0f s", t->t->name,
            grouped(done, a, sizeof a), grouped(est, b, sizeof b),
            atomic_load(&t->st->chunks_done) + t->done_before, t->plan.nchunks, rate,
            rate > 0 && est > done ? (est - done) / rate : 0);
  }
}

/* ---- the run ---------------------------------------------------------------------------------- */

static int open_sinks(driver *d, od_error *err) {
  unsigned maxw = d->env->open_writer && d->env->max_writers ? d->env->max_writers : 1;
  int n = d->cfg.workers < (int)maxw ? d->cfg.workers : (int)maxw;
  if (n < 1) n = 1;
  d->sinks = calloc((size_t)n, sizeof *d->sinks);
  if (!d->sinks) return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", d->name);
  for (int i = 0; i < n; i++) {
    pthread_mutex_init(&d->sinks[i].lock, NULL);
    d->nsinks = i + 1;
    if (i == 0) {
      d->sinks[0].sink = d->env->sink;
      continue;
    }
    int rc = d->env->open_writer(d->env->open_ctx, &d->sinks[i].sink, err);
    if (rc) return od_error_prefix(err, "pipeline %s: snapshot writer %d: ", d->name, i + 1);
    d->sinks[i].owned = true;
  }
  return OD_OK;
}

static void close_sinks(driver *d) {
  for (int i = 0; i < d->nsinks; i++) {
    if (d->sinks[i].owned && d->sinks[i].sink) d->sinks[i].sink->ops->close(d->sinks[i].sink);
    pthread_mutex_destroy(&d->sinks[i].lock);
  }
  free(d->sinks);
  d->sinks = NULL;
  d->nsinks = 0;
}

static int run_workers(driver *d, worker *ws, int nw, od_error *err) {
  atomic_store(&d->running, nw);
  for (int i = 0; i < nw; i++) {
    ws[i].d = d;
    ws[i].idx = i;
    ws[i].slot = &d->sinks[i % d->nsinks];
    ws[i].direct = d->nsinks >= nw;
    od_arena_init(&ws[i].arena, 1u << 20);
    if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
      OD_FAIL(err, OD_ENOMEM, "pipeline %s: cannot start a snapshot thread", d->name);
      fail_once(d, OD_ENOMEM, err);
      break;
    }
    ws[i].started = true;
  }
  for (int i = 0; i < nw; i++)
    if (!ws[i].started) atomic_fetch_sub(&d->running, 1);
  /* Wake when the last worker finishes (not on a polling tick: the snapshot's end is not
   * delayed), and every LOG_INTERVAL_US for the progress lines. */
  int64_t last_log = od_mono_us();
  pthread_mutex_lock(&d->lock);
  while (atomic_load(&d->running) > 0) {
    struct timespec ts = od_deadline_ms(100);
    pthread_cond_timedwait(&d->finished, &d->lock, &ts);
    if (atomic_load(&d->running) > 0 && od_mono_us() - last_log >= LOG_INTERVAL_US) {
      pthread_mutex_unlock(&d->lock);
      log_progress(d);
      last_log = od_mono_us();
      pthread_mutex_lock(&d->lock);
    }
  }
  pthread_mutex_unlock(&d->lock);
  for (int i = 0; i < nw; i++) {
    if (ws[i].started) pthread_join(ws[i].thread, NULL);
    release(&ws[i], true);
    od_arena_destroy(&ws[i].arena);
    free(ws[i].buf);
  }
  return OD_OK;
}

static int run(driver *d, od_pos *start, od_snapshot_skips *skips, od_error *err) {
  const od_snapshot_env *env = d->env;
  od_pos prev_start;
  int rc = get_pos(d, "snapshot/start", NULL, NULL, &prev_start, err);
  if (rc) return rc;
  d->info.resume_from = prev_start;
  if ((rc = d->ops->prepare(env->source, true, &d->info, err))) return rc;
  const od_pos A = d->info.slot_point;
  bool resume = !d->info.slot_created && !od_pos_is_none(&A) && od_pos_eq(&prev_start, &A);
  bool any_prev = !od_pos_is_none(&prev_start);
  char a_text[OD_POS_TEXT_MAX], v_text[OD_POS_TEXT_MAX];
  od_info("pipeline %s: %s the initial snapshot of %d table%s (stream from %s, view at %s, %d worker%s)", d->name,
          resume ? "resuming" : "starting", d->info.ntables, d->info.ntables == 1 ? "" : "s",
          od_pos_display(&A, a_text, sizeof a_text), od_pos_display(&d->info.point, v_text, sizeof v_text),
          d->cfg.workers, d->cfg.workers == 1 ? "" : "s");
  reset_stats(&env->stats->snapshot);
  atomic_store(&env->stats->snapshot.active, 1);
  atomic_store(&env->stats->state, OD_PIPELINE_SNAPSHOT);
  d->ntbls = d->info.ntables;
  d->tbls = calloc((size_t)(d->ntbls ? d->ntbls : 1), sizeof *d->tbls);
  int nw = d->cfg.workers < 1 ? 1 : d->cfg.workers;
  worker *ws = calloc((size_t)nw, sizeof *ws);
  if (!d->tbls || !ws) {
    free(ws);
    return OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", d->name);
  }
  for (int i = 0; i < d->ntbls; i++) {
    d->tbls[i].t = &d->info.tables[i];
    /* The schema registry versions the snapshot's relations like the stream's. */
    if ((rc = od_schema_relation(env->schema, d->info.tables[i].rel, err))) goto done;
  }
  for (int i = 0; i < nw; i++)
    if ((rc = d->ops->reader_open(env->source, &ws[i].reader, err))) goto done;
  if ((rc = plan_tables(d, ws[0].reader, resume, any_prev, err)) || (rc = init_tables(d, resume, err)) ||
      (rc = build_work(d, err)) || (rc = open_sinks(d, err)))
    goto done;
  run_workers(d, ws, nw, err);
  if (d->rc) {
    *err = d->err;
    rc = d->rc;
    goto done;
  }
  if (atomic_load(env->stop)) {
    rc = OD_FAIL(err, OD_ECANCELLED, "pipeline %s: stopped during the snapshot", d->name);
    goto done;
  }
  /* Every chunk is in the sink: the checkpoint becomes the stream's start, atomically with the
   * mark that says so. */
  od_pos skip_max = od_pos_none();
  for (int i = 0; i < d->ntbls; i++) {
    const od_pos *g = &d->tbls[i].gen;
    if (od_pos_lt(&A, g)) {
      if (add_skip(skips, d->tbls[i].t->name, g)) {
        rc = OD_FAIL(err, OD_ENOMEM, "pipeline %s: out of memory", d->name);
        goto done;
      }
      if (od_pos_lt(&skip_max, g)) skip_max = *g;
    }
  }
  od_sink *s = env->sink;
  if ((rc = s->ops->begin(s, err))) goto done;
  /* What bulk loading left out (a primary key) is built before the switch, in its transaction. */
  for (int i = 0; rc == OD_OK && od_sink_can(s, OD_SINK_BULK_LOAD) && i < d->ntbls; i++)
    rc = s->ops->load_finish(s, d->tbls[i].t->rel, err);
  if (!rc && !(rc = set_pos(s, d->name, "snapshot", NULL, NULL, &A, err)) &&
      !(rc = set_pos(s, d->name, "skip", NULL, NULL, &skip_max, err)))
    rc = s->ops->commit(s, &A, err);
  if (rc) {
    s->ops->rollback(s);
    goto done;
  }
  if (env->sink_stats) od_pos_cell_set(&env->sink_stats->durable, &A);
  *start = A;
  char rows[32];
  od_info("pipeline %s: initial snapshot done: %s rows in %llu chunks copied by this run (%llu done before); "
          "streaming from %s", d->name, grouped(atomic_load(&env->stats->snapshot.rows_done), rows, sizeof rows),
          (unsigned long long)atomic_load(&env->stats->snapshot.chunks_done),
          (unsigned long long)atomic_load(&env->stats->snapshot.chunks_skipped), a_text);
done:
  for (int i = 0; i < nw; i++) d->ops->reader_close(ws[i].reader);
  free(ws);
  close_sinks(d);
  d->ops->finish(env->source);
  atomic_store(&env->stats->snapshot.active, 0);
  return rc;
}

int od_snapshot_session(const od_snapshot_env *env, od_pos *start, od_snapshot_skips *skips, od_error *err) {
  *skips = (od_snapshot_skips){0};
  const od_snapshot_ops *ops = env->source->ops->snapshot;
  if (!ops) return OD_OK;
  driver d = {.env = env, .ops = ops, .name = env->name};
  ops->config(env->source, &d.cfg);
  if (!od_sink_can(env->sink, OD_SINK_MARKS | OD_SINK_TEXT_MARKS)) {
    if (od_pos_is_none(start) && d.cfg.mode == OD_SNAPSHOT_INITIAL)
      od_warn("pipeline %s: sink %s cannot record snapshot progress; no initial snapshot (existing rows are "
              "not copied)", d.name, env->sink->ops->type);
    return OD_OK;
  }
  od_pos done, skip_max;
  int rc;
  if ((rc = get_pos(&d, "snapshot", NULL, NULL, &done, err)) || (rc = get_pos(&d, "skip", NULL, NULL, &skip_max, err)))
    return rc;
  pthread_mutex_init(&d.lock, NULL);
  od_cond_init(&d.finished);
  if (!od_pos_is_none(start) || !od_pos_is_none(&done) || d.cfg.mode == OD_SNAPSHOT_NEVER) {
    if (od_pos_lt(start, &skip_max)) rc = load_skips(&d, start, skips, err);
  } else {
    rc = run(&d, start, skips, err);
  }
  free(d.tbls);
  free(d.work);
  pthread_mutex_destroy(&d.lock);
  pthread_cond_destroy(&d.finished);
  if (rc) od_snapshot_skips_free(skips);
  return rc;
}
