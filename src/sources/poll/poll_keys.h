/* sources/poll/poll_keys.h — the delivered-key ledger of postgres_poll's checksum reconciliation.
 *
 * A source cannot read its sinks, so to find hard DELETEs by comparing key ranges it keeps, per
 * captured table, the set of primary keys it has delivered and not yet deleted: in memory (sorted,
 * for chunking) and in a journal file under state_dir. The rule that makes it correct across
 * SIGKILLs: the file always holds a SUPERSET of the keys any sink holds.
 *  - a key is added (and the journal fsync'd, pk_sync) BEFORE the transaction delivering its row
 *    is committed to the pipeline, so no sink can hold a key the file lacks;
 *  - a key found missing at the source is removed from the in-memory set at once (a delete is
 *    being delivered), but written as removed to the file only once every sink durably holds that
 *    delete (pk_acked). A crash in between leaves the key in the file: the next reconciliation sends
 *    its delete again, which is harmless; a missing delete would not be.
 *  - the file says from which sink position on it can be trusted (`V`: a full reload cycle's end,
 *    or nothing after a reset for an initial load) and the highest position a removal was written
 *    for (`R`); a sink checkpoint below either (a sink restored from a backup), a missing or foreign
 *    file makes pk_load report "untrusted" and the caller runs one full reload cycle instead.
 * Key parts are the text forms of the key columns (in column order); the order is the tuple order
 * with integer parts compared as numbers and every other part bytewise (PostgreSQL's "C" collation).
 *
 * Ownership: a pk_ledger owns its tables, keys, pending removals and the journal's descriptor until
 * pk_free. Never touches: the database, the pipeline, sinks.
 */
#ifndef ODSYNC_POLL_KEYS_H
#define ODSYNC_POLL_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"
#include "odsync/position.h"

#define PK_MAX_PARTS 16

typedef struct pk_table {
  char *name; /* schema.table, owned */
  int nparts;
  bool numeric[PK_MAX_PARTS]; /* part compared as a 64-bit integer (smallint/integer/bigint) */
  char **keys;                /* sorted, unique after pk_normalize; each a block of nparts NUL-ended strings */
  size_t n, cap;
  char **adds; /* added since the last normalize (unsorted, may repeat) */
  size_t nadds, capadds;
} pk_table;

typedef struct pk_removal {
  int table;
  char *key; /* owned */
  od_pos end; /* the end of the transaction delivering the delete */
} pk_removal;

typedef struct pk_ledger {
  char path[1024];
  int fd; /* journal, appended to; -1 when not open */
  pk_table *tables;
  int ntables;
  char *out; /* journal lines not yet written */
  size_t outlen, outcap;
  pk_removal *rm;
  size_t nrm, caprm;
  od_pos valid_from, max_removed;
  bool unsynced;     /* lines were written since the last fsync */
  uint64_t records; /* lines in the journal since its last rewrite */
} pk_ledger;

void pk_init(pk_ledger *l, const char *path);
/* Create the ledger file's directory; 0 when it is writable, else an errno. */
int pk_dir_ready(const char *path);
/* Declare table `index` (in order, before pk_load). */
int pk_add_table(pk_ledger *l, const char *name, int nparts, const bool *numeric, od_error *err);
/* Read the journal and rewrite it compacted. from: the position the sinks hold (none: a fresh start,
 * the ledger is emptied). *trusted: the keys are a superset of every sink's keys. */
int pk_load(pk_ledger *l, const od_pos *from, const od_pos_kind *kind, bool *trusted, od_error *err);
/* Add the key made of parts[0..nparts) (copied) to table t (never reorders t->keys). */
int pk_add(pk_ledger *l, int t, const char *const *parts, od_error *err);
/* Sort and merge the added keys of table t into its key set. */
int pk_normalize(pk_table *t, od_error *err);
/* Remove keys[i] of table t (after pk_normalize) now; its journal line waits until `end` is acked. */
int pk_remove(pk_ledger *l, int t, size_t i, const od_pos *end, od_error *err);
/* Drop the removed (NULL) slots of t->keys. */
void pk_compact_keys(pk_table *t);
/* The ledger may be trusted from a sink position >= end (after a full reload cycle ending there). */
int pk_set_valid_from(pk_ledger *l, const od_pos *end, od_error *err);
/* Write what is buffered and fsync it (before a commit to the pipeline); may normalize tables. */
int pk_sync(pk_ledger *l, od_error *err);
/* Every sink holds `durable`: write the removals delivered up to it. */
int pk_acked(pk_ledger *l, const od_pos *durable, od_error *err);
void pk_free(pk_ledger *l);

/* The order of two keys of t; and the checksum term of a key: the first 8 bytes of the MD5 of its
 * parts joined by U+001F, as a big-endian signed 64-bit number (what PostgreSQL computes as
 * ('x' || left(md5(concat_ws(chr(31), ...)), 16))::bit(64)::bigint). */
int pk_key_cmp(const pk_table *t, const char *a, const char *b);
int64_t pk_key_hash(const pk_table *t, const char *key);
/* The i-th part of a key. */
const char *pk_key_part(const pk_table *t, const char *key, int i);

#endif
