/* odsync/source.h — the source adapter interface.
 *
 * A source captures committed changes and reports them, in commit order, through an
 * od_change_handler. It is driven by one reader thread (no internal threads of its own).
 * It never decides what is durable: the pipeline tells it, through ack(), the position every
 * sink holds, and the source may only confirm that much to the database.
 * Never calls exit(); every failure returns a status and fills od_error (retriable or not).
 */
#ifndef ODSYNC_SOURCE_H
#define ODSYNC_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"
#include "odsync/snapshot.h"

/* Callbacks a source calls while polling. Any callback returning non-zero stops the poll and
 * that status is returned from poll(). Change values are valid only during the call. */
typedef struct od_change_handler {
  void *ctx;
  int (*begin)(void *ctx, const od_txn_info *txn, od_error *err);
  int (*change)(void *ctx, const od_txn_info *txn, const od_change *change, od_error *err);
  int (*commit)(void *ctx, const od_txn_info *txn, od_error *err);
  /* Optional: a new relation version, before any change uses it. The callee may set the
   * key/has_primary_key flags (e.g. from the catalog); nothing else. */
  int (*relation)(void *ctx, od_relation *rel, od_error *err);
  /* Optional: the source has delivered everything before `pos` and no transaction is open, so
   * `pos` may be acknowledged once everything delivered so far is durable (idle heartbeat). */
  int (*idle)(void *ctx, const od_pos *pos, od_error *err);
} od_change_handler;

/* A problem found by check(); called once per problem, the message is complete and user-facing. */
typedef void (*od_problem_fn)(void *ctx, bool fatal, const char *msg);

typedef struct od_source od_source;

/* What a source reports about what the database keeps for it (optional op health()): the
 * pipeline copies it into metrics and /status. Sizes are bytes, -1 when unknown or unlimited. */
typedef struct od_source_health {
  int64_t retained_bytes; /* kept by the server for this source (PostgreSQL: WAL the slot holds back) */
  int64_t safe_bytes;     /* may still be written before the server drops what it keeps (safe_wal_size) */
  bool warning;           /* retained_bytes passed the source's warning threshold */
  char status[32];        /* the source's own word for it (PostgreSQL: wal_status), "" unknown */
  int64_t spilled_bytes;  /* decoded changes the server wrote to its own disk for this source since
                             odsync started (PostgreSQL 14+: pg_stat_replication_slots.spill_bytes) */
  int batch_decoding;     /* 1 while a backlog is read by batch decoding (PostgreSQL catch-up), 0 while
                             streaming, -1 unknown */
  int64_t catchups;       /* times the source entered batch decoding since odsync started (a session
                             that began behind, or a burst while streaming); -1 unknown */
} od_source_health;

typedef struct od_source_ops {
  const char *type; /* the config's source.type */
  /* The kind of every position this source makes and reads back (odsync/position.h). */
  const od_pos_kind *position;
  /* Validate the config section and allocate; no connection yet. *out is owned by the caller
   * and released with close(). */
  int (*open)(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err);
  /* Connect and inspect (server settings, privileges, tables, keys) without changing anything;
   * report each problem. Returns the number of fatal problems (0 = ready), or a negative status. */
  int (*check)(od_source *s, od_problem_fn problem, void *ctx, od_error *err);
  /* Connect, create what is missing (slot, publication) and start streaming after `from`
   * (the position the sinks hold; none = wherever the source's own bookkeeping says). A `from`
   * the source can no longer serve (older than what it kept) fails with OD_EGAP. */
  int (*start)(od_source *s, const od_pos *from, od_error *err);
  /* Deliver what is available within timeout_ms. OD_OK after delivering or when the timeout
   * passed; a failed connection returns a retriable error, after which start() may be called again. */
  int (*poll)(od_source *s, const od_change_handler *h, int timeout_ms, od_error *err);
  /* Everything up to and including `durable` is durable in every sink. Sends it to the server
   * when it changed or when a status is due (`force` sends now). Safe to call from a handler. */
  int (*ack)(od_source *s, const od_pos *durable, bool force, od_error *err);
  /* Disconnect and free. */
  void (*close)(od_source *s);
  /* Optional: the tables this source captures (or will, once it has created what it creates),
   * without changing anything: fn(ctx, schema, name, keyed) once per table, as the stream names
   * them; keyed: the stream identifies its rows by a key (primary key or replica identity index). */
  int (*tables)(od_source *s, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed), void *ctx,
                od_error *err);
  /* Optional: consistent initial snapshots (odsync/snapshot.h); NULL when the source has none. */
  const struct od_snapshot_ops *snapshot;
  /* Optional: the last health the source read (no I/O: it refreshes it itself while polling).
   * Returns false when it has nothing yet. */
  bool (*health)(od_source *s, od_source_health *out);
} od_source_ops;

struct od_source {
  const od_source_ops *ops;
};

#endif
