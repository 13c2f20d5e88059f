/* core/governance.h — the audit records the pipeline writes at its events (session start per sink,
 * schema change, snapshot table start/finish), built here so the pipeline's files stay one call
 * each. Owns nothing; never touches sinks or sources. No-ops while auditing is off.
 */
#ifndef ODSYNC_CORE_GOVERNANCE_H
#define ODSYNC_CORE_GOVERNANCE_H

#include <stdint.h>

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/position.h"

void od_gov_session(const od_pipeline_config *cfg, const od_sink_config *sk, const od_pos *checkpoint);
/* A table's shape recorded by the schema history (a new table or a new version of one). */
void od_gov_schema_change(const char *pipeline, const od_relation *rel, const char *change);
/* The initial snapshot of `table` into the sink whose checkpoint name is `ckpt_name`
 * ("<pipeline>" or "<pipeline>.<sink>"): event "snapshot_table_start" or "snapshot_table_done". */
void od_gov_snapshot_table(const char *pipeline, const char *ckpt_name, const char *table, const char *event,
                           uint64_t rows);

/* Incremental snapshots (`odsync snapshot`, every sink of the pipeline): event "isnap_requested",
 * "isnap_table_start" or "isnap_table_done" (rows written, rows taken from the stream). */
void od_gov_isnap(const char *pipeline, const char *table, const char *event, uint64_t rows, uint64_t from_stream);

#endif
