/* registry.c — the adapter table. One line per adapter; nothing else lives here. */
#include "odsync/registry.h"

#include <string.h>

extern const od_source_ops od_source_postgres;
extern const od_sink_ops od_sink_sqlite;
extern const od_sink_ops od_sink_postgres;
extern const od_sink_ops od_sink_clickhouse;
extern const od_sink_ops od_sink_redis;

static const od_source_ops *const sources[] = {
    &od_source_postgres,
};

static const od_sink_ops *const sinks[] = {
    &od_sink_sqlite,
    &od_sink_postgres,
    &od_sink_clickhouse,
    &od_sink_redis,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const od_source_ops *od_source_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(sources); i++)
    if (strcmp(sources[i]->type, type) == 0) return sources[i];
  return NULL;
}

const od_sink_ops *od_sink_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(sinks); i++)
    if (strcmp(sinks[i]->type, type) == 0) return sinks[i];
  return NULL;
}

const char *od_source_types(void) { return "postgres"; }
const char *od_sink_types(void) { return "sqlite, postgres, clickhouse, redis"; }
