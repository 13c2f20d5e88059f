/* spool_feed.h — one sink's spool in one session: the reader spills into it, the sink's apply
 * thread reads it back, the pipeline asks it what may be acknowledged.
 *
 * Owns: the od_spool (core/spool.h) of one sink, the session number its records carry, the encode
 * and decode buffers and the relation copies decoded from earlier sessions (freed by close, after
 * the sink was closed), and the spool's gauges (bytes, full).
 * The fast path stays the broadcast queue (core/queue.h): only when the queue would block the
 * reader and a chunk at the head is waited for by this sink alone does that chunk leave the queue
 * into the spool (od_spool_relieve, reader thread; fsync once per call), so a slow or stopped sink
 * no longer holds the others. The apply thread drains its spool in order before it pops from memory
 * again (od_queue_pop_or_spool + od_spool_feed_read). When the spool is at its bound the reader
 * waits as before: that is backpressure, and `full` says which sink causes it.
 * Borrows the queue; never touches sinks or the source.
 */
#ifndef ODSYNC_SPOOL_FEED_H
#define ODSYNC_SPOOL_FEED_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/queue.h"
#include "core/spool.h"

typedef struct od_spool_feed od_spool_feed;

/* Opens (indexes) the spool in opt->dir for consumer `consumer`; `session` numbers this session. */
int od_spool_feed_open(const od_spool_options *opt, int consumer, uint64_t session, od_spool_feed **out,
                       od_error *err);
void od_spool_feed_close(od_spool_feed *f);
od_spool *od_spool_feed_spool(od_spool_feed *f);

/* Reader thread, before a push of `bytes` into a full queue: spill what the spooling sinks alone
 * hold up; *progress when something left the queue. OD_OK, or an error (a spool cannot be written). */
int od_spool_relieve(od_spool_feed *const *feeds, int n, od_queue *q, size_t bytes, bool *progress, od_error *err);

/* Apply thread: the next spooled chunk (a private chunk from the queue's pool: recycle it as any
 * other), or *out = NULL when the next record is not durable yet. OD_EIO when it is corrupt. */
int od_spool_feed_read(od_spool_feed *f, od_queue *q, od_chunk **out, od_error *err);
/* Apply thread, after a commit: delete the segments the sink now holds. */
void od_spool_feed_prune(od_spool_feed *f, const od_pos *held);

/* Apply thread, when its sink failed with the open batch `held` (n chunks, in order) not committed
 * and `held_pos` durable: put that batch back in front of what the sink reads next, durably when
 * it can — chunks read from the spool are read again (rewind), chunks from memory are appended to
 * the spool as a new episode based at held_pos, when nothing was spooled after them. OD_OK when
 * done; OD_AGAIN when the caller must keep them in memory (then nothing changed); an error when the
 * spool cannot be written (the session must end: the next one recovers from the spool). */
int od_spool_feed_requeue(od_spool_feed *f, od_queue *q, od_chunk *const *held, size_t n, const od_pos *held_pos,
                           od_error *err);
/* What the sink holds together with its spool (for the acknowledgement): see od_spool_covered. */
od_pos od_spool_feed_covered(od_spool_feed *f, const od_pos *held);
/* True while the spool is at its bound and the reader waits for this sink. */
bool od_spool_feed_full(od_spool_feed *f);

#endif
