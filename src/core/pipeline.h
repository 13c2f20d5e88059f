/* pipeline.h — one pipeline: a source, a sink, the queue between them, and its supervisor.
 *
 * Owns: the source and sink handles it opens, the queue and its chunks, the two threads of a
 * running session (the supervisor thread reads from the source; the apply thread applies to the
 * sink), the durable position, and the statistics. A session is: open sink, read its checkpoint,
 * start the source after that checkpoint, stream until stopped or failed. Any failure ends the
 * session; a retriable one starts a new session after a backoff, from the sink's checkpoint
 * (the source was never acknowledged past it, so nothing is lost and nothing is applied twice).
 * Never touches: process exit, signals, the terminal. The config is borrowed and must outlive it.
 */
#ifndef ODSYNC_PIPELINE_H
#define ODSYNC_PIPELINE_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/clock.h"
#include "core/pos_cell.h"
#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

typedef enum od_pipeline_state {
  OD_PIPELINE_STARTING = 0,
  OD_PIPELINE_STREAMING,
  OD_PIPELINE_RETRYING,
  OD_PIPELINE_STOPPED,
  OD_PIPELINE_FAILED,
  OD_PIPELINE_SNAPSHOT, /* copying the initial snapshot (docs/SNAPSHOTS.md) */
} od_pipeline_state;

/* Progress of the initial snapshot of the current session (written by src/core/snapshot.c,
 * read by the progress display). Names are written before ntables is raised. */
#define OD_SNAPSHOT_MAX_TABLES 64
typedef struct od_snapshot_table_stats {
  char name[128];                    /* "schema.table" */
  _Atomic uint64_t rows_done;        /* rows copied by this run */
  _Atomic uint64_t rows_estimated;   /* rows this run expects to copy */
  _Atomic uint32_t chunks_done;      /* chunks copied by this run */
  _Atomic uint32_t chunks_total;     /* chunks of the table's plan */
  _Atomic uint32_t chunks_skipped;   /* chunks already done by an earlier run */
  _Atomic int64_t started_us;        /* monotonic µs when its first chunk started, 0: not yet */
  _Atomic int64_t finished_us;       /* monotonic µs when its last chunk was committed, 0: not yet */
} od_snapshot_table_stats;

typedef struct od_snapshot_stats {
  _Atomic int active;                /* 1 while the snapshot copies */
  _Atomic uint64_t rows_done, rows_estimated;
  _Atomic uint64_t chunks_done, chunks_total, chunks_skipped;
  _Atomic int ntables;               /* entries of tables[] in use (tables beyond the cap are
                                        counted in the totals only) */
  od_snapshot_table_stats tables[OD_SNAPSHOT_MAX_TABLES];
} od_snapshot_stats;

/* One sink of a pipeline, as the apply thread reports it. */
typedef struct od_sink_stats {
  char name[64];                      /* the sink's name ("default" for `sink:`) */
  char type[32];                      /* its adapter type */
  od_pos_cell durable;                /* its checkpoint: what it holds durably */
  _Atomic uint64_t changes_applied;   /* rows committed to the sink since start */
  _Atomic uint64_t txns_applied;      /* source transactions committed to the sink */
  _Atomic uint64_t batches;           /* sink commits */
  _Atomic uint64_t txns_skipped;      /* resent transactions the sink already held */
  _Atomic uint64_t helper_changes;    /* parallel apply: changes routed to the helper writers... */
  _Atomic uint64_t carrier_changes;   /* ...and applied by the carrier (serial work) */
  _Atomic int64_t last_commit_time;   /* source commit time (µs) of the last applied txn */
  _Atomic int64_t last_lag_us;        /* source commit -> sink commit, for the last batch */
  _Atomic int64_t last_apply_at;      /* wall clock (µs) of the last sink commit */
  _Atomic uint64_t batch_limit;       /* current batch size limit (adaptive batching moves it) */
  _Atomic uint64_t dead_letters_total; /* poison rows this process stored as dead letters */
  _Atomic int64_t dead_letters;       /* dead letters in the sink (counted at session start, + since) */
  _Atomic int circuit_state;          /* enum od_breaker_state (core/breaker.h) */
  _Atomic uint64_t circuit_transitions; /* breaker state changes since start */
  struct od_sink_metrics *metrics;    /* its series (core/pipeline_metrics.h), or NULL */
  /* Its spool (core/spool_feed.h), for status and metrics: */
  _Atomic uint64_t spool_bytes;       /* bytes on disk */
  _Atomic bool spool_full;            /* the spool is at its bound: this sink holds the pipeline back */
  _Atomic bool down;                  /* the sink failed; its apply thread reconnects while it spools */
} od_sink_stats;

typedef struct od_pipeline_stats {
  od_pos_cell durable;                /* the least of the sinks' checkpoints: what the source may be acked */
  _Atomic uint64_t queued_rows;       /* rows waiting between reader and appliers */
  _Atomic uint64_t sessions;          /* sessions started (1 + restarts) */
  _Atomic int state;                  /* od_pipeline_state */
  _Atomic int paused;                 /* 1: reading paused by the operator (od_pipeline_set_paused) */
  _Atomic int pause_held;             /* 1: the reader is holding (paused, between transactions) */
  int nsinks;                         /* entries of sinks[] (fixed when the pipeline is made) */
  od_sink_stats sinks[OD_SINKS_MAX];
  od_snapshot_stats snapshot;         /* the initial snapshot's progress */
  /* Incremental snapshots (src/core/isnap.c), since start. */
  _Atomic uint64_t isnap_rows;        /* rows copied (applied with their high watermark) */
  _Atomic uint64_t isnap_dropped;     /* rows read but changed in their window (the stream has them) */
  _Atomic uint64_t isnap_chunks;      /* chunks done */
  _Atomic uint64_t isnap_tables;      /* tables finished */
  _Atomic int isnap_active;           /* 1 while a table is being copied */
  /* The pipeline's series in the metrics registry (core/pipeline_metrics.h), owned by the
   * pipeline; NULL when it has none (unit tests): every od_pm_* hook then does nothing. */
  struct od_pipeline_metrics *metrics;
} od_pipeline_stats;

/* Sums over the sinks (the progress line's and status' "changes applied" is the slowest sink's
 * view: the least changes_applied). */
uint64_t od_stats_changes_applied(od_pipeline_stats *st);
uint64_t od_stats_txns_applied(od_pipeline_stats *st);
int64_t od_stats_last_lag_us(od_pipeline_stats *st);

typedef struct od_pipeline od_pipeline;

/* Validate the pipeline's config and the adapters' sections (nothing connects yet). */
int od_pipeline_new(const od_config *root, const od_pipeline_config *cfg, od_pipeline **out,
                    od_error *err);
/* The same checks as od_pipeline_new without making a pipeline (no metrics series, nothing
 * connects): a config reload validates every new or changed pipeline with it before it stops any. */
int od_pipeline_validate(const od_config *root, const od_pipeline_config *cfg, od_error *err);
/* Start the supervisor thread. */
int od_pipeline_start(od_pipeline *p, od_error *err);
/* Ask the pipeline to stop: stop reading, apply what is complete, acknowledge, disconnect. */
void od_pipeline_request_stop(od_pipeline *p);
/* True once the pipeline has stopped (cleanly or not). */
bool od_pipeline_finished(od_pipeline *p);
/* Join; OD_OK after a clean stop, else the fatal error that ended it (copied into err). */
int od_pipeline_wait(od_pipeline *p, od_error *err);
void od_pipeline_free(od_pipeline *p);

/* Pause or resume reading (admin API, operator role). While paused the reader stops taking
 * changes from the source after the current transaction; what is queued is still applied and
 * the source connection is kept alive (standby status). Paused pipelines stay paused across
 * their reconnects; not across a restart of odsync. */
void od_pipeline_set_paused(od_pipeline *p, bool paused);
const char *od_pipeline_name(const od_pipeline *p);
const od_pipeline_config *od_pipeline_config_of(const od_pipeline *p);
od_pipeline_stats *od_pipeline_get_stats(od_pipeline *p);

/* `odsync check`: open source and sink, report each problem; returns the number of fatal
 * problems, or a negative status when the check itself could not run. */
int od_pipeline_check(const od_config *root, const od_pipeline_config *cfg,
                      void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx);


#endif
