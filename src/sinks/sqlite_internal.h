/* sinks/sqlite_internal.h — shared state of the SQLite sink's three files (private).
 *
 *   sqlite.c        the vtable: open/close, transactions, checkpoint, applying changes
 *   sqlite_table.c  one sq_rel per relation version: target table DDL and prepared statements
 *   sqlite_types.c  PostgreSQL type -> SQLite storage class, binding values
 *   sqlite_schema.c evolving an existing table to a new relation version (_odsync_columns)
 *   sqlite_ckpt.c   WAL checkpoints on a thread and connection of their own
 *   sqlite_owner.c  which pipeline and source table own each target table (_odsync_tables)
 *
 * Ownership: the sq_sink owns the sqlite3 connection, every sq_rel and every statement. An sq_rel
 * points at (never owns) its od_relation, which the source keeps alive for the pipeline's life;
 * the pointer is the identity of the relation version.
 */
#ifndef ODSYNC_SINKS_SQLITE_INTERNAL_H
#define ODSYNC_SINKS_SQLITE_INTERNAL_H

#include "common/relmap.h"
#include "common/sqlbuf.h"
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/sink.h"
#include "sinks/sqlite.h"

/* Storage class chosen for a column from its PostgreSQL type. SQ_REAL columns are created without
 * a declared type (BLOB affinity: SQLite stores a REAL exactly as bound, -0.0 included);
 * SQ_REAL_AFF is a float column of a table created by an older odsync with the declared type REAL,
 * whose affinity stores -0.0 as 0.0 (sqlite_schema.c detects it; docs/TYPES.md). */
enum sq_class { SQ_TEXT, SQ_INT, SQ_BOOL, SQ_REAL, SQ_BLOB, SQ_REAL_AFF };

/* Statement variants that depend on which values are UNCHANGED. SQ_V_UPDATE_KEEP is the update of
 * a keyed row whose key stays what it was (no old key sent, or the old key equals the new one): its
 * SET leaves the key columns out (but float ones, whose sign may change), so SQLite rewrites the row
 * in place instead of deleting it and inserting it again under the same key (one seek instead of
 * three for a rowid key; no index entry rewritten for another key). */
enum sq_vkind { SQ_V_UPDATE = 1, SQ_V_DELETE = 2, SQ_V_UPDATE_KEEP = 3 };
#define SQ_MAX_VARIANTS 8
/* A bind plan is a list of column indexes, one per parameter (?1, ?2, ...). Without the flag the
 * value comes from the change's new tuple; with it, from the tuple used to find the row. */
#define SQ_FROM_MATCH 0x8000u
#define SQ_COL(p) ((p) & 0x7fffu)
/* A run of inserts (or snapshot reads) of one table is written SQ_INSERT_MANY rows per statement:
 * one step instead of one per row (fewer statement executions, cursor opens and allocations). */
#define SQ_INSERT_MANY 32


typedef struct sq_variant {
  sqlite3_stmt *stmt; /* NULL: free slot */
  uint8_t kind;       /* sq_vkind */
  bool new_unchanged; /* the new tuple had UNCHANGED values */
  uint64_t *mask;     /* 2 * mask_words: new tuple's UNCHANGED bits, then old tuple's */
  uint16_t *plan;
  int nplan;
  uint64_t last_use;
} sq_variant;

typedef struct sq_rel {
  od_relmap_node node;    /* first member: the sink's map, keyed by rel */
  const od_relation *rel; /* not owned */
  char *target;           /* table name, unquoted */
  char *qtarget;          /* table name, quoted identifier */
  bool keyed;             /* matched by key columns (declared PRIMARY KEY) */
  uint8_t *cls;           /* sq_class per column */
  uint16_t *ident_plan;   /* 0..n-1: every column from the new tuple */
  uint16_t *key_plan;     /* key columns, SQ_FROM_MATCH */
  int nkey;
  sqlite3_stmt *insert, *del_keyed, *truncate; /* prepared on first use */
  sqlite3_stmt *insert_many; /* insert of many_rows rows (0: not built yet, -1: not possible) */
  int many_rows;
  sq_variant variants[SQ_MAX_VARIANTS];
  size_t mask_words;      /* 64-bit words for one tuple's bitmask */
  uint64_t *scratch;      /* 2 * mask_words */
} sq_rel;

typedef struct sq_ckpt sq_ckpt;

typedef struct sq_sink {
  od_sink base;
  sqlite3 *db;
  char *path;
  char *pipeline;
  bool in_txn;
  uint64_t txn_seq;
  sqlite3_stmt *st_begin, *st_commit, *st_rollback, *ck_write, *ck_read;
  od_relmap rels;    /* sq_rel states by relation version */
  od_sqlbuf sql;       /* reused to build statements */
  unsigned char *blob; /* reused for decoded bytea values of one statement */
  size_t blob_cap, blob_used;
  uint64_t clock;   /* LRU clock for statement variants */
  sq_ckpt *ckpt;    /* background checkpoints, or NULL (SQLite checkpoints in the commit) */
  sqlite3_stmt *own_get, *own_put, *own_exists, *own_fresh; /* sqlite_owner.c */
  bool fresh;       /* no checkpoint row for this pipeline when the sink was opened */
  od_sqlite_stats stats;
  const od_relation *start_over; /* its table is dropped before its state is made (OD_TRUNCATE_START_OVER) */
} sq_sink;

/* sqlite.c */
/* Fill err with "sqlite sink <path>: [table <t>: ]<what>: <sqlite message>"; retriable for
 * SQLITE_BUSY/LOCKED/IOERR/FULL. Returns OD_ESINK. */
/* sqlite_dlq.c: OD_SINK_DEAD_LETTERS. */
int sq_savepoint(od_sink *base, int op, od_error *err);
int sq_put_dead_letter(od_sink *base, const od_dead_letter *dl, od_error *err);
int sq_list_dead_letters(od_sink *base, const char *pipeline, int64_t id,
                         int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err);
int sq_drop_dead_letter(od_sink *base, int64_t id, bool *found, od_error *err);
int sq_fail(sq_sink *s, const char *table, const char *what, int rc, od_error *err);

/* sqlite_table.c */

int sq_rel_get(sq_sink *s, const od_relation *rel, sq_rel **out, od_error *err);
/* Prepare / run the SQL in s->sql (errors name r's table and `what`). */
int sq_prepare_sql(sq_sink *s, sq_rel *r, const char *what, sqlite3_stmt **out, od_error *err);
int sq_exec_sql(sq_sink *s, sq_rel *r, const char *what, od_error *err);
/* Forget states (finalizing their statements): all, or only those born in the current txn. */
void sq_rels_drop(sq_sink *s, bool only_current_txn);
int sq_stmt_insert(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err);
/* The insert of *rows rows at once (*out NULL and *rows < 2 when the table is too wide for it). */
int sq_stmt_insert_many(sq_sink *s, sq_rel *r, sqlite3_stmt **out, int *rows, od_error *err);
int sq_stmt_delete_keyed(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err);
int sq_stmt_truncate(sq_sink *s, sq_rel *r, sqlite3_stmt **out, od_error *err);
/* The statement for this shape of change. `nt` (update) / `ot` (keyless update/delete) give the
 * UNCHANGED bitmasks. *out = NULL for an update with nothing to set. */
int sq_variant_get(sq_sink *s, sq_rel *r, int kind, const od_tuple *nt, const od_tuple *ot,
                   sq_variant **out, od_error *err);

/* sqlite_schema.c: make the existing table r->target fit r->rel (drop, rename, add columns, check
 * types and key) and record its columns in _odsync_columns. OD_ESCHEMA when it cannot safely. */
int sq_evolve_table(sq_sink *s, sq_rel *r, od_error *err);

/* sqlite_ckpt.c: start checkpointing s->db's WAL on a thread of its own (falls back to SQLite's
 * checkpoints in the commit when it cannot; fails only without memory); stop it (before closing
 * s->db); the number of checkpoints it ran. */
int sq_ckpt_start(sq_sink *s, od_error *err);
void sq_ckpt_stop(sq_sink *s);
/* Called before BEGIN: when the WAL has grown past its bound, wait for the running checkpoint so
 * that this transaction writes the WAL from its start again. */
void sq_ckpt_before_begin(sq_sink *s);
uint64_t sq_ckpt_runs(const sq_sink *s);

/* sqlite_owner.c */
/* The target table of source table schema.name: name for schema public, else "schema.name"
 * (malloc'd; NULL without memory). */
char *sq_target_of(const char *schema, const char *name);
/* Create _odsync_tables, prepare its statements, note whether the pipeline starts over. */
int sq_owner_open(sq_sink *s, od_error *err);
void sq_owner_close(sq_sink *s);
/* Inside the open transaction, before r's table is made: refuse a target another source table or
 * pipeline owns, or one the sink had and lost (OD_ESCHEMA); else record r's source as its owner. */
int sq_owner_claim(sq_sink *s, sq_rel *r, od_error *err);
/* The vtable's check_tables and resnapshot_table (odsync/sink.h). */
int sq_check_tables(od_sink *s, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                    void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err);
int sq_resnapshot_table(od_sink *s, const char *schema, const char *name, bool *recreate, od_error *err);

/* sqlite_types.c */
uint8_t sq_class_of(uint32_t type_oid);
/* The declared type a column of this class is created with ("" for SQ_REAL: no affinity). */
const char *sq_class_decl(uint8_t cls);
/* Register odsync_signbit(x) on the connection: 1 when x is a REAL with its sign bit set (-0.0,
 * negative numbers, -inf), else 0. Lets a keyless match tell -0.0 from 0.0, which `IS` equates. */
int sq_register_functions(sqlite3 *db);
/* A source column's type changed (PostgreSQL oid/typmod): true when the values already stored keep
 * their text form and storage class (int2/int4/int8 among each other, text/varchar widening,
 * numeric precision up with the same scale, time/timestamp/interval/varbit precision up). */
bool sq_type_change_safe(uint32_t old_oid, int32_t old_typmod, uint32_t new_oid, int32_t new_typmod);
/* Bind parameters ?1..?n by `plan`. Values must stay valid until the statement is reset. */
int sq_bind(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const uint16_t *plan, int nplan,
            const od_tuple *nt, const od_tuple *mt, od_error *err);
/* Bind the new tuples of changes[0..n) as rows of a multi-row insert (every column, in order). */
int sq_bind_rows(sq_sink *s, sq_rel *r, sqlite3_stmt *st, const od_change *changes, int n, od_error *err);

#endif
