/* odsync/registry.h — the one table of adapters. Adding an adapter: one file, one line in
 * src/core/registry.c. */
#ifndef ODSYNC_REGISTRY_H
#define ODSYNC_REGISTRY_H

#include "odsync/sink.h"
#include "odsync/source.h"

const od_source_ops *od_source_find(const char *type);
const od_sink_ops *od_sink_find(const char *type);
/* Comma-separated list of registered types, for error messages. */
const char *od_source_types(void);
const char *od_sink_types(void);

#endif
