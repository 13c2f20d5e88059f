/* pg_catalog.c — everything the PostgreSQL source does over an ordinary SQL connection:
 * connecting, server checks, the publication (created with publish_via_partition_root when
 * source.partitions is root; an existing one is never altered), the replication slot, and primary keys of
 * REPLICA IDENTITY FULL tables. Never touches the replication stream or the pipeline.
 * Messages name the server as host:port/dbname and never include the DSN (it may hold a
 * password). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pq_keepalive.h"
#include "core/log.h"
#include "sources/pg/pg_attalign.h"
#include "sources/pg/pg_ident.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_plugin.h"

int od_pg_parse_lsn(const char *text, od_lsn *out) {
  unsigned hi, lo;
  if (!text || sscanf(text, "%X/%X", &hi, &lo) != 2) return OD_EINVAL;
  *out = ((od_lsn)hi << 32) | lo;
  return OD_OK;
}

/* First line of libpq's message, without the trailing newline. */
static const char *pq_message(PGconn *c, char *buf, size_t size) {
  snprintf(buf, size, "%s", c ? PQerrorMessage(c) : "out of memory");
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  for (char *p = buf; *p; p++)
    if (*p == '\n') *p = ' ';
  return buf;
}

PGconn *od_pg_connect(pg_source *s, bool replication, od_error *err) {
  char app[96];
  snprintf(app, sizeof app, "odsync_%s", s->pipeline);
  const char *keys[] = {"connect_timeout", "application_name", OD_PQ_KEEPALIVE_KEYS, "dbname", "replication", NULL};
  const char *vals[] = {"10", app, OD_PQ_KEEPALIVE_VALS, s->dsn, "database", NULL};
  if (!replication) keys[7] = vals[7] = NULL;
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    char msg[400];
    pq_message(c, msg, sizeof msg);
    /* The server answered and refused us: waiting does not change that. (A server that does
     * not answer is retried; the pipeline bounds that for a pipeline that never connected.) */
    bool refused = c && (PQconnectionNeedsPassword(c) || strstr(msg, "authentication failed") ||
                         strstr(msg, "no pg_hba.conf entry") || strstr(msg, "does not exist") ||
                         strstr(msg, "permission denied"));
    bool tls = c && (strstr(msg, "does not match host name") || strstr(msg, "certificate verify failed") ||
                     strstr(msg, "root certificate file") || strstr(msg, "server does not support SSL"));
    if (tls)
      OD_FAIL(err, OD_ECONNECT, "%s: cannot open a%s connection: %s. TLS verification failed: with "
              "sslmode=verify-full, host= must be a name in the server's certificate and sslrootcert the CA that "
              "signed it (docs/SECURITY.md); odsync does not retry", s->where, replication ? " replication" : "n SQL",
              msg);
    else if (refused)
      OD_FAIL(err, OD_ECONNECT, "%s: cannot open a%s connection: %s. The server refused the login: fix the user, "
              "password or database of source.dsn (or the server's pg_hba.conf), then restart; odsync does not retry",
              s->where, replication ? " replication" : "n SQL", msg);
    else
      OD_FAIL_RETRY(err, OD_ECONNECT, "%s: cannot open a%s connection: %s", s->where,
                    replication ? " replication" : "n SQL", msg);
    PQfinish(c);
    return NULL;
  }
  return c;
}

/* Run a query with text parameters; NULL on failure (err filled). Caller PQclear()s. */
static PGresult *query(pg_source *s, PGconn *c, const char *sql, int n, const char *const *params,
                       od_error *err) {
  /* Replication connections only speak the simple query protocol. */
  PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  char msg[400];
  bool lost = PQstatus(c) != CONNECTION_OK;
  od_error_set(err, lost ? OD_ECONNECT : OD_ESOURCE, lost, __FILE__, __LINE__, "%s: %s",
               s->where, pq_message(c, msg, sizeof msg));
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state ? state : "");
  PQclear(r);
  return NULL;
}

PGresult *od_pg_query(pg_source *s, PGconn *c, const char *sql, int n, const char *const *params,
                      od_error *err) {
  return query(s, c, sql, n, params, err);
}

/* "schema"."table" of a parsed source.tables entry, quoted, into out. */
static int qualified_ident(PGconn *c, const od_pg_qname *q, char *out, size_t size) {
  char *qs = PQescapeIdentifier(c, q->schema, strlen(q->schema));
  char *qt = PQescapeIdentifier(c, q->name, strlen(q->name));
  int rc = (qs && qt && (size_t)snprintf(out, size, "%s.%s", qs, qt) < size) ? OD_OK : OD_EINVAL;
  PQfreemem(qs);
  PQfreemem(qt);
  return rc;
}

static int check_server(pg_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  int fatal = 0;
  char msg[512];
  if (PQserverVersion(s->meta) < 100000) {
    snprintf(msg, sizeof msg, "%s: PostgreSQL %d is too old: logical replication with pgoutput needs 10 or later",
             s->where, PQserverVersion(s->meta) / 10000);
    problem(ctx, true, msg);
    fatal++;
  }
  PGresult *r = query(s, s->meta,
                      "SELECT current_setting('wal_level'), "
                      "(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), "
                      "current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int",
                      0, NULL, err);
  if (!r) return -1;
  if (strcmp(PQgetvalue(r, 0, 0), "logical") != 0) {
    snprintf(msg, sizeof msg,
             "%s: wal_level is '%s'; logical replication needs 'logical' "
             "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)",
             s->where, PQgetvalue(r, 0, 0));
    problem(ctx, true, msg);
    fatal++;
  }
  if (strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
    snprintf(msg, sizeof msg, "%s: role %s lacks the REPLICATION attribute (ALTER ROLE %s REPLICATION)",
             s->where, PQuser(s->meta), PQuser(s->meta));
    problem(ctx, true, msg);
    fatal++;
  }
  if (atoi(PQgetvalue(r, 0, 2)) < 1 || atoi(PQgetvalue(r, 0, 3)) < 1) {
    snprintf(msg, sizeof msg, "%s: max_replication_slots and max_wal_senders must be at least 1", s->where);
    problem(ctx, true, msg);
    fatal++;
  }
  PQclear(r);
  return fatal;
}

/* Configured tables that do not exist are fatal; tables that cannot replicate updates or
 * deletes are warnings (inserts still flow). */
static int check_tables(pg_source *s, od_problem_fn problem, void *ctx, bool pub_exists,
                        od_error *err) {
  int fatal = 0;
  char msg[1400];
  for (int i = 0; i < s->ntables; i++) {
    const od_pg_qname *q = &s->qtables[i];
    const char *p[] = {q->schema, q->name};
    PGresult *r = query(s, s->meta,
                        "SELECT c.relkind, c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = $1 AND c.relname = $2",
                        2, p, err);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
      snprintf(msg, sizeof msg, "%s: table %s.%s (source.tables '%s') does not exist (unquoted names are folded to "
               "lower case: write a mixed-case name in double quotes, '\"Orders\"')",
               s->where, q->schema, q->name, s->tables[i]);
      problem(ctx, true, msg);
      fatal++;
    } else if (!strchr("rp", PQgetvalue(r, 0, 0)[0])) {
      snprintf(msg, sizeof msg, "%s: %s.%s (source.tables '%s') is not a table (relkind '%s'): only tables and "
               "partitioned tables can be published", s->where, q->schema, q->name, s->tables[i], PQgetvalue(r, 0, 0));
      problem(ctx, true, msg);
      fatal++;
    } else if (PQgetvalue(r, 0, 1)[0] == 'u') {
      snprintf(msg, sizeof msg, "%s: table %s.%s (source.tables) is UNLOGGED: its changes are not written to the WAL, "
               "so logical replication cannot capture them (PostgreSQL refuses to publish it). Fix: ALTER TABLE "
               "%s.%s SET LOGGED, or remove it from source.tables", s->where, q->schema, q->name, q->schema, q->name);
      problem(ctx, true, msg);
      fatal++;
    }
    PQclear(r);
  }
  /* Which tables will be captured: the publication's, or the configured/all user tables. */
  const char *sql_pub =
      "SELECT n.nspname, c.relname, c.relreplident, "
      "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
      "FROM pg_publication_tables pt JOIN pg_namespace n ON n.nspname = pt.schemaname "
      "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
      "WHERE pt.pubname = $1 ORDER BY 1, 2";
  const char *sql_all =
      "SELECT n.nspname, c.relname, c.relreplident, "
      "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND ";
  /* partitions: root publishes partitioned roots, leaves their leaf partitions (relispartition: PG 10+). */
  char sql_all_k[1000];
  snprintf(sql_all_k, sizeof sql_all_k, "%s%s ORDER BY 1, 2", sql_all,
           s->via_root && PQserverVersion(s->meta) >= 130000 ? "c.relkind IN ('r', 'p') AND NOT c.relispartition"
                                                             : "c.relkind = 'r'");
  const char *p[] = {s->publication};
  PGresult *r = pub_exists ? query(s, s->meta, sql_pub, 1, p, err) : query(s, s->meta, sql_all_k, 0, NULL, err);
  if (!r) return -1;
  for (int i = 0; i < PQntuples(r); i++) {
    const char *schema = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
    char ident = PQgetvalue(r, i, 2)[0];
    bool has_pk = strcmp(PQgetvalue(r, i, 3), "t") == 0;
    if (!pub_exists && s->ntables) {
      bool listed = false;
      for (int t = 0; t < s->ntables && !listed; t++)
        listed = strcmp(s->qtables[t].schema, schema) == 0 && strcmp(s->qtables[t].name, name) == 0;
      if (!listed) continue;
    }
    if (ident == 'n' || (ident == 'd' && !has_pk)) {
      snprintf(msg, sizeof msg,
               "%s: table %s.%s has %s: PostgreSQL rejects UPDATE and DELETE on it while it is "
               "published, so only inserts replicate (fix: ALTER TABLE %s.%s REPLICA IDENTITY FULL, "
               "or add a primary key)",
               s->where, schema, name, ident == 'n' ? "REPLICA IDENTITY NOTHING" : "no primary key",
               schema, name);
      problem(ctx, false, msg);
    }
  }
  PQclear(r);
  return fatal;
}

/* When the publication is missing, odsync creates it: FOR ALL TABLES needs a superuser; FOR TABLE
 * needs CREATE on the database and ownership of each table. Checked before, so `check` reports
 * what CREATE PUBLICATION would refuse at `run`. */
static int check_publication_rights(pg_source *s, od_problem_fn problem, void *ctx, bool pub_exists, od_error *err) {
  if (pub_exists) return 0;
  char msg[1200];
  int fatal = 0;
  PGresult *r = query(s, s->meta,
                      "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                      "has_database_privilege(current_database(), 'CREATE')",
                      0, NULL, err);
  if (!r) return -1;
  bool super = PQgetvalue(r, 0, 0)[0] == 't', create = PQgetvalue(r, 0, 1)[0] == 't';
  PQclear(r);
  if (super) return 0;
  if (!s->ntables) {
    snprintf(msg, sizeof msg,
             "%s: publication %s does not exist, and odsync would create it FOR ALL TABLES (source.tables is not "
             "set), which needs a superuser; role %s is not one. Fix: list the tables in source.tables, or have "
             "a superuser run CREATE PUBLICATION %s FOR ALL TABLES",
             s->where, s->publication, PQuser(s->meta), s->publication);
    problem(ctx, true, msg);
    return 1;
  }
  if (!create) {
    snprintf(msg, sizeof msg, "%s: publication %s does not exist, and role %s may not create it (no CREATE privilege "
             "on the database). Fix: GRANT CREATE ON DATABASE %s TO %s, or create the publication as its owner",
             s->where, s->publication, PQuser(s->meta), PQdb(s->meta), PQuser(s->meta));
    problem(ctx, true, msg);
    fatal++;
  }
  for (int i = 0; i < s->ntables; i++) {
    const char *p[] = {s->qtables[i].schema, s->qtables[i].name};
    r = query(s, s->meta,
              "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE n.nspname = $1 AND c.relname = $2",
              2, p, err);
    if (!r) return -1;
    if (PQntuples(r) && PQgetvalue(r, 0, 0)[0] != 't') {
      snprintf(msg, sizeof msg, "%s: publication %s does not exist, and role %s may not add table %s.%s to it (only "
               "its owner may). Fix: have the owner run CREATE PUBLICATION %s FOR TABLE ... with the tables of "
               "source.tables", s->where, s->publication, PQuser(s->meta), s->qtables[i].schema, s->qtables[i].name,
               s->publication);
      problem(ctx, true, msg);
      fatal++;
    }
    PQclear(r);
  }
  return fatal;
}

static void log_problem(void *ctx, bool fatal, const char *msg) {
  int *count = ctx;
  if (fatal) {
    od_error_log("%s", msg);
    (*count)++;
  } else {
    od_warn("%s", msg);
  }
}

static int publication_exists(pg_source *s, bool *exists, od_error *err) {
  const char *p[] = {s->publication};
  PGresult *r = query(s, s->meta, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, p, err);
  if (!r) return err->code;
  *exists = PQntuples(r) > 0;
  PQclear(r);
  return OD_OK;
}

/* partitions: root|leaves against the server and an existing publication (warnings only: an
 * existing publication is never altered, and PostgreSQL before 13 publishes leaf partitions). */
static int check_partitions(pg_source *s, od_problem_fn problem, void *ctx, bool pub_exists, od_error *err) {
  char msg[900];
  int v = PQserverVersion(s->meta);
  if (v < 130000) {
    if (!s->via_root || pub_exists) return OD_OK;
    PGresult *r = query(s, s->meta, "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relkind = 'p')", 0, NULL, err);
    if (!r) return err->code;
    bool any = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (any) {
      snprintf(msg, sizeof msg,
               "%s: source.partitions is root, but PostgreSQL %d cannot publish a partitioned table via its root "
               "(publish_via_partition_root needs 13 or later): publication %s will publish leaf partitions, each "
               "reaching the sink as a table of its own (set partitions: leaves to accept that)",
               s->where, v / 10000, s->publication);
      problem(ctx, false, msg);
    }
    return OD_OK;
  }
  if (!pub_exists) return OD_OK;
  const char *p[] = {s->publication};
  PGresult *r = query(s, s->meta, "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", 1, p, err);
  if (!r) return err->code;
  bool via_root = PQntuples(r) > 0 && PQgetvalue(r, 0, 0)[0] == 't';
  bool found = PQntuples(r) > 0;
  PQclear(r);
  if (found && via_root != s->via_root) {
    snprintf(msg, sizeof msg,
             "%s: publication %s exists with publish_via_partition_root = %s, but source.partitions is %s; the "
             "existing publication wins (odsync does not alter it): partitioned tables reach the sink as %s. "
             "To follow the config: ALTER PUBLICATION %s SET (publish_via_partition_root = %s)",
             s->where, s->publication, via_root ? "true" : "false", s->via_root ? "root" : "leaves",
             via_root ? "one table named after the root" : "one table per leaf partition", s->publication,
             s->via_root ? "true" : "false");
    problem(ctx, false, msg);
  }
  return OD_OK;
}

static int create_publication(pg_source *s, od_error *err) {
  char *pub = PQescapeIdentifier(s->meta, s->publication, strlen(s->publication));
  size_t cap = 256 + (size_t)s->ntables * 300;
  char *sql = malloc(cap);
  if (!pub || !sql) {
    PQfreemem(pub);
    free(sql);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  int n = snprintf(sql, cap, "CREATE PUBLICATION %s FOR %s", pub, s->ntables ? "TABLE " : "ALL TABLES");
  for (int i = 0; i < s->ntables; i++) {
    char q[300];
    if (qualified_ident(s->meta, &s->qtables[i], q, sizeof q)) {
      PQfreemem(pub);
      free(sql);
      return OD_FAIL(err, OD_ECONFIG, "%s: table name '%s' in source.tables is too long", s->where, s->tables[i]);
    }
    n += snprintf(sql + n, cap - (size_t)n, "%s%s", i ? ", " : "", q);
  }
  bool via_root = s->via_root && PQserverVersion(s->meta) >= 130000;
  if (via_root) snprintf(sql + n, cap - (size_t)n, " WITH (publish_via_partition_root = true)");
  PGresult *r = query(s, s->meta, sql, 0, NULL, err);
  PQfreemem(pub);
  free(sql);
  if (!r) return od_error_prefix(err, "creating publication %s: ", s->publication);
  PQclear(r);
  od_info("%s: created publication %s for %s (partitioned tables published as %s)", s->where, s->publication,
          s->ntables ? "the configured tables" : "all tables", via_root ? "their root" : "their leaf partitions");
  return OD_OK;
}

/* CREATE_REPLICATION_SLOT on the replication connection `repl`. With `snap` (a buffer of `cap`
 * bytes) the slot exports its snapshot, whose name is written there; the snapshot lives while
 * `repl` stays idle. A temporary slot goes away with its connection. */
int od_pg_create_slot(pg_source *s, PGconn *repl, const char *name, bool temporary, char *snap, size_t cap,
                      od_lsn *point, od_error *err) {
  char *slot = PQescapeIdentifier(repl, name, strlen(name));
  char sql[256];
  bool new_syntax = PQserverVersion(repl) >= 150000;
  /* A temporary slot only exports a snapshot (nothing is streamed from it): pgoutput. The slot the
   * pipeline streams from gets the plugin pg_plugin.c chooses. */
  const char *plugin = temporary ? OD_PG_PLUGIN_PGOUTPUT : od_pg_plugin_for_new_slot(s);
  PGresult *cr;
  for (;;) {
    snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT %s %sLOGICAL %s %s", slot ? slot : "",
             temporary ? "TEMPORARY " : "", plugin,
             snap ? (new_syntax ? "(SNAPSHOT 'export')" : "EXPORT_SNAPSHOT") : "NOEXPORT_SNAPSHOT");
    if ((cr = query(s, repl, sql, 0, NULL, err)) || temporary || !od_pg_plugin_fall_back(s, err->msg)) break;
    od_error_clear(err);
    plugin = od_pg_plugin_for_new_slot(s);
  }
  PQfreemem(slot);
  if (!cr) return od_error_prefix(err, "creating replication slot %s: ", name);
  if (!temporary) od_pg_plugin_use(s, plugin, true);
  od_pg_parse_lsn(PQgetvalue(cr, 0, 1), point);
  if (snap) snprintf(snap, cap, "%s", PQgetisnull(cr, 0, 2) ? "" : PQgetvalue(cr, 0, 2));
  PQclear(cr);
  return OD_OK;
}

/* Create the slot when missing; fail clearly when it belongs elsewhere or is in use. */
static int ensure_slot(pg_source *s, od_lsn from, od_error *err) {
  const char *p[] = {s->slot};
  PGresult *r = query(s, s->meta,
                      "SELECT plugin, database = current_database(), active, active_pid, "
                      "confirmed_flush_lsn, slot_type FROM pg_replication_slots WHERE slot_name = $1",
                      1, p, err);
  if (!r) return err->code;
  if (PQntuples(r) == 0) {
    PQclear(r);
    /* The sink holds changes up to `from` and expects the slot to keep everything after it. A
     * slot created now would start at the current WAL position: the changes in between are gone,
     * and the new slot would only hold WAL for a pipeline that cannot go on. */
    if (from)
      return OD_FAIL(err, OD_EGAP,
                     "%s: replication slot %s does not exist, but the sink holds changes up to " OD_LSN_FMT
                     " from it: the slot was dropped, and the changes committed since are gone from the server. "
                     "odsync does not create a new slot for this sink (it would silently miss those changes). To "
                     "start over: empty the sink (drop its tables and its _odsync_checkpoint row for pipeline %s, "
                     "or point sink at a new database/file) and run again: a new slot and an initial snapshot are "
                     "made",
                     s->where, s->slot, OD_LSN_ARGS(from), s->pipeline);
    int rc = od_pg_create_slot(s, s->repl, s->slot, false, NULL, 0, &s->floor, err);
    if (rc) return rc;
    od_info("%s: created replication slot %s at " OD_LSN_FMT, s->where, s->slot, OD_LSN_ARGS(s->floor));
    return OD_OK;
  }
  int rc = OD_OK;
  if (strcmp(PQgetvalue(r, 0, 5), "logical") != 0 || !od_pg_plugin_known(PQgetvalue(r, 0, 0)))
    rc = OD_FAIL(err, OD_ESOURCE, "%s: replication slot %s exists but is not a logical pgoutput (or odsync_pgoutput) "
                 "slot (plugin '%s'); "
                 "choose another source.slot or drop it", s->where, s->slot, PQgetvalue(r, 0, 0));
  else if (strcmp(PQgetvalue(r, 0, 1), "t") != 0)
    rc = OD_FAIL(err, OD_ESOURCE, "%s: replication slot %s belongs to another database; choose another source.slot",
                 s->where, s->slot);
  else if (strcmp(PQgetvalue(r, 0, 2), "t") == 0)
    rc = OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process (pid %s): "
                       "is another odsync running pipeline %s?", s->where, s->slot, PQgetvalue(r, 0, 3), s->pipeline);
  else {
    od_pg_parse_lsn(PQgetvalue(r, 0, 4), &s->floor);
    od_pg_plugin_use(s, PQgetvalue(r, 0, 0), false);
  }
  PQclear(r);
  return rc;
}

/* source.tables against an existing publication: PostgreSQL drops a table from every publication
 * when the table is dropped, so a table dropped and re-created under its name is silently no
 * longer captured. Each configured table that exists but is not in the publication is added
 * again (ALTER PUBLICATION ... ADD TABLE), with a warning: its rows written before now were not
 * captured. A publication for all tables (or, PostgreSQL 15+, for the table's schema) covers
 * every table. Fails (not retriable) when the table cannot be added. */
int od_pg_watch_publication(pg_source *s, od_error *err) {
  if (!s->ntables || !s->meta) return OD_OK;
  bool v15 = PQserverVersion(s->meta) >= 150000;
  char sql[900];
  snprintf(sql, sizeof sql,
           "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_publication p "
           "WHERE n.nspname = $1 AND c.relname = $2 AND p.pubname = $3 AND NOT p.puballtables "
           "AND NOT EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid) %s",
           v15 ? "AND NOT EXISTS (SELECT 1 FROM pg_publication_namespace pn WHERE pn.pnpubid = p.oid "
                 "AND pn.pnnspid = c.relnamespace)" : "");
  for (int i = 0; i < s->ntables; i++) {
    const od_pg_qname *q = &s->qtables[i];
    const char *p[] = {q->schema, q->name, s->publication};
    PGresult *r = query(s, s->meta, sql, 3, p, err);
    if (!r) return err->code;
    bool missing = PQntuples(r) > 0;
    PQclear(r);
    if (!missing) continue;
    char tq[300], alter[512];
    char *pub = PQescapeIdentifier(s->meta, s->publication, strlen(s->publication));
    int rc = qualified_ident(s->meta, q, tq, sizeof tq);
    snprintf(alter, sizeof alter, "ALTER PUBLICATION %s ADD TABLE %s", pub ? pub : "", tq);
    PQfreemem(pub);
    if (rc) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
    r = query(s, s->meta, alter, 0, NULL, err);
    if (!r && strcmp(err->sqlstate, "42710") == 0) {
      /* "already member of publication": another session added it since the check (a reload's
       * snapshot request and the restarted pipeline both watch the publication). */
      od_debug("%s: table %s.%s was added to publication %s by another session meanwhile", s->where, q->schema,
               q->name, s->publication);
      od_error_clear(err);
      continue;
    }
    if (!r) {
      od_error_prefix(err, "table %s.%s (source.tables) is no longer in publication %s (dropped and re-created?), "
                      "and adding it failed; fix: %s; then copy its rows with odsync snapshot -p %s -t %s.%s: ",
                      q->schema, q->name, s->publication, alter, s->pipeline, q->schema, q->name);
      err->retriable = false;
      return err->code;
    }
    PQclear(r);
    od_warn("%s: table %s.%s (source.tables) was not in publication %s (PostgreSQL removes a dropped table from its "
            "publications; it was re-created or added since): added it again. Its rows written before now were not "
            "captured: copy them with odsync snapshot -p %s -t %s.%s",
            s->where, q->schema, q->name, s->publication, s->pipeline, q->schema, q->name);
  }
  return OD_OK;
}

int od_pg_prepare_publication(pg_source *s, od_error *err) {
  int problems = 0;
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  int n = check_server(s, log_problem, &problems, err);
  if (n < 0) return err->code;
  if (n > 0) return OD_FAIL(err, OD_ESOURCE, "%s: the server is not ready for logical replication (see above)", s->where);
  bool exists = false;
  int rc = publication_exists(s, &exists, err);
  if (rc) return rc;
  n = check_tables(s, log_problem, &problems, exists, err);
  if (n < 0) return err->code;
  if (n > 0) return OD_FAIL(err, OD_ECONFIG, "%s: source.tables names tables that cannot be captured (see above)", s->where);
  n = check_publication_rights(s, log_problem, &problems, exists, err);
  if (n < 0) return err->code;
  if (n > 0) return OD_FAIL(err, OD_ESOURCE, "%s: cannot create publication %s (see above)", s->where, s->publication);
  if (!s->warned_partitions) {
    if ((rc = check_partitions(s, log_problem, &problems, exists, err))) return rc;
    s->warned_partitions = true;
  }
  if (!exists && (rc = create_publication(s, err))) return rc;
  if (exists && (rc = od_pg_watch_publication(s, err))) return rc;
  return OD_OK;
}

int od_pg_prepare_stream(pg_source *s, od_lsn from, od_error *err) {
  int rc = od_pg_prepare_publication(s, err);
  if (rc) return rc;
  if (!(s->repl = od_pg_connect(s, true, err))) return err->code;
  if ((rc = ensure_slot(s, from, err))) return rc;
  if (from && from < s->floor)
    return OD_FAIL(err, OD_EGAP,
                   "%s: the sink holds changes up to " OD_LSN_FMT " but slot %s was already confirmed up to "
                   OD_LSN_FMT ": the changes in between are gone from the slot and missing from the sink "
                   "(was the sink replaced or restored from an old backup?). Recreate the sink from a "
                   "snapshot, or drop the slot to start over.",
                   s->where, OD_LSN_ARGS(from), s->slot, OD_LSN_ARGS(s->floor));
  return OD_OK;
}

int od_pg_check(pg_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  char msg[640];
  if (!(s->meta = od_pg_connect(s, false, err))) {
    problem(ctx, true, err->msg);
    return 1;
  }
  int fatal = check_server(s, problem, ctx, err);
  if (fatal < 0) return -1;
  bool exists = false;
  if (publication_exists(s, &exists, err)) return -1;
  int n = check_tables(s, problem, ctx, exists, err);
  if (n < 0) return -1;
  fatal += n;
  if ((n = check_publication_rights(s, problem, ctx, exists, err)) < 0) return -1;
  fatal += n;
  if (check_partitions(s, problem, ctx, exists, err)) return -1;
  const char *p[] = {s->slot};
  PGresult *r = query(s, s->meta,
                      "SELECT active, active_pid, plugin FROM pg_replication_slots WHERE slot_name = $1",
                      1, p, err);
  if (!r) return -1;
  if (PQntuples(r) && strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
    snprintf(msg, sizeof msg, "%s: replication slot %s is in use by pid %s (another odsync running pipeline %s?)",
             s->where, s->slot, PQgetvalue(r, 0, 1), s->pipeline);
    problem(ctx, false, msg);
  } else if (PQntuples(r) && !od_pg_plugin_known(PQgetvalue(r, 0, 2))) {
    snprintf(msg, sizeof msg, "%s: replication slot %s uses plugin '%s', not pgoutput (or odsync_pgoutput)", s->where, s->slot,
             PQgetvalue(r, 0, 2));
    problem(ctx, true, msg);
    fatal++;
  }
  PQclear(r);
  PGconn *repl = od_pg_connect(s, true, err);
  if (!repl) {
    problem(ctx, true, err->msg);
    fatal++;
  }
  PQfinish(repl);
  return fatal;
}

void od_pg_strings_free(pg_source *s) {
  for (pg_strings *p = s->strings, *next; p; p = next) {
    next = p->next;
    free(p);
  }
  s->strings = NULL;
}

static const char *keep_string(pg_source *s, const char *text) {
  size_t n = strlen(text);
  pg_strings *p = malloc(sizeof *p + n + 1);
  if (!p) return NULL;
  memcpy(p->text, text, n + 1);
  p->next = s->strings;
  s->strings = p;
  return p->text;
}

/* The SQL spelling of each column's type as the Relation message gives it (type OID and typmod:
 * format_type), into col->type_name; "" for a type that no longer exists. */
static int wire_type_names(pg_source *s, od_relation *rel, od_error *err) {
  if (!rel->ncolumns) return OD_OK;
  size_t cap = (size_t)rel->ncolumns * 24 + 8;
  char *oids = malloc(cap), *mods = malloc(cap);
  if (!oids || !mods) {
    free(oids);
    free(mods);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  }
  size_t a = 0, b = 0;
  oids[a++] = '{';
  mods[b++] = '{';
  for (uint16_t c = 0; c < rel->ncolumns; c++) {
    a += (size_t)snprintf(oids + a, cap - a, "%s%u", c ? "," : "", rel->columns[c].type_oid);
    b += (size_t)snprintf(mods + b, cap - b, "%s%d", c ? "," : "", rel->columns[c].typmod);
  }
  snprintf(oids + a, cap - a, "}");
  snprintf(mods + b, cap - b, "}");
  const char *p[] = {oids, mods};
  PGresult *r = query(s, s->meta,
                      "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_type WHERE oid = x.t) THEN format_type(x.t, x.m) END "
                      "FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS x(t, m, i) ORDER BY x.i",
                      2, p, err);
  free(oids);
  free(mods);
  if (!r) return od_error_prefix(err, "reading the column types of %s.%s: ", rel->schema, rel->name);
  for (uint16_t c = 0; c < rel->ncolumns && c < PQntuples(r); c++)
    snprintf(rel->columns[c].type_name, sizeof rel->columns[c].type_name, "%s",
             PQgetisnull(r, c, 0) ? "" : PQgetvalue(r, c, 0));
  PQclear(r);
  return OD_OK;
}

/* Completes a Relation message's columns. The message is the truth for its transaction: names,
 * type OIDs and typmods come from it, and the type's SQL spelling (format_type: "numeric(12,2)",
 * "public.mood") is computed from its type OID and typmod. The catalog is read now and describes
 * the table as it is today, which is later than the WAL being decoded when odsync lags behind the
 * DDL: it may only add what the message lacks — the stable column number (attnum), the value rows
 * that predate an added column hold (attmissingval: ADD COLUMN with a non-volatile default; the
 * text form of the array's only element), and for REPLICA IDENTITY FULL the row identity (the
 * stream flags every column, so the sink's key becomes the primary key from the catalog, or none:
 * rows are then matched on their full old image). Which catalog column each message column is
 * comes from od_pg_align_columns (attnums strictly increasing, dropped columns included), and the
 * missing value and key are taken only when that column still has the message's name and type
 * OID. A table dropped since gets attnum 0 everywhere (matched by name). */
int od_pg_fill_keys(pg_source *s, od_relation *rel, od_error *err) {
  int rc = wire_type_names(s, rel, err);
  if (rc) return rc;
  char oid[16];
  snprintf(oid, sizeof oid, "%u", rel->oid);
  const char *p[] = {oid};
  /* attmissingval exists since PostgreSQL 11 (before, ADD COLUMN ... DEFAULT rewrote the table). */
  bool has_missing = PQserverVersion(s->meta) >= 110000;
  char sql[700];
  snprintf(sql, sizeof sql,
           "SELECT a.attname, a.atttypid, a.attnum, a.attisdropped, "
           "COALESCE(a.attnum = ANY(%s), false), %s, %s "
           "FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
           "WHERE a.attrelid = $1::oid AND a.attnum > 0 ORDER BY a.attnum",
           /* INCLUDE columns of the primary key's index are not part of the key. */
           has_missing ? "(i.indkey::int2[])[0:i.indnkeyatts - 1]" : "i.indkey",
           has_missing ? "a.atthasmissing, CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END"
                       : "false, NULL::text",
           /* generated columns (PostgreSQL 12+) are never sent by the stream */
           PQserverVersion(s->meta) >= 120000 ? "a.attgenerated <> ''" : "false");
  PGresult *r = query(s, s->meta, sql, 1, p, err);
  if (!r) return od_error_prefix(err, "reading the columns of %s.%s: ", rel->schema, rel->name);
  size_t m = (size_t)PQntuples(r);
  pg_att *cat = calloc(m ? m : 1, sizeof *cat);
  int *row = calloc(m ? m : 1, sizeof *row); /* cat[k] is result row row[k] */
  pg_wire_col *wire = calloc(rel->ncolumns ? rel->ncolumns : 1, sizeof *wire);
  int *match = calloc(rel->ncolumns ? rel->ncolumns : 1, sizeof *match);
  if (!cat || !row || !wire || !match) {
    rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory reading the columns of %s.%s", s->where, rel->schema, rel->name);
    goto done;
  }
  size_t ncat = 0;
  for (int i = 0; i < (int)m; i++) {
    if (strcmp(PQgetvalue(r, i, 7), "t") == 0) continue; /* generated */
    row[ncat] = i;
    cat[ncat++] = (pg_att){.name = PQgetvalue(r, i, 0), .type_oid = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10),
                           .attnum = (int16_t)atoi(PQgetvalue(r, i, 2)), .dropped = strcmp(PQgetvalue(r, i, 3), "t") == 0};
  }
  for (uint16_t c = 0; c < rel->ncolumns; c++)
    wire[c] = (pg_wire_col){.name = rel->columns[c].name, .type_oid = rel->columns[c].type_oid};
  if (od_pg_align_columns(wire, rel->ncolumns, cat, ncat, match) != 0) {
    rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory aligning the columns of %s.%s", s->where, rel->schema, rel->name);
    goto done;
  }
  bool full = rel->replica_identity == 'f', any_pk = false;
  for (uint16_t c = 0; c < rel->ncolumns; c++) {
    od_column *col = &rel->columns[c];
    if (full) col->key = false;
    col->attnum = 0;
    col->missing_value = NULL;
    int k = match[c];
    if (k < 0) continue;
    col->attnum = cat[k].attnum;
    bool same = !cat[k].dropped && cat[k].type_oid == col->type_oid && strcmp(cat[k].name, col->name) == 0;
    if (!same) continue;
    int i = row[k];
    if (full && strcmp(PQgetvalue(r, i, 4), "t") == 0) col->key = any_pk = true;
    if (strcmp(PQgetvalue(r, i, 5), "t") == 0 && !PQgetisnull(r, i, 6) &&
        !(col->missing_value = keep_string(s, PQgetvalue(r, i, 6)))) {
      rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory reading the columns of %s.%s", s->where, rel->schema, rel->name);
      goto done;
    }
  }
  if (full) rel->has_primary_key = any_pk;
  od_pg_set_identity(rel);
done:
  free(cat);
  free(row);
  free(wire);
  free(match);
  PQclear(r);
  return rc;
}
