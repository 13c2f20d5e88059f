/* sources/mysql/mytrig.h — trigger-based capture of MariaDB (`type: mariadb_trigger`, internal).
 *
 * mytrig_install.c owns the capture objects in the source server (database `odsync`: the one-row
 * counter, the change table; three row triggers per captured table) and `odsync install-triggers` /
 * `uninstall-triggers` for this type. mytrig_source.c reads the change table. mytrig_position.c owns
 * the position kind "mytrig". docs/adapters/mariadb_trigger.md has the commit-order argument.
 * Ownership: the names below are static strings. Never touches sinks.
 */
#ifndef ODSYNC_MYSQL_MYTRIG_H
#define ODSYNC_MYSQL_MYTRIG_H

#include <stddef.h>

#include "odsync/position.h"
#include "odsync/change.h"
#include "sources/mysql/binlog.h"
#include "sources/mysql/my_conn.h"

/* One captured table: its description from information_schema (owned) and, in the reader, its
 * relation (owned by the reader's relation cache). */
typedef struct mytrig_table {
  char db[65], name[65];
  my_table *shape;
  od_relation *rel;
  bool announced;
} mytrig_table;

/* The config keys of a mariadb_trigger source (NULL-terminated; mytrig_source.c). */
extern const char *const od_mytrig_config_keys[];

/* The base tables of the server that the settings' `tables:` patterns match (database odsync never),
 * described. *out is malloc'd (mytrig_tables_free). */
int mytrig_list_tables(const my_settings *s, my_catalog *cat, mytrig_table **out, int *n, od_error *err);
void mytrig_tables_free(mytrig_table *t, int n);

/* "mytrig": the sequence number of a captured change (odsync.changes.seq); a transaction whose
 * changes have the numbers f..l is [f, l + 1); the initial copy is [0, M + 1). Text: the number. */
extern const od_pos_kind od_mytrig_position;

/* The trigger of table `table` for op 'i', 'u' or 'd' ("odsync_<op>_<table>"); -1 when too long. */
int mytrig_trigger_name(const char *table, char op, char *buf, size_t size);

/* The JSON_ARRAY(...) element for a column in a trigger (NEW or OLD row): the text form the reader
 * turns into the snapshot's form (mytrig_value). */
int mytrig_column_expr(const my_column *c, const char *row, char *buf, size_t size);

/* The text the sinks get for a column from the text the trigger stored (v, n bytes); the result is
 * written into out (cap bytes); its length, or -1 when it does not fit / is malformed. */
long mytrig_value(const my_column *c, const char *v, size_t n, char *out, size_t cap);

#endif
