/* sinks/sqlite_ckpt.c — WAL checkpoints of the SQLite sink, off the writer's path.
 *
 * In WAL mode every commit appends to the -wal file; a checkpoint copies those pages into the
 * database file and syncs it, so that the WAL can start over. It is asked for once per CKPT_FRAMES
 * pages the WAL grew (each one costs a sync of the WAL and of the database file). SQLite's default runs that
 * checkpoint inside the COMMIT that pushes the WAL past 1000 pages, i.e. on the writer's path
 * while it holds the write lock (with 100,000-row snapshot chunks: in every commit, and its fsync
 * of the database file as well). Here the commit only signals (a wal hook on the sink's
 * connection) and a thread of the sink runs a PASSIVE checkpoint on a connection of its own, while
 * the writer goes on writing. Durability is unchanged: a commit is durable once its WAL frames are
 * synced (synchronous=FULL), which the commit itself still does; a checkpoint only moves committed
 * pages, and SQLite's WAL protocol makes it safe to run beside a writer and to crash at any point.
 *
 * The WAL starts over (is written again from its first frame) only when a transaction begins after
 * a checkpoint has copied all of it. A writer that keeps writing — a snapshot, chunk after chunk —
 * always begins while the checkpoint of the previous commit is still running, so the WAL would grow
 * by everything written. Hence sq_ckpt_before_begin(): once the WAL holds CKPT_RESTART_FRAMES or
 * more, the next transaction waits for the running checkpoint and then starts the WAL over. The WAL
 * stays below about 64 MB plus one transaction, and its file is reused (no new blocks to allocate,
 * cheaper syncs), at the cost of one short wait per ~64 MB written.
 *
 * Owns: the checkpoint thread and its connection (opened and closed here), the wal hook of the
 * sink's connection. Never touches: transactions, tables, the checkpoint row (_odsync_checkpoint,
 * which is unrelated: that is the source position). When SQLite is not thread-safe or the thread
 * cannot start, the sink keeps SQLite's own checkpoints in the commit.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/log.h"
#include "sinks/sqlite_internal.h"

#define CKPT_FRAMES 1000          /* SQLite's default wal_autocheckpoint, in pages */
#define CKPT_RESTART_FRAMES 16384 /* 64 MB of 4 KB pages: past this, start the WAL over */

struct sq_ckpt {
  sqlite3 *db; /* own connection: used by the thread only */
  const char *path;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake, idle;
  bool pending, running, stop, warned;
  int frames;    /* the WAL's size at the last commit, in pages */
  int asked_at;  /* the WAL's size when a checkpoint was last asked for (0 after the WAL restarted) */
  uint64_t runs; /* checkpoints run */
};

static void *ckpt_main(void *arg) {
  sq_ckpt *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (!c->pending && !c->stop) pthread_cond_wait(&c->wake, &c->lock);
    if (c->stop) break;
    c->pending = false;
    c->running = true;
    pthread_mutex_unlock(&c->lock);
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&c->lock);
    c->running = false;
    c->runs++;
    pthread_cond_broadcast(&c->idle);
    /* BUSY: another process checkpoints right now; the next commit signals again. */
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && !c->warned) {
      c->warned = true;
      od_warn("sqlite sink %s: background WAL checkpoint failed: %s (the WAL grows until one succeeds; "
              "commits are not affected)", c->path, sqlite3_errstr(rc));
    }
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* The wal hook: runs in the committing thread right after a commit, with the WAL's size. */
static int on_commit(void *arg, sqlite3 *db, const char *schema, int frames) {
  (void)db;
  (void)schema;
  sq_ckpt *c = arg;
  pthread_mutex_lock(&c->lock);
  c->frames = frames;
  if (frames < c->asked_at) c->asked_at = 0; /* the WAL started over */
  /* Once per CKPT_FRAMES pages written, not after every commit past the threshold: a checkpoint
   * syncs the database file (and the WAL), so one per commit of a busy writer tripled its syncs.
   * Past CKPT_RESTART_FRAMES every commit asks, so that the WAL is copied up to its end and
   * sq_ckpt_before_begin() can start it over. */
  if ((frames >= CKPT_FRAMES && frames - c->asked_at >= CKPT_FRAMES) || frames >= CKPT_RESTART_FRAMES) {
    c->asked_at = frames;
    c->pending = true;
    pthread_cond_signal(&c->wake);
  }
  pthread_mutex_unlock(&c->lock);
  return SQLITE_OK;
}

void sq_ckpt_before_begin(sq_sink *s) {
  sq_ckpt *c = s->ckpt;
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  if (c->frames >= CKPT_RESTART_FRAMES)
    while ((c->pending || c->running) && !c->stop) pthread_cond_wait(&c->idle, &c->lock);
  pthread_mutex_unlock(&c->lock);
}

void sq_ckpt_stop(sq_sink *s) {
  sq_ckpt *c = s->ckpt;
  if (!c) return;
  sqlite3_wal_hook(s->db, NULL, NULL);
  pthread_mutex_lock(&c->lock);
  c->stop = true;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
  sqlite3_close_v2(c->db);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->wake);
  pthread_cond_destroy(&c->idle);
  free(c);
  s->ckpt = NULL;
  sqlite3_wal_autocheckpoint(s->db, CKPT_FRAMES); /* SQLite's own again, for the close */
}

int sq_ckpt_start(sq_sink *s, od_error *err) {
  if (!sqlite3_threadsafe()) return OD_OK; /* keep SQLite's checkpoints in the commit */
  sq_ckpt *c = calloc(1, sizeof *c);
  if (!c) return OD_FAIL(err, OD_ENOMEM, "sqlite sink %s: out of memory", s->path);
  c->path = s->path;
  int rc = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    od_warn("sqlite sink %s: no background WAL checkpoints (%s); checkpointing in the commit", s->path,
            c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    sqlite3_close_v2(c->db);
    free(c);
    return OD_OK;
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->wake, NULL);
  pthread_cond_init(&c->idle, NULL);
  if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
    od_warn("sqlite sink %s: no background WAL checkpoints (cannot start a thread); checkpointing in the commit",
            s->path);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->idle);
    sqlite3_close_v2(c->db);
    free(c);
    return OD_OK;
  }
  s->ckpt = c;
  sqlite3_wal_hook(s->db, on_commit, c); /* replaces SQLite's autocheckpoint hook */
  return OD_OK;
}

uint64_t sq_ckpt_runs(const sq_sink *s) {
  if (!s->ckpt) return 0;
  pthread_mutex_lock(&s->ckpt->lock);
  uint64_t n = s->ckpt->runs;
  pthread_mutex_unlock(&s->ckpt->lock);
  return n;
}
