/* sinks/postgres_mesh_sqlrule.c — SQL-expression business rules of a mesh sink ("schema.table: sql:
 * EXPR" in mesh_rules; docs/MULTI_MASTER.md, "Business rules").
 * Owns: the check of every SQL rule at session start (common/mesh_sqlrule.c, the same check as
 * `odsync check`), and per decide_rel call the rules of its table: their statement, the evaluation of
 * concurrent pairs (all the pairs the batch's versions read found concurrent, in one statement; a pair
 * found later, one more) and the results per change. A rule is evaluated both ways round (local and
 * remote as they are, then exchanged) and decides only when the two answers are opposite (true and
 * false): the node at the other end of the pair evaluates the same two rows exchanged, so both
 * decide the same whatever the expression — or neither does, and the next rule or the policy decides.
 * A delete is evaluated as a NULL row on its side (`remote IS NULL`: the remote write deletes), and
 * in the same statement, for a pair no rule decides so, ranked as the row it deleted (a remote
 * delete's old row with REPLICA IDENTITY FULL, a tombstone's image; res2). An
 * evaluation that raises an error its inputs determine (SQLSTATE class 22, data exceptions, and
 * P0001, an immutable function's RAISE) is no decision for that pair and rule: the statement runs
 * behind a savepoint in the same pipeline round trip, and after such an error every pair and rule
 * is evaluated alone, in one more round trip (per 200 statements), each rolled back to the savepoint (logged, at most one
 * message per 10 s). Any other error fails the batch as before.
 * Never touches: the decisions themselves (postgres_mesh_decide.c), transactions, the apply path.
 * Pointer ownership: a sqlrule_run owns its arrays and statement texts (freed by pgs_mesh_sqlrule_end);
 * changes and key states are borrowed for the call.
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sqlrule.h"
#include "core/clock.h"

enum { ALONE_MAX = 200 }; /* statements per pipeline when pairs are evaluated alone */

bool pgs_mesh_has_sqlrule(const pgs_mesh *m, const char *table) {
  char q[300];
  snprintf(q, sizeof q, "%s%s", strchr(table, '.') ? "" : "public.", table);
  for (int i = 0; i < m->nrules; i++)
    if (m->rules[i].sql && strcmp(m->rules[i].column, q) == 0) return true;
  return false;
}

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
  q->dk = calloc(q->count + 1, 1);
  q->ljson = calloc(q->count + 1, sizeof *q->ljson);
  q->res2 = calloc(q->count * (size_t)q->n + 1, 1);
  q->limg = calloc(q->count + 1, sizeof *q->limg);
  if (b.oom || !q->res || !q->done || !q->dk || !q->ljson || !q->res2 || !q->limg)
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  return OD_OK;
}

void pgs_mesh_sqlrule_end(sqlrule_run *q) {
  if (q->ljson)
    for (size_t i = 0; i < q->count; i++) free(q->ljson[i]);
  free(q->ljson);
  if (q->limg)
    for (size_t i = 0; i < q->count; i++) free(q->limg[i]);
  free(q->limg);
  free(q->res2);
  free(q->res);
  free(q->done);
  free(q->dk);
  free(q->sql);
  for (int k = 0; k < RULES_MAX; k++) free(q->one[k]);
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
 * one) from the old image when the change has the full one, else absent (NULL in `remote`). A delete:
 * its old image (the key at least), which only finds the local row (`remote` is NULL). */
static void remote_json(od_sqlbuf *b, const pg_rel *r, const od_change *c) {
  const od_relation *rel = r->rel;
  bool del = c->op == OD_OP_DELETE;
  const od_tuple *t = del ? &c->oldtup : &c->newtup;
  od_sqlbuf_add(b, "{");
  for (int i = 0; i < t->ncolumns && i < rel->ncolumns; i++) {
    const od_value *v = &t->values[i];
    if (!del && v->kind == OD_VALUE_UNCHANGED && c->old_kind == 'O' && i < c->oldtup.ncolumns) v = &c->oldtup.values[i];
    if (v->kind == OD_VALUE_UNCHANGED) continue;
    json_member(b, &rel->columns[i], v->kind == OD_VALUE_TEXT ? v->data : NULL, v->kind == OD_VALUE_TEXT ? v->len : 0);
  }
  od_sqlbuf_add(b, "}");
}

char *pgs_mesh_sqlrule_image(const pg_rel *r, const od_change *c, bool *oom) {
  *oom = false;
  if (c->op != OD_OP_DELETE || c->old_kind != 'O' || c->oldtup.ncolumns < r->rel->ncolumns) return NULL;
  for (int i = 0; i < r->rel->ncolumns; i++)
    if (c->oldtup.values[i].kind == OD_VALUE_UNCHANGED) return NULL;
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "{");
  for (int i = 0; i < r->rel->ncolumns; i++) {
    const od_value *v = &c->oldtup.values[i];
    json_member(&b, &r->rel->columns[i], v->kind == OD_VALUE_TEXT ? v->data : NULL, v->kind == OD_VALUE_TEXT ? v->len : 0);
  }
  od_sqlbuf_add(&b, "}");
  if (b.oom) {
    *oom = true;
    od_sqlbuf_free(&b);
    return NULL;
  }
  return b.p;
}

/* The deleted side of a pair: 'r' the remote write is a delete, 'l' the local version is a tombstone,
 * 0 neither. Two deletes: 'r', which finds no live row and so gives no answer; they are only ranked
 * as the rows they deleted. */
static char deleted_side(const od_change *c, const decision *d) {
  return c->op == OD_OP_DELETE ? 'r' : d->tomb ? 'l' : 0;
}

/* The local row as JSON when the run keeps it (column_merge: d->row, the row after the changes
 * decided so far), malloc'd; NULL: the table's row is the local one. */
static char *local_json(const pgs_mesh *m, const pg_rel *r, const decision *d, bool *oom) {
  *oom = false;
  if (!d->row || d->tomb || !pgs_mesh_colver_table(m, r)) return NULL;
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

/* Whether a failed evaluation's error is one the two rows determine: class 22 (data exceptions: a
 * division by zero, a cast of a bad value, a jsonb or SQL/JSON path error, a value out of range) and
 * P0001 (RAISE in an immutable function the rule calls). An immutable expression gives, on the same
 * two rows, the same value or the same such error on every node; a cancel, a timeout, memory, locks
 * or a lost connection are none of these and fail the batch as any statement's error. */
static bool determined_error(const PGresult *res) {
  const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return st && (strncmp(st, "22", 2) == 0 || strcmp(st, "P0001") == 0);
}

/* Run statements st[0..n) (each prepared as names[j], or unnamed sqls[j] when names[j] is ""; four
 * parameters params[j]) in one pipeline round trip, each behind the savepoint odsync_rule:
 *   [BEGIN] SAVEPOINT; st0; Sync; ROLLBACK TO SAVEPOINT; st1; Sync; ROLLBACK TO ...; RELEASE; Sync
 * The statements only read: rolling back to the savepoint after each keeps the transaction's work
 * and leaves it usable after an error (the Sync ends the pipeline's aborted segment). out[j]: the
 * result (rows, or an error the rows determine: determined_error); any other failure fails the call.
 * The caller frees out[j]. */
static int run_guarded(pgs_sink *s, const char *table, int n, const char *const *names, const char *const *sqls,
                       const char *const (*params)[4], PGresult **out, od_error *err) {
  const char *what = "evaluating the table's SQL rules (mesh)";
  for (int j = 0; j < n; j++) out[j] = NULL;
  if (!s->conn) return pgs_fail(s, table, what, NULL, err);
  if (s->copy_rel && pgs_load_end(s, err)) return err->code;
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, table, "entering pipeline mode (mesh)", NULL, err);
  bool begin = !s->begin_sent;
  PGconn *c = s->conn;
  bool sent = (!begin || PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1) &&
              PQsendQueryParams(c, "SAVEPOINT odsync_rule", 0, NULL, NULL, NULL, NULL, 0) == 1;
  for (int j = 0; j < n && sent; j++)
    sent = (*names[j] ? PQsendQueryPrepared(c, names[j], 4, params[j], NULL, NULL, 0)
                      : PQsendQueryParams(c, sqls[j], 4, NULL, params[j], NULL, NULL, 0)) == 1 &&
           PQpipelineSync(c) == 1 &&
           PQsendQueryParams(c, "ROLLBACK TO SAVEPOINT odsync_rule", 0, NULL, NULL, NULL, NULL, 0) == 1;
  sent = sent && PQsendQueryParams(c, "RELEASE SAVEPOINT odsync_rule", 0, NULL, NULL, NULL, NULL, 0) == 1 &&
         PQpipelineSync(c) == 1;
  s->stats.round_trips++;
  int rc = sent ? OD_OK : pgs_fail(s, table, "sending the SQL rules' evaluation (mesh)", NULL, err);
  /* the results, in the order sent: -3 BEGIN, -2 SAVEPOINT, then per statement j (>= 0) its result,
   * its sync (-4) and the ROLLBACK TO (-5); then RELEASE (-6) and the last sync (-4) */
  int nitems = (begin ? 1 : 0) + 1 + 3 * n + 2;
  for (int it = 0; it < nitems && sent; it++) {
    int k = it - (begin ? 1 : 0), kind;
    if (k < 0) kind = -3;
    else if (k == 0) kind = -2;
    else if (k <= 3 * n) kind = (k - 1) % 3 == 0 ? (k - 1) / 3 : (k - 1) % 3 == 1 ? -4 : -5;
    else kind = k == 3 * n + 1 ? -6 : -4;
    PGresult *res = PQgetResult(c);
    if (!res) { /* the connection is gone */
      if (rc == OD_OK) rc = pgs_fail(s, table, what, NULL, err);
      break;
    }
    ExecStatusType st = PQresultStatus(res);
    if (kind == -4) { /* a sync: no NULL follows it */
      if (st != PGRES_PIPELINE_SYNC && rc == OD_OK) rc = pgs_fail(s, table, what, res, err);
      PQclear(res);
      continue;
    }
    if (kind >= 0 && (st == PGRES_TUPLES_OK || (st == PGRES_FATAL_ERROR && determined_error(res)))) {
      out[kind] = res;
    } else {
      if (kind == -3 && st == PGRES_COMMAND_OK) s->begin_sent = true;
      else if (kind < 0 && st == PGRES_COMMAND_OK) ; /* SAVEPOINT, ROLLBACK TO, RELEASE */
      else if (rc == OD_OK)
        rc = pgs_fail(s, table, kind == -3 ? "BEGIN" : kind >= 0 ? what : "the SQL rules' savepoint (mesh)", res, err);
      PQclear(res);
    }
    while ((res = PQgetResult(c))) PQclear(res); /* the NULL that ends this query's results */
  }
  if (!PQexitPipelineMode(c) && rc == OD_OK) rc = pgs_fail(s, table, "leaving pipeline mode (mesh)", NULL, err);
  if (rc)
    for (int j = 0; j < n; j++) {
      PQclear(out[j]);
      out[j] = NULL;
    }
  return rc;
}

/* An SQL rule's error on a pair, logged at most once per 10 s (with how many went unsaid since). */
static void say_rule_error(pgs_sink *s, pgs_mesh *m, const pg_rel *r, int rule, const decision *d,
                           const PGresult *res) {
  int64_t now = od_mono_us();
  if (m->rule_err_said && now - m->rule_err_us < 10000000) {
    m->rule_err_quiet++;
    return;
  }
  char key[160];
  snprintf(key, sizeof key, "%s", d->key);
  for (char *p = key; *p; p++)
    if (*p == '\x1f') *p = ',';
  const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  char more[96] = "";
  if (m->rule_err_quiet) snprintf(more, sizeof more, " (%lu more such errors in the last 10 s not logged)", m->rule_err_quiet);
  od_warn("postgres sink %s: mesh %s <- %s: mesh.rules[%d] on table %s ('%s') raised an error on key %s: %s "
          "(SQLSTATE %s): no decision by this rule for the pair (the next rule, then the policy decide, on every "
          "node alike)%s", s->where, m->node, m->peer, m->rules[rule].index, r->target, m->rules[rule].sql, key,
          msg ? msg : "?", st ? st : "?", more);
  m->rule_err_said = true;
  m->rule_err_us = now;
  m->rule_err_quiet = 0;
}

/* One rule's answers (result column 2 + k of res) into ans[i * nr + k]: bit 0 true, bit 1 false as
 * given; bits 2, 3 exchanged. */
static void collect(const PGresult *res, int col, int k, int nr, size_t n, size_t only, unsigned char *ans) {
  for (int row = 0; row < PQntuples(res); row++) {
    size_t i = strtoull(PQgetvalue(res, row, 0), NULL, 10);
    if (only != (size_t)-1) i = only; /* a statement of one pair: its number is 0 */
    if (i >= n || PQgetisnull(res, row, col)) continue;
    bool sw = strcmp(PQgetvalue(res, row, 1), "t") == 0;
    bool v = strcmp(PQgetvalue(res, row, col), "t") == 0;
    ans[i * (size_t)nr + (size_t)k] |= (unsigned char)((v ? 1 : 2) << (sw ? 2 : 0));
  }
}

/* After an error in the batch's statement: every pair and rule alone, in one round trip; an error
 * the rows determine leaves that pair's answer to that rule empty (no decision). */
static int eval_alone(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const char *const *rj,
                      const char *const *lj, const char *dk, decision *const *ds, size_t n, unsigned char *ans,
                      od_error *err) {
  const char *names[RULES_MAX];
  char *keys[8];
  for (int k = 0; k < r->nkey && k < 8; k++) keys[k] = r->rel->columns[PGS_COL(r->key_plan[k])].name;
  for (int k = 0; k < q->n; k++) {
    if (!q->one[k]) {
      od_sqlbuf b = {0};
      const char *e = m->rules[q->rule[k]].sql;
      od_mesh_sqlrule_sql(&b, r->qtarget, keys, r->nkey < 8 ? r->nkey : 8, &e, 1);
      if (b.oom) {
        od_sqlbuf_free(&b);
        return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      }
      q->one[k] = b.p;
    }
    /* prepared once per session (the statement is fixed per table and rule) */
    if (!(names[k] = pgs_mesh_prepared(s, m, r->target, q->one[k], err))) return err->code;
  }
  size_t ns = n * (size_t)q->n;
  const char **nm = calloc(ns + 1, sizeof *nm), **sq = calloc(ns + 1, sizeof *sq);
  const char *(*pp)[4] = calloc(ns + 1, sizeof *pp);
  PGresult **out = calloc(ns + 1, sizeof *out);
  od_sqlbuf *arr = calloc(n * 3 + 1, sizeof *arr); /* per pair: {rj}, {lj}, {dk} */
  int rc = nm && sq && pp && out && arr ? OD_OK : OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  for (size_t i = 0; i < n && rc == OD_OK; i++) {
    od_sqlbuf *a = &arr[i * 3];
    od_sqlbuf_add(&a[0], "{");
    pgs_mesh_arr_add(&a[0], rj[i]);
    od_sqlbuf_add(&a[0], "}");
    od_sqlbuf_add(&a[1], "{");
    if (lj[i]) pgs_mesh_arr_add(&a[1], lj[i]);
    else od_sqlbuf_add(&a[1], "NULL");
    od_sqlbuf_add(&a[1], "}");
    od_sqlbuf_addf(&a[2], "{%s}", dk[i] == 'r' ? "r" : dk[i] == 'l' ? "l" : "NULL");
    if (a[0].oom || a[1].oom || a[2].oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    for (int k = 0; k < q->n && rc == OD_OK; k++) {
      size_t j = i * (size_t)q->n + (size_t)k;
      nm[j] = names[k];
      sq[j] = q->one[k];
      pp[j][0] = "{0}";
      pp[j][1] = a[0].p;
      pp[j][2] = a[1].p;
      pp[j][3] = a[2].p;
    }
  }
  /* in pipelines of at most ALONE_MAX statements: their results (a few hundred bytes each) stay
   * within the socket buffers while the client still sends (a blocking pipeline could deadlock) */
  for (size_t j0 = 0; rc == OD_OK && j0 < ns; j0 += (size_t)ALONE_MAX) {
    int c = (int)(ns - j0 < (size_t)ALONE_MAX ? ns - j0 : (size_t)ALONE_MAX);
    rc = run_guarded(s, r->target, c, nm + j0, sq + j0, (const char *const (*)[4])(pp + j0), out + j0, err);
  }
  size_t nerr = 0;
  for (size_t j = 0; rc == OD_OK && j < ns; j++) {
    size_t i = j / (size_t)q->n;
    int k = (int)(j % (size_t)q->n);
    if (PQresultStatus(out[j]) == PGRES_TUPLES_OK) {
      collect(out[j], 2, k, q->n, n, i, ans);
    } else {
      nerr++;
      say_rule_error(s, m, r, q->rule[k], ds[i], out[j]);
    }
  }
  if (rc == OD_OK)
    od_debug("postgres sink %s: mesh %s <- %s: %s: SQL rules raised errors: %zu pair(s) through %d rule(s) "
             "evaluated alone, %zu error(s)", s->where, m->node, m->peer, r->target, n, q->n, nerr);
  for (size_t j = 0; out && j < ns; j++) PQclear(out[j]);
  for (size_t i = 0; arr && i < n * 3; i++) od_sqlbuf_free(&arr[i]);
  free(arr);
  free(out);
  free(pp);
  free(sq);
  free(nm);
  return rc;
}

/* A pair's entries in the evaluation: the pair as it is (a delete's record NULL), and, when the pair
 * has a delete and both rows are known — a remote delete's deleted row (REPLICA IDENTITY FULL), a
 * tombstone's image — the pair with the delete ranked as that row (res2). */
typedef struct rule_entries {
  size_t n;          /* entries */
  const char **rj;   /* remote row JSON (borrowed: the pair's row or its delete's image) */
  const char **lj;   /* local row JSON, NULL: the table's row */
  char *dk;          /* deleted side: 'r', 'l', 0 */
  size_t *pair;      /* the pair of each entry, plus n for an entry with the delete ranked */
  decision **ds;     /* the pair's key state (for messages) */
} rule_entries;

int pgs_mesh_sqlrule_eval(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                          const size_t *cis, decision *const *ds, size_t n, od_error *err) {
  if (!q->n || !n) return OD_OK;
  od_sqlbuf ia = {0}, ra = {0}, la = {0}, da = {0}, one = {0};
  char **rj = calloc(n + 1, sizeof *rj), **lj = calloc(n + 1, sizeof *lj), **own = calloc(n + 1, sizeof *own);
  rule_entries e = {0};
  e.rj = calloc(2 * n + 1, sizeof *e.rj);
  e.lj = calloc(2 * n + 1, sizeof *e.lj);
  e.dk = calloc(2 * n + 1, 1);
  e.pair = calloc(2 * n + 1, sizeof *e.pair);
  e.ds = calloc(2 * n + 1, sizeof *e.ds);
  int rc = rj && lj && own && e.rj && e.lj && e.dk && e.pair && e.ds
               ? OD_OK
               : OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  for (size_t i = 0; i < n && rc == OD_OK; i++) { /* the pairs as they are */
    size_t at = cis[i] - q->from;
    od_sqlbuf_reset(&one);
    remote_json(&one, r, &changes[cis[i]]);
    rj[i] = strdup(one.p ? one.p : "{}");
    bool oom;
    free(q->ljson[at]);
    q->ljson[at] = lj[i] = local_json(m, r, ds[i], &oom);
    if (!rj[i] || oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    e.rj[e.n] = rj[i];
    e.lj[e.n] = lj[i];
    e.dk[e.n] = q->dk[at] = deleted_side(&changes[cis[i]], ds[i]);
    e.pair[e.n] = i;
    e.ds[e.n++] = ds[i];
    memset(&q->res[at * (size_t)q->n], 0, (size_t)q->n);
    memset(&q->res2[at * (size_t)q->n], 0, (size_t)q->n);
    free(q->limg[at]);
    q->limg[at] = ds[i]->tomb && ds[i]->img ? strdup(ds[i]->img) : NULL;
    if (ds[i]->tomb && ds[i]->img && !q->limg[at]) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    q->done[at] = 1;
  }
  for (size_t i = 0; i < n && rc == OD_OK; i++) { /* ... and with the delete ranked as its row */
    const od_change *c = &changes[cis[i]];
    if (c->op != OD_OP_DELETE && !ds[i]->tomb) continue;
    bool oom = false;
    const char *rrow = c->op == OD_OP_DELETE ? (own[i] = pgs_mesh_sqlrule_image(r, c, &oom)) : rj[i];
    if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    if (!rrow || (ds[i]->tomb && !ds[i]->img)) continue;
    e.rj[e.n] = rrow;
    e.lj[e.n] = ds[i]->tomb ? ds[i]->img : lj[i];
    e.dk[e.n] = 0;
    e.pair[e.n] = n + i;
    e.ds[e.n++] = ds[i];
  }
  od_sqlbuf_add(&ia, "{");
  od_sqlbuf_add(&ra, "{");
  od_sqlbuf_add(&la, "{");
  od_sqlbuf_add(&da, "{");
  for (size_t j = 0; j < e.n && rc == OD_OK; j++) {
    od_sqlbuf_addf(&ia, "%s%zu", j ? "," : "", j);
    pgs_mesh_arr_add(&ra, e.rj[j]);
    if (e.lj[j]) pgs_mesh_arr_add(&la, e.lj[j]);
    else od_sqlbuf_add(&la, la.len > 1 ? ",NULL" : "NULL");
    od_sqlbuf_addf(&da, "%s%s", j ? "," : "", e.dk[j] == 'r' ? "r" : e.dk[j] == 'l' ? "l" : "NULL");
  }
  od_sqlbuf_add(&ia, "}");
  od_sqlbuf_add(&ra, "}");
  od_sqlbuf_add(&la, "}");
  od_sqlbuf_add(&da, "}");
  if (rc == OD_OK && (ia.oom || ra.oom || la.oom || da.oom || one.oom))
    rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  /* per entry and rule: the answer as given (bit 0: true, bit 1: false) and exchanged (bits 2, 3) */
  unsigned char *ans = rc == OD_OK ? calloc(e.n * (size_t)q->n + 1, 1) : NULL;
  if (rc == OD_OK && !ans) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *res = NULL;
  if (rc == OD_OK) { /* all entries and rules in one statement, one round trip */
    const char *params[1][4] = {{ia.p, ra.p, la.p, da.p}};
    const char *noname = "";
    rc = run_guarded(s, r->target, 1, &noname, (const char *const *)&q->sql, (const char *const (*)[4])params, &res,
                     err);
  }
  if (rc == OD_OK && PQresultStatus(res) == PGRES_TUPLES_OK) {
    for (int k = 0; k < q->n; k++) collect(res, 2 + k, k, q->n, e.n, (size_t)-1, ans);
  } else if (rc == OD_OK) { /* an error some pair's rows raise: which pair and rule, one by one */
    rc = eval_alone(s, m, r, q, e.rj, e.lj, e.dk, e.ds, e.n, ans, err);
  }
  size_t ranked = 0;
  for (size_t j = 0; rc == OD_OK && j < e.n; j++) {
    size_t i = e.pair[j] % n, at = cis[i] - q->from;
    signed char *dst = e.pair[j] >= n ? &q->res2[at * (size_t)q->n] : &q->res[at * (size_t)q->n];
    ranked += e.pair[j] >= n;
    for (int k = 0; k < q->n; k++) {
      unsigned char a = ans[j * (size_t)q->n + (size_t)k];
      /* true one way and false the other: remote wins; the reverse: local wins; else no decision */
      dst[k] = a == (1 | (2 << 2)) ? 1 : a == (2 | (1 << 2)) ? -1 : 0;
    }
  }
  if (rc == OD_OK)
    od_debug("postgres sink %s: mesh %s <- %s: %s: %zu concurrent pair(s) (%zu with a delete ranked as its row) "
             "through %d SQL rule(s) in one statement", s->where, m->node, m->peer, r->target, n, ranked, q->n);
  free(ans);
  PQclear(res);
  for (size_t i = 0; rj && i < n; i++) free(rj[i]);
  for (size_t i = 0; own && i < n; i++) free(own[i]);
  free(rj);
  free(own);
  free(lj); /* its strings are q->ljson's */
  free(e.rj);
  free(e.lj);
  free(e.dk);
  free(e.pair);
  free(e.ds);
  od_sqlbuf_free(&ia);
  od_sqlbuf_free(&ra);
  od_sqlbuf_free(&la);
  od_sqlbuf_free(&da);
  od_sqlbuf_free(&one);
  if (rc)
    for (size_t i = 0; i < n; i++) q->done[cis[i] - q->from] = 0;
  return rc;
}

int pgs_mesh_sqlrule_get(pgs_sink *s, pgs_mesh *m, const pg_rel *r, sqlrule_run *q, const od_change *changes,
                         size_t ci, decision *d, int k, bool ranked, int *out, od_error *err) {
  *out = 0;
  size_t at = ci - q->from;
  if (at >= q->count) return OD_OK;
  /* not evaluated yet, or with the other side deleted than the key state now says, or another image */
  const char *img = d->tomb ? d->img : NULL;
  bool again = !q->done[at] || q->dk[at] != deleted_side(&changes[ci], d) || !img != !q->limg[at] ||
               (img && strcmp(img, q->limg[at]) != 0);
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
  *out = (ranked ? q->res2 : q->res)[at * (size_t)q->n + (size_t)k];
  return OD_OK;
}
