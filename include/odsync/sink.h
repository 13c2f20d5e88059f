/* odsync/sink.h — the sink adapter interface.
 *
 * A sink applies changes and stores, in the same atomic write as the data, the source position
 * of the last transaction it holds (its checkpoint). It is driven by one apply thread.
 * The pipeline guarantees: begin, apply..., commit sequences never interleave; commit() is called
 * only at a source transaction boundary; changes arrive in source commit order.
 * A sink never acknowledges anything to a source; it reports the position it holds.
 * Never calls exit(); failures return a status and fill od_error (retriable or not).
 */
#ifndef ODSYNC_SINK_H
#define ODSYNC_SINK_H

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef struct od_sink od_sink;

typedef struct od_sink_ops {
  const char *type; /* the config's sink.type */
  /* How many instances of this sink may write concurrently for one pipeline (parallel apply
   * under the causal and eventual consistency levels); 1 = a single writer (e.g. SQLite). */
  unsigned max_writers;
  /* Validate config, connect/open, create the checkpoint store. *out is owned by the caller and
   * released with close(). `pipeline` names the checkpoint row. */
  int (*open)(const od_config_section *cfg, const char *pipeline, od_sink **out, od_error *err);
  /* The position stored by the last successful commit (0 when the sink holds nothing yet). */
  int (*read_position)(od_sink *s, od_lsn *out, od_error *err);
  /* Start a sink transaction. */
  int (*begin)(od_sink *s, od_error *err);
  /* Apply changes inside the open transaction. Pointers in `changes` are valid only during the
   * call; relations stay valid for the pipeline's life (see change.h). */
  int (*apply)(od_sink *s, const od_change *changes, size_t n, od_error *err);
  /* Store `position` as the checkpoint and commit data + checkpoint atomically. On OD_OK the
   * commit is durable (survives power loss). position 0: commit the data, leave the checkpoint
   * alone (used by the helper writers of a parallel apply; their changes are idempotent). */
  int (*commit)(od_sink *s, od_lsn position, od_error *err);
  /* Abandon the open transaction (after a failed apply/commit). */
  void (*rollback)(od_sink *s);
  void (*close)(od_sink *s);
  /* Optional (both or neither; NULL: the sink cannot record snapshot progress). Named marks kept
   * next to the checkpoint, e.g. "<pipeline>/snapshot/public.t/12" (pipeline names are
   * [A-Za-z0-9_], so a mark never collides with a checkpoint row). set_mark writes `value`
   * inside the open transaction, committed atomically with its data; value 0 removes the mark.
   * get_mark reads the committed value, 0 when absent. */
  int (*set_mark)(od_sink *s, const char *key, od_lsn value, od_error *err);
  int (*get_mark)(od_sink *s, const char *key, od_lsn *out, od_error *err);
  /* Optional (both or neither, and only next to set_mark/get_mark): marks whose value is a text,
   * e.g. the key tuple an incremental snapshot has copied up to. Same keys, same table, same rules
   * as set_mark: set_text_mark writes `text` (a NUL-terminated string) inside the open transaction,
   * committed atomically with its data; text NULL removes the mark. A key holds one kind of value:
   * set_text_mark makes get_mark read 0, set_mark makes get_text_mark read NULL. get_text_mark
   * reads the committed text into *out (malloc'd, the caller frees it), NULL when the mark is
   * absent or holds an integer. */
  int (*set_text_mark)(od_sink *s, const char *key, const char *text, od_error *err);
  int (*get_text_mark)(od_sink *s, const char *key, char **out, od_error *err);
  /* Optional bulk loading of initial-snapshot chunks (all three or none; NULL: chunks go through
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
  /* Optional table ownership (both or neither). A sink that records which pipeline and source table
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
} od_sink_ops;

struct od_sink {
  const od_sink_ops *ops;
};

#endif
