/* sources/mysql/my_catalog.c — what the mysql source learns from the server's catalog.
 *
 * Owns: the server checks (MariaDB, log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog
 * access, tables matching the patterns), the captured-table test (patterns "db.table" with * and ?),
 * and table descriptions from information_schema.COLUMNS (names, signedness, character sets,
 * ENUM/SET labels, primary key; types for a table not yet seen in the binlog), cached per table
 * until the stream reports a DDL statement.
 * Never touches: the binlog connection.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/my_conn.h"

typedef struct cached {
  char *db, *name;
  my_table *shape; /* NULL: the table does not exist */
} cached;

struct my_catalog {
  const my_settings *s;
  MYSQL *conn;
  cached *c;
  int n, cap;
};

my_catalog *my_catalog_new(const my_settings *s) {
  my_catalog *c = calloc(1, sizeof *c);
  if (c) c->s = s;
  return c;
}

void my_catalog_forget(my_catalog *c) {
  for (int i = 0; i < c->n; i++) {
    free(c->c[i].db);
    free(c->c[i].name);
    my_table_free(c->c[i].shape);
  }
  c->n = 0;
}

void my_catalog_disconnect(my_catalog *c) {
  if (c->conn) mysql_close(c->conn);
  c->conn = NULL;
}

void my_catalog_free(my_catalog *c) {
  if (!c) return;
  my_catalog_forget(c);
  free(c->c);
  my_catalog_disconnect(c);
  free(c);
}

int my_catalog_conn(my_catalog *c, MYSQL **out, od_error *err) {
  if (!c->conn) {
    int rc = my_connect(c->s, &c->conn, err);
    if (rc) return rc;
  }
  *out = c->conn;
  return OD_OK;
}

bool my_catalog_captured(const my_catalog *c, const char *db, const char *table) {
  char full[600];
  snprintf(full, sizeof full, "%s.%s", db, table);
  for (int i = 0; i < c->s->ntables; i++)
    if (fnmatch(c->s->tables[i], full, 0) == 0) return true;
  return false;
}

/* ---- information_schema ---- */

static int query(my_catalog *c, const char *sql, MYSQL_RES **res, od_error *err) {
  MYSQL *m;
  int rc = my_catalog_conn(c, &m, err);
  if (rc) return rc;
  if (mysql_query(m, sql) != 0 || !(*res = mysql_store_result(m))) {
    rc = my_fail(c->s, m, "reading the catalog", err);
    if (err->retriable) my_catalog_disconnect(c);
    return rc;
  }
  return OD_OK;
}

static char *dupn(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* enum('a','b','it''s') -> labels. */
static int parse_labels(my_column *col, const char *type) {
  const char *p = strchr(type, '(');
  if (!p) return -1;
  p++;
  int cap = 8;
  col->labels = calloc((size_t)cap, sizeof *col->labels);
  if (!col->labels) return -1;
  while (*p == '\'') {
    char buf[1024];
    size_t n = 0;
    for (p++; *p; p++) {
      if (*p == '\'' && p[1] == '\'') p++;
      else if (*p == '\'') break;
      if (n + 1 < sizeof buf) buf[n++] = *p;
    }
    if (*p != '\'') return -1;
    p++;
    if (col->nlabels == cap) {
      cap *= 2;
      char **v = realloc(col->labels, (size_t)cap * sizeof *v);
      if (!v) return -1;
      col->labels = v;
    }
    if (!(col->labels[col->nlabels] = dupn(buf, n))) return -1;
    col->nlabels++;
    if (*p == ',') p++;
  }
  return 0;
}

static void set_type(my_column *col, const char *dt, const char *ctype, const char *cs, const char *prec,
                     const char *scale, const char *dprec) {
  bool bin = !cs;
  col->charset = (uint8_t)(cs ? my_charset_of_name(cs) : MY_CS_BINARY);
  col->is_unsigned = ctype && strstr(ctype, "unsigned") != NULL;
  unsigned p = prec ? (unsigned)atoi(prec) : 0, sc = scale ? (unsigned)atoi(scale) : 0,
           fsp = dprec ? (unsigned)atoi(dprec) : 0;
  static const struct { const char *name; uint8_t type; } simple[] = {
      {"tinyint", MY_T_TINY},   {"smallint", MY_T_SHORT}, {"mediumint", MY_T_INT24}, {"int", MY_T_LONG},
      {"bigint", MY_T_LONGLONG}, {"float", MY_T_FLOAT},   {"double", MY_T_DOUBLE},   {"date", MY_T_DATE},
      {"year", MY_T_YEAR},
  };
  for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
    if (!strcmp(dt, simple[i].name)) {
      col->type = col->real_type = simple[i].type;
      return;
    }
  uint8_t t = MY_T_BLOB;
  if (!strcmp(dt, "decimal")) {
    t = MY_T_NEWDECIMAL;
    col->precision = (uint8_t)p;
    col->scale = (uint8_t)sc;
  } else if (!strcmp(dt, "time")) t = MY_T_TIME2, col->length = fsp;
  else if (!strcmp(dt, "datetime")) t = MY_T_DATETIME2, col->length = fsp;
  else if (!strcmp(dt, "timestamp")) t = MY_T_TIMESTAMP2, col->length = fsp;
  else if (!strcmp(dt, "bit")) t = MY_T_BIT, col->length = p;
  else if (!strcmp(dt, "char") || !strcmp(dt, "binary")) t = MY_T_STRING;
  else if (!strcmp(dt, "varchar") || !strcmp(dt, "varbinary")) t = MY_T_VARCHAR;
  else if (!strcmp(dt, "enum") || !strcmp(dt, "set")) {
    col->type = MY_T_STRING;
    col->real_type = dt[0] == 'e' ? MY_T_ENUM : MY_T_SET;
    return;
  } else if (strstr(dt, "text") || strstr(dt, "blob") || !strcmp(dt, "json")) t = MY_T_BLOB;
  else t = MY_T_GEOMETRY, bin = true;
  (void)bin;
  col->type = col->real_type = t;
}

static int load_shape(my_catalog *c, const char *db, const char *table, my_table **out, od_error *err) {
  *out = NULL;
  MYSQL *m;
  int rc = my_catalog_conn(c, &m, err);
  if (rc) return rc;
  char edb[300], etb[300], sql[1200];
  if (strlen(db) > 128 || strlen(table) > 128) return OD_FAIL(err, OD_EINVAL, "table name too long");
  mysql_real_escape_string(m, edb, db, (unsigned long)strlen(db));
  mysql_real_escape_string(m, etb, table, (unsigned long)strlen(table));
  snprintf(sql, sizeof sql,
           "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY, NUMERIC_PRECISION, "
           "NUMERIC_SCALE, DATETIME_PRECISION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s' AND "
           "TABLE_NAME = '%s' ORDER BY ORDINAL_POSITION",
           edb, etb);
  MYSQL_RES *res;
  if ((rc = query(c, sql, &res, err))) return rc;
  int n = (int)mysql_num_rows(res);
  if (n == 0) {
    mysql_free_result(res);
    return OD_OK;
  }
  my_table *t = calloc(1, sizeof *t);
  if (!t || !(t->cols = calloc((size_t)n, sizeof *t->cols)) || !(t->db = strdup(db)) || !(t->name = strdup(table)))
    goto oom;
  t->ncols = n;
  MYSQL_ROW row;
  for (int i = 0; i < n && (row = mysql_fetch_row(res)); i++) {
    my_column *col = &t->cols[i];
    if (!(col->name = strdup(row[0] ? row[0] : "")) || !(col->column_type = strdup(row[2] ? row[2] : ""))) goto oom;
    set_type(col, row[1] ? row[1] : "", row[2], row[3], row[5], row[6], row[7]);
    col->key = row[4] && !strcmp(row[4], "PRI");
    if (col->key) t->has_key = true;
    if ((col->real_type == MY_T_ENUM || col->real_type == MY_T_SET) && parse_labels(col, row[2]) != 0) {
      mysql_free_result(res);
      my_table_free(t);
      return OD_FAIL(err, OD_ESCHEMA, "%s: table %s.%s: column %s: cannot read the members of %s", c->s->where, db,
                     table, col->name, row[2]);
    }
  }
  mysql_free_result(res);
  *out = t;
  return OD_OK;
oom:
  mysql_free_result(res);
  my_table_free(t);
  return OD_FAIL(err, OD_ENOMEM, "out of memory");
}

static int cached_shape(my_catalog *c, const char *db, const char *table, my_table **out, od_error *err) {
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->c[i].db, db) && !strcmp(c->c[i].name, table)) {
      *out = c->c[i].shape;
      return OD_OK;
    }
  my_table *t;
  int rc = load_shape(c, db, table, &t, err);
  if (rc) return rc;
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 16;
    cached *v = realloc(c->c, (size_t)cap * sizeof *v);
    if (!v) return my_table_free(t), OD_FAIL(err, OD_ENOMEM, "out of memory");
    c->c = v;
    c->cap = cap;
  }
  cached *e = &c->c[c->n];
  if (!(e->db = strdup(db)) || !(e->name = strdup(table))) {
    free(e->db);
    my_table_free(t);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  e->shape = t;
  c->n++;
  *out = t;
  return OD_OK;
}

/* The binlog's type and information_schema's, in one vocabulary. */
static int type_class(const my_column *c) {
  switch (c->type) {
    case MY_T_NEWDATE: return MY_T_DATE;
    case MY_T_VAR_STRING: return MY_T_VARCHAR;
    case MY_T_TINY_BLOB: case MY_T_MEDIUM_BLOB: case MY_T_LONG_BLOB: return MY_T_BLOB;
    case MY_T_TIMESTAMP: return MY_T_TIMESTAMP2;
    case MY_T_DATETIME: return MY_T_DATETIME2;
    case MY_T_TIME: return MY_T_TIME2;
    case MY_T_STRING: case MY_T_ENUM: case MY_T_SET: return c->real_type == MY_T_STRING ? MY_T_STRING : c->real_type;
    default: return c->type;
  }
}

int my_catalog_describe(my_catalog *c, my_table *t, od_error *err) {
  my_table *shape = NULL;
  int rc = cached_shape(c, t->db, t->name, &shape, err);
  if (rc) return rc;
  /* The catalog is the table as it is now; the event may be older. Columns added at the end since
   * then are harmless (the event's columns are a prefix); anything else cannot be told apart. */
  int bad = -1;
  for (int i = 0; shape && i < t->ncols && i < shape->ncols && bad < 0; i++)
    if (type_class(&t->cols[i]) != type_class(&shape->cols[i])) bad = i;
  if (!shape || shape->ncols < t->ncols || bad >= 0)
    return OD_FAIL(err, OD_ESCHEMA,
                   "%s: table %s.%s: the binlog row event (%d columns) does not match the table as it is now (%d "
                   "columns%s%s%s): it changed after the event was written. Set binlog_row_metadata=FULL on the server "
                   "so the binlog carries each event's own column names, then restart",
                   c->s->where, t->db, t->name, t->ncols, shape ? shape->ncols : 0, bad >= 0 ? ", column " : "",
                   bad >= 0 ? shape->cols[bad].name : "", bad >= 0 ? " has another type" : "");
  for (int i = 0; i < t->ncols; i++) {
    my_column *d = &t->cols[i];
    const my_column *s = &shape->cols[i];
    free(d->name);
    if (!(d->name = strdup(s->name))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    d->is_unsigned = s->is_unsigned;
    d->charset = s->charset;
    d->key = s->key;
    if (s->key) t->has_key = true;
    if (s->nlabels && !d->labels) {
      if (!(d->labels = calloc((size_t)s->nlabels, sizeof *d->labels))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
      for (int k = 0; k < s->nlabels; k++) {
        if (!(d->labels[k] = strdup(s->labels[k]))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
        d->nlabels++;
      }
    }
  }
  return OD_OK;
}

int my_catalog_shape(my_catalog *c, const char *db, const char *table, my_table **out, od_error *err) {
  return load_shape(c, db, table, out, err);
}

/* ---- checks ---- */

static void problemf(my_problem_fn fn, void *ctx, bool fatal, int *count, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#include <stdarg.h>
static void problemf(my_problem_fn fn, void *ctx, bool fatal, int *count, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (fatal) (*count)++;
  fn(ctx, fatal, msg);
}

static void first_fatal(void *ctx, bool fatal, const char *msg) {
  char *out = ctx;
  if (fatal && !out[0]) snprintf(out, OD_ERROR_MSG_MAX, "%s", msg);
}

int my_catalog_require(my_catalog *c, od_error *err) {
  char msg[OD_ERROR_MSG_MAX] = "";
  int n = my_catalog_check(c, first_fatal, msg, err);
  if (n < 0) return n;
  if (n > 0) return OD_FAIL(err, OD_ESOURCE, "%s", msg);
  return OD_OK;
}

int my_catalog_check(my_catalog *c, my_problem_fn problem, void *ctx, od_error *err) {
  const my_settings *s = c->s;
  MYSQL_RES *res;
  int rc = query(c, "SELECT @@version, @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_checksum", &res, err);
  if (rc) return rc;
  MYSQL_ROW row = mysql_fetch_row(res);
  int fatal = 0;
  if (!row) {
    mysql_free_result(res);
    return OD_FAIL(err, OD_ESOURCE, "%s: cannot read server settings", s->where);
  }
  if (!row[0] || !strstr(row[0], "MariaDB"))
    problemf(problem, ctx, true, &fatal, "%s: server %s is not MariaDB: the mysql source reads MariaDB's binlog (10.5+)",
             s->where, row[0] ? row[0] : "?");
  if (!row[1] || strcmp(row[1], "1") != 0)
    problemf(problem, ctx, true, &fatal, "%s: log_bin is OFF: start the server with log_bin (the binary log) enabled",
             s->where);
  if (!row[2] || strcmp(row[2], "ROW") != 0)
    problemf(problem, ctx, true, &fatal,
             "%s: binlog_format is %s: set binlog_format=ROW (in the server's config, and SET GLOBAL binlog_format=ROW)",
             s->where, row[2] ? row[2] : "?");
  if (!row[3] || strcmp(row[3], "FULL") != 0)
    problemf(problem, ctx, true, &fatal,
             "%s: binlog_row_image is %s: set binlog_row_image=FULL (in the server's config, and SET GLOBAL "
             "binlog_row_image=FULL)",
             s->where, row[3] ? row[3] : "?");
  mysql_free_result(res);
  MYSQL *m;
  if ((rc = my_catalog_conn(c, &m, err))) return rc;
  if (mysql_query(m, "SHOW BINARY LOGS") != 0) {
    problemf(problem, ctx, true, &fatal,
             "%s: user %s cannot list the binary logs (%s): GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO "
             "that user",
             s->where, s->user, mysql_error(m));
  } else {
    mysql_free_result(mysql_store_result(m));
  }
  if ((rc = query(c,
                  "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND "
                  "TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
                  &res, err)))
    return rc;
  int *hits = calloc((size_t)s->ntables, sizeof *hits);
  if (!hits) {
    mysql_free_result(res);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  while ((row = mysql_fetch_row(res))) {
    char full[600];
    snprintf(full, sizeof full, "%s.%s", row[0], row[1]);
    for (int i = 0; i < s->ntables; i++) hits[i] += fnmatch(s->tables[i], full, 0) == 0;
  }
  mysql_free_result(res);
  for (int i = 0; i < s->ntables; i++)
    if (!hits[i])
      problemf(problem, ctx, false, &fatal, "%s: no table matches '%s' yet (it is captured once it exists)", s->where,
               s->tables[i]);
  free(hits);
  return fatal;
}
