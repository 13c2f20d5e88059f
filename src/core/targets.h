/* core/targets.h — before anything is written: do the captured source tables land in target tables
 * that are theirs? Asks the source for its tables (od_source_ops.tables) and the sink to look at
 * their targets (od_sink_ops.check_tables): two source tables in one target table, a target another
 * pipeline writes, a target the sink had and lost. Used by `odsync check` and at the start of every
 * session of `odsync run`, so both refuse the same things.
 * Owns: nothing after it returns. Never touches: the stream, the sink's data (read only).
 */
#ifndef ODSYNC_CORE_TARGETS_H
#define ODSYNC_CORE_TARGETS_H

#include <stdbool.h>

#include "odsync/sink.h"
#include "odsync/source.h"

/* Report each finding through problem(); returns the number of fatal ones (0 also when the source
 * or the sink cannot tell), or a negative status with err filled. */
int od_targets_check(od_source *source, od_sink *sink, void (*problem)(void *ctx, bool fatal, const char *msg),
                     void *ctx, od_error *err);
/* The same for `odsync run`: OD_OK, or OD_ESCHEMA (not retriable) carrying the first fatal finding
 * (the others are logged as errors here). */
int od_targets_refuse(const char *pipeline, od_source *source, od_sink *sink, od_error *err);

#endif
