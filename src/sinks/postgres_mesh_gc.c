/* sinks/postgres_mesh_gc.c — the mesh's periodic clean-up on one node (docs/MULTI_MASTER.md,
 * "Tombstone clean-up" and "Pruning _odsync_hlc").
 *
 * Owns: one thread per mesh sink with its own connection to the sink's node. Every interval_s it
 * takes a transaction-level advisory lock (so only one clean-up runs on a node at a time, whichever
 * of the node's mesh sinks gets there first; the others skip that round) and, in short transactions
 * of at most GC_BATCH rows each:
 *   - deletes the tombstones every peer has covered: for every other node P, P is the tombstone's
 *     author or this node's persisted per-peer maximum (_odsync_peer_vv, written with the
 *     checkpoint) says P had applied the author's transactions up to the tombstone's commit time;
 *     with them, the _odsync_versions rows of those keys when the key has no live row;
 *   - deletes the _odsync_hlc rows no commit can need any more: dominated rows (an earlier-committed
 *     row with a clock at least as high exists) and rows whose clock every peer's vector entry for
 *     this node has passed; when the node's clock has passed a row the peers have not, it writes a
 *     heartbeat (an empty local transaction with one "odsync.gc" logical message) so that the peers'
 *     entries for it move even if it writes nothing itself.
 *   Rows locked by a sink are skipped (SKIP LOCKED): the clean-up never waits for the apply, and the
 *   apply waits at most one short batch for it.
 * Never touches: the data tables (read only, to see whether a key still has a row), the checkpoint,
 * the replication origins (read only: which nodes ever applied here),
 * the sinks' transactions or connections, _odsync_peer_vv (read only).
 * Pointer ownership: pgs_mesh_gc owns copies of every string of its conf, its PGconn and its
 * thread; metrics are the global registry's.
 */
#include "sinks/postgres_mesh_gc.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pq_keepalive.h"
#include "common/sqlbuf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"

#define GC_BATCH 2000            /* rows per clean-up transaction */
#define GC_RUN_BUDGET_US 500000  /* a run stops after this long; the rest waits one second */
#define GC_LOCK_KEY "7308604877413548099" /* pg_try_advisory_xact_lock(bigint): "odsyncgc" (int8 key space) */

struct pgs_mesh_gc {
  char *dsn, *where, *pipeline, *node;
  char *peers_arr;   /* text-array literal of the mesh's nodes */
  char *tomb_sql;    /* the tombstone batch statement */
  char *hlc_sql;     /* the clock-table batch statement */
  char *pend_sql;    /* pending tombstones, and the peers holding them back */
  char *ul_sql;      /* the unique-left batch statement */
  char waiting[512]; /* the last run's "peer (count), ..." of those peers */
  char *tomb_q, *ver_q, *hlc_q, *pvv_q, *ul_q; /* copies of the sink's quoted names */
  int interval_s;
  PGconn *conn;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop, started;
  od_metric *m_removed, *m_pending, *m_hlc_removed, *m_ver_removed;
};

static void arr_add(od_sqlbuf *b, const char *v) {
  od_sqlbuf_add(b, b->len > 1 ? ",\"" : "\"");
  for (const char *c = v; *c; c++) {
    if (*c == '"' || *c == '\\') od_sqlbuf_add(b, "\\");
    od_sqlbuf_addn(b, c, 1);
  }
  od_sqlbuf_add(b, "\"");
}

/* The peers to wait for: the mesh's nodes and every node whose sink ever applied here (its
 * replication origin odsync_<node>), except this node and the nodes `odsync mesh remove` marked
 * removed here (public._odsync_removed, created by the sink's session: everything they wrote was
 * applied here before the mark). A node that left the mesh otherwise keeps its origin and so holds
 * every tombstone until its origin is dropped (docs). $1: this node, $2: the nodes. */
#define PEERS_CTE "peers AS (SELECT DISTINCT p FROM (SELECT unnest($2::text[]) AS p UNION SELECT substr(roname, 8) " \
                  "FROM pg_catalog.pg_replication_origin WHERE roname LIKE 'odsync\\_%') q WHERE p <> $1 AND NOT " \
                  "EXISTS (SELECT 1 FROM public._odsync_removed rm WHERE rm.node = q.p))"

/* The live-row test of (v.tbl, v.key) for every mesh table: key text -> key columns, cast to their
 * types, the same text the tombstone trigger writes (to_jsonb(row) ->> column, joined by chr(31) in
 * attnum order). Built from the catalog at each run (tables may be created after the sink). */
static int live_test(pgs_mesh_gc *g, const pgs_mesh_gc_conf *c, od_sqlbuf *out, od_error *err) {
  od_sqlbuf_add(out, "false");
  for (int i = 0; i < c->ntables; i++) {
    const char *p[] = {c->tables[i]};
    PGresult *r = PQexecParams(g->conn,
                               "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), "
                               "to_regclass($1)::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON "
                               "a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = "
                               "to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      int rc = OD_FAIL_RETRY(err, OD_ESINK, "mesh clean-up on %s: reading the key of %s: %s", g->where, c->tables[i],
                             PQerrorMessage(g->conn));
      PQclear(r);
      return rc;
    }
    if (PQntuples(r) > 0) {
      /* the tombstone's tbl is TG_TABLE_SCHEMA.TG_TABLE_NAME: the table's name as given, schema-qualified */
      const char *t = c->tables[i];
      char full[300];
      snprintf(full, sizeof full, "%s%s", strchr(t, '.') ? "" : "public.", t);
      char *lit = PQescapeLiteral(g->conn, full, strlen(full));
      od_sqlbuf_add(out, " OR (v.tbl = ");
      od_sqlbuf_add(out, lit ? lit : "''");
      PQfreemem(lit);
      od_sqlbuf_add(out, " AND EXISTS (SELECT 1 FROM ");
      od_sqlbuf_add(out, PQgetvalue(r, 0, 2));
      od_sqlbuf_add(out, " x WHERE ");
      for (int k = 0; k < PQntuples(r); k++)
        od_sqlbuf_addf(out, "%sx.%s = split_part(v.key, chr(31), %d)::%s", k ? " AND " : "", PQgetvalue(r, k, 0),
                       k + 1, PQgetvalue(r, k, 1));
      od_sqlbuf_add(out, "))");
    }
    PQclear(r);
  }
  return OD_OK;
}

static bool build_sql(pgs_mesh_gc *g, const pgs_mesh_gc_conf *c, const char *live) {
  od_sqlbuf b = {0};
  /* A tombstone's version exactly as the versions query reads it (postgres_mesh_decide.c): the
   * side table's when the deleting transaction carries a replication origin, else this node's delete
   * at its commit time; no commit time (frozen, truncated): unknown, which every remote write is
   * judged to have seen — the same verdict as without the tombstone. */
  od_sqlbuf from = {0}; /* "<tombstones> t ... a": each tombstone with its version (a.author, a.ts) */
  od_sqlbuf_add(&from, c->tomb_q);
  od_sqlbuf_add(&from, " t CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) c LEFT JOIN "
                       "pg_catalog.pg_replication_origin o ON o.roident = c.roident LEFT JOIN ");
  od_sqlbuf_add(&from, c->ver_q);
  od_sqlbuf_add(&from, " v ON v.tbl = t.tbl AND v.key = t.key CROSS JOIN LATERAL (SELECT CASE WHEN c.roident <> 0 AND "
                       "v.key IS NOT NULL THEN v.node WHEN c.roident = 0 THEN $1 WHEN o.roname LIKE 'odsync\\_%' THEN "
                       "substr(o.roname, 8) ELSE o.roname END AS author, CASE WHEN c.roident <> 0 AND v.key IS NOT NULL "
                       "THEN v.ts ELSE (extract(epoch FROM c.timestamp) * 1000000)::int8 END AS ts) a");
  /* "peer P has not covered a": P is not the author and its persisted vector entry is behind */
  od_sqlbuf uncovered = {0};
  od_sqlbuf_add(&uncovered, "peers.p IS DISTINCT FROM a.author AND NOT EXISTS (SELECT 1 FROM ");
  od_sqlbuf_add(&uncovered, c->pvv_q);
  od_sqlbuf_add(&uncovered, " w WHERE w.peer = peers.p AND w.node = a.author AND w.ts >= a.ts)");
  bool oom = from.oom || uncovered.oom;
  /* pending: how many tombstones are left, and which peers hold how many of them back */
  od_sqlbuf_add(&b, "WITH " PEERS_CTE " SELECT (SELECT count(*) FROM ");
  od_sqlbuf_add(&b, c->tomb_q);
  od_sqlbuf_add(&b, "), (SELECT coalesce(string_agg(p || ' (' || n || ')', ', ' ORDER BY p), '') FROM (SELECT peers.p, "
                    "count(*) AS n FROM ");
  od_sqlbuf_add(&b, from.p ? from.p : "");
  od_sqlbuf_add(&b, " CROSS JOIN peers WHERE a.ts IS NOT NULL AND ");
  od_sqlbuf_add(&b, uncovered.p ? uncovered.p : "");
  od_sqlbuf_add(&b, " GROUP BY peers.p) x)");
  char *pend = b.oom || oom ? NULL : strdup(b.p);
  od_sqlbuf_reset(&b);
  /* Judged on the statement's snapshot (snap), then locked only where the tombstone is still the
   * tuple judged (cand: same ctid and xmin) and its versions row deleted only where it is still the
   * tuple read (v.xmin = vx). Locking the judged rows directly (FOR UPDATE on the join) is wrong
   * under READ COMMITTED: a transaction committing between the snapshot and the lock makes
   * PostgreSQL re-check just the locked row's new version against the joined rows and subqueries
   * of the old snapshot — a tombstone a sink rewrote was judged on the previous delete's version,
   * and the versions row a sink had just written for a re-inserted key was deleted (the row was not
   * live in the snapshot), leaving a row that carries an origin with no version (mesh_join saw
   * it: docs/MULTI_MASTER.md, "Tombstone clean-up"). Such rows wait for the next round. */
  od_sqlbuf_add(&b, "WITH " PEERS_CTE ", snap AS MATERIALIZED (SELECT t.ctid AS tid, t.xmin AS tx, v.xmin AS vx FROM ");
  od_sqlbuf_add(&b, from.p ? from.p : "");
  /* A counter table's tombstone with a balance stays: a later insert of the key starts from it at
   * its author, and every node must add that to the same balance (postgres_mesh_counter.c). */
  od_sqlbuf_add(&b, " WHERE t.ctr IS NULL AND (a.ts IS NULL OR NOT EXISTS (SELECT 1 FROM peers WHERE ");
  od_sqlbuf_add(&b, uncovered.p ? uncovered.p : "");
  od_sqlbuf_add(&b, "))");
  /* test hook (tests/integration/mesh_gc_race.sh): each candidate waits this long between the
   * statement's snapshot and its lock, so a sink can commit in between */
  const char *pause = getenv("ODSYNC_MESH_GC_TEST_PAUSE_MS");
  if (pause && atoi(pause) > 0) od_sqlbuf_addf(&b, " AND pg_sleep(%d / 1000.0) IS NOT NULL", atoi(pause));
  od_sqlbuf_add(&b, " LIMIT $3), cand AS (SELECT t.ctid AS tid, t.tbl, t.key, snap.vx FROM ");
  od_sqlbuf_add(&b, c->tomb_q);
  od_sqlbuf_add(&b, " t JOIN snap ON t.ctid = snap.tid AND t.xmin = snap.tx FOR UPDATE OF t SKIP LOCKED), del AS "
                    "(DELETE FROM ");
  /* _odsync_unique_left: a record (the version V that held a unique value, author A = node or this
   * node, time T) judges only remote rows concurrent with V; it goes under the tombstones' rule */
  od_sqlbuf ul = {0};
  od_sqlbuf_add(&ul, "WITH " PEERS_CTE ", cand AS (SELECT l.ctid AS tid FROM ");
  od_sqlbuf_add(&ul, c->ul_q);
  od_sqlbuf_add(&ul, " l CROSS JOIN LATERAL (SELECT coalesce(l.node, $1) AS author, l.ts) a WHERE NOT EXISTS (SELECT 1 "
                     "FROM peers WHERE ");
  od_sqlbuf_add(&ul, uncovered.p ? uncovered.p : "");
  od_sqlbuf_add(&ul, ") LIMIT $3 FOR UPDATE OF l SKIP LOCKED), d AS (DELETE FROM ");
  od_sqlbuf_add(&ul, c->ul_q);
  od_sqlbuf_add(&ul, " x USING cand WHERE x.ctid = cand.tid RETURNING 1) SELECT (SELECT count(*) FROM d), 0");
  char *uls = ul.oom || oom ? NULL : strdup(ul.p);
  od_sqlbuf_free(&ul);
  od_sqlbuf_free(&from);
  od_sqlbuf_free(&uncovered);
  od_sqlbuf_add(&b, c->tomb_q);
  od_sqlbuf_add(&b, " t USING cand WHERE t.ctid = cand.tid RETURNING t.tbl, t.key, cand.vx), vdel AS (DELETE FROM ");
  od_sqlbuf_add(&b, c->ver_q);
  od_sqlbuf_add(&b, " v USING del WHERE v.tbl = del.tbl AND v.key = del.key AND v.xmin = del.vx AND NOT (");
  od_sqlbuf_add(&b, live);
  od_sqlbuf_add(&b, ") RETURNING 1) SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM vdel)");
  char *tomb = b.oom || oom ? NULL : strdup(b.p);
  od_sqlbuf_reset(&b);
  /* _odsync_hlc: a row R (clock h, committed at c on this node's clock) counts for a local
   * transaction T when c < T's commit time; it changes T's hlc only when h >= T's commit time.
   *   dominated: an earlier-ordered row (committed before, or at the same time with a higher clock,
   *     or an equal one first) has a clock >= h — every T that counts R counts it too: M(T) is the same;
   *   no commit time: never counted (readers and the versions query skip it);
   *   covered: every peer's vector entry for this node is >= h — every local transaction committed
   *     up to h is applied on every peer (no stream re-reads it; no write concurrent with it can
   *     still arrive, so its hlc is never compared again), and later commits are past h. */
  od_sqlbuf_add(&b, "WITH " PEERS_CTE ", cover AS (SELECT min(coalesce(w.ts, -9223372036854775807)) AS ts FROM peers "
                    "LEFT JOIN ");
  od_sqlbuf_add(&b, c->pvv_q);
  od_sqlbuf_add(&b, " w ON w.peer = peers.p AND w.node = $1), h AS (SELECT ctid AS tid, hlc, "
                    "pg_xact_commit_timestamp(xmin) AS c FROM ");
  od_sqlbuf_add(&b, c->hlc_q);
  od_sqlbuf_add(&b, "), z AS (SELECT tid, hlc, c, max(hlc) OVER (ORDER BY c, hlc DESC, tid ROWS BETWEEN UNBOUNDED "
                    "PRECEDING AND 1 PRECEDING) AS prev FROM h WHERE c IS NOT NULL), gone AS (SELECT tid FROM h WHERE "
                    "c IS NULL UNION ALL SELECT tid FROM z WHERE prev >= hlc OR (hlc <= (SELECT ts FROM cover) AND "
                    "hlc < (extract(epoch FROM clock_timestamp()) * 1000000)::int8) LIMIT $3), d AS (DELETE FROM ");
  od_sqlbuf_add(&b, c->hlc_q);
  /* second column: a row the clock has passed waits only for the peers' entries for this node, which
   * move with this node's own transactions: a heartbeat (below) moves them when it writes nothing */
  od_sqlbuf_add(&b, " x USING gone WHERE x.ctid = gone.tid RETURNING 1) SELECT (SELECT count(*) FROM d), EXISTS (SELECT 1 "
                    "FROM z WHERE (prev IS NULL OR prev < hlc) AND hlc > (SELECT ts FROM cover) AND hlc < "
                    "(extract(epoch FROM clock_timestamp()) * 1000000)::int8)");
  char *hlc = b.oom ? NULL : strdup(b.p);
  od_sqlbuf_free(&b);
  free(g->tomb_sql);
  free(g->hlc_sql);
  free(g->pend_sql);
  free(g->ul_sql);
  g->ul_sql = uls;
  g->tomb_sql = tomb;
  g->hlc_sql = hlc;
  g->pend_sql = pend;
  return tomb && hlc && pend && uls;
}

static void disconnect(pgs_mesh_gc *g) {
  if (g->conn) PQfinish(g->conn);
  g->conn = NULL;
}

static int connect_node(pgs_mesh_gc *g, od_error *err) {
  char app[96];
  snprintf(app, sizeof app, "odsync_%s_gc", g->pipeline);
  const char *keys[] = {"connect_timeout", "fallback_application_name", OD_PQ_KEEPALIVE_KEYS, "dbname", NULL};
  const char *vals[] = {"10", app, OD_PQ_KEEPALIVE_VALS, g->dsn, NULL};
  g->conn = PQconnectdbParams(keys, vals, 1);
  if (!g->conn || PQstatus(g->conn) != CONNECTION_OK) {
    int rc = OD_FAIL_RETRY(err, OD_ESINK, "mesh clean-up on %s: cannot connect: %s", g->where,
                           g->conn ? PQerrorMessage(g->conn) : "out of memory");
    disconnect(g);
    return rc;
  }
  return OD_OK;
}

/* One statement; returns its result or NULL with err filled (the transaction is rolled back). */
static PGresult *q(pgs_mesh_gc *g, const char *what, const char *sql, int n, const char *const *p, od_error *err) {
  PGresult *r = PQexecParams(g->conn, sql, n, NULL, p, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
  OD_FAIL_RETRY(err, OD_ESINK, "mesh clean-up on %s: %s: %s", g->where, what, PQerrorMessage(g->conn));
  PQclear(r);
  r = PQexec(g->conn, "ROLLBACK");
  PQclear(r);
  return NULL;
}

/* One batch in its own transaction, its statement's two columns read as text (out[k], at most 23
 * characters): *got false when another sink of the node holds the clean-up. */
static int batch_text(pgs_mesh_gc *g, const char *sql, const char *what, int np, const char *const *p, char out[2][24],
                      bool *got, od_error *err) {
  PGresult *r = q(g, "BEGIN", "BEGIN", 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  if (!(r = q(g, "taking the clean-up lock", "SELECT pg_try_advisory_xact_lock(" GC_LOCK_KEY ")", 0, NULL, err)))
    return err->code;
  *got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (*got) {
    if (!(r = q(g, what, sql, np, p, err))) return err->code;
    for (int k = 0; k < 2; k++) snprintf(out[k], 24, "%s", PQgetvalue(r, 0, k));
    PQclear(r);
  }
  if (!(r = q(g, "COMMIT", "COMMIT", 0, NULL, err))) return err->code;
  PQclear(r);
  return OD_OK;
}

/* One clean-up run. *more: stopped on the time budget with work left. */
static int run(pgs_mesh_gc *g, const pgs_mesh_gc_conf *conf, bool *more, od_error *err) {
  *more = false;
  if (!g->conn && connect_node(g, err)) return err->code;
  od_sqlbuf live = {0};
  int rc = live_test(g, conf, &live, err);
  if (rc == OD_OK && (live.oom || !build_sql(g, conf, live.p)))
    rc = OD_FAIL(err, OD_ENOMEM, "mesh clean-up on %s: out of memory", g->where);
  od_sqlbuf_free(&live);
  if (rc) return rc;
  char lim[16];
  snprintf(lim, sizeof lim, "%d", GC_BATCH);
  const char *p[] = {g->node, g->peers_arr, lim};
  long long tombs = 0, vers = 0, hlcs = 0;
  int64_t t0 = od_mono_us();
  bool got = true;
  for (;;) {
    char out[2][24] = {"", ""};
    if ((rc = batch_text(g, g->tomb_sql, "removing covered tombstones", 3, p, out, &got, err))) return rc;
    long long o[2] = {strtoll(out[0], NULL, 10), strtoll(out[1], NULL, 10)};
    tombs += o[0];
    vers += o[1];
    od_counter_add(g->m_removed, (uint64_t)o[0]); /* committed: counted even if a later step fails */
    od_counter_add(g->m_ver_removed, (uint64_t)o[1]);
    if (!got || o[0] < GC_BATCH) break;
    if (od_mono_us() - t0 > GC_RUN_BUDGET_US) {
      *more = true;
      break;
    }
  }
  long long uls = 0;
  while (got && !*more) {
    char out[2][24] = {"", ""};
    if ((rc = batch_text(g, g->ul_sql, "removing covered unique-left records", 3, p, out, &got, err))) return rc;
    long long n = strtoll(out[0], NULL, 10);
    uls += n;
    if (!got || n < GC_BATCH) break;
    if (od_mono_us() - t0 > GC_RUN_BUDGET_US) *more = true;
  }
  bool beat = false;
  while (got && !*more) {
    char out[2][24] = {"", ""};
    if ((rc = batch_text(g, g->hlc_sql, "pruning _odsync_hlc", 3, p, out, &got, err))) return rc;
    long long n = strtoll(out[0], NULL, 10);
    hlcs += n;
    od_counter_add(g->m_hlc_removed, (uint64_t)n);
    beat = strcmp(out[1], "t") == 0;
    if (!got || n < GC_BATCH) break;
    if (od_mono_us() - t0 > GC_RUN_BUDGET_US) *more = true;
  }
  if (got && beat) {
    /* The heartbeat: an empty local transaction with one logical message. Every stream reader of
     * this node stamps it like an application's transaction, every peer applies it (nothing to
     * write), and its vector entry for this node — handed back by its reader — passes the rows'
     * clocks: the next run removes them. Only while such rows wait; a node that writes keeps them
     * moving anyway. */
    PGresult *hb = q(g, "writing the clean-up heartbeat", "SELECT pg_logical_emit_message(true, 'odsync.gc', $1)", 1,
                     p, err);
    if (!hb) return err->code;
    PQclear(hb);
    od_debug("mesh clean-up on node %s (%s): heartbeat (clock rows wait for the peers' entries for this node)", g->node,
             g->where);
  }
  if (!got && !tombs && !hlcs && !uls) return OD_OK; /* another sink of this node runs the clean-up */
  PGresult *r = q(g, "counting the tombstones left", g->pend_sql, 2, p, err);
  if (!r) return err->code;
  long long pending = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  char waiting[512];
  snprintf(waiting, sizeof waiting, "%s", PQgetvalue(r, 0, 1));
  PQclear(r);
  od_gauge_set(g->m_pending, pending);
  /* INFO when something went, or when the set of peers holding tombstones back changed (a node
   * went down or came back); DEBUG otherwise */
  bool changed = strcmp(waiting, g->waiting) != 0;
  snprintf(g->waiting, sizeof g->waiting, "%s", waiting);
  od_log(tombs || vers || hlcs || uls || changed ? OD_LOG_INFO : OD_LOG_DEBUG,
         "mesh clean-up on node %s (%s): removed %lld tombstones, %lld row versions, %lld clock rows, %lld "
         "unique-left records; %lld tombstones kept%s%s%s", g->node, g->where, tombs, vers, hlcs, uls, pending,
         *waiting ? ", waiting for peers that have not applied their deletes: " : "", waiting,
         *waiting ? " (a node that is down or behind holds them)" : "");
  return OD_OK;
}

typedef struct gc_arg {
  pgs_mesh_gc *g;
  pgs_mesh_gc_conf conf; /* strings point into g (tables: tables_copy) */
  char **tables;
  int ntables;
} gc_arg;

static void *gc_main(void *p) {
  gc_arg *a = p;
  pgs_mesh_gc *g = a->g;
  int64_t wait_us = (int64_t)g->interval_s * 1000000;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (wait_us % 1000000) * 1000;
    ts.tv_sec += (time_t)(wait_us / 1000000) + (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (!g->stop && pthread_cond_timedwait(&g->cv, &g->mu, &ts) != ETIMEDOUT) {
    }
    if (g->stop) break;
    pthread_mutex_unlock(&g->mu);
    od_error err = {0};
    bool more = false;
    if (run(g, &a->conf, &more, &err) != OD_OK) {
      od_warn("%s (the clean-up is retried in %d s; replication is not affected)", err.msg, g->interval_s);
      if (g->conn && PQstatus(g->conn) != CONNECTION_OK) disconnect(g);
    }
    wait_us = more ? 1000000 : (int64_t)g->interval_s * 1000000;
    pthread_mutex_lock(&g->mu);
  }
  pthread_mutex_unlock(&g->mu);
  disconnect(g);
  for (int i = 0; i < a->ntables; i++) free(a->tables[i]);
  free(a->tables);
  free(a);
  return NULL;
}

static void gc_free(pgs_mesh_gc *g) {
  free(g->dsn);
  free(g->where);
  free(g->pipeline);
  free(g->node);
  free(g->peers_arr);
  free(g->tomb_sql);
  free(g->hlc_sql);
  free(g->pend_sql);
  free(g->ul_sql);
  free(g->ul_q);
  free(g->tomb_q);
  free(g->ver_q);
  free(g->hlc_q);
  free(g->pvv_q);
  free(g);
}

int pgs_mesh_gc_start(const pgs_mesh_gc_conf *c, pgs_mesh_gc **out, od_error *err) {
  *out = NULL;
  pgs_mesh_gc *g = calloc(1, sizeof *g);
  gc_arg *a = calloc(1, sizeof *a);
  od_sqlbuf arr = {0};
  od_sqlbuf_add(&arr, "{");
  for (int i = 0; i < c->nnodes; i++) arr_add(&arr, c->nodes[i]);
  od_sqlbuf_add(&arr, "}");
  bool ok = g && a && !arr.oom && (g->dsn = strdup(c->dsn)) && (g->where = strdup(c->where)) &&
            (g->pipeline = strdup(c->pipeline)) && (g->node = strdup(c->node)) && (g->peers_arr = strdup(arr.p)) &&
            (g->tomb_q = strdup(c->tomb_q)) && (g->ver_q = strdup(c->ver_q)) &&
            (g->hlc_q = strdup(c->hlc_q)) && (g->pvv_q = strdup(c->pvv_q)) && (g->ul_q = strdup(c->ul_q));
  od_sqlbuf_free(&arr);
  if (ok && c->ntables && !(a->tables = calloc((size_t)c->ntables, sizeof *a->tables))) ok = false;
  for (int i = 0; ok && i < c->ntables; i++) {
    if (!(a->tables[i] = strdup(c->tables[i]))) ok = false;
    else a->ntables++;
  }
  if (!ok) {
    if (a) {
      for (int i = 0; i < a->ntables; i++) free(a->tables[i]);
      free(a->tables);
      free(a);
    }
    if (g) gc_free(g);
    return OD_FAIL(err, OD_ENOMEM, "mesh clean-up: out of memory");
  }
  a->g = g;
  a->conf = *c;
  a->conf.tables = (const char *const *)a->tables;
  a->conf.nodes = NULL; /* in peers_arr */
  a->conf.dsn = a->conf.where = a->conf.pipeline = a->conf.node = NULL; /* g's copies */
  a->conf.tomb_q = g->tomb_q;
  a->conf.ver_q = g->ver_q;
  a->conf.hlc_q = g->hlc_q;
  a->conf.pvv_q = g->pvv_q;
  a->conf.ul_q = g->ul_q;
  g->interval_s = c->interval_s;
  static const char *const labels[] = {"node", NULL};
  static const od_metric_family_def removed_def = {
      .name = "odsync_mesh_tombstones_removed_total", .type = OD_METRIC_COUNTER, .labels = labels,
      .help = "Tombstones the mesh clean-up removed on a node (every peer had covered them)"};
  static const od_metric_family_def pending_def = {
      .name = "odsync_mesh_tombstones_pending", .type = OD_METRIC_GAUGE, .labels = labels,
      .help = "Tombstones left on a node after its last clean-up (not yet covered by every peer)"};
  static const od_metric_family_def ver_def = {
      .name = "odsync_mesh_versions_removed_total", .type = OD_METRIC_COUNTER, .labels = labels,
      .help = "Row versions (_odsync_versions) the mesh clean-up removed with their tombstones"};
  static const od_metric_family_def hlc_def = {
      .name = "odsync_mesh_hlc_rows_removed_total", .type = OD_METRIC_COUNTER, .labels = labels,
      .help = "Rows of _odsync_hlc the mesh clean-up removed"};
  const char *lv[] = {g->node};
  od_metric_family *f;
  g->m_removed = (f = od_metrics_family(od_metrics_global(), &removed_def)) ? od_metrics_series(f, lv) : NULL;
  g->m_pending = (f = od_metrics_family(od_metrics_global(), &pending_def)) ? od_metrics_series(f, lv) : NULL;
  g->m_ver_removed = (f = od_metrics_family(od_metrics_global(), &ver_def)) ? od_metrics_series(f, lv) : NULL;
  g->m_hlc_removed = (f = od_metrics_family(od_metrics_global(), &hlc_def)) ? od_metrics_series(f, lv) : NULL;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  if (pthread_create(&g->thread, NULL, gc_main, a) != 0) {
    for (int i = 0; i < a->ntables; i++) free(a->tables[i]);
    free(a->tables);
    free(a);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    gc_free(g);
    return OD_FAIL(err, OD_ESINK, "mesh clean-up: cannot start its thread");
  }
  g->started = true;
  *out = g;
  return OD_OK;
}

void pgs_mesh_gc_stop(pgs_mesh_gc *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->stop = true;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  if (g->started) pthread_join(g->thread, NULL);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  gc_free(g);
}
