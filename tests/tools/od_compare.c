/* od_compare.c — test oracle: checks that an SQLite sink holds exactly the rows of a PostgreSQL
 * database, value for value and storage class for storage class.
 *
 *   od_compare --pg "DSN" --sqlite PATH [--table schema.table]...
 *
 * Without --table every ordinary or partitioned table outside pg_catalog/information_schema is
 * compared. The sink table for schema.table is named "table" when the schema is public and the
 * single identifier "schema.table" otherwise.
 *
 * Each PG value (text format, extra_float_digits=3) is turned into what the sink must hold:
 *   int2/int4/int8/oid -> INTEGER           bool -> INTEGER 1/0
 *   float4/float8      -> REAL, bit-identical to strtod(text), so '-0' must be the REAL -0.0
 *                         (0.0 is a difference); 'NaN' -> TEXT 'NaN'
 *   bytea              -> BLOB of the decoded bytes
 *   anything else      -> TEXT byte-identical to PG's output      NULL -> NULL
 * and each SQLite value is read with its storage class (sqlite3_column_type). Both sides become
 * canonical row encodings (per column: class tag, 4-byte length, payload) packed in one growing
 * buffer per side; the encodings are sorted and merged, so tables without a key are compared as
 * multisets: a duplicated or missing row is a difference.
 *
 * Columns must match by name; the sink may have extra columns only if they hold nothing but NULL.
 * Output: one line per table ("table public.orders: 1234 rows, equal") or the first 10
 * differences. Exit 0 all equal, 1 differences, 2 errors (connection, missing table, bad args).
 * Both sides are read inside one snapshot each (REPEATABLE READ / one SQLite read transaction).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#define MAX_SHOWN 10

enum { EXIT_EQUAL = 0, EXIT_DIFF = 1, EXIT_ERROR = 2 };

/* PostgreSQL built-in type OIDs (pg_type.dat); stable across versions. */
enum {
  OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
  OID_FLOAT4 = 700, OID_FLOAT8 = 701
};

/* Tags of the canonical encoding; they double as the storage class names in messages. */
enum { TAG_NULL = 'N', TAG_INT = 'I', TAG_REAL = 'R', TAG_TEXT = 'T', TAG_BLOB = 'B' };

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("od_compare: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(EXIT_ERROR);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) die("out of memory (%zu bytes)", n);
  return q;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xrealloc(NULL, n), s, n);
}

/* ---- one side's rows: a byte buffer of encodings plus an index of (offset, length) ---- */

struct row_ref { size_t off, len; };

struct rowset {
  unsigned char *buf;
  size_t len, cap;
  struct row_ref *rows;
  size_t nrows, caprows;
  size_t row_start; /* offset where the row being built starts */
};

static void rs_reserve(struct rowset *rs, size_t extra) {
  if (rs->len + extra <= rs->cap) return;
  size_t cap = rs->cap ? rs->cap : 1 << 16;
  while (cap < rs->len + extra) cap *= 2;
  rs->buf = xrealloc(rs->buf, cap);
  rs->cap = cap;
}

static void rs_begin_row(struct rowset *rs) { rs->row_start = rs->len; }

static void rs_put(struct rowset *rs, char tag, const void *data, size_t n) {
  if (n > UINT32_MAX) die("value of %zu bytes is too large", n);
  rs_reserve(rs, 5 + n);
  unsigned char *p = rs->buf + rs->len;
  p[0] = (unsigned char)tag;
  p[1] = (unsigned char)(n >> 24);
  p[2] = (unsigned char)(n >> 16);
  p[3] = (unsigned char)(n >> 8);
  p[4] = (unsigned char)n;
  if (n) memcpy(p + 5, data, n);
  rs->len += 5 + n;
}

static void rs_put_int(struct rowset *rs, long long v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", v);
  rs_put(rs, TAG_INT, tmp, (size_t)n);
}

static void rs_put_real(struct rowset *rs, double d) {
  uint64_t bits;
  unsigned char be[8];
  memcpy(&bits, &d, sizeof bits);
  for (int i = 0; i < 8; i++) be[i] = (unsigned char)(bits >> (56 - 8 * i));
  rs_put(rs, TAG_REAL, be, 8);
}

static void rs_end_row(struct rowset *rs) {
  if (rs->nrows == rs->caprows) {
    rs->caprows = rs->caprows ? rs->caprows * 2 : 1024;
    rs->rows = xrealloc(rs->rows, rs->caprows * sizeof *rs->rows);
  }
  rs->rows[rs->nrows].off = rs->row_start;
  rs->rows[rs->nrows].len = rs->len - rs->row_start;
  rs->nrows++;
}

static void rs_clear(struct rowset *rs) { rs->len = 0; rs->nrows = 0; }

static void rs_free(struct rowset *rs) {
  free(rs->buf);
  free(rs->rows);
  memset(rs, 0, sizeof *rs);
}

static const unsigned char *sort_base; /* qsort has no context argument in C11 */

static int cmp_enc(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

static int cmp_row_ref(const void *x, const void *y) {
  const struct row_ref *a = x, *b = y;
  return cmp_enc(sort_base + a->off, a->len, sort_base + b->off, b->len);
}

static void rs_sort(struct rowset *rs) {
  sort_base = rs->buf;
  if (rs->nrows > 1) qsort(rs->rows, rs->nrows, sizeof *rs->rows, cmp_row_ref);
}

/* ---- rendering a row for a difference report ---- */

static void render_value(FILE *out, char tag, const unsigned char *p, size_t n) {
  const size_t max_show = 64;
  switch (tag) {
  case TAG_NULL: fputs("NULL", out); return;
  case TAG_INT: fprintf(out, "%.*s", (int)n, (const char *)p); return;
  case TAG_REAL: {
    uint64_t bits = 0;
    double d;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | p[i];
    memcpy(&d, &bits, sizeof d);
    fprintf(out, "%.17g(REAL)", d);
    return;
  }
  case TAG_TEXT:
    fputc('\'', out);
    for (size_t i = 0; i < n && i < max_show; i++) {
      unsigned char c = p[i];
      if (c == '\'') fputs("''", out);
      else if (c == '\n') fputs("\\n", out);
      else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
      else fputc(c, out);
    }
    fputc('\'', out);
    if (n > max_show) fprintf(out, "...(%zu bytes)", n);
    return;
  case TAG_BLOB:
    fputs("x'", out);
    for (size_t i = 0; i < n && i < max_show / 2; i++) fprintf(out, "%02x", p[i]);
    fputc('\'', out);
    if (n > max_show / 2) fprintf(out, "...(%zu bytes)", n);
    return;
  default: fputs("?", out);
  }
}

static void render_row(FILE *out, const unsigned char *p, size_t len, char **names, int ncols) {
  const unsigned char *end = p + len;
  fputc('(', out);
  for (int c = 0; c < ncols && p + 5 <= end; c++) {
    size_t n = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
    fprintf(out, "%s%s=", c ? ", " : "", names[c]);
    render_value(out, (char)p[0], p + 5, n);
    p += 5 + n;
  }
  fputc(')', out);
}

/* Length of the value encoding at p (tag, 4-byte length, payload). */
static size_t enc_len(const unsigned char *p) {
  return 5 + (((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4]);
}

/* For a missing and an extra row with the same first value (the key, in keyed tables): the
 * columns whose values differ, value by value. */
static void render_value_diff(FILE *out, const unsigned char *a, size_t alen, const unsigned char *b,
                              size_t blen, char **names, int ncols) {
  const unsigned char *aend = a + alen, *bend = b + blen;
  fprintf(out, "  same %s, different values:\n", names[0]);
  for (int c = 0; c < ncols && a + 5 <= aend && b + 5 <= bend; c++) {
    size_t na = enc_len(a), nb = enc_len(b);
    if (na != nb || memcmp(a, b, na) != 0) {
      fprintf(out, "    %s: source ", names[c]);
      render_value(out, (char)a[0], a + 5, na - 5);
      fprintf(out, " (%s), sink ", a[0] == TAG_NULL ? "NULL" : (char[]){(char)a[0], 0});
      render_value(out, (char)b[0], b + 5, nb - 5);
      fprintf(out, " (%s)\n", b[0] == TAG_NULL ? "NULL" : (char[]){(char)b[0], 0});
    }
    a += na;
    b += nb;
  }
}

/* ---- PostgreSQL side ---- */

static PGresult *pg_exec(PGconn *pg, const char *sql, ExecStatusType want) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != want) {
    fprintf(stderr, "od_compare: error: PostgreSQL: %s\n  query: %s\n", PQerrorMessage(pg), sql);
    PQclear(r);
    return NULL;
  }
  return r;
}

static bool parse_ll(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return false;
  *out = v;
  return true;
}

/* Converts one PG text value to the canonical sink encoding; false on unparsable input. */
static bool put_pg_value(struct rowset *rs, Oid type, const char *v, int len) {
  switch (type) {
  case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: {
    long long x;
    if (!parse_ll(v, &x)) return false;
    rs_put_int(rs, x);
    return true;
  }
  case OID_BOOL:
    if (strcmp(v, "t") && strcmp(v, "f")) return false;
    rs_put_int(rs, v[0] == 't');
    return true;
  case OID_FLOAT4: case OID_FLOAT8: {
    if (!strcmp(v, "NaN")) {
      rs_put(rs, TAG_TEXT, "NaN", 3);
      return true;
    }
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end) return false;
    rs_put_real(rs, d); /* its bits: -0.0 and 0.0 differ (docs/TYPES.md: -0 is kept) */
    return true;
  }
  case OID_BYTEA: {
    size_t n = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)v, &n);
    if (!bytes) return false;
    rs_put(rs, TAG_BLOB, bytes, n);
    PQfreemem(bytes);
    return true;
  }
  default:
    rs_put(rs, TAG_TEXT, v, (size_t)len);
    return true;
  }
}

/* ---- SQLite side ---- */

static void put_sqlite_value(struct rowset *rs, sqlite3_stmt *st, int col) {
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_NULL: rs_put(rs, TAG_NULL, NULL, 0); break;
  case SQLITE_INTEGER: rs_put_int(rs, sqlite3_column_int64(st, col)); break;
  case SQLITE_FLOAT: rs_put_real(rs, sqlite3_column_double(st, col)); break;
  case SQLITE_TEXT: {
    const unsigned char *t = sqlite3_column_text(st, col);
    rs_put(rs, TAG_TEXT, t, (size_t)sqlite3_column_bytes(st, col));
    break;
  }
  default: {
    const void *b = sqlite3_column_blob(st, col);
    rs_put(rs, TAG_BLOB, b, (size_t)sqlite3_column_bytes(st, col));
    break;
  }
  }
}

/* Appends "..." with embedded quotes doubled (SQLite and PG identifier quoting). */
static void quote_ident(char *out, size_t cap, const char *name) {
  size_t j = 0;
  if (cap < 3) die("identifier buffer too small");
  out[j++] = '"';
  for (const char *p = name; *p; p++) {
    if (j + 4 >= cap) die("identifier too long: %s", name);
    if (*p == '"') out[j++] = '"';
    out[j++] = *p;
  }
  out[j++] = '"';
  out[j] = '\0';
}

struct compare_ctx {
  PGconn *pg;
  sqlite3 *db;
  struct rowset src, dst;
};

/* Compares one table; returns EXIT_EQUAL, EXIT_DIFF or EXIT_ERROR after printing its line. */
static int compare_table(struct compare_ctx *cx, const char *schema, const char *table) {
  char qualified[1024], sink_name[1024], qs[600], qt[600], qsink[1100], sql[4096];
  snprintf(qualified, sizeof qualified, "%s.%s", schema, table);
  if (!strcmp(schema, "public")) snprintf(sink_name, sizeof sink_name, "%s", table);
  else snprintf(sink_name, sizeof sink_name, "%s.%s", schema, table);
  quote_ident(qs, sizeof qs, schema);
  quote_ident(qt, sizeof qt, table);
  quote_ident(qsink, sizeof qsink, sink_name);

  /* PG rows. */
  /* ONLY: the table's own rows, not those of tables inheriting from it (compared on their own);
   * a partitioned table has none of its own, so it is read whole. */
  snprintf(sql, sizeof sql, "SELECT c.relkind = 'r' FROM pg_class c WHERE c.oid = to_regclass('%s.%s')", qs, qt);
  PGresult *kr = pg_exec(cx->pg, sql, PGRES_TUPLES_OK);
  bool only = kr && PQntuples(kr) == 1 && PQgetvalue(kr, 0, 0)[0] == 't';
  if (kr) PQclear(kr);
  snprintf(sql, sizeof sql, "SELECT * FROM %s%s.%s", only ? "ONLY " : "", qs, qt);
  PGresult *pr = pg_exec(cx->pg, sql, PGRES_TUPLES_OK);
  if (!pr) {
    printf("table %s: ERROR reading source table\n", qualified);
    return EXIT_ERROR;
  }
  int ncols = PQnfields(pr);
  char **names = xrealloc(NULL, (size_t)(ncols ? ncols : 1) * sizeof *names);
  for (int c = 0; c < ncols; c++) names[c] = xstrdup(PQfname(pr, c));

  int result = EXIT_EQUAL;
  sqlite3_stmt *st = NULL;
  int *sink_col = NULL;

  /* Sink table and its columns. */
  snprintf(sql, sizeof sql, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?");
  if (sqlite3_prepare_v2(cx->db, sql, -1, &st, NULL) != SQLITE_OK) {
    printf("table %s: ERROR sqlite: %s\n", qualified, sqlite3_errmsg(cx->db));
    result = EXIT_ERROR;
    goto done;
  }
  sqlite3_bind_text(st, 1, sink_name, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  st = NULL;
  if (rc != SQLITE_ROW) {
    printf("table %s: ERROR sink table \"%s\" does not exist in the SQLite file%s%s\n", qualified,
           sink_name, rc == SQLITE_DONE ? "" : ": ", rc == SQLITE_DONE ? "" : sqlite3_errmsg(cx->db));
    result = EXIT_ERROR;
    goto done;
  }

  snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", qsink);
  if (sqlite3_prepare_v2(cx->db, sql, -1, &st, NULL) != SQLITE_OK) {
    printf("table %s: ERROR sqlite: %s\n", qualified, sqlite3_errmsg(cx->db));
    result = EXIT_ERROR;
    goto done;
  }
  sink_col = xrealloc(NULL, (size_t)(ncols ? ncols : 1) * sizeof *sink_col);
  for (int c = 0; c < ncols; c++) sink_col[c] = -1;
  char *select_list = NULL;
  size_t select_len = 0;
  int nsink = 0, nshown = 0;
  bool columns_ok = true;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *cname = (const char *)sqlite3_column_text(st, 1);
    int idx = -1;
    for (int c = 0; c < ncols; c++)
      if (!strcmp(names[c], cname)) idx = c;
    if (idx >= 0) {
      sink_col[idx] = nsink++;
      char q[600];
      quote_ident(q, sizeof q, cname);
      select_list = xrealloc(select_list, select_len + strlen(q) + 3);
      select_len += (size_t)sprintf(select_list + select_len, "%s%s", select_len ? ", " : "", q);
      continue;
    }
    /* An extra sink column is tolerated only while it holds nothing but NULL. */
    char q[600], probe[1800];
    sqlite3_stmt *ps = NULL;
    quote_ident(q, sizeof q, cname);
    snprintf(probe, sizeof probe, "SELECT count(*) FROM %s WHERE %s IS NOT NULL", qsink, q);
    long long nonnull = -1;
    if (sqlite3_prepare_v2(cx->db, probe, -1, &ps, NULL) == SQLITE_OK && sqlite3_step(ps) == SQLITE_ROW)
      nonnull = sqlite3_column_int64(ps, 0);
    sqlite3_finalize(ps);
    if (nonnull != 0) {
      if (columns_ok) printf("table %s: DIFFERENT columns\n", qualified);
      columns_ok = false;
      printf("  extra column in sink: %s (%lld non-null values)\n", cname, nonnull);
    }
  }
  sqlite3_finalize(st);
  st = NULL;
  for (int c = 0; c < ncols; c++) {
    if (sink_col[c] >= 0) continue;
    if (columns_ok) printf("table %s: DIFFERENT columns\n", qualified);
    columns_ok = false;
    printf("  column missing in sink: %s\n", names[c]);
  }
  if (!columns_ok) {
    free(select_list);
    result = EXIT_DIFF;
    goto done;
  }

  /* Encode both sides in PG column order. */
  rs_clear(&cx->src);
  rs_clear(&cx->dst);
  int nrows = PQntuples(pr);
  for (int r = 0; r < nrows; r++) {
    rs_begin_row(&cx->src);
    for (int c = 0; c < ncols; c++) {
      if (PQgetisnull(pr, r, c)) {
        rs_put(&cx->src, TAG_NULL, NULL, 0);
        continue;
      }
      const char *v = PQgetvalue(pr, r, c);
      if (!put_pg_value(&cx->src, PQftype(pr, c), v, PQgetlength(pr, r, c))) {
        printf("table %s: ERROR cannot convert column %s value '%s' (type oid %u)\n", qualified,
               names[c], v, PQftype(pr, c));
        free(select_list);
        result = EXIT_ERROR;
        goto done;
      }
    }
    rs_end_row(&cx->src);
  }
  PQclear(pr);
  pr = NULL;

  if (ncols == 0) {
    free(select_list);
    select_list = xstrdup("NULL");
  }
  snprintf(sql, sizeof sql, "SELECT %s FROM %s", select_list, qsink);
  free(select_list);
  if (sqlite3_prepare_v2(cx->db, sql, -1, &st, NULL) != SQLITE_OK) {
    printf("table %s: ERROR sqlite: %s\n", qualified, sqlite3_errmsg(cx->db));
    result = EXIT_ERROR;
    goto done;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rs_begin_row(&cx->dst);
    for (int c = 0; c < ncols; c++) put_sqlite_value(&cx->dst, st, sink_col[c]);
    rs_end_row(&cx->dst);
  }
  if (rc != SQLITE_DONE) {
    printf("table %s: ERROR sqlite: %s\n", qualified, sqlite3_errmsg(cx->db));
    result = EXIT_ERROR;
    goto done;
  }

  /* Multiset merge of the sorted encodings. */
  rs_sort(&cx->src);
  rs_sort(&cx->dst);
  size_t i = 0, j = 0, missing = 0, extra = 0, nmiss = 0, nextra = 0;
  struct row_ref miss[MAX_SHOWN], xtra[MAX_SHOWN];
  char *report = NULL;
  size_t report_len = 0;
  FILE *rep = open_memstream(&report, &report_len);
  if (!rep) die("open_memstream failed");
  while (i < cx->src.nrows || j < cx->dst.nrows) {
    int c;
    if (i == cx->src.nrows) c = 1;
    else if (j == cx->dst.nrows) c = -1;
    else {
      const struct row_ref *a = &cx->src.rows[i], *b = &cx->dst.rows[j];
      c = cmp_enc(cx->src.buf + a->off, a->len, cx->dst.buf + b->off, b->len);
    }
    if (c == 0) {
      i++;
      j++;
      continue;
    }
    const struct rowset *side = c < 0 ? &cx->src : &cx->dst;
    const struct row_ref *ref = c < 0 ? &side->rows[i++] : &side->rows[j++];
    if (c < 0) missing++;
    else extra++;
    if (nshown < MAX_SHOWN) {
      fputs(c < 0 ? "  missing in sink: " : "  extra in sink:   ", rep);
      render_row(rep, side->buf + ref->off, ref->len, names, ncols);
      fputc('\n', rep);
      if (c < 0 && nmiss < MAX_SHOWN) miss[nmiss++] = *ref;
      if (c > 0 && nextra < MAX_SHOWN) xtra[nextra++] = *ref;
      nshown++;
    }
  }
  for (size_t m = 0; ncols > 0 && m < nmiss; m++) {
    const unsigned char *a = cx->src.buf + miss[m].off;
    for (size_t e = 0; e < nextra; e++) {
      const unsigned char *b = cx->dst.buf + xtra[e].off;
      if (enc_len(a) == enc_len(b) && memcmp(a, b, enc_len(a)) == 0) {
        render_value_diff(rep, a, miss[m].len, b, xtra[e].len, names, ncols);
        break;
      }
    }
  }
  fclose(rep);
  if (missing == 0 && extra == 0) {
    printf("table %s: %zu rows, equal\n", qualified, cx->src.nrows);
  } else {
    printf("table %s: DIFFERENT: source %zu rows, sink %zu rows; %zu missing in sink, %zu extra in "
           "sink (first %d shown)\n%s",
           qualified, cx->src.nrows, cx->dst.nrows, missing, extra, nshown, report);
    result = EXIT_DIFF;
  }
  free(report);

done:
  sqlite3_finalize(st);
  PQclear(pr);
  for (int c = 0; c < ncols; c++) free(names[c]);
  free(names);
  free(sink_col);
  return result;
}

static void usage(void) {
  fprintf(stderr, "usage: od_compare --pg DSN --sqlite PATH [--table schema.table]...\n");
  exit(EXIT_ERROR);
}

int main(int argc, char **argv) {
  const char *dsn = NULL, *path = NULL;
  char **tables = NULL;
  int ntables = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--pg")) dsn = argv[++i];
    else if (!strcmp(argv[i], "--sqlite")) path = argv[++i];
    else if (!strcmp(argv[i], "--table")) {
      tables = xrealloc(tables, (size_t)(ntables + 1) * sizeof *tables);
      tables[ntables++] = argv[++i];
    } else usage();
  }
  if (!dsn || !path) usage();

  struct compare_ctx cx;
  memset(&cx, 0, sizeof cx);
  cx.pg = PQconnectdb(dsn);
  if (PQstatus(cx.pg) != CONNECTION_OK) {
    fprintf(stderr, "od_compare: error: cannot connect to PostgreSQL: %s", PQerrorMessage(cx.pg));
    PQfinish(cx.pg);
    return EXIT_ERROR;
  }
  PGresult *r = pg_exec(cx.pg,
                        "SET extra_float_digits = 3; SET bytea_output = 'hex'; "
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                        PGRES_COMMAND_OK);
  if (!r) {
    PQfinish(cx.pg);
    return EXIT_ERROR;
  }
  PQclear(r);

  if (sqlite3_open_v2(path, &cx.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "od_compare: error: cannot open SQLite file %s: %s\n", path,
            cx.db ? sqlite3_errmsg(cx.db) : "out of memory");
    sqlite3_close(cx.db);
    PQfinish(cx.pg);
    return EXIT_ERROR;
  }
  sqlite3_busy_timeout(cx.db, 10000);
  char *err = NULL;
  if (sqlite3_exec(cx.db, "BEGIN; SELECT count(*) FROM sqlite_master;", NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "od_compare: error: cannot read SQLite file %s: %s\n", path, err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(cx.db);
    PQfinish(cx.pg);
    return EXIT_ERROR;
  }

  /* The list of tables: given, or every user table of the database. */
  PGresult *list = NULL;
  int worst = EXIT_EQUAL, ncompared = 0;
  if (ntables == 0) {
    list = pg_exec(cx.pg,
                   "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                   "c.relnamespace WHERE c.relkind IN ('r','p') AND NOT c.relispartition AND "
                   "n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE "
                   "'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2",
                   PGRES_TUPLES_OK);
    if (!list) worst = EXIT_ERROR;
    else {
      for (int t = 0; t < PQntuples(list); t++) {
        int res = compare_table(&cx, PQgetvalue(list, t, 0), PQgetvalue(list, t, 1));
        if (res > worst) worst = res;
        ncompared++;
      }
      PQclear(list);
    }
  } else {
    for (int t = 0; t < ntables; t++) {
      char *dot = strchr(tables[t], '.');
      char *schema = dot ? strndup(tables[t], (size_t)(dot - tables[t])) : xstrdup("public");
      const char *name = dot ? dot + 1 : tables[t];
      if (!schema) die("out of memory");
      /* A table missing on the source side is an error, not an empty table. */
      const char *params[2] = {schema, name};
      PGresult *ex = PQexecParams(cx.pg,
                                  "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                  "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND "
                                  "c.relkind IN ('r','p')",
                                  2, NULL, params, NULL, NULL, 0);
      int res;
      if (PQresultStatus(ex) != PGRES_TUPLES_OK) {
        printf("table %s.%s: ERROR PostgreSQL: %s", schema, name, PQerrorMessage(cx.pg));
        res = EXIT_ERROR;
      } else if (PQntuples(ex) == 0) {
        printf("table %s.%s: ERROR no such table in the PostgreSQL database\n", schema, name);
        res = EXIT_ERROR;
      } else {
        res = compare_table(&cx, schema, name);
      }
      PQclear(ex);
      free(schema);
      if (res > worst) worst = res;
      ncompared++;
    }
  }
  if (ncompared == 0) {
    printf("no tables to compare\n");
    if (worst < EXIT_ERROR) worst = EXIT_ERROR;
  }

  sqlite3_exec(cx.db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(cx.db);
  PQfinish(cx.pg);
  rs_free(&cx.src);
  rs_free(&cx.dst);
  free(tables);
  printf("%s\n", worst == EXIT_EQUAL ? "od_compare: all tables equal"
                 : worst == EXIT_DIFF ? "od_compare: DIFFERENCES found"
                                      : "od_compare: ERRORS");
  return worst;
}
