/* sinks/postgres_mesh_colver.c — a version per column for every write of a column_merge table
 * (docs/MULTI_MASTER.md, "column_merge: which columns, and why the nodes converge").
 *
 * Owns: the DDL of _odsync_colver (tbl, key, xids: per column the local transaction that last
 * changed it since the last mesh sink write of the key) and of its trigger (AFTER INSERT OR UPDATE
 * of each column_merge table, applications' writes only: OLD vs NEW per column, IS DISTINCT FROM on
 * the values' text), the expression the versions read uses to turn those xids into versions (this
 * node, the xid's commit time, its hlc: resolved at read time like a row's xmin), the merge of
 * those with the side table's per-column versions into a key state's complete list, and the list
 * after a remote change is applied.
 * Never touches: the decisions (postgres_mesh_decide.c, postgres_mesh_colmerge.c), transactions, the
 * apply path, the versions statement's other parts (postgres_mesh.c writes the lists and clears
 * _odsync_colver).
 * Pointer ownership: d->also is the key state's (malloc'd; replaced here, the old one freed); the
 * local_ver's strings point into the caller's PGresult.
 */
#include "sinks/postgres_mesh_internal.h"

#include "common/mesh_sql.h"

bool pgs_mesh_colver_table(const pgs_mesh *m, const pg_rel *r) {
  return pgs_mesh_pol(m, r->target)->policy == POL_COLUMN_MERGE;
}

int pgs_mesh_colver_ddl(pgs_sink *s, pgs_mesh *m, od_sqlbuf *b, od_error *err) {
  od_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS ");
  od_sqlbuf_add(b, m->cv_q);
  od_sqlbuf_add(b, " (tbl text NOT NULL, key text NOT NULL, xids xid[] NOT NULL, PRIMARY KEY (tbl, key)); ");
  /* Arguments: the number of key columns, the key columns, every column (attnum order, the order
   * pgoutput sends them). A key-changing update or an insert is a write of every column. */
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->cvfn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE nk int := TG_ARGV[0]::int; k text; "
                   "ok text; o jsonb; n jsonb := to_jsonb(NEW); cur xid[]; t text := TG_TABLE_SCHEMA || '.' || "
                   "TG_TABLE_NAME; x xid := (pg_current_xact_id()::text::int8 % 4294967296)::text::xid; BEGIN "
                   "SELECT string_agg(n ->> TG_ARGV[i], chr(31) ORDER BY i) INTO k FROM generate_series(1, nk) i; "
                   "IF TG_OP = 'UPDATE' THEN o := to_jsonb(OLD); SELECT string_agg(o ->> TG_ARGV[i], chr(31) ORDER BY "
                   "i) INTO ok FROM generate_series(1, nk) i; END IF; IF ok IS NOT DISTINCT FROM k THEN SELECT "
                   "c.xids INTO cur FROM ");
  od_sqlbuf_add(b, m->cv_q);
  od_sqlbuf_add(b, " c WHERE c.tbl = t AND c.key = k; SELECT array_agg(CASE WHEN (o ->> TG_ARGV[i]) IS DISTINCT "
                   "FROM (n ->> TG_ARGV[i]) THEN x ELSE cur[i - nk] END ORDER BY i) INTO cur FROM "
                   "generate_series(nk + 1, TG_NARGS - 1) i; ELSE SELECT array_agg(x) INTO cur FROM "
                   "generate_series(nk + 1, TG_NARGS - 1); END IF; INSERT INTO ");
  od_sqlbuf_add(b, m->cv_q);
  od_sqlbuf_add(b, " AS c (tbl, key, xids) VALUES (t, k, cur) ON CONFLICT (tbl, key) DO UPDATE SET xids = "
                   "excluded.xids; RETURN NULL; END $odsync$; ");
  /* A deleted row's last values stay in its tombstone (img; the column: postgres_mesh.c): on a
   * column_merge table a write that re-creates the row takes the columns it did not change from
   * there, as it would have from the live row; on a table with SQL rules with REPLICA IDENTITY FULL
   * the rules rank the delete as that row (postgres_mesh_sqlrule.c). Fires after _odsync_tombstone
   * (trigger names order them), for applications' and sinks' deletes alike (a sink rewrites the
   * image of a delete it applied with the deleted row its author had: finish_run). */
  od_sqlbuf_add(b, "CREATE OR REPLACE FUNCTION ");
  od_sqlbuf_add(b, m->tifn_q);
  od_sqlbuf_add(b, "() RETURNS trigger LANGUAGE plpgsql AS $odsync$ DECLARE k text; j jsonb := to_jsonb(OLD); BEGIN "
                   "SELECT string_agg(j ->> a, chr(31) ORDER BY o) INTO k FROM unnest(TG_ARGV) WITH ORDINALITY AS "
                   "u(a, o); ");
  pgs_mesh_sql_key_kept(b); /* an update that moved the row: its old key's last row, as a delete's */
  od_sqlbuf_add(b, "UPDATE ");
  od_sqlbuf_add(b, m->tomb_q);
  od_sqlbuf_add(b, " SET img = j WHERE tbl = TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME AND key = k; RETURN NULL; END "
                   "$odsync$; ");
  for (int i = 0; i < m->ntables; i++) {
    bool merge = pgs_mesh_pol(m, m->tables[i])->policy == POL_COLUMN_MERGE;
    bool ranked = !merge && pgs_mesh_has_sqlrule(m, m->tables[i]);
    char *lit = PQescapeLiteral(s->conn, m->tables[i], strlen(m->tables[i]));
    char *fn = PQescapeLiteral(s->conn, m->cvfn_q, strlen(m->cvfn_q));
    char *tfn = PQescapeLiteral(s->conn, m->tifn_q, strlen(m->tifn_q));
    if (!lit || !fn || !tfn) {
      PQfreemem(lit);
      PQfreemem(fn);
      PQfreemem(tfn);
      return pgs_fail(s, NULL, "quoting a table name", NULL, err);
    }
    if (merge || ranked) /* (SQL rules: an image only where the deletes' stream carries it too: FULL) */
      od_sqlbuf_addf(b, "DO $odsync$ DECLARE cols text; icols text; rel regclass := to_regclass(%s); BEGIN IF rel "
                        "IS NULL THEN RETURN; END IF; IF %s AND (SELECT relreplident FROM pg_class WHERE oid = rel) "
                        "<> 'f' THEN IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = "
                        "'_odsync_tombstone_img') THEN EXECUTE format('DROP TRIGGER _odsync_tombstone_img ON %%s', "
                        "rel); END IF; RETURN; END IF; SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY "
                        "a.attnum), string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols, icols FROM "
                        "pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE "
                        "i.indrelid = rel AND i.indisprimary; IF cols IS NULL THEN RETURN; END IF; PERFORM %s(rel, "
                        "'trigger', '_odsync_tombstone_img', format('CREATE OR REPLACE TRIGGER _odsync_tombstone_img "
                        "AFTER DELETE OR UPDATE OF %%s ON %%s FOR EACH ROW EXECUTE FUNCTION %%s(%%s)', icols, rel, %s, "
                        "cols)); END $odsync$; ", lit, merge ? "false" : "true", m->ens_q, tfn);
    else
      od_sqlbuf_addf(b, "DO $odsync$ DECLARE rel regclass := to_regclass(%s); BEGIN IF rel IS NOT NULL AND EXISTS "
                        "(SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = '_odsync_tombstone_img') THEN "
                        "EXECUTE format('DROP TRIGGER _odsync_tombstone_img ON %%s', rel); END IF; END $odsync$; ", lit);
    PQfreemem(tfn);
    if (merge)
      od_sqlbuf_addf(b, "DO $odsync$ DECLARE args text; rel regclass := to_regclass(%s); BEGIN IF rel IS NULL THEN "
                        "RETURN; END IF; SELECT quote_literal(count(*)) || ', ' || string_agg(quote_literal(a.attname), "
                        "', ' ORDER BY a.attnum) INTO args FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                        "i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = rel AND i.indisprimary; IF args "
                        "IS NULL THEN RETURN; END IF; SELECT args || ', ' || string_agg(quote_literal(a.attname), ', ' "
                        "ORDER BY a.attnum) INTO args FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND "
                        "NOT a.attisdropped AND a.attgenerated = ''; PERFORM %s(rel, 'trigger', '_odsync_colver', "
                        "format('CREATE OR REPLACE TRIGGER _odsync_colver AFTER INSERT OR UPDATE ON %%s FOR EACH ROW "
                        "WHEN (current_setting(''odsync.mesh_sink'', true) IS DISTINCT FROM ''on'') EXECUTE FUNCTION "
                        "%%s(%%s)', rel, %s, args)); END $odsync$; ", lit, m->ens_q, fn);
    else /* another policy now: no trigger, no cost on its writes */
      od_sqlbuf_addf(b, "DO $odsync$ DECLARE rel regclass := to_regclass(%s); BEGIN IF rel IS NOT NULL AND EXISTS "
                        "(SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = '_odsync_colver') THEN EXECUTE "
                        "format('DROP TRIGGER _odsync_colver ON %%s', rel); END IF; END $odsync$; ", lit);
    PQfreemem(lit);
    PQfreemem(fn);
  }
  return OD_OK;
}

void pgs_mesh_colver_read_sql(const pgs_mesh *m, od_sqlbuf *b, int tbl_param) {
  /* per column: "<commit time µs>:<hlc>" of the local transaction that last changed it, "" none */
  char tbl[16];
  snprintf(tbl, sizeof tbl, "$%d", tbl_param);
  od_sqlbuf_add(b, ", ");
  od_mesh_sql_colver_list(b, m->hlc_q, m->cv_q, tbl, "x.k");
}

/* The n-th comma-separated item of list (NULL list: none): start and length. */
static bool item_at(const char *list, int n, const char **p, size_t *len) {
  if (!list) return false;
  const char *c = list;
  for (int i = 0; i < n; i++) {
    c = strchr(c, ',');
    if (!c) return false;
    c++;
  }
  *p = c;
  *len = strcspn(c, ",");
  return true;
}

bool pgs_mesh_colver_resolve(const pgs_mesh *m, decision *d, const local_ver *lv, int ncol) {
  od_sqlbuf b = {0};
  for (int j = 0; j < ncol; j++) {
    const char *p;
    size_t len;
    if (j) od_sqlbuf_add(&b, ",");
    if (item_at(lv->local, j, &p, &len) && len) {
      od_sqlbuf_add(&b, m->node); /* a local write: this node's */
      od_sqlbuf_add(&b, ":");
      od_sqlbuf_addn(&b, p, len);
    } else if (item_at(lv->also, j, &p, &len) && len) {
      od_sqlbuf_addn(&b, p, len); /* the last sink write's */
    } else if (d->ts != INT64_MIN && !d->tomb) {
      /* never recorded (rows from before the trigger): the row's version, weak — counts for
       * "seen", the column is judged by value. A tombstone's version is its delete's, which wrote
       * no column: such a column stays unknown (older than any write that reaches it). */
      od_sqlbuf_addf(&b, "~%s:%" PRId64 ":%" PRId64, d->node[0] ? d->node : m->node, d->ts,
                     d->hlc == INT64_MIN ? d->ts : d->hlc);
    }
  }
  if (b.oom) {
    od_sqlbuf_free(&b);
    return false;
  }
  free(d->also);
  d->also = b.p; /* NULL when ncol is 0 */
  return true;
}

static bool same_value(const od_value *a, const od_value *b) {
  if (a->kind != b->kind) return false;
  if (a->kind == OD_VALUE_NULL) return true;
  return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

bool pgs_mesh_colver_note(const pgs_mesh *m, decision *d, const od_change *c, const stamp *st, bool partial_ok,
                          uint64_t skip, int ncol) {
  if (c->op == OD_OP_DELETE) /* a tombstone: its version is the delete's; the columns' stay for a re-creation */
    return true;
  bool partial = partial_ok && d->also && c->op == OD_OP_UPDATE && c->old_kind == 'O' &&
                 c->oldtup.ncolumns == c->newtup.ncolumns;
  od_sqlbuf b = {0};
  for (int j = 0; j < ncol; j++) {
    if (j) od_sqlbuf_add(&b, ",");
    bool wrote = !(j < 64 && (skip >> j & 1));
    if (partial && wrote) {
      const od_value *nv = j < c->newtup.ncolumns ? &c->newtup.values[j] : NULL;
      wrote = nv && nv->kind != OD_VALUE_UNCHANGED && !same_value(nv, &c->oldtup.values[j]);
    }
    const char *p;
    size_t len;
    if (wrote)
      od_sqlbuf_addf(&b, "%s:%" PRId64 ":%" PRId64, m->peer, st->ts, st->hlc);
    else if (item_at(d->also, j, &p, &len))
      od_sqlbuf_addn(&b, p, len);
  }
  if (b.oom) {
    od_sqlbuf_free(&b);
    return false;
  }
  free(d->also);
  d->also = b.p;
  return true;
}

bool pgs_mesh_colver_row_set(decision *d, const od_value *vals, int n) {
  int nall = d->r->rel->ncolumns;
  if (!d->row) {
    if (!(d->row = calloc((size_t)(nall ? nall : 1), sizeof *d->row))) return false;
    d->nrow = nall;
  }
  for (int j = 0; j < n && j < d->nrow; j++) {
    if (vals[j].kind == OD_VALUE_UNCHANGED) continue;
    char *t = NULL;
    if (vals[j].kind == OD_VALUE_TEXT && !(t = strndup(vals[j].data, vals[j].len))) return false;
    free(d->row[j]);
    d->row[j] = t;
  }
  return true;
}

bool pgs_mesh_colver_row_json(const decision *d, od_sqlbuf *b) {
  if (!d->row) return false;
  od_sqlbuf_add(b, "{");
  for (int j = 0; j < d->nrow && j < d->r->rel->ncolumns; j++) {
    if (j) od_sqlbuf_add(b, ",");
    od_sqlbuf_json_str(b, d->r->rel->columns[j].name, strlen(d->r->rel->columns[j].name));
    od_sqlbuf_add(b, ":");
    if (d->row[j]) od_sqlbuf_json_str(b, d->row[j], strlen(d->row[j]));
    else od_sqlbuf_add(b, "null");
  }
  od_sqlbuf_add(b, "}");
  return !b->oom;
}
