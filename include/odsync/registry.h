/* odsync/registry.h — the one table of adapters. Adding an adapter: one file, one line in
 * src/core/registry.c. */
#ifndef ODSYNC_REGISTRY_H
#define ODSYNC_REGISTRY_H

#include "odsync/sink.h"
#include "odsync/source.h"
#include "odsync/transform.h"

const od_source_ops *od_source_find(const char *type);
const od_sink_ops *od_sink_find(const char *type);
/* Comma-separated list of registered types, for error messages. */
const char *od_source_types(void);
const char *od_sink_types(void);
const od_transform_ops *od_transform_find(const char *type);
const char *od_transform_types(void);
/* The position kind named `name` among the registered sources' kinds (odsync/position.h). */
const od_pos_kind *od_pos_kind_find(const char *name);
/* Adapters registered at run time, after the built-in table (embedders, tests' fakes). Not
 * thread-safe: call before any pipeline is made. At most 8 of each; OD_EINVAL when full or
 * malformed. */
int od_registry_add_source(const od_source_ops *ops);
int od_registry_add_sink(const od_sink_ops *ops);
/* Every registered adapter is well formed (od_sink_ops_check; sources name a position kind). */
int od_registry_check(od_error *err);

#endif
