/* sinks/sqlite.h — counters of the SQLite sink (od_sink_sqlite, type "sqlite").
 *
 * Owns: nothing; read-only view of counters kept by the sink since it was opened.
 * Never touches: the database.
 */
#ifndef ODSYNC_SINKS_SQLITE_H
#define ODSYNC_SINKS_SQLITE_H

#include <stdint.h>

#include "odsync/sink.h"

typedef struct od_sqlite_stats {
  uint64_t inserted;         /* insert and snapshot-read rows written */
  uint64_t updated;          /* updates that matched a row */
  uint64_t deleted;          /* deletes that matched a row */
  uint64_t truncated;        /* truncate operations */
  uint64_t missing_upserted; /* update matched no row and carried the full row: inserted it */
  uint64_t missing_skipped;  /* update matched no row and had unchanged (TOAST) values: skipped */
  uint64_t delete_missing;   /* delete matched no row */
  uint64_t prepared;         /* statements prepared; constant once every shape has been seen */
  uint64_t multi_inserts;    /* statements that wrote a run of inserts / full-row updates at once
                              * (counted in inserted / updated) */
  uint64_t wal_checkpoints;  /* WAL checkpoints run by the sink's checkpoint thread */
} od_sqlite_stats;

/* Copy the counters of an open SQLite sink. OD_EINVAL when `s` is not a SQLite sink. */
int od_sink_sqlite_stats(const od_sink *s, od_sqlite_stats *out);

#endif
