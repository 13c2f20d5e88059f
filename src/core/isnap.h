/* core/isnap.h — incremental snapshots of a running pipeline (docs/SNAPSHOTS.md, "Incremental
 * snapshots"): `odsync snapshot` writes a request message into the source's stream; the running
 * pipeline re-copies the table chunk by chunk, each chunk read bracketed by a low and a high
 * watermark message written through the stream, and rows changed between them taken from the
 * stream instead of the read.
 *
 * Owns: the worker thread and its source instances (their own ordinary connections; their
 * relations stay alive until od_isnap_close, after the session's queue is drained, because queued
 * rows point at them), the rows of the chunk in flight, the set of keys changed inside the open
 * window, the marks of the reader's open transaction. Marks (in the sink, written only through the
 * stream, in the sink transaction of the transaction that carried the message):
 *   <p>/isnap/<table>/requested   non-zero while a request is pending (the request's commit LSN)
 *   <p>/isnap/<table>/pos         text mark: the last key tuple copied, with the key's column names
 *                                 and types and the source's text settings (core/keytuple.h format;
 *                                 absent: start from the first key). An integer mark of an earlier
 *                                 version (key ^ 2^63, single integer key) is read as that key.
 *   <p>/isnap/any                 1 once any request was made (later sessions look for pending ones)
 * Threads: od_isnap_change/relation/commit run on the reader thread; the worker hands a chunk over
 * under a mutex and waits until the reader has consumed its high watermark.
 * Never touches: the sink after od_isnap_open (marks go through the queue), the stream's source.
 */
#ifndef ODSYNC_CORE_ISNAP_H
#define ODSYNC_CORE_ISNAP_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/pipeline.h"
#include "core/schema.h"
#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/sink.h"
#include "odsync/source.h"

typedef struct od_isnap od_isnap;

/* Where the reader side writes: changes and marks into the transaction being read. */
typedef struct od_isnap_out {
  void *ctx;
  int (*row)(void *ctx, const od_change *row, od_error *err);
  int (*mark)(void *ctx, const char *key, uint64_t value, od_error *err); /* keys relative: "isnap/..." */
  int (*text_mark)(void *ctx, const char *key, const char *text, od_error *err); /* text borrowed for the call */
} od_isnap_out;

/* Before the session's apply thread starts (reads the sink's marks for every captured table) and
 * starts the worker. *out stays NULL (not an error) when the source or the sink cannot do
 * incremental snapshots (the sink needs integer and text marks). `stop` is the pipeline's stop flag. */
int od_isnap_open(const od_pipeline_config *cfg, const char *name, const od_source_ops *src_ops, od_sink *sink,
                  od_schema *schema, od_pipeline_stats *stats, atomic_bool *stop, od_isnap **out, od_error *err);
/* Reader thread. A change of the stream: watermark and request messages of this pipeline are
 * handled (and *consumed set: the caller drops them); row changes of the table in a window are
 * recorded. May add rows and marks through `out`. */
int od_isnap_change(od_isnap *is, const od_txn_info *txn, const od_change *ch, const od_isnap_out *out,
                    bool *consumed, od_error *err);
/* Reader thread: a new relation version of the stream. */
void od_isnap_relation(od_isnap *is, const od_relation *rel);
/* Reader thread: the transaction ends; its marks go to out->mark, its requests become pending. */
int od_isnap_commit(od_isnap *is, const od_txn_info *txn, const od_isnap_out *out, od_error *err);
/* After the session's queue is drained and the apply thread joined: stop the worker, free. */
void od_isnap_close(od_isnap *is);

/* Why table t cannot be copied incrementally ("it has no primary key", ...; the source's
 * od_snap_table.no_keyset), or NULL when it has a key to page by. */
const char *od_isnap_refusal(const od_snap_table *t);
/* source.incremental_chunk_rows (default 10000). */
int od_isnap_chunk_rows(const od_pipeline_config *cfg, uint32_t *out, od_error *err);

/* `odsync snapshot` (isnap_request.c): validate the tables (all captured ones when ntables == 0) and write one request
 * message per table into the source's stream. report() is called once per request written. */
int od_isnap_request(const od_pipeline_config *cfg, const char *const *tables, int ntables,
                     void (*report)(void *ctx, const char *table), void *ctx, od_error *err);

#endif
