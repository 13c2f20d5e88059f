/* core/pii_scan.h — `odsync scan`: sample the captured tables of a pipeline's PostgreSQL source
 * and report columns that look like PII (core/pii.h), with a ready-to-paste `transforms:` block.
 * Owns: its own libpq connection (read-only queries; closed before returning). Never touches the
 * replication slot, the publication, sinks or state. Prints no value it sampled.
 */
#ifndef ODSYNC_CORE_PII_SCAN_H
#define ODSYNC_CORE_PII_SCAN_H

#include <stdio.h>

#include "odsync/config.h"
#include "odsync/error.h"

/* rows: at most this many rows sampled per table. A source of another type is an error. */
int od_pii_scan(const od_pipeline_config *cfg, int rows, FILE *out, od_error *err);

#endif
