/* od_sink_contract.c — runs the sink contract (tests/contract/sink_contract.h) against one sink.
 *
 *   od_sink_contract TYPE KEY=VALUE...   e.g.  od_sink_contract postgres dsn="host=... dbname=x"
 *
 * The KEY=VALUE pairs are the sink's config section. Row counts are read back for the sinks this
 * tool knows how to read (sqlite: path; postgres: dsn); other sinks get the checks that need none.
 * Prints one line per check; exits 0 when every check passed, 1 otherwise, 2 on bad arguments.
 */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../contract/sink_contract.h"
#include "odsync/registry.h"

static od_config_section sec;
static od_config_entry entries[16];

static int open_sink(void *ctx, const char *name, od_sink **out, od_error *err) {
  return ((const od_sink_ops *)ctx)->open(&sec, name, out, err);
}

static const char *value_of(const char *key) {
  for (int i = 0; i < sec.nentries; i++)
    if (!strcmp(entries[i].key, key)) return entries[i].value;
  return NULL;
}

static long count_rows(void *ctx, const char *table) {
  (void)ctx;
  char sql[256];
  long n = -1;
  if (!strcmp(sec.type, "sqlite") && value_of("path")) {
    sqlite3 *db;
    sqlite3_stmt *st;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
    if (sqlite3_open_v2(value_of("path"), &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    else
      n = -2;
    sqlite3_finalize(st);
    sqlite3_close(db);
  } else if (!strcmp(sec.type, "postgres") && value_of("dsn")) {
    PGconn *c = PQconnectdb(value_of("dsn"));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM public.\"%s\"", table);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    n = r && PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -2;
    PQclear(r);
    PQfinish(c);
  } else if (!strcmp(sec.type, "clickhouse") && value_of("url") && value_of("database")) {
    /* The sink's view (the source's rows: FINAL, deleted rows hidden, keyless copies repeated),
     * through ClickHouse's HTTP interface with curl; the contract's names need no quoting. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "curl -sf -u '%s:%s' --data-binary 'SELECT count() FROM %s.%s_current' '%s'",
             value_of("user") ? value_of("user") : "default", value_of("password") ? value_of("password") : "",
             value_of("database"), table, value_of("url"));
    FILE *f = popen(cmd, "r");
    char line[64] = "";
    n = f && fgets(line, sizeof line, f) && line[0] >= '0' && line[0] <= '9' ? atol(line) : -2;
    if (f && pclose(f) != 0) n = -2;
  }
  return n;
}

static void report(void *ctx, bool ok, const char *check, const char *detail) {
  (void)ctx;
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", check, ok ? "" : ": ", ok ? "" : detail);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: od_sink_contract TYPE KEY=VALUE...\n");
    return 2;
  }
  const od_sink_ops *ops = od_sink_find(argv[1]);
  if (!ops) {
    fprintf(stderr, "od_sink_contract: unknown sink type %s (known: %s)\n", argv[1], od_sink_types());
    return 2;
  }
  sec = (od_config_section){.file = "args", .path = "sink", .type = argv[1], .line = 1, .col = 1, .entries = entries};
  for (int i = 2; i < argc && sec.nentries < 16; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq) {
      fprintf(stderr, "od_sink_contract: expected KEY=VALUE, got %s\n", argv[i]);
      return 2;
    }
    *eq = '\0';
    entries[sec.nentries++] = (od_config_entry){.key = argv[i], .value = eq + 1, .line = 1, .col = 1};
  }
  od_contract_env env = {.ops = ops, .open = open_sink, .count_rows = count_rows, .ctx = (void *)ops};
  int failed = od_sink_contract(&env, report, NULL);
  printf("sink %s: %d check%s failed\n", argv[1], failed, failed == 1 ? "" : "s");
  return failed ? 1 : 0;
}
