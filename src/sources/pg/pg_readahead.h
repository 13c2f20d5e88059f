/* pg_readahead.h — the read-ahead buffer of catch-up's batch calls and the sizing rule of the next
 * call (pg_readahead.c; used by pg_catchup.c). Pure: no connection, no decoder. */
#ifndef ODSYNC_PG_READAHEAD_H
#define ODSYNC_PG_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sources/pg/pg_position.h"

/* The rows of one call read ahead of decoding, each stored as [uint32 length][pgoutput message]. */
typedef struct pg_readahead {
  char *data;      /* owned (pg_readahead_free) */
  size_t len, cap; /* bytes used / allocated; cap never exceeds the largest limit pushed with */
  od_lsn last_end; /* end LSN of the last Commit or Stream Commit message among the rows (0: none) */
  char last_type;  /* type byte of the last row ('E': the call ended inside a streamed transaction) */
} pg_readahead;

/* Append a row; false (nothing appended) when it would take the buffer past `limit` bytes, when it
 * is larger than 4 GiB, or when memory ran out. */
bool pg_readahead_push(pg_readahead *b, const char *row, size_t n, size_t limit);

/* The row at byte offset *off (0 for the first); advances *off. false past the last row. */
bool pg_readahead_next(const pg_readahead *b, size_t *off, const char **row, size_t *n);

/* Empty the buffer (keeps its memory). */
void pg_readahead_reset(pg_readahead *b);

void pg_readahead_free(pg_readahead *b);

/* upto_nchanges of the next batch call. `current`: the last call's; `configured`:
 * catchup_batch_changes; `most`: the largest allowed (at least `configured`); `span`: WAL bytes the
 * last call covered; `redecode`: WAL bytes between the slot's restart_lsn and where the last call
 * ended, which the next call decodes again. Doubles (up to `most`) while redecode > 2 × span; back to
 * `configured` once redecode <= span; unchanged in between. */
long pg_readahead_next_limit(long current, long configured, long most, int64_t span, int64_t redecode);

#endif
