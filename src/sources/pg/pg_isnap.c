/* pg_isnap.c — the PostgreSQL side of incremental snapshots (od_isnap_ops in odsync/snapshot.h):
 * writing watermark/request messages with pg_logical_emit_message(true, ...) and reading one chunk
 * of a table by keyset pagination (WHERE key > $1 ORDER BY key LIMIT n).
 *
 * Both run on the source instance's ordinary connection (s->meta): every message is its own
 * committed transaction; every read is a short REPEATABLE READ READ ONLY transaction that first
 * reports its snapshot (pg_current_snapshot(): which transactions the read sees, for the pipeline's
 * visibility check) and then runs the chunk's one SELECT under that same snapshot. The only lock
 * taken is the read's AccessShareLock (no LOCK TABLE, no exported snapshot, no slot).
 * Rows are read in text format with the column list of the table's relation (built from the
 * catalog by pg_snapshot.c, the shape the stream's Relation message gives), plus the publication's
 * row filter when it has one.
 * Owns: nothing across calls (results are cleared before returning; rows passed to the callback are
 * valid only during the call). Never touches: the replication stream, sinks, the pipeline.
 * Messages name the server as host:port/dbname, never the DSN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* "xmin:xmax:xip,xip,..." (64-bit ids) -> the stream's 32-bit ids. */
static void parse_visibility(const char *text, od_snap_visibility *vis) {
  char *end;
  memset(vis, 0, sizeof *vis);
  vis->xmin = (uint32_t)strtoull(text, &end, 10);
  if (*end == ':') vis->xmax = (uint32_t)strtoull(end + 1, &end, 10);
  if (*end == ':') end++;
  while (*end >= '0' && *end <= '9') {
    uint32_t x = (uint32_t)strtoull(end, &end, 10);
    if (vis->nxip < OD_VIS_XIP_MAX)
      vis->xip[vis->nxip++] = x;
    else
      vis->xip_overflow = true;
    if (*end == ',') end++;
  }
}

static int read_chunk(pg_source *s, const od_snap_table *t, bool has_after, int64_t after, uint32_t limit,
                      od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx, od_error *err);

static int pg_isnap_read_after(od_source *base, const od_snap_table *t, bool has_after, int64_t after,
                               uint32_t limit, od_snap_visibility *vis, od_snap_rows_fn fn, void *ctx,
                               od_error *err) {
  pg_source *s = (pg_source *)base;
  if (s->meta && PQstatus(s->meta) != CONNECTION_OK) {
    PQfinish(s->meta);
    s->meta = NULL;
  }
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  PGresult *r = od_pg_query(s, s->meta, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err);
  if (!r) return od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  PQclear(r);
  int rc = read_chunk(s, t, has_after, after, limit, vis, fn, ctx, err);
  od_error ignored;
  r = od_pg_query(s, s->meta, rc ? "ROLLBACK" : "COMMIT", 0, NULL, rc ? &ignored : err);
  if (!r && !rc) rc = od_error_prefix(err, "incremental snapshot of %s: ", t->name);
  PQclear(r);
  return rc;
}

static int read_chunk(pg_source *s, const od_snap_table *t, bool has_after, int64_t after, uint32_t limit,
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
  if (t->method != OD_SNAP_INT_KEY || !pt || !pt->key_q)
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: %s has no single integer key column", s->where, t->name);
  size_t need = strlen(pt->cols_q) + strlen(pt->from_q) + 2 * strlen(pt->key_q) +
                (pt->filter ? strlen(pt->filter) : 0) + 128;
  char *sql = malloc(need);
  if (!sql) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  snprintf(sql, need, "SELECT %s FROM %s WHERE %s%s%s%s%s%s ORDER BY %s LIMIT %u", pt->cols_q, pt->from_q,
           has_after ? pt->key_q : "true", has_after ? " > $1::int8" : "", pt->filter ? " AND (" : "",
           pt->filter ? pt->filter : "", pt->filter ? ")" : "", "", pt->key_q, limit);
  char after_txt[32];
  snprintf(after_txt, sizeof after_txt, "%lld", (long long)after);
  const char *p[] = {after_txt};
  PGresult *res = od_pg_query(s, s->meta, sql, has_after ? 1 : 0, p, err);
  free(sql);
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
};
