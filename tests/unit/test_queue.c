/* Unit tests for the chunk queue: FIFO order, caps in rows and bytes, close semantics, recycling. */
#include <pthread.h>
#include <time.h>

#include "core/clock.h"
#include "core/queue.h"
#include "odsync/position.h"
#include "odsync/error.h"
#include "test.h"

static od_chunk *chunk_with(od_queue *q, int rows, uint64_t end) {
  od_chunk *c = od_queue_take_free(q);
  for (int i = 0; i < rows; i++) {
    od_change *ch = od_chunk_add(c);
    ch->op = OD_OP_INSERT;
    ch->index = (uint32_t)i;
  }
  c->ends_txn = true;
  c->end = od_pos_legacy_lsn(end);
  return c;
}

TEST(fifo_order_and_accounting) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000, 1 << 20, 1), OD_OK);
  for (int i = 1; i <= 3; i++) CHECK_INT(od_queue_push(&q, chunk_with(&q, i, (uint64_t)i * 100), 0), OD_OK);
  size_t rows;
  od_queue_stats(&q, &rows, NULL);
  CHECK_INT(rows, 6);
  for (int i = 1; i <= 3; i++) {
    od_chunk *c = od_queue_pop(&q, 0, 0);
    CHECK(c != NULL);
    CHECK_INT(od_pos_to_u64(&c->end), i * 100);
    CHECK_INT(c->nchanges, i);
    od_queue_recycle(&q, c);
  }
  CHECK(od_queue_pop(&q, 0, 10) == NULL);
  od_queue_stats(&q, &rows, NULL);
  CHECK_INT(rows, 0);
  od_queue_destroy(&q);
}

TEST(full_queue_times_out_but_empty_queue_takes_any_size) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 10, 1 << 20, 1), OD_OK);
  /* One chunk larger than the cap is accepted into an empty queue (no deadlock)... */
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 50, 1), 0), OD_OK);
  /* ...and the next push waits, then reports AGAIN. */
  od_chunk *c = chunk_with(&q, 1, 2);
  CHECK_INT(od_queue_push(&q, c, 20), OD_AGAIN);
  od_queue_recycle(&q, od_queue_pop(&q, 0, 0));
  CHECK_INT(od_queue_push(&q, c, 0), OD_OK);
  od_queue_destroy(&q);
}

TEST(byte_cap_applies) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000000, 4096, 1), OD_OK);
  od_chunk *big = chunk_with(&q, 1, 1);
  CHECK(od_arena_alloc(&big->arena, 8192) != NULL);
  CHECK_INT(od_queue_push(&q, big, 0), OD_OK);
  od_chunk *c = chunk_with(&q, 1, 2);
  CHECK_INT(od_queue_push(&q, c, 10), OD_AGAIN);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
}

TEST(a_chunk_enters_only_when_it_fits_under_the_byte_cap) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000000, 100000, 1), OD_OK);
  od_chunk *a = chunk_with(&q, 1, 1);
  CHECK(od_arena_alloc(&a->arena, 60000) != NULL);
  CHECK_INT(od_queue_push(&q, a, 0), OD_OK);
  /* 60000 queued, under the cap; another 60000 would make 120000: it waits */
  od_chunk *b = chunk_with(&q, 1, 2);
  CHECK(od_arena_alloc(&b->arena, 60000) != NULL);
  CHECK_INT(od_queue_push(&q, b, 10), OD_AGAIN);
  size_t bytes;
  od_queue_stats(&q, NULL, &bytes);
  CHECK(bytes <= 100000);
  /* a small one still fits */
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 1, 3), 0), OD_OK);
  od_queue_recycle(&q, od_queue_pop(&q, 0, 0));
  od_queue_recycle(&q, od_queue_pop(&q, 0, 0));
  CHECK_INT(od_queue_push(&q, b, 0), OD_OK);
  od_queue_destroy(&q);
}

TEST(close_drains_then_returns_null_and_refuses_pushes) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000, 1 << 20, 1), OD_OK);
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 2, 7), 0), OD_OK);
  od_queue_close(&q);
  CHECK(od_queue_closed(&q));
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 1, 8), 0), OD_ECANCELLED);
  od_chunk *c = od_queue_pop(&q, 0, 0);
  CHECK(c != NULL);
  CHECK_INT(od_pos_to_u64(&c->end), 7);
  od_queue_recycle(&q, c);
  CHECK(od_queue_pop(&q, 0, 1000) == NULL); /* at once, not after the timeout */
  od_queue_destroy(&q);
}

TEST(recycled_chunks_are_clean_and_reused) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000, 1 << 20, 1), OD_OK);
  od_chunk *c = chunk_with(&q, 3, 9);
  c->heartbeat = true;
  c->ntxns = 2;
  od_queue_recycle(&q, c);
  od_chunk *again = od_queue_take_free(&q);
  CHECK(again == c);
  CHECK_INT(again->nchanges, 0);
  CHECK_INT(again->ntxns, 0);
  CHECK(!again->ends_txn && !again->heartbeat);
  CHECK_INT(od_pos_to_u64(&again->end), 0);
  CHECK_INT(again->arena.used, 0);
  od_queue_recycle(&q, again);
  od_queue_destroy(&q);
}

typedef struct {
  od_queue *q;
  int n;
} producer_arg;

static void *producer(void *arg) {
  producer_arg *a = arg;
  for (int i = 1; i <= a->n; i++) {
    od_chunk *c = chunk_with(a->q, 7, (uint64_t)i);
    while (od_queue_push(a->q, c, 50) == OD_AGAIN) {
    }
  }
  od_queue_close(a->q);
  return NULL;
}

TEST(producer_and_consumer_threads_see_every_chunk_in_order) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 20, 1 << 20, 1), OD_OK); /* small cap: the producer blocks often */
  producer_arg a = {&q, 2000};
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, producer, &a), 0);
  uint64_t expect = 1;
  od_chunk *c;
  while ((c = od_queue_pop(&q, 0, 1000))) {
    if (od_pos_to_u64(&c->end) != expect) break;
    expect++;
    od_queue_recycle(&q, c);
  }
  pthread_join(t, NULL);
  CHECK_INT(expect, 2001);
  od_queue_destroy(&q);
}

/* Several consumers (one per sink): each sees every chunk in order; a chunk returns to the pool
 * only when every consumer recycled it; the cap counts chunks some consumer has not popped, so the
 * slowest consumer sets the pace. */
TEST(broadcast_to_several_consumers) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 10, 1 << 20, 2), OD_OK);
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 6, 1), 0), OD_OK);
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 6, 2), 0), OD_OK);
  /* consumer 0 takes both, consumer 1 none yet: the queue is still full for the producer */
  od_chunk *a0 = od_queue_pop(&q, 0, 0), *b0 = od_queue_pop(&q, 0, 0);
  CHECK(a0 && b0);
  CHECK_INT(od_pos_to_u64(&a0->end), 1);
  CHECK_INT(od_pos_to_u64(&b0->end), 2);
  CHECK(od_queue_empty(&q, 0));
  CHECK(!od_queue_empty(&q, 1));
  od_chunk *c = chunk_with(&q, 1, 3);
  CHECK_INT(od_queue_push(&q, c, 10), OD_AGAIN);
  od_chunk *a1 = od_queue_pop(&q, 1, 0);
  CHECK(a1 == a0); /* the same chunk, shared */
  size_t rows;
  od_queue_stats(&q, &rows, NULL);
  CHECK_INT(rows, 6); /* the second chunk is still unpopped by consumer 1 */
  CHECK_INT(od_queue_push(&q, c, 0), OD_OK); /* below the cap again */
  od_queue_recycle(&q, a0);
  od_queue_recycle(&q, a1); /* both done: back to the pool */
  od_chunk *b1 = od_queue_pop(&q, 1, 0), *c1 = od_queue_pop(&q, 1, 0), *c0 = od_queue_pop(&q, 0, 0);
  CHECK(b1 == b0 && c1 == c && c0 == c);
  od_queue_recycle(&q, b0);
  od_queue_recycle(&q, b1);
  od_queue_recycle(&q, c0);
  od_queue_recycle(&q, c1);
  od_queue_stats(&q, &rows, NULL);
  CHECK_INT(rows, 0);
  od_queue_close(&q);
  CHECK(od_queue_pop(&q, 0, 0) == NULL && od_queue_pop(&q, 1, 0) == NULL);
  od_queue_destroy(&q);
}

/* The source's idle word (od_queue_set_idle): refused within the quiet period after a push of
 * changes, seen by a consumer only once it has popped everything, cleared by the next push, and it
 * ends a consumer's wait at once (a lingering batch commits without waiting for its delay). */
struct idle_waiter {
  od_queue *q;
  od_chunk *got;
  int64_t waited_us;
};

static void *wait_pop(void *arg) {
  struct idle_waiter *w = arg;
  int64_t t0 = od_mono_us();
  w->got = od_queue_pop(w->q, 0, 10000);
  w->waited_us = od_mono_us() - t0;
  return NULL;
}

TEST(idle_word_needs_quiet_and_a_drained_consumer_and_wakes_a_waiting_one) {
  od_queue q;
  CHECK_INT(od_queue_init(&q, 1000, 1 << 20, 2), OD_OK);
  CHECK(!od_queue_drained_idle(&q, 0));
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 3, 100), 0), OD_OK);
  od_queue_set_idle(&q, 60 * 1000000LL); /* pushed just now: not quiet for a minute */
  od_queue_recycle(&q, od_queue_pop(&q, 0, 0));
  CHECK(!od_queue_drained_idle(&q, 0));
  od_queue_set_idle(&q, 0);
  CHECK(od_queue_drained_idle(&q, 0));
  CHECK(!od_queue_drained_idle(&q, 1)); /* consumer 1 has not popped the chunk yet */
  od_queue_recycle(&q, od_queue_pop(&q, 1, 0));
  CHECK(od_queue_drained_idle(&q, 1));
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 1, 200), 0), OD_OK); /* changes again: not idle */
  CHECK(!od_queue_drained_idle(&q, 0));
  od_queue_recycle(&q, od_queue_pop(&q, 0, 0));
  od_queue_recycle(&q, od_queue_pop(&q, 1, 0));
  CHECK(!od_queue_drained_idle(&q, 0));
  /* A consumer waiting 10 s for a chunk returns (with none) as soon as the source is idle. */
  struct idle_waiter w = {.q = &q};
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, wait_pop, &w), 0);
  struct timespec pause = {0, 50 * 1000000L};
  nanosleep(&pause, NULL);
  od_queue_set_idle(&q, 0);
  pthread_join(t, NULL);
  CHECK(w.got == NULL);
  CHECK(w.waited_us < 5000000);
  CHECK(od_queue_drained_idle(&q, 0));
  /* Idle while a consumer still has a chunk to pop: drained for it only once it has popped it. */
  CHECK_INT(od_queue_push(&q, chunk_with(&q, 1, 300), 0), OD_OK);
  od_queue_recycle(&q, od_queue_pop(&q, 1, 0));
  od_queue_set_idle(&q, 0);
  CHECK(!od_queue_drained_idle(&q, 0));
  od_chunk *c = od_queue_pop(&q, 0, 0);
  CHECK(c != NULL);
  od_queue_recycle(&q, c);
  CHECK(od_queue_drained_idle(&q, 0));
  od_queue_destroy(&q);
}
