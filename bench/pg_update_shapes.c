/* bench/pg_update_shapes.c — server CPU per row of the statement shapes a PostgreSQL sink can use to
 * write a run of full-row updates of existing keys (bench/pg_update_shapes.sh runs it on a throwaway
 * server).
 *
 * Owns: its one connection, the prepared batches (client memory). Never touches anything but the
 * table bench_ushapes of the database it is given.
 * Before each shape the table is refilled with ROWS rows (not timed) and vacuumed; then every batch
 * updates BATCH of those keys to new values, one transaction per batch (synchronous_commit off: CPU,
 * not fsync), and the backend's own CPU (utime + stime of /proc/<pid>/stat) is read before and after.
 * Parameters as the sink sends them: binary arrays for int8/int4/text, text arrays for timestamptz and
 * numeric. Shapes:
 *   upsert        INSERT .. SELECT FROM ROWS FROM (unnest($n::T[]) ..) ON CONFLICT (id) DO UPDATE SET ..
 *   update_from   UPDATE t SET .. FROM ROWS FROM (unnest($n::T[]) ..) AS u WHERE t.id = u.id
 *   update_or_ins WITH u AS (..unnest..), up AS (UPDATE .. FROM u .. RETURNING t.id)
 *                 INSERT .. SELECT FROM u WHERE id NOT IN (SELECT id FROM up) ON CONFLICT DO UPDATE ..
 *                 (one statement that also inserts keys the table lacks)
 * Usage: pg_update_shapes DSN [ROWS] [BATCH] [ROUNDS]
 */
#define BENCH_NAME "pg_update_shapes"
#include "pg_backend.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NCOL 5
#define NSHAPE 3
static const char *const TYPES[NCOL] = {"int8", "int4", "text", "timestamptz", "numeric"};
static const int BINARY[NCOL] = {1, 1, 1, 0, 0};

typedef struct batch {
  char *val[NCOL]; /* owned: binary array or text literal, per BINARY[] */
  int len[NCOL];
} batch;

/* salt 0: the rows the table is filled with; 1: the updated values of the same keys */
static void rows_sql(long lo, long hi, int salt, char *out, size_t cap) {
  snprintf(out, cap,
           "SELECT g::int8 AS id, ((g + %d) %% 1000003)::int4 AS a, md5((g + %d)::text) AS b, "
           "'2024-01-01 00:00:00+00'::timestamptz + (g + %d) * interval '1 second' AS c, "
           "((g + %d) %% 100000) / 100.0 AS d FROM generate_series(%ld, %ld) g",
           salt, salt, salt, salt, lo, hi);
}

static void make_batch(PGconn *c, batch *b, long lo, long hi) {
  char rows[640], sql[1024];
  rows_sql(lo, hi, 1, rows, sizeof rows);
  snprintf(sql, sizeof sql, "SELECT array_agg(id), array_agg(a), array_agg(b), array_agg(c), array_agg(d) FROM (%s) x",
           rows);
  for (int fmt = 0; fmt < 2; fmt++) {
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, fmt);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) die(c, "making a batch");
    for (int i = 0; i < NCOL; i++) {
      if (BINARY[i] != fmt) continue;
      b->len[i] = PQgetlength(r, 0, i);
      b->val[i] = malloc((size_t)b->len[i] + 1);
      if (!b->val[i]) die(NULL, "out of memory");
      memcpy(b->val[i], PQgetvalue(r, 0, i), (size_t)b->len[i] + 1);
    }
    PQclear(r);
  }
}

static int unnest_list(char *out, size_t cap) {
  int n = 0;
  for (int i = 0; i < NCOL; i++) n += snprintf(out + n, cap - (size_t)n, "%sunnest($%d::%s[])", i ? ", " : "", i + 1, TYPES[i]);
  return n;
}

static void prepare(PGconn *c, int shape_no) {
  char un[256], sql[2048];
  unnest_list(un, sizeof un);
  const char *set_ex = "a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c, d = EXCLUDED.d";
  const char *set_u = "a = u.a, b = u.b, c = u.c, d = u.d";
  if (shape_no == 0)
    snprintf(sql, sizeof sql, "INSERT INTO bench_ushapes (id, a, b, c, d) SELECT * FROM ROWS FROM (%s) AS u "
             "ON CONFLICT (id) DO UPDATE SET %s", un, set_ex);
  else if (shape_no == 1)
    snprintf(sql, sizeof sql, "UPDATE bench_ushapes t SET %s FROM ROWS FROM (%s) AS u(id, a, b, c, d) WHERE t.id = u.id",
             set_u, un);
  else
    snprintf(sql, sizeof sql,
             "WITH u AS (SELECT * FROM ROWS FROM (%s) AS u(id, a, b, c, d)), "
             "up AS (UPDATE bench_ushapes t SET %s FROM u WHERE t.id = u.id RETURNING t.id) "
             "INSERT INTO bench_ushapes (id, a, b, c, d) SELECT * FROM u WHERE u.id NOT IN (SELECT id FROM up) "
             "ON CONFLICT (id) DO UPDATE SET %s", un, set_u, set_ex);
  char name[16];
  snprintf(name, sizeof name, "s%d", shape_no);
  PGresult *r = PQprepare(c, name, sql, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, "prepare");
  PQclear(r);
}

static void shape(PGconn *c, int shape_no, const batch *b) {
  char name[16];
  snprintf(name, sizeof name, "s%d", shape_no);
  const char *v[NCOL];
  for (int i = 0; i < NCOL; i++) v[i] = b->val[i];
  PGresult *r = PQexecPrepared(c, name, NCOL, v, b->len, BINARY, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, "update");
  PQclear(r);
}

/* rows of the table that hold exactly the updated values (checked after each shape, not timed) */
static long rows_updated(PGconn *c, long rows) {
  char rs[640], sql[1024];
  rows_sql(1, rows, 1, rs, sizeof rs);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM bench_ushapes t JOIN (%s) x USING (id) "
           "WHERE t.a = x.a AND t.b = x.b AND t.c = x.c AND t.d = x.d", rs);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) die(c, "checking the updated rows");
  long n = atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pg_update_shapes DSN [ROWS] [BATCH] [ROUNDS]\n");
    return 2;
  }
  long rows = argc > 2 ? atol(argv[2]) : 200000, bsz = argc > 3 ? atol(argv[3]) : 1000;
  int rounds = argc > 4 ? atoi(argv[4]) : 2;
  if (rows < 1 || bsz < 1 || rounds < 1) return 2;
  PGconn *c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) die(c, "connect");
  run(c, "SET synchronous_commit = off");
  run(c, "SET client_min_messages = warning");
  run(c, "DROP TABLE IF EXISTS bench_ushapes");
  run(c, "CREATE TABLE bench_ushapes (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2))");
  int pid = PQbackendPID(c);
  long nb = (rows + bsz - 1) / bsz;
  batch *bs = calloc((size_t)nb, sizeof *bs);
  if (!bs) die(NULL, "out of memory");
  for (long i = 0; i < nb; i++) make_batch(c, &bs[i], i * bsz + 1, (i + 1) * bsz < rows ? (i + 1) * bsz : rows);
  for (int s = 0; s < NSHAPE; s++) prepare(c, s);
  char fill[1024], rs[640];
  rows_sql(1, rows, 0, rs, sizeof rs);
  snprintf(fill, sizeof fill, "INSERT INTO bench_ushapes %s", rs);
  static const char *const names[NSHAPE] = {"upsert", "update_from", "update_or_ins"};
  printf("%-14s %5s %10s %12s   (%ld rows updated in %ld-row transactions, backend CPU)\n", "shape", "round", "CPU s",
         "us/row", rows, bsz);
  for (int round = 1; round <= rounds; round++)
    for (int s = 0; s < NSHAPE; s++) {
      run(c, "TRUNCATE bench_ushapes");
      run(c, fill);
      run(c, "VACUUM ANALYZE bench_ushapes");
      run(c, "CHECKPOINT");
      double t0 = backend_cpu(pid);
      for (long i = 0; i < nb; i++) {
        run(c, "BEGIN");
        shape(c, s, &bs[i]);
        run(c, "COMMIT");
      }
      double t = backend_cpu(pid) - t0;
      long done = rows_updated(c, rows);
      if (done != rows) {
        fprintf(stderr, "pg_update_shapes: %s left %ld rows with the new values, expected %ld\n", names[s], done, rows);
        return 1;
      }
      printf("%-14s %5d %10.2f %12.2f\n", names[s], round, t, t * 1e6 / (double)rows);
      fflush(stdout);
    }
  PQfinish(c);
  return 0;
}
