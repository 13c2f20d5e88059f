/* sources/mysql/mytrig_install.c — the objects `type: mariadb_trigger` keeps in the source server,
 * created by `odsync install-triggers` and removed by `odsync uninstall-triggers`:
 *
 *   database odsync
 *     counter (id = 1, n): one row; every trigger first runs UPDATE ... SET n = LAST_INSERT_ID(n + 1):
 *             the row lock it takes is held until the writing transaction ends, so capturing
 *             transactions take their numbers one after the other, in commit order, and a rolled
 *             back transaction gives its numbers back (docs/adapters/mariadb_trigger.md).
 *     changes (seq = that number, txn = CONNECTION_ID()/@@last_gtid (one value per transaction of a
 *             connection), db, tbl, op I/U/D, new_row, old_row = JSON_ARRAY of the columns, at)
 *   per captured table db.t: AFTER INSERT/UPDATE/DELETE row triggers odsync_i_t, odsync_u_t, odsync_d_t
 *   (in database db; SQL SECURITY DEFINER: writers need no privilege on odsync).
 * The trigger lists the table's columns: after an ALTER TABLE, run install-triggers again.
 * Uninstall drops the triggers and the database odsync: information_schema is as before the install.
 * Ownership: borrows the config; owns its settings, catalog and connection for the call. Never
 * touches sinks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapter.h"
#include "odsync/capture_admin.h"
#include "sources/mysql/mytrig.h"

static const char *const install_sql[] = {
    "CREATE DATABASE IF NOT EXISTS odsync",
    "CREATE TABLE IF NOT EXISTS odsync.counter (id TINYINT UNSIGNED PRIMARY KEY, n BIGINT UNSIGNED NOT NULL)"
    " ENGINE=InnoDB",
    "INSERT IGNORE INTO odsync.counter VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS odsync.changes (seq BIGINT UNSIGNED PRIMARY KEY, txn VARCHAR(100) NOT NULL,"
    " db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, op CHAR(1) NOT NULL, new_row LONGTEXT, old_row LONGTEXT,"
    " at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
    NULL};

static bool plain_name(const char *n) { return !strpbrk(n, "'\\`\"") && *n; }

int mytrig_list_tables(const my_settings *s, my_catalog *cat, mytrig_table **out, int *n, od_error *err) {
  *out = NULL;
  *n = 0;
  MYSQL *m;
  int rc = my_catalog_conn(cat, &m, err);
  if (rc) return rc;
  if (mysql_query(m, "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                     " AND table_schema NOT IN ('odsync', 'mysql', 'information_schema', 'performance_schema', 'sys')"
                     " ORDER BY 1, 2"))
    return my_fail(s, m, "listing the tables to capture", err);
  MYSQL_RES *res = mysql_store_result(m);
  if (!res) return my_fail(s, m, "listing the tables to capture", err);
  mytrig_table *t = calloc(mysql_num_rows(res) + 1, sizeof *t);
  if (!t) {
    mysql_free_result(res);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  int k = 0;
  MYSQL_ROW row;
  while (!rc && (row = mysql_fetch_row(res))) {
    if (!my_catalog_captured(cat, row[0], row[1])) continue;
    if (!plain_name(row[0]) || !plain_name(row[1]) || strlen(row[0]) > 64 || strlen(row[1]) > 55) {
      rc = OD_FAIL(err, OD_EUNSUPPORTED, "%s: table %s.%s: mariadb_trigger cannot capture a table whose name has quotes "
                   "or backslashes or is longer than 55 characters (the trigger name odsync_x_<table> must fit in "
                   "64): leave it out of tables:", s->where, row[0], row[1]);
      break;
    }
    snprintf(t[k].db, sizeof t[k].db, "%s", row[0]);
    snprintf(t[k].name, sizeof t[k].name, "%s", row[1]);
    k++;
    if ((rc = my_catalog_shape(cat, row[0], row[1], &t[k - 1].shape, err))) break;
    if (!t[k - 1].shape) rc = OD_FAIL_RETRY(err, OD_ESCHEMA, "%s: table %s.%s disappeared while being described",
                                            s->where, row[0], row[1]);
  }
  mysql_free_result(res);
  if (rc) {
    mytrig_tables_free(t, k);
    return rc;
  }
  *out = t;
  *n = k;
  return OD_OK;
}

void mytrig_tables_free(mytrig_table *t, int n) {
  for (int i = 0; t && i < n; i++) my_table_free(t[i].shape);
  free(t);
}

/* JSON_ARRAY(<expr of each column of row NEW or OLD>) appended at sql + *len. */
static int row_json(const mytrig_table *t, const char *row, char *sql, size_t cap, size_t *len) {
  int n = snprintf(sql + *len, cap - *len, "JSON_ARRAY(");
  if (n < 0 || (size_t)n >= cap - *len) return -1;
  *len += (size_t)n;
  for (int i = 0; i < t->shape->ncols; i++) {
    if (i) {
      if (*len + 2 >= cap) return -1;
      sql[(*len)++] = ',';
    }
    if ((n = mytrig_column_expr(&t->shape->cols[i], row, sql + *len, cap - *len)) < 0) return -1;
    *len += (size_t)n;
  }
  if (*len + 2 >= cap) return -1;
  sql[(*len)++] = ')';
  sql[*len] = '\0';
  return 0;
}

static int create_trigger(const my_settings *s, MYSQL *m, const mytrig_table *t, char op, od_error *err) {
  size_t cap = 1024 + (size_t)t->shape->ncols * 700, len = 0;
  char *sql = malloc(cap), name[80];
  if (!sql) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  mytrig_trigger_name(t->name, op, name, sizeof name);
  const char *event = op == 'i' ? "INSERT" : op == 'u' ? "UPDATE" : "DELETE";
  int n = snprintf(sql, cap,
                   "CREATE OR REPLACE TRIGGER `%s`.`%s` AFTER %s ON `%s`.`%s` FOR EACH ROW BEGIN "
                   "UPDATE odsync.counter SET n = LAST_INSERT_ID(n + 1) WHERE id = 1; "
                   "INSERT INTO odsync.changes (seq, txn, db, tbl, op, new_row, old_row) VALUES (LAST_INSERT_ID(), "
                   "CONCAT(CONNECTION_ID(), '/', @@last_gtid), '%s', '%s', '%c', ",
                   t->db, name, event, t->db, t->name, t->db, t->name, op == 'i' ? 'I' : op == 'u' ? 'U' : 'D');
  int bad = n < 0 || (size_t)n >= cap;
  if (!bad) len = (size_t)n;
  if (!bad && op == 'd') bad = (len += (size_t)snprintf(sql + len, cap - len, "NULL, ")) >= cap;
  if (!bad && op != 'd') bad = row_json(t, "NEW", sql, cap, &len) || (len += (size_t)snprintf(sql + len, cap - len, ", ")) >= cap;
  if (!bad && op == 'i') bad = (len += (size_t)snprintf(sql + len, cap - len, "NULL")) >= cap;
  if (!bad && op != 'i') bad = row_json(t, "OLD", sql, cap, &len);
  if (!bad) bad = (len += (size_t)snprintf(sql + len, cap - len, "); END")) >= cap;
  int rc = bad ? OD_FAIL(err, OD_EUNSUPPORTED, "%s: table %s.%s: the trigger text is too long", s->where, t->db, t->name)
               : my_exec(s, m, sql, err);
  free(sql);
  return rc;
}

static int drop_triggers(const my_settings *s, MYSQL *m, const mytrig_table *t, od_error *err) {
  int rc = OD_OK;
  for (const char *op = "iud"; *op && !rc; op++) {
    char name[80], sql[300];
    mytrig_trigger_name(t->name, *op, name, sizeof name);
    snprintf(sql, sizeof sql, "DROP TRIGGER IF EXISTS `%s`.`%s`", t->db, name);
    rc = my_exec(s, m, sql, err);
  }
  return rc;
}

int od_mytriggers_admin(const od_config_section *source, const char *pipeline, bool install, char *summary,
                        size_t size, od_error *err) {
  my_settings s;
  int rc = my_settings_load_keys(&s, source, pipeline, od_mytrig_config_keys, err);
  if (rc) return rc;
  my_catalog *cat = my_catalog_new(&s);
  mytrig_table *t = NULL;
  int n = 0;
  MYSQL *m = NULL;
  if (!cat) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (!rc) rc = mytrig_list_tables(&s, cat, &t, &n, err);
  if (!rc) rc = my_catalog_conn(cat, &m, err);
  for (int i = 0; install && !rc && install_sql[i]; i++) rc = my_exec(&s, m, install_sql[i], err);
  for (int i = 0; !rc && i < n; i++) {
    if (install)
      for (const char *op = "iud"; *op && !rc; op++) rc = create_trigger(&s, m, &t[i], *op, err);
    else rc = drop_triggers(&s, m, &t[i], err);
  }
  if (!rc && !install) rc = my_exec(&s, m, "DROP DATABASE IF EXISTS odsync", err);
  if (!rc)
    snprintf(summary, size, "pipeline %s: mariadb_trigger source %s: %s capture triggers on %d table(s)%s", pipeline,
             s.where, install ? "installed" : "removed", n,
             install ? " and the change table odsync.changes" : " and dropped database odsync");
  mytrig_tables_free(t, n);
  my_catalog_free(cat);
  my_settings_free(&s);
  return rc;
}
