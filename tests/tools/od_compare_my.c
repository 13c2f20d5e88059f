/* od_compare_my.c — test oracle: checks that an SQLite sink holds exactly the rows of a MariaDB
 * database, value for value, in the forms docs/TYPES.md ("MariaDB") documents.
 *
 *   od_compare_my --port P --db DB --sqlite PATH [--host H] [--user U] [--password PW] [--table t]...
 *
 * Without --table every base table of DB is compared; the sink table for DB.t is the single
 * identifier "DB.t" (one the sink never created counts as empty). Each MariaDB value is read as text (time_zone +00:00) and turned into what the
 * sink must hold:
 *   TINYINT..INT, BIGINT, YEAR           -> INTEGER            BIGINT UNSIGNED -> TEXT
 *   FLOAT -> REAL equal as a float       DOUBLE -> REAL equal as a double
 *   BINARY, VARBINARY, BLOBs             -> BLOB of the same bytes (compared in hex)
 *   BIT(n)                               -> TEXT of n binary digits
 *   TIMESTAMP                            -> TEXT "... +00" (the zero timestamp without)
 *   everything else (DECIMAL, dates, strings, ENUM, SET, JSON) -> TEXT byte-identical
 *   NULL -> NULL
 * Rows become canonical strings that are sorted and merged, so tables without a key compare as
 * multisets: a duplicated or missing row is a difference.
 * With --pg DSN instead of --sqlite the sink is a PostgreSQL database (tables "DB"."t", read as text
 * with TimeZone UTC): the same forms, except that PostgreSQL prints fractions of seconds without
 * trailing zeros, so both sides drop those for TIME/DATETIME/TIMESTAMP, and bytea is compared in hex.
 * Output: one line per table, or the first 10 differences. Exit 0 equal, 1 differences, 2 errors.
 */
#include <libpq-fe.h>
#include <math.h>
#include <mysql.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_EQUAL = 0, EXIT_DIFF = 1, EXIT_ERROR = 2 };
enum { K_INT, K_FLOAT, K_DOUBLE, K_TEXT, K_BLOB, K_TS, K_TIME };

/* --pg: the sink is a PostgreSQL database (tables DB.t), read as text with TimeZone UTC. PostgreSQL
 * prints fractions of seconds without trailing zeros, so both sides drop them for time types. */
static bool pg_mode;

static size_t trim_fraction(const char *s, size_t n, char *out) {
  memcpy(out, s, n);
  size_t dot = n;
  for (size_t i = 0; i < n; i++)
    if (out[i] == '.') dot = i;
  if (dot == n) return n;
  size_t end = dot + 1;
  while (end < n && out[end] >= '0' && out[end] <= '9') end++;
  size_t k = end;
  while (k > dot + 1 && out[k - 1] == '0') k--;
  if (k == dot + 1) k = dot;
  memmove(out + k, out + end, n - end);
  return k + (n - end);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("od_compare_my: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(EXIT_ERROR);
}

typedef struct strs {
  char **v;
  int n, cap;
} strs;

static void push(strs *s, char *x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 256;
    s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    if (!s->v) die("out of memory");
  }
  s->v[s->n++] = x;
}

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static void add(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) die("out of memory");
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void addf(buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  add(b, tmp, (size_t)n);
}

static void add_hex(buf *b, const unsigned char *p, size_t n) {
  static const char hx[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    char t[2] = {hx[p[i] >> 4], hx[p[i] & 15]};
    add(b, t, 2);
  }
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct col {
  char name[256];
  int kind;
  char expr[600];
} col;

/* The column list of db.table and how to read each column. */
static int columns(MYSQL *m, const char *db, const char *table, col **out) {
  char sql[1024];
  snprintf(sql, sizeof sql,
           "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, NUMERIC_PRECISION FROM "
           "information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s' AND TABLE_NAME = '%s' ORDER BY ORDINAL_POSITION",
           db, table);
  if (mysql_query(m, sql)) die("%s", mysql_error(m));
  MYSQL_RES *r = mysql_store_result(m);
  int n = (int)mysql_num_rows(r);
  col *c = calloc((size_t)n, sizeof *c);
  MYSQL_ROW row;
  for (int i = 0; (row = mysql_fetch_row(r)); i++) {
    const char *dt = row[1], *ct = row[2];
    snprintf(c[i].name, sizeof c[i].name, "%s", row[0]);
    char q[300];
    snprintf(q, sizeof q, "`%s`", row[0]);
    c[i].kind = K_TEXT;
    snprintf(c[i].expr, sizeof c[i].expr, "%s", q);
    if (strstr(dt, "int") && !(strstr(dt, "bigint") && strstr(ct, "unsigned"))) c[i].kind = K_INT;
    else if (!strcmp(dt, "year")) c[i].kind = K_INT, snprintf(c[i].expr, sizeof c[i].expr, "%s+0", q);
    else if (!strcmp(dt, "float")) c[i].kind = K_FLOAT;
    else if (!strcmp(dt, "double")) c[i].kind = K_DOUBLE;
    else if (!strcmp(dt, "timestamp")) c[i].kind = K_TS;
    else if (!strcmp(dt, "datetime") || !strcmp(dt, "time")) c[i].kind = K_TIME;
    else if (!strcmp(dt, "bit"))
      snprintf(c[i].expr, sizeof c[i].expr, "LPAD(BIN(%s), %s, '0')", q, row[4] ? row[4] : "1");
    else if (!row[3] && (strstr(dt, "binary") || strstr(dt, "blob")))
      c[i].kind = K_BLOB, snprintf(c[i].expr, sizeof c[i].expr, "HEX(%s)", q);
  }
  mysql_free_result(r);
  *out = c;
  return n;
}

static void my_rows(MYSQL *m, const char *db, const char *table, const col *c, int n, strs *out) {
  buf sql = {0};
  add(&sql, "SELECT ", 7);
  for (int i = 0; i < n; i++) {
    if (i) add(&sql, ", ", 2);
    add(&sql, c[i].expr, strlen(c[i].expr));
  }
  addf(&sql, " FROM `%s`.", db);
  addf(&sql, "`%s`", table);
  if (mysql_query(m, sql.p)) die("%s: %s", sql.p, mysql_error(m));
  MYSQL_RES *r = mysql_use_result(m);
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(r))) {
    unsigned long *len = mysql_fetch_lengths(r);
    buf b = {0};
    for (int i = 0; i < n; i++) {
      if (!row[i]) {
        add(&b, "N\x1f", 2);
        continue;
      }
      switch (c[i].kind) {
        case K_INT: addf(&b, "I%s\x1f", row[i]); break;
        case K_FLOAT: addf(&b, "R%a\x1f", (double)(float)strtod(row[i], NULL)); break;
        case K_DOUBLE: addf(&b, "R%a\x1f", strtod(row[i], NULL)); break;
        case K_BLOB: add(&b, "B", 1), add(&b, row[i], len[i]), add(&b, "\x1f", 1); break;
        case K_TS: case K_TIME: {
          char *t = malloc(len[i] + 1);
          size_t n = pg_mode ? trim_fraction(row[i], len[i], t) : (memcpy(t, row[i], len[i]), len[i]);
          add(&b, "T", 1);
          add(&b, t, n);
          free(t);
          if (c[i].kind == K_TS && strncmp(row[i], "0000-00-00", 10) != 0) add(&b, "+00", 3);
          add(&b, "\x1f", 1);
          break;
        }
        default: add(&b, "T", 1), add(&b, row[i], len[i]), add(&b, "\x1f", 1); break;
      }
    }
    push(out, b.p ? b.p : calloc(1, 1));
  }
  mysql_free_result(r);
  free(sql.p);
}

static void sq_rows(sqlite3 *db, const char *target, const col *c, int n, strs *out) {
  buf sql = {0};
  add(&sql, "SELECT ", 7);
  for (int i = 0; i < n; i++) {
    if (i) add(&sql, ", ", 2);
    addf(&sql, "\"%s\"", c[i].name);
  }
  addf(&sql, " FROM \"%s\"", target);
  sqlite3_stmt *st;
  /* A table the sink never created holds no rows. */
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &st, NULL) != SQLITE_OK)
    die("sqlite: %s", sqlite3_errmsg(db));
  sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
  bool exists = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  if (!exists) {
    free(sql.p);
    return;
  }
  if (sqlite3_prepare_v2(db, sql.p, -1, &st, NULL) != SQLITE_OK) die("sqlite: %s: %s", sql.p, sqlite3_errmsg(db));
  while (sqlite3_step(st) == SQLITE_ROW) {
    buf b = {0};
    for (int i = 0; i < n; i++) {
      int t = sqlite3_column_type(st, i);
      if (t == SQLITE_NULL) add(&b, "N\x1f", 2);
      else if (t == SQLITE_INTEGER) addf(&b, "I%lld\x1f", (long long)sqlite3_column_int64(st, i));
      else if (t == SQLITE_FLOAT) {
        double d = sqlite3_column_double(st, i);
        addf(&b, "R%a\x1f", c[i].kind == K_FLOAT ? (double)(float)d : d);
      } else if (t == SQLITE_BLOB) {
        add(&b, "B", 1);
        add_hex(&b, sqlite3_column_blob(st, i), (size_t)sqlite3_column_bytes(st, i));
        add(&b, "\x1f", 1);
      } else {
        add(&b, "T", 1);
        add(&b, (const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
        add(&b, "\x1f", 1);
      }
    }
    push(out, b.p ? b.p : calloc(1, 1));
  }
  sqlite3_finalize(st);
  free(sql.p);
}

static void pg_rows(PGconn *pg, const char *db, const char *table, const col *c, int n, strs *out) {
  buf sql = {0};
  add(&sql, "SELECT ", 7);
  for (int i = 0; i < n; i++) {
    if (i) add(&sql, ", ", 2);
    addf(&sql, "\"%s\"::text", c[i].name);
  }
  addf(&sql, " FROM \"%s\".", db);
  addf(&sql, "\"%s\"", table);
  PGresult *r = PQexec(pg, sql.p);
  free(sql.p);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    /* A table the sink never created holds no rows. */
    if (strstr(PQresultErrorMessage(r), "does not exist")) {
      PQclear(r);
      PQclear(PQexec(pg, "ROLLBACK"));
      PQclear(PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
      return;
    }
    die("postgres: %s", PQresultErrorMessage(r));
  }
  for (int row = 0; row < PQntuples(r); row++) {
    buf b = {0};
    for (int i = 0; i < n; i++) {
      if (PQgetisnull(r, row, i)) {
        add(&b, "N\x1f", 2);
        continue;
      }
      const char *v = PQgetvalue(r, row, i);
      size_t len = (size_t)PQgetlength(r, row, i);
      switch (c[i].kind) {
        case K_INT: addf(&b, "I%s\x1f", v); break;
        case K_FLOAT: addf(&b, "R%a\x1f", (double)(float)strtod(v, NULL)); break;
        case K_DOUBLE: addf(&b, "R%a\x1f", strtod(v, NULL)); break;
        case K_BLOB:
          add(&b, "B", 1);
          for (size_t k = 2; k < len; k++) {
            char ch = v[k] >= 'a' && v[k] <= 'f' ? (char)(v[k] - 'a' + 'A') : v[k];
            add(&b, &ch, 1);
          }
          add(&b, "\x1f", 1);
          break;
        case K_TS: case K_TIME: {
          char *t = malloc(len + 1);
          /* "...+00" stays after the fraction is trimmed */
          size_t m = trim_fraction(v, len, t);
          add(&b, "T", 1), add(&b, t, m), add(&b, "\x1f", 1);
          free(t);
          break;
        }
        default: add(&b, "T", 1), add(&b, v, len), add(&b, "\x1f", 1); break;
      }
    }
    push(out, b.p ? b.p : calloc(1, 1));
  }
  PQclear(r);
}

static void show(const char *side, const char *row) {
  fprintf(stderr, "  only in %s: ", side);
  for (const char *p = row; *p; p++) fputc(*p == '\x1f' ? '|' : *p, stderr);
  fputc('\n', stderr);
}

static int compare_table(MYSQL *m, sqlite3 *sq, PGconn *pg, const char *db, const char *table) {
  col *c;
  int n = columns(m, db, table, &c);
  if (n == 0) die("table %s.%s not found in MariaDB", db, table);
  char target[600];
  snprintf(target, sizeof target, "%s.%s", db, table);
  strs a = {0}, b = {0};
  my_rows(m, db, table, c, n, &a);
  if (pg) pg_rows(pg, db, table, c, n, &b);
  else sq_rows(sq, target, c, n, &b);
  if (a.n) qsort(a.v, (size_t)a.n, sizeof *a.v, cmp);
  if (b.n) qsort(b.v, (size_t)b.n, sizeof *b.v, cmp);
  int i = 0, j = 0, diffs = 0;
  while (i < a.n || j < b.n) {
    int d = i >= a.n ? 1 : j >= b.n ? -1 : strcmp(a.v[i], b.v[j]);
    if (d == 0) {
      i++, j++;
      continue;
    }
    if (++diffs <= 10) show(d < 0 ? "mariadb" : pg ? "postgres" : "sqlite", d < 0 ? a.v[i] : b.v[j]);
    if (d < 0) i++;
    else j++;
  }
  if (diffs) fprintf(stderr, "table %s.%s: %d differences (mariadb %d rows, sink %d rows)\n", db, table, diffs, a.n, b.n);
  else printf("table %s.%s: %d rows, equal\n", db, table, a.n);
  for (int k = 0; k < a.n; k++) free(a.v[k]);
  for (int k = 0; k < b.n; k++) free(b.v[k]);
  free(a.v);
  free(b.v);
  free(c);
  return diffs ? EXIT_DIFF : EXIT_EQUAL;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *user = "root", *pw = "", *db = NULL, *path = NULL, *pgdsn = NULL;
  unsigned port = 3306;
  strs tables = {0};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = (unsigned)atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--user")) user = argv[i + 1];
    else if (!strcmp(argv[i], "--password")) pw = argv[i + 1];
    else if (!strcmp(argv[i], "--db")) db = argv[i + 1];
    else if (!strcmp(argv[i], "--sqlite")) path = argv[i + 1];
    else if (!strcmp(argv[i], "--pg")) pgdsn = argv[i + 1];
    else if (!strcmp(argv[i], "--table")) push(&tables, argv[i + 1]);
    else die("unknown argument %s", argv[i]);
  }
  if (!db || (!path == !pgdsn))
    die("usage: od_compare_my --port P --db DB (--sqlite PATH | --pg DSN) [--host H] [--user U] [--password PW] [--table T]...");
  pg_mode = pgdsn != NULL;
  MYSQL *m = mysql_init(NULL);
  if (!mysql_real_connect(m, host, user, pw, db, port, NULL, 0)) die("mariadb %s:%u: %s", host, port, mysql_error(m));
  if (mysql_query(m, "SET NAMES utf8mb4, time_zone = '+00:00'") ||
      mysql_query(m, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ") ||
      mysql_query(m, "START TRANSACTION WITH CONSISTENT SNAPSHOT"))
    die("%s", mysql_error(m));
  sqlite3 *sq = NULL;
  PGconn *pg = NULL;
  if (pgdsn) {
    pg = PQconnectdb(pgdsn);
    if (PQstatus(pg) != CONNECTION_OK) die("postgres: %s", PQerrorMessage(pg));
    PQclear(PQexec(pg, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
                       "SET extra_float_digits = 1"));
    PQclear(PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
  } else {
    if (sqlite3_open_v2(path, &sq, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) die("sqlite %s: cannot open", path);
    sqlite3_busy_timeout(sq, 10000);
    if (sqlite3_exec(sq, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) die("sqlite: %s", sqlite3_errmsg(sq));
  }
  bool owned = tables.n == 0;
  if (tables.n == 0) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '%s' AND TABLE_TYPE = 'BASE TABLE' "
             "ORDER BY TABLE_NAME", db);
    if (mysql_query(m, sql)) die("%s", mysql_error(m));
    MYSQL_RES *r = mysql_store_result(m);
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) push(&tables, strdup(row[0]));
    mysql_free_result(r);
  }
  int rc = EXIT_EQUAL;
  for (int i = 0; i < tables.n; i++)
    if (compare_table(m, sq, pg, db, tables.v[i]) != EXIT_EQUAL) rc = EXIT_DIFF;
  mysql_query(m, "COMMIT");
  for (int i = 0; owned && i < tables.n; i++) free(tables.v[i]);
  free(tables.v);
  if (sq) sqlite3_close(sq);
  if (pg) PQfinish(pg);
  mysql_close(m);
  return rc;
}
