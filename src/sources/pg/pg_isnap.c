/* pg_isnap.c — the PostgreSQL side of incremental snapshots (od_isnap_ops in odsync/snapshot.h):
 * writing watermark/request messages with pg_logical_emit_message(true, ...), finding the key a
 * table is paged by, and reading one chunk of a table by keyset pagination on that key:
 *   SELECT cols FROM t WHERE (k1, k2, ..) > ($1::type1, $2::type2, ..) ORDER BY k1, k2, .. LIMIT n
 *
 * The key is the index that identifies rows in the stream: the primary key (REPLICA IDENTITY
 * DEFAULT or FULL) or the replica identity index (USING INDEX), in the index's column order, its
 * INCLUDE columns left out. Any type and any number of columns: the previous chunk's last key comes
 * back as text parameters cast to the columns' exact types (format_type), never spliced into the
 * SQL; identifiers are quoted. The row comparison and the ORDER BY both use each type's default
 * btree operator class and each column's own collation (a column reference's implicit collation
 * wins over the parameters' default one), evaluated by the same server: so "after" means exactly
 * "later in the ORDER BY", and the pages neither skip nor repeat a row, whatever the collation
 * (ICU, nondeterministic). A key whose index uses another operator class or collation could order
 * or tell rows apart differently from the index that makes it unique: such tables are refused, as
 * are floating-point keys whose text form is rounded (extra_float_digits), keys not in the
 * publication's column list, tables without a key and tables with REPLICA IDENTITY NOTHING.
 *
 * Messages and reads run on the source instance's ordinary connection (s->meta): every message is
 * its own committed transaction; every read is a short REPEATABLE READ READ ONLY transaction that
 * first reports its snapshot (pg_current_snapshot(): which transactions the read sees, for the
 * pipeline's visibility check) and then runs the chunk's one SELECT under that same snapshot. The
 * only lock taken is the read's AccessShareLock (no LOCK TABLE, no exported snapshot, no slot).
 * Rows are read in text format with the column list of the table's relation (built from the
 * catalog by pg_snapshot.c, the shape the stream's Relation message gives), plus the publication's
 * row filter when it has one. Text values come from the same output functions and the same
 * settings (same DSN and role) as the stream's, which is what lets the pipeline match a read row's
 * key with the keys of streamed changes byte for byte.
 * Owns: the key SQL of pg_snap_table (key_order_q, key_after_q; freed with the table list);
 * nothing across calls otherwise (results are cleared before returning; rows passed to the
 * callback are valid only during the call). Never touches: the replication stream, sinks, the
 * pipeline. Messages name the server as host:port/dbname, never the DSN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "common/sqlbuf.h"
#include "sources/pg/pg_internal.h"

static int pg_isnap_ready(od_source *base, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  const char *p[] = {s->slot};
  PGresult *r = od_pg_query(s, s->meta, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", 1, p, err);
  if (!r) return err->code;
  int n = PQntuples(r);
  PQclear(r);
  if (!n)
    return OD_FAIL(err, OD_ESOURCE, "%s: replication slot %s does not exist yet, so a request written now would "
                   "never reach pipeline %s: run the pipeline once first", s->where, s->slot, s->pipeline);
  return OD_OK;
}

static int pg_isnap_emit(od_source *base, const char *prefix, const char *content, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (s->meta && PQstatus(s->meta) != CONNECTION_OK) {
    PQfinish(s->meta);
    s->meta = NULL;
  }
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  const char *p[] = {prefix, content};
  PGresult *r = od_pg_query(s, s->meta, "SELECT pg_logical_emit_message(true, $1, $2)", 2, p, err);
  if (!r) return od_error_prefix(err, "writing a logical message: ");
  PQclear(r);
  return OD_OK;
}

#define OID_FLOAT4 OD_PGT_FLOAT4 /* common/pg_types.h */
#define OID_FLOAT8 OD_PGT_FLOAT8

static int key_sql_oom(pg_source *s, od_error *err) { return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where); }

/* Floating-point keys round-trip through text only when printed with every digit: PostgreSQL 12+
 * with extra_float_digits >= 1 (the default), older servers with extra_float_digits = 3. */
static int floats_exact(pg_source *s, bool *exact, od_error *err) {
  PGresult *r = od_pg_query(s, s->meta, "SELECT current_setting('extra_float_digits')::int", 0, NULL, err);
  if (!r) return od_error_prefix(err, "reading extra_float_digits: ");
  int efd = atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  *exact = PQserverVersion(s->meta) >= 120000 ? efd >= 1 : efd >= 3;
  return OD_OK;
}

int od_pg_isnap_key(pg_source *s, od_snap_table *t, pg_snap_table *pt, od_error *err) {
  const od_relation *rel = t->rel;
  t->nkey = 0;
  t->no_keyset[0] = '\0';
  if (rel->replica_identity == 'n') {
    snprintf(t->no_keyset, sizeof t->no_keyset, "its REPLICA IDENTITY is NOTHING: the stream carries no key of an "
             "updated or deleted row, so rows changed inside a chunk's window could not be matched to the rows read");
    return OD_OK;
  }
  char oid[16];
  snprintf(oid, sizeof oid, "%u", rel->oid);
  const char *p[] = {oid, rel->replica_identity == 'i' ? "i" : "p"};
  PGresult *r = od_pg_query(
      s, s->meta,
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, oc.opcdefault, "
      "k.coll = a.attcollation FROM pg_index i "
      "CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[]) "
      "WITH ORDINALITY AS k(attnum, opclass, coll, ord) "
      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
      "JOIN pg_opclass oc ON oc.oid = k.opclass "
      "WHERE i.indrelid = $1::oid AND CASE WHEN $2 = 'i' THEN i.indisreplident ELSE i.indisprimary END "
      "ORDER BY k.ord",
      2, p, err);
  if (!r) return od_error_prefix(err, "reading the key of %s: ", t->name);
  /* pg_opclass joins only the key columns: indclass has no entries for INCLUDE columns. */
  int n = PQntuples(r), rc = OD_OK;
  if (n == 0) {
    snprintf(t->no_keyset, sizeof t->no_keyset,
             "it has no primary key%s: rows changed inside a chunk's window could not be matched to the rows read, "
             "and a chunk applied twice would duplicate rows", rel->replica_identity == 'i' ? " (nor a replica "
             "identity index)" : "");
    PQclear(r);
    return OD_OK;
  }
  if (n > OD_SNAP_KEY_MAX) {
    snprintf(t->no_keyset, sizeof t->no_keyset, "its key has %d columns (at most %d)", n, OD_SNAP_KEY_MAX);
    PQclear(r);
    return OD_OK;
  }
  uint16_t cols[OD_SNAP_KEY_MAX] = {0};
  bool has_float = false;
  for (int i = 0; i < n && !t->no_keyset[0]; i++) {
    const char *name = PQgetvalue(r, i, 0);
    int c = -1;
    for (uint16_t j = 0; j < rel->ncolumns && c < 0; j++)
      if (!strcmp(rel->columns[j].name, name)) c = j;
    uint32_t typid = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
    if (c < 0)
      snprintf(t->no_keyset, sizeof t->no_keyset, "its key column %s is not in the publication's column list", name);
    else if (PQgetvalue(r, i, 3)[0] != 't' || PQgetvalue(r, i, 4)[0] != 't')
      snprintf(t->no_keyset, sizeof t->no_keyset, "its key column %s is indexed with another operator class or "
               "collation than the column's own, so key order and key uniqueness could disagree", name);
    else
      cols[i] = (uint16_t)c;
    has_float = has_float || typid == OID_FLOAT4 || typid == OID_FLOAT8;
  }
  bool exact = true;
  if (!t->no_keyset[0] && has_float && (rc = floats_exact(s, &exact, err)) == OD_OK && !exact)
    snprintf(t->no_keyset, sizeof t->no_keyset, "its key has a floating-point column and this connection prints "
             "floats rounded (raise extra_float_digits), so a key could not be told apart from its neighbours");
  if (rc || t->no_keyset[0]) {
    PQclear(r);
    return rc;
  }
  /* "k1", "k2"  and  ("k1", "k2") > ($1::type1, $2::type2). The casts carry no COLLATE: in the row
   * comparison each column's own (implicit) collation wins over the parameter's default one, which
   * is the collation ORDER BY "k1", "k2" sorts by, and both run in the same server with the same
   * default btree operator classes (checked above) — so the cursor follows the read's order exactly,
   * for ICU and nondeterministic collations too. */
  od_sqlbuf order = {0}, after = {0};
  od_sqlbuf_add(&after, "(");
  for (int i = 0; i < n; i++) {
    const char *sep = i ? ", " : "";
    od_sqlbuf_add(&order, sep);
    od_sqlbuf_ident(&order, rel->columns[cols[i]].name);
    od_sqlbuf_add(&after, sep);
    od_sqlbuf_ident(&after, rel->columns[cols[i]].name);
  }
  od_sqlbuf_add(&after, ") > (");
  for (int i = 0; i < n; i++) od_sqlbuf_addf(&after, "%s$%d::%s", i ? ", " : "", i + 1, PQgetvalue(r, i, 1));
  od_sqlbuf_add(&after, ")");
  PQclear(r);
  if (order.oom || after.oom) {
    od_sqlbuf_free(&order);
    od_sqlbuf_free(&after);
    return key_sql_oom(s, err);
  }
  free(pt->key_order_q);
  free(pt->key_after_q);
  pt->key_order_q = order.p; /* the buffers' strings are handed over */
  pt->key_after_q = after.p;
  t->nkey = (uint16_t)n;
  memcpy(t->key_cols, cols, (size_t)n * sizeof *cols);
  return OD_OK;
}

void od_pg_isnap_text_form(pg_source *s, od_snapshot_info *info) {
  const char *ds = s->meta ? PQparameterStatus(s->meta, "DateStyle") : NULL;
  const char *is = s->meta ? PQparameterStatus(s->meta, "IntervalStyle") : NULL;
  const char *tz = s->meta ? PQparameterStatus(s->meta, "TimeZone") : NULL;
  snprintf(info->text_form, sizeof info->text_form, "DateStyle=%s;IntervalStyle=%s;TimeZone=%s", ds ? ds : "",
           is ? is : "", tz ? tz : "");
}

/* What a read saw (stored in od_snap_visibility's opaque bytes): pg_current_snapshot() in the
 * stream's 32-bit transaction ids: x committed before the read iff x precedes xmin, or x precedes xmax
 * and is not in xip. When more than PG_VIS_XIP_MAX were in progress, xip_overflow is set and every x
 * in [xmin, xmax) is taken as not seen. */
#define PG_VIS_XIP_MAX 256
typedef struct pg_vis {
  uint32_t xmin, xmax;
  uint32_t nxip;
  bool xip_overflow;
  uint32_t xip[PG_VIS_XIP_MAX];
} pg_vis;
_Static_assert(sizeof(pg_vis) <= OD_VIS_BYTES, "pg_vis must fit od_snap_visibility");

/* Transaction ids compare modulo 2^32, like PostgreSQL's TransactionIdPrecedes. */
static bool xid_precedes(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }

static bool pg_isnap_saw(const od_snap_visibility *opaque, uint64_t xid) {
  const pg_vis *v = (const pg_vis *)opaque->opaque;
  uint32_t x = (uint32_t)xid;
  if (xid_precedes(x, v->xmin)) return true;
  if (!xid_precedes(x, v->xmax) || v->xip_overflow) return false;
  for (uint32_t i = 0; i < v->nxip; i++)
    if (v->xip[i] == x) return false;
  return true;
}

static bool pg_isnap_settled(const od_snap_visibility *opaque, uint64_t xid) {
  const pg_vis *v = (const pg_vis *)opaque->opaque;
  return xid_precedes((uint32_t)xid, v->xmin);
}

/* "xmin:xmax:xip,xip,..." (64-bit ids) -> the stream's 32-bit ids. */
static void parse_visibility(const char *text, od_snap_visibility *opaque) {
  char *end;
  memset(opaque, 0, sizeof *opaque);
  pg_vis *vis = (pg_vis *)opaque->opaque;
  vis->xmin = (uint32_t)strtoull(text, &end, 10);
  if (*end == ':') vis->xmax = (uint32_t)strtoull(end + 1, &end, 10);
  if (*end == ':') end++;
  while (*end >= '0' && *end <= '9') {
    uint32_t x = (uint32_t)strtoull(end, &end, 10);
    if (vis->nxip < PG_VIS_XIP_MAX)
      vis->xip[vis->nxip++] = x;
    else
      vis->xip_overflow = true;
    if (*end == ',') end++;
  }
}

static int read_chunk(pg_source *s, const od_snap_table *t, const char *const *after, uint32_t limit,
                      od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx, od_error *err);

static int pg_isnap_read_after(od_source *base, const od_snap_table *t, const char *const *after, uint32_t limit,
                               od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (s->meta && PQstatus(s->meta) != CONNECTION_OK) {
    PQfinish(s->meta);
    s->meta = NULL;
  }
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  PGresult *r = od_pg_query(s, s->meta, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err);
  if (!r) return od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  PQclear(r);
  int rc = read_chunk(s, t, after, limit, vis, fn, ctx, err);
  od_error ignored;
  r = od_pg_query(s, s->meta, rc ? "ROLLBACK" : "COMMIT", 0, NULL, rc ? &ignored : err);
  if (!r && !rc) rc = od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  PQclear(r);
  return rc;
}

static int read_chunk(pg_source *s, const od_snap_table *t, const char *const *after, uint32_t limit,
                      od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx, od_error *err) {
  /* The transaction's snapshot is taken by its first statement: this one. */
  PGresult *v = od_pg_query(s, s->meta,
                            PQserverVersion(s->meta) >= 130000 ? "SELECT pg_current_snapshot()::text"
                                                               : "SELECT txid_current_snapshot()::text",
                            0, NULL, err);
  if (!v) return od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  parse_visibility(PQgetvalue(v, 0, 0), vis);
  PQclear(v);
  const pg_snap_table *pt = t->priv;
  if (!t->nkey || !pt || !pt->key_order_q || !pt->key_after_q)
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: %s has no key to page by", s->where, t->name);
  od_sqlbuf sql = {0};
  od_sqlbuf_addf(&sql, "SELECT %s FROM %s WHERE %s", pt->cols_q, pt->from_q, after ? pt->key_after_q : "true");
  if (pt->filter) od_sqlbuf_addf(&sql, " AND (%s)", pt->filter);
  od_sqlbuf_addf(&sql, " ORDER BY %s LIMIT %u", pt->key_order_q, limit);
  if (sql.oom) {
    od_sqlbuf_free(&sql);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  }
  PGresult *res = od_pg_query(s, s->meta, sql.p, after ? t->nkey : 0, after, err);
  od_sqlbuf_free(&sql);
  if (!res) return od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  int n = PQntuples(res);
  uint16_t ncols = t->rel->ncolumns;
  if (PQnfields(res) != ncols) {
    PQclear(res);
    return OD_FAIL(err, OD_EPROTOCOL, "%s: incremental snapshot of %s: %d columns read, %u expected", s->where,
                   t->name, PQnfields(res), ncols);
  }
  od_change *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
  od_value *vals = calloc((size_t)(n ? n : 1) * (ncols ? ncols : 1), sizeof *vals);
  int rc = OD_OK;
  if (!rows || !vals) {
    rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  } else {
    for (int i = 0; i < n; i++) {
      od_value *v = vals + (size_t)i * ncols;
      for (uint16_t c = 0; c < ncols; c++)
        v[c] = PQgetisnull(res, i, c)
                   ? (od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL}
                   : (od_value){.data = PQgetvalue(res, i, c), .len = (uint32_t)PQgetlength(res, i, c),
                                .kind = OD_VALUE_TEXT};
      rows[i] = (od_change){.op = OD_OP_READ, .rel = t->rel, .newtup = {.ncolumns = ncols, .values = v},
                            .index = (uint32_t)i};
    }
    rc = fn(ctx, rows, (size_t)n, err);
  }
  free(rows);
  free(vals);
  PQclear(res);
  return rc;
}

const od_isnap_ops od_pg_isnap_ops = {
    .ready = pg_isnap_ready,
    .emit = pg_isnap_emit,
    .read_after = pg_isnap_read_after,
    .saw = pg_isnap_saw,
    .settled = pg_isnap_settled,
};
