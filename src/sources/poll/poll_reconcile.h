/* sources/poll/poll_reconcile.h — postgres_poll's checksum reconciliation of one table
 * (`reconcile_mode: checksum`): finds hard DELETEs by comparing key-range chunks.
 *
 * The delivered-key ledger's sorted keys (poll_keys.h) are cut into chunks of chunk_rows keys; the
 * bounds of a chunk are its first key and the next chunk's first key (the first chunk is open below,
 * the last above). Inside the cycle's snapshot the count and the XOR of the keys' MD5-based hashes
 * of the source's rows in each chunk's key range are computed (one-column keys: all chunks in one
 * width_bucket ... GROUP BY pass; composite keys: one query per chunk); a chunk whose count and
 * checksum equal the ledger's is done. Only a differing chunk is fetched (its rows): a ledger key the
 * source no longer has becomes a delete, a source row the ledger lacks (not yet delivered, or missed
 * by the watermark) is delivered as an upsert. Ranges compare integer key columns as numbers and
 * every other key column as text in the "C" collation, on both sides.
 *
 * Ownership: borrows everything; the emitted change values live only during the callback.
 * Never touches: the sinks, the ledger's journal (pk_sync is the caller's).
 */
#ifndef ODSYNC_POLL_RECONCILE_H
#define ODSYNC_POLL_RECONCILE_H

#include <libpq-fe.h>

#include "sources/poll/poll_keys.h"
#include "sources/poll/pq_util.h"

typedef struct pr_emit {
  void *ctx;
  /* Deliver a delete of `key` (parts in key-column order) of table t. */
  int (*del)(void *ctx, pq_table *t, const pk_table *kt, const char *key, od_error *err);
  /* Deliver row `row` of r (all columns of t, in order) as an upsert; adds its key to the ledger. */
  int (*row)(void *ctx, pq_table *t, PGresult *r, int row, od_error *err);
} pr_emit;

typedef struct pr_stats {
  uint64_t chunks;  /* compared */
  uint64_t fetched; /* differed, rows fetched */
  uint64_t deletes, upserts;
} pr_stats;

/* Reconcile table t (ledger table ti) inside the caller's open snapshot transaction; deletes are
 * removed from the ledger as delivered in the transaction ending at `end`. */
int pr_reconcile_table(PGconn *c, const char *where, pq_table *t, pk_ledger *l, int ti, long chunk_rows,
                       const od_pos *end, const pr_emit *emit, pr_stats *st, od_error *err);

/* Whether a column of this SQL type is ordered as an integer (else as "C" text). */
bool pr_numeric_type(const char *type_name);

#endif
