/* sinks/postgres_internal.h — shared state of the PostgreSQL sink's three files (private).
 *
 *   postgres.c        the vtable: config, connection, errors, transactions, the checkpoint
 *   postgres_table.c  one pg_rel per relation version: target naming, DDL (create schema/table),
 *                     the SQL text of every statement shape
 *   postgres_schema.c evolving an existing target table to a new relation version (add, drop,
 *                     rename, widen columns) and the _odsync_columns rows
 *   postgres_apply.c  applying a batch: one libpq pipeline of prepared statements, one sync,
 *                     then reading the results (missing rows, errors)
 *   postgres_bulk.c   set-based apply of keyed tables: buffered, merged by key, flushed as one
 *                     DELETE + one INSERT ... ON CONFLICT per table, new rows as a plain INSERT
 *                     in a savepoint (upsert on 23505) (owns pg_rel.bulk)
 *   postgres_load.c   initial-snapshot chunks loaded with COPY (text or binary), the primary key
 *                     of a table created for a load built once at the end (owns pgs_sink.copy_*)
 *   postgres_durable.c synchronous_commit: off — which commits are durable (owns pgs_sink.dur)
 *
 * Ownership: the pgs_sink owns the PGconn, every pg_rel, every statement record and every scratch
 * array. A pg_rel points at (never owns) its od_relation, which the source keeps alive for the
 * pipeline's life; the pointer is the identity of the relation version. Change values are
 * borrowed for the length of one apply() call: everything that points at them (parameter arrays,
 * statement records) is reset before apply() returns.
 */
#ifndef ODSYNC_SINKS_POSTGRES_INTERNAL_H
#define ODSYNC_SINKS_POSTGRES_INTERNAL_H

#include "common/relmap.h"
#include "common/sqlbuf.h"
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/sink.h"

/* Prepared-statement variants per relation version that depend on which values are UNCHANGED. */
enum pgs_vkind { PGS_V_UPDATE = 1, PGS_V_DELETE = 2, PGS_V_UPSERT_ROW = 3 };
#define PGS_MAX_VARIANTS 8
/* A parameter plan lists column indexes, one per $n. With the flag the value comes from the tuple
 * that finds the row (old key / old row), without it from the new tuple. */
#define PGS_FROM_MATCH 0x8000u
#define PGS_COL(p) ((p) & 0x7fffu)


/* One server-side prepared statement: its name and parameter plan. */
typedef struct pgs_stmt {
  char name[24]; /* "" until prepared */
  uint16_t *plan;
  int nplan;
} pgs_stmt;

typedef struct pgs_variant {
  pgs_stmt st;
  uint8_t kind;       /* pgs_vkind; 0: free slot */
  bool new_unchanged; /* the new tuple had UNCHANGED values */
  uint64_t *mask;     /* 2 * mask_words: new tuple's UNCHANGED bits, then old tuple's */
  uint64_t last_use;
} pgs_variant;

typedef struct pg_rel {
  od_relmap_node node;    /* first member: the sink's map, keyed by rel */
  const od_relation *rel; /* not owned */
  char *target;           /* "schema.table" for messages, unquoted */
  char *qtarget;          /* "schema"."table" */
  char *tschema, *tname;  /* unquoted target schema and table (keys of _odsync_columns) */
  uint64_t seg;           /* last batch segment of pgs_apply() that used it */
  bool keyed;             /* matched by key columns (declared PRIMARY KEY when created) */
  bool *text_cmp;         /* per column: compare as ::text (type without equality, e.g. json) */
  char **ucast;           /* per column of a user-defined source type: the target column's type, which
                             parameters compared with it are cast to (NULL: none; owned) */
  int nucast;             /* entries of ucast (rel may be gone when the state is freed) */
  uint16_t *key_plan;     /* key columns, PGS_FROM_MATCH */
  int nkey;
  pgs_stmt insert;        /* keyed: upsert; keyless: plain insert */
  pgs_stmt del_keyed;
  pgs_stmt truncate;
  pgs_variant variants[PGS_MAX_VARIANTS];
  size_t mask_words;
  uint64_t *scratch;      /* 2 * mask_words */
  struct pgs_bulk *bulk;  /* set-based apply state (postgres_bulk.c), NULL for keyless tables */
} pg_rel;

/* What a queued pipeline command was, to interpret its result. */
enum pgs_cmd {
  PGS_CMD_OTHER = 0,  /* BEGIN, prepare, truncate, checkpoint: just must succeed */
  PGS_CMD_INSERT,     /* insert / upsert */
  PGS_CMD_UPDATE,     /* update of changed columns; 0 rows: missing row skipped (TOAST) */
  PGS_CMD_UPSERT,     /* keyed update sent as an upsert of the full new row */
  PGS_CMD_UPSERT_ROW, /* keyless update with the full row (inserts when missing) */
  PGS_CMD_DELETE,     /* 0 rows: delete_missing */
  PGS_CMD_TRUNCATE,
  PGS_CMD_COMMIT,     /* must answer COMMIT (not ROLLBACK) */
  PGS_CMD_TRY_INSERT, /* optimistic plain INSERT of a run (postgres_bulk.c): 23505 is noted in
                         pgs_sink.try_conflict, not an error; the caller redoes the run */
  PGS_CMD_WAL_LSN,    /* after an asynchronous COMMIT: its WAL position and the flush position
                         (postgres_durable.c) */
};

/* postgres_durable.c: a commit not yet known durable, and the sink's account of them. */
#define PGS_DURABLE_MAX 64
typedef struct pgs_pending {
  uint64_t lsn; /* the server's WAL insert position after its COMMIT (UINT64_MAX: unknown) */
  od_pos pos;   /* the checkpoint it wrote */
} pgs_pending;
typedef struct pgs_durable_state {
  pgs_pending pend[PGS_DURABLE_MAX]; /* oldest first, LSNs ascending */
  size_t n;
  int64_t oldest_us;   /* monotonic µs since pend[0] waits */
  uint64_t commit_lsn; /* the last commit's, from its pipeline */
  uint64_t flushed;    /* the highest flush position seen in this session */
  od_pos durable;      /* the last checkpoint known durable (none: no commit yet) */
} pgs_durable_state;

typedef struct pgs_cmd_rec {
  uint8_t cmd;        /* pgs_cmd */
  const pg_rel *r;    /* NULL for commands not about one table */
  const char *what;   /* static: "insert", "preparing update", ... */
  int32_t change;     /* index in the apply() batch, -1 when none */
} pgs_cmd_rec;

typedef struct pgs_stats {
  uint64_t inserted, updated, deleted, truncated;
  uint64_t missing_skipped, delete_missing, prepared, round_trips;
  uint64_t commits; /* sink transactions committed (round_trips / commits: round trips per commit) */
  uint64_t copied;  /* of the inserted rows, those sent by COPY (postgres_bulk.c) */
} pgs_stats;

typedef struct pgs_sink {
  od_sink base;
  struct pgs_mesh *mesh; /* owned: a multi-master mesh sink (postgres_mesh.c), else NULL */
  /* Set by postgres_mesh.c for one pgs_commit_with call: commit without waiting for the WAL flush
   * (a later synchronous commit of the same session flushes it, before the pipeline acknowledges
   * anything), and then, in the same round trip, BEGIN and this statement (NULL: none). */
  bool commit_async;
  const char *then_sql;
  PGconn *conn;
  char *dsn;             /* secret: never printed */
  char where[200];       /* "host:port/dbname" for messages */
  char *pipeline;
  char *schema;          /* target schema for every table, or NULL (the source's) */
  char **map_from, **map_to; /* table_map: "s.t" -> "s.t" (or "t") */
  int nmap;
  char *ck_q;            /* quoted checkpoint table */
  char *cols_q;          /* quoted _odsync_columns, in the checkpoint table's schema */
  char *own_q;           /* quoted _odsync_tables, in the checkpoint table's schema (postgres_owner.c) */
  bool fresh;            /* no checkpoint row for this pipeline when the sink was opened */
  uint64_t seg;          /* batch segment counter (pgs_apply) */
  bool in_txn;           /* begin() called, commit/rollback not yet */
  bool begin_sent;       /* BEGIN already sent on the connection */
  bool ck_prepared;      /* the checkpoint upsert is prepared in this session (odsync_ck) */
  uint64_t txn_seq;
  uint32_t stmt_seq;     /* prepared statement names */
  uint64_t clock;        /* LRU clock for statement variants */
  od_relmap rels;        /* pg_rel states by relation version */
  od_sqlbuf sql;           /* reused to build statements */
  long lock_timeout_ms;    /* sink.lock_timeout_ms: SET lock_timeout on every connection (0 = none) */
  /* per batch, reused */
  pgs_cmd_rec *cmds;
  size_t ncmds, cmds_cap;
  const char **pvals;
  int *plens;
  int pcap;
  pgs_stats stats;
  bool bulk_on;          /* config `bulk` (default true): set-based apply of keyed tables */
  uint32_t copy_min_rows; /* config `copy_min_rows` (default 512, 0 never): new rows by COPY from this many */
  bool try_conflict;     /* pgs_pipeline_finish saw 23505 on a PGS_CMD_TRY_INSERT */
  const od_change *batch; /* the apply() batch being sent (borrowed, NULL outside send_range) */
  char maintenance_work_mem[32]; /* config: for building a deferred primary key */
  /* postgres_load.c: the COPY in progress (copy_rel NULL: none) */
  const pg_rel *copy_rel;
  bool copy_binary;
  char *copy_buf;
  size_t copy_len, copy_cap;
  uint64_t copy_rows;
  bool defer_key;        /* make_table: create a keyed table without its primary key (a load) */
  const od_relation *start_over; /* make_table: drop its target first (OD_TRUNCATE_START_OVER) */
  bool async_commit;     /* config synchronous_commit: off (postgres_durable.c) */
  pgs_durable_state dur;
} pgs_sink;

/* postgres.c */
/* Fill err with "postgres sink host:port/db: [table <t>: ]<what>: <server message>"; retriable for
 * lost connections, serialization failures, deadlocks, lock timeouts, resource shortages. `res`
 * may be NULL (the connection's message is used). Returns OD_ESINK (or OD_ECONNECT when lost). */
/* postgres_dlq.c: OD_SINK_DEAD_LETTERS. */
int pgs_savepoint(od_sink *base, int op, od_error *err);
int pgs_put_dead_letter(od_sink *base, const od_dead_letter *dl, od_error *err);
int pgs_list_dead_letters(od_sink *base, const char *pipeline, int64_t id,
                          int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err);
int pgs_drop_dead_letter(od_sink *base, int64_t id, bool *found, od_error *err);
int pgs_fail(pgs_sink *s, const char *table, const char *what, const PGresult *res, od_error *err);
/* Run one statement synchronously (outside pipeline mode); NULL on failure (err filled). */
PGresult *pgs_exec(pgs_sink *s, const char *table, const char *what, const char *sql, int n,
                   const char *const *params, od_error *err);
/* Make sure BEGIN has been sent (synchronously) before catalog work in the sink transaction. */
int pgs_ensure_begin(pgs_sink *s, od_error *err);
/* Commit the open transaction, writing the checkpoint `position` in it (NULL: data only). */
int pgs_commit_with(pgs_sink *s, const od_pos *position, od_error *err);

/* Serializes odsync's DDL on a target database across sessions (any constant would do). */
#define PGS_DDL_LOCK "SELECT pg_advisory_xact_lock(7180055063212440403)"

/* postgres_table.c */
/* Split "a.b" into quoted "a"."b" (schema `def_schema` when there is no dot). */
int pgs_qualify(od_sqlbuf *b, const char *name, const char *def_schema);

int pgs_rel_get(pgs_sink *s, const od_relation *rel, pg_rel **out, od_error *err);
/* Has this relation version a state already? */
bool pgs_rel_known(const pgs_sink *s, const od_relation *rel);
/* Did the current batch segment (s->seg) use another version of rel's table? */
bool pgs_rel_table_in_segment(const pgs_sink *s, const od_relation *rel);
/* DEALLOCATE the statements of every other state of keep's target table and drop those states. */
int pgs_rels_forget_table(pgs_sink *s, const pg_rel *keep, od_error *err);
/* Is a column of this source type created as text on the target? User-defined types (OID >=
 * 16384: they may not exist there) and the built-in types no server accepts as input
 * (pg_node_tree, pg_ndistinct, pg_dependencies, pg_mcv_list, pg_ddl_command, the BRIN summaries). */
bool pgs_type_as_text(uint32_t oid);
/* Target schema and table of source table rschema.rname: table_map, then `schema`, then the
 * source's schema (*schema may point into sbuf). */
void pgs_target_of(const pgs_sink *s, const char *rschema, const char *rname, const char **schema,
                   const char **table, char *sbuf, size_t scap);
/* Append the SQL type of relation column i to s->sql (text when pgs_type_as_text). */
int pgs_add_type(pgs_sink *s, const pg_rel *r, int i, od_error *err);
void pgs_rels_drop(pgs_sink *s, bool only_current_txn);
/* Give a statement slot its SQL: prepare it (pipelined) when it has no name yet.
 * Each returns OD_OK with *out set; the PREPARE is queued as a pipeline command. */
int pgs_stmt_insert(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err);
int pgs_stmt_delete_keyed(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err);
int pgs_stmt_truncate(pgs_sink *s, pg_rel *r, const pgs_stmt **out, od_error *err);
/* The variant for this shape of change; *out = NULL for an update with nothing to set. */
int pgs_variant_get(pgs_sink *s, pg_rel *r, int kind, const od_tuple *nt, const od_tuple *ot,
                    const pgs_variant **out, od_error *err);

/* postgres_schema.c */
/* Make an existing target table fit r's relation version (see the file's comment); *exists =
 * false (and nothing done) when there is no table. `locked`: the DDL lock is already held.
 * OD_ESCHEMA (not retriable) for a change that cannot be applied safely, before any DDL. */
int pgs_evolve_table(pgs_sink *s, pg_rel *r, bool locked, bool *exists, od_error *err);
/* Rewrite the _odsync_columns rows of r's target table from its relation version. */
int pgs_write_columns(pgs_sink *s, const pg_rel *r, od_error *err);
/* Delete them (before a table is created: rows left from a table of that name dropped since). */
int pgs_clear_columns(pgs_sink *s, const pg_rel *r, od_error *err);
/* Does every value of the first type keep its value and text form in the second? */
bool pgs_type_widens(uint32_t oo, int32_t om, uint32_t no, int32_t nm);

/* postgres_apply.c */
/* Queue a record for the next pipeline command; false when out of memory. */
bool pgs_cmd_push(pgs_sink *s, uint8_t cmd, const pg_rel *r, const char *what, int32_t change);
/* Send `sql` as a pipelined prepare named `name`. */
int pgs_send_prepare(pgs_sink *s, const pg_rel *r, const char *what, const char *name, od_error *err);
/* Send BEGIN into the open pipeline unless it went out already (sets begin_sent). */
int pgs_send_begin(pgs_sink *s, od_error *err);
/* Send a parameterless utility statement (DEALLOCATE ...) into the pipeline. */
int pgs_send_utility(pgs_sink *s, const pg_rel *r, const char *what, const char *sql, od_error *err);
/* Sync the pipeline and read every result; fails with the first error. `changes` lets the result
 * reader name rows (may be NULL when no row command is queued). */
int pgs_pipeline_finish(pgs_sink *s, const od_change *changes, od_error *err);
int pgs_apply(od_sink *base, const od_change *changes, size_t n, od_error *err);
/* apply() without the mesh filter (postgres_mesh.c calls it with what wins). */
int pgs_apply_changes(pgs_sink *s, const od_change *changes, size_t n, od_error *err);

/* postgres_load.c (see the file); od_sink_ops.load_prepare / load / load_finish. */
int pgs_load_prepare(od_sink *base, const od_relation *rel, const char *binary_format, bool *binary, od_error *err);
int pgs_load(od_sink *base, const od_change *rows, size_t n, od_error *err);
int pgs_load_finish(od_sink *base, const od_relation *rel, od_error *err);
/* End the COPY in progress, if any, and read its result (pgs_exec, apply and commit call this
 * before using the connection). OD_EDUPLICATE when a loaded key was already in the table. */
int pgs_load_end(pgs_sink *s, od_error *err);
/* Abandon the COPY in progress (rollback, lost connection). */
void pgs_load_abort(pgs_sink *s);
/* Write len bytes at p to o in COPY's text format (backslash, newline, carriage return and tab
 * escaped); o must have room for 2 * len bytes. Returns the end of what was written. Also used by
 * postgres_bulk.c for its COPY of new rows. */
char *pgs_copy_escape(char *o, const char *p, size_t len);
/* Append r's quoted column list in relation order, " (a, b, c)", to b (the snapshot's COPY, the
 * set-based INSERT and the COPY of new rows name the same columns). */
void pgs_add_columns(od_sqlbuf *b, const pg_rel *r);

/* postgres_bulk.c: set-based apply of the simple changes of keyed tables (see the file). */
typedef struct pgs_bulk pgs_bulk;
/* Outside the pipeline: give a keyed relation version its state (reads the target's types). */
int pgs_bulk_ready(pgs_sink *s, pg_rel *r, od_error *err);
/* Buffer c when it is simple (*taken = true); may queue a flush into the open pipeline. */
int pgs_bulk_add(pgs_sink *s, pg_rel *r, const od_change *c, bool *taken, od_error *err);
/* Queue r's buffered changes (at most two statements) into the open pipeline. */
int pgs_bulk_flush(pgs_sink *s, pg_rel *r, od_error *err);
int pgs_bulk_flush_all(pgs_sink *s, od_error *err);
bool pgs_bulk_pending(const pgs_sink *s);
/* Outside pipeline mode: flush everything in a pipeline of its own (before DDL). */
int pgs_bulk_flush_now(pgs_sink *s, od_error *err);
void pgs_bulk_discard_all(pgs_sink *s); /* rollback */
int pgs_bulk_forget(pgs_sink *s, pg_rel *r, od_error *err); /* DEALLOCATE its statements */
void pgs_bulk_free(pgs_bulk *b);

/* postgres_owner.c: which pipeline and source table own each target table (_odsync_tables). */
/* Create the table (serialized with other sessions), note whether the pipeline starts over. */
int pgs_owner_open(pgs_sink *s, const char *schema_q, od_error *err);
/* In the sink transaction, before r's table is made: refuse a target another source table or
 * pipeline owns, or one the sink had and lost (OD_ESCHEMA); else record r's source as its owner. */
int pgs_owner_claim(pgs_sink *s, pg_rel *r, od_error *err);
/* The vtable's check_tables and resnapshot_table (odsync/sink.h). */
int pgs_check_tables(od_sink *s, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                     void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err);
int pgs_resnapshot_table(od_sink *s, const char *schema, const char *name, bool *recreate, od_error *err);

/* postgres_durable.c */
/* Into the commit's pipeline, after COMMIT (synchronous_commit: off, a commit with a checkpoint). */
int pgs_durable_send(pgs_sink *s, od_error *err);
/* The result of that statement (PGS_CMD_WAL_LSN). */
void pgs_durable_note(pgs_sink *s, const PGresult *res);
/* A commit that wrote checkpoint `pos` succeeded. */
void pgs_durable_committed(pgs_sink *s, const od_pos *pos);
/* A synchronous commit that writes WAL: every commit before it is durable after it (no-op with
 * synchronous_commit on). Outside a transaction only. */
int pgs_durable_flush(pgs_sink *s, od_error *err);
/* The session is gone (disconnect). */
void pgs_durable_reset(pgs_sink *s);
/* The vtable's durable (odsync/sink.h). */
int pgs_durable(od_sink *base, bool poll, od_pos *out, od_error *err);

#endif
