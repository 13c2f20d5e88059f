/* odsync/change.h — the change model: what one captured row event looks like.
 *
 * OWNERSHIP RULE (the only one): every byte an od_change points to — values, tuples, strings — is
 * owned by whoever produced the change and is valid only for the call it is passed to, unless the
 * receiver is told otherwise. The pipeline copies changes from the decoder (which points into the
 * network buffer) into an od_chunk arena; a chunk and everything in it is owned by the pipeline and
 * recycled once its changes are applied by the sink. Relations (od_relation) are immutable
 * versions owned by the decoder's relation cache and live until the decoder is destroyed, so a
 * change may keep its `rel` pointer for as long as the pipeline runs.
 *
 * Never touches: I/O, allocation policy, any particular source or sink.
 */
#ifndef ODSYNC_CHANGE_H
#define ODSYNC_CHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/position.h"

typedef enum od_op {
  OD_OP_INSERT = 'I',
  OD_OP_UPDATE = 'U',
  OD_OP_DELETE = 'D',
  OD_OP_TRUNCATE = 'T',
  OD_OP_READ = 'R',    /* row read by a snapshot */
  OD_OP_MESSAGE = 'M', /* logical decoding message: values[0] = prefix (text), values[1] = content */
} od_op;

typedef enum od_value_kind {
  OD_VALUE_NULL = 'n',
  OD_VALUE_UNCHANGED = 'u', /* unchanged TOASTed value: the sink keeps what it has */
  OD_VALUE_TEXT = 't',      /* the type's text output form; data is NUL-terminated */
  OD_VALUE_BINARY = 'b',    /* the type's binary send form */
} od_value_kind;

typedef struct od_value {
  const char *data; /* NULL for NULL/UNCHANGED; for TEXT, data[len] == '\0' */
  uint32_t len;
  uint8_t kind; /* od_value_kind */
} od_value;

typedef struct od_tuple {
  uint16_t ncolumns; /* 0: no tuple */
  od_value *values;
} od_tuple;

typedef struct od_column {
  char *name;
  uint32_t type_oid;
  int32_t typmod;
  bool key; /* part of the row identity the sink matches on (primary key or replica identity) */
  /* The source's SQL spelling of the type ("numeric(12,2)", "timestamp with time zone",
   * "public.mood"), filled by the source when it can; "" when unknown. */
  char type_name[128];
  /* The source's stable column number (PostgreSQL attnum: survives RENAME, never reused after
   * DROP), 0 when unknown. Lets a sink tell a rename from a drop plus an add. */
  int16_t attnum;
  /* Text form of the value the source fills into rows that existed before this column was added
   * (PostgreSQL: ADD COLUMN ... DEFAULT <non-volatile expression>, pg_attribute.attmissingval),
   * or NULL when such rows hold NULL or the source cannot tell. A sink that adds the column to a
   * table with rows sets it there, because the source never resends those rows. Owned by the
   * source; lives as long as the relation. */
  const char *missing_value;
} od_column;

typedef struct od_relation {
  uint32_t oid;
  char *schema;
  char *name;
  char replica_identity; /* the source's own word for the row identity (PostgreSQL: 'd' default,
                            'n' nothing, 'f' full, 'i' index); kept for the schema history only:
                            sinks read match_full_row */
  uint16_t ncolumns;
  od_column *columns;
  uint32_t version;              /* 1 for the first shape seen, +1 on every change of shape */
  struct od_relation *previous;  /* older version of the same table, or NULL */
  bool has_primary_key;          /* the key columns are a real primary key (sink may declare it) */
  /* The source's verdict on row identity: true when a sink must match a row on all of its columns
   * although some are marked key (PostgreSQL: REPLICA IDENTITY FULL over a table without a primary
   * key); false (the default) when the key columns, if any, identify a row. */
  bool match_full_row;
} od_relation;

/* A source transaction. Its positions follow the rule of odsync/position.h: it occupies [start, end)
 * of its source's order, and a sink whose checkpoint is c holds it exactly when start < c. */
typedef struct od_txn_info {
  uint64_t xid;          /* the source's transaction id (PostgreSQL: xid), 0 when it has none */
  od_pos start;          /* known at begin (PostgreSQL: the commit record's LSN) */
  od_pos end;            /* known at commit (may be at begin): what a sink stores once it holds it */
  int64_t commit_time;   /* microseconds since the Unix epoch */
  const char *origin;    /* replication origin name, or NULL (PostgreSQL: the Origin message of a
                            transaction a replication session applied, e.g. one odsync applied) */
  uint64_t origin_lsn;   /* with origin: the position the origin gave it (PostgreSQL: the LSN set by
                            pg_replication_origin_xact_setup, odsync: the source's commit LSN), else 0 */
} od_txn_info;

/* truncate_flags bit: the source table was dropped and re-created under its name (a new
 * relation, see core/schema.h): the sink's table starts over — a sink that has no state for
 * `rel` yet drops its table and creates it from `rel` (its old shape and rows belong to the dropped
 * table), inside the open transaction; then the truncate empties it as usual. */
#define OD_TRUNCATE_START_OVER 4

typedef struct od_change {
  uint8_t op;              /* od_op */
  char old_kind;           /* 0: no old tuple; 'K': key columns only; 'O': full old row */
  uint8_t truncate_flags;  /* for OD_OP_TRUNCATE: 1 cascade, 2 restart identity,
                              OD_TRUNCATE_START_OVER */
  const od_relation *rel;  /* NULL only for OD_OP_MESSAGE */
  od_tuple newtup;         /* insert/update/read: the after-image; message: prefix, content */
  od_tuple oldtup;         /* update/delete: before-image (see old_kind) */
  uint32_t index;          /* position of the change inside its transaction, from 0 */
  /* The start position of the change's transaction (odsync/position.h), or NULL for rows of an
   * initial snapshot. Set by the pipeline when it queues the change; lives as long as the change.
   * A sink that versions rows by position (one that cannot commit data and checkpoint atomically)
   * derives the version from it and `index`. */
  const od_pos *txn_start;
  /* The correlation id the producer gave the event (the http source: the event's correlation_id),
   * NUL-terminated, or NULL (every other source). Copied by the pipeline with the change; a sink
   * may record it (audit/lineage), the trace of the batch carries the last one. */
  const char *correlation_id;
} od_change;

#endif
