/* mesh_join.c — `odsync mesh join -c FILE NODE`: copies the seed node (NODE's `join_from`) into
 * NODE while the mesh's other pipelines run, so that NODE's pipelines can then start where the copy
 * ends (docs/MULTI_MASTER.md, "Adding a node to a running mesh", for the argument). In order:
 *   1. opens each pipeline sink into NODE once (the sink's own session DDL: checkpoint table,
 *      conflict log, _odsync_versions/_tombstones/_hlc/_peer_vv, tombstone and key-lock triggers,
 *      replication origins odsync_<peer>) and creates NODE's slots towards every other node;
 *   2. for every other node X: its slot X->NODE (at L_X), then waits until the seed S has applied X
 *      past L_X (S's checkpoint row of X->S, written with the data);
 *   3. the slot S->NODE with an exported snapshot (at L_S); in that snapshot reads S's checkpoints
 *      C_X, S's mesh tables, each key's version, the tombstones, the unique-left records and S's
 *      persisted peer vectors;
 *   4. in ONE transaction on NODE, under the replication origin odsync_S (so NODE's streams drop
 *      it): the data, the versions, the tombstones, the checkpoints (X->NODE at C_X, S->NODE at
 *      L_S), the peer vectors, a clock row, and public._odsync_join (NODE, S, 'done') — which is
 *      what NODE's sinks wait for (sinks/postgres_mesh_join.c). The origins odsync_X are advanced to
 *      C_X just before (not transactional: harmless if the copy rolls back, it is redone), and for
 *      each X a message-only transaction under odsync_X commits just before the copy, so that c's
 *      stream readers know what c holds of X (the copy itself tells them about S).
 * A SIGKILL before step 4 commits leaves NODE without data or checkpoints (the gate keeps its
 * pipelines waiting); running the command again redoes the join (it reuses the slots X->NODE,
 * recreates S->NODE). NODE's mesh tables must be empty: the command refuses otherwise.
 * Owns: its connections, results and the section copies it opens sinks with (freed here).
 * Never touches: the data of the existing nodes (it only reads them, creates slots and publications
 * for NODE's pipelines, emits a logical message and raises their persisted vectors for NODE).
 */
#include "cli/mesh_join.h"
#include "cli/mesh_cli_util.h"
#include "cli/mesh_join_colmerge.h"
#include "cli/mesh_remove.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/mesh_sql.h"
#include "common/sqlbuf.h"
#include "odsync/config.h"
#include "odsync/registry.h"

#define NODES_MAX 8
#define COPY_ATTEMPTS 5 /* the copy into the joining node, redone after a deadlock or serialization failure */

typedef struct jnode {
  const char *name, *dsn; /* borrowed from the config */
  PGconn *c;              /* plain connection (owned) */
  uint64_t l;             /* L_X: the slot X->joiner's start (seed: L_S) */
  bool reused;            /* that slot existed (an earlier attempt made it): its start is older than t */
  int64_t t;              /* X's clock just before that slot was made (µs; INT64_MIN: unknown) */
  uint64_t ck;            /* C_X: the seed's checkpoint of X->seed, in the seed's snapshot */
  char ck_text[64];       /* its position_text */
  int64_t maxts;          /* the latest version of X copied (µs; INT64_MIN: none) */
} jnode;

typedef struct join {
  const od_config *cfg;
  jnode nodes[NODES_MAX];
  int n, me, seed;
  char *const *tables;
  int ntables;
} join;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mesh_cli_vsay("join", fmt, ap);
  va_end(ap);
}

/* say(), and 1: the join stops. */
static int jfail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mesh_cli_vsay("join", fmt, ap);
  va_end(ap);
  return 1;
}

static const od_pipeline_config *pipeline(const join *j, int from, int to) {
  return mesh_cli_pipeline(j->cfg, j->nodes[from].name, j->nodes[to].name);
}

static PGconn *connect_dsn(const char *node, const char *dsn, bool repl) {
  const char *keys[] = {"dbname", "connect_timeout", "fallback_application_name", repl ? "replication" : NULL, NULL};
  const char *vals[] = {dsn, "10", "odsync_mesh_join", repl ? "database" : NULL, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) == CONNECTION_OK) return c;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
  msg[strcspn(msg, "\n")] = '\0';
  jfail("node %s: cannot connect%s: %s", node, repl ? " (replication)" : "", msg);
  PQfinish(c);
  return NULL;
}

/* The SQLSTATE of the last statement that failed ("" none): the copy is redone when it is a
 * transient one (the command is single-threaded; written by note_failure only). */
static char last_sqlstate[6];

static void note_failure(const PGresult *r) {
  const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  snprintf(last_sqlstate, sizeof last_sqlstate, "%s", st ? st : "");
}

/* A deadlock or a serialization failure: the server rolled the statement's transaction back
 * and the same work can succeed when done again. */
static bool transient_failure(void) {
  return !strcmp(last_sqlstate, "40P01") || !strcmp(last_sqlstate, "40001");
}

/* Run sql; on failure print what failed where and return NULL. */
static PGresult *run(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p) {
  /* without parameters: the simple protocol (replication commands, several statements) */
  PGresult *r = n ? PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0) : PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  note_failure(r);
  char msg[600];
  snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
  msg[strcspn(msg, "\n")] = '\0';
  jfail("node %s: %s failed: %s", node, what, msg);
  PQclear(r);
  return NULL;
}

static bool ok(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p) {
  PGresult *r = run(c, node, what, sql, n, p);
  PQclear(r);
  return r != NULL;
}

static uint64_t parse_lsn(const char *s) {
  unsigned hi = 0, lo = 0;
  if (sscanf(s, "%X/%X", &hi, &lo) != 2) return 0;
  return ((uint64_t)hi << 32) | lo;
}

static int64_t now_us_on(PGconn *c, const char *node) {
  PGresult *r = run(c, node, "reading the clock", "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8", 0,
                    NULL);
  int64_t v = r ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : INT64_MIN;
  PQclear(r);
  return v;
}

/* "schema.table" (a mesh.tables entry) as a quoted name; public when it names no schema. */
static char *quoted_table(PGconn *c, const char *t) {
  const char *dot = strchr(t, '.');
  char sch[128], tab[128];
  snprintf(sch, sizeof sch, "%.*s", dot ? (int)(dot - t) : 6, dot ? t : "public");
  snprintf(tab, sizeof tab, "%s", dot ? dot + 1 : t);
  char *a = PQescapeIdentifier(c, sch, strlen(sch)), *b = PQescapeIdentifier(c, tab, strlen(tab));
  char *out = NULL;
  if (a && b && (out = malloc(strlen(a) + strlen(b) + 2))) sprintf(out, "%s.%s", a, b);
  PQfreemem(a);
  PQfreemem(b);
  return out;
}

/* Publication (FOR TABLE the mesh tables) and slot of pipeline p on node x when missing. With
 * `snap` the slot is made anew with an exported snapshot (its name written there, repl kept open
 * by the caller). *lsn: the slot's start (its confirmed position when it existed). */
static int ensure_slot(join *j, int x, const od_pipeline_config *p, PGconn *repl, char *snap, size_t cap,
                       uint64_t *lsn) {
  jnode *nd = &j->nodes[x];
  char slot[80], pub[80];
  mesh_cli_repl_name(p, "slot", slot, sizeof slot);
  mesh_cli_repl_name(p, "publication", pub, sizeof pub);
  const char *pp[] = {pub};
  PGresult *r = run(nd->c, nd->name, "looking up the publication", "SELECT 1 FROM pg_publication WHERE pubname = $1",
                    1, pp);
  if (!r) return 1;
  bool have = PQntuples(r) > 0;
  PQclear(r);
  if (!have) {
    od_sqlbuf b = {0};
    char *pq = PQescapeIdentifier(nd->c, pub, strlen(pub));
    od_sqlbuf_addf(&b, "CREATE PUBLICATION %s FOR TABLE ", pq ? pq : "");
    /* as the source creates it with its default partitions: root (pg_catalog.c) */
    PQfreemem(pq);
    for (int i = 0; i < j->ntables; i++) {
      char *q = quoted_table(nd->c, j->tables[i]);
      od_sqlbuf_addf(&b, "%s%s", i ? ", " : "", q ? q : "");
      free(q);
    }
    od_sqlbuf_add(&b, " WITH (publish_via_partition_root = true)");
    bool good = !b.oom && ok(nd->c, nd->name, "creating the publication of the joining node's pipeline", b.p, 0, NULL);
    od_sqlbuf_free(&b);
    if (!good) return 1;
  }
  const char *sp[] = {slot};
  if (!(r = run(nd->c, nd->name, "looking up the slot",
                "SELECT active, (confirmed_flush_lsn - '0/0'::pg_lsn)::text FROM pg_replication_slots WHERE "
                "slot_name = $1", 1, sp)))
    return 1;
  bool exists = PQntuples(r) > 0, active = exists && PQgetvalue(r, 0, 0)[0] == 't';
  uint64_t at = exists ? strtoull(PQgetvalue(r, 0, 1), NULL, 10) : 0;
  PQclear(r);
  if (exists && !snap) {
    *lsn = at;
    nd->reused = true;
    return 0;
  }
  if (exists) { /* the seed's slot: its snapshot is needed, so it is made anew (nothing read it yet) */
    if (active)
      return jfail("node %s: slot %s of pipeline %s is in use: an odsync is running that pipeline before the join; "
                   "stop it (or remove %s's join_from node from its config) and run the join again",
                   nd->name, slot, p->name, nd->name);
    if (!ok(nd->c, nd->name, "dropping the seed's slot of an earlier attempt", "SELECT pg_drop_replication_slot($1)", 1,
            sp))
      return 1;
  }
  /* The slot's output plugin as the pipeline's source would choose it (mesh.output_plugin,
   * src/sources/pg/pg_plugin.h): odsync_pgoutput unless pgoutput is asked for; with `auto` a node that
   * cannot load it gets pgoutput. The source reads the plugin of the slot it finds. */
  const char *want = mesh_cli_sval(&p->source, "mesh_output_plugin");
  bool ours = !want || strcmp(want, "pgoutput") != 0, forced = want && !strcmp(want, "odsync_pgoutput");
  char sql[300];
  char *sq = PQescapeIdentifier(repl, slot, strlen(slot));
  r = NULL;
  for (int attempt = ours ? 0 : 1; attempt < 2 && !r; attempt++) {
    snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT %s LOGICAL %s %s", sq ? sq : "",
             attempt == 0 ? "odsync_pgoutput" : "pgoutput", snap ? "(SNAPSHOT 'export')" : "NOEXPORT_SNAPSHOT");
    if (attempt == 1 || forced) {
      r = run(repl, nd->name, "creating the replication slot", sql, 0, NULL);
      break;
    }
    r = PQexec(repl, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      char msg[400];
      snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
      msg[strcspn(msg, "\n")] = '\0';
      say("node %s: slot %s: odsync_pgoutput cannot be loaded (%s); the slot uses pgoutput", nd->name, slot, msg);
      PQclear(r);
      r = NULL;
    }
  }
  PQfreemem(sq);
  if (!r) return 1;
  *lsn = parse_lsn(PQgetvalue(r, 0, 1));
  if (snap) snprintf(snap, cap, "%s", PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2));
  PQclear(r);
  say("node %s: created slot %s at %X/%X", nd->name, slot, (unsigned)(*lsn >> 32), (unsigned)*lsn);
  return 0;
}

/* Stream `from_sql` (a COPY ... TO STDOUT on src) into `to_sql` (COPY ... FROM STDIN on dst). */
static int copy_stream(PGconn *src, const char *sname, const char *from_sql, PGconn *dst, const char *dname,
                       const char *to_sql, long long *rows) {
  PGresult *r = PQexec(src, from_sql);
  if (PQresultStatus(r) != PGRES_COPY_OUT) {
    note_failure(r);
    int rc = jfail("node %s: %s failed: %s", sname, from_sql, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
  }
  PQclear(r);
  r = PQexec(dst, to_sql);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    note_failure(r);
    int rc = jfail("node %s: %s failed: %s", dname, to_sql, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
  }
  PQclear(r);
  char *buf = NULL;
  int n;
  bool good = true;
  while ((n = PQgetCopyData(src, &buf, 0)) > 0) {
    if (good && PQputCopyData(dst, buf, n) != 1) good = false;
    PQfreemem(buf);
  }
  r = PQgetResult(src);
  if (n != -1 || PQresultStatus(r) != PGRES_COMMAND_OK) {
    note_failure(r);
    jfail("node %s: reading %s failed: %s", sname, from_sql, PQerrorMessage(src));
    good = false;
  }
  PQclear(r);
  while ((r = PQgetResult(src))) PQclear(r);
  PQputCopyEnd(dst, good ? NULL : "odsync mesh join: the source copy failed");
  r = PQgetResult(dst);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    if (good) note_failure(r);
    if (good) jfail("node %s: %s failed: %s", dname, to_sql, PQresultErrorMessage(r));
    good = false;
  } else if (rows) {
    *rows = strtoll(PQcmdTuples(r), NULL, 10);
  }
  PQclear(r);
  while ((r = PQgetResult(dst))) PQclear(r);
  return good ? 0 : 1;
}

/* A sink into the joining node opened and closed once: its session creates the mesh's tables,
 * triggers and the origin of its peer there. The section is used without mesh_join_from (that
 * sink's session would wait for this very join). */
static int prepare_sink(const od_pipeline_config *p) {
  const od_config_section *sec = &p->sinks[0].section;
  od_config_section copy = *sec;
  copy.entries = calloc((size_t)sec->nentries + 1, sizeof *copy.entries);
  if (!copy.entries) return jfail("out of memory");
  copy.nentries = 0;
  for (int i = 0; i < sec->nentries; i++)
    if (strcmp(sec->entries[i].key, "mesh_join_from") != 0) copy.entries[copy.nentries++] = sec->entries[i];
  const od_sink_ops *ops = od_sink_find(sec->type);
  od_sink *s = NULL;
  od_error err = {0};
  int rc = ops ? ops->open(&copy, p->name, &s, &err) : OD_EINVAL;
  free(copy.entries);
  if (rc) return jfail("pipeline %s: preparing its sink failed: %s", p->name, ops ? err.msg : "no postgres sink");
  s->ops->close(s);
  return 0;
}

static bool table_empty(join *j, const char *t, bool *empty) {
  jnode *me = &j->nodes[j->me];
  char *q = quoted_table(me->c, t);
  char sql[400];
  snprintf(sql, sizeof sql, "SELECT EXISTS (SELECT 1 FROM %s)", q ? q : "");
  free(q);
  PGresult *r = run(me->c, me->name, "checking that the table is empty", sql, 0, NULL);
  if (!r) return false;
  *empty = PQgetvalue(r, 0, 0)[0] == 'f';
  PQclear(r);
  return true;
}

/* Wait until the seed's checkpoint of pipeline X->seed is at or past L_X. */
static int wait_seed_past(join *j, int x) {
  jnode *s = &j->nodes[j->seed], *nd = &j->nodes[x];
  const od_pipeline_config *p = pipeline(j, x, j->seed);
  if (!p) return jfail("no pipeline %s -> %s in the config", nd->name, s->name);
  char l[32];
  snprintf(l, sizeof l, "%X/%X", (unsigned)(nd->l >> 32), (unsigned)nd->l);
  const char *pe[] = {nd->name};
  /* an idle node's stream moves the seed's checkpoint with a transaction of its own */
  if (!ok(nd->c, nd->name, "emitting a logical message", "SELECT pg_logical_emit_message(true, 'odsync.join', $1)", 1,
          pe))
    return 1;
  const char *pp[] = {p->name, l};
  for (int i = 0; i < 3000; i++) {
    PGresult *r = run(s->c, s->name, "reading the checkpoint",
                      "SELECT position >= $2::pg_lsn FROM public._odsync_checkpoint WHERE pipeline = $1", 2, pp);
    if (!r) return 1;
    bool past = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (past) return 0;
    usleep(100000);
  }
  return jfail("node %s has not applied %s up to %s after 300 s (pipeline %s): the mesh's odsync must be running "
               "while the join runs",
               s->name, nd->name, l, p->name);
}

/* The versions query on the seed for one table: one row (tbl, key, node, ts, hlc, also) per live row
 * and per tombstone without a live row, as the seed's sinks would read them (postgres_mesh_decide.c;
 * `also`, a column_merge key's version per column: mesh_join_colmerge.c). */
static int versions_sql(join *j, const char *t, od_sqlbuf *b, char *tbl, size_t tcap) {
  jnode *s = &j->nodes[j->seed];
  char *q = quoted_table(s->c, t);
  const char *pt[] = {q ? q : ""};
  PGresult *r = run(s->c, s->name, "reading the table's primary key",
                    "SELECT n.nspname || '.' || c.relname, (SELECT string_agg('t.' || quote_ident(a.attname) || "
                    "'::text', ', ' ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY (i.indkey) WHERE i.indrelid = c.oid AND i.indisprimary) FROM pg_class c JOIN "
                    "pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
                    1, pt);
  if (!r) {
    free(q);
    return 1;
  }
  if (PQntuples(r) != 1 || PQgetisnull(r, 0, 1)) {
    PQclear(r);
    free(q);
    return jfail("node %s: table %s has no primary key", s->name, t);
  }
  snprintf(tbl, tcap, "%s", PQgetvalue(r, 0, 0));
  char *lit = PQescapeLiteral(s->c, tbl, strlen(tbl)), *nlit = PQescapeLiteral(s->c, s->name, strlen(s->name));
  od_sqlbuf_addf(b,
                 "COPY (WITH live AS (SELECT concat_ws(chr(31), %s) AS k, c.timestamp AS cts, c.roident AS rid, "
                 "o.roname AS origin FROM %s t CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) c LEFT JOIN "
                 "pg_catalog.pg_replication_origin o ON o.roident = c.roident), dead AS (SELECT d.key AS k, c.timestamp "
                 "AS cts, c.roident AS rid, o.roname AS origin FROM public._odsync_tombstones d CROSS JOIN LATERAL "
                 "pg_xact_commit_timestamp_origin(d.xmin) c LEFT JOIN pg_catalog.pg_replication_origin o ON o.roident "
                 "= c.roident WHERE d.tbl = %s AND NOT EXISTS (SELECT 1 FROM live WHERE live.k = d.key)), x AS "
                 "(SELECT * FROM live UNION ALL SELECT * FROM dead) SELECT %s, x.k, CASE WHEN x.rid <> 0 AND v.key IS "
                 "NOT NULL THEN v.node WHEN x.rid <> 0 THEN regexp_replace(x.origin, '^odsync_', '') ELSE %s END, "
                 "CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.ts ELSE coalesce((extract(epoch FROM x.cts) * "
                 "1000000)::int8, 0) END, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.hlc WHEN coalesce(x.rid, "
                 "0) = 0 THEN coalesce(",
                 PQgetvalue(r, 0, 1), q ? q : "", lit ? lit : "''", lit ? lit : "''", nlit ? nlit : "''");
  od_mesh_sql_local_hlc(b, "public._odsync_hlc", "x.cts"); /* as the seed's sinks read it */
  od_sqlbuf_add(b, ", 0) ELSE coalesce((extract(epoch FROM x.cts) * 1000000)::int8, 0) END");
  /* the column versions (column_merge: every column's, as the seed's sinks resolve them) */
  mesh_join_also_sql(b, mesh_join_colmerge_table(pipeline(j, j->seed, j->me), tbl), nlit ? nlit : "''",
                     lit ? lit : "''");
  od_sqlbuf_add(b, ") TO STDOUT");
  PQfreemem(lit);
  PQfreemem(nlit);
  PQclear(r);
  free(q);
  return b->oom ? jfail("out of memory") : 0;
}

static int pause_ms(void) {
  const char *e = getenv("ODSYNC_MESH_JOIN_TEST_PAUSE_MS"); /* test hook: a slow copy, to be killed */
  return e ? atoi(e) : 0;
}

/* Step 4: everything into the joining node in one transaction. */
static int copy_into(join *j, const char *snap) {
  jnode *me = &j->nodes[j->me], *s = &j->nodes[j->seed];
  char setsnap[200];
  snprintf(setsnap, sizeof setsnap, "SET TRANSACTION SNAPSHOT '%s'", snap);
  if (!ok(s->c, s->name, "opening the snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL) ||
      !ok(s->c, s->name, "importing the slot's snapshot", setsnap, 0, NULL))
    return 1;
  /* column_merge tables: the seed must have the column versions and tombstone images to copy */
  bool img = false;
  char cmsg[400];
  int crc = mesh_join_colmerge_check(s->c, mesh_join_colmerge_any(pipeline(j, j->seed, j->me)), &img, cmsg,
                                     sizeof cmsg);
  if (crc) return jfail("node %s: %s", s->name, cmsg);
  /* C_X for every other node, in the snapshot */
  for (int x = 0; x < j->n; x++) {
    if (x == j->me || x == j->seed) continue;
    const od_pipeline_config *p = pipeline(j, x, j->seed);
    const char *pp[] = {p->name};
    PGresult *r = run(s->c, s->name, "reading the checkpoint",
                      "SELECT (position - '0/0'::pg_lsn)::text, coalesce(position_text, '') FROM "
                      "public._odsync_checkpoint WHERE pipeline = $1", 1, pp);
    if (!r) return 1;
    if (PQntuples(r) != 1) {
      PQclear(r);
      return jfail("node %s: no checkpoint of pipeline %s in its snapshot", s->name, p->name);
    }
    jnode *nd = &j->nodes[x];
    nd->ck = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(nd->ck_text, sizeof nd->ck_text, "%s", PQgetvalue(r, 0, 1));
    if (!nd->ck_text[0])
      snprintf(nd->ck_text, sizeof nd->ck_text, "pg:%X/%X", (unsigned)(nd->ck >> 32), (unsigned)nd->ck);
    PQclear(r);
    if (nd->ck < nd->l)
      return jfail("node %s: its checkpoint of %s (%X/%X) is before the slot %s -> %s (%X/%X); run the join again",
                   s->name, p->name, (unsigned)(nd->ck >> 32), (unsigned)nd->ck, nd->name, me->name,
                   (unsigned)(nd->l >> 32), (unsigned)nd->l);
  }
  /* the joining node: one transaction */
  if (!ok(me->c, me->name, "starting the copy", "BEGIN", 0, NULL) ||
      !ok(me->c, me->name, "marking the session as a mesh sink's",
          "SELECT set_config('odsync.mesh_sink', 'on', true)", 0, NULL))
    return 1;
  for (int i = 0; i < j->ntables; i++) {
    bool empty = false;
    if (!table_empty(j, j->tables[i], &empty)) return 1;
    if (!empty)
      return jfail("node %s: table %s is not empty; a joining node's mesh tables must be empty (the join copies "
                   "%s's rows into them): empty them (TRUNCATE) and run the join again",
                   me->name, j->tables[i], s->name);
  }
  if (!ok(me->c, me->name, "clearing the mesh's bookkeeping of an earlier attempt",
          "DELETE FROM public._odsync_versions; DELETE FROM public._odsync_tombstones; DELETE FROM "
          "public._odsync_peer_vv; DELETE FROM public._odsync_hlc; DELETE FROM public._odsync_unique_left; "
          "DELETE FROM public._odsync_colver",
          0, NULL))
    return 1;
  /* origins odsync_X at C_X (not transactional; before this session takes odsync_S) */
  for (int x = 0; x < j->n; x++) {
    if (x == j->me || x == j->seed) continue;
    char o[80], l[32];
    snprintf(o, sizeof o, "odsync_%s", j->nodes[x].name);
    snprintf(l, sizeof l, "%X/%X", (unsigned)(j->nodes[x].ck >> 32), (unsigned)j->nodes[x].ck);
    const char *pp[] = {o, l};
    if (!ok(me->c, me->name, "advancing the replication origin", "SELECT pg_replication_origin_advance($1, $2::pg_lsn)",
            2, pp))
      return 1;
  }
  char so[80];
  snprintf(so, sizeof so, "odsync_%s", s->name);
  const char *po[] = {so};
  if (!ok(me->c, me->name, "taking the seed's replication origin", "SELECT pg_replication_origin_session_setup($1)", 1,
          po))
    return 1;
  long long total = 0;
  for (int i = 0; i < j->ntables; i++) {
    char *qs = quoted_table(s->c, j->tables[i]), from[400], to[400];
    snprintf(from, sizeof from, "COPY %s TO STDOUT", qs ? qs : "");
    snprintf(to, sizeof to, "COPY %s FROM STDIN", qs ? qs : "");
    free(qs);
    long long rows = 0;
    if (copy_stream(s->c, s->name, from, me->c, me->name, to, &rows)) return 1;
    total += rows;
    od_sqlbuf vq = {0};
    char tbl[300];
    int rc = versions_sql(j, j->tables[i], &vq, tbl, sizeof tbl);
    long long nv = 0;
    if (!rc)
      rc = copy_stream(s->c, s->name, vq.p, me->c, me->name,
                       "COPY public._odsync_versions (tbl, key, node, ts, hlc, also) FROM STDIN", &nv);
    od_sqlbuf_free(&vq);
    if (rc) return 1;
    say("table %s: %lld rows, %lld versions", j->tables[i], rows, nv);
    int ms = pause_ms();
    if (ms > 0) usleep((useconds_t)ms * 1000);
  }
  /* the tombstones, with the deleted rows' last values (img: a column_merge re-creation takes the
   * columns it did not write from there, an SQL rule ranks the delete by it) and counter tables' balances (ctr: what the key's counters
   * hold while it has no row; a seed from before them has none) */
  PGresult *cr = run(s->c, s->name, "reading the tombstones' columns",
                     "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public._odsync_tombstones') "
                     "AND attname = 'ctr' AND NOT attisdropped)", 0, NULL);
  if (!cr) return 1;
  bool ctr = PQgetvalue(cr, 0, 0)[0] == 't';
  PQclear(cr);
  if (ctr && !ok(me->c, me->name, "adding the tombstones' balance column",
                 "ALTER TABLE public._odsync_tombstones ADD COLUMN IF NOT EXISTS ctr jsonb", 0, NULL))
    return 1;
  /* (img: also SQL-rule tables' deleted rows, which their rules rank deletes by) */
  if (img && !ok(me->c, me->name, "adding the tombstones' image column",
                 "ALTER TABLE public._odsync_tombstones ADD COLUMN IF NOT EXISTS img jsonb", 0, NULL))
    return 1;
  char tcols[64], tout[160], tin[160];
  snprintf(tcols, sizeof tcols, "tbl, key, deleted_at%s%s", img ? ", img" : "", ctr ? ", ctr" : "");
  snprintf(tout, sizeof tout, "COPY public._odsync_tombstones (%s) TO STDOUT", tcols);
  snprintf(tin, sizeof tin, "COPY public._odsync_tombstones (%s) FROM STDIN", tcols);
  if (copy_stream(s->c, s->name, tout, me->c, me->name, tin, NULL)) return 1;
  /* the records of rows that left a unique value (their versions judge late concurrent rows; a
   * version written at the seed itself has no node there: it is the seed's) */
  char *slit = PQescapeLiteral(s->c, s->name, strlen(s->name)), ulq[300];
  snprintf(ulq, sizeof ulq, "COPY (SELECT tbl, key, img, coalesce(node, %s), ts, hlc FROM public._odsync_unique_left) "
           "TO STDOUT", slit ? slit : "''");
  PQfreemem(slit);
  if (copy_stream(s->c, s->name, ulq, me->c, me->name,
                  "COPY public._odsync_unique_left (tbl, key, img, node, ts, hlc) FROM STDIN", NULL))
    return 1;
  /* the seed's vectors of every other peer X: what X had seen as of C_X */
  char *lit = PQescapeLiteral(s->c, me->name, strlen(me->name)), pvq[300];
  snprintf(pvq, sizeof pvq, "COPY (SELECT peer, node, lsn, ts FROM public._odsync_peer_vv WHERE peer <> %s) TO STDOUT",
           lit ? lit : "''");
  PQfreemem(lit);
  if (copy_stream(s->c, s->name, pvq, me->c, me->name, "COPY public._odsync_peer_vv (peer, node, lsn, ts) FROM STDIN",
                  NULL))
    return 1;
  if (!ok(s->c, s->name, "closing the snapshot", "COMMIT", 0, NULL)) return 1;
  /* the latest copied version of every node, and the highest clock: rows' versions and column_merge
   * columns' ("node:ts:hlc" in `also`, "~" in front: weak) — a column's write may be no row's version */
  for (int x = 0; x < j->n; x++) j->nodes[x].maxts = INT64_MIN;
  PGresult *r = run(me->c, me->name, "reading the copied versions",
                    "SELECT node, max(ts), max(hlc) FROM (SELECT node, ts, hlc FROM public._odsync_versions UNION ALL "
                    "SELECT split_part(e, ':', 1), split_part(e, ':', 2)::int8, split_part(e, ':', 3)::int8 FROM "
                    "public._odsync_versions v CROSS JOIN LATERAL unnest(string_to_array(v.also, ',')) AS u (e0) CROSS "
                    "JOIN LATERAL (SELECT ltrim(u.e0, '~') AS e) w WHERE w.e LIKE '%:%:%') a GROUP BY node",
                    0, NULL);
  if (!r) return 1;
  int64_t maxhlc = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    for (int x = 0; x < j->n; x++)
      if (!strcmp(j->nodes[x].name, PQgetvalue(r, i, 0))) j->nodes[x].maxts = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    int64_t h = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    if (h > maxhlc) maxhlc = h;
  }
  PQclear(r);
  /* What the joining node has seen of each node Z after the copy: (lsn, time) per Z. */
  char lsn[NODES_MAX][32], ts[NODES_MAX][32];
  for (int x = 0; x < j->n; x++) {
    jnode *nd = &j->nodes[x];
    uint64_t l = x == j->seed ? nd->l : nd->ck;
    int64_t t = nd->t > nd->maxts ? nd->t : nd->maxts;
    if (t == INT64_MIN) t = 0;
    snprintf(lsn[x], sizeof lsn[x], "%X/%X", (unsigned)(l >> 32), (unsigned)l);
    snprintf(ts[x], sizeof ts[x], "%" PRId64, t);
  }
  for (int x = 0; x < j->n; x++) {
    if (x == j->me || x == j->seed) continue;
    const char *pp[] = {s->name, j->nodes[x].name, lsn[x], ts[x]};
    if (!ok(me->c, me->name, "writing the seed's version vector",
            "INSERT INTO public._odsync_peer_vv (peer, node, lsn, ts) VALUES ($1, $2, $3::pg_lsn, $4::int8) ON "
            "CONFLICT (peer, node) DO UPDATE SET lsn = excluded.lsn, ts = excluded.ts", 4, pp))
      return 1;
  }
  /* Every other node keeps what the joining node has seen (its sinks of NODE's pipelines complete
   * NODE's stamps with it): written before the copy commits, raised only (greatest). */
  for (int y = 0; y < j->n; y++) {
    if (y == j->me) continue;
    jnode *ny = &j->nodes[y];
    for (int x = 0; x < j->n; x++) {
      if (x == j->me || x == y) continue;
      const char *pp[] = {me->name, j->nodes[x].name, lsn[x], ts[x]};
      if (!ok(ny->c, ny->name, "raising the joining node's version vector",
              "INSERT INTO public._odsync_peer_vv AS v (peer, node, lsn, ts) VALUES ($1, $2, $3::pg_lsn, $4::int8) ON "
              "CONFLICT (peer, node) DO UPDATE SET lsn = greatest(v.lsn, excluded.lsn), ts = greatest(v.ts, "
              "excluded.ts)", 4, pp))
        return 1;
    }
  }
  char hlc[32], msg[64];
  snprintf(hlc, sizeof hlc, "%" PRId64, maxhlc);
  snprintf(msg, sizeof msg, "%s %" PRId64, ts[j->seed], maxhlc);
  const char *ph[] = {hlc};
  if (maxhlc && !ok(me->c, me->name, "writing the clock", "INSERT INTO public._odsync_hlc (hlc) VALUES ($1::int8)", 1,
                    ph))
    return 1;
  /* For every X, a transaction of its own on the joining node under origin odsync_X (committed
   * before the copy): c's stream readers drop it and learn from its Origin and odsync.hlc message
   * that c has X up to (C_X, ts_X) — a sink into X or S that loaded its persisted vectors before
   * they were raised above still gets that in c's stamps. */
  PGconn *aux = connect_dsn(me->name, me->dsn, false);
  if (!aux) return 1;
  for (int x = 0; x < j->n; x++) {
    if (x == j->me || x == j->seed) continue;
    char o[80], m[64];
    snprintf(o, sizeof o, "odsync_%s", j->nodes[x].name);
    snprintf(m, sizeof m, "%s %" PRId64, ts[x], maxhlc);
    const char *pa[] = {o}, *pb[] = {lsn[x], m};
    if (!ok(aux, me->name, "taking the node's replication origin", "SELECT pg_replication_origin_session_setup($1)", 1,
            pa) ||
        !ok(aux, me->name, "recording what the copy holds of the node", "BEGIN", 0, NULL) ||
        !ok(aux, me->name, "recording what the copy holds of the node",
            "SELECT pg_replication_origin_xact_setup($1::pg_lsn, '2000-01-01 00:00:00+00'::timestamptz), "
            "pg_logical_emit_message(true, 'odsync.hlc', $2)", 2, pb) ||
        !ok(aux, me->name, "recording what the copy holds of the node", "COMMIT", 0, NULL) ||
        !ok(aux, me->name, "releasing the origin", "SELECT pg_replication_origin_session_reset()", 0, NULL)) {
      PQfinish(aux);
      return 1;
    }
  }
  PQfinish(aux);
  /* the checkpoints of the pipelines into the joining node */
  for (int x = 0; x < j->n; x++) {
    if (x == j->me) continue;
    const od_pipeline_config *p = pipeline(j, x, j->me);
    char text[64];
    if (x == j->seed) snprintf(text, sizeof text, "pg:%s", lsn[x]);
    else snprintf(text, sizeof text, "%s", j->nodes[x].ck_text);
    const char *pp[] = {p->name, lsn[x], text};
    if (!ok(me->c, me->name, "writing the checkpoint",
            "INSERT INTO public._odsync_checkpoint (pipeline, position, updated_at, position_text) VALUES ($1, "
            "$2::pg_lsn, now(), $3) ON CONFLICT (pipeline) DO UPDATE SET position = excluded.position, updated_at = "
            "excluded.updated_at, position_text = excluded.position_text", 3, pp))
      return 1;
  }
  /* A vector entry of c is an LSN other nodes wait for (causal delivery: their origin's progress,
   * the commit LSN of the last transaction they applied from that node, must reach it). L_S and
   * C_X are WAL positions, not necessarily commit LSNs: one transaction of each node after them
   * (a message, applied by every sink as an empty transaction) lets those waits end even when the
   * node writes nothing else. */
  for (int x = 0; x < j->n; x++) {
    if (x == j->me) continue;
    const char *pe[] = {me->name};
    if (!ok(j->nodes[x].c, j->nodes[x].name, "emitting a logical message",
            "SELECT pg_logical_emit_message(true, 'odsync.join', $1)", 1, pe))
      return 1;
  }
  const char *pj[] = {me->name, s->name};
  const char *pm[] = {lsn[j->seed], msg};
  if (!ok(me->c, me->name, "marking the node joined",
          "CREATE TABLE IF NOT EXISTS public._odsync_join (node text PRIMARY KEY, seed text NOT NULL, state text NOT "
          "NULL, joined_at timestamptz NOT NULL DEFAULT now())", 0, NULL) ||
      !ok(me->c, me->name, "marking the node joined",
          "INSERT INTO public._odsync_join (node, seed, state) VALUES ($1, $2, 'done') ON CONFLICT (node) DO UPDATE "
          "SET seed = excluded.seed, state = 'done', joined_at = now()", 2, pj) ||
      !ok(me->c, me->name, "setting the origin's progress",
          "SELECT pg_replication_origin_xact_setup($1::pg_lsn, '2000-01-01 00:00:00+00'::timestamptz), "
          "pg_logical_emit_message(true, 'odsync.hlc', $2)", 2, pm) ||
      !ok(me->c, me->name, "committing the copy", "COMMIT", 0, NULL))
    return 1;
  ok(me->c, me->name, "releasing the origin", "SELECT pg_replication_origin_session_reset()", 0, NULL);
  /* A node removed earlier (`odsync mesh remove`) that joins again: the other nodes kept their peers'
   * vector entries for it (LSNs of its WAL before the removal) while their origin odsync_<node>
   * starts anew; one local transaction of the node after the copy moves those origins past them, so
   * causal delivery does not wait for a write the node may never make. */
  const char *pe[] = {me->name};
  ok(me->c, me->name, "emitting a logical message", "SELECT pg_logical_emit_message(true, 'odsync.join', $1)", 1, pe);
  say("node %s joined the mesh from %s: %lld rows copied; its pipelines start at the copied checkpoints", me->name,
      s->name, total);
  return 0;
}

/* A node removed earlier (`odsync mesh remove`) joins again. copy: the seed's marks of the other
 * removed nodes go to the joining node (their entries in the peers' vectors are not waited for there
 * either, nor do their origins hold tombstones), and its own mark on itself goes (the sinks the join
 * opens into it would refuse their sessions; its pipelines into it still wait for the join mark).
 * !copy: its own removal mark goes on every other node, once its slots exist (before, its pipelines
 * out of it, let through, would race the join making their publications and slots). */
static int removal_marks(join *j, bool copy) {
  jnode *me = &j->nodes[j->me];
  const char *pn[] = {me->name};
  for (int x = 0; x < j->n; x++) {
    if (copy ? x != j->seed && x != j->me : x == j->me) continue;
    PGresult *q = run(j->nodes[x].c, j->nodes[x].name, "looking up public._odsync_removed",
                      "SELECT to_regclass('public._odsync_removed') IS NOT NULL", 0, NULL);
    if (!q) return 1;
    bool removed_table = PQgetvalue(q, 0, 0)[0] == 't';
    PQclear(q);
    if (!removed_table) continue;
    if (!copy || x == j->me) {
      if (!ok(j->nodes[x].c, j->nodes[x].name, "clearing the node's removal mark",
              "DELETE FROM public._odsync_removed WHERE node = $1", 1, pn))
        return 1;
      continue;
    }
    if (!(q = run(j->nodes[x].c, j->nodes[x].name, "reading public._odsync_removed",
                  "SELECT node FROM public._odsync_removed WHERE node <> $1", 1, pn)))
      return 1;
    bool good = ok(me->c, me->name, "creating public._odsync_removed",
                   "CREATE TABLE IF NOT EXISTS public._odsync_removed (node text PRIMARY KEY, removed_at timestamptz "
                   "NOT NULL DEFAULT now())", 0, NULL);
    for (int i = 0; good && i < PQntuples(q); i++) {
      const char *pr[] = {PQgetvalue(q, i, 0)};
      good = ok(me->c, me->name, "copying the seed's removal marks",
                "INSERT INTO public._odsync_removed (node) VALUES ($1) ON CONFLICT (node) DO NOTHING", 1, pr);
    }
    PQclear(q);
    if (!good) return 1;
  }
  return 0;
}

/* After a failed copy_into: both transactions rolled back, the joining session's origin released,
 * so that the copy can run again from the same snapshot. Errors are ignored (a step that did not
 * happen fails harmlessly: no transaction, no origin set up). */
static void undo_copy(join *j) {
  jnode *me = &j->nodes[j->me], *s = &j->nodes[j->seed];
  PGconn *cs[] = {me->c, s->c};
  for (int i = 0; i < 2; i++) {
    PGresult *r;
    while ((r = PQgetResult(cs[i]))) PQclear(r); /* a COPY cut short */
    if (PQtransactionStatus(cs[i]) != PQTRANS_IDLE) PQclear(PQexec(cs[i], "ROLLBACK"));
  }
  PQclear(PQexec(me->c, "SELECT pg_replication_origin_session_reset() WHERE pg_replication_origin_session_is_setup()"));
}

static int do_join(join *j) {
  jnode *me = &j->nodes[j->me];
  for (int x = 0; x < j->n; x++)
    if (!(j->nodes[x].c = connect_dsn(j->nodes[x].name, j->nodes[x].dsn, false))) return 1;
  /* a node marked removed on the seed joins again even when it had joined before (its old mark) */
  bool was_removed = false;
  {
    const char *pn[] = {me->name};
    PGresult *q = run(j->nodes[j->seed].c, j->nodes[j->seed].name, "looking up public._odsync_removed",
                      "SELECT to_regclass('public._odsync_removed') IS NOT NULL", 0, NULL);
    if (!q) return 1;
    bool t = PQgetvalue(q, 0, 0)[0] == 't';
    PQclear(q);
    if (t && !(q = run(j->nodes[j->seed].c, j->nodes[j->seed].name, "reading public._odsync_removed",
                       "SELECT 1 FROM public._odsync_removed WHERE node = $1", 1, pn)))
      return 1;
    if (t) was_removed = PQntuples(q) > 0;
    if (t) PQclear(q);
  }
  PGresult *r = run(me->c, me->name, "looking up public._odsync_join",
                    "SELECT to_regclass('public._odsync_join') IS NOT NULL", 0, NULL);
  if (!r) return 1;
  bool table = PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (table && !was_removed) {
    const char *p[] = {me->name};
    if (!(r = run(me->c, me->name, "reading public._odsync_join", "SELECT state, seed FROM public._odsync_join WHERE "
                  "node = $1", 1, p)))
      return 1;
    bool done = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "done");
    if (done) say("node %s has already joined the mesh (from %s): nothing to do", me->name, PQgetvalue(r, 0, 1));
    PQclear(r);
    if (done) return 0;
  }
  if (removal_marks(j, true)) return 1;
  /* 1. the joining node's tables, triggers, origins; its slots towards every other node */
  for (int x = 0; x < j->n; x++) {
    if (x == j->me) continue;
    const od_pipeline_config *p = pipeline(j, x, j->me);
    if (!p || prepare_sink(p)) return p ? 1 : jfail("no pipeline %s -> %s in the config", j->nodes[x].name, me->name);
  }
  for (int i = 0; i < j->ntables; i++) {
    bool empty = false;
    if (!table_empty(j, j->tables[i], &empty)) return 1;
    if (!empty)
      return jfail("node %s: table %s is not empty; a joining node's mesh tables must be empty (the join copies %s's "
                   "rows into them): empty them (TRUNCATE) and run the join again",
                   me->name, j->tables[i], j->nodes[j->seed].name);
  }
  PGconn *repl = connect_dsn(me->name, me->dsn, true);
  if (!repl) return 1;
  for (int x = 0; x < j->n && repl; x++) {
    uint64_t l = 0;
    if (x != j->me && ensure_slot(j, j->me, pipeline(j, j->me, x), repl, NULL, 0, &l)) {
      PQfinish(repl);
      return 1;
    }
  }
  PQfinish(repl);
  if (removal_marks(j, false)) return 1;
  /* 2. X -> joiner from L_X; the seed past L_X */
  for (int x = 0; x < j->n; x++) {
    jnode *nd = &j->nodes[x];
    nd->t = INT64_MIN;
    if (x == j->me || x == j->seed) continue;
    if (!(repl = connect_dsn(nd->name, nd->dsn, true))) return 1;
    nd->t = now_us_on(nd->c, nd->name);
    int rc = nd->t == INT64_MIN || ensure_slot(j, x, pipeline(j, x, j->me), repl, NULL, 0, &nd->l);
    PQfinish(repl);
    /* A slot an earlier attempt made starts before this clock reading: X's writes between the two
     * need not be in the copy, so the clock says nothing of what the joining node has seen of X
     * (ts_X is then the latest copied version of X: a spurious conflict at worst, never a write of
     * X taken as seen that the node has not). */
    if (nd->reused) nd->t = INT64_MIN;
    if (rc || wait_seed_past(j, x)) return 1;
    say("node %s has applied %s past the slot's start", j->nodes[j->seed].name, nd->name);
  }
  /* 3. the seed's slot and its snapshot; 4. the copy */
  jnode *s = &j->nodes[j->seed];
  if (!(repl = connect_dsn(s->name, s->dsn, true))) return 1;
  char snap[128] = "";
  s->t = now_us_on(s->c, s->name);
  int rc = s->t == INT64_MIN || ensure_slot(j, j->seed, pipeline(j, j->seed, j->me), repl, snap, sizeof snap, &s->l);
  if (!rc && !snap[0]) rc = jfail("node %s: the slot exported no snapshot", s->name);
  for (int attempt = 1; !rc; attempt++) {
    last_sqlstate[0] = '\0';
    if (!(rc = copy_into(j, snap)) || !transient_failure() || attempt == COPY_ATTEMPTS) break;
    int ms = 200 * attempt;
    say("node %s: the copy was rolled back (SQLSTATE %s, a transient failure); copying again in %d ms (attempt %d "
        "of %d)", me->name, last_sqlstate, ms, attempt + 1, COPY_ATTEMPTS);
    undo_copy(j);
    usleep((useconds_t)ms * 1000);
    rc = 0;
  }
  PQfinish(repl); /* kept open until here: it holds the exported snapshot every attempt imports */
  return rc;
}

static const char usage[] =
    "usage: odsync mesh join [-c FILE] NODE\n"
    "       odsync mesh remove [-c FILE] [--timeout SECONDS] [--force] NODE (see odsync mesh remove -h)\n"
    "  copy NODE's join_from node into NODE while the mesh runs (docs/MULTI_MASTER.md); NODE's mesh\n"
    "  tables must exist, empty, with the same shape. Applications may write to NODE once it reports\n"
    "  that NODE joined; odsync (with NODE in mesh.nodes) then runs NODE's pipelines.\n";

int od_cli_mesh(int argc, char **argv) {
  const char *path = "odsync.yml", *node = NULL;
  if (argc >= 1 && strcmp(argv[0], "remove") == 0) return od_cli_mesh_remove(argc, argv);
  if (argc < 1 || strcmp(argv[0], "join") != 0) {
    fputs(usage, stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(usage, stdout);
      return 0;
    } else if (argv[i][0] != '-' && !node) node = argv[i];
    else {
      fputs(usage, stderr);
      return 2;
    }
  }
  if (!node) {
    fputs(usage, stderr);
    return 2;
  }
  od_config *cfg = NULL;
  od_error err = {0};
  if (od_config_load(path, &cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    return 2;
  }
  join j = {.cfg = cfg, .me = -1, .seed = -1};
  const char *seed = NULL;
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *p = &cfg->pipelines[i];
    const char *nm = mesh_cli_sval(&p->source, "mesh_node"), *dsn = mesh_cli_sval(&p->source, "dsn");
    if (!nm || !dsn) continue;
    if (p->nsinks && !strcmp(mesh_cli_sval(&p->sinks[0].section, "mesh_node") ? mesh_cli_sval(&p->sinks[0].section, "mesh_node") : "",
                             node) && mesh_cli_sval(&p->sinks[0].section, "mesh_join_from"))
      seed = mesh_cli_sval(&p->sinks[0].section, "mesh_join_from");
    bool seen = false;
    for (int k = 0; k < j.n; k++) seen = seen || !strcmp(j.nodes[k].name, nm);
    if (seen || j.n == NODES_MAX) continue;
    const od_config_entry *t = od_config_find(&p->source, "tables");
    if (t && !j.tables) {
      j.tables = t->list;
      j.ntables = t->nlist;
    }
    j.nodes[j.n++] = (jnode){.name = nm, .dsn = dsn};
  }
  for (int k = 0; k < j.n; k++) {
    if (!strcmp(j.nodes[k].name, node)) j.me = k;
    if (seed && !strcmp(j.nodes[k].name, seed)) j.seed = k;
  }
  int rc;
  if (j.me < 0) rc = jfail("%s: '%s' is not a node of the config's mesh", path, node);
  else if (j.seed < 0)
    rc = jfail("%s: mesh node %s has no join_from; add `join_from: <a running node>` to its entry in mesh.nodes", path,
               node);
  else
    rc = do_join(&j);
  for (int k = 0; k < j.n; k++) PQfinish(j.nodes[k].c);
  od_config_free(cfg);
  return rc;
}
