/* queue.c — see queue.h. */
#include "core/queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "odsync/error.h"

#define POOL_MAX 64
#define CHUNK_ARENA_BLOCK (256 * 1024)

int od_queue_init(od_queue *q, size_t max_rows, size_t max_bytes, int nconsumers) {
  memset(q, 0, sizeof *q);
  if (nconsumers < 1 || nconsumers > OD_QUEUE_CONSUMERS_MAX) return OD_EINVAL;
  q->nconsumers = nconsumers;
  q->max_rows = max_rows ? max_rows : 100000;
  q->max_bytes = max_bytes ? max_bytes : (size_t)256 << 20;
  q->last_clean = true;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (pthread_mutex_init(&q->lock, NULL) || pthread_cond_init(&q->not_empty, &attr) ||
      pthread_cond_init(&q->not_full, &attr)) {
    pthread_condattr_destroy(&attr);
    return OD_ENOMEM;
  }
  pthread_condattr_destroy(&attr);
  return OD_OK;
}

static void chunk_free(od_chunk *c) {
  od_arena_destroy(&c->arena);
  free(c->changes);
  free(c);
}

void od_queue_destroy(od_queue *q) {
  od_chunk *lists[2] = {q->head, q->pool};
  for (int i = 0; i < 2; i++) {
    od_chunk *c = lists[i];
    while (c) {
      od_chunk *next = c->next;
      chunk_free(c);
      c = next;
    }
  }
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
  memset(q, 0, sizeof *q);
}

static void chunk_clear(od_chunk *c) {
  od_arena_reset(&c->arena);
  c->next = NULL;
  c->pops_left = c->refs = 0;
  c->queued = false;
  c->nchanges = 0;
  c->ntxns = 0;
  c->boundary = 0;
  c->ends_txn = false;
  c->heartbeat = false;
  c->end = od_pos_none();
  c->commit_time = 0;
  c->first_commit_time = 0;
  c->marks = NULL;
  c->nmarks = c->marks_cap = 0;
  c->xid = 0;
  c->taken_us = c->pushed_us = 0;
  c->prev_end = od_pos_none();
  c->starts_clean = false;
  c->from_spool = false;
}

static int add_mark(od_chunk *c, const char *key, uint64_t value, const char *text) {
  if (c->nmarks == c->marks_cap) {
    uint32_t cap = c->marks_cap ? c->marks_cap * 2 : 4;
    od_chunk_mark *m = od_arena_alloc(&c->arena, cap * sizeof *m);
    if (!m) return OD_ENOMEM;
    if (c->nmarks) memcpy(m, c->marks, c->nmarks * sizeof *m);
    c->marks = m;
    c->marks_cap = cap;
  }
  const char *k = od_arena_strndup(&c->arena, key, strlen(key));
  const char *t = text ? od_arena_strndup(&c->arena, text, strlen(text)) : NULL;
  if (!k || (text && !t)) return OD_ENOMEM;
  c->marks[c->nmarks++] = (od_chunk_mark){.key = k, .value = value, .text = t};
  return OD_OK;
}

int od_chunk_add_mark(od_chunk *c, const char *key, uint64_t value) { return add_mark(c, key, value, NULL); }

int od_chunk_add_text_mark(od_chunk *c, const char *key, const char *text) { return add_mark(c, key, 0, text); }

od_chunk *od_queue_take_free(od_queue *q) {
  pthread_mutex_lock(&q->lock);
  od_chunk *c = q->pool;
  if (c) {
    q->pool = c->next;
    q->pool_count--;
  }
  pthread_mutex_unlock(&q->lock);
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    od_arena_init(&c->arena, CHUNK_ARENA_BLOCK);
  }
  chunk_clear(c);
  c->taken_us = od_mono_us();
  return c;
}

od_change *od_chunk_add(od_chunk *c) {
  if (c->nchanges == c->cap) {
    uint32_t cap = c->cap ? c->cap * 2 : 256;
    od_change *grown = realloc(c->changes, cap * sizeof *grown);
    if (!grown) return NULL;
    c->changes = grown;
    c->cap = cap;
  }
  od_change *ch = &c->changes[c->nchanges++];
  memset(ch, 0, sizeof *ch);
  return ch;
}

size_t od_chunk_bytes(const od_chunk *c) {
  return c->arena.used + (size_t)c->nchanges * sizeof(od_change);
}

static void deadline_after(struct timespec *ts, int timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += timeout_ms / 1000;
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* A chunk enters while the queue holds fewer than max_rows rows and its bytes fit under max_bytes,
 * or when the queue is empty (a chunk larger than the cap must still pass): the queue never holds
 * more than max(max_bytes, one chunk) bytes, whatever the values' sizes. */
static bool is_full(const od_queue *q, size_t bytes) {
  return (q->rows || q->bytes) && (q->rows >= q->max_rows || q->bytes + bytes > q->max_bytes);
}

int od_queue_push(od_queue *q, od_chunk *c, int timeout_ms) {
  struct timespec deadline;
  deadline_after(&deadline, timeout_ms);
  size_t bytes = od_chunk_bytes(c);
  c->pushed_us = od_mono_us();
  pthread_mutex_lock(&q->lock);
  while (!q->closed && is_full(q, bytes)) {
    if (pthread_cond_timedwait(&q->not_full, &q->lock, &deadline) == ETIMEDOUT && is_full(q, bytes)) {
      pthread_mutex_unlock(&q->lock);
      return OD_AGAIN;
    }
  }
  if (q->closed) {
    pthread_mutex_unlock(&q->lock);
    od_queue_recycle(q, c);
    return OD_ECANCELLED;
  }
  c->next = NULL;
  c->queued = true;
  c->pops_left = c->refs = q->nconsumers;
  c->prev_end = q->last_end;
  c->starts_clean = q->last_clean;
  if (c->ntxns || c->heartbeat) q->last_end = c->end;
  q->last_clean = c->heartbeat || c->ends_txn || (c->nchanges == 0 && q->last_clean);
  if (q->tail)
    q->tail->next = c;
  else
    q->head = c;
  q->tail = c;
  for (int i = 0; i < q->nconsumers; i++)
    if (!q->cursor[i]) q->cursor[i] = c;
  q->rows += c->nchanges;
  q->bytes += bytes;
  if (c->nchanges) {
    q->source_idle = false;
    q->last_data_push_us = c->pushed_us;
  }
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
  return OD_OK;
}

od_chunk *od_queue_pop(od_queue *q, int consumer, int timeout_ms) {
  bool spooled;
  return od_queue_pop_or_spool(q, consumer, timeout_ms, &spooled);
}

od_chunk *od_queue_pop_or_spool(od_queue *q, int consumer, int timeout_ms, bool *spooled) {
  struct timespec deadline;
  deadline_after(&deadline, timeout_ms);
  pthread_mutex_lock(&q->lock);
  /* A kick since this consumer's last pop (od_queue_set_idle) ends the wait at once, however late. */
  while (!q->cursor[consumer] && !q->closed && !q->spilled[consumer] && q->kicks == q->seen_kicks[consumer]) {
    if (pthread_cond_timedwait(&q->not_empty, &q->lock, &deadline) == ETIMEDOUT) break;
  }
  q->seen_kicks[consumer] = q->kicks;
  *spooled = q->spilled[consumer] > 0;
  od_chunk *c = *spooled ? NULL : q->cursor[consumer];
  if (c) {
    q->cursor[consumer] = c->next;
    if (--c->pops_left == 0) {
      q->rows -= c->nchanges;
      q->bytes -= od_chunk_bytes(c);
      pthread_cond_signal(&q->not_full);
    }
  }
  pthread_mutex_unlock(&q->lock);
  return c;
}

static void to_pool(od_queue *q, od_chunk *c) { /* lock held; returns c when the pool is full */
  chunk_clear(c);
  c->next = q->pool;
  q->pool = c;
  q->pool_count++;
}

void od_queue_recycle(od_queue *q, od_chunk *c) {
  if (!c) return;
  od_chunk *spill = NULL; /* chunks the pool has no room for, freed outside the lock */
  pthread_mutex_lock(&q->lock);
  if (!c->queued) {
    if (q->pool_count < POOL_MAX) to_pool(q, c);
    else spill = c;
  } else if (--c->refs == 0) {
    /* Every consumer is done with it; release the done chunks at the head, in order. */
    while (q->head && q->head->refs == 0) {
      od_chunk *h = q->head;
      q->head = h->next;
      if (!q->head) q->tail = NULL;
      if (q->pool_count < POOL_MAX) {
        to_pool(q, h);
      } else {
        h->next = spill;
        spill = h;
      }
    }
  }
  pthread_mutex_unlock(&q->lock);
  while (spill) {
    od_chunk *next = spill->next;
    chunk_free(spill);
    spill = next;
  }
}

bool od_queue_empty(od_queue *q, int consumer) {
  pthread_mutex_lock(&q->lock);
  bool empty = q->cursor[consumer] == NULL && q->spilled[consumer] == 0;
  pthread_mutex_unlock(&q->lock);
  return empty;
}

void od_queue_set_idle(od_queue *q, int64_t quiet_us) {
  int64_t now = od_mono_us();
  pthread_mutex_lock(&q->lock);
  if (!q->source_idle && now - q->last_data_push_us >= quiet_us) {
    q->source_idle = true;
    q->kicks++;
    pthread_cond_broadcast(&q->not_empty);
  }
  pthread_mutex_unlock(&q->lock);
}

bool od_queue_drained_idle(od_queue *q, int consumer) {
  pthread_mutex_lock(&q->lock);
  bool idle = q->source_idle && q->cursor[consumer] == NULL && q->spilled[consumer] == 0;
  pthread_mutex_unlock(&q->lock);
  return idle;
}

bool od_queue_full_for(od_queue *q, size_t bytes) {
  pthread_mutex_lock(&q->lock);
  bool full = is_full(q, bytes);
  pthread_mutex_unlock(&q->lock);
  return full;
}

od_chunk *od_queue_take_spill(od_queue *q, int consumer, size_t bytes, size_t room, bool *first, bool *no_room) {
  pthread_mutex_lock(&q->lock);
  od_chunk *c = q->cursor[consumer];
  *no_room = q->spill_on[consumer] && c && c->pops_left == 1 && od_chunk_bytes(c) > room &&
             (is_full(q, bytes) || q->spill_eager[consumer]);
  if (!q->spill_on[consumer] || q->closed || !c || c->pops_left != 1 || (!is_full(q, bytes) && !q->spill_eager[consumer]) ||
      od_chunk_bytes(c) > room) {
    pthread_mutex_unlock(&q->lock);
    return NULL;
  }
  *first = q->spilled[consumer] == 0;
  q->cursor[consumer] = c->next;
  q->spilled[consumer]++;
  c->pops_left = 0;
  q->rows -= c->nchanges;
  q->bytes -= od_chunk_bytes(c);
  pthread_cond_signal(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return c;
}

void od_queue_spill_add(od_queue *q, int consumer, uint64_t n) {
  pthread_mutex_lock(&q->lock);
  q->spilled[consumer] += n;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

void od_queue_spill_eager(od_queue *q, int consumer, bool eager) {
  pthread_mutex_lock(&q->lock);
  q->spill_eager[consumer] = eager;
  pthread_mutex_unlock(&q->lock);
}

void od_queue_spill_done(od_queue *q, int consumer) {
  pthread_mutex_lock(&q->lock);
  if (q->spilled[consumer]) q->spilled[consumer]--;
  pthread_mutex_unlock(&q->lock);
}

void od_queue_close(od_queue *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->lock);
}

bool od_queue_closed(od_queue *q) {
  pthread_mutex_lock(&q->lock);
  bool closed = q->closed;
  pthread_mutex_unlock(&q->lock);
  return closed;
}

void od_queue_stats(od_queue *q, size_t *rows, size_t *bytes) {
  pthread_mutex_lock(&q->lock);
  if (rows) *rows = q->rows;
  if (bytes) *bytes = q->bytes;
  pthread_mutex_unlock(&q->lock);
}
