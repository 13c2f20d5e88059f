/* sinks/postgres_mesh.c — the PostgreSQL sink's side of a multi-master mesh (docs/MULTI_MASTER.md).
 *
 * Owns: the pgs_mesh state of a sink whose config names mesh_node/mesh_peer: the replication origin
 * "odsync_<peer>" of its session, the stamp of the source transaction being applied (parsed from
 * the source's "odsync.mesh" message), the per-segment key decisions, the conflict log table
 * (_odsync_conflicts, next to the checkpoint table) and the causal-delivery progress cache.
 * Does, per source transaction (each becomes one target transaction, so every applied row carries
 * its source transaction's commit timestamp and origin):
 *   - commits the previous one with a checkpoint at the new one's start (exactly-once as before:
 *     the checkpoint holds every transaction that starts before it),
 *   - waits until every transaction of a third node the stamp's version vector depends on has been
 *     applied here (causal delivery),
 *   - pg_replication_origin_xact_setup(source commit LSN, source commit time),
 *   - one SELECT ... FOR UPDATE per table for the local versions of the keys it writes
 *     (pg_xact_commit_timestamp_origin(xmin)), compared with the version vector: a remote write
 *     is a conflict only when the local version is concurrent with it; conflicts are resolved by
 *     the policy, logged in _odsync_conflicts in the same transaction, and the losing changes are
 *     left out of what postgres_apply.c applies.
 * Never touches: statement text of the apply path, DDL, the checkpoint's SQL (postgres.c).
 * Pointer ownership: change values are borrowed for one apply() call; the filtered array holds
 * copies of od_change structs pointing at the caller's values and is reset before returning.
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

typedef struct local_ver { /* one row of the versions query */
  char *key;               /* key columns' text joined by \x1f (points into the PGresult) */
  int64_t ts;              /* commit time µs, INT64_MIN when unknown */
  const char *origin;      /* replication origin name, NULL: a local write */
  const char *row;         /* to_jsonb of the local row (NULL for a tombstone) */
  bool tomb;               /* no row: the key's tombstone (the local delete's version) */
  const char *ctr[COUNTERS_MAX]; /* the counter columns' local values (text) */
} local_ver;

typedef struct decision {
  const od_relation *rel;
  char *key; /* malloc'd */
  bool apply;
} decision;

typedef struct pgs_mesh {
  char node[64], peer[64], origin[80];
  int policy;
  char prio[8][64];
  int nprio;
  char *log_q;  /* quoted conflict table */
  char *tomb_q; /* quoted tombstone table */
  char *fn_q;   /* quoted tombstone trigger function */
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
  /* per segment: updates rewritten by the counter merge (values and texts malloc'd) */
  struct override { size_t idx; od_value *vals; char **texts; int ntexts; } *ovr;
  size_t novr, ovr_cap;
  /* the source transaction being applied */
  bool have_stamp;
  bool txn_has_data; /* the open target transaction holds a stamped source transaction */
  uint64_t lsn;
  int64_t ts;
  vv_entry vv[VV_MAX];
  int nvv;
  /* causal delivery: LSN of each origin applied here (cache of pg_replication_origin_status) */
  vv_entry prog[VV_MAX];
  int nprog;
  /* scratch */
  od_change *keep;
  size_t keep_cap;
  decision *dec;
  size_t ndec, dec_cap;
  uint32_t *slots;   /* hash of dec: index + 1, 0 empty; slot_cap a power of two > 2 * ndec */
  size_t slot_cap;
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
  const char *tnames[3] = {"_odsync_conflicts", "_odsync_tombstones", "_odsync_tombstone"};
  char **outs[3] = {&m->log_q, &m->tomb_q, &m->fn_q};
  for (int i = 0; i < 3; i++) {
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

void pgs_mesh_free(pgs_sink *s) {
  pgs_mesh *m = s->mesh;
  if (!m) return;
  if (m->conflicts || m->applied_txns)
    od_info("postgres sink %s: mesh %s <- %s: %" PRIu64 " transactions applied, %" PRIu64 " conflicts", s->where,
            m->node, m->peer, m->applied_txns, m->conflicts);
  for (size_t i = 0; i < m->ndec; i++) free(m->dec[i].key);
  free(m->dec);
  free(m->slots);
  free(m->keep);
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
  m->nprog = 0;
  return OD_OK;
}

void pgs_mesh_reset(pgs_sink *s) {
  if (!s->mesh) return;
  s->mesh->have_stamp = false;
  s->mesh->txn_has_data = false;
}

/* ---- stamps ----------------------------------------------------------------------------------- */

static int parse_stamp(pgs_sink *s, pgs_mesh *m, const od_value *v, od_error *err) {
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
  m->lsn = strtoull(lsn, NULL, 16);
  m->ts = strtoll(ts, NULL, 10);
  m->nvv = 0;
  while ((tok = strtok_r(NULL, " ", &save)) && m->nvv < VV_MAX) {
    char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) goto bad;
    *c1 = '\0';
    vv_entry *e = &m->vv[m->nvv++];
    snprintf(e->node, sizeof e->node, "%s", tok);
    e->lsn = strtoull(c1 + 1, NULL, 16);
    e->ts = strtoll(c2 + 1, NULL, 10);
  }
  m->have_stamp = true;
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

/* Causal delivery: every transaction of a third node that the peer had applied before this one
 * must be applied here first (else a row could be found missing or older than what the peer's
 * write was based on). Waits outside any open transaction work of this sink (nothing sent yet). */
static const vv_entry *causal_missing(const pgs_mesh *m);

static int causal_wait(pgs_sink *s, pgs_mesh *m, od_error *err) {
  int64_t start = 0;
  for (;;) {
    const vv_entry *missing = causal_missing(m);
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
                           "to %s running?", s->where, m->node, m->peer, m->lsn, m->peer, missing->node, missing->lsn,
                           (long long)(CAUSAL_WAIT_US / 1000000), missing->node, m->node);
    } else {
      struct timespec d = {0, 20 * 1000000};
      nanosleep(&d, NULL);
    }
    int rc = read_progress(s, m, err);
    if (rc) return rc;
  }
}

/* Whether every third-node transaction the stamp depends on is applied here, by the cache. */
static const vv_entry *causal_missing(const pgs_mesh *m) {
  for (int i = 0; i < m->nvv; i++) {
    const vv_entry *e = &m->vv[i];
    if (strcmp(e->node, m->node) == 0 || strcmp(e->node, m->peer) == 0 || !e->lsn) continue;
    const vv_entry *p = vv_find(m->prog, m->nprog, e->node);
    if (!p || p->lsn < e->lsn) return e;
  }
  return NULL;
}

static int start_txn(pgs_sink *s, pgs_mesh *m, const od_change *c, od_error *err) {
  int rc;
  if ((rc = parse_stamp(s, m, &c->newtup.values[1], err))) return rc;
  char setup[200];
  snprintf(setup, sizeof setup,
           "SELECT pg_replication_origin_xact_setup('%X/%X'::pg_lsn, '1970-01-01 00:00:00+00'::timestamptz + "
           "%" PRId64 " * interval '1 microsecond')", (unsigned)(m->lsn >> 32), (unsigned)m->lsn, m->ts);
  bool ready = causal_missing(m) == NULL;
  if (m->txn_has_data) {
    /* The previous source transaction gets a target transaction of its own: checkpoint at this
     * one's start (it holds every transaction starting before it, not this one). Its commit need
     * not wait for the WAL flush: the batch's last commit is synchronous and flushes it too
     * before the pipeline acknowledges anything; a server crash loses it with its checkpoint. When
     * nothing must be waited for, BEGIN and this one's origin setup ride in the same round trip. */
    if (!c->txn_start) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: mesh stamp without a position", s->where);
    s->commit_async = true;
    s->then_sql = ready ? setup : NULL;
    rc = pgs_commit_with(s, c->txn_start, err);
    s->commit_async = false;
    s->then_sql = NULL;
    if (rc) return rc;
    m->txn_has_data = false;
    if (ready) {
      m->txn_has_data = true;
      m->applied_txns++;
      od_counter_add(m->m_txns, 1);
      return OD_OK;
    }
    s->in_txn = true;
    s->begin_sent = false;
  }
  /* Causal delivery waits with nothing of this transaction sent (no locks held). */
  if ((rc = causal_wait(s, m, err)) || (rc = pgs_ensure_begin(s, err))) return rc;
  PGresult *r = pgs_exec(s, NULL, "pg_replication_origin_xact_setup", setup, 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  m->txn_has_data = true;
  m->applied_txns++;
  od_counter_add(m->m_txns, 1);
  return OD_OK;
}

/* ---- conflict detection ----------------------------------------------------------------------- */

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

/* Decisions of the open source transaction, by (relation, key): a hash over the dec array, so a
 * transaction of many rows stays linear. */
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

/* Append a decision (takes ownership of key). false on out-of-memory (key freed). */
static bool dec_add(pgs_mesh *m, const od_relation *rel, char *key, bool apply) {
  if (m->ndec == m->dec_cap) {
    size_t cap = m->dec_cap ? m->dec_cap * 2 : 64;
    decision *g = realloc(m->dec, cap * sizeof *g);
    if (!g) {
      free(key);
      return false;
    }
    m->dec = g;
    m->dec_cap = cap;
  }
  if (2 * (m->ndec + 1) >= m->slot_cap) {
    size_t cap = m->slot_cap ? m->slot_cap * 2 : 128;
    uint32_t *g = calloc(cap, sizeof *g);
    if (!g) {
      free(key);
      return false;
    }
    free(m->slots);
    m->slots = g;
    m->slot_cap = cap;
    for (size_t i = 0; i < m->ndec; i++) slot_put(m, i);
  }
  m->dec[m->ndec] = (decision){.rel = rel, .key = key, .apply = apply};
  slot_put(m, m->ndec++);
  return true;
}

static void dec_clear(pgs_mesh *m) {
  for (size_t i = 0; i < m->ndec; i++) free(m->dec[i].key);
  if (m->slot_cap > 4096 && m->ndec < m->slot_cap / 16) { /* after a big transaction: shrink */
    free(m->slots);
    m->slots = NULL;
    m->slot_cap = 0;
  } else if (m->ndec && m->slots) {
    memset(m->slots, 0, m->slot_cap * sizeof *m->slots);
  }
  m->ndec = 0;
}

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
  if (!origin) return m->node;
  if (strncmp(origin, "odsync_", 7) == 0) return origin + 7;
  return origin;
}

static int log_conflict(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const char *kind,
                        const char *key, const local_ver *lv, bool remote_wins, bool by_rule, od_error *err) {
  m->conflicts++;
  for (int k = 0; k < KINDS; k++)
    if (strcmp(kind, KIND_NAMES[k]) == 0) od_counter_add(m->m_conflicts[k], 1);
  char keyshow[512];
  snprintf(keyshow, sizeof keyshow, "%s", key);
  for (char *p = keyshow; *p; p++)
    if (*p == '\x1f') *p = ',';
  od_sqlbuf remote = {0};
  if (c->op != OD_OP_DELETE) tuple_json(&remote, c->rel, &c->newtup);
  char lts[32], rts[32], rlsn[32];
  snprintf(lts, sizeof lts, "%" PRId64, lv ? lv->ts : 0);
  snprintf(rts, sizeof rts, "%" PRId64, m->ts);
  snprintf(rlsn, sizeof rlsn, "%X/%X", (unsigned)(m->lsn >> 32), (unsigned)m->lsn);
  const char *lnode = lv ? node_of_origin(m, lv->origin) : m->node;
  const char *p[] = {m->node, kind, r->target, keyshow, lv ? lv->row : NULL,
                     c->op != OD_OP_DELETE && !remote.oom ? remote.p : NULL, lnode, m->peer,
                     lv && lv->ts != INT64_MIN ? lts : NULL, rts, rlsn, by_rule ? "rule" : POLICIES[m->policy],
                     remote_wins ? m->peer : lnode};
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, m->log_q);
  od_sqlbuf_add(b, " (node, kind, table_name, key, local_row, remote_row, local_origin, remote_origin, "
                   "local_commit_ts, remote_commit_ts, remote_lsn, policy, winner) VALUES ($1, $2, $3, $4, $5::jsonb, "
                   "$6::jsonb, $7, $8, '1970-01-01 00:00:00+00'::timestamptz + $9::bigint * interval '1 microsecond', "
                   "'1970-01-01 00:00:00+00'::timestamptz + $10::bigint * interval '1 microsecond', $11::pg_lsn, $12, $13)");
  PGresult *res = b->oom ? NULL : pgs_exec(s, m->log_q, "logging a conflict", b->p, 13, p, err);
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
  od_audit_json_str(&ab, by_rule ? "rule" : POLICIES[m->policy]);
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
 * the same answer for the same pair: only the two versions' (commit time, node) enter it. */
static bool remote_wins(const pgs_mesh *m, const local_ver *lv) {
  const char *lnode = node_of_origin(m, lv->origin);
  if (m->policy == POL_KEEP_LOCAL) return false;
  if (m->policy == POL_APPLY_REMOTE) return true;
  if (m->policy == POL_PRIORITY) {
    int a = prio_rank(m, m->peer), b = prio_rank(m, lnode);
    if (a != b) return a < b;
  }
  /* last_writer_wins (and priority between equals): commit time, then node name */
  if (m->ts != lv->ts) return m->ts > lv->ts;
  return strcmp(m->peer, lnode) > 0;
}

/* Was the local version seen by the remote writer before it wrote? */
static bool seen_by_remote(const pgs_mesh *m, const local_ver *lv) {
  if (lv->ts == INT64_MIN) return true; /* frozen, written before track_commit_timestamp, or ours */
  const char *lnode = node_of_origin(m, lv->origin);
  if (strcmp(lnode, m->peer) == 0) return true; /* the peer's own earlier write */
  const vv_entry *e = vv_find(m->vv, m->nvv, lnode);
  return e && lv->ts <= e->ts;
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
static int rules_decide(const pgs_mesh *m, const od_change *c, const local_ver *lv, const int *cols, int from,
                        int to, const int *rule_of) {
  for (int k = from; k < to; k++) {
    const struct rule *ru = &m->rules[rule_of[k]];
    const od_value *rv = cols[k] < c->newtup.ncolumns ? &c->newtup.values[cols[k]] : NULL;
    const char *lval = lv->ctr[k];
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
 * node (each node adds every other node's delta exactly once, in the transaction that applies it). Remote wins the other columns:
 * its new row with the merged counters replaces the change (an override); remote loses: only the
 * deltas are added here, now. false: no counter to merge (no old row image, not integers). */
static int merge_counters(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, size_t idx,
                          const local_ver *lv, const int *cols, int ncols, bool apply, bool *merged, od_error *err) {
  *merged = false;
  long long delta[COUNTERS_MAX], local[COUNTERS_MAX];
  if (c->old_kind != 'O' || c->oldtup.ncolumns != c->newtup.ncolumns) {
    od_warn("postgres sink %s: mesh: table %s: counter columns need the old row (REPLICA IDENTITY FULL on every "
            "node); merged by the policy instead", s->where, r->target);
    return OD_OK;
  }
  for (int k = 0; k < ncols; k++) {
    long long o, nv;
    char *end = NULL;
    if (!int_of(&c->oldtup.values[cols[k]], &o) || !int_of(&c->newtup.values[cols[k]], &nv) || !lv->ctr[k])
      return OD_OK;
    local[k] = strtoll(lv->ctr[k], &end, 10);
    delta[k] = nv - o;
  }
  *merged = true;
  if (!apply) {
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "UPDATE ");
    od_sqlbuf_add(b, r->qtarget);
    od_sqlbuf_add(b, " SET ");
    for (int k = 0; k < ncols; k++) {
      if (k) od_sqlbuf_add(b, ", ");
      od_sqlbuf_ident(b, r->rel->columns[cols[k]].name);
      od_sqlbuf_add(b, " = ");
      od_sqlbuf_ident(b, r->rel->columns[cols[k]].name);
      od_sqlbuf_addf(b, " + (%lld)", delta[k]);
    }
    od_sqlbuf_add(b, " WHERE ");
    const char *params[64];
    int np = 0;
    const od_tuple *kt = key_tuple(c);
    for (int k = 0; k < r->nkey && np < 64; k++) {
      int col = PGS_COL(r->key_plan[k]);
      if (k) od_sqlbuf_add(b, " AND ");
      od_sqlbuf_ident(b, r->rel->columns[col].name);
      od_sqlbuf_addf(b, " = $%d", np + 1);
      params[np++] = kt->values[col].data;
    }
    if (b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    PGresult *res = pgs_exec(s, r->target, "adding counter deltas (mesh)", b->p, np, params, err);
    if (!res) return err->code;
    PQclear(res);
    return OD_OK;
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
    int len = snprintf(buf, sizeof buf, "%lld", local[k] + delta[k]);
    if (!(o->texts[k] = strdup(buf))) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    o->ntexts++;
    o->vals[cols[k]] = (od_value){.data = o->texts[k], .len = (uint32_t)len, .kind = OD_VALUE_TEXT};
  }
  return OD_OK;
}

static int cmp_key(const void *a, const void *b) {
  return strcmp(((const local_ver *)a)->key, ((const local_ver *)b)->key);
}

/* Decide the changes of one relation in changes[from, to): fills keepflag[i - from]. */
static int decide_rel(pgs_sink *s, pgs_mesh *m, pg_rel *r, const od_change *changes, size_t from, size_t to,
                      bool *keepflag, od_error *err) {
  /* The keys, deduplicated by the query's IN list. */
  size_t nkeys = 0;
  for (size_t i = from; i < to; i++)
    if (changes[i].rel == r->rel) nkeys++;
  if (!nkeys) return OD_OK;
  char **keys = calloc(nkeys, sizeof *keys);
  size_t *idx = calloc(nkeys, sizeof *idx);
  const char **params = calloc(nkeys * (size_t)r->nkey + 3, sizeof *params);
  od_sqlbuf arr = {0};
  int rc = OD_OK;
  PGresult *res = NULL;
  local_ver *vers = NULL;
  int ctr[COUNTERS_MAX], rule_of[COUNTERS_MAX];
  int nctr = counter_cols(m, r, ctr);
  int nfetch = rule_cols(m, r, ctr, nctr, rule_of);
  if (!keys || !idx || !params) {
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    goto done;
  }
  size_t nk = 0;
  for (size_t i = from; i < to; i++) {
    if (changes[i].rel != r->rel) continue;
    idx[nk] = i;
    keys[nk] = key_text(r, key_tuple(&changes[i]));
    nk++;
  }
  for (size_t q0 = 0; q0 < nk; q0 += KEYS_PER_QUERY) {
    size_t q1 = q0 + KEYS_PER_QUERY < nk ? q0 + KEYS_PER_QUERY : nk;
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "WITH live AS (SELECT concat_ws(chr(31)");
    for (int k = 0; k < r->nkey; k++) {
      od_sqlbuf_add(b, ", t.");
      od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
      od_sqlbuf_add(b, "::text");
    }
    od_sqlbuf_add(b, ") AS k, (extract(epoch FROM c.timestamp) * 1000000)::int8 AS ts, o.roname AS origin, "
                     "to_jsonb(t.*)::text AS row");
    for (int k = 0; k < nfetch; k++) {
      od_sqlbuf_add(b, ", t.");
      od_sqlbuf_ident(b, r->rel->columns[ctr[k]].name);
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
    for (size_t j = q0; j < q1; j++) {
      const od_tuple *t = key_tuple(&changes[idx[j]]);
      if (!keys[j]) continue;
      od_sqlbuf_add(b, np ? ", (" : "(");
      for (int k = 0; k < r->nkey; k++) {
        params[np] = t->values[PGS_COL(r->key_plan[k])].data;
        od_sqlbuf_addf(b, "%s$%d", k ? ", " : "", ++np);
      }
      od_sqlbuf_add(b, ")");
    }
    od_sqlbuf_add(b, ") FOR UPDATE OF t) SELECT k, ts, origin, row, false");
    for (int k = 0; k < nfetch; k++) od_sqlbuf_addf(b, ", c%d", k);
    od_sqlbuf_add(b, " FROM live UNION ALL SELECT d.key, (extract(epoch FROM c.timestamp) * 1000000)::int8, o.roname, "
                     "NULL, true");
    for (int k = 0; k < nfetch; k++) od_sqlbuf_add(b, ", NULL");
    od_sqlbuf_add(b, " FROM ");
    od_sqlbuf_add(b, m->tomb_q);
    od_sqlbuf_addf(b, " d CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(d.xmin) c LEFT JOIN "
                      "pg_catalog.pg_replication_origin o ON o.roident = c.roident WHERE d.tbl = $%d AND "
                      "d.key = ANY ($%d::text[]) AND NOT EXISTS (SELECT 1 FROM live WHERE live.k = d.key)", np + 1, np + 2);
    if (!np) continue;
    od_sqlbuf_reset(&arr);
    od_sqlbuf_add(&arr, "{");
    for (size_t j = q0; j < q1; j++) {
      if (!keys[j]) continue;
      if (arr.len > 1) od_sqlbuf_add(&arr, ",");
      od_sqlbuf_add(&arr, "\"");
      for (const char *c = keys[j]; *c; c++) {
        if (*c == '"' || *c == '\\') od_sqlbuf_add(&arr, "\\");
        od_sqlbuf_addn(&arr, c, 1);
      }
      od_sqlbuf_add(&arr, "\"");
    }
    od_sqlbuf_add(&arr, "}");
    params[np] = r->target;
    params[np + 1] = arr.p;
    if (arr.oom) b->oom = true;
    if (b->oom) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      goto done;
    }
    PQclear(res);
    free(vers);
    vers = NULL;
    if (!(res = pgs_exec(s, r->target, "reading local row versions (mesh)", b->p, np + 2, params, err))) {
      rc = err->code;
      goto done;
    }
    int nv = PQntuples(res);
    vers = calloc((size_t)nv + 1, sizeof *vers);
    if (!vers) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      goto done;
    }
    for (int v = 0; v < nv; v++) {
      vers[v].key = PQgetvalue(res, v, 0);
      vers[v].ts = PQgetisnull(res, v, 1) ? INT64_MIN : strtoll(PQgetvalue(res, v, 1), NULL, 10);
      vers[v].origin = PQgetisnull(res, v, 2) ? NULL : PQgetvalue(res, v, 2);
      vers[v].row = PQgetisnull(res, v, 3) ? NULL : PQgetvalue(res, v, 3);
      vers[v].tomb = strcmp(PQgetvalue(res, v, 4), "t") == 0;
      for (int k = 0; k < nfetch; k++) vers[v].ctr[k] = PQgetisnull(res, v, 5 + k) ? NULL : PQgetvalue(res, v, 5 + k);
    }
    qsort(vers, (size_t)nv, sizeof *vers, cmp_key);
    for (size_t j = q0; j < q1; j++) {
      const od_change *c = &changes[idx[j]];
      bool *keep = &keepflag[idx[j] - from];
      *keep = true;
      if (!keys[j]) continue; /* not text: applied without a check */
      decision *d = dec_find(m, r->rel, keys[j]);
      if (d) { /* the key's first change in this transaction decided for the rest */
        *keep = d->apply;
        continue;
      }
      local_ver probe = {.key = keys[j]};
      const local_ver *lv = nv ? bsearch(&probe, vers, (size_t)nv, sizeof *vers, cmp_key) : NULL;
      const char *kind = NULL;
      bool apply = true, by_rule = false;
      if (lv && lv->tomb) { /* deleted here: the tombstone is the local version */
        if (!seen_by_remote(m, lv)) {
          kind = c->op == OD_OP_INSERT ? "insert_delete" : c->op == OD_OP_UPDATE ? "update_delete" : "delete_delete";
          apply = c->op == OD_OP_DELETE || remote_wins(m, lv);
        }
      } else if (lv && !seen_by_remote(m, lv)) {
        kind = c->op == OD_OP_DELETE ? "update_delete" : c->op == OD_OP_UPDATE ? "update_update" : "insert_insert";
        int ruled = c->op == OD_OP_DELETE ? 0 : rules_decide(m, c, lv, ctr, nctr, nfetch, rule_of);
        apply = ruled ? ruled > 0 : remote_wins(m, lv);
        if (ruled) by_rule = true;
      }
      /* Counters take every update as a delta on the local value, conflict or not: a row merged
       * here holds deltas its writer's peer has not seen, so "seen" does not mean "same value". */
      bool merged = false;
      if (nctr && c->op == OD_OP_UPDATE && lv && !lv->tomb &&
          (rc = merge_counters(s, m, r, c, idx[j], lv, ctr, nctr, apply, &merged, err)))
        goto done;
      if (kind && (rc = log_conflict(s, m, r, c, kind, keys[j], lv, apply, by_rule, err))) goto done;
      *keep = apply;
      char *owned = keys[j];
      keys[j] = NULL; /* owned by the decision now */
      if (!dec_add(m, r->rel, owned, apply)) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        goto done;
      }
    }
  }
done:
  if (keys)
    for (size_t j = 0; j < nkeys; j++) free(keys[j]);
  free(keys);
  free(idx);
  free(params);
  free(vers);
  PQclear(res);
  od_sqlbuf_free(&arr);
  return rc;
}

/* Changes [from, to) of the current source transaction: check, then apply what wins. */
static int apply_segment(pgs_sink *s, pgs_mesh *m, const od_change *changes, size_t from, size_t to, od_error *err) {
  if (from >= to) return OD_OK;
  if (!m->have_stamp) return pgs_apply_changes(s, changes + from, to - from, err);
  size_t n = to - from;
  if (n > m->keep_cap) {
    od_change *g = realloc(m->keep, n * sizeof *g);
    if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    m->keep = g;
    m->keep_cap = n;
  }
  bool *keepflag = calloc(n, sizeof *keepflag);
  if (!keepflag) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  for (size_t i = 0; i < n; i++) keepflag[i] = true;
  int rc = pgs_bulk_flush_now(s, err); /* the versions query must see this transaction's earlier rows */
  /* One versions query per keyed relation of the segment. */
  for (size_t i = from; i < to && rc == OD_OK; i++) {
    const od_change *c = &changes[i];
    if (c->op == OD_OP_MESSAGE || c->op == OD_OP_TRUNCATE || !c->rel) continue;
    bool done = false;
    for (size_t j = from; j < i && !done; j++) done = changes[j].rel == c->rel;
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
  return rc;
}

int pgs_mesh_apply(pgs_sink *s, const od_change *changes, size_t n, od_error *err) {
  pgs_mesh *m = s->mesh;
  size_t seg = 0;
  int rc = OD_OK;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    if (!is_stamp(&changes[i])) continue;
    if ((rc = apply_segment(s, m, changes, seg, i, err))) break;
    dec_clear(m);
    rc = start_txn(s, m, &changes[i], err);
    seg = i + 1;
  }
  if (rc == OD_OK) rc = apply_segment(s, m, changes, seg, n, err);
  return rc;
}
