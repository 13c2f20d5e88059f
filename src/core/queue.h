/* queue.h — chunks of changes and the bounded queue between a source reader and its sinks' appliers.
 *
 * Owns: every od_chunk it hands out (a pool of recycled chunks, each with its arena and change
 * array), and the FIFO between exactly one producer (reader thread) and N consumers (one apply
 * thread per sink): every consumer sees every chunk, in order (a broadcast queue). A chunk is
 * shared read-only by the consumers; it returns to the pool when the last of them recycles it.
 * Caps in rows and bytes over the chunks some consumer has not popped yet: a push into a full queue
 * waits, which stops the reader and so reaches the database as TCP backpressure; the slowest
 * consumer sets the pace. A push into an empty queue always succeeds, so one chunk larger than the
 * cap cannot deadlock. With spools (core/spool_feed.h) a chunk only one consumer still waits for may
 * leave that consumer's cursor into its spool (take_spill); the queue then counts, per consumer,
 * the spooled chunks it must read back before its next pop from memory (pop_or_spool).
 * Ownership: od_queue_take_free() gives the producer a chunk; od_queue_push() hands it to the
 * queue; od_queue_pop() lends it to one consumer (read-only: consumers never write a chunk);
 * od_queue_recycle() ends that consumer's loan (or returns an unpushed chunk to the pool).
 * It also carries the producer's word that the source is idle (od_queue_set_idle), so a consumer
 * holding a batch open for more rows can commit it instead of waiting for its delay.
 * Never touches: what the changes mean, sources, sinks.
 */
#ifndef ODSYNC_QUEUE_H
#define ODSYNC_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "odsync/change.h"

/* A sink mark (odsync/sink.h set_mark, or set_text_mark when `text` is set) to write in the sink
 * transaction that holds the last transaction ended in its chunk (key and text live in the chunk's
 * arena). */
typedef struct od_chunk_mark {
  const char *key;
  uint64_t value;   /* integer marks: 0 removes the mark */
  const char *text; /* non-NULL: a text mark (value unused) */
} od_chunk_mark;

typedef struct od_chunk {
  struct od_chunk *next;  /* the queue's link: consumers never write it */
  int pops_left;          /* consumers that have not popped it yet (queue-owned) */
  int refs;               /* consumers that have not recycled it yet (queue-owned) */
  bool queued;            /* pushed into the queue (queue-owned) */
  od_change *changes; /* array of cap entries; values live in arena */
  uint32_t nchanges, cap;
  od_arena arena;
  uint32_t ntxns;        /* transactions that end in this chunk */
  uint32_t boundary;     /* changes[0, boundary) end with the last transaction ended here */
  bool ends_txn;         /* boundary == nchanges and ntxns > 0: the chunk ends at a commit point */
  bool heartbeat;        /* no changes: `end` is an idle position that may be acknowledged */
  od_pos end;            /* when ntxns > 0 or heartbeat: the position to checkpoint (the end of the
                            last transaction ended here, or the idle position) */
  int64_t commit_time;   /* commit timestamp (µs since epoch) of the last transaction ended here */
  int64_t first_commit_time; /* ...and of the first one (end-to-end latency per transaction) */
  od_chunk_mark *marks;  /* marks of the last transaction ended here (incremental snapshots) */
  uint32_t nmarks, marks_cap;
  uint64_t xid;          /* source transaction id of the last transaction ended here (traces) */
  int64_t taken_us, pushed_us; /* monotonic: the reader took it from the pool / pushed it (traces) */
  od_pos prev_end;       /* set by push: the end of the last transaction ended in an earlier chunk */
  bool starts_clean;     /* set by push: no transaction continues into this chunk from an earlier one */
  bool from_spool;       /* read back from a sink's spool (core/spool_feed.h), never queued */
} od_chunk;

#define OD_QUEUE_CONSUMERS_MAX 16

typedef struct od_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  od_chunk *head, *tail;  /* pushed chunks some consumer still holds or has not popped */
  int nconsumers;
  od_chunk *cursor[OD_QUEUE_CONSUMERS_MAX]; /* next chunk each consumer pops (NULL: none yet) */
  od_chunk *pool;        /* recycled chunks */
  size_t pool_count;
  size_t rows, bytes;    /* queued */
  size_t max_rows, max_bytes;
  bool closed;
  /* Spools (core/spool_feed.h): chunks taken off a consumer's cursor into its spool, which it
   * reads before its next chunk from memory. */
  bool spill_on[OD_QUEUE_CONSUMERS_MAX];
  bool spill_eager[OD_QUEUE_CONSUMERS_MAX]; /* the consumer is down: spill its chunks even when not full */
  uint64_t spilled[OD_QUEUE_CONSUMERS_MAX]; /* spooled chunks the consumer has not read back yet */
  od_pos last_end;  /* push: end of the last transaction pushed */
  bool last_clean;  /* push: the last chunk pushed ended at a transaction boundary */
  /* The source has nothing more for now (od_queue_set_idle): set by the producer once it has been
   * quiet for a while, cleared by the next push of changes; `kicks` wakes waiting consumers. */
  bool source_idle;
  uint64_t kicks, seen_kicks[OD_QUEUE_CONSUMERS_MAX];
  int64_t last_data_push_us; /* monotonic: the last push of a chunk with changes */
} od_queue;

/* nconsumers: 1..OD_QUEUE_CONSUMERS_MAX. */
int od_queue_init(od_queue *q, size_t max_rows, size_t max_bytes, int nconsumers);
void od_queue_destroy(od_queue *q);

/* A clean chunk for the producer: from the pool, or newly allocated (NULL on out-of-memory). */
od_chunk *od_queue_take_free(od_queue *q);
/* Append a change slot to a chunk (grows the array). NULL on out-of-memory. */
od_change *od_chunk_add(od_chunk *c);
/* Add a mark (the key is copied into the chunk's arena). OD_OK or OD_ENOMEM. */
int od_chunk_add_mark(od_chunk *c, const char *key, uint64_t value);
/* Add a text mark (key and text are copied into the chunk's arena). OD_OK or OD_ENOMEM. */
int od_chunk_add_text_mark(od_chunk *c, const char *key, const char *text);
/* Bytes a chunk accounts for (arena + change array). */
size_t od_chunk_bytes(const od_chunk *c);

/* Hand a chunk to the queue: it enters while the queue holds fewer than max_rows rows and the
 * chunk's bytes fit under max_bytes, or when the queue is empty. OD_OK, OD_AGAIN when it still
 * does not fit after timeout_ms, OD_ECANCELLED when the queue is closed (the chunk is recycled). */
int od_queue_push(od_queue *q, od_chunk *c, int timeout_ms);
/* Consumer `consumer`'s next chunk, or NULL after timeout_ms (or at once when closed and it has
 * drained it). */
od_chunk *od_queue_pop(od_queue *q, int consumer, int timeout_ms);
/* A consumer is done with a chunk it popped (or the producer drops one it never pushed). */
void od_queue_recycle(od_queue *q, od_chunk *c);
/* Nothing ready for `consumer` (in memory or spooled). */
bool od_queue_empty(od_queue *q, int consumer);
/* The producer: the source reported it is idle (caught up, waiting for the sinks, or a keepalive
 * at the head). Marks the queue idle only if no chunk of changes was pushed in the last quiet_us
 * (a pause between two transactions under load is not idleness), and wakes waiting consumers. */
void od_queue_set_idle(od_queue *q, int64_t quiet_us);
/* The consumer has popped everything (nothing spooled either) and the source is idle since: a
 * batch kept open for more rows (linger) will get none soon. */
bool od_queue_drained_idle(od_queue *q, int consumer);
/* No more pushes; pops drain what is queued, then return NULL. */
void od_queue_close(od_queue *q);
bool od_queue_closed(od_queue *q);
/* Like od_queue_pop, but when the consumer has spooled chunks to read first, returns NULL at once
 * with *spooled set (the consumer reads its spool: core/spool_feed.h). */
od_chunk *od_queue_pop_or_spool(od_queue *q, int consumer, int timeout_ms, bool *spooled);
/* The spooling side (core/spool_feed.c). take_spill: when a chunk of `bytes` would not enter, the
 * oldest chunk only `consumer` still waits for leaves its cursor (it counts as popped; the caller
 * holds the loan, spools it, then recycles it) when its bytes are at most `room`; *first is set when
 * the consumer had nothing spooled; *no_room when it would spill (the queue is full or the
 * consumer is down) but the chunk does not fit `room`.
 * NULL when there is none. spill_add: n more chunks to read from the spool; spill_done: one read. */
od_chunk *od_queue_take_spill(od_queue *q, int consumer, size_t bytes, size_t room, bool *first, bool *no_room);
void od_queue_spill_add(od_queue *q, int consumer, uint64_t n);
void od_queue_spill_eager(od_queue *q, int consumer, bool eager);
void od_queue_spill_done(od_queue *q, int consumer);
/* Whether a chunk of `bytes` would wait to enter. */
bool od_queue_full_for(od_queue *q, size_t bytes);
/* Rows and bytes some consumer has not popped yet. */
void od_queue_stats(od_queue *q, size_t *rows, size_t *bytes);

#endif
