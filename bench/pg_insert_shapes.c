/* bench/pg_insert_shapes.c — server CPU per row of the statement shapes a PostgreSQL sink can use
 * to write a run of new rows (bench/pg_insert_shapes.sh runs it on a throwaway server).
 *
 * Owns: its one connection, the prepared batches (client memory). Never touches anything but the
 * table bench_shapes of the database it is given.
 * The rows are made by the server once, before any timing, in each wire form: text array literals
 * (what the sink sends today), binary arrays (array_send of the same values), COPY text and COPY
 * binary data. Each shape then writes every batch into an emptied table, one transaction per batch
 * (synchronous_commit off: CPU, not fsync), and the backend's own CPU (utime + stime of
 * /proc/<pg_backend_pid()>/stat) is read before and after. Shapes:
 *   upsert_text  INSERT .. SELECT FROM ROWS FROM (unnest($n::T[]) ..) ON CONFLICT (id) DO UPDATE
 *   insert_text  the same without ON CONFLICT
 *   insert_bin   the same with binary array parameters
 *   copy_text    COPY FROM STDIN
 *   copy_bin     COPY FROM STDIN (FORMAT binary)
 * Usage: pg_insert_shapes DSN [ROWS] [BATCH] [ROUNDS]
 */
#define BENCH_NAME "pg_insert_shapes"
#include "pg_backend.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NCOL 5
static const char *const COLS = "id, a, b, c, d";
static const char *const TYPES[NCOL] = {"int8", "int4", "text", "timestamptz", "numeric"};

typedef struct batch {
  char *val[2][NCOL]; /* [0] text literal, [1] binary array (owned) */
  int len[2][NCOL];
  char *copy[2];      /* COPY text, COPY binary data (owned) */
  size_t clen[2];
} batch;

static const char *rows_sql(long lo, long hi, char *out, size_t cap) {
  snprintf(out, cap,
           "SELECT g::int8 AS id, (g %% 1000003)::int4 AS a, md5(g::text) AS b, "
           "'2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second' AS c, (g %% 100000) / 100.0 AS d "
           "FROM generate_series(%ld, %ld) g", lo, hi);
  return out;
}

static char *copy_out(PGconn *c, const char *sql, size_t *len) {
  PGresult *cr = PQexec(c, sql);
  if (PQresultStatus(cr) != PGRES_COPY_OUT) die(c, sql);
  PQclear(cr);
  size_t n = 0, cap = 1 << 20;
  char *out = malloc(cap), *chunk;
  int k;
  while ((k = PQgetCopyData(c, &chunk, 0)) > 0) {
    while (n + (size_t)k > cap) out = realloc(out, cap *= 2);
    if (!out) die(NULL, "out of memory");
    memcpy(out + n, chunk, (size_t)k);
    n += (size_t)k;
    PQfreemem(chunk);
  }
  PGresult *r;
  while ((r = PQgetResult(c))) PQclear(r);
  *len = n;
  return out;
}

static void make_batch(PGconn *c, batch *b, long lo, long hi) {
  char rows[512], sql[1024];
  rows_sql(lo, hi, rows, sizeof rows);
  snprintf(sql, sizeof sql, "SELECT array_agg(id), array_agg(a), array_agg(b), array_agg(c), array_agg(d) FROM (%s) x",
           rows);
  for (int fmt = 0; fmt < 2; fmt++) {
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, fmt);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) die(c, "making a batch");
    for (int i = 0; i < NCOL; i++) {
      b->len[fmt][i] = PQgetlength(r, 0, i);
      b->val[fmt][i] = malloc((size_t)b->len[fmt][i] + 1);
      memcpy(b->val[fmt][i], PQgetvalue(r, 0, i), (size_t)b->len[fmt][i] + 1);
    }
    PQclear(r);
  }
  snprintf(sql, sizeof sql, "COPY (%s) TO STDOUT", rows);
  b->copy[0] = copy_out(c, sql, &b->clen[0]);
  snprintf(sql, sizeof sql, "COPY (%s) TO STDOUT (FORMAT binary)", rows);
  b->copy[1] = copy_out(c, sql, &b->clen[1]);
}

static void prepare(PGconn *c, const char *name, bool conflict) {
  char sql[1024];
  int n = snprintf(sql, sizeof sql, "INSERT INTO bench_shapes (%s) SELECT * FROM ROWS FROM (", COLS);
  for (int i = 0; i < NCOL; i++) n += snprintf(sql + n, sizeof sql - (size_t)n, "%sunnest($%d::%s[])", i ? ", " : "", i + 1, TYPES[i]);
  n += snprintf(sql + n, sizeof sql - (size_t)n, ") AS u");
  if (conflict)
    snprintf(sql + n, sizeof sql - (size_t)n,
             " ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, d = EXCLUDED.d");
  PGresult *r = PQprepare(c, name, sql, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, "prepare");
  PQclear(r);
}

static void shape(PGconn *c, int shape_no, const batch *b) {
  PGresult *r;
  if (shape_no <= 2) {
    const char *v[NCOL];
    int fmts[NCOL];
    int bin = shape_no == 2;
    for (int i = 0; i < NCOL; i++) v[i] = b->val[bin][i], fmts[i] = bin;
    r = PQexecPrepared(c, shape_no == 0 ? "up" : "ins", NCOL, v, b->len[bin], fmts, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, "insert");
    PQclear(r);
    return;
  }
  int bin = shape_no == 4;
  char sql[128];
  snprintf(sql, sizeof sql, "COPY bench_shapes (%s) FROM STDIN%s", COLS, bin ? " (FORMAT binary)" : "");
  r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COPY_IN) die(c, "COPY");
  PQclear(r);
  if (PQputCopyData(c, b->copy[bin], (int)b->clen[bin]) != 1 || PQputCopyEnd(c, NULL) != 1) die(c, "COPY data");
  r = PQgetResult(c);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, "COPY end");
  PQclear(r);
  while ((r = PQgetResult(c))) PQclear(r);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pg_insert_shapes DSN [ROWS] [BATCH] [ROUNDS]\n");
    return 2;
  }
  long rows = argc > 2 ? atol(argv[2]) : 200000, bsz = argc > 3 ? atol(argv[3]) : 1000;
  int rounds = argc > 4 ? atoi(argv[4]) : 2;
  if (rows < 1 || bsz < 1 || rounds < 1) return 2;
  PGconn *c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) die(c, "connect");
  run(c, "SET synchronous_commit = off");
  run(c, "SET client_min_messages = warning");
  run(c, "DROP TABLE IF EXISTS bench_shapes");
  run(c, "CREATE TABLE bench_shapes (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2))");
  int pid = PQbackendPID(c);
  long nb = (rows + bsz - 1) / bsz;
  batch *bs = calloc((size_t)nb, sizeof *bs);
  if (!bs) die(NULL, "out of memory");
  for (long i = 0; i < nb; i++) make_batch(c, &bs[i], i * bsz + 1, (i + 1) * bsz < rows ? (i + 1) * bsz : rows);
  prepare(c, "up", true);
  prepare(c, "ins", false);
  static const char *const names[] = {"upsert_text", "insert_text", "insert_bin", "copy_text", "copy_bin"};
  printf("%-12s %5s %10s %12s   (%ld rows in %ld-row transactions, backend CPU)\n", "shape", "round", "CPU s",
         "us/row", rows, bsz);
  for (int round = 1; round <= rounds; round++)
    for (int s = 0; s < 5; s++) {
      run(c, "TRUNCATE bench_shapes");
      run(c, "CHECKPOINT");
      double t0 = backend_cpu(pid);
      for (long i = 0; i < nb; i++) {
        run(c, "BEGIN");
        shape(c, s, &bs[i]);
        run(c, "COMMIT");
      }
      double t = backend_cpu(pid) - t0;
      printf("%-12s %5d %10.2f %12.2f\n", names[s], round, t, t * 1e6 / (double)rows);
      fflush(stdout);
    }
  PQfinish(c);
  return 0;
}
