/* sources/mysql/my_conn.h — the mysql source's settings, connections and catalog (internal).
 *
 * my_conn.c owns: the source's config keys (docs/CONFIG.md, "Source: mysql"), the connection
 * settings (from `dsn` or host/port/user/password/database), naming the server as host:port/db
 * (never the password), opening a client connection with odsync's session settings.
 * my_catalog.c owns: server checks (log_bin, binlog_format, binlog_row_image, ...), which tables are
 * captured, and table descriptions from information_schema (cached until a DDL).
 * Ownership: my_settings holds pointers into the od_config (which outlives the source) and owns
 * its table patterns array; the catalog owns its cache; connections are the caller's (mysql_close).
 * Never touches: the binlog stream.
 */
#ifndef ODSYNC_MYSQL_CONN_H
#define ODSYNC_MYSQL_CONN_H

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

#include "odsync/config.h"
#include "odsync/error.h"
#include "sources/mysql/binlog.h"

typedef struct my_settings {
  char host[256], user[128], database[128];
  char *password; /* owned (may come from ${env:}); never printed */
  unsigned port;
  unsigned server_id;
  char **tables; /* patterns "db.table" (* and ? wildcards); owned array, strings owned */
  int ntables;
  bool snapshot_initial;
  uint32_t snapshot_chunk_rows;
  long heartbeat_ms;
  char where[400]; /* "mysql host:port/db" for messages */
} my_settings;

/* Validate the source section (FILE:LINE:COL errors) and fill s. */
int my_settings_load(my_settings *s, const od_config_section *cfg, const char *pipeline, od_error *err);
/* The same with another list of allowed keys (NULL-terminated; a source type built on these settings
 * with keys of its own, e.g. mariadb_trigger). */
int my_settings_load_keys(my_settings *s, const od_config_section *cfg, const char *pipeline,
                          const char *const *keys, od_error *err);
void my_settings_free(my_settings *s);
/* A client connection (utf8mb4, time_zone +00:00). Retriable OD_ECONNECT on failure. */
int my_connect(const my_settings *s, MYSQL **out, od_error *err);
/* Run a statement; OD_ESOURCE naming the server and what failed. */
int my_exec(const my_settings *s, MYSQL *m, const char *sql, od_error *err);
/* Fail with the connection's error (retriable when the connection is gone). */
int my_fail(const my_settings *s, MYSQL *m, const char *what, od_error *err);

/* ---- catalog (my_catalog.c) ---- */
typedef struct my_catalog my_catalog;
my_catalog *my_catalog_new(const my_settings *s);
void my_catalog_free(my_catalog *c);
/* The connection the catalog queries with (owned by the catalog; opened on first use). */
int my_catalog_conn(my_catalog *c, MYSQL **out, od_error *err);
void my_catalog_disconnect(my_catalog *c);
/* Every cached description is stale. */
void my_catalog_forget(my_catalog *c);
bool my_catalog_captured(const my_catalog *c, const char *db, const char *table);
/* Fill what a MINIMAL table map lacks from information_schema. A column count that differs from the
 * table map (the table changed since the event was written) is an OD_ESCHEMA error naming the table
 * and the fix (binlog_row_metadata=FULL). */
int my_catalog_describe(my_catalog *c, my_table *t, od_error *err);
/* A described table built from information_schema alone; *out NULL when it does not exist. */
int my_catalog_shape(my_catalog *c, const char *db, const char *table, my_table **out, od_error *err);
/* Server settings the binlog source needs; one problem() call per problem; returns the count. */
typedef void (*my_problem_fn)(void *ctx, bool fatal, const char *msg);
int my_catalog_check(my_catalog *c, my_problem_fn problem, void *ctx, od_error *err);
/* The same checks before streaming: the first fatal problem as a (non-retriable) error. */
int my_catalog_require(my_catalog *c, od_error *err);

#endif
