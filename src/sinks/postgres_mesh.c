/* sinks/postgres_mesh.c — the PostgreSQL sink's side of a multi-master mesh (docs/MULTI_MASTER.md).
 *
 * Owns: the pgs_mesh state of a sink whose config names mesh_node/mesh_peer: the replication origin
 * "odsync_<peer>" of its session, the stamps of the source transactions of the open batch (parsed
 * from the source's "odsync.mesh" messages), the DDL of the conflict log (_odsync_conflicts), the
 * tombstones (_odsync_tombstones), the row-version side table (_odsync_versions) and the records of
 * unique values rows left (_odsync_unique_left, with its trigger), all next to the checkpoint table, the causal-delivery progress cache and the flow of a batch. The decisions
 * themselves (key states, versions query, policies, conflict log rows) are in
 * postgres_mesh_decide.c, counters in postgres_mesh_counter.c, column versions, column rules and
 * column merges in postgres_mesh_colmerge.c; the shared state in postgres_mesh_internal.h.
 * Does, per sink transaction (several source transactions share one target transaction; a row's
 * version is the side table's when a mesh sink wrote it last, else its xmin's commit time; the
 * changes of its apply() calls are held back, copied, and go as one run at the commit, or earlier
 * at PEND_MAX_CHANGES / PEND_MAX_BYTES, before a causal wait and at a savepoint):
 *   - waits until every transaction of a third node a stamp's version vector depends on has been
 *     applied here (causal delivery), committing what came before it first (checkpoint at its
 *     start: exactly-once as before, the checkpoint holds every transaction starting before it),
 *   - per table, SELECT ... ORDER BY key FOR UPDATE of the rows and tombstones of the keys the
 *     batch writes, then the same statement again to read their versions after the lock waits
 *     (BEGIN and both executions of the prepared statement in one round trip,
 *     postgres_mesh_query.c);
 *     each change is compared with its own transaction's version vector: a remote write is a
 *     conflict only when the key's version is concurrent with it; conflicts are resolved by the
 *     policy and logged in _odsync_conflicts in the same transaction, the losing changes are left
 *     out of what postgres_apply.c applies,
 *   - after the apply: merged counters, rewritten tombstones, one statement that writes the
 *     versions of the keys written (a plain INSERT for the keys the read found without a side-table
 *     row, the upsert for the others) and pg_replication_origin_xact_setup(last commit LSN, latest
 *     commit time) — sent in the apply's pipeline (one round trip) when there is nothing to do in
 *     between.
 * Never touches: statement text of the apply path, DDL, the checkpoint's SQL (postgres.c).
 * Pointer ownership: change values are borrowed for one apply() call, so the held-back changes
 * (pend) are deep copies whose values, positions and correlation ids live in pend's blocks until the
 * run (freed by the run, begin, rollback); the filtered array (keep) holds copies of od_change
 * structs pointing at pend's values and is reset by every run; key states own their key text and
 * column values (freed by dec_clear at every run, begin, rollback).
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sql.h"
#include "common/mesh_sqlrule.h"

static void pend_clear(pgs_mesh *m);
static void pend_free(pgs_mesh *m);

const char *const pgs_mesh_kinds[KINDS] = {"insert_insert", "update_update", "update_delete", "insert_delete",
                                           "delete_delete", "unique"};
const char *const pgs_mesh_policies[] = {"last_writer_wins", "priority", "keep_local", "apply_remote",
                                         "column_merge", NULL};

const mesh_pol *pgs_mesh_pol(const pgs_mesh *m, const char *target) {
  for (int i = 0; i < m->ntpol; i++) {
    const char *t = m->tpol[i].table;
    if (strcmp(t, target) == 0) return &m->tpol[i];
    /* a mesh.tables entry without a schema names public.<table> */
    if (!strchr(t, '.') && strncmp(target, "public.", 7) == 0 && strcmp(target + 7, t) == 0) return &m->tpol[i];
  }
  return &m->def;
}

void pgs_mesh_sql_key_kept(od_sqlbuf *b) {
  od_sqlbuf_add(b, "IF TG_OP = 'UPDATE' THEN IF k IS NOT DISTINCT FROM (SELECT string_agg(to_jsonb(NEW) ->> a, "
                   "chr(31) ORDER BY o) FROM unnest(TG_ARGV) WITH ORDINALITY AS u(a, o)) THEN RETURN NULL; END IF; "
                   "END IF; ");
}

static int policy_index(const char *name, bool merge_ok) {
  for (int i = 0; POLICIES[i]; i++)
    if (strcmp(name, POLICIES[i]) == 0 && (merge_ok || i != POL_COLUMN_MERGE)) return i;
  return -1;
}

/* "p1,p2" (or "-": none) into pol->prio. */
static void prio_parse(mesh_pol *pol, const char *list) {
  pol->nprio = 0;
  if (strcmp(list, "-") == 0) return;
  for (const char *c = list; *c && pol->nprio < 8;) {
    size_t l = strcspn(c, ",");
    snprintf(pol->prio[pol->nprio++], sizeof pol->prio[0], "%.*s", (int)l, c);
    c += l + (c[l] == ',');
  }
}

/* ---- config ---------------------------------------------------------------------------------- */

static const od_config_entry *find(const od_config_section *cfg, const char *k) { return od_config_find(cfg, k); }

int pgs_mesh_config(pgs_sink *s, const od_config_section *cfg, const char *schema_q, od_error *err) {
  const char *node = NULL, *peer = NULL, *pol = NULL, *fb = NULL;
  int rc;
  if ((rc = od_config_string(cfg, "mesh_node", NULL, &node, err)) ||
      (rc = od_config_string(cfg, "mesh_peer", NULL, &peer, err)) ||
      (rc = od_config_string(cfg, "mesh_policy", "last_writer_wins", &pol, err)) ||
      (rc = od_config_string(cfg, "mesh_fallback", "last_writer_wins", &fb, err)))
    return rc;
  if (!node && !peer) return OD_OK;
  if (!node || !peer || !*node || !*peer) {
    return od_config_fail_key(cfg, node ? "mesh_node" : "mesh_peer", err,
                              ": mesh_node and mesh_peer go together (this node's and the source node's mesh names); "
                              "set both or neither");
  }
  const char *names[2] = {node, peer};
  for (int i = 0; i < 2; i++) {
    bool ok = strlen(names[i]) <= 48;
    for (const char *c = names[i]; *c && ok; c++)
      ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_';
    if (!ok) {
      const char *key = i ? "mesh_peer" : "mesh_node";
      return od_config_fail_key(cfg, key, err, ".%s '%s' must be 1-48 characters of a-z, 0-9 and _", key, names[i]);
    }
  }
  pgs_mesh *m = calloc(1, sizeof *m);
  if (!m) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  s->mesh = m;
  snprintf(m->node, sizeof m->node, "%s", node);
  snprintf(m->peer, sizeof m->peer, "%s", peer);
  snprintf(m->origin, sizeof m->origin, "odsync_%s", peer);
  if ((rc = pgs_mesh_join_config(m, cfg, err))) return rc;
  m->def.policy = policy_index(pol, true);
  m->def.fallback = policy_index(fb, false);
  if (m->def.policy < 0 || m->def.fallback < 0) {
    const char *key = m->def.policy < 0 ? "mesh_policy" : "mesh_fallback";
    return od_config_fail_key(cfg, key, err,
                              ".%s '%s' is not a policy; expected last_writer_wins, priority, keep_local, apply_remote%s",
                              key, m->def.policy < 0 ? pol : fb, m->def.policy < 0 ? " or column_merge" : "");
  }
  char *const *list = NULL;
  int n = 0;
  if ((rc = od_config_list(cfg, "mesh_priority", &list, &n, err))) return rc;
  for (int i = 0; i < n && i < 8; i++) snprintf(m->def.prio[m->def.nprio++], sizeof m->def.prio[0], "%s", list[i]);
  if ((m->def.policy == POL_PRIORITY || (m->def.policy == POL_COLUMN_MERGE && m->def.fallback == POL_PRIORITY)) &&
      !n) {
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: mesh_policy priority needs mesh_priority, the node names from "
                   "the most to the least trusted", cfg->file, cfg->line, cfg->col, cfg->path);
  }
  /* mesh_table_policies: "schema.table policy fallback p1,p2|-" (written by config_mesh.c) */
  if ((rc = od_config_list(cfg, "mesh_table_policies", &list, &n, err))) return rc;
  if (n && !(m->tpol = calloc((size_t)n, sizeof *m->tpol))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    char t[300], p1[40], p2[40], pr[600];
    mesh_pol *tp = &m->tpol[m->ntpol];
    if (sscanf(list[i], "%299s %39s %39s %599s", t, p1, p2, pr) != 4 || (tp->policy = policy_index(p1, true)) < 0 ||
        (tp->fallback = policy_index(p2, false)) < 0)
      return od_config_fail_key(cfg, "mesh_table_policies", err,
                                ".mesh_table_policies[%d] '%s': expected 'schema.table policy fallback node1,node2' "
                                "(or '-' for no order)", i, list[i]);
    if (!(tp->table = strdup(t))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    m->ntpol++;
    prio_parse(tp, pr);
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
    char stbl[300];
    const char *expr = NULL;
    /* "schema.table: sql: EXPR"; an empty one falls to the error below, which names every form */
    if (od_mesh_sqlrule_split(list[i], stbl, sizeof stbl, &expr) && *expr && m->nrules < RULES_MAX) {
      struct rule *ru = &m->rules[m->nrules++];
      if (!(ru->column = strdup(stbl)) || !(ru->sql = strdup(expr)))
        return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
      ru->index = i;
      continue;
    }
    const char *colon = strchr(list[i], ':');
    size_t cl = colon ? (size_t)(colon - list[i]) : 0;
    int dots = 0;
    for (size_t k = 0; k < cl; k++) dots += list[i][k] == '.';
    const char *rest = colon ? colon + 1 : "";
    while (*rest == ' ') rest++;
    if (!colon || dots != 2 || !*rest || m->nrules == RULES_MAX)
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.mesh_rules[%d] '%s': expected 'schema.table.column: higher wins', "
                     "'schema.table.column: a < b < c' or 'schema.table: sql: <expression>' (at most %d rules)", cfg->file,
                     e && e->list_line ? e->list_line[i] : cfg->line, e && e->list_col ? e->list_col[i] : cfg->col,
                     cfg->path, i, list[i], RULES_MAX);
    struct rule *ru = &m->rules[m->nrules++];
    ru->index = i;
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
  /* column_merge (docs/MULTI_MASTER.md, "Business rules and column_merge"): a column rule orders one
   * column's concurrent writes (postgres_mesh_colmerge.c, col_order); an SQL rule judges two whole
   * rows, and such a row is a mix of several writes: refused, as is a rule on a counter column. */
  for (int i = 0; i < m->nrules; i++) {
    const struct rule *ru = &m->rules[i];
    char tbl[300];
    size_t tl = ru->sql ? strlen(ru->column) : (size_t)(strrchr(ru->column, '.') - ru->column);
    snprintf(tbl, sizeof tbl, "%.*s", (int)tl, ru->column);
    if (pgs_mesh_pol(m, tbl)->policy != POL_COLUMN_MERGE) continue;
    bool counter = false;
    for (int k = 0; !ru->sql && k < m->ncounters; k++) counter = counter || strcmp(m->counters[k], ru->column) == 0;
    if (!ru->sql && !counter) continue;
    const od_config_entry *e = find(cfg, "mesh_rules");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.mesh_rules[%d] '%s': %s %s %s (docs/MULTI_MASTER.md, \"Business "
                   "rules and column_merge\")", cfg->file, e && e->list_line ? e->list_line[ru->index] : cfg->line,
                   e && e->list_col ? e->list_col[ru->index] : cfg->col, cfg->path, ru->index,
                   list[ru->index] /* list: still mesh_rules */, counter ? ru->column : "table",
                   counter ? "is a counter column of a column_merge table, whose value no rule orders:" : tbl,
                   counter ? "remove the rule" : "has policy column_merge, where an SQL rule, which judges two whole "
                   "rows, would let the nodes end with different rows: use column rules or another policy");
  }
  if ((rc = od_config_int(cfg, "mesh_gc_interval_s", 60, 0, 86400 * 7, &m->gc_interval_s, err))) return rc;
  /* false: every key above checked, no session (`odsync check` beside a running mesh) */
  if ((rc = od_config_bool(cfg, "mesh_session", true, &m->session, err))) return rc;
  if ((rc = od_config_list(cfg, "mesh_nodes", &list, &n, err))) return rc;
  if (!(m->nodes = calloc((size_t)n + 1, sizeof *m->nodes))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    if (!(m->nodes[i] = strdup(list[i]))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
    m->nnodes++;
  }
  if (!(m->nodes[m->nnodes] = strdup(m->peer))) return OD_FAIL(err, OD_ENOMEM, "postgres sink: out of memory");
  m->nnodes++; /* the peer at least (a hand-written mesh pipeline without mesh_nodes) */
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
  const char *tnames[15] = {"_odsync_conflicts", "_odsync_tombstones", "_odsync_tombstone", "_odsync_versions",
                            "_odsync_hlc", "_odsync_keylock", "_odsync_peer_vv", "_odsync_colver",
                            "_odsync_colver_fn", "_odsync_tombstone_img", "_odsync_unique_left",
                            "_odsync_unique_left_fn", "_odsync_truncate_fn", "_odsync_ensure",
                            "_odsync_keylock_counter"};
  char **outs[15] = {&m->log_q, &m->tomb_q, &m->fn_q,  &m->ver_q, &m->hlc_q, &m->kl_q,   &m->pvv_q, &m->cv_q,
                     &m->cvfn_q, &m->tifn_q, &m->ul_q, &m->ulfn_q, &m->trfn_q, &m->ens_q, &m->cifn_q};
  for (int i = 0; i < 15; i++) {
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
  pgs_mesh_gc_stop(m->gc);
  for (int i = 0; i < m->nnodes; i++) free(m->nodes[i]);
  free(m->nodes);
  pgs_mesh_vq_forget(m);
  if (m->conflicts || m->applied_txns)
    od_info("postgres sink %s: mesh %s <- %s: %" PRIu64 " transactions applied, %" PRIu64 " conflicts, %" PRIu64
            " key-changing updates taken in as a delete and an insert (%" PRIu64 " kept as updates)", s->where, m->node,
            m->peer, m->applied_txns, m->conflicts, m->moves, m->moves_kept);
  pgs_mesh_dec_clear(m);
  pgs_mesh_unique_free(m);
  free(m->dec);
  free(m->slots);
  free(m->keep);
  free(m->sidx);
  free(m->pend);
  pend_free(m);
  free(m->st);
  free(m->wr);
  free(m->ver_q);
  free(m->hlc_q);
  free(m->pvv_q);
  free(m->log_q);
  free(m->tomb_q);
  free(m->fn_q);
  free(m->kl_q);
  free(m->cv_q);
  free(m->cvfn_q);
  free(m->tifn_q);
  free(m->ul_q);
  free(m->ulfn_q);
  free(m->trfn_q);
  free(m->ens_q);
  free(m->cifn_q);
  free(m->ctr_carry);
  for (int i = 0; i < m->ntables; i++) free(m->tables[i]);
  free(m->tables);
  for (int i = 0; i < m->ntpol; i++) free(m->tpol[i].table);
  free(m->tpol);
  for (int i = 0; i < m->ncounters; i++) free(m->counters[i]);
  free(m->counters);
  for (int i = 0; i < m->nrules; i++) {
    free(m->rules[i].column);
    free(m->rules[i].sql);
    for (int k = 0; k < m->rules[i].norder; k++) free(m->rules[i].order[k]);
    free(m->rules[i].order);
  }
  free(m->ovr);
  free(m);
  s->mesh = NULL;
}

/* ---- session: origin and conflict table ----------------------------------------------------- */

bool pgs_mesh_checks_only(const pgs_sink *s) { return s->mesh && !s->mesh->session; }

/* Mesh tables with a DEFERRABLE primary key: `odsync check` refuses them (docs/MULTI_MASTER.md,
 * "Updates that change the key"); a mesh that runs with one anyway is told at every session. */
static int warn_deferred_keys(pgs_sink *s, pgs_mesh *m, od_error *err) {
  od_sqlbuf arr = {0};
  od_sqlbuf_add(&arr, "{");
  for (int i = 0; i < m->ntables; i++) pgs_mesh_arr_add(&arr, m->tables[i]);
  od_sqlbuf_add(&arr, "}");
  const char *p[1] = {arr.p};
  PGresult *r = arr.oom ? NULL
                        : pgs_exec(s, NULL, "reading the mesh tables' primary keys",
                                   "SELECT string_agg(t, ', ' ORDER BY t) FROM unnest($1::text[]) t JOIN pg_index i ON "
                                   "i.indrelid = to_regclass(t) WHERE i.indisprimary AND NOT i.indimmediate",
                                   1, p, err);
  int rc = r ? OD_OK : arr.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
    od_warn("postgres sink %s: mesh %s <- %s: table(s) %s have a DEFERRABLE primary key, which `odsync check` refuses: "
            "a transaction that shifts keys over each other (SET id = id + 1) holds two rows under one key for a "
            "while, and its moves, applied one by one as a delete and an insert, lose the row moved onto a key "
            "that was freed only later; make the key NOT DEFERRABLE", s->where, m->node, m->peer,
            PQgetvalue(r, 0, 0));
  PQclear(r);
  od_sqlbuf_free(&arr);
  return rc;
}

int pgs_mesh_session(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m || !m->session) return OD_OK;
  pgs_mesh_vq_forget(m); /* prepared statements died with the last connection */
  int jrc = pgs_mesh_join_gate(s, err); /* a joining node: nothing before its copy */
  if (!jrc) jrc = pgs_mesh_removed_gate(s, err); /* a removed node: nothing at all (no origin made again) */
  if (jrc) return jrc;
  /* Table and origin in one transaction under odsync's DDL lock: the mesh's other sinks on this
   * node connect at the same moment. */
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "BEGIN; " PGS_DDL_LOCK "; ");
  pgs_mesh_ensure_fn_ddl(m, b); /* what follows locks a table only to change it */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->log_q);
  od_sqlbuf_add(b, " (id bigserial PRIMARY KEY, logged_at timestamptz NOT NULL DEFAULT now(), node text NOT NULL, "
                   "kind text NOT NULL, table_name text NOT NULL, key text NOT NULL, local_row jsonb, remote_row jsonb, "
                   "local_origin text NOT NULL, remote_origin text NOT NULL, local_commit_ts timestamptz, "
                   "remote_commit_ts timestamptz NOT NULL, remote_lsn pg_lsn NOT NULL, policy text NOT NULL, "
                   "winner text NOT NULL); ");
  /* column_merge: which columns came from which side ({"remote": [...], "local": [...], "both": [...]}) */
  pgs_mesh_ensure_column(m, b, m->log_q, "merged", "jsonb");
  pgs_mesh_ensure_column(m, b, m->log_q, "local_hlc", "int8");
  pgs_mesh_ensure_column(m, b, m->log_q, "remote_hlc", "int8");
  pgs_mesh_ensure_column(m, b, m->log_q, "index_name", "text"); /* the unique index of a "unique" conflict */
  /* The node's clock: (commit time here, hlc) of every applying transaction whose highest hlc was
   * ahead of this node's clock; a local write's hlc is derived from it (docs/MULTI_MASTER.md). */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->hlc_q);
  od_sqlbuf_add(b, " (hlc int8 NOT NULL); ");
  pgs_mesh_ensure_index(m, b, m->hlc_q, "_odsync_hlc_hlc", "(hlc)");
  pgs_mesh_pvv_ddl(m, b); /* the peer's version vector (postgres_mesh_vv.c) */
  /* the nodes `odsync mesh remove` retired (read by the gate and the clean-up; written by the command) */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS public._odsync_removed (node text PRIMARY KEY, removed_at timestamptz "
                   "NOT NULL DEFAULT now()); ");
  od_sqlbuf_addf(b, "SELECT pg_replication_origin_create('%s') WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_origin WHERE roname = '%s'); ", m->origin, m->origin);
  /* Tombstones: every delete of a mesh table (local or applied) leaves (table, key); the row's
   * xmin is the deleting transaction, whose commit time and origin are the delete's version. */
  /* Row versions written by mesh sinks: the author, its commit time and clock of every row version
   * (or delete) a sink applied, written in the applying transaction. A row whose xmin carries no
   * replication origin was written locally after that, and its xmin's commit time is its version. */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->ver_q);
  /* Keys in COLLATE "C": the primary key is only ever probed for equality, and byte comparison
   * makes the per-batch upsert 30-45 % cheaper than the database's locale (docs/BENCHMARKS.md, "The
   * versions upsert in isolation"). A table created before keeps its collation (equally correct). */
  od_sqlbuf_add(b, " (tbl text COLLATE \"C\" NOT NULL, key text COLLATE \"C\" NOT NULL, node text NOT NULL, "
                   "ts int8 NOT NULL, hlc int8 NOT NULL, PRIMARY KEY (tbl, key)); ");
  /* column_merge: a merged row's other versions, "node:ts:hlc,..." (NULL for every other row) */
  pgs_mesh_ensure_column(m, b, m->ver_q, "also", "text");
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " (tbl text NOT NULL, key text NOT NULL, deleted_at timestamptz NOT NULL DEFAULT now(), "
                   "PRIMARY KEY (tbl, key)); ");
  /* Counter tables: what the key's counters hold while it has no row (the deltas its deleters had
   * not seen; NULL: zero everywhere). A delete removes the counters it saw, so a fresh tombstone
   * starts at NULL; a mesh sink writes the balance after its apply (postgres_mesh_counter.c). */
  pgs_mesh_ensure_column(m, b, m->tomb_q, "ctr", "jsonb");
  /* The deleted row's last values (column_merge and SQL-rule tables; postgres_mesh_colver.c): every
   * new delete of a key starts without one, its image trigger (after this one) then sets it. */
  pgs_mesh_ensure_column(m, b, m->tomb_q, "img", "jsonb");
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->fn_q);
  /* (also after an update of a key column: one that changed the key left the old key as a delete
   * does, docs/MULTI_MASTER.md "Updates that change the key") */
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE k text; j jsonb := to_jsonb(OLD); BEGIN "
                   "SELECT string_agg(j ->> a, chr(31) ORDER BY o) INTO k FROM unnest(TG_ARGV) WITH ORDINALITY AS u(a, o); ");
  pgs_mesh_sql_key_kept(b);
  od_sqlbuf_add(b, "INSERT INTO ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " AS d (tbl, key) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, k) ON CONFLICT (tbl, key) DO "
                   "UPDATE SET deleted_at = now(), ctr = NULL, img = NULL; RETURN NULL; END $odsync$; ");
  /* Unique values rows left (docs/MULTI_MASTER.md, "When the winner leaves before the loser
   * arrives"): every delete of a row of a table with a non-primary unique index, and every update
   * that changes one of those indexes' columns, records (table, key, the old row's unique columns,
   * the version of the old row: the side table's when its xmin carries a replication origin, else
   * this node's commit time and hlc). A row written by the deleting transaction itself: only a mesh
   * sink's (an earlier run of its batch, whose version is in the side table) counts. */
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->ul_q);
  od_sqlbuf_add(b, " (tbl text COLLATE \"C\" NOT NULL, key text COLLATE \"C\" NOT NULL, img jsonb NOT NULL, node text, "
                   "ts int8 NOT NULL, hlc int8 NOT NULL, PRIMARY KEY (tbl, key, img)); ");
  pgs_mesh_ensure_index(m, b, m->ul_q, "_odsync_unique_left_img", "USING gin (img jsonb_path_ops)");
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->ulfn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE nk int := TG_ARGV[0]::int; jo jsonb := "
                   "to_jsonb(OLD); jn jsonb; k text; im jsonb; t text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME; "
                   "c record; vn text; vts int8; vh int8; BEGIN IF TG_OP = 'UPDATE' THEN jn := to_jsonb(NEW); IF NOT "
                   "EXISTS (SELECT 1 FROM unnest(TG_ARGV[1:]) AS a WHERE jn -> a IS DISTINCT FROM jo -> a) THEN "
                   "RETURN NULL; END IF; END IF; SELECT jsonb_object_agg(a, jo -> a) INTO im FROM "
                   "unnest(TG_ARGV[1:]) AS a; SELECT string_agg(jo ->> a, chr(31) ORDER BY o) INTO k FROM "
                   "unnest(TG_ARGV[1:nk]) WITH ORDINALITY AS u(a, o); SELECT x.timestamp AS ct, x.roident, o.roname "
                   "INTO c FROM pg_xact_commit_timestamp_origin(OLD.xmin) x LEFT JOIN pg_catalog.pg_replication_origin "
                   "o ON o.roident = x.roident; IF c.ct IS NULL AND current_setting('odsync.mesh_sink', true) IS "
                   "DISTINCT FROM 'on' THEN RETURN NULL; END IF; IF c.ct IS NULL OR c.roident <> 0 THEN SELECT v.node, "
                   "v.ts, v.hlc INTO vn, vts, vh FROM ");
  od_sqlbuf_add(b, m->ver_q);
  od_sqlbuf_add(b, " v WHERE v.tbl = t AND v.key = k; IF NOT FOUND THEN IF c.ct IS NULL THEN RETURN NULL; END IF; "
                   "vn := CASE WHEN c.roname LIKE 'odsync\\_%' THEN substr(c.roname, 8) ELSE c.roname END; vts := "
                   "(extract(epoch FROM c.ct) * 1000000)::int8; vh := vts; END IF; ELSE vts := (extract(epoch FROM "
                   "c.ct) * 1000000)::int8; vh := ");
  od_mesh_sql_local_hlc(b, m->hlc_q, "c.ct"); /* a local write's hlc (common/mesh_sql.c) */
  od_sqlbuf_add(b, "; END IF; INSERT INTO ");
  od_sqlbuf_add(b, m->ul_q);
  od_sqlbuf_add(b, " AS l (tbl, key, img, node, ts, hlc) VALUES (t, k, im, vn, vts, vh) ON CONFLICT (tbl, key, img) DO "
                   "UPDATE SET node = excluded.node, ts = excluded.ts, hlc = excluded.hlc; RETURN NULL; END $odsync$; ");
  /* The never-existing-key race: an application's insert of a key (or an update moving a row onto
   * it) takes a shared advisory lock on (table, one of 256 stripes of the key's hash: a bounded
   * number of locks per transaction, whatever its size); a mesh sink holds it exclusively, from
   * before its fresh read of the versions to its commit, on every key of its batch without a live
   * row (postgres_mesh_unique.c). Mesh sinks' own writes skip it (odsync.mesh_sink). */
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->kl_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE k text; j jsonb := to_jsonb(NEW); BEGIN "
                   "SELECT string_agg(j ->> a, chr(31) ORDER BY o) INTO k FROM unnest(TG_ARGV) WITH ORDINALITY AS u(a, o); "
                   "PERFORM pg_advisory_xact_lock_shared(hashtext(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME), "
                   "hashtext(k) & 255); RETURN NEW; END $odsync$; ");
  /* counter tables' key-lock function: an insert also names the balance it starts from (postgres_mesh_counter.c) */
  pgs_mesh_counter_ddl(m, b);
  /* TRUNCATE of a mesh table (docs/MULTI_MASTER.md, "TRUNCATE"): an application's TRUNCATE first
   * deletes every row, in its own transaction, so each row leaves as a delete with a tombstone and
   * every node judges it like any delete (a write it had not seen survives by the policy, a key it
   * never had is not touched); the peers' sinks skip the TRUNCATE message that follows. */
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->trfn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ BEGIN IF current_setting('odsync.mesh_sink', "
                   "true) IS DISTINCT FROM 'on' THEN EXECUTE format('DELETE FROM %I.%I', TG_TABLE_SCHEMA, "
                   "TG_TABLE_NAME); END IF; RETURN NULL; END $odsync$; ");
  for (int i = 0; i < m->ntables; i++) {
    char *lit = PQescapeLiteral(s->conn, m->tables[i], strlen(m->tables[i]));
    char *fn = PQescapeLiteral(s->conn, m->fn_q, strlen(m->fn_q));
    const char *klf = pgs_mesh_has_counters(m, m->tables[i]) ? m->cifn_q : m->kl_q;
    char *kl = PQescapeLiteral(s->conn, klf, strlen(klf));
    if (!lit || !fn || !kl) {
      PQfreemem(lit);
      PQfreemem(fn);
      PQfreemem(kl);
      return pgs_fail(s, NULL, "quoting a table name", NULL, err);
    }
    od_sqlbuf_addf(b, "DO $odsync$ DECLARE cols text; icols text; rel regclass := to_regclass(%s); BEGIN IF rel IS "
                      "NULL THEN RETURN; END IF; SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY a.attnum), "
                      "string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols, icols FROM pg_index i "
                      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid "
                      "= rel AND i.indisprimary; IF cols IS NULL THEN RETURN; END IF; PERFORM %s(rel, 'trigger', "
                      "'_odsync_keylock', format('CREATE OR REPLACE TRIGGER _odsync_keylock BEFORE INSERT OR UPDATE "
                      "OF %%s ON %%s FOR EACH ROW WHEN (current_setting(''odsync.mesh_sink'', true) IS DISTINCT FROM "
                      "''on'') EXECUTE FUNCTION %%s(%%s)', icols, rel, %s, cols)); END $odsync$; ", lit, m->ens_q, kl);
    PQfreemem(kl);
    od_sqlbuf_addf(b, "DO $odsync$ DECLARE cols text; icols text; rel regclass := to_regclass(%s); BEGIN IF rel IS "
                      "NULL THEN RETURN; END IF; SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY a.attnum), "
                      "string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols, icols FROM pg_index i "
                      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid "
                      "= rel AND i.indisprimary; IF cols IS NULL THEN RETURN; END IF; PERFORM %s(rel, 'trigger', "
                      "'_odsync_tombstone', format('CREATE OR REPLACE TRIGGER _odsync_tombstone AFTER DELETE OR "
                      "UPDATE OF %%s ON %%s FOR EACH ROW EXECUTE FUNCTION %%s(%%s)', icols, rel, %s, cols)); END "
                      "$odsync$; ", lit, m->ens_q, fn);
    char *trf = PQescapeLiteral(s->conn, m->trfn_q, strlen(m->trfn_q));
    if (!trf) {
      PQfreemem(lit);
      PQfreemem(fn);
      return pgs_fail(s, NULL, "quoting a table name", NULL, err);
    }
    od_sqlbuf_addf(b, "DO $odsync$ DECLARE rel regclass := to_regclass(%s); BEGIN IF rel IS NULL THEN RETURN; END "
                      "IF; PERFORM %s(rel, 'trigger', '_odsync_truncate', format('CREATE OR REPLACE TRIGGER "
                      "_odsync_truncate BEFORE TRUNCATE ON %%s FOR EACH STATEMENT EXECUTE FUNCTION %%s()', rel, %s)); "
                      "END $odsync$; ", lit, m->ens_q, trf);
    PQfreemem(trf);
    char *ufn = PQescapeLiteral(s->conn, m->ulfn_q, strlen(m->ulfn_q));
    if (!ufn) {
      PQfreemem(lit);
      PQfreemem(fn);
      return pgs_fail(s, NULL, "quoting a table name", NULL, err);
    }
    /* the unique-left trigger: (number of key columns, key columns..., unique columns...) */
    /* (an update that changes the key leaves the old key's unique values as a delete does: the
     * trigger fires on updates of the key columns too, docs/MULTI_MASTER.md "Updates that change
     * the key") */
    od_sqlbuf_addf(b, "DO $odsync$ DECLARE kc text; nk int; ka text[]; uc text; ua text[]; ucols text; rel "
                      "regclass := to_regclass(%s); BEGIN IF rel IS NULL THEN RETURN; END IF; SELECT string_agg("
                      "quote_literal(a.attname), ', ' ORDER BY a.attnum), count(*), array_agg(quote_ident(a.attname)) "
                      "INTO kc, nk, ka FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = "
                      "ANY (i.indkey) WHERE i.indrelid = rel AND i.indisprimary; SELECT string_agg(quote_literal("
                      "x.attname), ', ' ORDER BY x.attnum), array_agg(quote_ident(x.attname)) INTO uc, ua FROM (SELECT "
                      "DISTINCT a.attname, a.attnum FROM pg_index i JOIN pg_attribute a ON ", lit);
    /* the columns the checked indexes read: key columns, and those of expressions and predicates
     * (postgres_mesh_unique.c), so that a row leaving a partial index's predicate is recorded */
    od_sqlbuf_add(b, pgs_mesh_unique_refcols_sql());
    od_sqlbuf_add(b, " WHERE i.indrelid = rel AND ");
    od_sqlbuf_add(b, pgs_mesh_unique_checked_sql());
    od_sqlbuf_addf(b, ") x; SELECT string_agg(DISTINCT c, ', ') INTO ucols FROM unnest(ka || ua) c; IF kc IS NULL OR "
                      "uc IS NULL THEN IF EXISTS "
                      "(SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = '_odsync_unique_left') THEN EXECUTE "
                      "format('DROP TRIGGER _odsync_unique_left ON %%s', rel); END IF; RETURN; END IF; PERFORM "
                      "%s(rel, 'trigger', '_odsync_unique_left', format('CREATE OR REPLACE TRIGGER _odsync_unique_left "
                      "AFTER DELETE OR UPDATE OF %%s ON %%s FOR EACH ROW EXECUTE FUNCTION %%s(%%s, %%s, %%s)', ucols, "
                      "rel, %s, quote_literal(nk), kc, uc)); END $odsync$; ", m->ens_q, ufn);
    PQfreemem(ufn);
    PQfreemem(lit);
    PQfreemem(fn);
  }
  /* column_merge tables: local writes' column versions (postgres_mesh_colver.c) */
  if (pgs_mesh_colver_ddl(s, m, b, err)) return err->code;
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
  /* SQL rules: each prepared against its table once (the same check as `odsync check`) */
  if (pgs_mesh_sqlrule_check_all(s, m, err)) return err->code;
  const char *p[] = {m->origin};
  r = pgs_exec(s, NULL, "pg_replication_origin_session_setup", "SELECT pg_replication_origin_session_setup($1)", 1, p,
               err);
  if (!r) {
    /* `odsync mesh remove` dropped the origin after this session passed its gate: wait like the gate */
    od_error gone = {0};
    if (pgs_mesh_removed_gate(s, &gone)) {
      *err = gone;
      return err->code;
    }
    err->retriable = true; /* the origin is still held by the session of a process that just died */
    return err->code;
  }
  PQclear(r);
  /* A mesh sink holds its rows' locks for a batch of source transactions: in a deadlock with an
   * application it should be the one that gives up (its transaction is retried). Where the role may
   * set it, a short deadlock_timeout makes this session run the deadlock check first. */
  /* the key-lock trigger skips mesh sinks' writes (they hold the key locks themselves) */
  r = pgs_exec(s, NULL, "marking the session as a mesh sink", "SET odsync.mesh_sink = 'on'", 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  r = pgs_exec(s, NULL, "setting deadlock_timeout", "DO $odsync$ BEGIN SET deadlock_timeout = '100ms'; EXCEPTION WHEN "
               "insufficient_privilege THEN NULL; END $odsync$", 0, NULL, err);
  if (!r) return err->code;
  PQclear(r);
  if (warn_deferred_keys(s, m, err)) return err->code;
  m->nprog = 0;
  if (!m->gc && m->gc_interval_s > 0) { /* the clean-up (postgres_mesh_gc.c): its own thread and connection */
    pgs_mesh_gc_conf gc = {.dsn = s->dsn, .where = s->where, .pipeline = s->pipeline, .node = m->node,
                           .nodes = (const char *const *)m->nodes, .nnodes = m->nnodes,
                           .tables = (const char *const *)m->tables, .ntables = m->ntables, .tomb_q = m->tomb_q,
                           .ver_q = m->ver_q, .hlc_q = m->hlc_q, .pvv_q = m->pvv_q, .ul_q = m->ul_q, .interval_s = (int)m->gc_interval_s};
    if (pgs_mesh_gc_start(&gc, &m->gc, err)) return err->code;
  }
  return pgs_mesh_pvv_load(s, m, err);
}

void pgs_mesh_reset(pgs_sink *s) {
  if (!s->mesh) return;

  s->mesh->nst = 0;
  s->mesh->ntodel = 0;
  pend_clear(s->mesh);
  pgs_mesh_unique_forget(s->mesh);
  s->mesh->txn_has_data = false;
  pgs_mesh_dec_clear(s->mesh);
  pgs_mesh_pvv_rollback(s->mesh); /* begin: no-op after a commit; rollback: back to the committed vector */
}

void pgs_mesh_committed(pgs_sink *s) {
  if (s->mesh) pgs_mesh_pvv_committed(s->mesh);
}

/* ---- stamps ----------------------------------------------------------------------------------- */

static int parse_stamp(pgs_sink *s, pgs_mesh *m, const od_value *v, stamp *st, od_error *err) {
  char buf[4096];
  if (v->kind != OD_VALUE_TEXT && v->kind != OD_VALUE_BINARY) goto bad;
  size_t n = v->len < sizeof buf - 1 ? v->len : sizeof buf - 1;
  memcpy(buf, v->data, n);
  buf[n] = '\0';
  char *save = NULL, *tok = strtok_r(buf, " ", &save);
  if (!tok || (strcmp(tok, "v1") != 0 && strcmp(tok, "v2") != 0)) goto bad;
  bool v2 = tok[1] == '2'; /* v2: the hlc follows the commit time (v1: hlc = commit time) */
  char *node = strtok_r(NULL, " ", &save), *lsn = strtok_r(NULL, " ", &save), *ts = strtok_r(NULL, " ", &save);
  char *hlc = v2 ? strtok_r(NULL, " ", &save) : ts;
  if (!node || !lsn || !ts || !hlc) goto bad;
  if (strcmp(node, m->peer) != 0)
    return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh: the stream comes from node '%s' but this sink's "
                   "mesh_peer is '%s'; check the mesh's dsn entries", s->where, node, m->peer);
  st->lsn = strtoull(lsn, NULL, 16);
  st->ts = strtoll(ts, NULL, 10);
  st->hlc = strtoll(hlc, NULL, 10);
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

bool pgs_mesh_is_stamp(const od_change *c) {
  if (c->op != OD_OP_MESSAGE || c->newtup.ncolumns < 2) return false;
  const od_value *p = &c->newtup.values[0];
  return p->data && p->len == strlen(MESH_PREFIX) && memcmp(p->data, MESH_PREFIX, p->len) == 0;
}

const vv_entry *pgs_mesh_vv_find(const vv_entry *vv, int n, const char *node) {
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
    /* a removed node: everything it wrote was applied here before its origin went (mesh remove) */
    if (pgs_mesh_removed_has(m, e->node)) continue;
    const vv_entry *p = pgs_mesh_vv_find(m->prog, m->nprog, e->node);
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
    if (!rc) rc = pgs_mesh_removed_read(s, err); /* a node removed meanwhile is not waited for */
    if (rc) return rc;
  }
}

/* ---- applying a run ---------------------------------------------------------------------------- */

void pgs_mesh_arr_addn(od_sqlbuf *b, const char *v, size_t len) {
  od_sqlbuf_add(b, b->len > 1 ? ",\"" : "\"");
  const char *end = v + len;
  for (const char *c = v; c < end;) {
    const char *q = c; /* a run without quotes or backslashes, copied in one piece */
    while (q < end && *q != '"' && *q != '\\') q++;
    od_sqlbuf_addn(b, c, (size_t)(q - c));
    c = q;
    if (c < end) {
      od_sqlbuf_add(b, "\\");
      od_sqlbuf_addn(b, c++, 1);
    }
  }
  od_sqlbuf_add(b, "\"");
}

void pgs_mesh_arr_add(od_sqlbuf *b, const char *v) { pgs_mesh_arr_addn(b, v, strlen(v)); }

static int cmp_wr(const void *a, const void *b, void *ctx) {
  const pgs_mesh *m = ctx;
  const decision *x = &m->dec[*(const size_t *)a], *y = &m->dec[*(const size_t *)b];
  int c = strcmp(x->r->target, y->r->target);
  return c ? c : strcmp(x->key, y->key);
}

/* Send what is buffered of the run's apply and then `sql` in one pipeline (one round trip). */
static int exec_after_apply(pgs_sink *s, pgs_mesh *m, const char *what, const char *sql, int n,
                            const char *const *params, od_error *err) {
  if (!s->conn) return pgs_fail(s, NULL, what, NULL, err);
  if (s->copy_rel && pgs_load_end(s, err)) return err->code;
  const char *name = pgs_mesh_prepared(s, m, m->ver_q, sql, err); /* fixed text: prepared once */
  if (!name) return err->code;
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, NULL, "entering pipeline mode", NULL, err);
  int rc = pgs_send_begin(s, err);
  if (rc == OD_OK) rc = pgs_bulk_flush_all(s, err);
  if (rc == OD_OK && !pgs_cmd_push(s, PGS_CMD_OTHER, NULL, what, -1))
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (rc == OD_OK && !(*name ? PQsendQueryPrepared(s->conn, name, n, params, NULL, NULL, 0)
                             : PQsendQueryParams(s->conn, sql, n, NULL, params, NULL, NULL, 0)))
    rc = pgs_fail(s, NULL, what, NULL, err);
  od_error ignored;
  int frc = pgs_pipeline_finish(s, NULL, rc ? &ignored : err);
  return rc ? rc : frc;
}

/* After the run's apply: merged counters of rows whose remote update lost, then one statement that
 * writes the version of every key this run wrote into the side table and sets the replication
 * origin's progress to the run's last source transaction (commit LSN and time). */
static int finish_run(pgs_sink *s, pgs_mesh *m, bool stamped, od_error *err) {
  /* The run's writes go out now, right after the versions they were decided on were read (the
   * set-based buffer would otherwise wait for the commit): a key with no row is not locked by that
   * read, so the time an application could write it in between stays as short as one round trip.
   * When nothing has to happen between the apply and the versions statement (no counter to fix,
   * no tombstone to rewrite: the common case), both go out in one pipeline round trip. */
  bool between = false;
  for (size_t i = 0; i < m->nwr && !between; i++) {
    const decision *d = &m->dec[m->wr[i]];
    between = d->fix || (d->touch && d->tomb) || d->ctr_tomb;
  }
  int rc = m->nwr && between ? pgs_bulk_flush_now(s, err) : OD_OK;
  od_sqlbuf tt = {0}, tk = {0}, ti = {0};
  od_sqlbuf_add(&tt, "{");
  od_sqlbuf_add(&tk, "{");
  od_sqlbuf_add(&ti, "{");
  for (size_t i = 0; i < m->nwr && rc == OD_OK; i++) {
    decision *d = &m->dec[m->wr[i]];
    /* (exact counters of a key left without a row: its tombstone's balance, written below) */
    if (d->fix && !d->tomb) rc = pgs_mesh_fix_counters(s, m, d, err);
    if (d->touch && d->tomb) {
      pgs_mesh_arr_add(&tt, d->r->target);
      pgs_mesh_arr_add(&tk, d->key);
      /* column_merge: the row as this run left it before the delete (its trigger did not fire) */
      od_sqlbuf img = {0};
      if (pgs_mesh_colver_table(m, d->r) && pgs_mesh_colver_row_json(d, &img)) pgs_mesh_arr_add(&ti, img.p);
      /* SQL rules: the deleted row as the delete's author had it, or JSON null: none (not the
       * trigger's image, which is this node's row) */
      else if (pgs_mesh_has_sqlrule(m, d->r->target)) pgs_mesh_arr_add(&ti, d->img ? d->img : "null");
      else od_sqlbuf_add(&ti, ti.len > 1 ? ",NULL" : "NULL");
      if (img.oom) ti.oom = true;
      od_sqlbuf_free(&img);
    }
    d->touch = false;
  }
  od_sqlbuf_add(&tt, "}");
  od_sqlbuf_add(&tk, "}");
  od_sqlbuf_add(&ti, "}");
  if (rc == OD_OK && tt.len > 2) {
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    /* An upsert: keys whose last operation in the run is a delete and that had no row when the run
     * read the versions (re-created and deleted again within the run: one DELETE of nothing, the
     * trigger does not fire), and keys whose remote row lost a unique-index clash, may have no
     * tombstone or an older one; this transaction's xmin then carries the origin, so the key's
     * version is the side table's, written below (docs/MULTI_MASTER.md). */
    od_sqlbuf_add(b, "INSERT INTO ");
    od_sqlbuf_add(b, m->tomb_q);
    od_sqlbuf_add(b, " AS d (tbl, key, img) SELECT t, k, i::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS "
                     "u (t, k, i) ON CONFLICT (tbl, key) DO UPDATE SET deleted_at = now(), img = CASE WHEN excluded.img "
                     "= 'null'::jsonb THEN NULL ELSE coalesce(excluded.img, d.img) END");
    const char *p2[3] = {tt.p, tk.p, ti.p};
    bool oom = b->oom || tt.oom || tk.oom || ti.oom;
    PGresult *r = oom ? NULL : pgs_exec(s, m->tomb_q, "rewriting tombstones (mesh)", b->p, 3, p2, err);
    if (!r) rc = oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
    PQclear(r);
  }
  od_sqlbuf_free(&tt);
  od_sqlbuf_free(&tk);
  od_sqlbuf_free(&ti);
  if (rc == OD_OK) rc = pgs_mesh_ctr_write_balances(s, m, err); /* after the tombstones exist */
  if (rc) return rc;
  if (!m->nst || (!stamped && !m->nwr)) return OD_OK;
  if (m->nwr > 1) qsort_r(m->wr, m->nwr, sizeof *m->wr, cmp_wr, m); /* side-table rows in (table, key) order, as rows */
  /* a[0..5]: keys whose side-table row exists or is unknown (the upsert); a[6..11]: keys the run's
   * versions read found without one, under the key's lock (a plain INSERT: no speculative insertion) */
  od_sqlbuf a[12] = {{0}}, ca[2] = {{0}};
  for (int k = 0; k < 12; k++) od_sqlbuf_add(&a[k], "{");
  for (int k = 0; k < 2; k++) od_sqlbuf_add(&ca[k], "{");
  size_t nrows = 0, ncv = 0;
  for (size_t i = 0; i < m->nwr; i++) {
    decision *d = &m->dec[m->wr[i]];
    d->queued = false;
    if (!d->has_ver || d->ts == INT64_MIN) continue;
    char ts[32], hlc[32];
    snprintf(ts, sizeof ts, "%" PRId64, d->ts);
    snprintf(hlc, sizeof hlc, "%" PRId64, d->hlc == INT64_MIN ? d->ts : d->hlc);
    od_sqlbuf *x = d->vrow < 0 ? &a[6] : &a[0];
    pgs_mesh_arr_add(&x[0], d->r->target);
    pgs_mesh_arr_add(&x[1], d->key);
    pgs_mesh_arr_add(&x[2], d->node[0] ? d->node : m->node);
    pgs_mesh_arr_add(&x[3], ts);
    pgs_mesh_arr_add(&x[4], hlc);
    pgs_mesh_arr_add(&x[5], d->also ? d->also : "");
    nrows++;
    if (pgs_mesh_colver_table(m, d->r)) { /* its column versions are in `also` now: local ones cleared */
      pgs_mesh_arr_add(&ca[0], d->r->target);
      pgs_mesh_arr_add(&ca[1], d->key);
      ncv++;
    }
  }
  for (int k = 0; k < 2; k++) od_sqlbuf_add(&ca[k], "}");
  m->nwr = 0;
  for (int k = 0; k < 12; k++) od_sqlbuf_add(&a[k], "}");
  const stamp *last = &m->st[m->nst - 1];
  char lsn[32], msg[64], hlc[32];
  snprintf(lsn, sizeof lsn, "%X/%X", (unsigned)(last->lsn >> 32), (unsigned)last->lsn);
  /* The message's time is the latest commit time applied, not the last one's: a node's commit times
   * may be a few µs out of commit order, and a version vector entry must cover every one. */
  for (int i = 0; i < m->nst; i++) {
    if (m->st[i].ts > m->max_ts) m->max_ts = m->st[i].ts;
    if (m->st[i].hlc > m->max_hlc) m->max_hlc = m->st[i].hlc;
  }
  snprintf(msg, sizeof msg, "%" PRId64 " %" PRId64, m->max_ts, m->max_hlc);
  snprintf(hlc, sizeof hlc, "%" PRId64, m->max_hlc);
  const char *p[21] = {lsn, msg, hlc, a[0].p, a[1].p, a[2].p, a[3].p, a[4].p, a[5].p,
                       a[6].p, a[7].p, a[8].p, a[9].p, a[10].p, a[11].p};
  int np = nrows ? 15 : 3;
  /* the peer's version vector rides along (postgres_mesh_vv.c): entries that grew, $np+1.. */
  od_sqlbuf pa[3] = {{0}};
  bool pvv = pgs_mesh_pvv_dirty(m);
  if (pvv) {
    pgs_mesh_pvv_arrays(m, pa);
    p[np] = m->peer;
    for (int k = 0; k < 3; k++) p[np + 1 + k] = pa[k].p;
  }
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  if (nrows) {
    od_sqlbuf_add(b, "WITH w AS (INSERT INTO ");
    od_sqlbuf_add(b, m->ver_q);
    od_sqlbuf_add(b, " AS v (tbl, key, node, ts, hlc, also) SELECT t, k, n, s, h, nullif(o, '') FROM "
                     "unnest($4::text[], $5::text[], $6::text[], $7::int8[], $8::int8[], $9::text[]) AS u (t, k, n, s, "
                     "h, o) ON CONFLICT (tbl, key) DO UPDATE SET node = excluded.node, ts = excluded.ts, hlc = "
                     "excluded.hlc, also = excluded.also RETURNING 1), wi AS (INSERT INTO ");
    od_sqlbuf_add(b, m->ver_q);
    od_sqlbuf_add(b, " (tbl, key, node, ts, hlc, also) SELECT t, k, n, s, h, nullif(o, '') FROM unnest($10::text[], "
                     "$11::text[], $12::text[], $13::int8[], $14::int8[], $15::text[]) AS u (t, k, n, s, h, o) "
                     "RETURNING 1) ");
  }
  /* The clock (docs/MULTI_MASTER.md, "Clock skew"): the origin's timestamp is 0, so this transaction's
   * commit timestamp here is this node's own commit time, in this node's commit order like a local
   * write's; the message tells the node's stream readers the latest author commit time (version
   * vectors) and the highest hlc applied; _odsync_hlc keeps that hlc when it is ahead of this node's
   * clock (otherwise every later local commit's time exceeds it and it changes no hlc). */
  od_sqlbuf_add(b, nrows ? ", hc AS (INSERT INTO " : "WITH hc AS (INSERT INTO ");
  od_sqlbuf_add(b, m->hlc_q);
  od_sqlbuf_add(b, " (hlc) SELECT $3::int8 WHERE $3::int8 >= (extract(epoch FROM clock_timestamp()) * 1000000)::int8 "
                   "RETURNING 1) ");
  if (pvv) {
    od_sqlbuf_add(b, ", pv AS (");
    pgs_mesh_pvv_upsert(m, b, np + 1);
    od_sqlbuf_add(b, " RETURNING 1) ");
  }
  int nall = pvv ? np + 4 : np;
  if (ncv) { /* column_merge keys written: their local column versions are in `also` now */
    p[nall] = ca[0].p;
    p[nall + 1] = ca[1].p;
    od_sqlbuf_add(b, ", cv AS (DELETE FROM ");
    od_sqlbuf_add(b, m->cv_q);
    od_sqlbuf_addf(b, " c USING unnest($%d::text[], $%d::text[]) AS u (t, k) WHERE c.tbl = u.t AND c.key = u.k "
                      "RETURNING 1) ", nall + 1, nall + 2);
    nall += 2;
  }
  od_sqlbuf_add(b, "SELECT pg_replication_origin_xact_setup($1::pg_lsn, '2000-01-01 00:00:00+00'::timestamptz), "
                   "pg_logical_emit_message(true, '" MESH_HLC_PREFIX "', $2), (SELECT count(*) FROM hc)");
  if (nrows) od_sqlbuf_add(b, ", (SELECT count(*) FROM w), (SELECT count(*) FROM wi)");
  if (pvv) od_sqlbuf_add(b, ", (SELECT count(*) FROM pv)");
  if (ncv) od_sqlbuf_add(b, ", (SELECT count(*) FROM cv)");
  bool oom = b->oom || ca[0].oom || ca[1].oom;
  for (int k = 0; k < 12; k++) oom = oom || a[k].oom;
  for (int k = 0; k < 3; k++) oom = oom || pa[k].oom;
  PGresult *r = NULL;
  if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  else if (!between)
    rc = exec_after_apply(s, m, "writing row versions and the origin's progress (mesh)", b->p, nall, p, err);
  else if ((rc = pgs_ensure_begin(s, err)) == OD_OK &&
           !(r = pgs_exec(s, m->ver_q, "writing row versions and the origin's progress (mesh)", b->p, nall, p,
                          err)))
    rc = err->code;
  PQclear(r);
  if (rc == OD_OK && pvv) pgs_mesh_pvv_written(m);
  for (int k = 0; k < 12; k++) od_sqlbuf_free(&a[k]);
  for (int k = 0; k < 3; k++) od_sqlbuf_free(&pa[k]);
  for (int k = 0; k < 2; k++) od_sqlbuf_free(&ca[k]);
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
  pgs_mesh_dec_clear(m);
  bool *keepflag = calloc(n, sizeof *keepflag);
  if (!keepflag) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  bool stamped = false;
  for (size_t i = 0; i < n; i++) {
    keepflag[i] = !pgs_mesh_is_stamp(&changes[from + i]);
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
    /* A relation seen before needs no catalog work: BEGIN goes out with its versions query. */
    bool known = pgs_rel_known(s, c->rel);
    if (!known && ((rc = pgs_bulk_flush_now(s, err)) || (rc = pgs_ensure_begin(s, err)))) break;
    if ((rc = pgs_rel_get(s, c->rel, &r, err)) || (rc = pgs_bulk_ready(s, r, err))) break;
    if (!r->keyed || c->rel->match_full_row) continue;
    rc = pgs_mesh_decide_rel(s, m, r, changes, i, to, keepflag + (i - from), err);
  }
  size_t nk = 0;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    if (!keepflag[i]) continue;
    if (changes[from + i].op == OD_OP_TRUNCATE) {
      /* the peer's _odsync_truncate trigger deleted the rows first, in the same transaction: those
       * deletes (already in this run) are the truncate; applying it here too would remove rows the
       * peer never had — writes concurrent with it, which the peer keeps */
      if (!m->truncate_warned)
        od_info("postgres sink %s: mesh %s <- %s: a TRUNCATE of %s.%s is not applied as such: its rows came as "
                "deletes (docs/MULTI_MASTER.md, \"TRUNCATE\")", s->where, m->node, m->peer,
                changes[from + i].rel ? changes[from + i].rel->schema : "?",
                changes[from + i].rel ? changes[from + i].rel->name : "?");
      m->truncate_warned = true;
      continue;
    }
    m->keep[nk] = changes[from + i];
    for (size_t o = 0; o < m->novr; o++) /* counter merges: the new row with the merged counters */
      if (m->ovr[o].idx == from + i) {
        m->keep[nk].newtup.values = m->ovr[o].vals;
        if (m->ovr[o].as_update) { /* column_merge: an insert merged into the live row (its key is in newtup) */
          m->keep[nk].op = OD_OP_UPDATE;
          m->keep[nk].old_kind = 'K';
          m->keep[nk].oldtup = m->keep[nk].newtup;
        }
      }
    for (size_t o = 0; o < m->ntodel; o++) /* a remote row that lost a unique-index clash: removed */
      if (m->todel[o] == from + i) {
        od_change *k = &m->keep[nk];
        /* An update with its old key (one that changed the key, or REPLICA IDENTITY FULL) was
         * decided under that old key (its row here), which the loser's removal deletes and
         * tombstones: the row it moved is removed, and the new key is never written. Else the
         * key columns are read at their places in the new row. */
        bool old_key = k->op == OD_OP_UPDATE && (k->old_kind == 'K' || k->old_kind == 'O');
        k->op = OD_OP_DELETE;
        if (!old_key) {
          k->old_kind = 'K';
          k->oldtup = k->newtup;
        }
      }
    nk++;
  }
  free(keepflag);
  m->ntodel = 0;
  if (rc == OD_OK && nk) rc = pgs_apply_changes(s, m->keep, nk, err);
  pgs_mesh_overrides_free(m);
  if (rc == OD_OK) rc = finish_run(s, m, stamped, err);
  if (rc == OD_OK && m->nul) rc = pgs_mesh_unique_flush(s, m, err); /* values left within the run */
  if (rc && strcmp(err->sqlstate, "23505") == 0) {
    /* A unique clash the batch's check did not see (an application committed the clashing row
     * after that check): the batch is retried, and its check then sees that row. */
    err->retriable = true;
    od_error_prefix(err, "mesh %s <- %s: a unique-index clash appeared after the batch's check; retrying the batch: ",
                    m->node, m->peer);
  }
  /* the peer's vector as far as this run, when finish_run's statement did not carry it (a run of
   * vector updates only): persisted in the transaction that moves the checkpoint */
  if (rc == OD_OK && pgs_mesh_pvv_dirty(m)) rc = pgs_mesh_pvv_write(s, m, err);
  return rc;
}

/* ---- holding back a transaction's changes -------------------------------------------------------- */

struct pend_block {
  struct pend_block *next;
  size_t cap, used;
  _Alignas(8) unsigned char data[];
};

static void pend_clear(pgs_mesh *m) {
  m->npend = 0;
  m->pend_rel_ok = NULL;
  m->pend_bytes = 0;
  struct pend_block *b = m->pblk;
  if (!b) return;
  while (b->next) { /* keep one block, the oldest (usually of the default size) */
    struct pend_block *next = b->next;
    free(b);
    b = next;
  }
  b->used = 0;
  m->pblk = b;
}

static void pend_free(pgs_mesh *m) {
  while (m->pblk) {
    struct pend_block *next = m->pblk->next;
    free(m->pblk);
    m->pblk = next;
  }
}

static void *pend_alloc(pgs_mesh *m, size_t n) {
  n = (n + 7) & ~(size_t)7;
  struct pend_block *b = m->pblk;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 256 * 1024 ? n : 256 * 1024;
    if (!(b = malloc(sizeof *b + cap))) return NULL;
    b->cap = cap;
    b->used = 0;
    b->next = m->pblk;
    m->pblk = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

static const char *pend_strndup(pgs_mesh *m, const char *v, size_t len) {
  char *p = pend_alloc(m, len + 1);
  if (!p) return NULL;
  memcpy(p, v, len);
  p[len] = '\0';
  return p;
}

/* Room for one more stamp in m->st. */
static int st_reserve(pgs_sink *s, pgs_mesh *m, od_error *err) {
  if (m->nst < m->st_cap) return OD_OK;
  int cap = m->st_cap ? m->st_cap * 2 : 16;
  stamp *g = realloc(m->st, (size_t)cap * sizeof *g);
  if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  m->st = g;
  m->st_cap = cap;
  return OD_OK;
}

/* Copy a tuple's values into pend's memory; false on out-of-memory. */
static bool pend_tuple(pgs_mesh *m, od_tuple *t) {
  if (!t->ncolumns || !t->values) return true;
  od_value *v = pend_alloc(m, t->ncolumns * sizeof *v);
  if (!v) return false;
  for (uint16_t k = 0; k < t->ncolumns; k++) {
    v[k] = t->values[k];
    if (v[k].data && !(v[k].data = pend_strndup(m, t->values[k].data, t->values[k].len))) return false;
    m->pend_bytes += t->values[k].len;
  }
  t->values = v;
  return true;
}

/* Copy c (sidx: its stamp, -1 none) to the end of pend; false on out-of-memory. */
static bool pend_add1(pgs_mesh *m, const od_change *c, int sidx) {
  if (m->npend == m->pend_cap) {
    size_t cap = m->pend_cap ? m->pend_cap * 2 : 256;
    od_change *g = realloc(m->pend, cap * sizeof *g);
    if (!g) return false;
    m->pend = g;
    int *gs = realloc(m->sidx, cap * sizeof *gs);
    if (!gs) return false;
    m->sidx = gs;
    m->pend_cap = m->sidx_cap = cap;
  }
  od_change *p = &m->pend[m->npend];
  *p = *c;
  if (!pend_tuple(m, &p->newtup) || !pend_tuple(m, &p->oldtup)) return false;
  if (c->txn_start) {
    od_pos *pos = pend_alloc(m, sizeof *pos);
    if (!pos) return false;
    *pos = *c->txn_start;
    p->txn_start = pos;
  }
  if (c->correlation_id && !(p->correlation_id = pend_strndup(m, c->correlation_id, strlen(c->correlation_id))))
    return false;
  m->sidx[m->npend++] = sidx;
  m->pend_bytes += sizeof *p;
  return true;
}

/* Whether c is an update that changes its row's key (an old key, and a key column's value differs). */
static bool key_moved(const od_change *c) {
  if (c->op != OD_OP_UPDATE || !c->rel || (c->old_kind != 'K' && c->old_kind != 'O')) return false;
  for (uint16_t i = 0; i < c->rel->ncolumns; i++) {
    if (!c->rel->columns[i].key) continue;
    if (i >= c->oldtup.ncolumns || i >= c->newtup.ncolumns) return false;
    const od_value *o = &c->oldtup.values[i], *n = &c->newtup.values[i];
    if (o->kind == OD_VALUE_UNCHANGED || n->kind == OD_VALUE_UNCHANGED) continue;
    if (o->kind != n->kind || o->len != n->len || (o->len && memcmp(o->data, n->data, o->len) != 0)) return true;
  }
  return false;
}

/* Copy c to the end of pend, as pend_add1. An update that changes its row's key goes in as what it
 * is on every node (docs/MULTI_MASTER.md, "Updates that change the key"): the delete of the old key
 * and the insert of the new one, with the same stamp and position in the transaction, each judged
 * as any delete and insert is (the old key's version against the delete, the new key's against the
 * insert; counters: the delete removes what its author saw, the insert adds its value minus the
 * balance its author's tombstone of the new key held). The author's triggers record the same: a
 * tombstone of the old key (and its last row, its unique values left), and the balance the new key
 * starts from. The new row arrives whole: the key-lock trigger (plpgsql, before an update of a key
 * column) makes PostgreSQL write its values anew, so pgoutput sends no TOASTed value as unchanged.
 * Should one come (a table without that trigger), it is taken from the old row (REPLICA IDENTITY
 * FULL); without the old row such an update stays an update (warned once). */
static bool pend_add(pgs_sink *s, pgs_mesh *m, const od_change *c, int sidx) {
  if (!key_moved(c)) return pend_add1(m, c, sidx);
  bool unchanged = false;
  for (uint16_t i = 0; i < c->newtup.ncolumns; i++) unchanged = unchanged || c->newtup.values[i].kind == OD_VALUE_UNCHANGED;
  if (unchanged && (c->old_kind != 'O' || c->oldtup.ncolumns < c->newtup.ncolumns)) {
    if (!m->move_warned) {
      m->move_warned = true;
      od_warn("postgres sink %s: mesh %s <- %s: an update of %s.%s changed its key and left TOASTed values unchanged, "
              "which only the full old row holds: it is applied as an update, not as the delete of the old key and "
              "the insert of the new one (conflicts of the new key are not judged); set REPLICA IDENTITY FULL on the "
              "table on every node", s->where, m->node, m->peer, c->rel->schema, c->rel->name);
    }
    m->moves_kept++;
    return pend_add1(m, c, sidx);
  }
  od_change del = *c, ins = *c;
  del.op = OD_OP_DELETE;
  del.newtup = (od_tuple){0};
  ins.op = OD_OP_INSERT;
  ins.old_kind = 0;
  ins.oldtup = (od_tuple){0};
  od_value *vals = NULL;
  if (unchanged) { /* pend_add1 copies them */
    if (!(vals = malloc(c->newtup.ncolumns * sizeof *vals))) return false;
    for (uint16_t i = 0; i < c->newtup.ncolumns; i++)
      vals[i] = c->newtup.values[i].kind == OD_VALUE_UNCHANGED ? c->oldtup.values[i] : c->newtup.values[i];
    ins.newtup.values = vals;
  }
  bool ok = pend_add1(m, &del, sidx) && pend_add1(m, &ins, sidx);
  free(vals);
  m->moves++;
  return ok;
}

int pgs_mesh_flush(pgs_sink *s, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m || !m->npend) return OD_OK;
  int rc = run_flush(s, m, m->pend, 0, m->npend, err);
  pgs_mesh_ctr_carry(m); /* an insert's "odsync.ctr" message at the end of the run */
  pend_clear(m);
  if (m->nst > 1) { /* the last source transaction may go on in the next apply() call */
    m->st[0] = m->st[m->nst - 1];
    m->nst = 1;
  }
  return rc;
}

void pgs_mesh_discard(pgs_sink *s) {
  if (s->mesh) pend_clear(s->mesh);
}

/* Whether rel (not yet known to the sink) is another version of a table that changes in pend have:
 * its table's DDL must then run after those changes, as in a run of their own (postgres_apply.c's
 * segments). */
static bool pend_new_version(pgs_sink *s, pgs_mesh *m, const od_relation *rel) {
  if (!m->npend || !rel || rel == m->pend_rel_ok || pgs_rel_known(s, rel)) return false;
  for (size_t i = 0; i < m->npend; i++) {
    const od_relation *o = m->pend[i].rel;
    if (o && o != rel && strcmp(o->name, rel->name) == 0 && strcmp(o->schema, rel->schema) == 0) return true;
  }
  m->pend_rel_ok = rel;
  return false;
}

/* apply() of a mesh sink: the source transactions of the batch share the target transaction, and
 * the changes of all its apply() calls are held back (copied) and decided and applied together, as
 * one run, at the commit (pgs_mesh_flush; earlier at PEND_MAX_CHANGES or PEND_MAX_BYTES): one lock
 * and read statement, one apply and one versions statement per table and sink transaction instead
 * of per chunk. A transaction whose causal dependencies are not applied here yet commits what came
 * before it (with the checkpoint at its start) and waits with nothing open. */
int pgs_mesh_apply(pgs_sink *s, const od_change *changes, size_t n, od_error *err) {
  pgs_mesh *m = s->mesh;
  if (!m->npend && m->nst > 1) { /* the last source transaction may go on in this batch */
    m->st[0] = m->st[m->nst - 1];
    m->nst = 1;
  }
  int rc = OD_OK;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    int sidx = -1;
    if (pgs_mesh_is_vv(&changes[i])) { /* a vector update of a transaction the peer dropped */
      rc = pgs_mesh_pvv_message(s, m, &changes[i], err);
    } else if (!pgs_mesh_is_stamp(&changes[i])) {
      sidx = m->nst - 1;
    } else {
      if ((rc = st_reserve(s, m, err))) return rc;
      stamp *st = &m->st[m->nst];
      if ((rc = parse_stamp(s, m, &changes[i].newtup.values[1], st, err))) break;
      pgs_mesh_pvv_stamp(m, st); /* completed with what the peer's earlier vectors showed */
      st->seq = ++m->seq;
      if (causal_missing(m, st)) {
        stamp keep = *st;
        if ((rc = pgs_mesh_flush(s, err))) break;
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
          m->txn_has_data = false;
          m->max_ts = 0;
          m->max_hlc = 0;
          pgs_mesh_dec_clear(m);
          m->nst = 0;
        }
        /* the flush moved the last stamp to st[0]: this one goes after the stamps still kept */
        if ((rc = st_reserve(s, m, err))) return rc;
        st = &m->st[m->nst];
        *st = keep;
        if ((rc = causal_wait(s, m, st, err))) break;
      }
      m->nst++;
      m->applied_txns++;
      od_counter_add(m->m_txns, 1);
    }
    if (rc == OD_OK && changes[i].op != OD_OP_MESSAGE && pend_new_version(s, m, changes[i].rel)) {
      if ((rc = pgs_mesh_flush(s, err))) break;
      if (sidx >= 0) sidx = m->nst - 1; /* the flush moved the last stamp (this change's) to st[0] */
    }
    if (rc == OD_OK && !pend_add(s, m, &changes[i], sidx))
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  if (rc == OD_OK && (m->npend >= PEND_MAX_CHANGES || m->pend_bytes >= PEND_MAX_BYTES)) rc = pgs_mesh_flush(s, err);
  return rc;
}
