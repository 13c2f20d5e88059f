/* sinks/clickhouse_internal.h — shared state of the ClickHouse sink's files (private).
 *
 *   clickhouse.c        the vtable: open/close, the batch (begin/apply/commit), the checkpoint and
 *                       marks table, row versions
 *   clickhouse_table.c  one ch_rel per relation version: target table and view DDL, schema
 *                       changes, the batch's rows of that table, unchanged-TOAST filling, the insert
 *   clickhouse_types.c  PostgreSQL type -> ClickHouse type, a value -> its TabSeparated field
 *   clickhouse_http.c   the HTTP client (libcurl)
 *   clickhouse_load.c   bulk loading of initial-snapshot chunks (load_prepare / load / load_finish)
 *   clickhouse_keyless.c tables without a key: a change as signed rows identified by content hash,
 *                       version and sequence (see there); the snapshot sequence per table
 *
 * Ownership: the ch_sink owns the HTTP client, every ch_rel and every buffer. A ch_rel points at
 * (never owns) its od_relation, which the source keeps alive for the pipeline's life. Rows of the
 * open batch are copied (encoded) into the ch_rel's buffers, so changes are never kept past apply().
 */
#ifndef ODSYNC_SINKS_CLICKHOUSE_INTERNAL_H
#define ODSYNC_SINKS_CLICKHOUSE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/relmap.h"
#include "common/sqlbuf.h"
#include "odsync/sink.h"
#include "sinks/clickhouse_http.h"

/* How a column's values are written (clickhouse_types.c). */
enum ch_kind { CHK_STRING, CHK_INT, CHK_BOOL, CHK_FLOAT, CHK_DECIMAL, CHK_DATE, CHK_DATETIME, CHK_BYTES };

#define CH_FILL UINT32_MAX /* ch_cell.len of a value still to be read from the sink (unchanged TOAST) */
#define CH_NONE UINT32_MAX

typedef struct ch_cell {
  uint32_t off, len; /* TabSeparated field in ch_rel.data; len CH_FILL: to fill */
} ch_cell;

typedef struct ch_row {
  uint64_t version;
  uint64_t seq;      /* keyless tables: the row's sequence inside its version (clickhouse_keyless.c) */
  int8_t sign;       /* keyless tables: +1 a copy of the content added, -1 one removed */
  uint8_t deleted;
  bool superseded;   /* a later change of the same transaction replaced it: not inserted */
  uint32_t fill_key; /* row whose key names the sink row to fill CH_FILL cells from, or CH_NONE */
} ch_row;

typedef struct ch_rel {
  od_relmap_node node;     /* first member: the sink's map, keyed by rel */
  const od_relation *rel;  /* not owned; may be gone once the batch it came with is committed
                              (the initial snapshot's relations): only dereferenced while the
                              batch holds rows of it, and after `sig` matched on lookup */
  uint64_t sig;            /* the shape rel had (oid, version, columns): tells a reused address */
  uint64_t checked;        /* the batch (ch_sink.txn_seq) in which sig was last checked */
  uint16_t ncol;           /* rel->ncolumns, readable after rel is gone */
  struct ch_rel *next;     /* every ch_rel, newest first */
  char *table;             /* target table name (unquoted) */
  char *qtable;            /* `database`.`table` */
  uint8_t *kind;           /* ch_kind per column */
  uint16_t *keys;          /* key column indexes */
  int nkey;                /* 0 for a keyless table */
  bool keyless;            /* no key identifies a row (no primary key, or REPLICA IDENTITY FULL without
                              one): rows are signed copies of a content (clickhouse_keyless.c) */
  bool synced;             /* the target table matches rel (created or altered this session) */
  /* the open batch */
  ch_row *rows;
  size_t nrows, rows_cap;
  ch_cell *cells;          /* nrows * rel->ncolumns */
  od_sqlbuf data;          /* encoded fields */
  uint64_t *index;         /* open addressing: row + 1 of the latest row per key (low 32 bits; 0 =
                              empty) and the high half of its key hash (clickhouse_table.c) */
  size_t index_cap;
  bool any_fill;
  /* bulk-loaded snapshot rows of the open batch (clickhouse_load.c): TabSeparated lines, complete
   * with version and deleted flag, sent before `rows` by ch_rel_flush */
  od_sqlbuf bulk;
  size_t bulk_rows;
} ch_rel;

/* The next sequence number of keyless snapshot rows (version 0) of one target table, kept per table
 * name because one table's snapshot may arrive through several relation versions. */
typedef struct ch_seq {
  char *table;
  uint64_t next, committed; /* committed: as of the last commit (a rollback returns to it) */
  struct ch_seq *next_seq;
} ch_seq;

typedef struct ch_mark {
  char *key;
  uint64_t value;
  char *text; /* NULL: an integer mark */
} ch_mark;

typedef struct ch_sink {
  od_sink base;
  ch_http http;
  char *name;              /* the checkpoint's key: "<pipeline>" or "<pipeline>.<sink>" */
  char *database;
  char *view_suffix;
  char *qckpt;             /* `database`.`_odsync_checkpoint` */
  int server_major, server_minor;
  bool in_txn;
  uint64_t txn_seq;
  size_t buffer_bytes;     /* an open batch holding more is inserted before its commit */
  uint64_t last_written;   /* the checkpoint table's own row version, strictly increasing */
  od_relmap rels;
  ch_rel *all;             /* every ch_rel, newest first */
  ch_mark *marks;          /* set in the open batch */
  size_t nmarks, marks_cap;
  od_sqlbuf sql;           /* statements */
  od_sqlbuf body;          /* insert bodies */
  ch_seq *seqs;            /* keyless tables' snapshot sequences */
  uint64_t rows_sent, inserts;
} ch_sink;

/* clickhouse.c */
/* The version of a change's rows (see clickhouse.c: its transaction's position; 0 for the initial
 * snapshot). */
int ch_row_version(ch_sink *s, const od_change *c, uint64_t *out, od_error *err);
/* Run a statement; errors name `table` (may be NULL) and `what`. */
int ch_exec(ch_sink *s, const char *stmt, const char *table, const char *what, od_error *err);
/* Append a ClickHouse identifier in backquotes. */
void ch_ident(od_sqlbuf *b, const char *name);
/* Append a string literal in single quotes. */
void ch_literal(od_sqlbuf *b, const char *p, size_t n);

/* clickhouse_table.c */
int ch_rel_get(ch_sink *s, const od_relation *rel, ch_rel **out, od_error *err);
int ch_rel_change(ch_sink *s, ch_rel *r, const od_change *c, od_error *err);
/* Fill, insert and clear the batch's rows of r (one INSERT). */
int ch_rel_flush(ch_sink *s, ch_rel *r, od_error *err);
void ch_rel_clear(ch_rel *r);
/* The INSERT statement for r's columns, the version and the deleted flag, into s->sql. */
void ch_rel_insert_stmt(ch_sink *s, ch_rel *r);
/* TRUNCATE the target table (after flushing what the batch holds for it). */
int ch_rel_truncate(ch_sink *s, ch_rel *r, od_error *err);
void ch_rels_free(ch_sink *s);

/* A new row of r's open batch (cells empty); *out its index. */
int ch_row_new(ch_sink *s, ch_rel *r, uint64_t version, bool deleted, size_t *out, od_error *err);
/* Encode v into cell (row, col); errors name table and column. */
int ch_put_value(ch_sink *s, ch_rel *r, size_t row, uint16_t col, const od_value *v, od_error *err);

/* clickhouse_keyless.c */
#define CH_COL_HASH "_odsync_hash"
#define CH_COL_SEQ "_odsync_seq"
#define CH_COL_SIGN "_odsync_sign"
/* A change of a keyless table as signed rows of the open batch. */
int ch_keyless_change(ch_sink *s, ch_rel *r, const od_change *c, od_error *err);
/* Content hash: fold one encoded field into h (start with CH_HASH_SEED). */
#define CH_HASH_SEED 0xcbf29ce484222325ull
uint64_t ch_hash_field(uint64_t h, const char *p, size_t n);
/* The content hash of a batch row (every column's encoded field). */
uint64_t ch_keyless_hash(const ch_rel *r, size_t row);
/* The sequence counter of keyless snapshot rows of r's table (created on first use). */
ch_seq *ch_keyless_seq(ch_sink *s, const ch_rel *r, od_error *err);
/* At commit: every counter's position is kept; at rollback: returned to it. */
void ch_keyless_seqs_commit(ch_sink *s);
void ch_keyless_seqs_rollback(ch_sink *s);
void ch_keyless_seqs_free(ch_sink *s);

/* clickhouse_load.c */
int ch_load_prepare(od_sink *base, const od_relation *rel, const char *binary_format, bool *binary, od_error *err);
int ch_load(od_sink *base, const od_change *rows, size_t n, od_error *err);
int ch_load_finish(od_sink *base, const od_relation *rel, od_error *err);
/* Bytes the open batch holds in memory (clickhouse.c). */
size_t ch_batch_bytes(const ch_sink *s);
/* Insert every table's buffered rows of the open batch now (clickhouse.c). */
int ch_flush_all(ch_sink *s, od_error *err);

/* clickhouse_types.c */
/* The ClickHouse type (without Nullable) for a PostgreSQL type; returns its ch_kind. */
int ch_type_of(uint32_t oid, int32_t typmod, char *out, size_t n);
/* True when a column of type `from` may be altered to `to` keeping every value. */
bool ch_type_widens(const char *from, const char *to);
/* Append one value as a TabSeparated field; -1 with *why when the type cannot hold it. */
int ch_encode(od_sqlbuf *b, int kind, const od_value *v, const char **why);
void ch_tsv_escape(od_sqlbuf *b, const char *p, size_t n);
/* v in decimal (the per-row columns of an insert body: no printf on that path). */
void ch_put_u64(od_sqlbuf *b, uint64_t v);
/* Undo ch_tsv_escape in place (n bytes at p); returns the new length. */
size_t ch_tsv_unescape(char *p, size_t n);

#endif
