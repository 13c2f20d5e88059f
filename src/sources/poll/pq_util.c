/* sources/poll/pq_util.c — see pq_util.h. Messages name the source (`where`), never the DSN. */
#include "sources/poll/pq_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pq_keepalive.h"

static const char *first_line(PGconn *c, char *buf, size_t size) {
  snprintf(buf, size, "%s", c ? PQerrorMessage(c) : "out of memory");
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  for (char *p = buf; *p; p++)
    if (*p == '\n') *p = ' ';
  return buf;
}

int pq_connect(const char *dsn, const char *pipeline, const char *where, PGconn **out, od_error *err) {
  char app[96];
  snprintf(app, sizeof app, "odsync_%s", pipeline);
  const char *keys[] = {"connect_timeout", "application_name", OD_PQ_KEEPALIVE_KEYS, "dbname", "options", NULL};
  const char *vals[] = {"10", app, OD_PQ_KEEPALIVE_VALS, dsn,
                        "-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=3 "
                        "-c bytea_output=hex -c client_min_messages=warning",
                        NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    char msg[400];
    first_line(c, msg, sizeof msg);
    bool refused = c && (PQconnectionNeedsPassword(c) || strstr(msg, "authentication failed") ||
                         strstr(msg, "no pg_hba.conf entry") || strstr(msg, "does not exist") ||
                         strstr(msg, "permission denied"));
    if (refused)
      OD_FAIL(err, OD_ECONNECT, "%s: cannot connect: %s. Fix the user, password or database of source.dsn, then restart",
              where, msg);
    else
      OD_FAIL_RETRY(err, OD_ECONNECT, "%s: cannot connect: %s", where, msg);
    PQfinish(c);
    return OD_ECONNECT;
  }
  *out = c;
  return OD_OK;
}

PGresult *pq_run(PGconn *c, const char *sql, int nparams, const char *const *params, const char *where,
                 od_error *err) {
  /* Without parameters: the simple protocol (several statements in one string are allowed). */
  PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  char msg[600];
  if (r && PQresultErrorMessage(r)[0])
    snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
  else
    first_line(c, msg, sizeof msg);
  for (char *p = msg; *p; p++)
    if (*p == '\n') *p = ' ';
  bool retry = PQstatus(c) != CONNECTION_OK || !state ||
               (state && (!strncmp(state, "08", 2) || !strncmp(state, "40", 2) || !strncmp(state, "53", 2) ||
                          !strncmp(state, "57", 2)));
  char head[81];
  snprintf(head, sizeof head, "%s", sql);
  od_error_set(err, retry ? OD_ECONNECT : OD_ESOURCE, retry, __FILE__, __LINE__, "%s: query failed (%s%s): %s", where,
               head, strlen(sql) > 80 ? "..." : "", msg);
  PQclear(r);
  return NULL;
}

int pq_cmd(PGconn *c, const char *sql, const char *where, od_error *err) {
  PGresult *r = pq_run(c, sql, 0, NULL, where, err);
  if (!r) return err->code;
  PQclear(r);
  return OD_OK;
}

void pq_quote_ident(const char *id, char *out, size_t size) {
  size_t o = 0;
  if (size < 3) return;
  out[o++] = '"';
  for (const char *p = id; *p && o + 3 < size; p++) {
    if (*p == '"') out[o++] = '"';
    out[o++] = *p;
  }
  out[o++] = '"';
  out[o] = '\0';
}

static char *dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int pq_describe(PGconn *c, const char *name, pq_table *t, const char *where, od_error *err) {
  memset(t, 0, sizeof *t);
  t->wm_col = t->del_col = -1;
  static const char sql[] =
      "SELECT c.oid, n.nspname, c.relname, a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), "
      "a.attnum, coalesce(a.attnum = ANY(i.indkey), false) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
      "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
      "WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p') ORDER BY a.attnum";
  const char *p[1] = {name};
  PGresult *r = pq_run(c, sql, 1, p, where, err);
  if (!r) return err->code;
  int n = PQntuples(r);
  if (n == 0) {
    PQclear(r);
    return OD_FAIL(err, OD_ESOURCE, "%s: table %s does not exist (or is not a table); check source.tables", where, name);
  }
  t->rel.oid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
  t->rel.schema = dup(PQgetvalue(r, 0, 1));
  t->rel.name = dup(PQgetvalue(r, 0, 2));
  t->rel.columns = calloc((size_t)n, sizeof(od_column));
  t->rel.ncolumns = (uint16_t)n;
  t->rel.version = 1;
  t->rel.replica_identity = 'd';
  if (!t->rel.schema || !t->rel.name || !t->rel.columns) {
    PQclear(r);
    pq_table_free(t);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    od_column *col = &t->rel.columns[i];
    col->name = dup(PQgetvalue(r, i, 3));
    if (!col->name) {
      PQclear(r);
      pq_table_free(t);
      return OD_FAIL(err, OD_ENOMEM, "out of memory");
    }
    col->type_oid = (uint32_t)strtoul(PQgetvalue(r, i, 4), NULL, 10);
    col->typmod = (int32_t)strtol(PQgetvalue(r, i, 5), NULL, 10);
    snprintf(col->type_name, sizeof col->type_name, "%s", PQgetvalue(r, i, 6));
    col->attnum = (int16_t)strtol(PQgetvalue(r, i, 7), NULL, 10);
    col->key = PQgetvalue(r, i, 8)[0] == 't';
    if (col->key) t->nkey++;
  }
  PQclear(r);
  t->rel.has_primary_key = t->nkey > 0;
  char qs[200], qn[200];
  pq_quote_ident(t->rel.schema, qs, sizeof qs);
  pq_quote_ident(t->rel.name, qn, sizeof qn);
  snprintf(t->qname, sizeof t->qname, "%s.%s", qs, qn);
  snprintf(t->display, sizeof t->display, "%s.%s", t->rel.schema, t->rel.name);
  if (!t->nkey) {
    OD_FAIL(err, OD_ESOURCE,
            "%s: table %s has no primary key; query-based capture matches rows by key: add a primary key or "
            "leave the table out of source.tables", where, t->display);
    pq_table_free(t);
    return OD_ESOURCE;
  }
  return OD_OK;
}

void pq_table_free(pq_table *t) {
  if (!t) return;
  for (int i = 0; t->rel.columns && i < t->rel.ncolumns; i++) free(t->rel.columns[i].name);
  free(t->rel.columns);
  free(t->rel.schema);
  free(t->rel.name);
  memset(t, 0, sizeof *t);
}

int pq_column(const pq_table *t, const char *name) {
  for (int i = 0; i < t->rel.ncolumns; i++)
    if (!strcmp(t->rel.columns[i].name, name)) return i;
  return -1;
}

int pq_parse_text_array(char *s, char **vals, int max) {
  int n = 0;
  if (!s || *s != '{') return -1;
  char *p = s + 1;
  if (*p == '}') return 0;
  for (;;) {
    if (n == max) return -1;
    if (*p == '"') {
      char *w = ++p, *start = p;
      while (*p && *p != '"') {
        if (*p == '\\' && p[1]) p++;
        *w++ = *p++;
      }
      if (*p != '"') return -1;
      p++;
      *w = '\0';
      vals[n++] = start;
    } else {
      char *start = p;
      while (*p && *p != ',' && *p != '}') p++;
      if (!*p) return -1;
      char end = *p;
      *p = '\0';
      vals[n++] = (p - start == 4 && !strcmp(start, "NULL")) ? NULL : start;
      if (end == '}') return n;
      p++;
      continue;
    }
    if (*p == '}') return n;
    if (*p != ',') return -1;
    p++;
  }
}
