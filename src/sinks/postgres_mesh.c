/* sinks/postgres_mesh.c — the PostgreSQL sink's side of a multi-master mesh (docs/MULTI_MASTER.md).
 *
 * Owns: the pgs_mesh state of a sink whose config names mesh_node/mesh_peer: the replication origin
 * "odsync_<peer>" of its session, the stamps of the source transactions of the open batch (parsed
 * from the source's "odsync.mesh" messages), the per-key version state of the open target
 * transaction, the conflict log table (_odsync_conflicts), the tombstones (_odsync_tombstones),
 * the row-version side table (_odsync_versions), all next to the checkpoint table, and the
 * causal-delivery progress cache.
 * Does, per apply() batch (several source transactions share one target transaction; a row's
 * version is the side table's when a mesh sink wrote it last, else its xmin's commit time):
 *   - waits until every transaction of a third node a stamp's version vector depends on has been
 *     applied here (causal delivery), committing what came before it first (checkpoint at its
 *     start: exactly-once as before, the checkpoint holds every transaction starting before it),
 *   - per table, SELECT ... ORDER BY key FOR UPDATE of the rows and tombstones of the keys the
 *     batch writes, then the same statement again to read their versions after the lock waits;
 *     each change is compared with its own transaction's version vector: a remote write is a
 *     conflict only when the key's version is concurrent with it; conflicts are resolved by the
 *     policy and logged in _odsync_conflicts in the same transaction, the losing changes are left
 *     out of what postgres_apply.c applies,
 *   - after the apply: merged counters, rewritten tombstones, one statement that writes the
 *     versions of the keys written and pg_replication_origin_xact_setup(last commit LSN, latest
 *     commit time).
 * Never touches: statement text of the apply path, DDL, the checkpoint's SQL (postgres.c).
 * Pointer ownership: change values are borrowed for one apply() call; the filtered array holds
 * copies of od_change structs pointing at the caller's values and is reset before returning; key
 * states own their key text and column values (freed by dec_clear at every run, begin, rollback).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/adapter.h"
#include "sinks/postgres_internal.h"
#include "sinks/postgres_mesh.h"

#define MESH_PREFIX "odsync.mesh"
#define VV_MAX 16
#define KEYS_PER_QUERY 500
#define CAUSAL_WAIT_US (120LL * 1000000LL)
#define COUNTERS_MAX 8 /* fetched columns per table: counters plus rule columns */
#define RULES_MAX 16

enum { POL_LWW, POL_PRIORITY, POL_KEEP_LOCAL, POL_APPLY_REMOTE };
#define KINDS 5
static const char *const KIND_NAMES[KINDS] = {"insert_insert", "update_update", "update_delete", "insert_delete",
                                              "delete_delete"};
static const char *const POLICIES[] = {"last_writer_wins", "priority", "keep_local", "apply_remote", NULL};

typedef struct vv_entry {
  char node[64];
  uint64_t lsn;
  int64_t ts;
} vv_entry;

/* The stamp of one source transaction (parsed from its "odsync.mesh" message). */
typedef struct stamp {
  uint64_t seq; /* this sink's running number of stamped source transactions */
  uint64_t lsn; /* the source commit LSN */
  int64_t ts;   /* the author's commit time, µs since 1970 */
  int64_t hlc;  /* the transaction's hybrid logical clock, µs (= ts when the author's clock led) */
  vv_entry vv[VV_MAX];
  int nvv;
} stamp;

typedef struct local_ver { /* one row of the versions query */
  char *key;               /* key columns' text joined by \x1f (points into the PGresult) */
  int64_t ts;              /* commit time µs, INT64_MIN when unknown */
  int64_t hlc;             /* hybrid logical clock µs (the side table's; else the commit time) */
  const char *origin;      /* replication origin name or author node, NULL: a local write */
  bool tomb;               /* no row: the key's tombstone (the local delete's version) */
  const char *ctr[COUNTERS_MAX]; /* the counter and rule columns' local values (text) */
} local_ver;

/* What this target transaction knows of one (relation, key): the version the row has after the
 * changes decided so far (the database's, until a remote change of this sink wins), so several
 * source transactions share one target transaction without reading back their own writes. */
typedef struct decision {
  const od_relation *rel;
  const pg_rel *r;
  char *key;        /* malloc'd */
  uint64_t seq;     /* stamp seq of the last decided change (0: none yet) */
  bool apply;       /* that change's decision (later changes of the same source transaction follow) */
  bool has_ver;     /* the key has a version here (a row or a tombstone) */
  bool tomb;        /* ... and it is a tombstone */
  bool ours;        /* the version was written by this sink in this transaction: already seen */
  bool queued;      /* in the side-table write list of the open run */
  bool fix;         /* counters lost a conflict: set them to ctr after the run's apply */
  bool touch;       /* a delete applied to a tombstone: rewrite the tombstone (its version is ours) */
  char node[64];    /* the version's author ("" unknown) */
  int64_t ts, hlc;  /* its commit time and clock (INT64_MIN: unknown) */
  int nval;
  char *val[COUNTERS_MAX]; /* counter and rule columns' values of the version (malloc'd, NULL: null) */
  long long ctr[COUNTERS_MAX]; /* the counters' current values (fix) */
} decision;

typedef struct pgs_mesh {
  char node[64], peer[64], origin[80];
  int policy;
  char prio[8][64];
  int nprio;
  char *log_q;  /* quoted conflict table */
  char *tomb_q; /* quoted tombstone table */
  char *fn_q;   /* quoted tombstone trigger function */
  char *ver_q;  /* quoted row-version side table (_odsync_versions) */
  char **tables; /* mesh_tables: the tables whose deletes leave tombstones (malloc'd) */
  int ntables;
  char **counters; /* mesh_counters: "schema.table.column" merged as a sum of deltas (malloc'd) */
  int ncounters;
  /* mesh_rules: business rules deciding concurrent insert/update conflicts before the policy */
  struct rule {
    char *column;   /* "schema.table.column" (malloc'd) */
    char **order;   /* NULL: the higher number wins; else the values from lowest to highest (malloc'd) */
    int norder;
  } rules[RULES_MAX];
  int nrules;
  /* per run: updates rewritten by the counter merge (values and texts malloc'd) */
  struct override { size_t idx; od_value *vals; char **texts; int ntexts; } *ovr;
  size_t novr, ovr_cap;
  /* the stamps of the open run (the last one carries over to the next apply() call) */
  stamp *st;
  int nst, st_cap;
  uint64_t seq;
  bool txn_has_data; /* the open target transaction holds stamped source transactions */
  int64_t max_ts;    /* the latest commit time of its source transactions (the origin's progress time) */
  /* causal delivery: LSN of each origin applied here (cache of pg_replication_origin_status) */
  vv_entry prog[VV_MAX];
  int nprog;
  /* scratch */
  od_change *keep;
  size_t keep_cap;
  int *sidx;          /* per change of the apply() call: its stamp index in st, -1 none */
  size_t sidx_cap;
  decision *dec;      /* every key of the open target transaction */
  size_t ndec, dec_cap;
  uint32_t *slots;   /* hash of dec: index + 1, 0 empty; slot_cap a power of two > 2 * ndec */
  size_t slot_cap;
  size_t *wr;        /* dec indexes to write to the side table (and fix) after the run's apply */
  size_t nwr, wr_cap;
  uint64_t conflicts, applied_txns;
  od_metric *m_txns;                  /* odsync_mesh_transactions_total{node, peer} */
  od_metric *m_conflicts[KINDS];      /* odsync_mesh_conflicts_total{node, peer, kind}, by KIND_NAMES */
} pgs_mesh;

/* ---- config ---------------------------------------------------------------------------------- */

static const od_config_entry *find(const od_config_section *cfg, const char *k) { return od_config_find(cfg, k); }

int pgs_mesh_config(pgs_sink *s, const od_config_section *cfg, const char *schema_q, od_error *err) {
  const char *node = NULL, *peer = NULL, *pol = NULL;
  int rc;
  if ((rc = od_config_string(cfg, "mesh_node", NULL, &node, err)) ||
      (rc = od_config_string(cfg, "mesh_peer", NULL, &peer, err)) ||
      (rc = od_config_string(cfg, "mesh_policy", "last_writer_wins", &pol, err)))
    return rc;
  if (!node && !peer) return OD_OK;
  if (!node || !peer || !*node || !*peer) {
    const od_config_entry *e = find(cfg, node ? "mesh_node" : "mesh_peer");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: mesh_node and mesh_peer go together (this node's and the "
                   "source node's mesh names); set both or neither", cfg->file, e ? e->line : cfg->line,
                   e ? e->col : cfg->col, cfg->path);
  }
  const char *names[2] = {node, peer};
  for (int i = 0; i < 2; i++) {
    bool ok = strlen(names[i]) <= 48;
    for (const char *c = names[i]; *c && ok; c++)
      ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (!ok) {
      const od_config_entry *e = find(cfg, i ? "mesh_peer" : "mesh_node");
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.%s '%s' must be 1-48 characters of a-z, 0-9 and _", cfg->file,
                     e ? e->line : cfg->line, e ? e->col : cfg->col, cfg->path, i ? "mesh_peer" : "mesh_node",
                     names[i]);
    }
  }
  pgs_mesh *m = calloc(1, sizeof *m);
  if (!m) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  s->mesh = m;
  snprintf(m->node, sizeof m->node, "%s", node);
  snprintf(m->peer, sizeof m->peer, "%s", peer);
  snprintf(m->origin, sizeof m->origin, "odsync_%s", peer);
  m->policy = -1;
  for (int i = 0; POLICIES[i]; i++)
    if (strcmp(pol, POLICIES[i]) == 0) m->policy = i;
  if (m->policy < 0) {
    const od_config_entry *e = find(cfg, "mesh_policy");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.mesh_policy '%s' is not a policy; expected last_writer_wins, "
                   "priority, keep_local or apply_remote", cfg->file, e ? e->line : cfg->line, e ? e->col : cfg->col,
                   cfg->path, pol);
  }
  char *const *list = NULL;
  int n = 0;
  if ((rc = od_config_list(cfg, "mesh_priority", &list, &n, err))) return rc;
  for (int i = 0; i < n && i < 8; i++) snprintf(m->prio[m->nprio++], sizeof m->prio[0], "%s", list[i]);
  if (m->policy == POL_PRIORITY && !n) {
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: mesh_policy priority needs mesh_priority, the node names from "
                   "the most to the least trusted", cfg->file, cfg->line, cfg->col, cfg->path);
  }
  if ((rc = od_config_list(cfg, "mesh_counters", &list, &n, err))) return rc;
  if (n && !(m->counters = calloc((size_t)n, sizeof *m->counters))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    if (!(m->counters[i] = strdup(list[i]))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    m->ncounters++;
  }
  if ((rc = od_config_list(cfg, "mesh_rules", &list, &n, err))) return rc;
  for (int i = 0; i < n; i++) {
    const od_config_entry *e = find(cfg, "mesh_rules");
    const char *colon = strchr(list[i], ':');
    size_t cl = colon ? (size_t)(colon - list[i]) : 0;
    int dots = 0;
    for (size_t k = 0; k < cl; k++) dots += list[i][k] == '.';
    const char *rest = colon ? colon + 1 : "";
    while (*rest == ' ') rest++;
    if (!colon || dots != 2 || !*rest || m->nrules == RULES_MAX)
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.mesh_rules[%d] '%s': expected 'schema.table.column: higher wins' or "
                     "'schema.table.column: a < b < c' (at most %d rules)", cfg->file,
                     e && e->list_line ? e->list_line[i] : cfg->line, e && e->list_col ? e->list_col[i] : cfg->col,
                     cfg->path, i, list[i], RULES_MAX);
    struct rule *ru = &m->rules[m->nrules++];
    if (!(ru->column = strndup(list[i], cl))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    if (strcmp(rest, "higher wins") == 0) continue;
    char *copy = strdup(rest), *save = NULL;
    if (!copy) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    for (char *t = strtok_r(copy, "<", &save); t; t = strtok_r(NULL, "<", &save)) {
      while (*t == ' ') t++;
      size_t tl = strlen(t);
      while (tl && t[tl - 1] == ' ') t[--tl] = '\0';
      char **g = realloc(ru->order, (size_t)(ru->norder + 1) * sizeof *g);
      if (!g || !(g[ru->norder] = strdup(t))) {
        free(copy);
        if (g) ru->order = g;
        return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
      }
      ru->order = g;
      ru->norder++;
    }
    free(copy);
    if (ru->norder < 2)
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.mesh_rules[%d] '%s': an order needs at least two values (a < b)",
                     cfg->file, e && e->list_line ? e->list_line[i] : cfg->line,
                     e && e->list_col ? e->list_col[i] : cfg->col, cfg->path, i, list[i]);
  }
  if ((rc = od_config_list(cfg, "mesh_tables", &list, &n, err))) return rc;
  if (n && !(m->tables = calloc((size_t)n, sizeof *m->tables))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    if (!(m->tables[i] = strdup(list[i]))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    m->ntables++;
  }
  static const char *const tx_labels[] = {"node", "peer", NULL}, *const c_labels[] = {"node", "peer", "kind", NULL};
  static const od_metric_family_def tx_def = {.name = "odsync_mesh_transactions_total",
                                              .help = "Source transactions a mesh sink applied, by node and peer",
                                              .type = OD_METRIC_COUNTER, .labels = tx_labels};
  static const od_metric_family_def c_def = {.name = "odsync_mesh_conflicts_total",
                                             .help = "Conflicts (concurrent writes) a mesh sink detected and resolved",
                                             .type = OD_METRIC_COUNTER, .labels = c_labels};
  od_metric_family *ftx = od_metrics_family(od_metrics_global(), &tx_def);
  od_metric_family *fc = od_metrics_family(od_metrics_global(), &c_def);
  const char *txv[] = {m->node, m->peer};
  m->m_txns = ftx ? od_metrics_series(ftx, txv) : NULL;
  for (int k = 0; k < KINDS; k++) {
    const char *cv[] = {m->node, m->peer, KIND_NAMES[k]};
    m->m_conflicts[k] = fc ? od_metrics_series(fc, cv) : NULL;
  }
  const char *tnames[4] = {"_odsync_conflicts", "_odsync_tombstones", "_odsync_tombstone", "_odsync_versions"};
  char **outs[4] = {&m->log_q, &m->tomb_q, &m->fn_q, &m->ver_q};
  for (int i = 0; i < 4; i++) {
    od_sqlbuf b = {0};
    od_sqlbuf_add(&b, schema_q);
    od_sqlbuf_add(&b, ".");
    od_sqlbuf_ident(&b, tnames[i]);
    *outs[i] = b.oom ? NULL : strdup(b.p);
    od_sqlbuf_free(&b);
    if (!*outs[i]) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  }
  return OD_OK;
}

static void dec_clear(pgs_mesh *m);

void pgs_mesh_free(pgs_sink *s) {
  pgs_mesh *m = s->mesh;
  if (!m) return;
  if (m->conflicts || m->applied_txns)
    od_info("postgres sink %s: mesh %s <- %s: %" PRIu64 " transactions applied, %" PRIu64 " conflicts", s->where,
            m->node, m->peer, m->applied_txns, m->conflicts);
  dec_clear(m);
  free(m->dec);
  free(m->slots);
  free(m->keep);
  free(m->sidx);
  free(m->st);
  free(m->wr);
  free(m->ver_q);
  free(m->log_q);
  free(m->tomb_q);
  free(m->fn_q);
  for (int i = 0; i < m->ntables; i++) free(m->tables[i]);
  free(m->tables);
  for (int i = 0; i < m->ncounters; i++) free(m->counters[i]);
  free(m->counters);
  for (int i = 0; i < m->nrules; i++) {
    free(m->rules[i].column);
    for (int k = 0; k < m->rules[i].norder; k++) free(m->rules[i].order[k]);
    free(m->rules[i].order);
  }
  free(m->ovr);
  free(m);
  s->mesh = NULL;
}

/* ---- session: origin and conflict table ----------------------------------------------------- */

int pgs_mesh_session(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m) return OD_OK;
  /* Table and origin in one transaction under odsync's DDL lock: the mesh's other sinks on this
   * node connect at the same moment. */
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "BEGIN; " PGS_DDL_LOCK "; CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->log_q);
  od_sqlbuf_add(b, " (id bigserial PRIMARY KEY, logged_at timestamptz NOT NULL DEFAULT now(), node text NOT NULL, "
                   "kind text NOT NULL, table_name text NOT NULL, key text NOT NULL, local_row jsonb, remote_row jsonb, "
                   "local_origin text NOT NULL, remote_origin text NOT NULL, local_commit_ts timestamptz, "
                   "remote_commit_ts timestamptz NOT NULL, remote_lsn pg_lsn NOT NULL, policy text NOT NULL, "
                   "winner text NOT NULL); ");
  od_sqlbuf_addf(b, "SELECT pg_replication_origin_create('%s') WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_origin WHERE roname = '%s'); ", m->origin, m->origin);
  /* Tombstones: every delete of a mesh table (local or applied) leaves (table, key); the row's
   * xmin is the deleting transaction, whose commit time and origin are the delete's version. */
  /* Row versions written by mesh sinks: the author, its commit time and clock of every row version
   * (or delete) a sink applied, written in the applying transaction. A row whose xmin carries no
   * replication origin was written locally after that, and its xmin's commit time is its version. */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->ver_q);
  od_sqlbuf_add(b, " (tbl text NOT NULL, key text NOT NULL, node text NOT NULL, ts int8 NOT NULL, hlc int8 NOT NULL, "
                   "PRIMARY KEY (tbl, key)); ");
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " (tbl text NOT NULL, key text NOT NULL, deleted_at timestamptz NOT NULL DEFAULT now(), "
                   "PRIMARY KEY (tbl, key)); CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->fn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE k text; j jsonb := to_jsonb(OLD); BEGIN "
                   "SELECT string_agg(j ->> a, chr(31) ORDER BY o) INTO k FROM unnest(TG_ARGV) WITH ORDINALITY AS u(a, o); "
                   "INSERT INTO ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " AS d (tbl, key) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, k) ON CONFLICT (tbl, key) DO "
                   "UPDATE SET deleted_at = now(); RETURN NULL; END $odsync$; ");
  for (int i = 0; i < m->ntables; i++) {
    char *lit = PQescapeLiteral(s->conn, m->tables[i], strlen(m->tables[i]));
    char *fn = PQescapeLiteral(s->conn, m->fn_q, strlen(m->fn_q));
    if (!lit || !fn) {
      PQfreemem(lit);
      PQfreemem(fn);
      return pgs_fail(s, NULL, "quoting a table name", NULL, err);
    }
    od_sqlbuf_addf(b, "DO $odsync$ DECLARE cols text; rel regclass := to_regclass(%s); BEGIN IF rel IS NULL THEN "
                      "RETURN; END IF; SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY a.attnum) INTO cols "
                      "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
                      "WHERE i.indrelid = rel AND i.indisprimary; IF cols IS NULL THEN RETURN; END IF; EXECUTE "
                      "format('CREATE OR REPLACE TRIGGER _odsync_tombstone AFTER DELETE ON %%s FOR EACH ROW EXECUTE "
                      "FUNCTION %%s(%%s)', rel, %s, cols); END $odsync$; ", lit, fn);
    PQfreemem(lit);
    PQfreemem(fn);
  }
  od_sqlbuf_add(b, "COMMIT");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *r = PQexec(s->conn, b->p);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
    int rc = pgs_fail(s, m->log_q, "creating the mesh conflict log and replication origin", r, err);
    PQclear(r);
    r = PQexec(s->conn, "ROLLBACK");
    PQclear(r);
    return rc;
  }
  PQclear(r);
  const char *p[] = {m->origin};
  r = pgs_exec(s, NULL, "pg_replication_origin_session_setup", "SELECT pg_replication_origin_session_setup($1)", 1, p,
               err);
  if (!r) {
    err->retriable = true; /* the origin is still held by the session of a process that just died */
    return err->code;
  }
  PQclear(r);
  /* A mesh sink holds its rows' locks for a batch of source transactions: in a deadlock with an
   * application it should be the one that gives up (its transaction is retried). Where the role may
   * set it, a short deadlock_timeout makes this session run the deadlock check first. */
  r = pgs_exec(s, NULL, "setting deadlock_timeout", "DO $odsync$ BEGIN SET deadlock_timeout = '100ms'; EXCEPTION WHEN "
               "insufficient_privilege THEN NULL; END $odsync$", 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  m->nprog = 0;
  return OD_OK;
}

void pgs_mesh_reset(pgs_sink *s) {
  if (!s->mesh) return;

  s->mesh->nst = 0;
  s->mesh->txn_has_data = false;
  dec_clear(s->mesh);
}

/* ---- stamps ----------------------------------------------------------------------------------- */

static int parse_stamp(pgs_sink *s, pgs_mesh *m, const od_value *v, stamp *st, od_error *err) {
  char buf[4096];
  if (v->kind != OD_VALUE_TEXT && v->kind != OD_VALUE_BINARY) goto bad;
  size_t n = v->len < sizeof buf - 1 ? v->len : sizeof buf - 1;
  memcpy(buf, v->data, n);
  buf[n] = '\0';
  char *save = NULL, *tok = strtok_r(buf, " ", &save);
  if (!tok || strcmp(tok, "v1") != 0) goto bad;
  char *node = strtok_r(NULL, " ", &save), *lsn = strtok_r(NULL, " ", &save), *ts = strtok_r(NULL, " ", &save);
  if (!node || !lsn || !ts) goto bad;
  if (strcmp(node, m->peer) != 0)
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh: the stream comes from node '%s' but this sink's "
                   "mesh_peer is '%s'; check the mesh's dsn entries", s->where, node, m->peer);
  st->lsn = strtoull(lsn, NULL, 16);
  st->ts = strtoll(ts, NULL, 10);
  st->hlc = st->ts;
  st->nvv = 0;
  while ((tok = strtok_r(NULL, " ", &save)) && st->nvv < VV_MAX) {
    char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) goto bad;
    *c1 = '\0';
    vv_entry *e = &st->vv[st->nvv++];
    snprintf(e->node, sizeof e->node, "%s", tok);
    e->lsn = strtoull(c1 + 1, NULL, 16);
    e->ts = strtoll(c2 + 1, NULL, 10);
  }
  return OD_OK;
bad:
  return OD_FAIL(err, OD_EPROTOCOL, "postgres sink %s: mesh: unreadable stamp message", s->where);
}

static bool is_stamp(const od_change *c) {
  if (c->op != OD_OP_MESSAGE || c->newtup.ncolumns < 2) return false;
  const od_value *p = &c->newtup.values[0];
  return p->data && p->len == strlen(MESH_PREFIX) && memcmp(p->data, MESH_PREFIX, p->len) == 0;
}

static const vv_entry *vv_find(const vv_entry *vv, int n, const char *node) {
  for (int i = 0; i < n; i++)
    if (strcmp(vv[i].node, node) == 0) return &vv[i];
  return NULL;
}

static int read_progress(pgs_sink *s, pgs_mesh *m, od_error *err) {
  PGresult *r = pgs_exec(s, NULL, "reading replication origin progress",
                         "SELECT external_id, (remote_lsn - '0/0'::pg_lsn)::text FROM pg_replication_origin_status "
                         "WHERE external_id LIKE 'odsync\\_%'", 0, NULL, err);
  if (!r) return err->code;
  m->nprog = 0;
  for (int i = 0; i < PQntuples(r) && m->nprog < VV_MAX; i++) {
    vv_entry *e = &m->prog[m->nprog++];
    snprintf(e->node, sizeof e->node, "%s", PQgetvalue(r, i, 0) + strlen("odsync_"));
    e->lsn = strtoull(PQgetvalue(r, i, 1), NULL, 10);
  }
  PQclear(r);
  return OD_OK;
}

/* Whether every third-node transaction the stamp depends on is applied here, by the cache. */
static const vv_entry *causal_missing(const pgs_mesh *m, const stamp *st) {
  for (int i = 0; i < st->nvv; i++) {
    const vv_entry *e = &st->vv[i];
    if (strcmp(e->node, m->node) == 0 || strcmp(e->node, m->peer) == 0 || !e->lsn) continue;
    const vv_entry *p = vv_find(m->prog, m->nprog, e->node);
    if (!p || p->lsn < e->lsn) return e;
  }
  return NULL;
}

/* Causal delivery: every transaction of a third node that the peer had applied before this one
 * must be applied here first (else a row could be found missing or older than what the peer's
 * write was based on). Called with no transaction work of this sink open (no locks held). */
static int causal_wait(pgs_sink *s, pgs_mesh *m, const stamp *st, od_error *err) {
  int64_t start = 0;
  for (;;) {
    const vv_entry *missing = causal_missing(m, st);
    if (!missing) return OD_OK;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    if (!start) {
      start = us;
    } else if (us - start > CAUSAL_WAIT_US) {
      return OD_FAIL_RETRY(err, OD_ESINK,
                           "postgres sink %s: mesh %s <- %s: transaction %" PRIX64 " of %s depends on node %s's "
                           "transaction at LSN %" PRIX64 ", not applied here after %lld s; is the pipeline from %s "
                           "to %s running?", s->where, m->node, m->peer, st->lsn, m->peer, missing->node, missing->lsn,
                           (long long)(CAUSAL_WAIT_US / 1000000), missing->node, m->node);
    } else {
      struct timespec d = {0, 20 * 1000000};
      nanosleep(&d, NULL);
    }
    int rc = read_progress(s, m, err);
    if (rc) return rc;
  }
}

/* ---- per-key state ---------------------------------------------------------------------------- */

static const od_tuple *key_tuple(const od_change *c) {
  if (c->op == OD_OP_INSERT || c->op == OD_OP_READ) return &c->newtup;
  if (c->old_kind == 'K' || c->old_kind == 'O') return &c->oldtup;
  return &c->newtup;
}

/* The key's text ("v1\x1fv2"), malloc'd; NULL when a key value is not text. */
static char *key_text(const pg_rel *r, const od_tuple *t) {
  od_sqlbuf b = {0};
  for (int k = 0; k < r->nkey; k++) {
    int col = PGS_COL(r->key_plan[k]);
    if (col >= t->ncolumns || t->values[col].kind != OD_VALUE_TEXT) {
      od_sqlbuf_free(&b);
      return NULL;
    }
    if (k) od_sqlbuf_add(&b, "\x1f");
    od_sqlbuf_addn(&b, t->values[col].data, t->values[col].len);
  }
  if (b.oom || !b.p) {
    od_sqlbuf_free(&b);
    return NULL;
  }
  return b.p; /* ownership of the buffer's bytes passes to the caller */
}

static size_t dec_hash(const od_relation *rel, const char *key) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)rel;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return (size_t)(h ^ (h >> 29));
}

static decision *dec_find(pgs_mesh *m, const od_relation *rel, const char *key) {
  if (!m->slot_cap) return NULL;
  for (size_t i = dec_hash(rel, key) & (m->slot_cap - 1);; i = (i + 1) & (m->slot_cap - 1)) {
    uint32_t v = m->slots[i];
    if (!v) return NULL;
    decision *d = &m->dec[v - 1];
    if (d->rel == rel && strcmp(d->key, key) == 0) return d;
  }
}

static void slot_put(pgs_mesh *m, size_t idx) {
  for (size_t i = dec_hash(m->dec[idx].rel, m->dec[idx].key) & (m->slot_cap - 1);; i = (i + 1) & (m->slot_cap - 1))
    if (!m->slots[i]) {
      m->slots[i] = (uint32_t)idx + 1;
      return;
    }
}

/* Append a key state (takes ownership of key); NULL on out-of-memory (key freed). */
static decision *dec_add(pgs_mesh *m, const od_relation *rel, char *key) {
  if (m->ndec == m->dec_cap) {
    size_t cap = m->dec_cap ? m->dec_cap * 2 : 64;
    decision *g = realloc(m->dec, cap * sizeof *g);
    if (!g) {
      free(key);
      return NULL;
    }
    m->dec = g;
    m->dec_cap = cap;
  }
  if (2 * (m->ndec + 1) >= m->slot_cap) {
    size_t cap = m->slot_cap ? m->slot_cap * 2 : 128;
    uint32_t *g = calloc(cap, sizeof *g);
    if (!g) {
      free(key);
      return NULL;
    }
    free(m->slots);
    m->slots = g;
    m->slot_cap = cap;
    for (size_t i = 0; i < m->ndec; i++) slot_put(m, i);
  }
  m->dec[m->ndec] = (decision){.rel = rel, .key = key};
  slot_put(m, m->ndec);
  return &m->dec[m->ndec++];
}

static void dec_clear(pgs_mesh *m) {
  for (size_t i = 0; i < m->ndec; i++) {
    free(m->dec[i].key);
    for (int k = 0; k < m->dec[i].nval; k++) free(m->dec[i].val[k]);
  }
  if (m->slot_cap > 4096 && m->ndec < m->slot_cap / 16) { /* after a big transaction: shrink */
    free(m->slots);
    m->slots = NULL;
    m->slot_cap = 0;
  } else if (m->ndec && m->slots) {
    memset(m->slots, 0, m->slot_cap * sizeof *m->slots);
  }
  m->ndec = 0;
  m->nwr = 0;
}

static bool wr_push(pgs_mesh *m, decision *d) {
  if (d->queued) return true;
  if (m->nwr == m->wr_cap) {
    size_t cap = m->wr_cap ? m->wr_cap * 2 : 64;
    size_t *g = realloc(m->wr, cap * sizeof *g);
    if (!g) return false;
    m->wr = g;
    m->wr_cap = cap;
  }
  m->wr[m->nwr++] = (size_t)(d - m->dec);
  d->queued = true;
  return true;
}

/* ---- conflicts --------------------------------------------------------------------------------- */

/* JSON text of a tuple (values as strings), appended to b. */
static void tuple_json(od_sqlbuf *b, const od_relation *rel, const od_tuple *t) {
  od_sqlbuf_add(b, "{");
  for (int i = 0; i < t->ncolumns && i < rel->ncolumns; i++) {
    const od_value *v = &t->values[i];
    if (v->kind == OD_VALUE_UNCHANGED) continue;
    if (b->len > 1 && b->p[b->len - 1] != '{') od_sqlbuf_add(b, ",");
    const char *strs[2] = {rel->columns[i].name, v->kind == OD_VALUE_TEXT ? v->data : NULL};
    size_t lens[2] = {strlen(rel->columns[i].name), v->kind == OD_VALUE_TEXT ? v->len : 0};
    for (int j = 0; j < 2; j++) {
      if (j) od_sqlbuf_add(b, ":");
      if (j && !strs[j]) {
        od_sqlbuf_add(b, "null");
        continue;
      }
      od_sqlbuf_add(b, "\"");
      for (size_t k = 0; k < lens[j]; k++) {
        unsigned char ch = (unsigned char)strs[j][k];
        if (ch == '"' || ch == '\\') {
          char e[3] = {'\\', (char)ch, 0};
          od_sqlbuf_add(b, e);
        } else if (ch < 0x20) {
          od_sqlbuf_addf(b, "\\u%04x", ch);
        } else {
          od_sqlbuf_addn(b, &strs[j][k], 1);
        }
      }
      od_sqlbuf_add(b, "\"");
    }
  }
  od_sqlbuf_add(b, "}");
}

static const char *node_of_origin(const pgs_mesh *m, const char *origin) {
  if (!origin || !*origin) return m->node;
  if (strncmp(origin, "odsync_", 7) == 0) return origin + 7;
  return origin;
}

/* Log a conflict in _odsync_conflicts (in the open transaction) and the audit log. The local row
 * is read by key in the same statement: a conflict is always with a version this sink has not
 * overwritten, so the row (if any) is still the one that competed. */
static int log_conflict(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st,
                        const char *kind, const decision *d, bool remote_wins, const char *policy, od_error *err) {
  m->conflicts++;
  for (int k = 0; k < KINDS; k++)
    if (strcmp(kind, KIND_NAMES[k]) == 0) od_counter_add(m->m_conflicts[k], 1);
  char keyshow[512];
  snprintf(keyshow, sizeof keyshow, "%s", d->key);
  for (char *p = keyshow; *p; p++)
    if (*p == '\x1f') *p = ',';
  od_sqlbuf remote = {0};
  if (c->op != OD_OP_DELETE) tuple_json(&remote, c->rel, &c->newtup);
  char lts[32], rts[32], rlsn[32];
  snprintf(lts, sizeof lts, "%" PRId64, d->ts);
  snprintf(rts, sizeof rts, "%" PRId64, st->ts);
  snprintf(rlsn, sizeof rlsn, "%X/%X", (unsigned)(st->lsn >> 32), (unsigned)st->lsn);
  const char *lnode = d->node[0] ? d->node : m->node;
  const char *p[13 + 64] = {m->node, kind, r->target, keyshow, NULL,
                            c->op != OD_OP_DELETE && !remote.oom ? remote.p : NULL, lnode, m->peer,
                            d->ts != INT64_MIN ? lts : NULL, rts, rlsn, policy, remote_wins ? m->peer : lnode};
  int np = 13;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, m->log_q);
  od_sqlbuf_add(b, " (node, kind, table_name, key, local_row, remote_row, local_origin, remote_origin, "
                   "local_commit_ts, remote_commit_ts, remote_lsn, policy, winner) VALUES ($1, $2, $3, $4, ");
  if (d->tomb || !d->has_ver) {
    od_sqlbuf_add(b, "$5::jsonb");
  } else {
    od_sqlbuf_add(b, "coalesce($5::jsonb, (SELECT to_jsonb(t.*) FROM ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " t WHERE ");
    const od_tuple *kt = key_tuple(c);
    for (int k = 0; k < r->nkey && np < 13 + 64; k++) {
      int col = PGS_COL(r->key_plan[k]);
      if (k) od_sqlbuf_add(b, " AND ");
      od_sqlbuf_add(b, "t.");
      od_sqlbuf_ident(b, r->rel->columns[col].name);
      p[np] = kt->values[col].data;
      od_sqlbuf_addf(b, " = $%d", ++np);
    }
    od_sqlbuf_add(b, "))");
  }
  od_sqlbuf_add(b, ", $6::jsonb, $7, $8, '1970-01-01 00:00:00+00'::timestamptz + $9::bigint * interval '1 microsecond', "
                   "'1970-01-01 00:00:00+00'::timestamptz + $10::bigint * interval '1 microsecond', $11::pg_lsn, $12, $13)");
  PGresult *res = b->oom ? NULL : pgs_exec(s, m->log_q, "logging a conflict", b->p, np, p, err);
  od_sqlbuf_free(&remote);
  if (!res) return b->oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  PQclear(res);
  od_debug("postgres sink %s: mesh %s: %s conflict on %s (%s): %s wins", s->where, m->node, kind, r->target, keyshow,
           remote_wins ? m->peer : lnode);
  /* The audit log (docs/AUDIT.md) gets it when detected: a transaction replayed after a crash may
   * record its conflicts there again; _odsync_conflicts, written in the transaction, is exact. */
  od_sqlbuf ab = {0};
  od_sqlbuf_add(&ab, "\"node\":");
  od_audit_json_str(&ab, m->node);
  od_sqlbuf_add(&ab, ",\"peer\":");
  od_audit_json_str(&ab, m->peer);
  od_sqlbuf_add(&ab, ",\"conflict\":");
  od_audit_json_str(&ab, kind);
  od_sqlbuf_add(&ab, ",\"table\":");
  od_audit_json_str(&ab, r->target);
  od_sqlbuf_add(&ab, ",\"policy\":");
  od_audit_json_str(&ab, policy);
  od_sqlbuf_add(&ab, ",\"winner\":");
  od_audit_json_str(&ab, remote_wins ? m->peer : lnode);
  od_sqlbuf_addf(&ab, ",\"remote_lsn\":\"%s\"", rlsn);
  char pipeline[128];
  snprintf(pipeline, sizeof pipeline, "%s", s->pipeline ? s->pipeline : "");
  pipeline[strcspn(pipeline, ".")] = '\0'; /* the checkpoint name "<pipeline>[.<sink>]" */
  if (!ab.oom) od_audit_record(pipeline[0] ? pipeline : NULL, "conflict", ab.p);
  od_sqlbuf_free(&ab);
  return OD_OK;
}

static int prio_rank(const pgs_mesh *m, const char *node) {
  for (int i = 0; i < m->nprio; i++)
    if (strcmp(m->prio[i], node) == 0) return i;
  return m->nprio;
}

/* Whether the remote write wins a conflict with the concurrent local version. Every node computes
 * the same answer for the same pair: only the two versions' (clock, node) enter it. */
static bool remote_wins(const pgs_mesh *m, const stamp *st, const decision *d) {
  const char *lnode = d->node[0] ? d->node : m->node;
  if (m->policy == POL_KEEP_LOCAL) return false;
  if (m->policy == POL_APPLY_REMOTE) return true;
  if (m->policy == POL_PRIORITY) {
    int a = prio_rank(m, m->peer), b = prio_rank(m, lnode);
    if (a != b) return a < b;
  }
  /* last_writer_wins (and priority between equals): clock, then node name */
  if (st->hlc != d->hlc) return st->hlc > d->hlc;
  return strcmp(m->peer, lnode) > 0;
}

/* Was the key's current version seen by the remote writer before it wrote? */
static bool seen_by_remote(const pgs_mesh *m, const stamp *st, const decision *d) {
  if (!d->has_ver || d->ours || d->ts == INT64_MIN) return true; /* none, this stream's, or unknown (frozen) */
  const char *lnode = d->node[0] ? d->node : m->node;
  if (strcmp(lnode, m->peer) == 0) return true; /* the peer's own earlier write */
  const vv_entry *e = vv_find(st->vv, st->nvv, lnode);
  return e && d->ts <= e->ts;
}

/* The counter columns of r (column indexes), from mesh_counters "schema.table.column". */
static int counter_cols(const pgs_mesh *m, const pg_rel *r, int *cols) {
  int n = 0;
  size_t tl = strlen(r->target);
  for (int i = 0; i < m->ncounters && n < COUNTERS_MAX; i++) {
    const char *c = m->counters[i];
    if (strncmp(c, r->target, tl) != 0 || c[tl] != '.') continue;
    for (int j = 0; j < r->rel->ncolumns; j++)
      if (strcmp(r->rel->columns[j].name, c + tl + 1) == 0) cols[n++] = j;
  }
  return n;
}

/* The rules of r, appended to the fetched columns cols[n..]: rule_of[k] = rule index. Returns the
 * new total. */
static int rule_cols(const pgs_mesh *m, const pg_rel *r, int *cols, int n, int *rule_of) {
  size_t tl = strlen(r->target);
  for (int i = 0; i < m->nrules && n < COUNTERS_MAX; i++) {
    const char *c = m->rules[i].column;
    if (strncmp(c, r->target, tl) != 0 || c[tl] != '.') continue;
    for (int j = 0; j < r->rel->ncolumns; j++)
      if (strcmp(r->rel->columns[j].name, c + tl + 1) == 0) {
        rule_of[n] = i;
        cols[n++] = j;
      }
  }
  return n;
}

/* Business rules on a concurrent pair: >0 the remote version wins, <0 the local one, 0 undecided
 * (equal, or a value a rule cannot rank: the policy decides). */
static int rules_decide(const pgs_mesh *m, const od_change *c, const decision *d, const int *cols, int from, int to,
                        const int *rule_of) {
  for (int k = from; k < to; k++) {
    const struct rule *ru = &m->rules[rule_of[k]];
    const od_value *rv = cols[k] < c->newtup.ncolumns ? &c->newtup.values[cols[k]] : NULL;
    const char *lval = k < d->nval ? d->val[k] : NULL;
    if (!rv || rv->kind != OD_VALUE_TEXT || !lval) continue;
    if (!ru->order) {
      char *e1 = NULL, *e2 = NULL;
      double a = strtod(rv->data, &e1), b = strtod(lval, &e2);
      if (e1 == rv->data || e2 == lval || a == b) continue;
      return a > b ? 1 : -1;
    }
    int ra = -1, rb = -1;
    for (int i = 0; i < ru->norder; i++) {
      if (strcmp(ru->order[i], rv->data) == 0) ra = i;
      if (strcmp(ru->order[i], lval) == 0) rb = i;
    }
    if (ra < 0 || rb < 0 || ra == rb) continue;
    return ra > rb ? 1 : -1;
  }
  return 0;
}

/* ---- counters ---------------------------------------------------------------------------------- */

static void overrides_free(pgs_mesh *m) {
  for (size_t i = 0; i < m->novr; i++) {
    for (int j = 0; j < m->ovr[i].ntexts; j++) free(m->ovr[i].texts[j]);
    free(m->ovr[i].texts);
    free(m->ovr[i].vals);
  }
  m->novr = 0;
}

static bool int_of(const od_value *v, long long *out) {
  if (v->kind != OD_VALUE_TEXT) return false;
  char *end = NULL;
  *out = strtoll(v->data, &end, 10);
  return end && *end == '\0' && end != v->data;
}

/* An update of a table with counter columns: every counter ends at local + (new - old) on every
 * node (each node adds every other node's delta exactly once, in the transaction that applies it).
 * d->ctr holds the counters' value after the changes decided so far. Remote wins the other
 * columns: its new row with the merged counters replaces the change (an override); remote loses:
 * the key is marked for a fix (its counters set to d->ctr after the run's apply). *merged false:
 * no counter to merge (no old row image, not integers). */
static int merge_counters(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, size_t idx, decision *d,
                          const int *cols, int ncols, bool apply, bool *merged, od_error *err) {
  *merged = false;
  long long delta[COUNTERS_MAX];
  if (c->old_kind != 'O' || c->oldtup.ncolumns != c->newtup.ncolumns) {
    od_warn("postgres sink %s: mesh: table %s: counter columns need the old row (REPLICA IDENTITY FULL on every "
            "node); merged by the policy instead", s->where, r->target);
    return OD_OK;
  }
  for (int k = 0; k < ncols; k++) {
    long long o, nv;
    if (!int_of(&c->oldtup.values[cols[k]], &o) || !int_of(&c->newtup.values[cols[k]], &nv) || k >= d->nval ||
        !d->val[k])
      return OD_OK;
    delta[k] = nv - o;
  }
  *merged = true;
  for (int k = 0; k < ncols; k++) d->ctr[k] += delta[k];
  if (!apply) {
    d->fix = true;
    return wr_push(m, d) ? OD_OK : OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  if (m->novr == m->ovr_cap) {
    size_t cap = m->ovr_cap ? m->ovr_cap * 2 : 16;
    struct override *g = realloc(m->ovr, cap * sizeof *g);
    if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    m->ovr = g;
    m->ovr_cap = cap;
  }
  struct override *o = &m->ovr[m->novr];
  *o = (struct override){.idx = idx};
  o->vals = malloc(c->newtup.ncolumns * sizeof *o->vals);
  o->texts = calloc((size_t)ncols, sizeof *o->texts);
  if (!o->vals || !o->texts) {
    free(o->vals);
    free(o->texts);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  m->novr++;
  memcpy(o->vals, c->newtup.values, c->newtup.ncolumns * sizeof *o->vals);
  for (int k = 0; k < ncols; k++) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%lld", d->ctr[k]);
    if (!(o->texts[k] = strdup(buf))) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    o->ntexts++;
    o->vals[cols[k]] = (od_value){.data = o->texts[k], .len = (uint32_t)len, .kind = OD_VALUE_TEXT};
  }
  return OD_OK;
}

/* After the run's apply: counters of rows whose remote update lost get their merged values. */
static int fix_counters(pgs_sink *s, pgs_mesh *m, decision *d, od_error *err) {
  int cols[COUNTERS_MAX];
  int ncols = counter_cols(m, d->r, cols);
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, d->r->qtarget);
  od_sqlbuf_add(b, " SET ");
  for (int k = 0; k < ncols; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, d->r->rel->columns[cols[k]].name);
    od_sqlbuf_addf(b, " = %lld", d->ctr[k]);
  }
  od_sqlbuf_add(b, " WHERE concat_ws(chr(31)");
  for (int k = 0; k < d->r->nkey; k++) {
    od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, d->r->rel->columns[PGS_COL(d->r->key_plan[k])].name);
    od_sqlbuf_add(b, "::text");
  }
  od_sqlbuf_add(b, ") = $1 AND (");
  /* the key columns, each compared with its own value too, so an index on the key is used */
  char *copy = strdup(d->key);
  if (!copy) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  const char *params[1 + 64] = {d->key};
  int np = 1;
  char *save = NULL, *tok = copy;
  for (int k = 0; k < d->r->nkey && np < 65; k++) {
    char *sep = strchr(tok, '\x1f');
    if (sep) *sep = '\0';
    if (k) od_sqlbuf_add(b, " AND ");
    od_sqlbuf_ident(b, d->r->rel->columns[PGS_COL(d->r->key_plan[k])].name);
    params[np] = tok;
    od_sqlbuf_addf(b, " = $%d", ++np);
    tok = sep ? sep + 1 : tok + strlen(tok);
  }
  (void)save;
  od_sqlbuf_add(b, ")");
  PGresult *res = b->oom ? NULL : pgs_exec(s, d->r->target, "setting merged counters (mesh)", b->p, np, params, err);
  free(copy);
  if (!res) return b->oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  PQclear(res);
  d->fix = false;
  return OD_OK;
}

/* ---- deciding a run ---------------------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
  return strcmp(((const local_ver *)a)->key, ((const local_ver *)b)->key);
}

/* A new key state from the versions query's row (lv NULL: the key has no version here). */
static decision *dec_from(pgs_mesh *m, const pg_rel *r, char *key, const local_ver *lv, int nfetch, int nctr) {
  decision *d = dec_add(m, r->rel, key);
  if (!d) return NULL;
  d->r = r;
  d->ts = d->hlc = INT64_MIN;
  if (!lv) return d;
  d->has_ver = true;
  d->tomb = lv->tomb;
  d->ts = lv->ts;
  d->hlc = lv->hlc;
  snprintf(d->node, sizeof d->node, "%s", node_of_origin(m, lv->origin));
  for (int k = 0; k < nfetch; k++) {
    d->val[k] = lv->ctr[k] ? strdup(lv->ctr[k]) : NULL;
    d->nval = k + 1;
    if (lv->ctr[k] && !d->val[k]) return NULL;
    if (k < nctr && lv->ctr[k]) d->ctr[k] = strtoll(lv->ctr[k], NULL, 10);
  }
  return d;
}

/* Build and run the versions query of the keys keys[q0, q1) not yet known; *res owns the rows. */
static int query_versions(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, const size_t *idx,
                          char **keys, const bool *known, size_t q0, size_t q1, const int *cols, int nfetch,
                          const char **params, PGresult **res, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "WITH live AS (SELECT concat_ws(chr(31)");
  for (int k = 0; k < r->nkey; k++) {
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
    od_sqlbuf_add(b, "::text");
  }
  od_sqlbuf_add(b, ") AS k, c.timestamp AS cts, c.roident AS rid, o.roname AS origin");
  for (int k = 0; k < nfetch; k++) {
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[cols[k]].name);
    od_sqlbuf_addf(b, "::text AS c%d", k);
  }
  od_sqlbuf_add(b, " FROM ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " t CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) c LEFT JOIN "
                   "pg_catalog.pg_replication_origin o ON o.roident = c.roident WHERE (");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, "t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(b, ") IN (");
  int np = 0;
  od_sqlbuf arr = {0};
  od_sqlbuf_add(&arr, "{");
  for (size_t j = q0; j < q1; j++) {
    if (!keys[j] || known[j - q0]) continue;
    const od_tuple *t = key_tuple(&changes[idx[j]]);
    od_sqlbuf_add(b, np ? ", (" : "(");
    for (int k = 0; k < r->nkey; k++) {
      params[np] = t->values[PGS_COL(r->key_plan[k])].data;
      od_sqlbuf_addf(b, "%s$%d", k ? ", " : "", ++np);
    }
    od_sqlbuf_add(b, ")");
    if (arr.len > 1) od_sqlbuf_add(&arr, ",");
    od_sqlbuf_add(&arr, "\"");
    for (const char *c = keys[j]; *c; c++) {
      if (*c == '"' || *c == '\\') od_sqlbuf_add(&arr, "\\");
      od_sqlbuf_addn(&arr, c, 1);
    }
    od_sqlbuf_add(&arr, "\"");
  }
  od_sqlbuf_add(&arr, "}");
  if (!np) {
    od_sqlbuf_free(&arr);
    *res = NULL;
    return OD_OK;
  }
  /* The version: the side table's when the row (or tombstone) was last written by a mesh sink
   * (its xmin has a replication origin); else the xmin's commit time and origin (a local write). */
  /* Rows are locked in key order: the mesh's other sinks on this node lock theirs in the same
   * order, so two sinks never wait for each other in a cycle. The tombstones of keys without a row
   * are locked too: an application's delete of such a key (inserted meanwhile) waits for this
   * transaction instead of leaving a newer tombstone this run did not judge. */
  od_sqlbuf_add(b, ") ORDER BY ");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_add(b, "t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(b, " FOR UPDATE OF t), dead AS (SELECT d.key AS k, c.timestamp AS cts, c.roident AS rid, "
                   "o.roname AS origin FROM ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_addf(b, " d CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(d.xmin) c LEFT JOIN "
                    "pg_catalog.pg_replication_origin o ON o.roident = c.roident WHERE d.tbl = $%d AND "
                    "d.key = ANY ($%d::text[]) AND NOT EXISTS (SELECT 1 FROM live WHERE live.k = d.key) ORDER BY "
                    "d.key FOR UPDATE OF d), "
                    "x AS (SELECT k, cts, rid, origin, false AS tomb", np + 1, np + 2);
  for (int k = 0; k < nfetch; k++) od_sqlbuf_addf(b, ", c%d", k);
  od_sqlbuf_add(b, " FROM live UNION ALL SELECT k, cts, rid, origin, true");
  for (int k = 0; k < nfetch; k++) od_sqlbuf_add(b, ", NULL");
  od_sqlbuf_add(b, " FROM dead) SELECT x.k, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.ts ELSE "
                   "(extract(epoch FROM x.cts) * 1000000)::int8 END, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL "
                   "THEN v.node ELSE x.origin END, CASE WHEN x.rid <> 0 AND v.key IS NOT NULL THEN v.hlc ELSE "
                   "(extract(epoch FROM x.cts) * 1000000)::int8 END, x.tomb");
  for (int k = 0; k < nfetch; k++) od_sqlbuf_addf(b, ", x.c%d", k);
  od_sqlbuf_add(b, " FROM x LEFT JOIN ");
  od_sqlbuf_add(b, m->ver_q);
  od_sqlbuf_addf(b, " v ON v.tbl = $%d AND v.key = x.k", np + 1);
  params[np] = r->target;
  params[np + 1] = arr.p;
  int rc = OD_OK;
  /* Twice: the first execution takes the locks (waiting for any transaction that holds them, e.g.
   * the mesh's other sink on this node); the second reads the versions with a snapshot taken after
   * those waits, so a delete or re-insert that committed meanwhile is seen (read committed gives a
   * statement the snapshot of its start: a row deleted while we waited would just be missing, and
   * its new tombstone invisible). */
  PGresult *lock = NULL;
  if (b->oom || arr.oom) {
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  } else if (!(lock = pgs_exec(s, r->target, "locking local rows (mesh)", b->p, np + 2, params, err)) ||
             !(*res = pgs_exec(s, r->target, "reading local row versions (mesh)", b->p, np + 2, params, err))) {
    rc = err->code;
  }
  PQclear(lock);
  od_sqlbuf_free(&arr);
  return rc;
}

/* Decide one change against its key's state: fills *keep, logs a conflict, updates the state. */
static int decide_change(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, size_t ci, const stamp *st,
                         decision *d, const int *cols, int nctr, int nfetch, const int *rule_of, bool *keep,
                         od_error *err) {
  if (d->seq == st->seq) { /* the key's first change in this source transaction decided for the rest */
    *keep = d->apply;
    return OD_OK;
  }
  const char *kind = NULL, *policy = POLICIES[m->policy];
  bool apply = true;
  if (!seen_by_remote(m, st, d)) { /* concurrent */
    if (d->tomb) {
      /* A delete against a tombstone competes too: the winner's version becomes the tombstone's
       * on every node, so later writes of the key are judged against the same version. */
      kind = c->op == OD_OP_INSERT ? "insert_delete" : c->op == OD_OP_UPDATE ? "update_delete" : "delete_delete";
      apply = remote_wins(m, st, d);
    } else {
      kind = c->op == OD_OP_DELETE ? "update_delete" : c->op == OD_OP_UPDATE ? "update_update" : "insert_insert";
      int ruled = c->op == OD_OP_DELETE ? 0 : rules_decide(m, c, d, cols, nctr, nfetch, rule_of);
      apply = ruled ? ruled > 0 : remote_wins(m, st, d);
      if (ruled) policy = "rule";
    }
  }
  /* Counters take every update as a delta on the local value, conflict or not: a row merged
   * here holds deltas its writer's peer has not seen, so "seen" does not mean "same value". */
  bool merged = false;
  int rc;
  if (nctr && c->op == OD_OP_UPDATE && d->has_ver && !d->tomb &&
      (rc = merge_counters(s, m, r, c, ci, d, cols, nctr, apply, &merged, err)))
    return rc;
  if (kind && (rc = log_conflict(s, m, r, c, st, kind, d, apply, policy, err))) return rc;
  *keep = apply;
  d->seq = st->seq;
  d->apply = apply;
  if (apply) { /* the key's version is now the peer's */
    if (c->op == OD_OP_DELETE && d->tomb && d->has_ver) d->touch = true; /* no row: the DELETE changes nothing */
    d->has_ver = true;
    d->ours = true;
    d->tomb = c->op == OD_OP_DELETE;
    snprintf(d->node, sizeof d->node, "%s", m->peer);
    d->ts = st->ts;
    d->hlc = st->hlc;
    if (!wr_push(m, d)) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  return OD_OK;
}

/* Decide the changes of one relation in changes[from, to): fills keepflag[i - from]. */
static int decide_rel(pgs_sink *s, pgs_mesh *m, pg_rel *r, const od_change *changes, size_t from, size_t to,
                      bool *keepflag, od_error *err) {
  size_t nkeys = 0;
  for (size_t i = from; i < to; i++)
    if (changes[i].rel == r->rel && m->sidx[i] >= 0) nkeys++;
  if (!nkeys) return OD_OK;
  int cols[COUNTERS_MAX], rule_of[COUNTERS_MAX];
  int nctr = counter_cols(m, r, cols);
  int nfetch = rule_cols(m, r, cols, nctr, rule_of);
  size_t per_query = (size_t)(30000 / (r->nkey ? r->nkey : 1));
  if (per_query > 5000) per_query = 5000;
  char **keys = calloc(nkeys, sizeof *keys);
  size_t *idx = calloc(nkeys, sizeof *idx);
  bool *known = calloc(per_query, sizeof *known);
  const char **params = calloc(per_query * (size_t)r->nkey + 3, sizeof *params);
  int rc = OD_OK;
  PGresult *res = NULL;
  local_ver *vers = NULL;
  if (!keys || !idx || !known || !params) {
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    goto done;
  }
  size_t nk = 0;
  for (size_t i = from; i < to; i++) {
    if (changes[i].rel != r->rel || m->sidx[i] < 0) continue;
    idx[nk] = i;
    keys[nk] = key_text(r, key_tuple(&changes[i]));
    nk++;
  }
  for (size_t q0 = 0; q0 < nk; q0 += per_query) {
    size_t q1 = q0 + per_query < nk ? q0 + per_query : nk;
    for (size_t j = q0; j < q1; j++) known[j - q0] = keys[j] && dec_find(m, r->rel, keys[j]) != NULL;
    PQclear(res);
    res = NULL;
    free(vers);
    vers = NULL;
    if ((rc = query_versions(s, m, r, changes, idx, keys, known, q0, q1, cols, nfetch, params, &res, err))) goto done;
    int nv = res ? PQntuples(res) : 0;
    if (!(vers = calloc((size_t)nv + 1, sizeof *vers))) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      goto done;
    }
    for (int v = 0; v < nv; v++) {
      vers[v].key = PQgetvalue(res, v, 0);
      vers[v].ts = PQgetisnull(res, v, 1) ? INT64_MIN : strtoll(PQgetvalue(res, v, 1), NULL, 10);
      vers[v].origin = PQgetisnull(res, v, 2) ? NULL : PQgetvalue(res, v, 2);
      vers[v].hlc = PQgetisnull(res, v, 3) ? INT64_MIN : strtoll(PQgetvalue(res, v, 3), NULL, 10);
      vers[v].tomb = strcmp(PQgetvalue(res, v, 4), "t") == 0;
      for (int k = 0; k < nfetch; k++) vers[v].ctr[k] = PQgetisnull(res, v, 5 + k) ? NULL : PQgetvalue(res, v, 5 + k);
    }
    qsort(vers, (size_t)nv, sizeof *vers, cmp_key);
    for (size_t j = q0; j < q1; j++) {
      size_t ci = idx[j];
      bool *keep = &keepflag[ci - from];
      *keep = true;
      if (!keys[j]) continue; /* not text: applied without a check */
      decision *d = dec_find(m, r->rel, keys[j]);
      if (!d) {
        local_ver probe = {.key = keys[j]};
        const local_ver *lv = nv ? bsearch(&probe, vers, (size_t)nv, sizeof *vers, cmp_key) : NULL;
        char *owned = keys[j];
        keys[j] = NULL; /* owned by the key state now */
        if (!(d = dec_from(m, r, owned, lv, nfetch, nctr))) {
          rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
          goto done;
        }
      }
      if ((rc = decide_change(s, m, r, &changes[ci], ci, &m->st[m->sidx[ci]], d, cols, nctr, nfetch, rule_of, keep,
                              err)))
        goto done;
    }
  }
done:
  if (keys)
    for (size_t j = 0; j < nkeys; j++) free(keys[j]);
  free(keys);
  free(idx);
  free(known);
  free(params);
  free(vers);
  PQclear(res);
  return rc;
}

/* ---- applying a run ---------------------------------------------------------------------------- */

static void arr_elem(od_sqlbuf *b, const char *v) {
  od_sqlbuf_add(b, b->len > 1 ? ",\"" : "\"");
  for (const char *c = v; *c; c++) {
    if (*c == '"' || *c == '\\') od_sqlbuf_add(b, "\\");
    od_sqlbuf_addn(b, c, 1);
  }
  od_sqlbuf_add(b, "\"");
}

static int cmp_wr(const void *a, const void *b, void *ctx) {
  const pgs_mesh *m = ctx;
  const decision *x = &m->dec[*(const size_t *)a], *y = &m->dec[*(const size_t *)b];
  int c = strcmp(x->r->target, y->r->target);
  return c ? c : strcmp(x->key, y->key);
}

/* After the run's apply: merged counters of rows whose remote update lost, then one statement that
 * writes the version of every key this run wrote into the side table and sets the replication
 * origin's progress to the run's last source transaction (commit LSN and time). */
static int finish_run(pgs_sink *s, pgs_mesh *m, bool stamped, od_error *err) {
  /* The run's writes go out now, right after the versions they were decided on were read (the
   * set-based buffer would otherwise wait for the commit): a key with no row is not locked by that
   * read, so the time an application could write it in between stays as short as one round trip. */
  int rc = m->nwr ? pgs_bulk_flush_now(s, err) : OD_OK;
  od_sqlbuf tt = {0}, tk = {0};
  od_sqlbuf_add(&tt, "{");
  od_sqlbuf_add(&tk, "{");
  for (size_t i = 0; i < m->nwr && rc == OD_OK; i++) {
    decision *d = &m->dec[m->wr[i]];
    if (d->fix) rc = fix_counters(s, m, d, err);
    if (d->touch && d->tomb) {
      arr_elem(&tt, d->r->target);
      arr_elem(&tk, d->key);
    }
    d->touch = false;
  }
  od_sqlbuf_add(&tt, "}");
  od_sqlbuf_add(&tk, "}");
  if (rc == OD_OK && tt.len > 2) {
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "UPDATE ");
    od_sqlbuf_add(b, m->tomb_q);
    od_sqlbuf_add(b, " SET deleted_at = now() WHERE (tbl, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))");
    const char *p2[2] = {tt.p, tk.p};
    PGresult *r = b->oom || tt.oom || tk.oom ? NULL
                                               : pgs_exec(s, m->tomb_q, "rewriting tombstones (mesh)", b->p, 2, p2, err);
    if (!r) rc = b->oom || tt.oom || tk.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where)
                                            : err->code;
    PQclear(r);
  }
  od_sqlbuf_free(&tt);
  od_sqlbuf_free(&tk);
  if (rc) return rc;
  if (!m->nst || (!stamped && !m->nwr)) return OD_OK;
  if (m->nwr > 1) qsort_r(m->wr, m->nwr, sizeof *m->wr, cmp_wr, m); /* side-table rows in (table, key) order, as rows */
  od_sqlbuf a[5] = {{0}};
  for (int k = 0; k < 5; k++) od_sqlbuf_add(&a[k], "{");
  size_t nrows = 0;
  for (size_t i = 0; i < m->nwr; i++) {
    decision *d = &m->dec[m->wr[i]];
    d->queued = false;
    if (!d->has_ver || d->ts == INT64_MIN) continue;
    char ts[32], hlc[32];
    snprintf(ts, sizeof ts, "%" PRId64, d->ts);
    snprintf(hlc, sizeof hlc, "%" PRId64, d->hlc == INT64_MIN ? d->ts : d->hlc);
    arr_elem(&a[0], d->r->target);
    arr_elem(&a[1], d->key);
    arr_elem(&a[2], d->node[0] ? d->node : m->node);
    arr_elem(&a[3], ts);
    arr_elem(&a[4], hlc);
    nrows++;
  }
  m->nwr = 0;
  for (int k = 0; k < 5; k++) od_sqlbuf_add(&a[k], "}");
  const stamp *last = &m->st[m->nst - 1];
  char lsn[32], ts[32];
  snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(last->lsn >> 32), (unsigned)last->lsn);
  /* The progress time is the latest commit time applied, not the last one's: a node's commit times
   * may be a few µs out of commit order, and a version vector entry must cover every one. */
  for (int i = 0; i < m->nst; i++)
    if (m->st[i].ts > m->max_ts) m->max_ts = m->st[i].ts;
  snprintf(ts, sizeof ts, "%" PRId64, m->max_ts);
  const char *p[7] = {lsn, ts, a[0].p, a[1].p, a[2].p, a[3].p, a[4].p};
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  if (nrows) {
    od_sqlbuf_add(b, "WITH w AS (INSERT INTO ");
    od_sqlbuf_add(b, m->ver_q);
    od_sqlbuf_add(b, " AS v (tbl, key, node, ts, hlc) SELECT * FROM unnest($3::text[], $4::text[], $5::text[], "
                     "$6::int8[], $7::int8[]) ON CONFLICT (tbl, key) DO UPDATE SET node = excluded.node, ts = "
                     "excluded.ts, hlc = excluded.hlc RETURNING 1) ");
  }
  od_sqlbuf_add(b, "SELECT pg_replication_origin_xact_setup($1::pg_lsn, '1970-01-01 00:00:00+00'::timestamptz + "
                   "$2::int8 * interval '1 microsecond')");
  if (nrows) od_sqlbuf_add(b, ", (SELECT count(*) FROM w)");
  bool oom = b->oom;
  for (int k = 0; k < 5; k++) oom = oom || a[k].oom;
  PGresult *r = NULL;
  if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  else if ((rc = pgs_ensure_begin(s, err)) == OD_OK &&
           !(r = pgs_exec(s, m->ver_q, "writing row versions and the origin's progress (mesh)", b->p, nrows ? 7 : 2,
                          p, err)))
    rc = err->code;
  PQclear(r);
  for (int k = 0; k < 5; k++) od_sqlbuf_free(&a[k]);
  if (rc == OD_OK) m->txn_has_data = true;
  return rc;
}

/* Changes [from, to) of the open run (one or more source transactions, m->sidx gives each change's
 * stamp): decide every keyed change against its key's state, apply what wins set-based. */
static int run_flush(pgs_sink *s, pgs_mesh *m, const od_change *changes, size_t from, size_t to, od_error *err) {
  if (from >= to) return OD_OK;
  size_t n = to - from;
  if (n > m->keep_cap) {
    od_change *g = realloc(m->keep, n * sizeof *g);
    if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    m->keep = g;
    m->keep_cap = n;
  }
  /* Every run reads the versions afresh (what an application wrote since the last run counts);
   * rows this transaction wrote read as seen (their xmin is not committed yet). */
  dec_clear(m);
  bool *keepflag = calloc(n, sizeof *keepflag);
  if (!keepflag) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  bool stamped = false;
  for (size_t i = 0; i < n; i++) {
    keepflag[i] = !is_stamp(&changes[from + i]);
    stamped = stamped || !keepflag[i];
  }
  int rc = OD_OK;
  /* One versions query per keyed relation of the run (per 5000 keys). */
  for (size_t i = from; i < to && rc == OD_OK; i++) {
    const od_change *c = &changes[i];
    if (c->op == OD_OP_MESSAGE || c->op == OD_OP_TRUNCATE || !c->rel || m->sidx[i] < 0) continue;
    bool done = false;
    for (size_t j = from; j < i && !done; j++) done = changes[j].rel == c->rel && m->sidx[j] >= 0;
    if (done) continue;
    pg_rel *r = NULL;
    if (!pgs_rel_known(s, c->rel) && (rc = pgs_bulk_flush_now(s, err))) break;
    if ((rc = pgs_ensure_begin(s, err)) || (rc = pgs_rel_get(s, c->rel, &r, err)) || (rc = pgs_bulk_ready(s, r, err)))
      break;
    if (!r->keyed || c->rel->match_full_row) continue;
    rc = decide_rel(s, m, r, changes, i, to, keepflag + (i - from), err);
  }
  size_t nk = 0;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    if (!keepflag[i]) continue;
    m->keep[nk] = changes[from + i];
    for (size_t o = 0; o < m->novr; o++) /* counter merges: the new row with the merged counters */
      if (m->ovr[o].idx == from + i) m->keep[nk].newtup.values = m->ovr[o].vals;
    nk++;
  }
  free(keepflag);
  if (rc == OD_OK && nk) rc = pgs_apply_changes(s, m->keep, nk, err);
  overrides_free(m);
  if (rc == OD_OK) rc = finish_run(s, m, stamped, err);
  return rc;
}

/* apply() of a mesh sink: the source transactions of the batch share the target transaction; a
 * transaction whose causal dependencies are not applied here yet commits what came before it (with
 * the checkpoint at its start) and waits with nothing open. */
int pgs_mesh_apply(pgs_sink *s, const od_change *changes, size_t n, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (n > m->sidx_cap) {
    int *g = realloc(m->sidx, n * sizeof *g);
    if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    m->sidx = g;
    m->sidx_cap = n;
  }
  if (m->nst > 1) { /* the last source transaction may go on in this batch */
    m->st[0] = m->st[m->nst - 1];
    m->nst = 1;
  }
  size_t from = 0;
  int rc = OD_OK;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    if (!is_stamp(&changes[i])) {
      m->sidx[i] = m->nst - 1;
      continue;
    }
    m->sidx[i] = -1;
    if (m->nst == m->st_cap) {
      int cap = m->st_cap ? m->st_cap * 2 : 16;
      stamp *g = realloc(m->st, (size_t)cap * sizeof *g);
      if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      m->st = g;
      m->st_cap = cap;
    }
    stamp *st = &m->st[m->nst];
    if ((rc = parse_stamp(s, m, &changes[i].newtup.values[1], st, err))) break;
    st->seq = ++m->seq;
    if (causal_missing(m, st)) {
      if ((rc = run_flush(s, m, changes, from, i, err))) break;
      if (m->txn_has_data) {
        /* What came before gets its own target transaction: checkpoint at this one's start (it
         * holds every transaction starting before it, not this one). Its commit need not wait for
         * the WAL flush: the batch's last commit is synchronous and flushes it too before the
         * pipeline acknowledges anything; a server crash loses it with its checkpoint. */
        if (!changes[i].txn_start)
          return OD_FAIL(err, OD_EINVAL, "postgres sink %s: mesh stamp without a position", s->where);
        s->commit_async = true;
        rc = pgs_commit_with(s, changes[i].txn_start, err);
        s->commit_async = false;
        if (rc) break;
        s->in_txn = true;
        s->begin_sent = false;
        stamp keep = *st;
        m->txn_has_data = false;
        m->max_ts = 0;
        dec_clear(m);
        m->st[0] = keep;
        m->nst = 0;
        st = &m->st[0];
      }
      if ((rc = causal_wait(s, m, st, err))) break;
      from = i;
    }
    m->nst++;
    m->applied_txns++;
    od_counter_add(m->m_txns, 1);
  }
  if (rc == OD_OK) rc = run_flush(s, m, changes, from, n, err);
  return rc;
}
