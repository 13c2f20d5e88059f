/* registry.c — the adapter table. One line per adapter; nothing else lives here but the lookups. */
#include "odsync/registry.h"

#include <stdio.h>
#include <string.h>

extern const od_source_ops od_source_postgres;
extern const od_source_ops od_source_mysql;
extern const od_source_ops od_source_http;
extern const od_source_ops od_source_postgres_poll;
extern const od_source_ops od_source_postgres_trigger;
extern const od_source_ops od_source_sqlite_poll;
extern const od_source_ops od_source_mariadb_trigger;
extern const od_sink_ops od_sink_sqlite;
extern const od_sink_ops od_sink_postgres;
extern const od_sink_ops od_sink_clickhouse;
extern const od_sink_ops od_sink_redis;
extern const od_transform_ops od_transform_drop_columns;
extern const od_transform_ops od_transform_rename;
extern const od_transform_ops od_transform_filter;
extern const od_transform_ops od_transform_mask;
extern const od_transform_ops od_transform_hash;
extern const od_transform_ops od_transform_pseudonymize;
extern const od_transform_ops od_transform_truncate_date;
extern const od_transform_ops od_transform_null;

static const od_source_ops *const sources[] = {
    &od_source_postgres,
    &od_source_mysql,
    &od_source_http,
    &od_source_postgres_poll,
    &od_source_postgres_trigger,
    &od_source_sqlite_poll,
    &od_source_mariadb_trigger,
};

static const od_sink_ops *const sinks[] = {
    &od_sink_sqlite,
    &od_sink_postgres,
    &od_sink_clickhouse,
    &od_sink_redis,
};

static const od_transform_ops *const transforms[] = {
    &od_transform_drop_columns,
    &od_transform_rename,
    &od_transform_filter,
    &od_transform_mask,
    &od_transform_hash,
    &od_transform_pseudonymize,
    &od_transform_truncate_date,
    &od_transform_null,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define EXTRA_MAX 8

static const od_source_ops *extra_sources[EXTRA_MAX];
static const od_sink_ops *extra_sinks[EXTRA_MAX];
static size_t nextra_sources, nextra_sinks;

int od_registry_add_source(const od_source_ops *ops) {
  if (!ops || !ops->type || !ops->position || nextra_sources == EXTRA_MAX) return OD_EINVAL;
  extra_sources[nextra_sources++] = ops;
  return OD_OK;
}

int od_registry_add_sink(const od_sink_ops *ops) {
  if (!ops || nextra_sinks == EXTRA_MAX || od_sink_ops_check(ops, NULL)) return OD_EINVAL;
  extra_sinks[nextra_sinks++] = ops;
  return OD_OK;
}

const od_source_ops *od_source_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(sources); i++)
    if (strcmp(sources[i]->type, type) == 0) return sources[i];
  for (size_t i = 0; type && i < nextra_sources; i++)
    if (strcmp(extra_sources[i]->type, type) == 0) return extra_sources[i];
  return NULL;
}

const od_sink_ops *od_sink_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(sinks); i++)
    if (strcmp(sinks[i]->type, type) == 0) return sinks[i];
  for (size_t i = 0; type && i < nextra_sinks; i++)
    if (strcmp(extra_sinks[i]->type, type) == 0) return extra_sinks[i];
  return NULL;
}

static const char *types(char *buf, size_t size, const char *const *names, size_t n) {
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && o < size; i++) o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", names[i]);
  return buf;
}

const char *od_source_types(void) {
  static char buf[256];
  const char *names[COUNT(sources)];
  for (size_t i = 0; i < COUNT(sources); i++) names[i] = sources[i]->type;
  return types(buf, sizeof buf, names, COUNT(sources));
}

const char *od_sink_types(void) {
  static char buf[256];
  const char *names[COUNT(sinks)];
  for (size_t i = 0; i < COUNT(sinks); i++) names[i] = sinks[i]->type;
  return types(buf, sizeof buf, names, COUNT(sinks));
}

const od_transform_ops *od_transform_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(transforms); i++)
    if (strcmp(transforms[i]->type, type) == 0) return transforms[i];
  return NULL;
}

const char *od_transform_types(void) {
  static char buf[256];
  const char *names[COUNT(transforms)];
  for (size_t i = 0; i < COUNT(transforms); i++) names[i] = transforms[i]->type;
  return types(buf, sizeof buf, names, COUNT(transforms));
}

const od_pos_kind *od_pos_kind_find(const char *name) {
  for (size_t i = 0; name && i < COUNT(sources); i++)
    if (sources[i]->position && strcmp(sources[i]->position->name, name) == 0) return sources[i]->position;
  for (size_t i = 0; name && i < nextra_sources; i++)
    if (strcmp(extra_sources[i]->position->name, name) == 0) return extra_sources[i]->position;
  return NULL;
}

int od_registry_check(od_error *err) {
  for (size_t i = 0; i < COUNT(sinks); i++) {
    int rc = od_sink_ops_check(sinks[i], err);
    if (rc) return rc;
  }
  for (size_t i = 0; i < COUNT(sources); i++) {
    const od_source_ops *o = sources[i];
    if (!o->type || !o->position || !o->position->name || !o->position->format || !o->position->parse ||
        !o->open || !o->check || !o->start || !o->poll || !o->ack || !o->close)
      return OD_FAIL(err, OD_EINVAL, "source type %s: a required slot of od_source_ops is missing",
                     o->type ? o->type : "?");
  }
  return OD_OK;
}
