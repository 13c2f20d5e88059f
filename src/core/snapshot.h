/* core/snapshot.h — the pipeline side of the initial snapshot (docs/SNAPSHOTS.md).
 *
 * Owns, for one session: the decision whether a snapshot is due or unfinished, the chunk work
 * list, the reader threads (one per source reader), the extra sink instances it opens for
 * parallel writes (when the sink allows more than one writer), the sink transactions of chunks
 * and the marks that record them, and the final transaction that stores the snapshot's stream
 * position as the checkpoint.
 * Borrows: the session's source, sink (used only by the calling thread and, under a lock, by the
 * workers while od_snapshot_session runs), schema registry, stats and stop flag.
 * Never touches: the queue, the apply thread, acknowledgements (nothing is acknowledged to the
 * source while a snapshot runs: the stream's slot stays at its consistent point).
 */
#ifndef ODSYNC_CORE_SNAPSHOT_H
#define ODSYNC_CORE_SNAPSHOT_H

#include <stdatomic.h>

#include "core/pipeline.h"
#include "core/schema.h"
#include "odsync/sink.h"
#include "odsync/source.h"

/* A table copied under a later view than the stream's start: the reader drops its changes from
 * transactions whose commit record lies before `until` (they are in the copy already). */
typedef struct od_snapshot_skip {
  char name[192]; /* "schema.table" */
  od_pos until;
} od_snapshot_skip;

typedef struct od_snapshot_skips {
  od_snapshot_skip *items; /* owned */
  int n;
  od_pos max; /* largest `until`; none when there is nothing to skip */
} od_snapshot_skips;

/* Whether a change of table `schema`.`name` from a transaction starting at `start` is in the copy. */
bool od_snapshot_skips_has(const od_snapshot_skips *s, const char *schema, const char *name, const od_pos *start);

typedef struct od_snapshot_env {
  const od_pipeline_config *cfg;
  const char *name;            /* the sink's mark namespace ("<pipeline>" or "<pipeline>.<sink>") */
  od_source *source;
  od_sink *sink;               /* the session's sink: carries the final checkpoint */
  /* Opens another instance of the same sink (transforms included) for a parallel chunk writer;
   * NULL: one writer. */
  int (*open_writer)(void *ctx, od_sink **out, od_error *err);
  void *open_ctx;
  unsigned max_writers;        /* the sink's max_writers */
  od_schema *schema;
  od_pipeline_stats *stats;
  od_sink_stats *sink_stats;   /* the sink's: durable is set to the snapshot's checkpoint */
  atomic_bool *stop;
} od_snapshot_env;

/* Before streaming: when the sink holds no checkpoint and the snapshot is not marked done (and the
 * source's `snapshot` setting is initial), copy (or finish copying) every captured table and
 * commit the stream's start position as the checkpoint; *start becomes that position. Always
 * fills `skips` (tables whose older changes the reader must drop). OD_ECANCELLED when stopped
 * before the end (the chunks committed so far are kept: the next session resumes). */
int od_snapshot_session(const od_snapshot_env *env, od_pos *start, od_snapshot_skips *skips, od_error *err);
void od_snapshot_skips_free(od_snapshot_skips *s);

#endif
