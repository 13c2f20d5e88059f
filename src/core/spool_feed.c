/* spool_feed.c — see spool_feed.h. */
#include "core/spool_feed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

struct od_spool_feed {
  pthread_mutex_t wmu;  /* the write side: the reader's spills and the apply thread's requeue */
  od_spool *spool;
  int consumer;
  uint64_t session;
  bool need_base;       /* reader: the open episode started mid-transaction; its first end is its base */
  bool has_next_base;   /* the next episode's base is next_base (a failed sink held nothing uncommitted) */
  od_pos next_base;
  atomic_bool full;
  od_sbuf enc;          /* reader thread */
  od_sbuf dec;          /* apply thread */
  od_spool_rels *rels;  /* apply thread */
};

int od_spool_feed_open(const od_spool_options *opt, int consumer, uint64_t session, od_spool_feed **out,
                       od_error *err) {
  od_spool_feed *f = calloc(1, sizeof *f);
  if (!f || !(f->rels = od_spool_rels_new())) {
    free(f);
    return OD_FAIL(err, OD_ENOMEM, "spool: out of memory");
  }
  int rc = od_spool_open(opt, &f->spool, err);
  if (rc) {
    od_spool_rels_free(f->rels);
    free(f);
    return rc;
  }
  f->consumer = consumer;
  f->session = session;
  pthread_mutex_init(&f->wmu, NULL);
  *out = f;
  return OD_OK;
}

void od_spool_feed_close(od_spool_feed *f) {
  if (!f) return;
  pthread_mutex_destroy(&f->wmu);
  od_spool_close(f->spool);
  od_sbuf_free(&f->enc);
  od_sbuf_free(&f->dec);
  od_spool_rels_free(f->rels);
  free(f);
}

od_spool *od_spool_feed_spool(od_spool_feed *f) { return f->spool; }

static int spill_one(od_spool_feed *f, od_chunk *c, bool first, od_error *err) {
  od_spool_meta m = {0};
  if (first) {
    m.flags |= OD_SPOOL_EPISODE;
    f->need_base = !c->starts_clean && !f->has_next_base;
    if (f->has_next_base) { /* only idle positions (heartbeats) lie between the sink and this chunk */
      m.flags |= OD_SPOOL_BASE;
      m.base = f->next_base;
    } else if (c->starts_clean) {
      m.flags |= OD_SPOOL_BASE;
      m.base = c->prev_end;
    }
    f->has_next_base = false;
  }
  if (c->ntxns || c->heartbeat) {
    m.flags |= OD_SPOOL_END;
    m.end = c->end;
    if (f->need_base) { /* a sink holding this end holds the transaction this episode began inside */
      m.flags |= OD_SPOOL_BASE;
      m.base = c->end;
      f->need_base = false;
    }
  }
  f->enc.len = 0;
  int rc = od_spool_encode(c, f->session, &f->enc);
  if (rc) return OD_FAIL(err, rc, "spool %s: out of memory", od_spool_dir(f->spool));
  return od_spool_append(f->spool, &m, f->enc.data, f->enc.len, true, err);
}

int od_spool_relieve(od_spool_feed *const *feeds, int n, od_queue *q, size_t bytes, bool *progress, od_error *err) {
  *progress = false;
  bool wrote[OD_QUEUE_CONSUMERS_MAX] = {0};
  int rc = OD_OK;
  for (bool more = true; more && !rc;) {
    more = false;
    for (int i = 0; i < n && !rc; i++) {
      od_spool_feed *f = feeds[i];
      if (!f) continue;
      bool first = false, no_room = false;
      pthread_mutex_lock(&f->wmu);
      uint64_t room = od_spool_room(f->spool);
      od_chunk *c = od_queue_take_spill(q, f->consumer, bytes, (size_t)room, &first, &no_room);
      if (c) rc = spill_one(f, c, first, err);
      pthread_mutex_unlock(&f->wmu);
      if (!c) {
        /* Full: this sink's chunks should go to its spool (the queue waits for it alone, or it is
         * down) and there is no room left: memory fills, then the source waits. */
        if (no_room) atomic_store(&f->full, true);
        else if (room > od_spool_bytes(f->spool) / 4 || !od_queue_full_for(q, bytes ? bytes : 1))
          atomic_store(&f->full, false);
        continue;
      }
      atomic_store(&f->full, false);
      od_queue_recycle(q, c);
      wrote[i] = more = *progress = true;
    }
  }
  for (int i = 0; i < n; i++) {
    if (!wrote[i]) continue;
    pthread_mutex_lock(&feeds[i]->wmu);
    int src = od_spool_sync(feeds[i]->spool, err);
    pthread_mutex_unlock(&feeds[i]->wmu);
    if (src && !rc) rc = src;
  }
  return rc;
}

int od_spool_feed_requeue(od_spool_feed *f, od_queue *q, od_chunk *const *held, size_t n, const od_pos *held_pos,
                           od_error *err) {
  size_t k = 0; /* held[0, k) came from the spool */
  while (k < n && held[k]->from_spool) k++;
  for (size_t i = k; i < n; i++)
    if (held[i]->from_spool) return OD_AGAIN; /* not a spool prefix and a memory suffix */
  pthread_mutex_lock(&f->wmu);
  pthread_mutex_lock(&q->lock);
  bool later = q->spilled[f->consumer] > 0; /* chunks after the batch already in the spool */
  pthread_mutex_unlock(&q->lock);
  if (k < n && later) {
    pthread_mutex_unlock(&f->wmu);
    return OD_AGAIN;
  }
  int rc = OD_OK;
  for (size_t i = k; i < n && !rc; i++) {
    od_spool_meta m = {0};
    if (i == k) {
      m.flags = OD_SPOOL_EPISODE | OD_SPOOL_BASE;
      m.base = *held_pos;
    }
    if (held[i]->ntxns || held[i]->heartbeat) {
      m.flags |= OD_SPOOL_END;
      m.end = held[i]->end;
    }
    f->enc.len = 0;
    rc = od_spool_encode(held[i], f->session, &f->enc);
    if (rc) rc = OD_FAIL(err, rc, "spool %s: out of memory", od_spool_dir(f->spool));
    else rc = od_spool_append(f->spool, &m, f->enc.data, f->enc.len, true, err);
  }
  if (!rc && k < n) rc = od_spool_sync(f->spool, err);
  f->need_base = false;
  if (!later && k == n) { /* nothing of the stream after held_pos is spooled or held: start there */
    f->has_next_base = true;
    f->next_base = *held_pos;
  }
  if (!rc) {
    /* Counted before the reader may spill again: a spill seeing none counted would open an episode
     * of its own, so the requeued batch and the stream after it would be two episodes. */
    uint64_t again = k ? od_spool_rewind(f->spool) : 0;
    od_queue_spill_add(q, f->consumer, again + (n - k));
  }
  pthread_mutex_unlock(&f->wmu);
  return rc;
}

int od_spool_feed_read(od_spool_feed *f, od_queue *q, od_chunk **out, od_error *err) {
  *out = NULL;
  od_spool_meta m;
  int rc = od_spool_next(f->spool, &m, &f->dec, err);
  if (rc == OD_EOF) { /* spilled, not synced yet: the reader is writing it */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    return OD_OK;
  }
  if (rc) return rc;
  od_chunk *c = od_queue_take_free(q);
  if (!c) return OD_FAIL(err, OD_ENOMEM, "spool %s: out of memory", od_spool_dir(f->spool));
  rc = od_spool_decode(f->dec.data, f->dec.len, f->session, f->rels, c, err);
  if (rc) {
    od_queue_recycle(q, c);
    return od_error_prefix(err, "spool %s: ", od_spool_dir(f->spool)) ? rc : rc;
  }
  od_queue_spill_done(q, f->consumer);
  c->from_spool = true;
  *out = c;
  return OD_OK;
}

void od_spool_feed_prune(od_spool_feed *f, const od_pos *held) {
  od_error err;
  if (od_spool_empty(f->spool)) return;
  pthread_mutex_lock(&f->wmu);
  int rc = od_spool_prune(f->spool, held, &err);
  pthread_mutex_unlock(&f->wmu);
  if (rc) od_warn("%s (the spool keeps it; retried after the next commit)", err.msg);
}

od_pos od_spool_feed_covered(od_spool_feed *f, const od_pos *held) { return od_spool_covered(f->spool, held); }

bool od_spool_feed_full(od_spool_feed *f) { return atomic_load(&f->full); }
