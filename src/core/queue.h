/* queue.h — chunks of changes and the bounded queue between a source reader and a sink applier.
 *
 * Owns: every od_chunk it hands out (a pool of recycled chunks, each with its arena and change
 * array), and the FIFO between exactly one producer (reader thread) and one consumer (apply
 * thread). Caps in rows and bytes: a push into a full queue waits, which stops the reader and so
 * reaches the database as TCP backpressure. A push into an empty queue always succeeds, so one
 * chunk larger than the cap cannot deadlock.
 * Ownership: od_queue_take_free() gives the producer a chunk; od_queue_push() hands it to the
 * queue; od_queue_pop() hands it to the consumer; od_queue_recycle() returns it to the pool.
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
  od_lsn value;     /* integer marks: 0 removes the mark */
  const char *text; /* non-NULL: a text mark (value unused) */
} od_chunk_mark;

typedef struct od_chunk {
  struct od_chunk *next;
  od_change *changes; /* array of cap entries; values live in arena */
  uint32_t nchanges, cap;
  od_arena arena;
  uint32_t ntxns;        /* transactions that end in this chunk */
  uint32_t boundary;     /* changes[0, boundary) end with the last transaction ended here */
  bool ends_txn;         /* boundary == nchanges and ntxns > 0: the chunk ends at a commit point */
  bool heartbeat;        /* no changes: `end_lsn` is an idle position that may be acknowledged */
  od_lsn end_lsn;        /* when ends_txn/heartbeat: the position to checkpoint */
  int64_t commit_time;   /* commit timestamp (µs since epoch) of the last transaction ended here */
  od_chunk_mark *marks;  /* marks of the last transaction ended here (incremental snapshots) */
  uint32_t nmarks, marks_cap;
} od_chunk;

typedef struct od_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  od_chunk *head, *tail;
  od_chunk *pool;        /* recycled chunks */
  size_t pool_count;
  size_t rows, bytes;    /* queued */
  size_t max_rows, max_bytes;
  bool closed;
} od_queue;

int od_queue_init(od_queue *q, size_t max_rows, size_t max_bytes);
void od_queue_destroy(od_queue *q);

/* A clean chunk for the producer: from the pool, or newly allocated (NULL on out-of-memory). */
od_chunk *od_queue_take_free(od_queue *q);
/* Append a change slot to a chunk (grows the array). NULL on out-of-memory. */
od_change *od_chunk_add(od_chunk *c);
/* Add a mark (the key is copied into the chunk's arena). OD_OK or OD_ENOMEM. */
int od_chunk_add_mark(od_chunk *c, const char *key, od_lsn value);
/* Add a text mark (key and text are copied into the chunk's arena). OD_OK or OD_ENOMEM. */
int od_chunk_add_text_mark(od_chunk *c, const char *key, const char *text);
/* Bytes a chunk accounts for (arena + change array). */
size_t od_chunk_bytes(const od_chunk *c);

/* Hand a chunk to the queue: it enters when it fits under max_rows and max_bytes, or when the queue
 * is empty. OD_OK, OD_AGAIN when it still does not fit after timeout_ms, OD_ECANCELLED when the
 * queue is closed (the chunk is recycled). */
int od_queue_push(od_queue *q, od_chunk *c, int timeout_ms);
/* Next chunk, or NULL after timeout_ms (or at once when closed and empty). */
od_chunk *od_queue_pop(od_queue *q, int timeout_ms);
void od_queue_recycle(od_queue *q, od_chunk *c);
bool od_queue_empty(od_queue *q);
/* No more pushes; pops drain what is queued, then return NULL. */
void od_queue_close(od_queue *q);
bool od_queue_closed(od_queue *q);
void od_queue_stats(od_queue *q, size_t *rows, size_t *bytes);

#endif
