/* core/transform.h — opening a sink with its transforms in front of it.
 *
 * Owns: the chain sink (an od_sink whose ops forward to the adapter's, in the style of curl's
 * connection filters), the transform instances, the map from input relation versions to the
 * relations the sink sees, and the scratch arena of rewritten changes (reset per apply/load call).
 * Never touches: the queue, the source, positions (checkpoints and marks pass through unchanged).
 */
#ifndef ODSYNC_CORE_TRANSFORM_H
#define ODSYNC_CORE_TRANSFORM_H

#include "odsync/config.h"
#include "odsync/sink.h"
#include "odsync/transform.h"

/* Validate every transform of a pipeline's sink (the pipeline's list, then the sink's). */
int od_transforms_check(const od_pipeline_config *cfg, const od_sink_config *sk, od_error *err);

/* Open the sink `sk` of pipeline `cfg` through `ops` with `name` as its checkpoint name; when
 * transforms apply, *out is the chain in front of it (closing it closes the adapter). */
int od_sink_open_chain(const od_pipeline_config *cfg, const od_sink_config *sk, const od_sink_ops *ops,
                       const char *name, od_sink **out, od_error *err);

#endif
