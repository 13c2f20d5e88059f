/* route.h — splits a batch of complete source transactions between parallel sink writers.
 *
 * Owns: its scratch (per-writer change arrays, hash sets, union-find), reused batch after batch.
 * The od_change entries it produces are shallow copies: their values still point into the
 * batch's chunks, which must stay alive until the writers are done.
 * Rules (writer 0 is the carrier: it applies and commits last, with the checkpoint, after the
 * helpers 1..n-1 committed; with helpers, it gets only the serial work):
 *  - a table is *serial* in a batch when it has no key, or the batch truncates it, or changes the
 *    key of one of its rows; all of a serial table's changes go to writer 0, in order (these are
 *    the changes that are not idempotent, so they must commit atomically with the checkpoint);
 *  - eventual: every other change goes to the writer chosen by the hash of (table, key), so
 *    changes to one key stay in order on one writer;
 *  - causal: transactions that touch a common key (or a common serial table) form one group
 *    (union-find over write sets); a group is applied whole, in commit order, by one writer, so a
 *    reader never sees a transaction without the ones it depends on; independent groups spread
 *    over the writers by size.
 * Never touches: sinks, threads, the queue.
 */
#ifndef ODSYNC_ROUTE_H
#define ODSYNC_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "core/queue.h"
#include "odsync/error.h"

/* OD_ROUTE_CARRIER: every change to writer 0, in order (a batch too small to be worth splitting). */
enum { OD_ROUTE_EVENTUAL = 0, OD_ROUTE_CAUSAL = 1, OD_ROUTE_CARRIER = 2 };

typedef struct od_router {
  int nwriters;
  od_change **lists;  /* lists[w]: changes for writer w (owned) */
  size_t *counts;     /* counts[w] */
  size_t *caps;
  /* scratch */
  uint64_t *hashes;   /* per change of the batch */
  size_t nhashes_cap;
  struct od_route_slot *slots; /* open-addressing table */
  size_t nslots;
  int *txn_parent, *txn_writer;
  size_t *txn_start, *txn_rows;
  size_t ntxn_cap;
  const od_change **flat; /* the batch's changes in order */
  size_t flat_cap;
} od_router;

int od_router_init(od_router *r, int nwriters);
void od_router_free(od_router *r);
/* Route the changes of the chunks (in order) for which keep() says true (keep NULL: all) into
 * r->lists: from change first_from of the first chunk (the tail of a chunk an earlier batch cut)
 * to before change last_to of the last chunk (OD_ROUTE_ALL: its end; a batch that ends at a
 * transaction end inside its last chunk). */
#define OD_ROUTE_ALL UINT32_MAX
int od_route_batch(od_router *r, int mode, od_chunk *const *chunks, size_t nchunks, uint32_t first_from,
                   uint32_t last_to, bool (*keep)(void *ctx, const od_change *ch), void *ctx, od_error *err);
/* The changes [*from, *to) of chunk j of such a batch (what od_route_batch routes from it). */
void od_route_span(od_chunk *const *chunks, size_t nchunks, size_t j, uint32_t first_from, uint32_t last_to,
                   uint32_t *from, uint32_t *to);

#endif
