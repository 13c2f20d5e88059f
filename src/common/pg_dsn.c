/* pg_dsn.c — see pg_dsn.h. */
#include "common/pg_dsn.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

int od_pg_dsn_describe(const od_config_section *cfg, const char *dsn, char *out, size_t size, od_error *err) {
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
  if (!opts) {
    const od_config_entry *e = od_config_find(cfg, "dsn");
    bool show = e && !e->secret && perr;
    int rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.dsn is not a valid libpq connection string%s%s", cfg->file,
                     e ? e->line : cfg->line, e ? e->col : cfg->col, cfg->path, show ? ": " : "",
                     show ? perr : "");
    PQfreemem(perr);
    return rc;
  }
  const char *host = NULL, *port = NULL, *db = NULL, *hostaddr = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val) continue;
    if (!strcmp(o->keyword, "host")) host = o->val;
    if (!strcmp(o->keyword, "hostaddr")) hostaddr = o->val;
    if (!strcmp(o->keyword, "port")) port = o->val;
    if (!strcmp(o->keyword, "dbname")) db = o->val;
  }
  snprintf(out, size, "%s:%s/%s", host ? host : hostaddr ? hostaddr : "localhost", port ? port : "5432",
           db ? db : "(default db)");
  PQconninfoFree(opts);
  return OD_OK;
}
