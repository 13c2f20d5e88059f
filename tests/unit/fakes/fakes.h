/* fakes.h — a fake source and a fake sink for unit tests of the pipeline's rules (skip, ack,
 * retry, batching, fan-out, transforms) without servers.
 *
 * fake source (type "fake"): transaction i (1..txns) inserts row i and updates row i-1 of table
 * public.t (id integer key, v text, secret text); positions of kind "fake" are counters, txn i
 * occupying [10i, 10i+5). start(from) resends the 3 transactions before `from` (as a real server may),
 * so the skip rule is exercised; after the last transaction it reports idle positions. Config keys:
 * txns (default 100), per_poll (transactions per poll, default 7), old_full (updates carry the full old
 * row, old_kind 'O', as under REPLICA IDENTITY FULL; default false).
 * fake sink (type "fakesink"): keeps rows, checkpoint and marks in a named in-memory store that
 * outlives the sink (sessions and restarts see it), applies a transaction's changes only at commit
 * (an atomic checkpoint), counts inserts of a key already present (duplicates: an exactly-once
 * violation) and updates of a missing row (losses). Config keys: store (required), fail_commit_at
 * (the Nth commit of the store fails once), retriable (that failure is retriable, default true),
 * down_opens (after that failure, the next N opens of the store fail retriably: a server that is down).
 * Owns: the stores (freed by fake_reset). Never touches: servers, files.
 */
#ifndef ODSYNC_TEST_FAKES_H
#define ODSYNC_TEST_FAKES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "odsync/position.h"
#include "odsync/sink.h"
#include "odsync/source.h"

#define FAKE_ROWS_MAX 4096

typedef struct fake_store {
  char name[32];
  pthread_mutex_t mu;
  char *rows[FAKE_ROWS_MAX + 1];    /* v of row id, NULL: absent */
  char *secret[FAKE_ROWS_MAX + 1];  /* secret of row id */
  int ncolumns_seen;                /* columns of the last relation applied (transforms) */
  char names_seen[128];             /* its column names, comma-separated */
  uint32_t types_seen[3];           /* its first three columns' type OIDs */
  od_pos checkpoint;
  uint64_t commits, changes, duplicates, losses;
  uint64_t fail_commit_at;          /* 0: never */
  bool fail_retriable, failed_once;
  uint64_t down_opens;              /* opens still to refuse after the injected failure */
  uint64_t opens_refused;
} fake_store;

extern const od_source_ops fake_source_ops;
extern const od_sink_ops fake_sink_ops;
extern const od_pos_kind fake_position;

/* Register both fakes (once per process). */
void fake_register(void);
/* The store `name` (created empty on first use). */
fake_store *fake_store_get(const char *name);
/* Forget every store. */
void fake_reset(void);
/* The largest position the fake source was acknowledged (shared by every fake source instance), and
 * whether any acknowledgement went backwards. */
uint64_t fake_acked(void);
bool fake_ack_regressed(void);
/* Position of the end of transaction i. */
static inline uint64_t fake_end(int i) { return (uint64_t)i * 10 + 5; }

#endif
