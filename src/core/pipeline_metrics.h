/* pipeline_metrics.h — the metrics of one pipeline: odsync's metric names, units, labels and
 * buckets (docs/OBSERVABILITY.md lists them), and the handles the pipeline's threads write to.
 *
 * Owns: its series in the registry (removed by od_pipeline_metrics_free) and the pipeline's last
 * error (text and time, for /status). Reads the pipeline's od_pipeline_stats (borrowed: it must
 * outlive this) through registry gauge functions, so values that already live there as atomics
 * are not counted twice. Labels are bounded: pipeline and sink are config names (at most
 * OD_SINKS_MAX sinks), op and state are
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
#include "core/pos_cell.h"
#include "core/pipeline.h"
#include "odsync/change.h"
#include "odsync/error.h"
#include "odsync/source.h"

/* Operations counted apart (label op). */
enum { OD_PM_INSERT, OD_PM_UPDATE, OD_PM_DELETE, OD_PM_TRUNCATE, OD_PM_READ, OD_PM_MESSAGE, OD_PM_NOPS };
/* The stages of a batch's first transaction (label stage; see od_pm_stages). */
enum { OD_PM_ST_SOURCE, OD_PM_ST_DECODE, OD_PM_ST_QUEUE, OD_PM_ST_APPLY, OD_PM_ST_COMMIT, OD_PM_NSTAGES };

typedef struct od_pipeline_metrics od_pipeline_metrics;

typedef struct od_pm_state_ctx {
  od_pipeline_metrics *pm;
  int state;
} od_pm_state_ctx;

/* One sink of the pipeline: written by its apply thread. */
typedef struct od_sink_metrics {
  od_pipeline_metrics *pm;
  od_sink_stats *stats; /* borrowed */
  od_metric *changes[OD_PM_NOPS], *txns, *bytes, *batches, *batch_rows, *batch_seconds, *latency;
  od_metric *stages[OD_PM_NSTAGES];
  _Atomic int64_t last_lag_us;         /* source commit -> sink commit of the last batch; 0 after a heartbeat */
  _Atomic int64_t last_sink_commit_us; /* wall µs of the last sink commit (or of creation) */
  od_metric *fn_series[20];
  int nfn;
} od_sink_metrics;

struct od_pipeline_metrics {
  od_metrics *registry;
  od_pipeline_stats *stats; /* borrowed */
  char pipeline[128], source[64], consistency[16];
  od_sink_metrics sinks[OD_SINKS_MAX];
  int nsinks;
  /* written by the reader / supervisor */
  od_metric *schema_changes, *retries;
  od_pos_cell source_pos;           /* the newest position the source reported */
  _Atomic int64_t source_pos_value; /* the same as a number (the kind's version), 0: none */
  _Atomic uint64_t errors;          /* sessions ended by an error, every class */
  /* read through functions of stats */
  od_metric *fn_series[24];
  int nfn;
  od_pm_state_ctx state_ctx[6];
  /* snapshot tables: series registered on od_pipeline_metrics_refresh */
  od_metric *snap[OD_SNAPSHOT_MAX_TABLES][4];
  char snap_name[OD_SNAPSHOT_MAX_TABLES][128];
  /* the source's health (od_source_ops.health): bytes, -1 unknown; status under err_lock */
  _Atomic int64_t src_retained, src_safe, src_spilled; /* src_spilled: -1 until known, then never lower */
  _Atomic int src_warning, src_health_known, src_batch;
  _Atomic int64_t src_catchups;
  char src_status[32];
  /* the last error */
  pthread_mutex_t err_lock;
  char last_error[OD_ERROR_MSG_MAX];
  char last_error_class[32];
  int64_t last_error_at; /* wall clock µs; 0: none */
};

/* Create the series of a pipeline and of each of its sinks (stats->nsinks, names and types
 * already set) in `registry`; points every stats->sinks[i].metrics at its part. NULL when out of
 * memory. */
od_pipeline_metrics *od_pipeline_metrics_new(od_metrics *registry, od_pipeline_stats *stats, const char *pipeline,
                                             const char *source_type, const char *consistency);
void od_pipeline_metrics_free(od_pipeline_metrics *pm);

/* Apply thread: add the operations of n changes to a per-batch tally (no atomics). */
void od_pm_tally(uint64_t tally[OD_PM_NOPS], const od_change *changes, size_t n);
/* Apply thread, after a sink commit: the batch's tally, transactions, bytes, the time spent in
 * the sink, and the source commit time (wall µs, 0 unknown) of its last transaction (the lag
 * gauge; the latency histogram is fed per transaction by od_pm_txn_latency). */
void od_pm_batch(od_sink_metrics *sm, const uint64_t tally[OD_PM_NOPS], uint64_t txns, uint64_t bytes,
                 int64_t sink_us, int64_t commit_time_us);
/* Apply thread, after a sink commit at wall time now_us: n transactions of one chunk, the oldest
 * of which committed at the source at commit_time_us, into the end-to-end latency histogram. Each
 * is counted with the oldest one's latency (an upper bound: they were decoded together). */
void od_pm_txn_latency(od_sink_metrics *sm, int64_t commit_time_us, uint64_t n, int64_t now_us);
/* Apply thread, after a sink commit: the stage account of the batch's first transaction, µs per
 * stage (source commit to the reader taking it; decode; queue wait; apply until the commit starts;
 * the commit), each into odsync_stage_latency_seconds{stage}. */
void od_pm_stages(od_sink_metrics *sm, const int64_t us[OD_PM_NSTAGES]);
/* Reader: the newest position the source reported (a commit's end, or an idle position). */
void od_pm_source_position(od_pipeline_metrics *pm, const od_pos *pos);
/* Reader: n new schema versions recorded. */
void od_pm_schema_changes(od_pipeline_metrics *pm, uint64_t n);
/* Reader: the source's health after a poll (odsync/source.h od_source_health). */
void od_pm_source_health(od_pipeline_metrics *pm, const od_source_health *h);
/* Admin server: the last health; false when the source never reported one. */
bool od_pm_source_health_get(od_pipeline_metrics *pm, od_source_health *out);
/* Supervisor: a session ended with err; `retry` when another session follows. */
void od_pm_error(od_pipeline_metrics *pm, const od_error *err, bool retry);

/* Readers (admin server): register series for snapshot tables that appeared since the last call. */
void od_pipeline_metrics_refresh(od_pipeline_metrics *pm);
/* A position as the number metrics show: its kind's version (PostgreSQL: the LSN), else 0. */
uint64_t od_pm_pos_number(const od_pos *p);
/* Derived values of one sink, as the exposition shows them. */
uint64_t od_pm_lag_bytes(od_sink_metrics *sm);
double od_pm_lag_seconds(od_sink_metrics *sm);
uint64_t od_pm_changes(const od_sink_metrics *sm); /* every operation */
/* The same over the pipeline's sinks: the slowest sink (most lag; fewest changes applied). */
uint64_t od_pm_max_lag_bytes(od_pipeline_metrics *pm);
double od_pm_max_lag_seconds(od_pipeline_metrics *pm);
uint64_t od_pm_min_changes(od_pipeline_metrics *pm);
uint64_t od_pm_min_txns(od_pipeline_metrics *pm);
/* The end-to-end latency histogram over every sink's commits (their buckets added). */
void od_pm_latency(od_pipeline_metrics *pm, od_histogram_snap *out);
/* Copy the last error (empty when none); returns its wall-clock time in µs, 0 when none. */
int64_t od_pm_last_error(od_pipeline_metrics *pm, char *msg, size_t msgsize, char *cls, size_t clssize);

const char *od_pipeline_state_name(int state);

#endif
