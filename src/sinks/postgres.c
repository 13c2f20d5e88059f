/* sinks/postgres.c — the PostgreSQL sink (type "postgres"): replicate into another PostgreSQL.
 *
 * Owns: the config of the sink (dsn, schema, table_map, checkpoint_table), the one libpq
 * connection to the target (synchronous_commit=on, reopened by begin() after it was lost), the
 * sink transaction (BEGIN ... COMMIT, sent pipelined with the data), the checkpoint row of this
 * pipeline written in the same transaction as the data (plus the snapshot's marks, rows keyed
 * "<pipeline>/..." whose value is a position or, in column position_text, a text), creating the
 * table _odsync_columns next to it (its rows: postgres_schema.c),
 * and the error classification
 * (retriable or not) of everything the server answers.
 * Tables and statement SQL live in postgres_table.c; sending changes in postgres_apply.c.
 * Never touches: the source, acknowledgements, retries, process exit. The DSN is a secret: it is
 * never logged or put in a message (the server is named host:port/dbname).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_dsn.h"
#include "common/pq_keepalive.h"
#include "core/log.h"
#include "sinks/postgres_internal.h"
#include "sinks/postgres_mesh.h"

extern const od_sink_ops od_sink_postgres;

/* ---- errors -------------------------------------------------------------------------------- */

/* SQLSTATEs after which the same work may succeed later. */
static bool retriable_state(const char *st) {
  if (!st || strlen(st) != 5) return false;
  return strncmp(st, "08", 2) == 0 ||     /* connection exception */
         strcmp(st, "40001") == 0 ||      /* serialization_failure */
         strcmp(st, "40P01") == 0 ||      /* deadlock_detected */
         strcmp(st, "55P03") == 0 ||      /* lock_not_available (lock_timeout) */
         strcmp(st, "57014") == 0 ||      /* query_canceled (statement_timeout) */
         strncmp(st, "57P", 3) == 0 ||    /* admin/crash shutdown, cannot_connect_now */
         strncmp(st, "53", 2) == 0 ||     /* insufficient resources: disk full, out of memory */
         strcmp(st, "58030") == 0;        /* io_error */
}

int pgs_fail(pgs_sink *s, const char *table, const char *what, const PGresult *res, od_error *err) {
  char msg[320];
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (primary) {
    snprintf(msg, sizeof msg, "%s%s%s%s", primary, state ? " (SQLSTATE " : "", state ? state : "",
             state ? ")" : "");
  } else {
    const char *m = s->conn ? PQerrorMessage(s->conn) : "";
    if (!m || !*m) m = res ? PQresultErrorMessage(res) : "";
    if (!m || !*m) m = "no connection to the server";
    snprintf(msg, sizeof msg, "%s", m);
  }
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
  bool lost = !s->conn || PQstatus(s->conn) != CONNECTION_OK;
  bool retry = lost || retriable_state(state);
  int code = lost ? OD_ECONNECT : OD_ESINK;
  if (table)
    od_error_set(err, code, retry, __FILE__, __LINE__, "postgres sink %s: table %s: %s: %s", s->where, table, what,
                 msg);
  else
    od_error_set(err, code, retry, __FILE__, __LINE__, "postgres sink %s: %s: %s", s->where, what, msg);
  /* The cause, for the core's classification (core/error_class.h); none once the connection is lost. */
  if (err && state && !lost && strlen(state) == 5) memcpy(err->sqlstate, state, 6);
  return code;
}

PGresult *pgs_exec(pgs_sink *s, const char *table, const char *what, const char *sql, int n,
                   const char *const *params, od_error *err) {
  if (!s->conn) {
    pgs_fail(s, table, what, NULL, err);
    return NULL;
  }
  /* A COPY in progress (postgres_load.c) ends, its result read, before any other statement. */
  if (s->copy_rel && pgs_load_end(s, err)) return NULL;
  PGresult *r = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
  s->stats.round_trips++;
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  pgs_fail(s, table, what, r, err);
  PQclear(r);
  return NULL;
}

int pgs_ensure_begin(pgs_sink *s, od_error *err) {
  if (s->begin_sent) return OD_OK;
  PGresult *r = pgs_exec(s, NULL, "BEGIN", "BEGIN", 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  s->begin_sent = true;
  return OD_OK;
}

/* ---- connection ---------------------------------------------------------------------------- */

static void disconnect(pgs_sink *s) {
  s->copy_rel = NULL; /* a COPY in progress dies with the session */
  s->copy_len = 0;
  if (s->conn) PQfinish(s->conn);
  s->conn = NULL;
  s->begin_sent = false;
  s->ck_prepared = false;
  pgs_durable_reset(s);
  /* Prepared statements die with the session. */
  pgs_rels_drop(s, false);
}

static int connect_target(pgs_sink *s, od_error *err) {
  char app[96];
  snprintf(app, sizeof app, "odsync_%s_sink", s->pipeline);
  const char *keys[] = {"connect_timeout", "fallback_application_name", OD_PQ_KEEPALIVE_KEYS, "dbname", NULL};
  const char *vals[] = {"10", app, OD_PQ_KEEPALIVE_VALS, s->dsn, NULL};
  s->conn = PQconnectdbParams(keys, vals, 1);
  if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
    int rc = pgs_fail(s, NULL, "cannot connect", NULL, err);
    err->retriable = true;
    disconnect(s);
    return rc;
  }
  /* Durable commits (the checkpoint rides on them), or with synchronous_commit: off commits whose
   * durability is learned later (postgres_durable.c); input parsing independent of server
   * defaults; the source sends UTF-8 text. */
  char set[256];
  snprintf(set, sizeof set,
           "SET synchronous_commit = %s; SET client_encoding = 'UTF8'; SET datestyle = 'ISO, MDY'; "
           "SET intervalstyle = 'postgres'; SET standard_conforming_strings = on; SET client_min_messages = warning",
           s->async_commit ? "off" : "on");
  PGresult *r = PQexec(s->conn, set);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = pgs_fail(s, NULL, "setting session parameters", r, err);
    PQclear(r);
    disconnect(s);
    return rc;
  }
  PQclear(r);
  /* A lock held elsewhere on the target (a user's long transaction, a DDL) must not hang the
   * pipeline forever: lock_not_available is retriable, so the session restarts and retries. */
  char sql[64];
  snprintf(sql, sizeof sql, "SET lock_timeout = %ld", s->lock_timeout_ms);
  r = PQexec(s->conn, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = pgs_fail(s, NULL, "setting lock_timeout", r, err);
    PQclear(r);
    disconnect(s);
    return rc;
  }
  PQclear(r);
  /* A mesh sink marks what it applies with the source node's replication origin. */
  int mrc = s->mesh ? pgs_mesh_session(s, err) : OD_OK;
  if (mrc) {
    disconnect(s);
    return mrc;
  }
  return OD_OK;
}

/* A checkpoint table created before text marks existed lacks position_text: add it (NULL in every
 * existing row, so checkpoints and integer marks read as before). Looked up first, so the ALTER
 * (and its ACCESS EXCLUSIVE lock, which would queue behind other pipelines' open checkpoint
 * writes) runs only once; IF NOT EXISTS covers two sessions migrating at the same moment. */
static int add_text_column(pgs_sink *s, od_error *err) {
  const char *p[] = {s->ck_q};
  PGresult *r = pgs_exec(s, s->ck_q, "looking up column position_text",
                         "SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'position_text' "
                         "AND NOT attisdropped", 1, p, err);
  if (!r) return err->code;
  int n = PQntuples(r);
  PQclear(r);
  if (n) return OD_OK;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " ADD COLUMN IF NOT EXISTS position_text text");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (!(r = pgs_exec(s, s->ck_q, "adding column position_text", b->p, 0, NULL, err))) return err->code;
  PQclear(r);
  od_info("postgres sink %s: table %s: added column position_text (text marks)", s->where, s->ck_q);
  return OD_OK;
}

/* CREATE SCHEMA/TABLE IF NOT EXISTS for the checkpoint and _odsync_columns (postgres_schema.c),
 * serialized with other odsync sessions. */
static int create_checkpoint_table(pgs_sink *s, const char *schema_q, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "BEGIN; SELECT pg_advisory_xact_lock(7180055063212440403); CREATE SCHEMA IF NOT EXISTS ");
  od_sqlbuf_add(b, schema_q);
  od_sqlbuf_add(b, "; CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " (pipeline text PRIMARY KEY, position pg_lsn NOT NULL, updated_at timestamptz NOT NULL, "
                 "position_text text); CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, s->cols_q);
  od_sqlbuf_add(b, " (tbl_schema text NOT NULL, tbl_name text NOT NULL, name text NOT NULL, attnum int NOT NULL, "
                 "type_oid bigint NOT NULL, typmod int NOT NULL, type_name text NOT NULL, version bigint NOT NULL, "
                 "PRIMARY KEY (tbl_schema, tbl_name, name)); COMMIT");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *r = PQexec(s->conn, b->p);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = pgs_fail(s, s->ck_q, "creating the checkpoint table and _odsync_columns", r, err);
    PQclear(r);
    PQclear(PQexec(s->conn, "ROLLBACK"));
    return rc;
  }
  PQclear(r);
  return add_text_column(s, err);
}

/* ---- open / close -------------------------------------------------------------------------- */

static void pgs_close(od_sink *base) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s) return;
  /* A session that committed says how many round trips each commit took (the head's latency). */
  od_log(s->stats.commits ? OD_LOG_INFO : OD_LOG_DEBUG,
         "postgres sink %s: %llu inserted, %llu updated, %llu deleted, %llu truncates, %llu missing "
         "updates skipped, %llu deletes of missing rows, %llu statements prepared, %llu new rows by COPY, "
         "%llu round trips over "
         "%llu commits (%.2f per commit)",
         s->where, (unsigned long long)s->stats.inserted, (unsigned long long)s->stats.updated,
         (unsigned long long)s->stats.deleted, (unsigned long long)s->stats.truncated,
         (unsigned long long)s->stats.missing_skipped, (unsigned long long)s->stats.delete_missing,
         (unsigned long long)s->stats.prepared, (unsigned long long)s->stats.copied,
         (unsigned long long)s->stats.round_trips,
         (unsigned long long)s->stats.commits,
         s->stats.commits ? (double)s->stats.round_trips / (double)s->stats.commits : 0.0);
  disconnect(s);
  od_sqlbuf_free(&s->sql);
  for (int i = 0; i < s->nmap; i++) {
    free(s->map_from[i]);
    free(s->map_to[i]);
  }
  free(s->map_from);
  free(s->map_to);
  free(s->cmds);
  free(s->copy_buf);
  free(s->pvals);
  free(s->plens);
  free(s->ck_q);
  free(s->cols_q);
  free(s->own_q);
  free(s->schema);
  free(s->dsn);
  free(s->pipeline);
  pgs_mesh_free(s);
  free(s);
}


/* table_map entries "src_schema.src_table=dst_schema.dst_table" (the destination schema may be
 * left out: then `schema`, else the source's schema, applies). */
static int parse_table_map(pgs_sink *s, const od_config_section *cfg, od_error *err) {
  char *const *list = NULL;
  int n = 0;
  int rc = od_config_list(cfg, "table_map", &list, &n, err);
  if (rc || n == 0) return rc;
  s->map_from = calloc((size_t)n, sizeof *s->map_from);
  s->map_to = calloc((size_t)n, sizeof *s->map_to);
  if (!s->map_from || !s->map_to) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  for (int i = 0; i < n; i++) {
    const char *item = list[i], *eq = strchr(item, '=');
    const char *dot = strchr(item, '.');
    if (!eq || !dot || dot > eq || dot == item || dot + 1 == eq || !eq[1] || strchr(eq + 1, '=') ||
        eq[1] == '.' || item[strlen(item) - 1] == '.')
      return od_config_fail_key(cfg, "table_map", err,
                                ".table_map[%d] '%s' must read src_schema.src_table=dst_schema.dst_table (or =dst_table)",
                                i, item);
    s->map_from[i] = strndup(item, (size_t)(eq - item));
    s->map_to[i] = strdup(eq + 1);
    s->nmap = i + 1;
    if (!s->map_from[i] || !s->map_to[i]) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  }
  return OD_OK;
}

/* maintenance_work_mem: digits and a unit PostgreSQL knows (it is put into SET as a literal). */
static int check_memory(const od_config_section *cfg, const char *v, od_error *err) {
  size_t d = strspn(v, "0123456789");
  const char *unit = v + d;
  if (d > 0 && d < 12 && (!strcmp(unit, "kB") || !strcmp(unit, "MB") || !strcmp(unit, "GB") || !strcmp(unit, "TB")))
    return OD_OK;
  return od_config_fail_key(cfg, "maintenance_work_mem", err,
                            ".maintenance_work_mem '%s' must be a size such as 512MB or 2GB (units kB, MB, GB, TB)", v);
}

static int pgs_open(const od_config_section *cfg, const char *pipeline, od_sink **out, od_error *err) {
  static const char *const keys[] = {"dsn", "schema", "table_map", "checkpoint_table", "bulk", "copy_min_rows", "lock_timeout_ms",
                                     "synchronous_commit",
                                     "maintenance_work_mem", "mesh_node", "mesh_peer", "mesh_policy",
                                     "mesh_priority", "mesh_tables", "mesh_counters",
                                     "mesh_rules", "mesh_fallback", "mesh_table_policies", "mesh_join_from",
                                     "mesh_nodes", "mesh_gc_interval_s", "mesh_session", NULL};
  const char *dsn = NULL, *schema = NULL, *ck = NULL, *mwm = NULL;
  int rc = od_config_check_keys(cfg, keys, err);
  if (rc == OD_OK) rc = od_config_require_string(cfg, "dsn", &dsn, err);
  if (rc == OD_OK) rc = od_config_string(cfg, "schema", NULL, &schema, err);
  if (rc == OD_OK) rc = od_config_string(cfg, "checkpoint_table", "public._odsync_checkpoint", &ck, err);
  bool bulk = true;
  long lock_timeout_ms = 30000, copy_min_rows = 512;
  if (rc == OD_OK) rc = od_config_bool(cfg, "bulk", true, &bulk, err);
  if (rc == OD_OK) rc = od_config_int(cfg, "copy_min_rows", 512, 0, 1000000, &copy_min_rows, err);
  if (rc == OD_OK) rc = od_config_int(cfg, "lock_timeout_ms", 30000, 0, 3600000, &lock_timeout_ms, err);
  if (rc == OD_OK) rc = od_config_string(cfg, "maintenance_work_mem", "512MB", &mwm, err);
  if (rc == OD_OK) rc = check_memory(cfg, mwm, err);
  bool sync_commit = true;
  if (rc == OD_OK) rc = od_config_bool(cfg, "synchronous_commit", true, &sync_commit, err);
  if (rc == OD_OK && !sync_commit && od_config_find(cfg, "mesh_node"))
    rc = od_config_fail_key(cfg, "synchronous_commit", err,
                            ".synchronous_commit: off is not for a mesh sink (mesh_node is set): a mesh sink's "
                            "commits must be durable when they return");
  if (rc) return rc;
  if (schema && !*schema) schema = NULL;

  pgs_sink *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  s->base.ops = &od_sink_postgres;
  s->bulk_on = bulk;
  s->async_commit = !sync_commit;
  s->copy_min_rows = (uint32_t)copy_min_rows;
  s->lock_timeout_ms = lock_timeout_ms;
  snprintf(s->maintenance_work_mem, sizeof s->maintenance_work_mem, "%s", mwm);
  s->dsn = strdup(dsn);
  s->pipeline = strdup(pipeline ? pipeline : "");
  s->schema = schema ? strdup(schema) : NULL;
  if (!s->dsn || !s->pipeline || (schema && !s->schema)) {
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    goto fail;
  }
  if ((rc = od_pg_dsn_describe(cfg, s->dsn, s->where, sizeof s->where, err)) || (rc = parse_table_map(s, cfg, err))) goto fail;

  /* The checkpoint table name, quoted, and its schema. */
  od_sqlbuf *b = &s->sql;
  const char *dot = strchr(ck, '.');
  if (!*ck || (dot && (dot == ck || !dot[1]))) {
    rc = od_config_fail_key(cfg, "checkpoint_table", err, ".checkpoint_table '%s' must read schema.table or table", ck);
    goto fail;
  }
  pgs_qualify(b, ck, "public");
  s->ck_q = b->oom ? NULL : strdup(b->p);
  od_sqlbuf_reset(b);
  if (dot) {
    char *sch = strndup(ck, (size_t)(dot - ck));
    if (sch) od_sqlbuf_ident(b, sch);
    free(sch);
  } else {
    od_sqlbuf_ident(b, "public");
  }
  char *schema_q = b->oom ? NULL : strdup(b->p);
  od_sqlbuf_add(b, ".");
  od_sqlbuf_ident(b, "_odsync_columns");
  s->cols_q = b->oom ? NULL : strdup(b->p);
  if (!s->ck_q || !schema_q || !s->cols_q) {
    free(schema_q);
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    goto fail;
  }
  rc = pgs_mesh_config(s, cfg, schema_q, err);
  if (rc == OD_OK) rc = connect_target(s, err);
  if (rc == OD_OK) rc = create_checkpoint_table(s, schema_q, err);
  if (rc == OD_OK) rc = pgs_owner_open(s, schema_q, err);
  free(schema_q);
  if (rc) goto fail;
  *out = &s->base;
  return OD_OK;
fail:
  pgs_close(&s->base);
  return rc;
}

/* ---- transactions and the checkpoint ------------------------------------------------------- */

/* The checkpoint row holds the position's text form in position_text ("pg:0/16B3748"); a row of an
 * earlier version holds only an LSN in position, read as od_pos_legacy_lsn. */
static int read_checkpoint(pgs_sink *s, od_pos *out, od_error *err) {
  *out = od_pos_none();
  if (!s->conn && connect_target(s, err)) return err->code;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT (position - '0/0'::pg_lsn)::text, position_text FROM ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " WHERE pipeline = $1");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *p[] = {s->pipeline};
  PGresult *r = pgs_exec(s, s->ck_q, "reading the position", b->p, 1, p, err);
  if (!r) return err->code;
  if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 1)) {
    int rc = od_pos_from_text(PQgetvalue(r, 0, 1), out, err);
    if (rc) od_error_prefix(err, "postgres sink %s: table %s: pipeline %s: ", s->where, s->ck_q, s->pipeline);
    PQclear(r);
    return rc;
  }
  if (PQntuples(r) > 0) {
    char *end = NULL;
    unsigned long long v = strtoull(PQgetvalue(r, 0, 0), &end, 10);
    if (!end || *end) {
      int rc = OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s: pipeline %s has an unreadable position '%s'",
                       s->where, s->ck_q, s->pipeline, PQgetvalue(r, 0, 0));
      PQclear(r);
      return rc;
    }
    *out = od_pos_legacy_lsn((uint64_t)v);
  }
  PQclear(r);
  return OD_OK;
}

/* What it reads must be durable, since the pipeline acknowledges the source up to it: with
 * synchronous_commit: off, a flush after the read covers the commit that wrote it (visible to the
 * read, so before the flush) — also one of a session that died and whose server still commits. */
static int pgs_read_position(od_sink *base, od_pos *out, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  int rc = read_checkpoint(s, out, err);
  if (rc == OD_OK && !s->in_txn) rc = pgs_durable_flush(s, err);
  return rc;
}

static int pgs_begin(od_sink *base, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: begin inside an open transaction", s->where);
  if (pgs_mesh_checks_only(s))
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh_session: false only checks a mesh sink; it writes nothing "
                   "(remove the key to run the pipeline)", s->where);
  if (!s->conn) {
    int rc = connect_target(s, err);
    if (rc) return rc;
  }
  /* BEGIN goes out with the first batch (or the commit): no round trip of its own. */
  s->in_txn = true;
  s->begin_sent = false;
  s->txn_seq++;
  pgs_mesh_reset(s);
  return OD_OK;
}

/* Commit the open transaction; with a position, the checkpoint row is written in it. */
int pgs_commit_with(pgs_sink *s, const od_pos *position, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: commit without begin", s->where);
  if (!s->conn) return pgs_fail(s, NULL, "COMMIT", NULL, err);
  int mrc = pgs_mesh_flush(s, err); /* a mesh sink's held-back changes go first */
  if (mrc) return mrc;              /* the caller rolls back */
  int lrc = pgs_load_end(s, err);
  if (lrc) return lrc; /* the caller rolls back */
  char lsn[32], text[OD_POS_TEXT_MAX];
  uint64_t n = position ? od_pos_to_u64(position) : 0;
  snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(n >> 32), (unsigned)n);
  if (position) od_pos_to_text(position, text, sizeof text);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " (pipeline, position, updated_at, position_text) VALUES ($1, $2::pg_lsn, now(), $3) "
                 "ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at, "
                 "position_text = excluded.position_text");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  /* The upsert is prepared once per session (one round trip, at its first commit): parsing and
   * planning it at every commit cost the server 20-40 µs (docs/BENCHMARKS.md). A failed prepare
   * (an aborted transaction, whose commit fails anyway) leaves the text form, tried again later. */
  if (position && !s->ck_prepared && PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF) {
    PGresult *pr = PQprepare(s->conn, "odsync_ck", b->p, 3, NULL);
    s->ck_prepared = PQresultStatus(pr) == PGRES_COMMAND_OK;
    PQclear(pr);
    s->stats.round_trips++;
    if (s->ck_prepared) s->stats.prepared++;
  }
  /* BEGIN (if no data went out), the checkpoint and COMMIT in one round trip. */
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, NULL, "entering pipeline mode", NULL, err);
  const char *p[] = {s->pipeline, lsn, text};
  bool ok = true;
  if (!s->begin_sent) {
    ok = pgs_cmd_push(s, PGS_CMD_OTHER, NULL, "BEGIN", -1) &&
         PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    s->begin_sent = true;
  }
  /* Changes still buffered for set-based apply (postgres_bulk.c) go first. */
  int brc = ok ? pgs_bulk_flush_all(s, err) : OD_OK;
  if (brc) {
    od_error ignored;
    pgs_pipeline_finish(s, NULL, &ignored);
    return brc; /* the caller rolls back */
  }
  /* No position: a helper writer of a parallel apply commits data only; the carrier writes the
   * checkpoint after every helper committed. */
  if (position)
    ok = ok && pgs_cmd_push(s, PGS_CMD_OTHER, NULL, "writing the checkpoint", -1) &&
         (s->ck_prepared ? PQsendQueryPrepared(s->conn, "odsync_ck", 3, p, NULL, NULL, 0)
                         : PQsendQueryParams(s->conn, b->p, 3, NULL, p, NULL, NULL, 0));
  if (s->commit_async)
    ok = ok && pgs_cmd_push(s, PGS_CMD_OTHER, NULL, "SET LOCAL synchronous_commit", -1) &&
         PQsendQueryParams(s->conn, "SET LOCAL synchronous_commit = off", 0, NULL, NULL, NULL, NULL, 0);
  ok = ok && pgs_cmd_push(s, PGS_CMD_COMMIT, NULL, "COMMIT", -1) &&
       PQsendQueryParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
  if (ok && position && s->async_commit && (brc = pgs_durable_send(s, err))) {
    od_error ignored;
    pgs_pipeline_finish(s, NULL, &ignored);
    return brc;
  }
  const char *then_sql = s->then_sql;
  s->commit_async = false;
  s->then_sql = NULL;
  if (then_sql)
    ok = ok && pgs_cmd_push(s, PGS_CMD_OTHER, NULL, "BEGIN", -1) &&
         PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
         pgs_cmd_push(s, PGS_CMD_OTHER, NULL, "starting the next transaction", -1) &&
         PQsendQueryParams(s->conn, then_sql, 0, NULL, NULL, NULL, NULL, 0);
  int rc = pgs_pipeline_finish(s, NULL, err);
  if (rc == OD_OK && !ok) rc = pgs_fail(s, NULL, "sending COMMIT", NULL, err);
  if (rc) return rc; /* the caller rolls back */
  s->stats.commits++;
  if (position) pgs_durable_committed(s, position);
  pgs_mesh_committed(s);
  s->in_txn = then_sql != NULL;
  s->begin_sent = then_sql != NULL;
  return OD_OK;
}

static int pgs_commit(od_sink *base, const od_pos *position, od_error *err) {
  return pgs_commit_with((pgs_sink *)base, position, err);
}

static int pgs_commit_data(od_sink *base, od_error *err) { return pgs_commit_with((pgs_sink *)base, NULL, err); }

static void pgs_rollback(od_sink *base) {
  pgs_sink *s = (pgs_sink *)base;
  pgs_load_abort(s);
  /* Tables created or altered in this transaction are gone again: forget their states. */
  pgs_bulk_discard_all(s);
  pgs_mesh_reset(s);
  if (s->in_txn) pgs_rels_drop(s, true);
  s->in_txn = false;
  if (!s->conn) return;
  bool usable = PQstatus(s->conn) == CONNECTION_OK && PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF &&
                PQtransactionStatus(s->conn) != PQTRANS_ACTIVE;
  if (usable && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
    PGresult *r = PQexec(s->conn, "ROLLBACK");
    usable = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  if (!usable) {
    od_warn("postgres sink %s: connection not reusable after a failed transaction; reconnecting", s->where);
    disconnect(s);
  }
  s->begin_sent = false;
}

/* ---- marks (snapshot progress): rows of the checkpoint table keyed "<pipeline>/..." ---------- */

/* Upsert (text NULL: an integer mark, stored as a pg_lsn) or remove (value 0 and no text) a mark
 * inside the open transaction. */
static int mark_write(pgs_sink *s, const char *key, uint64_t value, const char *text, od_error *err) {
  int rc = pgs_ensure_begin(s, err);
  if (rc) return rc;
  char lsn[32];
  snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(value >> 32), (unsigned)value);
  bool remove = !value && !text;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  if (!remove) {
    od_sqlbuf_add(b, "INSERT INTO ");
    od_sqlbuf_add(b, s->ck_q);
    od_sqlbuf_add(b, " (pipeline, position, updated_at, position_text) VALUES ($1, $2::pg_lsn, now(), $3) "
                   "ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, "
                   "updated_at = excluded.updated_at, position_text = excluded.position_text");
  } else {
    od_sqlbuf_add(b, "DELETE FROM ");
    od_sqlbuf_add(b, s->ck_q);
    od_sqlbuf_add(b, " WHERE pipeline = $1");
  }
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *p[] = {key, lsn, text};
  PGresult *r = pgs_exec(s, s->ck_q, "writing a mark", b->p, remove ? 1 : 3, p, err);
  if (!r) return err->code;
  PQclear(r);
  return OD_OK;
}

static int pgs_set_mark(od_sink *base, const char *key, uint64_t value, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: set_mark outside a transaction", s->where);
  return mark_write(s, key, value, NULL, err);
}

static int pgs_set_text_mark(od_sink *base, const char *key, const char *text, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: set_text_mark outside a transaction", s->where);
  return mark_write(s, key, 0, text, err);
}

/* The mark's row: column 0 its position as a decimal, column 1 its text (NULL: an integer mark). */
static PGresult *mark_read(pgs_sink *s, const char *key, od_error *err) {
  if (!s->conn && connect_target(s, err)) return NULL;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "SELECT (position - '0/0'::pg_lsn)::text, position_text FROM ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " WHERE pipeline = $1");
  if (b->oom) {
    OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    return NULL;
  }
  const char *p[] = {key};
  return pgs_exec(s, s->ck_q, "reading a mark", b->p, 1, p, err);
}

static int pgs_get_mark(od_sink *base, const char *key, uint64_t *out, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  PGresult *r = mark_read(s, key, err);
  if (!r) return err->code;
  *out = PQntuples(r) > 0 && PQgetisnull(r, 0, 1) ? (uint64_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
  PQclear(r);
  return OD_OK;
}

static int pgs_get_text_mark(od_sink *base, const char *key, char **out, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  *out = NULL;
  PGresult *r = mark_read(s, key, err);
  if (!r) return err->code;
  int rc = OD_OK;
  if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 1) && !(*out = strdup(PQgetvalue(r, 0, 1))))
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PQclear(r);
  return rc;
}

const od_sink_ops od_sink_postgres = {
    .type = "postgres",
    .caps = OD_SINK_ATOMIC_CHECKPOINT | OD_SINK_MARKS | OD_SINK_TEXT_MARKS | OD_SINK_BULK_LOAD | OD_SINK_TABLE_OWNERSHIP |
            OD_SINK_DEAD_LETTERS | OD_SINK_DEFERRED_DURABILITY,
    .max_writers = 16, /* one connection each; keyed changes are idempotent upserts */
    .open = pgs_open,
    .read_position = pgs_read_position,
    .begin = pgs_begin,
    .apply = pgs_apply,
    .commit = pgs_commit,
    .commit_data = pgs_commit_data,
    .rollback = pgs_rollback,
    .savepoint = pgs_savepoint,
    .put_dead_letter = pgs_put_dead_letter,
    .list_dead_letters = pgs_list_dead_letters,
    .drop_dead_letter = pgs_drop_dead_letter,
    .close = pgs_close,
    .set_mark = pgs_set_mark,
    .get_mark = pgs_get_mark,
    .set_text_mark = pgs_set_text_mark,
    .get_text_mark = pgs_get_text_mark,
    .load_prepare = pgs_load_prepare,
    .load = pgs_load,
    .load_finish = pgs_load_finish,
    .check_tables = pgs_check_tables,
    .resnapshot_table = pgs_resnapshot_table,
    .durable = pgs_durable,
};
