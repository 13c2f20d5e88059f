/* The sink contract (tests/contract/sink_contract.h) against the SQLite sink, in a temp file, with
 * row counts read back through a separate sqlite3 connection. The PostgreSQL sink runs the same
 * contract in tests/integration/sink_contract.sh. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../contract/sink_contract.h"
#include "odsync/registry.h"
#include "test.h"

static char path[256];

static int open_sqlite(void *ctx, const char *name, od_sink **out, od_error *err) {
  (void)ctx;
  od_config_entry e = {.key = "path", .value = path, .line = 1, .col = 1};
  od_config_section sec = {.file = "t.yaml", .path = "pipelines[0].sink", .type = "sqlite", .entries = &e, .nentries = 1};
  return od_sink_find("sqlite")->open(&sec, name, out, err);
}

static long count_sqlite(void *ctx, const char *table) {
  (void)ctx;
  sqlite3 *db;
  sqlite3_stmt *st;
  long n = -2;
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -2;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

static void report(void *ctx, bool ok, const char *check, const char *detail) {
  (void)ctx;
  printf("  %s %s%s%s\n", ok ? "ok  " : "FAIL", check, ok ? "" : ": ", ok ? "" : detail);
  CHECK(ok || !check); /* every check counts as an assertion; a failed one is reported above */
}

TEST(sqlite_keeps_the_sink_contract) {
  char dir[] = "/tmp/odsync-contract-XXXXXX";
  if (!mkdtemp(dir)) OD_TEST_FAIL("mkdtemp");
  snprintf(path, sizeof path, "%s/c.db", dir);
  od_contract_env env = {.ops = od_sink_find("sqlite"), .open = open_sqlite, .count_rows = count_sqlite};
  int failed = od_sink_contract(&env, report, NULL);
  CHECK_INT(failed, 0);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK_INT(system(cmd), 0);
}
