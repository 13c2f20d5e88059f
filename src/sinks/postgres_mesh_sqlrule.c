/* sinks/postgres_mesh_sqlrule.c — SQL-expression business rules of a mesh sink ("schema.table: sql:
 * EXPR" in mesh_rules; docs/MULTI_MASTER.md, "Business rules").
 * Owns: the check of every SQL rule at session start (common/mesh_sqlrule.c, the same check as
 * `odsync check`), and per decide_rel call the rules of its table: their statement, the evaluation of
 * concurrent pairs (all the pairs the batch's versions read found concurrent, in one statement; a pair
 * found later, one more) and the results per change. A rule is evaluated both ways round (local and
 * remote as they are, then exchanged) and decides only when the two answers are opposite (true and
 * false): the node at the other end of the pair evaluates the same two rows exchanged, so both
 * decide the same whatever the expression — or neither does, and the next rule or the policy decides.
 * Never touches: the decisions themselves (postgres_mesh_decide.c), transactions, the apply path.
 * Pointer ownership: a sqlrule_run owns its arrays and statement text (freed by pgs_mesh_sqlrule_end);
 * changes and key states are borrowed for the call.
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sqlrule.h"

int pgs_mesh_sqlrule_check_all(pgs_sink *s, pgs_mesh *m, od_error *err) {
  for (int i = 0; i < m->nrules; i++) {
    if (!m->rules[i].sql) continue;
    char msg[768];
    int rc = od_mesh_sqlrule_check(s->conn, m->rules[i].column, m->rules[i].sql, msg, sizeof msg);
    if (rc == -2) return pgs_fail(s, m->rules[i].column, "checking an SQL rule (mesh)", NULL, err);
    if (rc)
      return OD_FAIL(err, OD_ECONFIG, "postgres sink %s: mesh node %s: mesh.rules[%d] on table %s ('%s'): %s",
                     s->where, m->node, m->rules[i].index, m->rules[i].column, m->rules[i].sql, msg);
  }
  return OD_OK;
}

int pgs_mesh_sqlrule_begin(pgs_sink *s, pgs_mesh *m, const pg_rel *r, size_t from, size_t to, sqlrule_run *q,
                           od_error *err) {
  *q = (sqlrule_run){.from = from, .count = to - from};
  const char *exprs[RULES_MAX];
  for (int i = 0; i < m->nrules; i++)
    if (m->rules[i].sql && strcmp(m->rules[i].column, r->target) == 0) {
      q->rule[q->n] = i;
      exprs[q->n++] = m->rules[i].sql;
    }
  if (!q->n) return OD_OK;
  char *keys[8];
  for (int k = 0; k < r->nkey && k < 8; k++) keys[k] = r->rel->columns[PGS_COL(r->key_plan[k])].name;
  od_sqlbuf b = {0};
  od_mesh_sqlrule_sql(&b, r->qtarget, keys, r->nkey < 8 ? r->nkey : 8, exprs, q->n);
  q->sql = b.p; /* ownership of the buffer's bytes passes to the run */
  q->res = calloc(q->count * (size_t)q->n + 1, 1);
  q->done = calloc(q->count + 1, 1);
  q->ljson = calloc(q->count + 1, sizeof *q->ljson);
  if (b.oom || !q->res || !q->done || !q->ljson) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  return OD_OK;
}

void pgs_mesh_sqlrule_end(sqlrule_run *q) {
  if (q->ljson)
    for (size_t i = 0; i < q->count; i++) free(q->ljson[i]);
  free(q->ljson);
  free(q->res);
  free(q->done);
  free(q->sql);
  *q = (sqlrule_run){0};
}

/* One member "column": value of a row's JSON object. Every value is its text, as a JSON string that
 * json_populate_record parses with the column type's input function — except json and jsonb
 * columns, whose text is JSON already and goes in as it is (as a string it would become a JSON
 * string, not the document). NULL data: null. */
static void json_member(od_sqlbuf *b, const od_column *col, const char *data, size_t len) {
  if (b->len > 1) od_sqlbuf_add(b, ",");
  od_sqlbuf_json_str(b, col->name, strlen(col->name));
  od_sqlbuf_add(b, ":");
  if (!data) od_sqlbuf_add(b, "null");
  else if (col->type_oid == 114 /* json */ || col->type_oid == 3802 /* jsonb */) od_sqlbuf_addn(b, data, len);
  else od_sqlbuf_json_str(b, data, len);
}

/* The remote row of c as JSON: its new values; a value the source did not send (an unchanged TOASTed
 * one) from the old image when the change has the full one, else absent (NULL in `remote`). */
static void remote_json(od_sqlbuf *b, const pg_rel *r, const od_change *c) {
  const od_relation *rel = r->rel;
  od_sqlbuf_add(b, "{");
  for (int i = 0; i < c->newtup.ncolumns && i < rel->ncolumns; i++) {
    const od_value *v = &c->newtup.values[i];
    if (v->kind == OD_VALUE_UNCHANGED && c->old_kind == 'O' && i < c->oldtup.ncolumns) v = &c->oldtup.values[i];
    if (v->kind == OD_VALUE_UNCHANGED) continue;
    json_member(b, &rel->columns[i], v->kind == OD_VALUE_TEXT ? v->data : NULL, v->kind == OD_VALUE_TEXT ? v->len : 0);
  }
  od_sqlbuf_add(b, "}");
}

/* The local row as JSON when the run keeps it (column_merge: d->row, the row after the changes
 * decided so far), malloc'd; NULL: the table's row is the local one. */
static char *local_json(const pgs_mesh *m, const pg_rel *r, const decision *d, bool *oom) {
  *oom = false;
  if (!d->row || !pgs_mesh_colver_table(m, r)) return NULL;
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "{");
  for (int j = 0; j < d->nrow && j < r->rel->ncolumns; j++)
    json_member(&b, &r->rel->columns[j], d->row[j], d->row[j] ? strlen(d->row[j]) : 0);
  od_sqlbuf_add(&b, "}");
  if (b.oom) {
    *oom = true;
    od_sqlbuf_free(&b);
    return NULL;
  }
  return b.p;
}

int pgs_mesh_sqlrule_eval(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                          const size_t *cis, decision *const *ds, size_t n, od_error *err) {
  if (!q->n || !n) return OD_OK;
  od_sqlbuf ia = {0}, ra = {0}, la = {0}, one = {0};
  od_sqlbuf_add(&ia, "{");
  od_sqlbuf_add(&ra, "{");
  od_sqlbuf_add(&la, "{");
  int rc = OD_OK;
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    size_t at = cis[i] - q->from;
    od_sqlbuf_addf(&ia, "%s%zu", i ? "," : "", i);
    od_sqlbuf_reset(&one);
    remote_json(&one, r, &changes[cis[i]]);
    pgs_mesh_arr_add(&ra, one.p ? one.p : "{}");
    bool oom;
    free(q->ljson[at]);
    q->ljson[at] = local_json(m, r, ds[i], &oom);
    if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    else if (q->ljson[at]) pgs_mesh_arr_add(&la, q->ljson[at]);
    else od_sqlbuf_add(&la, la.len > 1 ? ",NULL" : "NULL");
    memset(&q->res[at * (size_t)q->n], 0, (size_t)q->n);
    q->done[at] = 1;
  }
  od_sqlbuf_add(&ia, "}");
  od_sqlbuf_add(&ra, "}");
  od_sqlbuf_add(&la, "}");
  if (rc == OD_OK && (ia.oom || ra.oom || la.oom || one.oom))
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *res = NULL;
  if (rc == OD_OK) {
    const char *params[3] = {ia.p, ra.p, la.p};
    if ((rc = pgs_ensure_begin(s, err)) == OD_OK &&
        !(res = pgs_exec(s, r->target, "evaluating the table's SQL rules (mesh)", q->sql, 3, params, err)))
      rc = err->code;
  }
  /* per pair and rule: the answer as given (bit 0: true, bit 1: false) and exchanged (bits 2, 3) */
  unsigned char *ans = rc == OD_OK ? calloc(n * (size_t)q->n + 1, 1) : NULL;
  if (rc == OD_OK && !ans) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  for (int row = 0; rc == OD_OK && row < PQntuples(res); row++) {
    size_t i = strtoull(PQgetvalue(res, row, 0), NULL, 10);
    bool sw = strcmp(PQgetvalue(res, row, 1), "t") == 0;
    if (i >= n) continue;
    for (int k = 0; k < q->n; k++) {
      if (PQgetisnull(res, row, 2 + k)) continue;
      bool v = strcmp(PQgetvalue(res, row, 2 + k), "t") == 0;
      ans[i * (size_t)q->n + (size_t)k] |= (unsigned char)((v ? 1 : 2) << (sw ? 2 : 0));
    }
  }
  for (size_t i = 0; rc == OD_OK && i < n; i++)
    for (int k = 0; k < q->n; k++) {
      unsigned char a = ans[i * (size_t)q->n + (size_t)k];
      size_t at = cis[i] - q->from;
      /* true one way and false the other: remote wins; the reverse: local wins; else no decision */
      q->res[at * (size_t)q->n + (size_t)k] = a == (1 | (2 << 2)) ? 1 : a == (2 | (1 << 2)) ? -1 : 0;
    }
  if (rc == OD_OK)
    od_debug("postgres sink %s: mesh %s <- %s: %s: %zu concurrent pair(s) through %d SQL rule(s) in one statement",
             s->where, m->node, m->peer, r->target, n, q->n);
  free(ans);
  PQclear(res);
  od_sqlbuf_free(&ia);
  od_sqlbuf_free(&ra);
  od_sqlbuf_free(&la);
  od_sqlbuf_free(&one);
  if (rc)
    for (size_t i = 0; i < n; i++) q->done[cis[i] - q->from] = 0;
  return rc;
}

int pgs_mesh_sqlrule_get(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                         size_t ci, decision *d, int k, int *out, od_error *err) {
  *out = 0;
  size_t at = ci - q->from;
  if (at >= q->count) return OD_OK;
  bool again = !q->done[at];
  if (!again && q->ljson[at]) { /* column_merge: evaluated with the row as it was then; still that row? */
    bool oom;
    char *now = local_json(m, r, d, &oom);
    if (oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    again = !now || strcmp(now, q->ljson[at]) != 0;
    free(now);
  }
  if (again) {
    decision *ds[1] = {d};
    int rc = pgs_mesh_sqlrule_eval(s, m, r, q, changes, &ci, ds, 1, err);
    if (rc) return rc;
  }
  *out = q->res[at * (size_t)q->n + (size_t)k];
  return OD_OK;
}
