/* pg_xact_store.h — the messages of PostgreSQL transactions streamed while in progress (pgoutput
 * protocol v2), kept per top-level xid until their Stream Commit or Stream Abort.
 *
 * Owns: every open transaction's records — in memory while the store's memory (all open
 * transactions together) stays under `mem_budget`, then the transaction that would exceed it moves
 * to a spill file of its own, <dir>/<20-digit top xid>.xact, written through common/segfile.h
 * (framed, CRC-32, sealed with the `encryption:` keys when a keyring is given); the set of
 * aborted subtransactions of each transaction; the one replay in progress.
 * A record is one pgoutput message as the v1 decoder reads it (type byte, then the body without
 * the xid that protocol v2 puts after the type byte) and the xid the message carried.
 * Never touches: what a message means (pg_stream.c, pgoutput.c), sockets, the pipeline.
 * Spill files are scratch: they are never synced, and od_pg_xact_store_open removes every *.xact
 * file left in the directory (a previous run's: the server streams those transactions again from
 * the slot's restart_lsn), as od_pg_xact_store_reset removes this run's.
 * Pointer ownership: messages passed to append are copied; the message od_pg_xact_store_next
 * returns lives in the store until the next call, and the caller may write into it (a record is
 * returned once: the decoder terminates text values in place). The keyring is borrowed.
 * Threads: one (the source's reader thread).
 */
#ifndef ODSYNC_PG_XACT_STORE_H
#define ODSYNC_PG_XACT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"

typedef struct od_keyring od_keyring;
typedef struct od_pg_xact_store od_pg_xact_store;

/* A record with this xid is never dropped by a subtransaction's abort (Relation and Type
 * messages: pgoutput sends each once per top-level transaction, whichever subtransaction needed
 * it first, so a later change of another subtransaction may rely on it). */
#define OD_PG_XACT_KEEP 0u

typedef struct od_pg_xact_store_opts {
  const char *dir;          /* spill directory (created when missing) */
  size_t mem_budget;        /* bytes of records kept in memory over all open transactions */
  const od_keyring *kr;     /* borrowed, may be NULL */
} od_pg_xact_store_opts;

typedef struct od_pg_xact_stats {
  uint32_t open;            /* transactions open (streamed, not yet committed or aborted) */
  uint64_t mem_bytes;       /* bytes of records held in memory */
  uint64_t spilled_txns;    /* transactions that went to a spill file (since open) */
  uint64_t spilled_bytes;   /* bytes written to spill files (since open) */
} od_pg_xact_stats;

/* Creates the directory and removes the *.xact files found in it. */
int od_pg_xact_store_open(const od_pg_xact_store_opts *o, od_pg_xact_store **out, od_error *err);
/* Forgets every open transaction and the replay, removing their files. NULL is ignored. */
void od_pg_xact_store_free(od_pg_xact_store *st);
void od_pg_xact_store_reset(od_pg_xact_store *st);

/* Starts transaction `xid` (an empty one replaces nothing: a second start of an open xid is an
 * OD_EPROTOCOL error naming it). */
int od_pg_xact_store_begin(od_pg_xact_store *st, uint32_t xid, od_error *err);
bool od_pg_xact_store_has(const od_pg_xact_store *st, uint32_t xid);
/* Appends one record to open transaction `top` (OD_EPROTOCOL when it is not open; OD_EIO,
 * retriable, when the spill file cannot be written, naming it). */
int od_pg_xact_store_append(od_pg_xact_store *st, uint32_t top, uint32_t xid, const void *msg, size_t len,
                            od_error *err);
/* The same with the record given as two pieces (a message's type byte and its body past the v2
 * xid: no joined copy is made). In a transaction already spilled, a record of half a chunk or more
 * is written as a frame of its own at once, so a large value is never held by the store. */
int od_pg_xact_store_append2(od_pg_xact_store *st, uint32_t top, uint32_t xid, const void *head, size_t hlen,
                             const void *body, size_t blen, od_error *err);
/* Stream Abort: sub == top forgets the transaction (and its file); otherwise the records of
 * subtransaction `sub` are left out of its replay. An unknown top xid is ignored (nothing of it
 * was kept). Fails only without memory. */
int od_pg_xact_store_abort(od_pg_xact_store *st, uint32_t top, uint32_t sub, od_error *err);

/* Stream Commit: detaches transaction `xid` for replay (OD_EPROTOCOL when it is not open, or a
 * replay is still in progress). Then next() returns its records in the order they were appended,
 * without those of aborted subtransactions: 1 with *msg and *len set, 0 at the end, or an error.
 * end_replay forgets the replayed transaction and removes its file. */
int od_pg_xact_store_replay(od_pg_xact_store *st, uint32_t xid, od_error *err);
bool od_pg_xact_store_replaying(const od_pg_xact_store *st);
int od_pg_xact_store_next(od_pg_xact_store *st, char **msg, size_t *len, od_error *err);
void od_pg_xact_store_end_replay(od_pg_xact_store *st);

void od_pg_xact_store_stats(const od_pg_xact_store *st, od_pg_xact_stats *out);

#endif
