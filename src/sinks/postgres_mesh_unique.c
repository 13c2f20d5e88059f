/* sinks/postgres_mesh_unique.c — a mesh sink's clashes on non-primary unique indexes and the
 * lock that closes the never-existing-key race (docs/MULTI_MASTER.md, "Unique-key clashes").
 *
 * Owns: the catalog of each mesh table's non-primary unique indexes (read once per table and
 * session: name, key parts — columns or expressions —, predicate, NULLS NOT DISTINCT, the columns
 * it reads and their types), the clash query of a batch (one statement per such index and batch:
 * the local rows holding the unique values of the batch's inserts and updates under another key —
 * expressions evaluated on both rows, a partial index's predicate required of both, NULLs equal
 * under NULLS NOT DISTINCT —, locked in key order, and the _odsync_unique_left records of rows of other keys
 * that left those values — judged only when the remote row had not seen the record's version), the
 * resolution of a clash by the table's policy (the
 * losing row is removed on every node: a local loser by ctid now, a remote loser by turning its
 * change into a delete of its key; the loser's key is tombstoned with the loser's own version), the
 * conflict log rows of kind "unique", the records of unique values a key left within one run (the
 * set-based apply writes a key once, so the trigger cannot see them; m->ul, written after the
 * run's apply), and the exclusive advisory locks the sink takes on keys
 * without a live row (the tombstone/key-lock triggers of postgres_mesh.c take them shared).
 * Never touches: transactions, the apply path's statements, the versions query's text (it only
 * runs between that query's two executions), the stamps.
 * Pointer ownership: the index catalog (m->uq) is malloc'd and freed by pgs_mesh_unique_free;
 * a uniq_set owns its clash array and strings (pgs_mesh_unique_clear); values of changes are
 * borrowed; m->ul and each key state's uval are malloc'd, freed by pgs_mesh_unique_forget /
 * pgs_mesh_unique_dec_free.
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sql.h"

#define UIDX_MAX 8  /* unique indexes per table checked */
#define UCOL_MAX 8  /* key columns (or expressions) per unique index */
#define UREF_MAX 16 /* columns an index reads: key columns and those of its expressions and predicate */

struct mesh_uniq {
  char *target; /* "schema.table" */
  int nidx;
  struct uidx {
    char name[64];
    int ncol;                /* key parts: a column or an expression */
    int col[UCOL_MAX];       /* a key column's position in ref[], or -1: the part is expr[k] */
    char *expr[UCOL_MAX];    /* an expression part's text (pg_get_indexdef), malloc'd */
    char *pred;              /* the predicate of a partial index (pg_get_expr), malloc'd, or NULL */
    char op[UCOL_MAX][140];  /* an expression part's equality: its operator class's (btree strategy 3) */
    char coll[UCOL_MAX][140]; /* an expression part's collation in the index ("" for none) */
    bool nnd;                /* NULLS NOT DISTINCT: compared with IS NOT DISTINCT FROM */
    int nref;                /* every column the index reads, in column order */
    int ref[UREF_MAX];       /* their column indexes in the relation */
    char type[UREF_MAX][64]; /* their types without typmod: the cast of the batch's text */
  } idx[UIDX_MAX];
};

static void uidx_free(struct uidx *x) {
  for (int k = 0; k < UCOL_MAX; k++) {
    free(x->expr[k]);
    x->expr[k] = NULL;
  }
  free(x->pred);
  x->pred = NULL;
}

/* Whether x compares anything but plain columns (then a subquery evaluates its expressions and
 * predicate on the batch's rows and on the records). */
static bool uidx_exprs(const struct uidx *x) {
  if (x->pred) return true;
  for (int k = 0; k < x->ncol; k++)
    if (x->col[k] < 0) return true;
  return false;
}

void pgs_mesh_unique_free(pgs_mesh *m) {
  for (int i = 0; i < m->nuq; i++) {
    for (int j = 0; j < m->uq[i].nidx; j++) uidx_free(&m->uq[i].idx[j]);
    free(m->uq[i].target);
  }
  free(m->uq);
  m->uq = NULL;
  m->nuq = 0;
  free(m->todel);
  m->todel = NULL;
  m->ntodel = m->todel_cap = 0;
  pgs_mesh_unique_forget(m);
  free(m->ul);
  m->ul = NULL;
  m->ul_cap = 0;
}

void pgs_mesh_unique_clear(uniq_set *u) {
  for (size_t i = 0; i < u->n; i++) {
    free(u->c[i].index);
    free(u->c[i].ctid);
    free(u->c[i].key);
    free(u->c[i].row);
  }
  free(u->c);
  *u = (uniq_set){0};
}

/* Splits s (fields separated by chr(31)) in place into at most max fields; returns their count
 * (an empty s is one empty field). */
static int split31(char *s, char **f, int max) {
  int n = 0;
  for (char *p = s;; ) {
    if (n == max) return max + 1;
    f[n++] = p;
    char *e = strchr(p, '\x1f');
    if (!e) break;
    *e = '\0';
    p = e + 1;
  }
  return n;
}

/* The SQL of the columns every checked unique index of a table reads (its key columns and the
 * columns of its expressions and predicate, from pg_depend), for the index `i` of the relation
 * `i.indrelid`: shared by the catalog read below and the _odsync_unique_left trigger's DDL
 * (postgres_mesh.c), so that records hold every column a check evaluates. */
const char *pgs_mesh_unique_refcols_sql(void) {
  return "a.attrelid = i.indrelid AND a.attnum > 0 AND NOT a.attisdropped AND (a.attnum = ANY "
         "((i.indkey::int2[])[0:i.indnkeyatts - 1]) OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
         "'pg_class'::regclass AND d.objid = i.indexrelid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = "
         "i.indrelid AND d.refobjsubid = a.attnum))";
}

/* The unique indexes of r other than the primary key that are checked (all but those whose
 * expression or predicate reads the whole row); catalog read once per table. */
const char *pgs_mesh_unique_checked_sql(void) {
  return "i.indisunique AND NOT i.indisprimary AND i.indisvalid AND coalesce(i.indexprs::text, '') || "
         "coalesce(i.indpred::text, '') NOT LIKE '%:varattno 0 %'";
}

static int uniq_of(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const struct mesh_uniq **out, od_error *err) {
  for (int i = 0; i < m->nuq; i++)
    if (strcmp(m->uq[i].target, r->target) == 0) {
      *out = &m->uq[i];
      return OD_OK;
    }
  const char *p[1] = {r->qtarget};
  od_sqlbuf q = {0};
  /* per index: name, whether it is checked, NULLS NOT DISTINCT, predicate, per key part the
   * column name ('' for an expression) and pg_get_indexdef's text, the columns it reads and their types */
  od_sqlbuf_add(&q, "SELECT ic.relname, ");
  od_sqlbuf_add(&q, pgs_mesh_unique_checked_sql());
  od_sqlbuf_add(&q, ", coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false), pg_get_expr(i.indpred, "
                    "i.indrelid), (SELECT array_to_string(array_agg(coalesce((SELECT a.attname::text FROM pg_attribute a "
                    "WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[k.o - 1] AND a.attnum > 0), '') ORDER BY k.o), "
                    "chr(31)) FROM generate_series(1, i.indnkeyatts) AS k(o)), (SELECT array_to_string(array_agg("
                    "pg_get_indexdef(i.indexrelid, k.o, true) ORDER BY k.o), chr(31)) FROM generate_series(1, "
                    "i.indnkeyatts) AS k(o)), (SELECT array_to_string(array_agg(a.attname::text ORDER BY a.attnum), "
                    "chr(31)) FROM pg_attribute a WHERE ");
  od_sqlbuf_add(&q, pgs_mesh_unique_refcols_sql());
  od_sqlbuf_add(&q, "), (SELECT array_to_string(array_agg(format_type(a.atttypid, NULL) ORDER BY a.attnum), chr(31)) "
                    "FROM pg_attribute a WHERE ");
  od_sqlbuf_add(&q, pgs_mesh_unique_refcols_sql());
  /* per key part: the operator class's equality operator, the index's collation, and 'p' when a
   * column part compares as the column does (default operator class, the column's own collation,
   * a deterministic one): else the part is compared like an expression, with that operator and
   * collation (a UNIQUE (email COLLATE case_insensitive) index, a column of such a collation) */
  od_sqlbuf_add(&q, "), (SELECT array_to_string(array_agg(coalesce((SELECT 'OPERATOR(' || quote_ident(n.nspname) || '.' "
                    "|| o.oprname || ')' FROM pg_opclass oc JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND "
                    "ao.amopstrategy = 3 AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype JOIN "
                    "pg_operator o ON o.oid = ao.amopopr JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE oc.oid = "
                    "i.indclass[k.o - 1] LIMIT 1), '=') || chr(30) || coalesce((SELECT quote_ident(cn.nspname) || '.' || "
                    "quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace "
                    "WHERE co.oid = i.indcollation[k.o - 1]), '') || chr(30) || CASE WHEN i.indkey[k.o - 1] <> 0 AND "
                    "coalesce((SELECT oc.opcdefault FROM pg_opclass oc WHERE oc.oid = i.indclass[k.o - 1]), false) AND "
                    "i.indcollation[k.o - 1] = coalesce((SELECT a.attcollation FROM pg_attribute a WHERE a.attrelid = "
                    "i.indrelid AND a.attnum = i.indkey[k.o - 1]), 0) AND coalesce((SELECT co.collisdeterministic FROM "
                    "pg_collation co WHERE co.oid = i.indcollation[k.o - 1]), true) THEN 'p' ELSE 'e' END ORDER BY k.o), "
                    "chr(31)) FROM generate_series(1, i.indnkeyatts) AS k(o)");
  od_sqlbuf_add(&q, ") FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND "
                    "i.indisunique AND NOT i.indisprimary AND i.indisvalid ORDER BY ic.relname");
  PGresult *res = q.oom ? NULL : pgs_exec(s, r->target, "reading unique indexes (mesh)", q.p, 1, p, err);
  bool oom = q.oom;
  od_sqlbuf_free(&q);
  if (oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (!res) return err->code;
  struct mesh_uniq *g = realloc(m->uq, (size_t)(m->nuq + 1) * sizeof *g);
  if (!g) {
    PQclear(res);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  m->uq = g;
  struct mesh_uniq *u = &m->uq[m->nuq];
  *u = (struct mesh_uniq){.target = strdup(r->target)};
  if (!u->target) {
    PQclear(res);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  m->nuq++;
  int rc = OD_OK;
  for (int t = 0; t < PQntuples(res) && rc == OD_OK; t++) {
    if (u->nidx == UIDX_MAX) {
      od_warn("postgres sink %s: mesh: table %s: unique index %s is not checked for clashes (more than %d unique "
              "indexes); a clash on it stops the pipeline", s->where, r->target, PQgetvalue(res, t, 0), UIDX_MAX);
      continue;
    }
    struct uidx *x = &u->idx[u->nidx];
    *x = (struct uidx){.ncol = 0};
    snprintf(x->name, sizeof x->name, "%s", PQgetvalue(res, t, 0));
    if (strcmp(PQgetvalue(res, t, 1), "t") != 0) {
      od_warn("postgres sink %s: mesh: table %s: unique index %s is not checked for clashes (its expression or "
              "predicate reads the whole row); a clash on it stops the pipeline", s->where, r->target, x->name);
      continue;
    }
    x->nnd = strcmp(PQgetvalue(res, t, 2), "t") == 0;
    char *names = strdup(PQgetvalue(res, t, 4)), *defs = strdup(PQgetvalue(res, t, 5)),
         *refs = strdup(PQgetvalue(res, t, 6)), *types = strdup(PQgetvalue(res, t, 7)),
         *cmps = strdup(PQgetvalue(res, t, 8));
    if (!PQgetisnull(res, t, 3)) x->pred = strdup(PQgetvalue(res, t, 3));
    bool ok = true;
    if (!names || !defs || !refs || !types || !cmps || (!PQgetisnull(res, t, 3) && !x->pred)) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      ok = false;
    }
    char *fn[UCOL_MAX + 1], *fd[UCOL_MAX + 1], *fr[UREF_MAX + 1], *ft[UREF_MAX + 1], *fc[UCOL_MAX + 1];
    int nn = ok ? split31(names, fn, UCOL_MAX) : 0, nd = ok ? split31(defs, fd, UCOL_MAX) : 0;
    int nr = ok ? split31(refs, fr, UREF_MAX) : 0, nt = ok ? split31(types, ft, UREF_MAX) : 0;
    int nc = ok ? split31(cmps, fc, UCOL_MAX) : 0;
    ok = ok && nn <= UCOL_MAX && nn == nd && nn == nc && nr <= UREF_MAX && nr == nt && fr[0][0];
    for (int k = 0; ok && k < nr; k++) { /* every column it reads must be in the stream */
      int col = -1;
      for (int j = 0; j < r->rel->ncolumns; j++)
        if (strcmp(r->rel->columns[j].name, fr[k]) == 0) col = j;
      ok = col >= 0;
      x->ref[k] = col;
      snprintf(x->type[k], sizeof x->type[0], "%s", ft[k]);
    }
    if (ok) x->nref = nr;
    for (int k = 0; ok && k < nn; k++) {
      x->col[k] = -1;
      char *cf[3] = {fc[k], "", ""}; /* "operator\x1ecollation\x1ep|e" */
      for (int f = 1; f < 3; f++) {
        char *e = strchr(cf[f - 1], '\x1e');
        if (!e) break;
        *e = '\0';
        cf[f] = e + 1;
      }
      snprintf(x->op[k], sizeof x->op[k], "%s", cf[0][0] ? cf[0] : "=");
      snprintf(x->coll[k], sizeof x->coll[k], "%s", cf[1]);
      if (fn[k][0] && strcmp(cf[2], "p") != 0) fn[k][0] = '\0'; /* compared like an expression: its name */
      if (fn[k][0]) {
        for (int j = 0; j < x->nref; j++)
          if (strcmp(r->rel->columns[x->ref[j]].name, fn[k]) == 0) x->col[k] = j;
        ok = x->col[k] >= 0;
      } else if (!(x->expr[k] = strdup(fd[k]))) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        ok = false;
      }
      if (ok) x->ncol = k + 1;
    }
    free(names);
    free(defs);
    free(refs);
    free(types);
    free(cmps);
    if (ok && x->ncol) {
      u->nidx++;
      continue;
    }
    uidx_free(x);
    if (rc == OD_OK)
      od_warn("postgres sink %s: mesh: table %s: unique index %s is not checked for clashes (a column the stream "
              "does not carry, or more than %d key columns or %d columns read); a clash on it stops the pipeline",
              s->where, r->target, x->name, UCOL_MAX, UREF_MAX);
  }
  PQclear(res);
  if (rc) return rc;
  if (u->nidx)
    od_debug("postgres sink %s: mesh: table %s: %d unique index(es) besides the primary key", s->where, r->target,
             u->nidx);
  *out = u;
  return OD_OK;
}

/* The key columns' "t.k1::text, t.k2::text" of r, after concat_ws(chr(31). */
static void key_expr(od_sqlbuf *b, const pg_rel *r) {
  od_sqlbuf_add(b, "concat_ws(chr(31)");
  for (int k = 0; k < r->nkey; k++) {
    od_sqlbuf_add(b, ", t.");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
    od_sqlbuf_add(b, "::text");
  }
  od_sqlbuf_add(b, ")");
}

static int cmp_clash(const void *a, const void *b) {
  const uniq_clash *x = a, *y = b;
  return x->ci < y->ci ? -1 : x->ci > y->ci;
}

/* A column or expression name as an SQL string literal's body. */
static void add_lit(od_sqlbuf *b, const char *s) {
  for (const char *q = s; *q; q++) od_sqlbuf_addn(b, *q == '\'' ? "''" : q, *q == '\'' ? 2 : 1);
}

/* "(SELECT (e0) AS _odsync_e0, ..., (pred) AS _odsync_p FROM <from> z) alias": x's expressions
 * and predicate on one row whose columns have the table's names (unqualified names in the
 * index's text resolve to that innermost row). */
static void eval_row(od_sqlbuf *b, const struct uidx *x, const char *from, const char *alias) {
  od_sqlbuf_add(b, " CROSS JOIN LATERAL (SELECT ");
  bool first = true;
  for (int k = 0; k < x->ncol; k++)
    if (x->col[k] < 0) {
      od_sqlbuf_addf(b, "%s(%s) AS _odsync_e%d", first ? "" : ", ", x->expr[k], k);
      first = false;
    }
  od_sqlbuf_addf(b, "%s%s%s%s AS _odsync_p FROM ", first ? "" : ", ", x->pred ? "(" : "", x->pred ? x->pred : "true",
                 x->pred ? ")" : "");
  od_sqlbuf_add(b, from);
  od_sqlbuf_addf(b, " z) %s", alias);
}

/* "lhs = rhs" for key part k of x: its operator class's equality operator, under the index's
 * collation, and NULLs equal for a NULLS NOT DISTINCT index (written so the index can answer it). */
static void add_part_eq(od_sqlbuf *b, const struct uidx *x, int k, const char *lhs, const char *rhs) {
  od_sqlbuf r = {0};
  if (x->coll[k][0]) od_sqlbuf_addf(&r, "(%s COLLATE %s)", rhs, x->coll[k]);
  else od_sqlbuf_add(&r, rhs);
  if (r.oom) b->oom = true;
  else if (x->nnd) od_sqlbuf_addf(b, "(%s %s %s OR (%s IS NULL AND %s IS NULL))", lhs, x->op[k], r.p, lhs, rhs);
  else od_sqlbuf_addf(b, "%s %s %s", lhs, x->op[k], r.p);
  od_sqlbuf_free(&r);
}

/* One index: the local rows whose values of x equal those of a new row of the batch under another
 * key — key columns compared with `=` (IS NOT DISTINCT FROM for a NULLS NOT DISTINCT index),
 * expressions evaluated on both rows, and for a partial index only rows inside its predicate on
 * both sides — and the records of values left that do the same. */
static int query_index(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const struct uidx *x, const od_change *changes,
                       const size_t *idx, char **keys, size_t q0, size_t q1, uniq_set *out, od_error *err) {
  od_sqlbuf arr[2 + UREF_MAX] = {{0}};
  int na = 2 + x->nref, rc = OD_OK;
  bool ev = uidx_exprs(x);
  for (int k = 0; k < na; k++) od_sqlbuf_add(&arr[k], "{");
  size_t rows = 0;
  for (size_t j = q0; j < q1; j++) {
    const od_change *c = &changes[idx[j]];
    if (!keys[j] || (c->op != OD_OP_INSERT && c->op != OD_OP_UPDATE && c->op != OD_OP_READ)) continue;
    bool ok = true; /* an unchanged TOAST value: unknown, not checked */
    for (int k = 0; k < x->nref && ok; k++)
      ok = x->ref[k] < c->newtup.ncolumns && (c->newtup.values[x->ref[k]].kind == OD_VALUE_TEXT ||
                                               c->newtup.values[x->ref[k]].kind == OD_VALUE_NULL);
    for (int k = 0; k < x->ncol && ok && !x->nnd; k++) /* a null key column never clashes (NULLS DISTINCT) */
      ok = x->col[k] < 0 || c->newtup.values[x->ref[x->col[k]]].kind == OD_VALUE_TEXT;
    if (!ok) continue;
    char ci[32];
    snprintf(ci, sizeof ci, "%zu", idx[j]);
    pgs_mesh_arr_add(&arr[0], ci);
    pgs_mesh_arr_add(&arr[1], keys[j]);
    for (int k = 0; k < x->nref; k++) {
      const od_value *v = &c->newtup.values[x->ref[k]];
      if (v->kind == OD_VALUE_NULL) od_sqlbuf_add(&arr[2 + k], arr[2 + k].len > 1 ? ",NULL" : "NULL");
      else pgs_mesh_arr_addn(&arr[2 + k], v->data, v->len);
    }
    rows++;
  }
  for (int k = 0; k < na; k++) od_sqlbuf_add(&arr[k], "}");
  if (!rows) goto done;
  od_sqlbuf b = {0}, rd = {0};
  od_sqlbuf u = {0}; /* the batch's rows: unnest(...) AS u (_odsync_i, _odsync_k, _odsync_v0, ...) [w] */
  od_sqlbuf_add(&u, "unnest($1::int8[], $2::text[]");
  for (int k = 0; k < x->nref; k++) od_sqlbuf_addf(&u, ", $%d::text[]", 3 + k);
  od_sqlbuf_add(&u, ") AS u (_odsync_i, _odsync_k");
  for (int k = 0; k < x->nref; k++) od_sqlbuf_addf(&u, ", _odsync_v%d", k);
  od_sqlbuf_add(&u, ")");
  if (ev) { /* the expressions and predicate on the batch's row (its columns under their names) */
    od_sqlbuf z = {0};
    od_sqlbuf_add(&z, "(SELECT ");
    for (int k = 0; k < x->nref; k++) {
      od_sqlbuf_addf(&z, "%su._odsync_v%d::%s AS ", k ? ", " : "", k, x->type[k]);
      od_sqlbuf_ident(&z, r->rel->columns[x->ref[k]].name);
    }
    od_sqlbuf_add(&z, ")");
    if (z.oom) u.oom = true;
    else eval_row(&u, x, z.p, "w");
    od_sqlbuf_free(&z);
  }
  od_sqlbuf_add(&b, "SELECT u._odsync_i, t.ctid::text, ");
  key_expr(&b, r);
  /* the local row's version, as the versions query reads it (the side table's when a mesh sink
   * wrote the row last, else its xmin's commit time and origin) */
  od_sqlbuf_add(&b, " AS k, CASE WHEN c.roident <> 0 AND v.key IS NOT NULL THEN v.ts ELSE (extract(epoch FROM "
                    "c.timestamp) * 1000000)::int8 END, CASE WHEN c.roident <> 0 AND v.key IS NOT NULL THEN v.node "
                    "ELSE o.roname END, CASE WHEN c.roident <> 0 AND v.key IS NOT NULL THEN v.hlc WHEN c.roident = 0 THEN ");
  od_mesh_sql_local_hlc(&b, m->hlc_q, "c.timestamp"); /* a local write's hlc (common/mesh_sql.c) */
  od_sqlbuf_add(&b, " ELSE (extract(epoch FROM c.timestamp) * 1000000)::int8 END, to_jsonb(t.*)::text, false FROM ");
  od_sqlbuf_add(&b, u.p ? u.p : "");
  od_sqlbuf_add(&b, " JOIN ");
  od_sqlbuf_add(&b, r->qtarget);
  /* In this ON clause only u, w (columns _odsync_*) and t are in scope: the index's unqualified
   * column names are t's, and its expressions and predicate read as in the index (usable by it). */
  od_sqlbuf_add(&b, " t ON ");
  /* NULLS NOT DISTINCT: "a = b OR (a IS NULL AND b IS NULL)", the same as IS NOT DISTINCT FROM
   * but usable by the index (a BitmapOr of the value and of the NULLs; IS NOT DISTINCT FROM
   * read the whole table per batch) */
  for (int k = 0; k < x->ncol; k++) {
    od_sqlbuf lhs = {0}, rhs = {0};
    if (x->col[k] >= 0) {
      od_sqlbuf_add(&lhs, "t.");
      od_sqlbuf_ident(&lhs, r->rel->columns[x->ref[x->col[k]]].name);
      od_sqlbuf_addf(&rhs, "u._odsync_v%d::%s", x->col[k], x->type[x->col[k]]);
    } else {
      od_sqlbuf_addf(&lhs, "(%s)", x->expr[k]);
      od_sqlbuf_addf(&rhs, "w._odsync_e%d", k);
    }
    if (lhs.oom || rhs.oom) b.oom = true;
    else if (x->col[k] < 0) {
      if (k) od_sqlbuf_add(&b, " AND ");
      add_part_eq(&b, x, k, lhs.p, rhs.p);
    } else if (x->nnd)
      od_sqlbuf_addf(&b, "%s(%s = %s OR (%s IS NULL AND %s IS NULL))", k ? " AND " : "", lhs.p, rhs.p, lhs.p, rhs.p);
    else od_sqlbuf_addf(&b, "%s%s = %s", k ? " AND " : "", lhs.p, rhs.p);
    od_sqlbuf_free(&lhs);
    od_sqlbuf_free(&rhs);
  }
  if (x->pred) od_sqlbuf_addf(&b, " AND (%s) AND w._odsync_p", x->pred);
  od_sqlbuf_add(&b, " CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(t.xmin) c LEFT JOIN "
                    "pg_catalog.pg_replication_origin o ON o.roident = c.roident LEFT JOIN ");
  od_sqlbuf_add(&b, m->ver_q);
  od_sqlbuf_addf(&b, " v ON v.tbl = $%d AND v.key = ", 3 + x->nref);
  key_expr(&b, r);
  od_sqlbuf_add(&b, " WHERE ");
  key_expr(&b, r);
  /* locked in key order, like the versions query: an application cannot change the clashing
   * row before the commit */
  od_sqlbuf_add(&b, " <> u._odsync_k ORDER BY 3, 1 FOR UPDATE OF t");
  /* The read, a second statement in the same round trip (its snapshot starts after the lock above
   * waited): the locked rows again, and the records of rows of other keys that left these values
   * (_odsync_unique_left: deleted, or moved off by an update, or out of a partial index's
   * predicate) — an application's delete or move that the lock waited for is seen by its record.
   * Key columns compared as the column's type, in JSON (the GIN index on img; a JSON null matches
   * a null, which only a NULLS NOT DISTINCT index passes here); expressions and the predicate
   * evaluated on the record's columns (jsonb_populate_record). */
  od_sqlbuf_add(&rd, "WITH live AS MATERIALIZED (");
  od_sqlbuf_add(&rd, b.p ? b.p : "");
  od_sqlbuf_add(&rd, ") SELECT * FROM live UNION ALL SELECT u._odsync_i, NULL, l.key, l.ts, l.node, l.hlc, "
                     "l.img::text, true FROM ");
  od_sqlbuf_add(&rd, u.p ? u.p : "");
  od_sqlbuf_add(&rd, " JOIN ");
  od_sqlbuf_add(&rd, m->ul_q);
  od_sqlbuf_addf(&rd, " l ON l.tbl = $%d", 3 + x->nref);
  bool anycol = false;
  for (int k = 0; k < x->ncol; k++)
    if (x->col[k] >= 0) {
      od_sqlbuf_add(&rd, anycol ? ", '" : " AND l.img @> jsonb_build_object('");
      add_lit(&rd, r->rel->columns[x->ref[x->col[k]]].name);
      od_sqlbuf_addf(&rd, "', to_jsonb(u._odsync_v%d::%s)", x->col[k], x->type[x->col[k]]);
      anycol = true;
    }
  if (anycol) od_sqlbuf_add(&rd, ")");
  if (ev) {
    od_sqlbuf z = {0};
    od_sqlbuf_add(&z, "jsonb_populate_record(NULL::");
    od_sqlbuf_add(&z, r->qtarget);
    od_sqlbuf_add(&z, ", l.img)");
    if (z.oom) rd.oom = true;
    else eval_row(&rd, x, z.p, "lw");
    od_sqlbuf_free(&z);
  }
  od_sqlbuf_add(&rd, " WHERE l.key <> u._odsync_k");
  if (x->pred) od_sqlbuf_add(&rd, " AND w._odsync_p AND lw._odsync_p");
  for (int k = 0; k < x->ncol; k++)
    if (x->col[k] < 0) {
      char l[32], rr[32];
      snprintf(l, sizeof l, "lw._odsync_e%d", k);
      snprintf(rr, sizeof rr, "w._odsync_e%d", k);
      od_sqlbuf_add(&rd, " AND ");
      add_part_eq(&rd, x, k, l, rr);
    }
  bool uoom = u.oom;
  od_sqlbuf_free(&u);
  const char *p[3 + UREF_MAX];
  for (int k = 0; k < na; k++) p[k] = arr[k].p;
  p[na] = r->target;
  bool oom = b.oom || rd.oom || uoom;
  for (int k = 0; k < na; k++) oom = oom || arr[k].oom;
  PGresult *res = NULL;
  if (oom) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  else rc = pgs_mesh_versions_exec(s, m, r->target, b.p, rd.p, na + 1, p, &res, err);
  od_sqlbuf_free(&b);
  od_sqlbuf_free(&rd);
  if (rc) goto done;
  for (int t = 0; t < PQntuples(res) && rc == OD_OK; t++) {
    if (out->n == out->cap) {
      size_t cap = out->cap ? out->cap * 2 : 16;
      uniq_clash *g = realloc(out->c, cap * sizeof *g);
      if (!g) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        break;
      }
      out->c = g;
      out->cap = cap;
    }
    uniq_clash *u = &out->c[out->n];
    *u = (uniq_clash){.ci = (size_t)strtoull(PQgetvalue(res, t, 0), NULL, 10)};
    u->index = strdup(x->name);
    u->left = strcmp(PQgetvalue(res, t, 7), "t") == 0;
    u->ctid = u->left ? NULL : strdup(PQgetvalue(res, t, 1));
    u->key = strdup(PQgetvalue(res, t, 2));
    u->row = strdup(PQgetvalue(res, t, 6));
    out->n++;
    if (!u->index || (!u->ctid && !u->left) || !u->key || !u->row) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      break;
    }
    u->ts = PQgetisnull(res, t, 3) ? INT64_MIN : strtoll(PQgetvalue(res, t, 3), NULL, 10);
    u->hlc = PQgetisnull(res, t, 5) ? u->ts : strtoll(PQgetvalue(res, t, 5), NULL, 10);
    const char *origin = PQgetisnull(res, t, 4) ? "" : PQgetvalue(res, t, 4);
    if (strncmp(origin, "odsync_", 7) == 0) origin += 7;
    snprintf(u->node, sizeof u->node, "%s", origin);
  }
  PQclear(res);
done:
  for (int k = 0; k < na; k++) od_sqlbuf_free(&arr[k]);
  return rc;
}

int pgs_mesh_unique_query(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, const size_t *idx,
                          char **keys, size_t q0, size_t q1, uniq_set *out, od_error *err) {
  const struct mesh_uniq *u = NULL;
  int rc = uniq_of(s, m, r, &u, err);
  for (int i = 0; rc == OD_OK && i < u->nidx; i++)
    rc = query_index(s, m, r, &u->idx[i], changes, idx, keys, q0, q1, out, err);
  if (rc == OD_OK && out->n > 1) qsort(out->c, out->n, sizeof *out->c, cmp_clash);
  return rc;
}

/* Log one clash in _odsync_conflicts (kind "unique") and count it. */
static int log_clash(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st,
                     const char *rkey, const uniq_clash *u, const char *policy, bool remote_won, od_error *err) {
  m->conflicts++;
  for (int k = 0; k < KINDS; k++)
    if (strcmp(KIND_NAMES[k], "unique") == 0) od_counter_add(m->m_conflicts[k], 1);
  char keyshow[512], lts[32], rts[32], rlsn[32], lhlc[32], rhlc[32];
  snprintf(keyshow, sizeof keyshow, "%s", rkey);
  for (char *p = keyshow; *p; p++)
    if (*p == '\x1f') *p = ',';
  snprintf(lts, sizeof lts, "%" PRId64, u->ts);
  snprintf(rts, sizeof rts, "%" PRId64, st->ts);
  snprintf(rlsn, sizeof rlsn, "%X/%X", (unsigned)(st->lsn >> 32), (unsigned)st->lsn);
  snprintf(lhlc, sizeof lhlc, "%" PRId64, u->hlc);
  snprintf(rhlc, sizeof rhlc, "%" PRId64, st->hlc);
  const char *lnode = u->node[0] ? u->node : m->node;
  od_sqlbuf remote = {0};
  pgs_mesh_tuple_json(&remote, c->rel, &c->newtup);
  const char *p[15] = {m->node, r->target, keyshow, u->row, remote.oom ? NULL : remote.p, lnode, m->peer,
                       u->ts != INT64_MIN ? lts : NULL, rts, rlsn, policy, remote_won ? m->peer : lnode, u->index,
                       u->ts != INT64_MIN ? lhlc : NULL, rhlc};
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "INSERT INTO ");
  od_sqlbuf_add(&b, m->log_q);
  od_sqlbuf_add(&b, " (node, kind, table_name, key, local_row, remote_row, local_origin, remote_origin, "
                    "local_commit_ts, remote_commit_ts, remote_lsn, policy, winner, index_name, local_hlc, remote_hlc) VALUES "
                    "($1, 'unique', $2, $3, $4::jsonb, $5::jsonb, $6, $7, '1970-01-01 00:00:00+00'::timestamptz + "
                    "$8::bigint * interval '1 microsecond', '1970-01-01 00:00:00+00'::timestamptz + $9::bigint * "
                    "interval '1 microsecond', $10::pg_lsn, $11, $12, $13, $14::int8, $15::int8)");
  PGresult *res = b.oom ? NULL : pgs_exec(s, m->log_q, "logging a unique-index conflict", b.p, 15, p, err);
  int rc = res ? OD_OK : b.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
  PQclear(res);
  od_sqlbuf_free(&b);
  od_sqlbuf_free(&remote);
  if (rc == OD_OK)
    od_debug("postgres sink %s: mesh %s: unique conflict on %s index %s: remote key %s, local row %s: %s wins",
             s->where, m->node, r->target, u->index, keyshow, u->row, remote_won ? m->peer : lnode);
  return rc;
}

/* d becomes a tombstone whose version is (node, ts, hlc): written with the run's versions. The
 * version is the removed row's own (not the winner's): a later write of that row by a writer that
 * had seen it (its author moving it off the clashing value, say) is then no conflict here and is
 * applied, re-creating the row, whose clash (if any) is judged again with that newer version, as
 * on the node where the row was never removed (docs/MULTI_MASTER.md, "Unique-key clashes"). */
static bool tombstone(pgs_mesh *m, decision *d, const char *node, int64_t ts, int64_t hlc, bool ours) {
  d->has_ver = true;
  d->tomb = true;
  d->ours = ours;
  d->touch = true; /* the tombstone row is written (upserted) after the run's apply */
  snprintf(d->node, sizeof d->node, "%s", node);
  d->ts = ts;
  d->hlc = hlc;
  free(d->also);
  d->also = NULL;
  return pgs_mesh_wr_push(m, d);
}

/* Whether the record x (a row that left the value) takes no part in the judgement of change ci:
 * its key holds the value again (then the live clash of the same key and index judges it), the
 * batch writes its key (the peer's own history of that key), or the remote write had seen the
 * version that held the value (written after the row left it, as far as the writer knew). */
static bool left_skip(pgs_mesh *m, const pg_rel *r, const uniq_set *u, size_t lo, const uniq_clash *x, const stamp *st) {
  for (size_t j = lo; j < u->n && u->c[j].ci == x->ci; j++)
    if (!u->c[j].left && strcmp(u->c[j].key, x->key) == 0 && strcmp(u->c[j].index, x->index) == 0) return true;
  const decision *kd = pgs_mesh_dec_peek(m, r, x->key);
  if (kd && kd->seq) return true;
  return pgs_mesh_ver_seen(m, st, x->node, x->ts);
}

/* The version of a record as a key state (only what the policies read: node, ts, hlc). */
static decision left_ver(const uniq_clash *x) {
  decision v = {.has_ver = true, .ts = x->ts, .hlc = x->hlc};
  snprintf(v.node, sizeof v.node, "%s", x->node);
  return v;
}

int pgs_mesh_unique_resolve(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const mesh_pol *pol, const od_change *c,
                            size_t ci, const stamp *st, decision *d, const uniq_set *u, bool *keep, od_error *err) {
  if (!*keep || (c->op != OD_OP_INSERT && c->op != OD_OP_UPDATE && c->op != OD_OP_READ)) return OD_OK;
  /* column_merge and counters mean nothing between two different rows: last_writer_wins */
  int policy = pol->policy == POL_COLUMN_MERGE ? POL_LWW : pol->policy;
  const char *pname = POLICIES[policy];
  size_t lo = 0, hi = u->n;
  while (lo < hi) { /* the first clash of ci */
    size_t mid = (lo + hi) / 2;
    if (u->c[mid].ci < ci) lo = mid + 1;
    else hi = mid;
  }
  size_t di = (size_t)(d - m->dec); /* d may move: the key states grow below */
  bool won = true, any = false;
  size_t first = lo;
  for (size_t i = lo; i < u->n && u->c[i].ci == ci; i++) {
    const uniq_clash *x = &u->c[i];
    if (x->left) { /* the remote row would have met that row where it held the value */
      if (left_skip(m, r, u, lo, x, st)) continue;
      decision lv = left_ver(x);
      any = true;
      if (!pgs_mesh_remote_wins_by(m, policy, pol, st, &lv)) won = false;
      continue;
    }
    decision *kd = pgs_mesh_dec_get(m, r, x->key);
    if (!kd) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    /* Gone already (an earlier clash of this run removed it, or the batch deleted it), or written
     * by this batch from the peer's own history (valid there: no clash at the point of this
     * change): no clash. Else the local row stands at this point of the batch. */
    if ((kd->has_ver && kd->tomb) || (kd->seq && kd->apply) || (kd->ours && kd->seq)) continue;
    if (!kd->seq && !kd->has_ver) { /* not in the batch: the clash query's version */
      kd->has_ver = true;
      snprintf(kd->node, sizeof kd->node, "%s", x->node);
      kd->ts = x->ts;
      kd->hlc = x->hlc;
    }
    any = true;
    if (!pgs_mesh_remote_wins_by(m, policy, pol, st, kd)) won = false;
  }
  if (!any) return OD_OK;
  d = &m->dec[di];
  int rc = OD_OK;
  for (size_t i = first; i < u->n && u->c[i].ci == ci && rc == OD_OK; i++) {
    const uniq_clash *x = &u->c[i];
    if (x->left) { /* logged like a clash with a live row; its row is gone already: nothing to remove */
      if (left_skip(m, r, u, first, x, st)) continue;
      decision lv = left_ver(x);
      bool pair_won = pgs_mesh_remote_wins_by(m, policy, pol, st, &lv);
      rc = log_clash(s, m, r, c, st, m->dec[di].key, x, pname, won && pair_won, err);
      continue;
    }
    decision *kd = pgs_mesh_dec_get(m, r, x->key);
    if (!kd) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    if ((kd->tomb && kd->has_ver) || (kd->seq && kd->apply) || (kd->ours && kd->seq)) continue;
    bool pair_won = pgs_mesh_remote_wins_by(m, policy, pol, st, kd);
    if ((rc = log_clash(s, m, r, c, st, m->dec[di].key, x, pname, won && pair_won, err))) break;
    if (!won) continue;
    /* The remote row wins: the local row goes, its key tombstoned with that row's version (the
     * sink's delete is not sent on: its transaction carries the peer's origin). */
    od_sqlbuf b = {0};
    od_sqlbuf_add(&b, "DELETE FROM ");
    od_sqlbuf_add(&b, r->qtarget);
    od_sqlbuf_add(&b, " WHERE ctid = $1::tid");
    const char *p[1] = {x->ctid};
    PGresult *res = b.oom ? NULL : pgs_exec(s, r->target, "removing the loser of a unique-index clash (mesh)", b.p,
                                            1, p, err);
    rc = res ? OD_OK : b.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
    PQclear(res);
    od_sqlbuf_free(&b);
    if (rc == OD_OK && !tombstone(m, kd, kd->node[0] ? kd->node : m->node, kd->ts, kd->hlc == INT64_MIN ? kd->ts :
                                  kd->hlc, false))
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  if (rc || won) return rc;
  /* The remote row loses: it is removed here too (the change becomes a delete of its key, so an
   * earlier change of the batch that wrote the key goes as well), its key tombstoned with the
   * remote row's version; the rest of its source transaction's changes of that key follow. */
  d = &m->dec[di];
  d->seq = st->seq;
  d->apply = false;
  if (!tombstone(m, d, m->peer, st->ts, st->hlc, false))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (m->ntodel == m->todel_cap) {
    size_t cap = m->todel_cap ? m->todel_cap * 2 : 16;
    size_t *g = realloc(m->todel, cap * sizeof *g);
    if (!g) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    m->todel = g;
    m->todel_cap = cap;
  }
  m->todel[m->ntodel++] = ci;
  *keep = true;
  return OD_OK;
}

void pgs_mesh_test_pause(void) {
  static long ms = -1;
  if (ms < 0) {
    const char *e = getenv("ODSYNC_MESH_TEST_PAUSE_MS");
    ms = e ? strtol(e, NULL, 10) : 0;
    if (ms < 0) ms = 0;
  }
  if (!ms) return;
  struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&d, NULL);
}

/* ---- unique values left within a run ----------------------------------------------------------- */

struct ul_rec {
  const pg_rel *r;
  char *key;
  char **val; /* one per column of cols_of(r) (NULL: null), malloc'd */
  int nval;
  int64_t ts, hlc;
};

/* The distinct columns r's checked unique indexes read (key columns, and those of their
 * expressions and predicates), with their types (at most UL_COLS). */
#define UL_COLS (UIDX_MAX * UREF_MAX)
static int cols_of(const struct mesh_uniq *u, int *col, const char **type) {
  int n = 0;
  for (int i = 0; i < u->nidx; i++)
    for (int k = 0; k < u->idx[i].nref; k++) {
      bool dup = false;
      for (int j = 0; j < n && !dup; j++) dup = col[j] == u->idx[i].ref[k];
      if (!dup && n < UL_COLS) {
        col[n] = u->idx[i].ref[k];
        type[n] = u->idx[i].type[k];
        n++;
      }
    }
  return n;
}

static void free_vals(char **v, int n) {
  for (int k = 0; k < n; k++) free(v[k]);
  free(v);
}

void pgs_mesh_unique_dec_free(decision *d) {
  free_vals(d->uval, d->nuval);
  d->uval = NULL;
  d->nuval = 0;
}

void pgs_mesh_unique_forget(pgs_mesh *m) {
  for (size_t i = 0; i < m->nul; i++) {
    free(m->ul[i].key);
    free_vals(m->ul[i].val, m->ul[i].nval);
  }
  m->nul = 0;
}

int pgs_mesh_unique_note(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st, decision *d,
                         bool keep, bool removed, od_error *err) {
  if (!d || !keep) return OD_OK; /* not applied: the row stays as it was */
  const struct mesh_uniq *u = NULL;
  int rc = uniq_of(s, m, r, &u, err);
  if (rc || !u->nidx) return rc;
  int col[UL_COLS];
  const char *type[UL_COLS];
  int n = cols_of(u, col, type);
  bool gone = removed || c->op == OD_OP_DELETE;
  char **nv = NULL;
  if (!gone) { /* the new row's values (an unchanged TOAST value: unknown, nothing is recorded) */
    if (!(nv = calloc((size_t)n, sizeof *nv))) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    for (int k = 0; k < n; k++) {
      const od_value *v = col[k] < c->newtup.ncolumns ? &c->newtup.values[col[k]] : NULL;
      if (!v || (v->kind != OD_VALUE_TEXT && v->kind != OD_VALUE_NULL)) {
        free_vals(nv, n);
        pgs_mesh_unique_dec_free(d);
        return OD_OK;
      }
      if (v->kind == OD_VALUE_TEXT && !(nv[k] = strndup(v->data, v->len))) {
        free_vals(nv, n);
        return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      }
    }
  }
  bool left = false;
  if (d->uval) {
    left = gone;
    for (int k = 0; k < n && !left; k++)
      left = (nv[k] == NULL) != (d->uval[k] == NULL) || (nv[k] && strcmp(nv[k], d->uval[k]) != 0);
  }
  if (left) { /* the earlier change's values go into a record */
    if (m->nul == m->ul_cap) {
      size_t cap = m->ul_cap ? m->ul_cap * 2 : 8;
      struct ul_rec *g = realloc(m->ul, cap * sizeof *g);
      if (!g) {
        free_vals(nv, n);
        return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      }
      m->ul = g;
      m->ul_cap = cap;
    }
    char *key = strdup(d->key);
    if (!key) {
      free_vals(nv, n);
      return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    }
    m->ul[m->nul++] = (struct ul_rec){.r = r, .key = key, .val = d->uval, .nval = d->nuval, .ts = d->uts,
                                      .hlc = d->uhlc};
    d->uval = NULL;
    d->nuval = 0;
  }
  pgs_mesh_unique_dec_free(d);
  if (!gone) {
    d->uval = nv;
    d->nuval = n;
    d->uts = st->ts;
    d->uhlc = st->hlc;
  }
  return OD_OK;
}

int pgs_mesh_unique_flush(pgs_sink *s, pgs_mesh *m, od_error *err) {
  int rc = OD_OK;
  for (size_t i = 0; i < m->nul && rc == OD_OK; i++) {
    const struct ul_rec *x = &m->ul[i];
    const struct mesh_uniq *u = NULL;
    if ((rc = uniq_of(s, m, x->r, &u, err))) break;
    int col[UL_COLS];
    const char *type[UL_COLS];
    int n = cols_of(u, col, type);
    if (n != x->nval) continue;
    char ts[32], hlc[32];
    snprintf(ts, sizeof ts, "%" PRId64, x->ts);
    snprintf(hlc, sizeof hlc, "%" PRId64, x->hlc);
    const char *p[5 + UL_COLS] = {x->r->target, x->key, m->peer, ts, hlc};
    od_sqlbuf b = {0};
    od_sqlbuf_add(&b, "INSERT INTO ");
    od_sqlbuf_add(&b, m->ul_q);
    od_sqlbuf_add(&b, " AS l (tbl, key, img, node, ts, hlc) VALUES ($1, $2, jsonb_build_object(");
    for (int k = 0; k < n; k++) {
      od_sqlbuf_add(&b, k ? ", '" : "'");
      for (const char *q = x->r->rel->columns[col[k]].name; *q; q++)
        od_sqlbuf_addn(&b, *q == '\'' ? "''" : q, *q == '\'' ? 2 : 1);
      od_sqlbuf_addf(&b, "', to_jsonb($%d::%s)", 6 + k, type[k]);
      p[5 + k] = x->val[k];
    }
    od_sqlbuf_add(&b, "), $3, $4::int8, $5::int8) ON CONFLICT (tbl, key, img) DO UPDATE SET node = excluded.node, "
                      "ts = excluded.ts, hlc = excluded.hlc");
    PGresult *res = b.oom ? NULL : pgs_exec(s, m->ul_q, "recording unique values left (mesh)", b.p, 5 + n, p, err);
    rc = res ? OD_OK : b.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where) : err->code;
    PQclear(res);
    od_sqlbuf_free(&b);
  }
  pgs_mesh_unique_forget(m);
  return rc;
}
