/* status.h — what an operator sees of the running pipelines: one row per pipeline (state,
 * positions, lag, totals, rates, latency percentiles, snapshot progress, last error), a short
 * history of samples for the dashboard's charts, and its two renderings: JSON (/status) and a
 * terminal table (/status?format=text, which `odsync status` prints).
 *
 * Owns: the history ring (one sample per pipeline per od_status_sample call; the last
 * OD_STATUS_HISTORY samples) and its mutex. Reads pipelines only through their stats and
 * metrics (atomics, the metrics registry); the pipelines are borrowed and must outlive it.
 * Never touches: sockets, sources, sinks, the pipelines' locks.
 */
#ifndef ODSYNC_STATUS_H
#define ODSYNC_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/sqlbuf.h"
#include "core/pipeline.h"

#define OD_STATUS_HISTORY 300 /* samples kept: 5 minutes at one per second */

typedef struct od_status_view od_status_view;

od_status_view *od_status_new(od_pipeline **pipes, int n);
void od_status_free(od_status_view *s);
/* A view that replaces `from` after a config reload keeps its start time (uptime is the process'). */
void od_status_keep_start(od_status_view *s, const od_status_view *from);
/* Take one sample of every pipeline (the admin server calls it once a second). */
void od_status_sample(od_status_view *s);
/* {"version":..., "ready":..., "pipelines":[...]}; with `history`, each pipeline carries the
 * sampled series for charts. Returns 0, -1 when out of memory. */
int od_status_json(od_status_view *s, bool history, od_sqlbuf *out);
/* The terminal table. */
int od_status_text(od_status_view *s, od_sqlbuf *out);
/* True when every pipeline is connected and streaming or snapshotting; otherwise `why` (may be
 * NULL) gets one line per pipeline that is not. */
bool od_status_ready(od_status_view *s, od_sqlbuf *why);

#endif
