/* pipeline_metrics.h — the metrics of one pipeline: odsync's metric names, units, labels and
 * buckets (docs/OBSERVABILITY.md lists them), and the handles the pipeline's threads write to.
 *
 * Owns: its series in the registry (removed by od_pipeline_metrics_free) and the pipeline's last
 * error (text and time, for /status). Reads the pipeline's od_pipeline_stats (borrowed: it must
 * outlive this) through registry gauge functions, so values that already live there as atomics
 * are not counted twice. Labels are bounded: pipeline and sink are config names, op and state are
 * fixed lists, error class is a status name, table only for the initial snapshot's tables (at most
 * OD_SNAPSHOT_MAX_TABLES per pipeline).
 * Every function accepts a NULL od_pipeline_metrics (a pipeline without metrics, e.g. in unit
 * tests) and then does nothing. Never touches: sources, sinks, I/O.
 */
#ifndef ODSYNC_PIPELINE_METRICS_H
#define ODSYNC_PIPELINE_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "core/metrics.h"
#include "core/pipeline.h"
#include "odsync/change.h"
#include "odsync/error.h"

/* Operations counted apart (label op). */
enum { OD_PM_INSERT, OD_PM_UPDATE, OD_PM_DELETE, OD_PM_TRUNCATE, OD_PM_READ, OD_PM_MESSAGE, OD_PM_NOPS };

typedef struct od_pipeline_metrics od_pipeline_metrics;

typedef struct od_pm_state_ctx {
  od_pipeline_metrics *pm;
  int state;
} od_pm_state_ctx;

struct od_pipeline_metrics {
  od_metrics *registry;
  od_pipeline_stats *stats; /* borrowed */
  char pipeline[128], sink[64], source[64], consistency[16];
  /* written by the apply thread */
  od_metric *changes[OD_PM_NOPS], *txns, *bytes, *batches, *batch_rows, *batch_seconds, *latency;
  /* written by the reader / supervisor */
  od_metric *source_pos, *schema_changes, *retries;
  _Atomic int64_t source_pos_value; /* the newest position the source reported (its u64 form) */
  _Atomic int64_t last_lag_us;      /* source commit -> sink commit of the last batch; 0 after a heartbeat */
  _Atomic int64_t last_sink_commit_us; /* wall µs of the last sink commit (or of creation) */
  _Atomic uint64_t errors;          /* sessions ended by an error, every class */
  /* read through functions of stats */
  od_metric *fn_series[32];
  int nfn;
  od_pm_state_ctx state_ctx[6];
  /* snapshot tables: series registered on od_pipeline_metrics_refresh */
  od_metric *snap[OD_SNAPSHOT_MAX_TABLES][4];
  char snap_name[OD_SNAPSHOT_MAX_TABLES][128];
  /* the last error */
  pthread_mutex_t err_lock;
  char last_error[OD_ERROR_MSG_MAX];
  char last_error_class[32];
  int64_t last_error_at; /* wall clock µs; 0: none */
};

/* Create the series of a pipeline in `registry`. NULL when out of memory. */
od_pipeline_metrics *od_pipeline_metrics_new(od_metrics *registry, od_pipeline_stats *stats, const char *pipeline,
                                             const char *source_type, const char *sink_type,
                                             const char *consistency);
void od_pipeline_metrics_free(od_pipeline_metrics *pm);

/* Apply thread: add the operations of n changes to a per-batch tally (no atomics). */
void od_pm_tally(uint64_t tally[OD_PM_NOPS], const od_change *changes, uint32_t n);
/* Apply thread, after a sink commit: the batch's tally, transactions, bytes, the time spent in
 * the sink, and the source commit time (wall µs, 0 unknown) of its last transaction. */
void od_pm_batch(od_pipeline_metrics *pm, const uint64_t tally[OD_PM_NOPS], uint64_t txns, uint64_t bytes,
                 int64_t sink_us, int64_t commit_time_us);
/* Reader: the newest position the source reported (commit end or keepalive), as a number that
 * grows with the position (PostgreSQL: the LSN). */
void od_pm_source_position(od_pipeline_metrics *pm, uint64_t pos);
/* Reader: n new schema versions recorded. */
void od_pm_schema_changes(od_pipeline_metrics *pm, uint64_t n);
/* Supervisor: a session ended with err; `retry` when another session follows. */
void od_pm_error(od_pipeline_metrics *pm, const od_error *err, bool retry);

/* Readers (admin server): register series for snapshot tables that appeared since the last call. */
void od_pipeline_metrics_refresh(od_pipeline_metrics *pm);
/* Derived values, as the exposition shows them. */
uint64_t od_pm_lag_bytes(od_pipeline_metrics *pm);
double od_pm_lag_seconds(od_pipeline_metrics *pm);
/* Copy the last error (empty when none); returns its wall-clock time in µs, 0 when none. */
int64_t od_pm_last_error(od_pipeline_metrics *pm, char *msg, size_t msgsize, char *cls, size_t clssize);

const char *od_pipeline_state_name(int state);

#endif
