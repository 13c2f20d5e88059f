/* bench/pg_backend.h — what the statement-shape benchmarks (pg_insert_shapes.c, pg_update_shapes.c)
 * share: fail loudly, run one statement, and read one backend's own CPU seconds from /proc.
 * Owns nothing; header-only (each benchmark is one translation unit built by its .sh). BENCH_NAME
 * names the program in messages. */
#ifndef ODSYNC_BENCH_PG_BACKEND_H
#define ODSYNC_BENCH_PG_BACKEND_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(PGconn *c, const char *what) {
  fprintf(stderr, "%s: %s: %s", BENCH_NAME, what, c ? PQerrorMessage(c) : "\n");
  exit(1);
}

static void run(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) die(c, sql);
  PQclear(r);
}

/* utime + stime of /proc/<pid>/stat in seconds (10 ms ticks): the backend must be on this machine */
static double backend_cpu(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f || !fgets(buf, sizeof buf, f)) die(NULL, "reading the backend's /proc stat (same machine?)");
  fclose(f);
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  /* after ") ": state(3) ... utime(14) stime(15) */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    die(NULL, "parsing /proc stat");
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#endif
