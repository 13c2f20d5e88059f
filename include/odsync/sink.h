/* odsync/sink.h — the sink adapter interface.
 *
 * A sink applies changes and stores the source position of the last transaction it holds (its
 * checkpoint). It is driven by one apply thread per instance. The pipeline guarantees: begin,
 * apply..., commit sequences never interleave; commit() is called only at a source transaction
 * boundary; changes arrive in source commit order.
 * A sink never acknowledges anything to a source; it reports the position it holds.
 * Never calls exit(); failures return a status and fill od_error (retriable or not).
 *
 * Capabilities. A sink declares what it can do in `caps`; the registry checks at start-up that the
 * optional slots match (od_sink_ops_check), and the core calls optional slots only through the
 * od_sink_* wrappers below, which fail with OD_EUNSUPPORTED when the capability is missing.
 *
 * The checkpoint contract — one of two, declared by OD_SINK_ATOMIC_CHECKPOINT:
 *  - atomic (SQL sinks): commit(pos) makes the data and the checkpoint durable in one atomic write.
 *    After a crash the sink holds either both or neither.
 *  - idempotent replay (sinks without transactions: ClickHouse, Redis, a bus, files): commit(pos)
 *    makes the data durable first and the checkpoint after it. A crash in between leaves data newer
 *    than the checkpoint, and the next session sends again every transaction after the checkpoint —
 *    the same changes, with the same positions (od_change.txn_start) and indexes, in the same order,
 *    in batches that may be cut differently. The sink must make that replay leave the same final
 *    state as one delivery: keyed writes overwrite (upsert/delete by key, or rows versioned by
 *    position that collapse), appends carry an id derived from the position so a repeat is refused.
 *    Marks follow the same rule (written after the data).
 */
#ifndef ODSYNC_SINK_H
#define ODSYNC_SINK_H

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_sink od_sink;

enum od_sink_caps {
  OD_SINK_ATOMIC_CHECKPOINT = 1u << 0, /* data + checkpoint in one atomic write (else: idempotent replay) */
  OD_SINK_MARKS = 1u << 1,             /* set_mark / get_mark */
  OD_SINK_TEXT_MARKS = 1u << 2,        /* set_text_mark / get_text_mark (needs OD_SINK_MARKS) */
  OD_SINK_BULK_LOAD = 1u << 3,         /* load_prepare / load / load_finish */
  OD_SINK_TABLE_OWNERSHIP = 1u << 4,   /* check_tables / resnapshot_table */
  OD_SINK_DEAD_LETTERS = 1u << 5,      /* savepoint / put, list, drop dead letters (poison rows) */
  OD_SINK_LINGER = 1u << 6,            /* every write is costly whatever its size (ClickHouse: one part per
                                          insert): with batch.linger auto, a batch whose queue runs empty
                                          stays open until max_rows, max_bytes or max_delay_ms */
  OD_SINK_DEFERRED_DURABILITY = 1u << 7, /* durable(): a commit may return before it is durable (the
                                            PostgreSQL sink's synchronous_commit: off); the sink says
                                            later which commits are */
};

/* savepoint() operations (OD_SINK_DEAD_LETTERS). */
enum od_savepoint_op {
  OD_SAVEPOINT_SET = 1,      /* mark the open transaction's state (sends whatever the sink buffered first) */
  OD_SAVEPOINT_RELEASE = 2,  /* keep what was done since: sends what the sink buffered, so a
                                rejection of those changes surfaces here at the latest */
  OD_SAVEPOINT_ROLLBACK = 3, /* undo what was done since SET (and drop the savepoint); the open
                                transaction stays usable */
};

/* A dead letter: a change the sink rejected every time it was tried (a poison row), kept in the
 * sink's table _odsync_dead_letters. Strings are borrowed for the call (put) or for the callback
 * (list). */
typedef struct od_dead_letter {
  int64_t id;           /* put: 0 adds one; > 0 updates that one's error, code and attempts */
  const char *pipeline; /* the checkpoint name ("<pipeline>" or "<pipeline>.<sink>") */
  const char *position; /* the source position of its transaction, text form, then "#<index>" */
  const char *table;    /* source table "schema.name" */
  const char *op;       /* "insert", "update", "delete", "truncate", "read" */
  const char *change;   /* the change as JSON (core/dead_letter.h) */
  const char *error;    /* the sink's last error message */
  const char *code;     /* its cause: SQLSTATE or SQLite result code, "" when none */
  int attempts;         /* times it was tried */
  const char *created_at; /* list only: when it was first stored (the sink's own time text) */
} od_dead_letter;

typedef struct od_sink_ops {
  const char *type; /* the config's sink.type */
  unsigned caps;    /* enum od_sink_caps */
  /* How many instances of this sink may write concurrently for one pipeline (parallel apply
   * under the causal and eventual consistency levels); 1 = a single writer (e.g. SQLite). */
  unsigned max_writers;
  /* Validate config, connect/open, create the checkpoint store. *out is owned by the caller and
   * released with close(). `name` names the checkpoint row ("<pipeline>" or "<pipeline>.<sink>"). */
  int (*open)(const od_config_section *cfg, const char *name, od_sink **out, od_error *err);
  /* The position stored by the last successful commit (none when the sink holds nothing yet).
   * A checkpoint written before positions were opaque (an integer LSN) reads as
   * od_pos_legacy_lsn(). */
  int (*read_position)(od_sink *s, od_pos *out, od_error *err);
  /* Start a sink transaction. */
  int (*begin)(od_sink *s, od_error *err);
  /* Apply changes inside the open transaction. Pointers in `changes` are valid only during the
   * call; relations stay valid for the pipeline's life (see change.h). */
  int (*apply)(od_sink *s, const od_change *changes, size_t n, od_error *err);
  /* Store `pos` (never none) as the checkpoint and commit data + checkpoint (atomically, or data
   * first under the idempotent-replay contract). On OD_OK the commit is durable — or, with
   * OD_SINK_DEFERRED_DURABILITY, visible and durable once durable() reports its position. */
  int (*commit)(od_sink *s, const od_pos *pos, od_error *err);
  /* Commit the data and leave the checkpoint alone (the helper writers of a parallel apply: their
   * changes are idempotent and the carrier commits the checkpoint after them). */
  int (*commit_data)(od_sink *s, od_error *err);
  /* Abandon the open transaction (after a failed apply/commit). */
  void (*rollback)(od_sink *s);
  void (*close)(od_sink *s);
  /* OD_SINK_MARKS. Named marks kept next to the checkpoint, e.g. "<pipeline>/snapshot/public.t/12"
   * (pipeline names are [A-Za-z0-9_], so a mark never collides with a checkpoint row). set_mark
   * writes `value` inside the open transaction, committed with its data; value 0 removes the mark.
   * get_mark reads the committed value, 0 when absent. */
  int (*set_mark)(od_sink *s, const char *key, uint64_t value, od_error *err);
  int (*get_mark)(od_sink *s, const char *key, uint64_t *out, od_error *err);
  /* OD_SINK_TEXT_MARKS. Marks whose value is a text (a key tuple, a position's text form). Same
   * keys, same table, same rules as set_mark: text NULL removes the mark. A key holds one kind of
   * value: set_text_mark makes get_mark read 0, set_mark makes get_text_mark read NULL.
   * get_text_mark reads the committed text into *out (malloc'd, the caller frees it), NULL when the
   * mark is absent or holds an integer. */
  int (*set_text_mark)(od_sink *s, const char *key, const char *text, od_error *err);
  int (*get_text_mark)(od_sink *s, const char *key, char **out, od_error *err);
  /* OD_SINK_BULK_LOAD: bulk loading of initial-snapshot chunks (without it, chunks go through
   * apply() as OD_OP_READ upserts). Used only by the initial snapshot, whose chunks are disjoint
   * and commit atomically with their marks, so a chunk's rows are new to the table unless the
   * table held rows before odsync.
   * load_prepare: inside an open transaction, before any chunk of rel is loaded in this run:
   *   make the target table exist; a table created now may leave out its key's index until
   *   load_finish (so loading does not maintain it row by row). Sets *binary when the sink takes
   *   this table's values in the source's binary form `binary_format` (od_snapshot_info; NULL:
   *   the source has none), else the rows must carry text.
   * load: inside an open transaction, add rows (OD_OP_READ of one relation per call, values all
   *   text or all binary as agreed). Fails with OD_EDUPLICATE (not retriable) when a row's key is
   *   already in the table — detected at the latest by the next set_mark/commit; the caller rolls
   *   back and applies that chunk through apply() instead.
   * load_finish: inside an open transaction, once every chunk of rel is in: restore what
   *   load_prepare left out (e.g. build the primary key). Idempotent (a resumed run calls it again). */
  int (*load_prepare)(od_sink *s, const od_relation *rel, const char *binary_format, bool *binary, od_error *err);
  int (*load)(od_sink *s, const od_change *rows, size_t n, od_error *err);
  int (*load_finish)(od_sink *s, const od_relation *rel, od_error *err);
  /* OD_SINK_TABLE_OWNERSHIP: table ownership. A sink that records which pipeline and source table
   * own each target table refuses, when a table is first used in a session, a target table that
   * another source table or pipeline already writes, and one it had and lost (dropped by hand),
   * since creating it again empty would run on with a fraction of the rows.
   * check_tables: without changing anything, look at the targets of the captured source tables
   *   (schemas[i].names[i], i < n; keyed[i]: it has a key): two that land in one target table, a target owned by another
   *   pipeline or source table, a target the sink had and lost. Calls problem() once per finding
   *   (complete, user-facing); returns the number of fatal ones, or a negative status.
   * resnapshot_table: `odsync snapshot` has just requested a re-copy of source table schema.name:
   *   when the sink had its target table and lost it, let the next session create it anew (the
   *   re-copy fills it) and set *recreate; otherwise change nothing. Commits on its own (no sink
   *   transaction may be open). */
  int (*check_tables)(od_sink *s, int n, const char *const *schemas, const char *const *names, const bool *keyed,
                      void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx, od_error *err);
  int (*resnapshot_table)(od_sink *s, const char *schema, const char *name, bool *recreate, od_error *err);
  /* OD_SINK_DEAD_LETTERS: poison rows (core/poison.h). One savepoint at a time, inside an open
   * transaction; tables created or altered after SET are forgotten by ROLLBACK as by rollback().
   * put_dead_letter writes (or, id > 0, updates) a dead letter inside the open transaction, so it
   * commits with the rest of it and the checkpoint. list_dead_letters reads the committed dead
   * letters of `pipeline` (NULL: all), in id order, only `id` when id > 0; `each` returning
   * non-zero stops the listing with that status. drop_dead_letter removes one inside the open
   * transaction; *found tells whether it was there. */
  int (*savepoint)(od_sink *s, int op, od_error *err);
  int (*put_dead_letter)(od_sink *s, const od_dead_letter *dl, od_error *err);
  int (*list_dead_letters)(od_sink *s, const char *pipeline, int64_t id,
                           int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err);
  int (*drop_dead_letter)(od_sink *s, int64_t id, bool *found, od_error *err);
  /* OD_SINK_DEFERRED_DURABILITY: the position of the last commit known durable (none: no commit of
   * this session yet). Without `poll` it answers from what the commits learned, without I/O; with
   * `poll` (called only between transactions) it asks the server, and may make it flush. A commit
   * not yet reported durable can still be lost with the sink's server: the pipeline acknowledges
   * the source only up to what durable() reports, and a session with such commits restarts from
   * the checkpoints instead of reconnecting in place. read_position() reports only a durable
   * checkpoint. */
  int (*durable)(od_sink *s, bool poll, od_pos *out, od_error *err);
} od_sink_ops;

struct od_sink {
  const od_sink_ops *ops;
};

/* Whether the optional slots of `ops` match its caps (and the required ones are there); fills err
 * naming the sink type and the slot. The registry calls it for every sink at start-up. */
int od_sink_ops_check(const od_sink_ops *ops, od_error *err);

static inline bool od_sink_can(const od_sink *s, unsigned caps) { return (s->ops->caps & caps) == caps; }

/* Wrappers the core calls the optional slots through. */
int od_sink_set_mark(od_sink *s, const char *key, uint64_t value, od_error *err);
int od_sink_get_mark(od_sink *s, const char *key, uint64_t *out, od_error *err);
int od_sink_set_text_mark(od_sink *s, const char *key, const char *text, od_error *err);
int od_sink_get_text_mark(od_sink *s, const char *key, char **out, od_error *err);
/* Marks that hold a position: stored as its text form (a text mark). A mark written by an older
 * version as an integer LSN reads as od_pos_legacy_lsn(). none removes the mark. */
int od_sink_set_pos_mark(od_sink *s, const char *key, const od_pos *pos, od_error *err);
int od_sink_get_pos_mark(od_sink *s, const char *key, od_pos *out, od_error *err);
int od_sink_savepoint(od_sink *s, int op, od_error *err);
int od_sink_put_dead_letter(od_sink *s, const od_dead_letter *dl, od_error *err);
int od_sink_list_dead_letters(od_sink *s, const char *pipeline, int64_t id,
                              int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err);
int od_sink_drop_dead_letter(od_sink *s, int64_t id, bool *found, od_error *err);
int od_sink_durable(od_sink *s, bool poll, od_pos *out, od_error *err);

#endif
