/* pg_burst_rule.h — the rule that tells a burst of transactions, which the stream should leave for
 * batch decoding, from one large transaction or a backlog the stream is already reducing, which it
 * should not (pg_burst.c; docs/adapters/postgres-source.md, "A burst while streaming"). Pure: it
 * reads numbers the caller measured, never a connection.
 * Owns: the window of reads (pg_burst_window, the caller's struct). */
#ifndef ODSYNC_PG_BURST_RULE_H
#define ODSYNC_PG_BURST_RULE_H

#include <stdbool.h>
#include <stdint.h>

/* Reads in a row that found the stream `threshold` bytes or more behind the server. */
typedef struct pg_burst_window {
  int reads;              /* reads in the window so far (0: none) */
  int64_t first_behind;   /* how far behind at its first read */
  uint64_t first_commits; /* transactions delivered by then */
} pg_burst_window;

enum {
  PG_BURST_MIN_READS = 3,     /* a window has at least this many reads before it can decide */
  PG_BURST_MAX_READS = 10,    /* ... and starts again after this many without a burst */
  PG_BURST_MIN_COMMITS = 20,  /* transactions delivered since its first read: many, not one large */
};

/* One read: `behind` bytes behind the server, `commits` transactions delivered so far. true: a
 * burst (the window starts again). A read below `threshold` empties the window. A window of at
 * least PG_BURST_MIN_READS reads decides for a burst when the stream is further behind than at its
 * first read and delivered PG_BURST_MIN_COMMITS transactions since: a count, not a rate, so that a
 * stream slowed by a loaded machine reaches it at a later read of the same window. */
bool pg_burst_window_read(pg_burst_window *w, int64_t behind, uint64_t commits, int64_t threshold);

#endif
