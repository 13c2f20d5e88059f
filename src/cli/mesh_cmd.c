/* mesh_cmd.c — `odsync check` for a mesh (docs/MULTI_MASTER.md) and `odsync conflicts`.
 * Finds the mesh's nodes in the expanded config (the pipelines whose source has mesh_node: its dsn
 * and tables), connects to each node once with libpq and reads its settings, table shapes, SQL
 * rules (prepared and probed, common/mesh_sqlrule.c: its probe objects are rolled back) and
 * conflict log (_odsync_conflicts, next to the default checkpoint table).
 * Owns: its connections and results, closed before returning. Never writes to a node.
 */
#include "cli/mesh_cmd.h"

#include "common/mesh_sqlrule.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES_MAX 8

typedef struct node {
  const char *name, *dsn; /* borrowed from the config */
  char *const *tables;
  int ntables;
  char *const *counters; /* the sink's mesh_counters, schema.table.column */
  int ncounters;
  const od_config_section *sink; /* its sink section: mesh_policy, mesh_table_policies */
} node;

static int mesh_nodes(const od_config *cfg, node *out) {
  int n = 0;
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_config_section *src = &cfg->pipelines[i].source;
    const od_config_entry *nm = od_config_find(src, "mesh_node"), *dsn = od_config_find(src, "dsn"),
                          *t = od_config_find(src, "tables");
    if (!nm || !nm->value || !dsn || !dsn->value) continue;
    bool seen = false;
    for (int j = 0; j < n; j++) seen = seen || strcmp(out[j].name, nm->value) == 0;
    if (seen || n == NODES_MAX) continue;
    const od_config_entry *ctr = cfg->pipelines[i].nsinks ? od_config_find(&cfg->pipelines[i].sinks[0].section,
                                                                           "mesh_counters") : NULL;
    out[n++] = (node){.name = nm->value, .dsn = dsn->value, .tables = t ? t->list : NULL, .ntables = t ? t->nlist : 0,
                      .counters = ctr ? ctr->list : NULL, .ncounters = ctr ? ctr->nlist : 0,
                      .sink = cfg->pipelines[i].nsinks ? &cfg->pipelines[i].sinks[0].section : NULL};
  }
  return n;
}

static PGconn *connect_node(const node *nd, char *msg, size_t cap) {
  const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *vals[] = {"10", "odsync_check", nd->dsn, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) == CONNECTION_OK) return c;
  snprintf(msg, cap, "mesh node %s: cannot connect: %s", nd->name, PQerrorMessage(c));
  msg[strcspn(msg, "\n")] = '\0';
  PQfinish(c);
  return NULL;
}

/* Whether a mesh table's policy is column_merge (its mesh.policies entry, else mesh.policy). */
static bool column_merge(const node *nd, const char *table) {
  if (!nd->sink) return false;
  const od_config_entry *tp = od_config_find(nd->sink, "mesh_table_policies"),
                        *pol = od_config_find(nd->sink, "mesh_policy");
  size_t tl = strlen(table);
  for (int i = 0; tp && i < tp->nlist; i++)
    if (strncmp(tp->list[i], table, tl) == 0 && tp->list[i][tl] == ' ')
      return strncmp(tp->list[i] + tl + 1, "column_merge ", 13) == 0;
  return pol && pol->value && strcmp(pol->value, "column_merge") == 0;
}

static const char SHAPE_SQL[] =
    "SELECT (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) "
    "FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), "
    "(SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
    "i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = c.oid AND i.indisprimary), "
    "(SELECT i.indimmediate FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
    "FROM pg_class c WHERE c.oid = to_regclass($1)";

int od_cli_mesh_check(const od_config *cfg, void (*problem)(void *ctx, bool fatal, const char *msg), void *ctx) {
  node nodes[NODES_MAX];
  int n = mesh_nodes(cfg, nodes), fatal = 0;
  char msg[1024];
  char *shape[NODES_MAX][64] = {{0}};
  uint64_t rule_warned = 0; /* SQL rules warned about (bit k: mesh.rules[k]) */
  for (int i = 0; i < n; i++) {
    PGconn *c = connect_node(&nodes[i], msg, sizeof msg);
    if (!c) {
      problem(ctx, true, msg);
      fatal++;
      continue;
    }
    PGresult *r = PQexec(c, "SELECT current_setting('wal_level'), current_setting('track_commit_timestamp')");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      if (strcmp(PQgetvalue(r, 0, 0), "logical") != 0) {
        snprintf(msg, sizeof msg, "mesh node %s: wal_level is %s; set wal_level = logical and restart the server",
                 nodes[i].name, PQgetvalue(r, 0, 0));
        problem(ctx, true, msg);
        fatal++;
      }
      if (strcmp(PQgetvalue(r, 0, 1), "on") != 0) {
        snprintf(msg, sizeof msg, "mesh node %s: track_commit_timestamp is %s; conflict detection reads every row's "
                 "commit timestamp: set track_commit_timestamp = on and restart the server", nodes[i].name,
                 PQgetvalue(r, 0, 1));
        problem(ctx, true, msg);
        fatal++;
      }
    }
    PQclear(r);
    for (int t = 0; t < nodes[i].ntables && t < 64; t++) {
      const char *p[] = {nodes[i].tables[t]};
      r = PQexecParams(c, SHAPE_SQL, 1, NULL, p, NULL, NULL, 0);
      if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        snprintf(msg, sizeof msg, "mesh node %s: table %s does not exist; create it on every node with the same "
                 "columns and primary key", nodes[i].name, nodes[i].tables[t]);
        problem(ctx, true, msg);
        fatal++;
      } else if (PQgetisnull(r, 0, 1)) {
        snprintf(msg, sizeof msg, "mesh node %s: table %s has no primary key; a mesh matches rows by key on every "
                 "node: add one", nodes[i].name, nodes[i].tables[t]);
        problem(ctx, true, msg);
        fatal++;
      } else if (strcmp(PQgetvalue(r, 0, 2), "f") == 0) {
        /* A deferred key lets one transaction hold two rows under a key for a while (SET id = id + 1
         * over adjacent keys): its moves arrive one by one, and the row moved onto a key still held
         * would replace the row that leaves it later (docs/MULTI_MASTER.md, "Updates that change
         * the key"). */
        snprintf(msg, sizeof msg, "mesh node %s: table %s has a DEFERRABLE primary key; a mesh applies each key "
                 "change in the order it was made, which a deferred key does not keep: make it NOT DEFERRABLE",
                 nodes[i].name, nodes[i].tables[t]);
        problem(ctx, true, msg);
        fatal++;
      } else {
        size_t len = strlen(PQgetvalue(r, 0, 0)) + strlen(PQgetvalue(r, 0, 1)) + 16;
        if ((shape[i][t] = malloc(len)))
          snprintf(shape[i][t], len, "(%s) key (%s)", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
      }
      PQclear(r);
    }
    for (int t = 0; t < nodes[i].ntables; t++) {
      /* column_merge compares the old and the new row of every update: REPLICA IDENTITY FULL */
      if (!column_merge(&nodes[i], nodes[i].tables[t])) continue;
      const char *p[] = {nodes[i].tables[t]};
      r = PQexecParams(c, "SELECT c.relreplident FROM pg_class c WHERE c.oid = to_regclass($1)", 1, NULL, p, NULL,
                       NULL, 0);
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "f") != 0) {
        snprintf(msg, sizeof msg, "mesh node %s: table %s has policy column_merge, which needs REPLICA IDENTITY FULL "
                 "(a merge compares the old and the new row of each update): ALTER TABLE %s REPLICA IDENTITY FULL",
                 nodes[i].name, nodes[i].tables[t], nodes[i].tables[t]);
        problem(ctx, true, msg);
        fatal++;
      }
      PQclear(r);
    }
    for (int k = 0; k < nodes[i].ncounters; k++) {
      /* schema.table.column: the table must keep its old rows (REPLICA IDENTITY FULL), the column be
       * an integer. */
      char tbl[300];
      const char *col = strrchr(nodes[i].counters[k], '.');
      if (!col) continue;
      snprintf(tbl, sizeof tbl, "%.*s", (int)(col - nodes[i].counters[k]), nodes[i].counters[k]);
      const char *p[] = {tbl, col + 1};
      r = PQexecParams(c,
                       "SELECT c.relreplident, (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a WHERE "
                       "a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) FROM pg_class c WHERE c.oid = "
                       "to_regclass($1)", 2, NULL, p, NULL, NULL, 0);
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        const char *ty = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1);
        if (strcmp(PQgetvalue(r, 0, 0), "f") != 0) {
          snprintf(msg, sizeof msg, "mesh node %s: counter %s: table %s needs REPLICA IDENTITY FULL (the delta is "
                   "new - old): ALTER TABLE %s REPLICA IDENTITY FULL", nodes[i].name, nodes[i].counters[k], tbl, tbl);
          problem(ctx, true, msg);
          fatal++;
        }
        if (strcmp(ty, "integer") != 0 && strcmp(ty, "bigint") != 0 && strcmp(ty, "smallint") != 0) {
          snprintf(msg, sizeof msg, "mesh node %s: counter %s: expected an integer column, found %s", nodes[i].name,
                   nodes[i].counters[k], *ty ? ty : "no such column");
          problem(ctx, true, msg);
          fatal++;
        }
      }
      PQclear(r);
    }
    /* SQL rules: prepared against their table on every node, immutable, one boolean */
    const od_config_entry *rules = nodes[i].sink ? od_config_find(nodes[i].sink, "mesh_rules") : NULL;
    for (int k = 0; rules && k < rules->nlist; k++) {
      char tbl[300], why[400];
      const char *expr;
      if (!od_mesh_sqlrule_split(rules->list[k], tbl, sizeof tbl, &expr)) continue;
      if (od_mesh_sqlrule_check(c, tbl, expr, why, sizeof why)) {
        snprintf(msg, sizeof msg, "mesh node %.64s: mesh.rules[%d] on table %.200s ('%.300s'): %.400s", nodes[i].name, k,
                 tbl, expr, why);
        problem(ctx, true, msg);
        fatal++;
      } else if (k < 64 && !(rule_warned & (1ull << k))) {
        /* A delete is ranked as the row it deleted: its stream carries that row only with REPLICA
         * IDENTITY FULL at its author, so a node without it leaves the rule nothing to rank. Once per
         * rule, at the first node without it. */
        const char *tp[] = {tbl};
        PGresult *ri = PQexecParams(c, "SELECT relreplident FROM pg_class WHERE oid = to_regclass($1)", 1, NULL, tp,
                                    NULL, NULL, 0);
        if (PQresultStatus(ri) == PGRES_TUPLES_OK && PQntuples(ri) == 1 && strcmp(PQgetvalue(ri, 0, 0), "f") != 0) {
          snprintf(msg, sizeof msg, "mesh.rules[%d] on table %.200s is an SQL rule: it ranks a delete as the row it "
                   "deleted, which the stream carries only with REPLICA IDENTITY FULL, missing on node %.64s: rows of "
                   "%.200s deleted concurrently at two nodes can leave the nodes apart (docs/MULTI_MASTER.md, \"Rules "
                   "and concurrent deletes\"); run ALTER TABLE %.200s REPLICA IDENTITY FULL on every node", k, tbl,
                   nodes[i].name, tbl, tbl);
          problem(ctx, false, msg);
          rule_warned |= 1ull << k;
        }
        PQclear(ri);
      }
    }
    PQfinish(c);
  }
  for (int i = 1; i < n; i++)
    for (int t = 0; t < nodes[0].ntables && t < 64; t++) {
      if (!shape[0][t] || !shape[i][t] || strcmp(shape[0][t], shape[i][t]) == 0) continue;
      snprintf(msg, sizeof msg, "mesh: table %s differs between node %s %.300s and node %s %.300s; the mesh needs "
               "the same columns, types and key everywhere", nodes[0].tables[t], nodes[0].name, shape[0][t],
               nodes[i].name, shape[i][t]);
      problem(ctx, true, msg);
      fatal++;
    }
  for (int i = 0; i < n; i++)
    for (int t = 0; t < 64; t++) free(shape[i][t]);
  if (n && !fatal) printf("ok: mesh of %d nodes: settings, keys and table shapes agree\n", n);
  if (n) fatal += od_cli_mesh_plugin_check(cfg, problem, ctx);
  return fatal;
}

int od_cli_conflicts(const od_config *cfg, long limit) {
  node nodes[NODES_MAX];
  int n = mesh_nodes(cfg, nodes), rc = 0;
  if (!n) {
    fputs("odsync: the config has no mesh (conflicts are logged by mesh nodes)\n", stderr);
    return 2;
  }
  char msg[1024], lim[32];
  snprintf(lim, sizeof lim, "%ld", limit);
  for (int i = 0; i < n; i++) {
    PGconn *c = connect_node(&nodes[i], msg, sizeof msg);
    if (!c) {
      fprintf(stderr, "odsync: %s\n", msg);
      rc = 1;
      continue;
    }
    const char *p[] = {lim};
    PGresult *r = PQexecParams(
        c,
        /* a unique conflict names its index (index_name; read through to_jsonb: an older log lacks it) */
        "SELECT * FROM (SELECT id, to_char(logged_at, 'YYYY-MM-DD HH24:MI:SS.US'), kind || coalesce(' (' || "
        "(to_jsonb(c.*) ->> 'index_name') || ')', ''), table_name, key, local_origin, "
        "coalesce(to_char(local_commit_ts, 'HH24:MI:SS.US'), '-'), remote_origin, to_char(remote_commit_ts, "
        "'HH24:MI:SS.US'), policy, winner, coalesce(local_row::text, '-'), coalesce(remote_row::text, '-'), "
        /* the hybrid logical clocks that ordered the pair (absent from a log no sink of this version
         * has opened yet: '-') */
        "coalesce(to_char('1970-01-01 00:00:00+00'::timestamptz + (to_jsonb(c) ->> 'local_hlc')::int8 * "
        "interval '1 microsecond', 'HH24:MI:SS.US'), '-'), coalesce(to_char('1970-01-01 00:00:00+00'::timestamptz + "
        "(to_jsonb(c) ->> 'remote_hlc')::int8 * interval '1 microsecond', 'HH24:MI:SS.US'), '-') "
        "FROM public._odsync_conflicts c ORDER BY id DESC LIMIT $1::bigint) x ORDER BY 1",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      fprintf(stderr, "odsync: mesh node %s: reading public._odsync_conflicts: %s", nodes[i].name,
              PQerrorMessage(c));
      rc = 1;
    } else {
      printf("node %s: %d conflict%s%s\n", nodes[i].name, PQntuples(r), PQntuples(r) == 1 ? "" : "s",
             PQntuples(r) == limit ? " (the newest; --limit for more)" : "");
      for (int k = 0; k < PQntuples(r); k++)
        printf("  %s %-13s %s key (%s): local %s@%s (hlc %s) vs remote %s@%s (hlc %s) -> %s wins (%s)\n"
               "    local %s\n    remote %s\n",
               PQgetvalue(r, k, 1), PQgetvalue(r, k, 2), PQgetvalue(r, k, 3), PQgetvalue(r, k, 4),
               PQgetvalue(r, k, 5), PQgetvalue(r, k, 6), PQgetvalue(r, k, 13), PQgetvalue(r, k, 7),
               PQgetvalue(r, k, 8), PQgetvalue(r, k, 14), PQgetvalue(r, k, 10), PQgetvalue(r, k, 9),
               PQgetvalue(r, k, 11), PQgetvalue(r, k, 12));
    }
    PQclear(r);
    PQfinish(c);
  }
  return rc;
}
