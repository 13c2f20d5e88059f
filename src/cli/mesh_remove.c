/* mesh_remove.c — `odsync mesh remove -c FILE NODE`: retires NODE (called c below) from a running
 * mesh (docs/MULTI_MASTER.md, "Removing a node from a running mesh", for the argument). Run with the
 * config that still lists c, while odsync runs it; then delete c from mesh.nodes and restart. In order:
 *   1. connects to every node; every remaining node X must be reachable, c only without --force;
 *   2. the drain (skipped with --force, or when an earlier run got past it): a logical message on
 *      c (its LSN L is after every transaction c committed before), then waits until each X's
 *      checkpoint of pipeline c->X (in X's checkpoint table, written with the data) is at or past L;
 *   3. marks c removed in public._odsync_removed on every reachable node: from then on the mesh
 *      sinks of the pipelines c->X (on X) and X->c (on c) refuse their sessions (retriable, before
 *      they create an origin, a publication or a slot: sinks/postgres_mesh_join.c), and the
 *      clean-up no longer waits for c (sinks/postgres_mesh_gc.c);
 *   4. on every X: drops the replication origin odsync_c (ending the sink session holding it), the
 *      slot and publication of X->c (ending the walsender holding the slot), the rows of peer c in
 *      _odsync_peer_vv and the checkpoint row of c->X; on c, when reachable: the slots and
 *      publications of c->X;
 *   5. checks that none of them came back (a session that passed the gate just before the mark).
 * Every step is idempotent: a run that failed half-way is finished by running it again.
 * Owns: its connections and results (closed before returning).
 * Never touches: the mesh tables' data, _odsync_versions, the tombstones, nor the vector entries
 * other peers keep for c (they still judge later writes against c's row versions: docs).
 */
#include "cli/mesh_remove.h"

#include "cli/mesh_cli_util.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "odsync/config.h"

#define NODES_MAX 8

typedef struct rnode {
  const char *name, *dsn; /* borrowed from the config */
  PGconn *c;              /* plain connection (owned; NULL: unreachable c under --force) */
} rnode;

typedef struct removal {
  const od_config *cfg;
  rnode nodes[NODES_MAX];
  int n, me;
  bool force;
  long timeout_s;
} removal;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mesh_cli_vsay("remove", fmt, ap);
  va_end(ap);
}

/* say(), and 1: the removal stops. */
static int rfail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mesh_cli_vsay("remove", fmt, ap);
  va_end(ap);
  return 1;
}

static const od_pipeline_config *pipeline(const removal *r, int from, int to) {
  return mesh_cli_pipeline(r->cfg, r->nodes[from].name, r->nodes[to].name);
}

/* A connection, or NULL with the reason in msg. */
static PGconn *connect_dsn(const char *dsn, char *msg, size_t cap) {
  const char *keys[] = {"dbname", "connect_timeout", "fallback_application_name", NULL};
  const char *vals[] = {dsn, "10", "odsync_mesh_remove", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) == CONNECTION_OK) return c;
  snprintf(msg, cap, "%s", PQerrorMessage(c));
  msg[strcspn(msg, "\n")] = '\0';
  PQfinish(c);
  return NULL;
}

/* Run sql; on failure print what failed where (unless quiet: then its message is in msg) and
 * return NULL. */
static PGresult *run_q(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p,
                       char *msg, size_t cap) {
  PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  char m[600];
  snprintf(m, sizeof m, "%s", PQresultErrorMessage(r));
  m[strcspn(m, "\n")] = '\0';
  if (msg) snprintf(msg, cap, "%s", m);
  else rfail("node %s: %s failed: %s", node, what, m);
  PQclear(r);
  return NULL;
}

static PGresult *run(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p) {
  return run_q(c, node, what, sql, n, p, NULL, 0);
}

static bool ok(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p) {
  PGresult *r = run(c, node, what, sql, n, p);
  PQclear(r);
  return r != NULL;
}

/* A one-value query's text (copied into out); false on failure (printed). */
static bool value(PGconn *c, const char *node, const char *what, const char *sql, int n, const char *const *p,
                  char *out, size_t cap) {
  PGresult *r = run(c, node, what, sql, n, p);
  if (!r) return false;
  snprintf(out, cap, "%s", PQntuples(r) && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  return true;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Whether any remaining node already holds the removal mark of c (an earlier run got past the drain). */
static int marked_before(removal *r, bool *marked) {
  *marked = false;
  const char *p[] = {r->nodes[r->me].name};
  for (int x = 0; x < r->n; x++) {
    if (x == r->me || !r->nodes[x].c) continue;
    char v[8];
    if (!value(r->nodes[x].c, r->nodes[x].name, "looking up public._odsync_removed",
               "SELECT to_regclass('public._odsync_removed') IS NOT NULL", 0, NULL, v, sizeof v))
      return 1;
    if (v[0] != 't') continue;
    if (!value(r->nodes[x].c, r->nodes[x].name, "reading public._odsync_removed",
               "SELECT EXISTS (SELECT 1 FROM public._odsync_removed WHERE node = $1)", 1, p, v, sizeof v))
      return 1;
    *marked = *marked || v[0] == 't';
  }
  return 0;
}

/* 2. Everything c committed before now is applied on every other node. */
static int drain(removal *r) {
  rnode *me = &r->nodes[r->me];
  char l[32];
  const char *pe[] = {me->name};
  if (!value(me->c, me->name, "emitting a logical message", "SELECT pg_logical_emit_message(true, 'odsync.remove', $1)",
             1, pe, l, sizeof l))
    return 1;
  say("node %s is at %s; waiting until every other node has applied it (timeout %ld s)", me->name, l, r->timeout_s);
  double deadline = now_s() + (double)r->timeout_s;
  for (int x = 0; x < r->n; x++) {
    if (x == r->me) continue;
    rnode *nd = &r->nodes[x];
    const od_pipeline_config *p = pipeline(r, r->me, x);
    if (!p) return rfail("no pipeline %s -> %s in the config", me->name, nd->name);
    const char *pp[] = {p->name, l};
    char at[64] = "";
    for (;;) {
      PGresult *q = run(nd->c, nd->name, "reading the checkpoint",
                        "SELECT position >= $2::pg_lsn, position::text FROM public._odsync_checkpoint WHERE pipeline "
                        "= $1", 2, pp);
      if (!q) return 1;
      bool past = PQntuples(q) == 1 && PQgetvalue(q, 0, 0)[0] == 't';
      snprintf(at, sizeof at, "%s", PQntuples(q) == 1 ? PQgetvalue(q, 0, 1) : "nothing (no checkpoint row)");
      PQclear(q);
      if (past) break;
      if (now_s() > deadline)
        return rfail("node %s is behind: it has applied %s only up to %s (checkpoint of pipeline %s), and %s is at %s; "
                     "waited %ld s. Is odsync running this config (with %s in mesh.nodes) and pipeline %s streaming? "
                     "Nothing was removed: run the removal again (--timeout S to wait longer), or with --force if %s's "
                     "changes not yet at %s may be lost",
                     nd->name, me->name, at, p->name, me->name, l, r->timeout_s, me->name, p->name, me->name, nd->name);
      usleep(200000);
    }
    say("node %s has applied %s up to %s (pipeline %s at %s)", nd->name, me->name, l, p->name, at);
  }
  return 0;
}

/* 3. The removal mark on node x. */
static int mark(removal *r, int x) {
  rnode *nd = &r->nodes[x];
  const char *p[] = {r->nodes[r->me].name};
  if (!ok(nd->c, nd->name, "creating public._odsync_removed",
          "CREATE TABLE IF NOT EXISTS public._odsync_removed (node text PRIMARY KEY, removed_at timestamptz NOT NULL "
          "DEFAULT now())", 0, NULL) ||
      !ok(nd->c, nd->name, "marking the node removed",
          "INSERT INTO public._odsync_removed (node) VALUES ($1) ON CONFLICT (node) DO NOTHING", 1, p))
    return 1;
  return 0;
}

/* Drop a slot on node x, ending the walsender that holds it (its pipeline is held back by the mark). */
static int drop_slot(removal *r, int x, const char *slot, bool *dropped) {
  rnode *nd = &r->nodes[x];
  const char *p[] = {slot};
  double deadline = now_s() + 30;
  for (;;) {
    char pid[32];
    PGresult *q = run(nd->c, nd->name, "looking up the slot",
                      "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots WHERE slot_name = $1", 1, p);
    if (!q) return 1;
    bool exists = PQntuples(q) == 1;
    snprintf(pid, sizeof pid, "%s", exists ? PQgetvalue(q, 0, 0) : "");
    PQclear(q);
    if (!exists) return 0;
    char msg[600] = "";
    if (pid[0]) {
      const char *pp[] = {pid};
      if (!ok(nd->c, nd->name, "ending the session that streams from the slot", "SELECT pg_terminate_backend($1::int)",
              1, pp))
        return 1;
      say("node %s: ended the session (PID %s) streaming from slot %s", nd->name, pid, slot);
    } else {
      q = run_q(nd->c, nd->name, "dropping the slot", "SELECT pg_drop_replication_slot($1)", 1, p, msg, sizeof msg);
      PQclear(q);
      if (q) {
        *dropped = true;
        say("node %s: dropped replication slot %s", nd->name, slot);
        return 0;
      }
    }
    if (now_s() > deadline)
      return rfail("node %s: replication slot %s is still in use after 30 s (%s): a process keeps streaming from it; "
                   "stop it (or the odsync running the pipeline) and run the removal again",
                   nd->name, slot, msg[0] ? msg : "its session was ended and came back");
    usleep(200000);
  }
}

static int drop_pipeline_repl(removal *r, int x, const od_pipeline_config *p, bool *dropped) {
  char slot[80], pub[80];
  mesh_cli_repl_name(p, "slot", slot, sizeof slot);
  mesh_cli_repl_name(p, "publication", pub, sizeof pub);
  if (drop_slot(r, x, slot, dropped)) return 1;
  rnode *nd = &r->nodes[x];
  const char *pp[] = {pub};
  char v[8];
  if (!value(nd->c, nd->name, "looking up the publication", "SELECT count(*) FROM pg_publication WHERE pubname = $1",
             1, pp, v, sizeof v))
    return 1;
  if (strcmp(v, "0") != 0) {
    char *q = PQescapeIdentifier(nd->c, pub, strlen(pub)), sql[200];
    snprintf(sql, sizeof sql, "DROP PUBLICATION IF EXISTS %s", q ? q : "");
    PQfreemem(q);
    if (!ok(nd->c, nd->name, "dropping the publication", sql, 0, NULL)) return 1;
    say("node %s: dropped publication %s", nd->name, pub);
    *dropped = true;
  }
  return 0;
}

/* Drop the origin odsync_<c> on node x, ending the sink session that holds it. */
static int drop_origin(removal *r, int x, bool *dropped) {
  rnode *nd = &r->nodes[x];
  char o[80];
  snprintf(o, sizeof o, "odsync_%s", r->nodes[r->me].name);
  const char *p[] = {o};
  double deadline = now_s() + 30;
  for (;;) {
    char v[8], msg[600] = "";
    if (!value(nd->c, nd->name, "looking up the replication origin",
               "SELECT count(*) FROM pg_replication_origin WHERE roname = $1", 1, p, v, sizeof v))
      return 1;
    if (!strcmp(v, "0")) return 0;
    PGresult *q = run_q(nd->c, nd->name, "dropping the replication origin", "SELECT pg_replication_origin_drop($1)", 1,
                        p, msg, sizeof msg);
    PQclear(q);
    if (q) {
      *dropped = true;
      say("node %s: dropped replication origin %s", nd->name, o);
      return 0;
    }
    /* "could not drop replication origin with ID n, in use by PID m": the sink of c -> x */
    const char *in = strstr(msg, "PID ");
    int pid = in ? atoi(in + 4) : 0;
    if (pid > 0) {
      char ps[16];
      snprintf(ps, sizeof ps, "%d", pid);
      const char *pp[] = {ps};
      if (!ok(nd->c, nd->name, "ending the session that holds the origin", "SELECT pg_terminate_backend($1::int)", 1,
              pp))
        return 1;
      say("node %s: ended the session (PID %d) holding replication origin %s", nd->name, pid, o);
    }
    if (now_s() > deadline)
      return rfail("node %s: cannot drop replication origin %s after 30 s: %s; stop the process that holds it and run "
                   "the removal again",
                   nd->name, o, msg);
    usleep(200000);
  }
}

/* 4. on a remaining node x */
static int clean_remaining(removal *r, int x, bool *dropped) {
  rnode *nd = &r->nodes[x];
  const od_pipeline_config *in = pipeline(r, r->me, x), *out = pipeline(r, x, r->me);
  if (!in || !out) return rfail("no pipelines between %s and %s in the config", nd->name, r->nodes[r->me].name);
  if (drop_origin(r, x, dropped) || drop_pipeline_repl(r, x, out, dropped)) return 1;
  const char *pc[] = {r->nodes[r->me].name}, *pp[] = {in->name};
  char v[8];
  if (!value(nd->c, nd->name, "looking up public._odsync_peer_vv",
             "SELECT to_regclass('public._odsync_peer_vv') IS NOT NULL", 0, NULL, v, sizeof v))
    return 1;
  if (v[0] == 't' && !ok(nd->c, nd->name, "deleting the node's version vector",
                         "DELETE FROM public._odsync_peer_vv WHERE peer = $1", 1, pc))
    return 1;
  if (!value(nd->c, nd->name, "looking up public._odsync_checkpoint",
             "SELECT to_regclass('public._odsync_checkpoint') IS NOT NULL", 0, NULL, v, sizeof v))
    return 1;
  if (v[0] == 't' &&
      !ok(nd->c, nd->name, "deleting the checkpoint", "DELETE FROM public._odsync_checkpoint WHERE pipeline = $1", 1, pp))
    return 1;
  return 0;
}

static int do_remove(removal *r) {
  rnode *me = &r->nodes[r->me];
  char msg[600];
  for (int x = 0; x < r->n; x++) {
    if (x == r->me) continue;
    if (!(r->nodes[x].c = connect_dsn(r->nodes[x].dsn, msg, sizeof msg)))
      return rfail("node %s: cannot connect: %s. Every remaining node must be reachable (the removal drops %s's "
                   "slots, origin and rows on each); nothing was changed",
                   r->nodes[x].name, msg, me->name);
  }
  if (!(me->c = connect_dsn(me->dsn, msg, sizeof msg))) {
    if (!r->force)
      return rfail("node %s is unreachable (%s). The removal first waits until every other node has applied "
                   "everything %s committed, which needs %s; nothing was changed. Bring %s back and run it again, or, "
                   "if %s is gone for good, run it with --force: whatever %s committed that a node had not applied "
                   "yet is lost there (those nodes may then differ on the rows involved)",
                   me->name, msg, me->name, me->name, me->name, me->name, me->name);
    say("node %s is unreachable (%s): --force, removing it without waiting; its slots on itself stay", me->name, msg);
  }
  bool marked = false;
  if (marked_before(r, &marked)) return 1;
  if (marked) say("node %s is already marked removed (an earlier run got past the wait): finishing", me->name);
  else if (r->force) say("--force: not waiting for the other nodes to apply %s's changes", me->name);
  else if (drain(r)) return 1;
  for (int x = 0; x < r->n; x++)
    if (r->nodes[x].c && mark(r, x)) return 1;
  say("node %s marked removed: odsync's pipelines to and from %s wait from now on", me->name, me->name);
  bool dropped = false;
  for (int x = 0; x < r->n; x++)
    if (x != r->me && clean_remaining(r, x, &dropped)) return 1;
  for (int x = 0; x < r->n && me->c; x++) {
    const od_pipeline_config *p = x == r->me ? NULL : pipeline(r, r->me, x);
    if (p && drop_pipeline_repl(r, r->me, p, &dropped)) return 1;
  }
  /* 5. a sink or source that passed the mark's check just before it was written may have made
   * its origin or slot again: once more, after such a session has had time to fail */
  if (dropped) {
    sleep(1);
    bool again = false;
    for (int x = 0; x < r->n; x++)
      if (x != r->me && clean_remaining(r, x, &again)) return 1;
    for (int x = 0; x < r->n && me->c; x++) {
      const od_pipeline_config *p = x == r->me ? NULL : pipeline(r, r->me, x);
      if (p && drop_pipeline_repl(r, r->me, p, &again)) return 1;
    }
    if (again) say("a pipeline had made some of them again before the mark stopped it: dropped again");
  }
  say("node %s removed from the mesh. Now delete it from mesh.nodes and restart odsync (until then its pipelines "
      "to and from %s wait, logging that %s was removed)",
      me->name, me->name, me->name);
  return 0;
}

static const char usage[] =
    "usage: odsync mesh remove [-c FILE] [--timeout SECONDS] [--force] NODE\n"
    "  retire NODE from a running mesh (docs/MULTI_MASTER.md): stop the applications writing at NODE,\n"
    "  run this with the config that still lists NODE while odsync runs it, then delete NODE from\n"
    "  mesh.nodes and restart odsync. It waits (default 300 s) until every other node has applied\n"
    "  everything NODE committed, then drops NODE's slots, publications, origin, vectors and\n"
    "  checkpoints on the remaining nodes. --force: do not wait (for a NODE that is gone for good;\n"
    "  what NODE committed that a node had not applied yet is lost there).\n";

int od_cli_mesh_remove(int argc, char **argv) {
  const char *path = "odsync.yml", *node = NULL;
  removal r = {.me = -1, .timeout_s = 300};
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "--force")) r.force = true;
    else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
      char *end = NULL;
      r.timeout_s = strtol(argv[++i], &end, 10);
      if (!end || *end || r.timeout_s <= 0) {
        fprintf(stderr, "odsync mesh remove: --timeout takes a number of seconds > 0, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
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
  r.cfg = cfg;
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *p = &cfg->pipelines[i];
    const char *nm = mesh_cli_sval(&p->source, "mesh_node"), *dsn = mesh_cli_sval(&p->source, "dsn");
    if (!nm || !dsn) continue;
    bool seen = false;
    for (int k = 0; k < r.n; k++) seen = seen || !strcmp(r.nodes[k].name, nm);
    if (!seen && r.n < NODES_MAX) r.nodes[r.n++] = (rnode){.name = nm, .dsn = dsn};
  }
  for (int k = 0; k < r.n; k++)
    if (!strcmp(r.nodes[k].name, node)) r.me = k;
  int rc;
  if (r.me < 0)
    rc = rfail("%s: '%s' is not a node of the config's mesh: run the removal with the config that still lists it in "
               "mesh.nodes (the one odsync runs), and delete it from there afterwards",
               path, node);
  else if (r.n < 3)
    rc = rfail("%s: the mesh has %d nodes; removing %s would leave fewer than two: stop odsync and its pipelines "
               "instead", path, r.n, node);
  else
    rc = do_remove(&r);
  if (rc == 1 && r.me >= 0)
    fprintf(stderr, "odsync mesh remove: the removal of node %s did not complete (what it did is safe to redo: run it "
            "again)\n", node);
  for (int k = 0; k < r.n; k++) PQfinish(r.nodes[k].c);
  od_config_free(cfg);
  return rc;
}
