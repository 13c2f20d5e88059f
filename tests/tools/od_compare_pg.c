/* od_compare_pg.c — test oracle: checks that a PostgreSQL target holds exactly the rows of a
 * PostgreSQL source (the postgres sink's PG -> PG replication).
 *
 *   od_compare_pg --source DSN --target DSN [--table schema.table[=tschema.ttable]]...
 *
 * Without --table every ordinary or partitioned table of the source outside the system schemas
 * is compared with the table of the same name on the target. For each table:
 *   - the column lists must match: same names, and on the target the same format_type() as on
 *     the source (the target may not lack a column, nor have extra ones); a column of a
 *     user-defined type (type OID >= 16384: enum, domain, composite, range, their arrays), or of a
 *     built-in type no server accepts as input (pg_node_tree, pg_ndistinct, ...), may be
 *     `text` on the target, which is what the postgres sink creates for it (docs/TYPES.md);
 *   - the rows must be the same multiset: each row is rendered by the server as the text of
 *     ROW(c1::text, c2::text, ...) in the source's column order (NULL and '' stay distinct;
 *     equal record texts mean byte-identical text forms of every value),
 *     sorted with COLLATE "C", and the two sorted lists are merged, so a duplicated or missing
 *     row is a difference.
 * Both sessions use the same TimeZone, DateStyle, IntervalStyle, extra_float_digits and
 * bytea_output, and read inside one REPEATABLE READ snapshot each.
 * Output: "table public.x: N rows, equal" per table, or up to 10 differences. Exit 0 all equal,
 * 1 differences, 2 errors (connection, missing table, bad arguments).
 * Owns: its two connections and result sets; never writes to either database.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define MAX_SHOWN 10
#define SHOW_CHARS 300

enum { EXIT_EQUAL = 0, EXIT_DIFF = 1, EXIT_ERROR = 2 };

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("od_compare_pg: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(EXIT_ERROR);
}

static PGconn *open_db(const char *dsn, const char *which) {
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) die("cannot connect to the %s: %s", which, PQerrorMessage(c));
  PGresult *r = PQexec(c,
                       "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
                       "SET extra_float_digits = 3; SET bytea_output = 'hex'; SET client_encoding = 'UTF8'; "
                       "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die("%s: setting up the session: %s", which, PQerrorMessage(c));
  PQclear(r);
  return c;
}

static PGresult *run(PGconn *c, const char *which, const char *sql, int n, const char *const *params) {
  PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) die("%s: %s: %s", which, sql, PQerrorMessage(c));
  return r;
}

typedef struct table_ref {
  char *schema, *name;
} table_ref;

static table_ref parse_ref(const char *s, size_t len) {
  table_ref t;
  const char *dot = memchr(s, '.', len);
  if (dot) {
    t.schema = strndup(s, (size_t)(dot - s));
    t.name = strndup(dot + 1, len - (size_t)(dot - s) - 1);
  } else {
    t.schema = strdup("public");
    t.name = strndup(s, len);
  }
  if (!t.schema || !t.name || !*t.schema || !*t.name) die("bad table name '%.*s'", (int)len, s);
  return t;
}

/* "schema"."name" quoted for SQL (caller frees). */
static char *quoted(PGconn *c, const table_ref *t) {
  char *s = PQescapeIdentifier(c, t->schema, strlen(t->schema));
  char *n = PQescapeIdentifier(c, t->name, strlen(t->name));
  if (!s || !n) die("cannot quote %s.%s", t->schema, t->name);
  size_t len = strlen(s) + strlen(n) + 2;
  char *q = malloc(len);
  if (!q) die("out of memory");
  snprintf(q, len, "%s.%s", s, n);
  PQfreemem(s);
  PQfreemem(n);
  return q;
}

static PGresult *columns(PGconn *c, const char *which, const char *qname) {
  const char *p[] = {qname};
  return run(c, which,
             "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
             "a.atttypid >= 16384 OR a.atttypid IN (32, 194, 3361, 3402, 4600, 4601, 5017) FROM pg_attribute a "
             "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
             1, p);
}

static bool table_exists(PGconn *c, const char *which, const char *qname) {
  const char *p[] = {qname};
  PGresult *r = run(c, which, "SELECT to_regclass($1) IS NOT NULL", 1, p);
  bool ok = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  return ok;
}

static void show_row(const char *label, const char *row) {
  size_t n = strlen(row);
  printf("    %s: %.*s%s\n", label, SHOW_CHARS, row, n > SHOW_CHARS ? " ..." : "");
}

/* Rows as sorted record texts, columns in `cols` order (names from the source). */
static PGresult *rows(PGconn *c, const char *which, const char *qname, PGresult *cols) {
  size_t cap = 256 + strlen(qname);
  for (int i = 0; i < PQntuples(cols); i++) cap += 2 * strlen(PQgetvalue(cols, i, 0)) + 16;
  char *sql = malloc(cap);
  if (!sql) die("out of memory");
  size_t len = (size_t)snprintf(sql, cap, "SELECT r FROM (SELECT ROW(");
  for (int i = 0; i < PQntuples(cols); i++) {
    const char *name = PQgetvalue(cols, i, 0);
    char *q = PQescapeIdentifier(c, name, strlen(name));
    if (!q) die("cannot quote column %s", name);
    len += (size_t)snprintf(sql + len, cap - len, "%s%s::text", i ? ", " : "", q);
    PQfreemem(q);
  }
  snprintf(sql + len, cap - len, ")::text AS r FROM %s) x ORDER BY r COLLATE \"C\"", qname);
  PGresult *r = run(c, which, sql, 0, NULL);
  free(sql);
  return r;
}

/* 0 equal, 1 different. */
static int compare_table(PGconn *src, PGconn *dst, const table_ref *st, const table_ref *tt) {
  char *sq = quoted(src, st), *tq = quoted(dst, tt);
  char label[300];
  snprintf(label, sizeof label, "%s.%s", st->schema, st->name);
  if (strcmp(st->schema, tt->schema) || strcmp(st->name, tt->name))
    snprintf(label + strlen(label), sizeof label - strlen(label), " -> %s.%s", tt->schema, tt->name);
  if (!table_exists(src, "source", sq)) die("table %s does not exist on the source", label);
  if (!table_exists(dst, "target", tq)) {
    printf("table %s: missing on the target\n", label);
    free(sq);
    free(tq);
    return 1;
  }
  PGresult *sc = columns(src, "source", sq), *tc = columns(dst, "target", tq);
  int shown = 0, diffs = 0;
  for (int i = 0; i < PQntuples(sc); i++) {
    const char *name = PQgetvalue(sc, i, 0), *type = PQgetvalue(sc, i, 1);
    int j = 0;
    while (j < PQntuples(tc) && strcmp(PQgetvalue(tc, j, 0), name) != 0) j++;
    if (j == PQntuples(tc)) {
      if (shown++ < MAX_SHOWN) printf("table %s: column %s (%s) missing on the target\n", label, name, type);
      diffs++;
    } else if (strcmp(PQgetvalue(tc, j, 1), type) != 0 &&
               !(strcmp(PQgetvalue(sc, i, 2), "t") == 0 && strcmp(PQgetvalue(tc, j, 1), "text") == 0)) {
      if (shown++ < MAX_SHOWN)
        printf("table %s: column %s is %s on the source, %s on the target\n", label, name, type,
               PQgetvalue(tc, j, 1));
      diffs++;
    }
  }
  for (int j = 0; j < PQntuples(tc); j++) {
    const char *name = PQgetvalue(tc, j, 0);
    int i = 0;
    while (i < PQntuples(sc) && strcmp(PQgetvalue(sc, i, 0), name) != 0) i++;
    if (i == PQntuples(sc)) {
      if (shown++ < MAX_SHOWN) printf("table %s: extra column %s on the target\n", label, name);
      diffs++;
    }
  }
  int nsrc = -1;
  if (diffs == 0) {
    PGresult *sr = rows(src, "source", sq, sc), *tr = rows(dst, "target", tq, sc);
    int a = 0, b = 0, na = PQntuples(sr), nb = PQntuples(tr);
    nsrc = na;
    while (a < na || b < nb) {
      int cmp = a == na ? 1 : b == nb ? -1 : strcmp(PQgetvalue(sr, a, 0), PQgetvalue(tr, b, 0));
      if (cmp == 0) {
        a++;
        b++;
        continue;
      }
      diffs++;
      if (shown++ < MAX_SHOWN) {
        printf("table %s: row %s the target\n", label, cmp < 0 ? "missing on" : "extra on");
        show_row(cmp < 0 ? "source" : "target", cmp < 0 ? PQgetvalue(sr, a, 0) : PQgetvalue(tr, b, 0));
      }
      if (cmp < 0) a++;
      else b++;
    }
    if (diffs) printf("table %s: %d source rows, %d target rows, %d differences\n", label, na, nb, diffs);
    PQclear(sr);
    PQclear(tr);
  }
  if (diffs == 0) printf("table %s: %d rows, equal\n", label, nsrc);
  PQclear(sc);
  PQclear(tc);
  free(sq);
  free(tq);
  return diffs ? 1 : 0;
}

static void usage(void) {
  fprintf(stderr, "usage: od_compare_pg --source DSN --target DSN [--table schema.table[=tschema.ttable]]...\n");
  exit(EXIT_ERROR);
}

int main(int argc, char **argv) {
  const char *sdsn = NULL, *tdsn = NULL;
  int ntab = 0;
  table_ref *from = calloc((size_t)argc, sizeof *from), *to = calloc((size_t)argc, sizeof *to);
  if (!from || !to) die("out of memory");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--source") && i + 1 < argc) {
      sdsn = argv[++i];
    } else if (!strcmp(argv[i], "--target") && i + 1 < argc) {
      tdsn = argv[++i];
    } else if (!strcmp(argv[i], "--table") && i + 1 < argc) {
      const char *t = argv[++i], *eq = strchr(t, '=');
      from[ntab] = parse_ref(t, eq ? (size_t)(eq - t) : strlen(t));
      to[ntab] = eq ? parse_ref(eq + 1, strlen(eq + 1)) : parse_ref(t, strlen(t));
      ntab++;
    } else {
      usage();
    }
  }
  if (!sdsn || !tdsn) usage();
  PGconn *src = open_db(sdsn, "source"), *dst = open_db(tdsn, "target");
  PGresult *list = NULL;
  if (ntab == 0) {
    list = run(src, "source",
               "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
               "'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
               0, NULL);
    int nl = PQntuples(list);
    free(from);
    free(to);
    from = calloc((size_t)nl + 1, sizeof *from);
    to = calloc((size_t)nl + 1, sizeof *to);
    if (!from || !to) die("out of memory");
    for (int i = 0; i < nl; i++) {
      from[ntab].schema = PQgetvalue(list, i, 0);
      from[ntab].name = PQgetvalue(list, i, 1);
      to[ntab] = from[ntab];
      ntab++;
    }
    if (ntab == 0) die("the source has no tables to compare");
  }
  int different = 0;
  for (int i = 0; i < ntab; i++) different |= compare_table(src, dst, &from[i], &to[i]);
  if (!list) {
    for (int i = 0; i < ntab; i++) {
      free(from[i].schema);
      free(from[i].name);
      free(to[i].schema);
      free(to[i].name);
    }
  }
  free(from);
  free(to);
  PQclear(list);
  PQfinish(src);
  PQfinish(dst);
  return different ? EXIT_DIFF : EXIT_EQUAL;
}
