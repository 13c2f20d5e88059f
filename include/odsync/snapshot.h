/* odsync/snapshot.h — what a source offers for a consistent initial snapshot (optional part of
 * od_source_ops, see docs/SNAPSHOTS.md).
 *
 * A source that can snapshot exports a point-in-time view of its captured tables that lines up
 * exactly with a position of its change stream: everything committed before `point` is in the
 * view, everything at or after it comes through the stream. The pipeline (src/core/snapshot.c)
 * cuts each table into chunks by a plan, reads chunks through readers (one connection each, all
 * sharing the exported view) and applies each chunk to the sink in one sink transaction.
 *
 * Ownership: od_snapshot_info.tables, their relations and names are owned by the source and live
 * until the source is closed (the end of the session), so changes may point at them. Rows passed
 * to an od_snap_rows_fn are valid only during the call. A reader is owned by whoever opened it.
 * Never touches: sinks, the pipeline's threads (readers are used by one thread at a time).
 */
#ifndef ODSYNC_SNAPSHOT_H
#define ODSYNC_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "odsync/change.h"
#include "odsync/error.h"

typedef struct od_source od_source;

enum od_snapshot_mode { OD_SNAPSHOT_NEVER = 0, OD_SNAPSHOT_INITIAL = 1 };

typedef struct od_snapshot_config {
  int mode;            /* enum od_snapshot_mode */
  int workers;         /* readers (connections) copying in parallel */
  uint32_t chunk_rows; /* target rows per chunk */
} od_snapshot_config;

/* How a table is cut into chunks. Chunk 0 has no lower bound and the last chunk no upper bound,
 * so the chunks of a plan cover the whole table whatever was inserted after planning. */
enum od_snap_method {
  OD_SNAP_INT_KEY = 1, /* single integer key k: chunk i holds lo + i*step <= k < lo + (i+1)*step */
  OD_SNAP_CTID = 2,    /* physical pages: chunk i holds pages [i*step, (i+1)*step) */
  OD_SNAP_WHOLE = 3,   /* one chunk (nothing to cut by) */
  OD_SNAP_PARTITION = 4, /* a partitioned table: chunk i is the source's i-th leaf partition (its list is
                            the source's, fixed when the table list is read; lo/step unused) */
};

typedef struct od_snap_plan {
  uint8_t method;   /* od_snap_method */
  uint32_t nchunks; /* >= 1 */
  int64_t lo, step;
  uint64_t estimated_rows; /* rows the planner expects (for progress; not part of the cut) */
} od_snap_plan;

#define OD_SNAP_KEY_MAX 32 /* key columns at most (PostgreSQL's INDEX_MAX_KEYS) */

typedef struct od_snap_table {
  od_relation *rel;        /* owned by the source; mutable only before rows are read */
  char name[192];          /* "schema.table" */
  uint8_t method;          /* the od_snap_method this table can be cut by */
  uint64_t estimated_rows; /* statistics or an estimate; 0 when unknown */
  /* The key an incremental snapshot pages by: the columns that identify a row in the stream
   * (PostgreSQL: the primary key, or the replica identity index under REPLICA IDENTITY USING INDEX;
   * NOT NULL, unique), in the key's own column order, as indexes into rel->columns. nkey 0: no
   * usable key, and no_keyset says why ("it has no primary key", ...). */
  uint16_t nkey;
  uint16_t key_cols[OD_SNAP_KEY_MAX];
  char no_keyset[256];
  void *priv;              /* the source's */
} od_snap_table;

typedef struct od_snapshot_info {
  /* In (set by the core before prepare): where the stream of an earlier, unfinished attempt starts
   * (its `<p>/snapshot/start` mark), none when there was none. A source whose server keeps no slot
   * (MariaDB) resumes that attempt by returning it as slot_point (slot_created false) when its log
   * still holds it; a source with slots ignores it. */
  od_pos resume_from;
  bool slot_created;    /* the stream's slot was created now, exporting the view at `point` */
  od_pos slot_point;    /* where the stream starts: the new slot's consistent point, or the
                           existing slot's confirmed position */
  od_pos point;         /* the exported view's point (== slot_point when slot_created, else the
                           consistent point of a temporary slot); none when nothing was exported */
  od_snap_table *tables;
  int ntables;
  /* Identity of the binary value form read(..., binary) produces (PostgreSQL: "postgresql-<major>",
   * the types' send/receive format), so a sink can tell whether it takes those bytes as they are;
   * NULL when the source reads text only. */
  const char *binary_format;
  /* The settings that shape text values on this source's connections and that their input
   * functions read back (PostgreSQL: "DateStyle=ISO, MDY;IntervalStyle=postgres;TimeZone=UTC").
   * An incremental snapshot's progress mark holds key values as text; it is trusted only under the
   * same settings. "" when the source has none. */
  char text_form[192];
} od_snapshot_info;

typedef struct od_snap_reader od_snap_reader;

/* A batch of rows of a chunk, as OD_OP_READ changes with text values. */
typedef int (*od_snap_rows_fn)(void *ctx, const od_change *rows, size_t n, od_error *err);

/* Incremental snapshots (docs/SNAPSHOTS.md, "Incremental snapshots"): re-copy a table while the
 * stream runs, chunk by chunk on the key, each read bracketed by watermark messages written into
 * the stream. Used on a source instance of its own (its own ordinary connection), by one thread. */
/* Which transactions a read saw, in the source's own terms (PostgreSQL: pg_current_snapshot() of the
 * read's transaction). The core only stores it and asks the source's isnap ops about it. */
#define OD_VIS_BYTES 1280
typedef struct od_snap_visibility {
  _Alignas(8) unsigned char opaque[OD_VIS_BYTES];
} od_snap_visibility;

typedef struct od_isnap_ops {
  /* Fails (not retriable) when a message written now would not reach the pipeline's stream (e.g.
   * its replication slot does not exist yet). */
  int (*ready)(od_source *s, od_error *err);
  /* Write a transactional logical message (committed at once) that the stream will carry as an
   * OD_OP_MESSAGE change. Connects when needed; a lost connection is retriable. */
  int (*emit)(od_source *s, const char *prefix, const char *content, od_error *err);
  /* Read at most `limit` rows of a table with a key (t->nkey > 0) whose key tuple comes after
   * `after` (every row when after is NULL), in key order, in one statement (no lock beyond the
   * read's own), as OD_OP_READ changes of t->rel with text values; *vis tells which transactions
   * the read saw. `after` holds t->nkey text values (NUL-terminated, in t->key_cols order), as a
   * read printed them under the same text_form: the key columns' values of the last row of the
   * previous chunk. It is borrowed for the call. */
  int (*read_after)(od_source *s, const od_snap_table *t, const char *const *after, uint32_t limit,
                    od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx, od_error *err);
  /* Whether the read that filled `vis` saw the effects of transaction `xid` (od_txn_info.xid). */
  bool (*saw)(const od_snap_visibility *vis, uint64_t xid);
  /* Whether every read made after the one that filled `vis` will see `xid` too (so a reader of the
   * stream may stop tracking it). */
  bool (*settled)(const od_snap_visibility *vis, uint64_t xid);
} od_isnap_ops;

typedef struct od_snapshot_ops {
  void (*config)(od_source *s, od_snapshot_config *out);
  /* Connect and list the captured tables. With export_view: also export a view — create the
   * stream's slot exporting its snapshot when the slot does not exist yet (then the view and the
   * stream meet exactly at the slot's consistent point), else create a temporary slot on a
   * connection of its own and export that. The exported view lives until finish(). */
  int (*prepare)(od_source *s, bool export_view, od_snapshot_info *out, od_error *err);
  /* A reader: one connection inside a read-only transaction on the exported view. */
  int (*reader_open)(od_source *s, od_snap_reader **out, od_error *err);
  /* Cut a table (reads bounds under the view). */
  int (*plan)(od_snap_reader *r, const od_snap_table *t, uint32_t chunk_rows, od_snap_plan *out,
              od_error *err);
  /* Read one chunk, calling fn with batches of rows: values OD_VALUE_TEXT, or OD_VALUE_BINARY in
   * the info's binary_format when `binary` (only when binary_format is not NULL). In binary form,
   * a column of a user-defined type (PostgreSQL: type OID >= 16384) comes as the binary form of
   * its text (the text's bytes), the way sinks store such types. */
  int (*read)(od_snap_reader *r, const od_snap_table *t, const od_snap_plan *plan, uint32_t chunk, bool binary,
              od_snap_rows_fn fn, void *ctx, od_error *err);
  void (*reader_close)(od_snap_reader *r);
  /* Release the exported view and its connections (a temporary slot goes away). The stream's
   * slot stays; start() connects again. */
  void (*finish)(od_source *s);
  /* Optional: incremental snapshots; NULL when the source has none. */
  const od_isnap_ops *incremental;
} od_snapshot_ops;

#endif
