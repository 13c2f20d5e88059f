/* pipeline_metrics.c — see pipeline_metrics.h. */
#include "core/pipeline_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- families ---------------------------------------------------------------------------- */

static const char *const L_P[] = {"pipeline", NULL};
static const char *const L_PS[] = {"pipeline", "sink", NULL};
static const char *const L_PSO[] = {"pipeline", "sink", "op", NULL};
static const char *const L_PSS[] = {"pipeline", "sink", "stage", NULL};
static const char *const L_PC[] = {"pipeline", "class", NULL};
static const char *const L_PST[] = {"pipeline", "state", NULL};
static const char *const L_PT[] = {"pipeline", "table", NULL};
static const char *const L_INFO[] = {"pipeline", "source", "consistency", NULL};

static const double B_ROWS[] = {1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 50000, 100000};
static const double B_SINK[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double B_LAT[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double B_STAGE[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};
#define NB(a) (int)(sizeof(a) / sizeof(a[0]))

#define COUNTER(n, h, l) {.name = n, .help = h, .type = OD_METRIC_COUNTER, .labels = l}
#define GAUGE(n, h, l) {.name = n, .help = h, .type = OD_METRIC_GAUGE, .labels = l}

static const od_metric_family_def F_CHANGES =
    COUNTER("odsync_changes_applied_total", "Row changes committed to the sink, by operation", L_PSO);
static const od_metric_family_def F_TXNS =
    COUNTER("odsync_transactions_applied_total", "Source transactions committed to the sink", L_PS);
static const od_metric_family_def F_BYTES =
    COUNTER("odsync_applied_bytes_total", "Bytes of change data committed to the sink (in-memory size)", L_PS);
static const od_metric_family_def F_BATCHES =
    COUNTER("odsync_batches_total", "Sink commits that carried data (heartbeat checkpoints not counted)", L_PS);
static const od_metric_family_def F_BATCH_ROWS = {.name = "odsync_batch_rows",
                                                  .help = "Rows per sink commit",
                                                  .type = OD_METRIC_HISTOGRAM,
                                                  .labels = L_PS,
                                                  .bounds = B_ROWS,
                                                  .nbounds = NB(B_ROWS)};
static const od_metric_family_def F_BATCH_SECONDS = {.name = "odsync_batch_sink_seconds",
                                                     .help = "Time a batch spent in the sink (apply and commit)",
                                                     .type = OD_METRIC_HISTOGRAM,
                                                     .labels = L_PS,
                                                     .scale = 1e-6,
                                                     .bounds = B_SINK,
                                                     .nbounds = NB(B_SINK)};
static const od_metric_family_def F_LATENCY = {
    .name = "odsync_end_to_end_latency_seconds",
    .help = "Source commit to sink commit, observed once per batch for its last transaction",
    .type = OD_METRIC_HISTOGRAM,
    .labels = L_PS,
    .scale = 1e-6,
    .bounds = B_LAT,
    .nbounds = NB(B_LAT)};
static const od_metric_family_def F_STAGE = {
    .name = "odsync_stage_latency_seconds",
    .help = "Where a batch's first transaction spent its time, from source commit to sink commit, by stage",
    .type = OD_METRIC_HISTOGRAM,
    .labels = L_PSS,
    .scale = 1e-6,
    .bounds = B_STAGE,
    .nbounds = NB(B_STAGE)};
static const od_metric_family_def F_ERRORS =
    COUNTER("odsync_errors_total", "Sessions ended by an error, by error class", L_PC);
static const od_metric_family_def F_RETRIES =
    COUNTER("odsync_retries_total", "Sessions restarted after a retriable error", L_P);
static const od_metric_family_def F_SESSIONS = COUNTER("odsync_sessions_total", "Sessions started", L_P);
static const od_metric_family_def F_SKIPPED =
    COUNTER("odsync_transactions_skipped_total", "Resent source transactions the sink already held", L_PS);
static const od_metric_family_def F_SCHEMA =
    COUNTER("odsync_schema_changes_total", "New table shapes seen on the source (schema versions recorded)", L_P);
static const od_metric_family_def F_ISNAP =
    COUNTER("odsync_incremental_snapshot_rows_total", "Rows copied by incremental snapshots", L_P);
static const od_metric_family_def F_SRC_POS = GAUGE(
    "odsync_source_position", "Newest position the source reported, as a number (PostgreSQL: WAL LSN)", L_P);
static const od_metric_family_def F_SINK_POS =
    GAUGE("odsync_sink_position", "Position the sink holds durably (its checkpoint), as a number", L_PS);
static const od_metric_family_def F_LAG_BYTES =
    GAUGE("odsync_lag_bytes", "Source position minus sink position (PostgreSQL: WAL bytes)", L_PS);
static const od_metric_family_def F_LAG_SECONDS = {
    .name = "odsync_lag_seconds",
    .help = "Replication lag: source commit to sink commit of the last batch, or the time since the "
            "sink last committed while rows wait",
    .type = OD_METRIC_GAUGE,
    .labels = L_PS,
    .scale = 1e-6};
static const od_metric_family_def F_COMMIT_TS = {
    .name = "odsync_last_applied_commit_timestamp_seconds",
    .help = "Source commit time (Unix seconds) of the last transaction the sink holds",
    .type = OD_METRIC_GAUGE,
    .labels = L_PS,
    .scale = 1e-6};
static const od_metric_family_def F_QUEUE =
    GAUGE("odsync_queue_rows", "Rows waiting between the source reader and the sink writer", L_P);
static const od_metric_family_def F_LIMIT =
    GAUGE("odsync_batch_limit_rows", "Current batch size limit (adaptive batching moves it)", L_PS);
static const od_metric_family_def F_STATE =
    GAUGE("odsync_pipeline_state", "1 for the state the pipeline is in, 0 for the others", L_PST);
static const od_metric_family_def F_READY =
    GAUGE("odsync_pipeline_ready", "1 while the pipeline is connected and streaming or snapshotting", L_P);
static const od_metric_family_def F_INFO =
    GAUGE("odsync_pipeline_info", "Pipeline configuration (always 1)", L_INFO);
static const char *const L_SINKINFO[] = {"pipeline", "sink", "type", NULL};
static const od_metric_family_def F_SINK_INFO =
    GAUGE("odsync_sink_info", "A sink of a pipeline and its adapter type (always 1)", L_SINKINFO);
static const char *const L_PSW[] = {"pipeline", "sink", "writer", NULL};
static const od_metric_family_def F_PARALLEL = COUNTER(
    "odsync_parallel_changes_total",
    "Changes applied under causal/eventual by the helper writers (parallel) and by the carrier (serial work)", L_PSW);
static const od_metric_family_def F_DL_TOTAL =
    COUNTER("odsync_dead_letters_total", "Poison rows stored as dead letters (on_poison: dead_letter)", L_PS);
static const od_metric_family_def F_DL =
    GAUGE("odsync_dead_letters", "Dead letters waiting in the sink (counted at session start, plus new ones)", L_PS);
static const od_metric_family_def F_CIRCUIT =
    GAUGE("odsync_sink_circuit_state", "The sink's circuit breaker: 0 closed, 1 open, 2 half-open", L_PS);
static const od_metric_family_def F_CIRCUIT_TR =
    COUNTER("odsync_sink_circuit_transitions_total", "State changes of the sink's circuit breaker", L_PS);
static const od_metric_family_def F_SRC_RETAINED =
    GAUGE("odsync_source_retained_bytes",
          "Bytes the source server keeps for this pipeline (PostgreSQL: WAL held back by the slot); -1 unknown", L_P);
static const od_metric_family_def F_SRC_SAFE =
    GAUGE("odsync_source_safe_bytes",
          "Bytes that may still be written before the server drops what it keeps for the pipeline "
          "(PostgreSQL: safe_wal_size); -1 unlimited or unknown", L_P);
static const od_metric_family_def F_SRC_WARN =
    GAUGE("odsync_source_retention_warning",
          "1 while the retained bytes are above the source's warning threshold (slot_warn_retained_bytes)", L_P);
static const od_metric_family_def F_SRC_SPILLED =
    COUNTER("odsync_source_spilled_bytes_total",
            "Decoded changes the source server wrote to its own disk for this pipeline because they passed its "
            "decoding memory (PostgreSQL 14+: pg_stat_replication_slots.spill_bytes of the slot and its "
            "catch-up copies, since odsync started)", L_P);
static const od_metric_family_def F_SRC_BATCH =
    GAUGE("odsync_source_batch_decoding",
          "1 while the source reads a backlog by batch decoding instead of its stream (PostgreSQL catch-up)", L_P);
static const od_metric_family_def F_SRC_CATCHUPS =
    COUNTER("odsync_source_catchups_total",
            "Times the source entered batch decoding since odsync started: a session that began far behind, or "
            "a stream that fell catchup_lag_bytes behind (a burst)", L_P);
static const od_metric_family_def F_SNAP_ACTIVE =
    GAUGE("odsync_snapshot_active", "1 while the initial snapshot copies", L_P);
static const od_metric_family_def F_SNAP_ROWS =
    GAUGE("odsync_snapshot_rows", "Rows the initial snapshot copied in this run, per table", L_PT);
static const od_metric_family_def F_SNAP_EST =
    GAUGE("odsync_snapshot_rows_estimated", "Rows the initial snapshot expects to copy in this run, per table", L_PT);
static const od_metric_family_def F_SNAP_CHUNKS =
    GAUGE("odsync_snapshot_chunks_done", "Chunks of the table done (this run and earlier ones)", L_PT);
static const od_metric_family_def F_SNAP_CHUNKS_TOTAL =
    GAUGE("odsync_snapshot_chunks", "Chunks in the table's snapshot plan", L_PT);

static const od_metric_family_def F_SPOOL_BYTES =
    GAUGE("odsync_sink_spool_bytes", "Bytes in the sink's spool on disk (changes it has not applied yet)", L_PS);
static const od_metric_family_def F_BLOCKED_BY =
    GAUGE("odsync_pipeline_blocked_by", "1 while this sink's spool is at its bound and the source waits for it", L_PS);
static const od_metric_family_def F_SINK_DOWN =
    GAUGE("odsync_sink_down", "1 while the sink failed and reconnects (its changes go to its spool)", L_PS);

/* ---- gauge functions --------------------------------------------------------------------- */

static int64_t u2i(uint64_t v) { return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v; }
#define PM(c) ((od_pipeline_metrics *)(c))
#define SM(c) ((od_sink_metrics *)(c))
static int64_t f_sessions(void *c) { return u2i(atomic_load(&PM(c)->stats->sessions)); }
static int64_t f_isnap(void *c) { return u2i(atomic_load(&PM(c)->stats->isnap_rows)); }
static int64_t f_src_pos(void *c) { return atomic_load(&PM(c)->source_pos_value); }
static int64_t f_src_retained(void *c) { return atomic_load(&PM(c)->src_retained); }
static int64_t f_src_safe(void *c) { return atomic_load(&PM(c)->src_safe); }
static int64_t f_src_spilled(void *c) {
  int64_t v = atomic_load(&PM(c)->src_spilled);
  return v < 0 ? 0 : v;
}
static int64_t f_src_warn(void *c) { return atomic_load(&PM(c)->src_warning); }
static int64_t f_src_batch(void *c) { return atomic_load(&PM(c)->src_batch) > 0 ? 1 : 0; }
static int64_t f_src_catchups(void *c) { return atomic_load(&PM(c)->src_catchups); }
static int64_t f_queue(void *c) { return u2i(atomic_load(&PM(c)->stats->queued_rows)); }
static int64_t f_skipped(void *c) { return u2i(atomic_load(&SM(c)->stats->txns_skipped)); }
static int64_t f_sink_pos(void *c) {
  od_pos d = od_pos_cell_get(&SM(c)->stats->durable);
  return u2i(od_pm_pos_number(&d));
}
static int64_t f_lag_bytes(void *c) { return u2i(od_pm_lag_bytes(c)); }
static int64_t f_lag_us(void *c) { return (int64_t)(od_pm_lag_seconds(c) * 1e6); }
static int64_t f_commit_ts(void *c) { return atomic_load(&SM(c)->stats->last_commit_time); }
static int64_t f_spool_bytes(void *c) { return u2i(atomic_load(&SM(c)->stats->spool_bytes)); }
static int64_t f_blocked_by(void *c) { return atomic_load(&SM(c)->stats->spool_full); }
static int64_t f_sink_down(void *c) { return atomic_load(&SM(c)->stats->down); }
static int64_t f_limit(void *c) { return u2i(atomic_load(&SM(c)->stats->batch_limit)); }
static int64_t f_helpers(void *c) { return u2i(atomic_load(&SM(c)->stats->helper_changes)); }
static int64_t f_carrier(void *c) { return u2i(atomic_load(&SM(c)->stats->carrier_changes)); }
static int64_t f_dl_total(void *c) { return u2i(atomic_load(&SM(c)->stats->dead_letters_total)); }
static int64_t f_dl(void *c) { return atomic_load(&SM(c)->stats->dead_letters); }
static int64_t f_circuit(void *c) { return atomic_load(&SM(c)->stats->circuit_state); }
static int64_t f_circuit_tr(void *c) { return u2i(atomic_load(&SM(c)->stats->circuit_transitions)); }
static int64_t f_state(void *c) {
  od_pm_state_ctx *s = c;
  return atomic_load(&s->pm->stats->state) == s->state;
}
static bool is_ready(int state) { return state == OD_PIPELINE_STREAMING || state == OD_PIPELINE_SNAPSHOT; }
static int64_t f_ready(void *c) { return is_ready(atomic_load(&PM(c)->stats->state)); }
static int64_t f_snap_active(void *c) { return atomic_load(&PM(c)->stats->snapshot.active); }
static int64_t f_t_rows(void *c) { return u2i(atomic_load(&((od_snapshot_table_stats *)c)->rows_done)); }
static int64_t f_t_est(void *c) { return u2i(atomic_load(&((od_snapshot_table_stats *)c)->rows_estimated)); }
static int64_t f_t_chunks(void *c) {
  od_snapshot_table_stats *t = c;
  return (int64_t)atomic_load(&t->chunks_done) + atomic_load(&t->chunks_skipped);
}
static int64_t f_t_total(void *c) { return atomic_load(&((od_snapshot_table_stats *)c)->chunks_total); }

const char *od_pipeline_state_name(int state) {
  switch (state) {
    case OD_PIPELINE_STARTING: return "starting";
    case OD_PIPELINE_STREAMING: return "streaming";
    case OD_PIPELINE_RETRYING: return "retrying";
    case OD_PIPELINE_STOPPED: return "stopped";
    case OD_PIPELINE_SNAPSHOT: return "snapshot";
    default: return "failed";
  }
}

/* ---- life ---------------------------------------------------------------------------------- */

static od_metric *series(od_pipeline_metrics *pm, const od_metric_family_def *def, const char *const *v) {
  return od_metrics_series(od_metrics_family(pm->registry, def), v);
}

static void fn_series(od_pipeline_metrics *pm, const od_metric_family_def *def, const char *const *v,
                      int64_t (*fn)(void *), void *ctx) {
  if (pm->nfn >= (int)(sizeof pm->fn_series / sizeof pm->fn_series[0])) return;
  pm->fn_series[pm->nfn++] = od_metrics_series_fn(od_metrics_family(pm->registry, def), v, fn, ctx);
}

static void sink_fn(od_sink_metrics *sm, const od_metric_family_def *def, const char *const *v, int64_t (*fn)(void *)) {
  if (sm->nfn >= (int)(sizeof sm->fn_series / sizeof sm->fn_series[0])) return;
  sm->fn_series[sm->nfn++] = od_metrics_series_fn(od_metrics_family(sm->pm->registry, def), v, fn, sm);
}

static void sink_new(od_pipeline_metrics *pm, od_sink_metrics *sm, od_sink_stats *st) {
  static const char *const ops[OD_PM_NOPS] = {"insert", "update", "delete", "truncate", "read", "message"};
  sm->pm = pm;
  sm->stats = st;
  atomic_store(&sm->last_sink_commit_us, od_now_us());
  const char *ps[] = {pm->pipeline, st->name, NULL};
  for (int i = 0; i < OD_PM_NOPS; i++) {
    const char *pso[] = {pm->pipeline, st->name, ops[i], NULL};
    sm->changes[i] = series(pm, &F_CHANGES, pso);
  }
  sm->txns = series(pm, &F_TXNS, ps);
  sm->bytes = series(pm, &F_BYTES, ps);
  sm->batches = series(pm, &F_BATCHES, ps);
  sm->batch_rows = series(pm, &F_BATCH_ROWS, ps);
  sm->batch_seconds = series(pm, &F_BATCH_SECONDS, ps);
  sm->latency = series(pm, &F_LATENCY, ps);
  static const char *const stages[OD_PM_NSTAGES] = {"source", "decode", "queue", "apply", "commit"};
  for (int i = 0; i < OD_PM_NSTAGES; i++) {
    const char *pss[] = {pm->pipeline, st->name, stages[i], NULL};
    sm->stages[i] = series(pm, &F_STAGE, pss);
  }
  sink_fn(sm, &F_SKIPPED, ps, f_skipped);
  sink_fn(sm, &F_SINK_POS, ps, f_sink_pos);
  sink_fn(sm, &F_LAG_BYTES, ps, f_lag_bytes);
  sink_fn(sm, &F_LAG_SECONDS, ps, f_lag_us);
  sink_fn(sm, &F_COMMIT_TS, ps, f_commit_ts);
  sink_fn(sm, &F_LIMIT, ps, f_limit);
  sink_fn(sm, &F_DL_TOTAL, ps, f_dl_total);
  const char *helpers[] = {pm->pipeline, st->name, "helpers", NULL}, *carrier[] = {pm->pipeline, st->name, "carrier", NULL};
  sink_fn(sm, &F_PARALLEL, helpers, f_helpers);
  sink_fn(sm, &F_PARALLEL, carrier, f_carrier);
  sink_fn(sm, &F_DL, ps, f_dl);
  sink_fn(sm, &F_CIRCUIT, ps, f_circuit);
  sink_fn(sm, &F_CIRCUIT_TR, ps, f_circuit_tr);
  sink_fn(sm, &F_SPOOL_BYTES, ps, f_spool_bytes);
  sink_fn(sm, &F_BLOCKED_BY, ps, f_blocked_by);
  sink_fn(sm, &F_SINK_DOWN, ps, f_sink_down);
  const char *info[] = {pm->pipeline, st->name, st->type, NULL};
  sm->fn_series[sm->nfn] = series(pm, &F_SINK_INFO, info);
  od_gauge_set(sm->fn_series[sm->nfn++], 1);
  st->metrics = sm;
}

od_pipeline_metrics *od_pipeline_metrics_new(od_metrics *registry, od_pipeline_stats *stats, const char *pipeline,
                                             const char *source_type, const char *consistency) {
  if (!registry) return NULL;
  od_pipeline_metrics *pm = calloc(1, sizeof *pm);
  if (!pm) return NULL;
  pm->registry = registry;
  pm->stats = stats;
  pthread_mutex_init(&pm->err_lock, NULL);
  od_pos_cell_init(&pm->source_pos);
  snprintf(pm->pipeline, sizeof pm->pipeline, "%s", pipeline);
  snprintf(pm->source, sizeof pm->source, "%s", source_type ? source_type : "");
  snprintf(pm->consistency, sizeof pm->consistency, "%s", consistency ? consistency : "");
  const char *p[] = {pm->pipeline, NULL};
  pm->nsinks = stats->nsinks < OD_SINKS_MAX ? stats->nsinks : OD_SINKS_MAX;
  for (int i = 0; i < pm->nsinks; i++) sink_new(pm, &pm->sinks[i], &stats->sinks[i]);
  pm->retries = series(pm, &F_RETRIES, p);
  pm->schema_changes = series(pm, &F_SCHEMA, p);
  /* errors: the family exists from the start (series appear per class) */
  od_metrics_family(registry, &F_ERRORS);
  fn_series(pm, &F_SESSIONS, p, f_sessions, pm);
  fn_series(pm, &F_ISNAP, p, f_isnap, pm);
  fn_series(pm, &F_SRC_POS, p, f_src_pos, pm);
  fn_series(pm, &F_QUEUE, p, f_queue, pm);
  atomic_store(&pm->src_retained, -1);
  atomic_store(&pm->src_safe, -1);
  fn_series(pm, &F_SRC_RETAINED, p, f_src_retained, pm);
  fn_series(pm, &F_SRC_SAFE, p, f_src_safe, pm);
  atomic_store(&pm->src_spilled, -1);
  fn_series(pm, &F_SRC_SPILLED, p, f_src_spilled, pm);
  fn_series(pm, &F_SRC_WARN, p, f_src_warn, pm);
  atomic_store(&pm->src_batch, -1);
  fn_series(pm, &F_SRC_BATCH, p, f_src_batch, pm);
  fn_series(pm, &F_SRC_CATCHUPS, p, f_src_catchups, pm);
  fn_series(pm, &F_READY, p, f_ready, pm);
  fn_series(pm, &F_SNAP_ACTIVE, p, f_snap_active, pm);
  for (int s = 0; s < 6; s++) {
    pm->state_ctx[s] = (od_pm_state_ctx){.pm = pm, .state = s};
    const char *pst[] = {pm->pipeline, od_pipeline_state_name(s), NULL};
    fn_series(pm, &F_STATE, pst, f_state, &pm->state_ctx[s]);
  }
  const char *info[] = {pm->pipeline, pm->source, pm->consistency, NULL};
  pm->fn_series[pm->nfn] = series(pm, &F_INFO, info);
  od_gauge_set(pm->fn_series[pm->nfn++], 1);
  return pm;
}

static void drop_snap(od_pipeline_metrics *pm, int i) {
  for (int k = 0; k < 4; k++) {
    od_metrics_remove(pm->snap[i][k]);
    pm->snap[i][k] = NULL;
  }
  pm->snap_name[i][0] = '\0';
}

void od_pipeline_metrics_free(od_pipeline_metrics *pm) {
  if (!pm) return;
  for (int k = 0; k < pm->nsinks; k++) {
    od_sink_metrics *sm = &pm->sinks[k];
    for (int i = 0; i < OD_PM_NOPS; i++) od_metrics_remove(sm->changes[i]);
    for (int i = 0; i < OD_PM_NSTAGES; i++) od_metrics_remove(sm->stages[i]);
    od_metric *own[] = {sm->txns, sm->bytes, sm->batches, sm->batch_rows, sm->batch_seconds, sm->latency};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) od_metrics_remove(own[i]);
    for (int i = 0; i < sm->nfn; i++) od_metrics_remove(sm->fn_series[i]);
    sm->stats->metrics = NULL;
  }
  od_metrics_remove(pm->retries);
  od_metrics_remove(pm->schema_changes);
  for (int i = 0; i < pm->nfn; i++) od_metrics_remove(pm->fn_series[i]);
  for (int i = 0; i < OD_SNAPSHOT_MAX_TABLES; i++) drop_snap(pm, i);
  /* error series stay (counters of a finished pipeline do not go backwards while the process lives) */
  od_pos_cell_destroy(&pm->source_pos);
  pthread_mutex_destroy(&pm->err_lock);
  free(pm);
}

/* ---- writers ------------------------------------------------------------------------------ */

/* The benchmark baseline build (cmake -DODSYNC_BENCH_NO_METRICS=ON) turns the hot-path writers
 * below into no-ops, so bench/metrics_cost.sh can measure what they cost. */
#ifdef OD_BENCH_NO_METRICS
#define HOT_PATH_OFF 1
#else
#define HOT_PATH_OFF 0
#endif

void od_pm_tally(uint64_t tally[OD_PM_NOPS], const od_change *changes, size_t n) {
  if (HOT_PATH_OFF) return;
  for (size_t i = 0; i < n; i++) {
    switch (changes[i].op) {
      case OD_OP_INSERT: tally[OD_PM_INSERT]++; break;
      case OD_OP_UPDATE: tally[OD_PM_UPDATE]++; break;
      case OD_OP_DELETE: tally[OD_PM_DELETE]++; break;
      case OD_OP_TRUNCATE: tally[OD_PM_TRUNCATE]++; break;
      case OD_OP_READ: tally[OD_PM_READ]++; break;
      default: tally[OD_PM_MESSAGE]++; break;
    }
  }
}

void od_pm_batch(od_sink_metrics *pm, const uint64_t tally[OD_PM_NOPS], uint64_t txns, uint64_t bytes,
                 int64_t sink_us, int64_t commit_time_us) {
  if (!pm || HOT_PATH_OFF) return;
  uint64_t rows = 0;
  for (int i = 0; i < OD_PM_NOPS; i++) {
    rows += tally[i];
    if (tally[i]) od_counter_add(pm->changes[i], tally[i]);
  }
  int64_t now = od_now_us();
  atomic_store(&pm->last_sink_commit_us, now);
  if (!rows && !txns) { /* a heartbeat checkpoint: the sink holds everything up to an idle point */
    atomic_store(&pm->last_lag_us, 0);
    return;
  }
  od_counter_add(pm->txns, txns);
  od_counter_add(pm->bytes, bytes);
  od_counter_add(pm->batches, 1);
  od_histogram_observe(pm->batch_rows, rows);
  od_histogram_observe(pm->batch_seconds, sink_us > 0 ? (uint64_t)sink_us : 0);
  if (commit_time_us > 0) {
    int64_t lat = now - commit_time_us;
    atomic_store(&pm->last_lag_us, lat < 0 ? 0 : lat);
  }
}

void od_pm_txn_latency(od_sink_metrics *sm, int64_t commit_time_us, uint64_t n, int64_t now_us) {
  if (!sm || commit_time_us <= 0 || !n || HOT_PATH_OFF) return;
  int64_t lat = now_us - commit_time_us;
  od_histogram_observe_n(sm->latency, lat < 0 ? 0 : (uint64_t)lat, n);
}

void od_pm_stages(od_sink_metrics *sm, const int64_t us[OD_PM_NSTAGES]) {
  if (!sm || HOT_PATH_OFF) return;
  for (int i = 0; i < OD_PM_NSTAGES; i++) od_histogram_observe(sm->stages[i], us[i] < 0 ? 0 : (uint64_t)us[i]);
}

uint64_t od_pm_pos_number(const od_pos *p) {
  if (od_pos_is_none(p)) return 0;
  return p->kind->version ? p->kind->version(p) : 0;
}

void od_pm_source_position(od_pipeline_metrics *pm, const od_pos *pos) {
  if (!pm || od_pos_is_none(pos) || HOT_PATH_OFF) return;
  od_pos_cell_set(&pm->source_pos, pos); /* once per transaction, never per row */
  atomic_store_explicit(&pm->source_pos_value, u2i(od_pm_pos_number(pos)), memory_order_relaxed);
}

void od_pm_source_health(od_pipeline_metrics *pm, const od_source_health *h) {
  if (!pm || !h) return;
  atomic_store(&pm->src_retained, h->retained_bytes);
  atomic_store(&pm->src_safe, h->safe_bytes);
  atomic_store(&pm->src_warning, h->warning ? 1 : 0);
  if (h->spilled_bytes >= 0) atomic_store(&pm->src_spilled, h->spilled_bytes);
  atomic_store(&pm->src_batch, h->batch_decoding);
  if (h->catchups > atomic_load(&pm->src_catchups)) atomic_store(&pm->src_catchups, h->catchups);
  pthread_mutex_lock(&pm->err_lock);
  snprintf(pm->src_status, sizeof pm->src_status, "%s", h->status);
  pthread_mutex_unlock(&pm->err_lock);
  atomic_store(&pm->src_health_known, 1);
}

bool od_pm_source_health_get(od_pipeline_metrics *pm, od_source_health *out) {
  if (!pm || !atomic_load(&pm->src_health_known)) return false;
  out->retained_bytes = atomic_load(&pm->src_retained);
  out->safe_bytes = atomic_load(&pm->src_safe);
  out->warning = atomic_load(&pm->src_warning) != 0;
  out->spilled_bytes = atomic_load(&pm->src_spilled);
  out->batch_decoding = atomic_load(&pm->src_batch);
  out->catchups = atomic_load(&pm->src_catchups);
  pthread_mutex_lock(&pm->err_lock);
  snprintf(out->status, sizeof out->status, "%s", pm->src_status);
  pthread_mutex_unlock(&pm->err_lock);
  return true;
}

void od_pm_schema_changes(od_pipeline_metrics *pm, uint64_t n) {
  if (pm && n) od_counter_add(pm->schema_changes, n);
}

void od_pm_error(od_pipeline_metrics *pm, const od_error *err, bool retry) {
  if (!pm || !err) return;
  char cls[32];
  snprintf(cls, sizeof cls, "%s", od_status_name(err->code));
  for (char *c = cls; *c; c++)
    if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
  const char *pc[] = {pm->pipeline, cls, NULL};
  od_counter_add(od_metrics_series(od_metrics_family(pm->registry, &F_ERRORS), pc), 1);
  if (retry) od_counter_add(pm->retries, 1);
  atomic_fetch_add(&pm->errors, 1);
  pthread_mutex_lock(&pm->err_lock);
  snprintf(pm->last_error, sizeof pm->last_error, "%s", err->msg);
  snprintf(pm->last_error_class, sizeof pm->last_error_class, "%s", cls);
  pm->last_error_at = od_now_us();
  pthread_mutex_unlock(&pm->err_lock);
}

/* ---- readers ------------------------------------------------------------------------------ */

void od_pipeline_metrics_refresh(od_pipeline_metrics *pm) {
  if (!pm) return;
  od_snapshot_stats *ss = &pm->stats->snapshot;
  int n = atomic_load(&ss->ntables);
  if (n > OD_SNAPSHOT_MAX_TABLES) n = OD_SNAPSHOT_MAX_TABLES;
  for (int i = 0; i < OD_SNAPSHOT_MAX_TABLES; i++) {
    od_snapshot_table_stats *t = &ss->tables[i];
    if (i >= n) continue; /* a slot not (yet) in use keeps the series of the last run, if any */
    if (pm->snap_name[i][0] && strcmp(pm->snap_name[i], t->name) == 0) continue;
    drop_snap(pm, i);
    snprintf(pm->snap_name[i], sizeof pm->snap_name[i], "%s", t->name);
    const char *pt[] = {pm->pipeline, pm->snap_name[i], NULL};
    pm->snap[i][0] = od_metrics_series_fn(od_metrics_family(pm->registry, &F_SNAP_ROWS), pt, f_t_rows, t);
    pm->snap[i][1] = od_metrics_series_fn(od_metrics_family(pm->registry, &F_SNAP_EST), pt, f_t_est, t);
    pm->snap[i][2] = od_metrics_series_fn(od_metrics_family(pm->registry, &F_SNAP_CHUNKS), pt, f_t_chunks, t);
    pm->snap[i][3] = od_metrics_series_fn(od_metrics_family(pm->registry, &F_SNAP_CHUNKS_TOTAL), pt, f_t_total, t);
  }
}

uint64_t od_pm_lag_bytes(od_sink_metrics *sm) {
  if (!sm) return 0;
  int64_t src = atomic_load(&sm->pm->source_pos_value);
  od_pos d = od_pos_cell_get(&sm->stats->durable);
  uint64_t dur = od_pm_pos_number(&d);
  return src > 0 && (uint64_t)src > dur ? (uint64_t)src - dur : 0;
}

double od_pm_lag_seconds(od_sink_metrics *sm) {
  if (!sm) return 0;
  bool queued = atomic_load(&sm->pm->stats->queued_rows) > 0;
  /* Caught up (nothing queued, the sink holds the newest position the source reported): the lag
   * of the last batch is history. */
  if (!queued && atomic_load(&sm->pm->source_pos_value) > 0 && od_pm_lag_bytes(sm) == 0) return 0;
  int64_t lag = atomic_load(&sm->last_lag_us);
  if (queued) {
    int64_t since = od_now_us() - atomic_load(&sm->last_sink_commit_us);
    if (since > lag) lag = since;
  }
  return lag > 0 ? lag / 1e6 : 0;
}

uint64_t od_pm_changes(const od_sink_metrics *sm) {
  uint64_t v = 0;
  for (int i = 0; sm && i < OD_PM_NOPS; i++) v += od_counter_value(sm->changes[i]);
  return v;
}

uint64_t od_pm_max_lag_bytes(od_pipeline_metrics *pm) {
  uint64_t m = 0;
  for (int i = 0; pm && i < pm->nsinks; i++) {
    uint64_t v = od_pm_lag_bytes(&pm->sinks[i]);
    if (v > m) m = v;
  }
  return m;
}

double od_pm_max_lag_seconds(od_pipeline_metrics *pm) {
  double m = 0;
  for (int i = 0; pm && i < pm->nsinks; i++) {
    double v = od_pm_lag_seconds(&pm->sinks[i]);
    if (v > m) m = v;
  }
  return m;
}

uint64_t od_pm_min_changes(od_pipeline_metrics *pm) {
  if (!pm || !pm->nsinks) return 0;
  uint64_t m = od_pm_changes(&pm->sinks[0]);
  for (int i = 1; i < pm->nsinks; i++) {
    uint64_t v = od_pm_changes(&pm->sinks[i]);
    if (v < m) m = v;
  }
  return m;
}

uint64_t od_pm_min_txns(od_pipeline_metrics *pm) {
  if (!pm || !pm->nsinks) return 0;
  uint64_t m = od_counter_value(pm->sinks[0].txns);
  for (int i = 1; i < pm->nsinks; i++) {
    uint64_t v = od_counter_value(pm->sinks[i].txns);
    if (v < m) m = v;
  }
  return m;
}

void od_pm_latency(od_pipeline_metrics *pm, od_histogram_snap *out) {
  memset(out, 0, sizeof *out);
  for (int s = 0; pm && s < pm->nsinks; s++) {
    od_histogram_snap h;
    od_histogram_read(pm->sinks[s].latency, &h);
    if (s == 0) {
      *out = h;
      continue;
    }
    if (h.nbounds != out->nbounds) continue;
    for (int b = 0; b <= h.nbounds; b++) out->buckets[b] += h.buckets[b];
    out->count += h.count;
    out->sum += h.sum;
  }
}

int64_t od_pm_last_error(od_pipeline_metrics *pm, char *msg, size_t msgsize, char *cls, size_t clssize) {
  if (msgsize) msg[0] = '\0';
  if (clssize) cls[0] = '\0';
  if (!pm) return 0;
  pthread_mutex_lock(&pm->err_lock);
  snprintf(msg, msgsize, "%s", pm->last_error);
  snprintf(cls, clssize, "%s", pm->last_error_class);
  int64_t at = pm->last_error_at;
  pthread_mutex_unlock(&pm->err_lock);
  return at;
}
