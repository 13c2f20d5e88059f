/* pg_snapshot.c — the PostgreSQL side of the initial snapshot (odsync/snapshot.h): the exported
 * view, the list of captured tables with relations built from the catalog, chunk plans and chunk
 * reads. The pipeline side (which chunks, which sink transactions, marks) is src/core/snapshot.c.
 *
 * The view: when the stream's slot does not exist yet it is created here with an exported
 * snapshot (CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')) on s->repl, which then stays idle
 * until finish() — the exported snapshot lives exactly that long — so the view holds every
 * transaction that commits before the slot's consistent point and the slot streams every one
 * that commits at or after it. When the slot exists, a TEMPORARY slot on a replication
 * connection of its own exports the view instead (its consistent point is reported so the
 * pipeline can drop older changes of tables copied under it).
 * Readers: ordinary connections in BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
 * SET TRANSACTION SNAPSHOT '<view>'. A chunk is one COPY (SELECT ...) TO STDOUT in text format —
 * the same type output functions pgoutput uses, so a row read here equals the stream's image;
 * rows stream without a round trip per batch (pg_copy_text.c undoes COPY's escapes in place).
 * When the sink takes binary values (read(..., binary)), the COPY is (FORMAT binary) and
 * pg_copy_binary.c splits its rows: the types' send form, passed on untouched.
 *
 * A partitioned root (published via the root) with a single integer key is cut by key ranges like
 * any table (they span partitions); otherwise by its leaf partitions (OD_SNAP_PARTITION): chunk i is
 * COPY (SELECT ... FROM ONLY <leaf i>), the leaves listed once with the table list.
 *
 * The table list also carries, for incremental snapshots, each table's key to page by
 * (od_snap_table.nkey/key_cols, filled by pg_isnap.c's od_pg_isnap_key) and the connection's text
 * settings (od_snapshot_info.text_form).
 * Owns: struct pg_snap (tables, their od_relation blocks, quoted SQL fragments, the temporary
 * slot's connection), freed by od_pg_snapshot_free() when the source closes; each reader's
 * connection and row buffers (reused for every batch; the rows themselves are libpq's COPY row
 * buffers, freed once their batch is delivered).
 * Never touches: sinks, the pipeline, the replication stream. Messages name the server as
 * host:port/dbname, never the DSN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pg_types.h"
#include "core/log.h"
#include "sources/pg/pg_copy_binary.h"
#include "sources/pg/pg_copy_text.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_plugin.h"

#define BATCH_ROWS 2000           /* rows per call of the rows callback */
#define BATCH_BYTES (8u << 20)    /* ... or fewer when they hold this much text */
#define OID_INT8 OD_PGT_INT8 /* common/pg_types.h */
#define OID_INT2 OD_PGT_INT2
#define OID_INT4 OD_PGT_INT4


typedef struct pg_snap {
  od_snap_table *tables;
  pg_snap_table *priv;
  int ntables;
  PGconn *tmp_repl;   /* the temporary slot's connection (its view), or NULL */
  char view[128];     /* exported snapshot name, "" when none */
  char binary_format[32]; /* "postgresql-<major>" of the source server */
  struct pg_snap *older;  /* the states of earlier prepare() calls of this session (several sinks
                             each take a snapshot): their relations must outlive the session, since
                             the sinks that copied under them keep pointing at them */
} pg_snap;

struct od_snap_reader {
  pg_source *s;
  PGconn *conn;
  od_change *rows;
  od_value *values;
  char **bufs; /* libpq's row buffers of the batch being built (PQfreemem) */
  size_t rows_cap, values_cap;
  char *sql;
  size_t sql_cap;
};

static void free_snap(pg_snap *p) {
  if (!p) return;
  free_snap(p->older);
  for (int i = 0; i < p->ntables; i++) {
    free(p->tables[i].rel);
    free(p->priv[i].from_q);
    free(p->priv[i].cols_q);
    free(p->priv[i].cols_bin_q);
    free(p->priv[i].key_q);
    free(p->priv[i].key_order_q);
    free(p->priv[i].key_after_q);
    free(p->priv[i].filter);
    for (uint32_t l = 0; l < p->priv[i].nleaves; l++) free(p->priv[i].leaves_q[l]);
    free(p->priv[i].leaves_q);
  }
  free(p->tables);
  free(p->priv);
  PQfinish(p->tmp_repl);
  free(p);
}

void od_pg_snapshot_free(pg_source *s) {
  free_snap(s->snap);
  s->snap = NULL;
}

static void pg_snap_config(od_source *base, od_snapshot_config *out) { *out = ((pg_source *)base)->snap_cfg; }

static char *quote_ident(PGconn *c, const char *name) {
  char *q = PQescapeIdentifier(c, name, strlen(name));
  char *dup = q ? strdup(q) : NULL;
  PQfreemem(q);
  return dup;
}

/* The relation the stream's Relation message would give (plus what pg_catalog's od_pg_fill_keys
 * adds): columns in attnum order without dropped or generated ones (and only the publication's
 * column list, PG 15+), key flags from the replica identity (FULL: the primary key). */
static int build_relation(pg_source *s, od_snap_table *t, pg_snap_table *pt, uint32_t oid, const char *schema,
                          const char *name, char ri, const char *attnames, od_error *err) {
  char oidtxt[16];
  snprintf(oidtxt, sizeof oidtxt, "%u", oid);
  const char *p[] = {oidtxt, attnames};
  bool v11 = PQserverVersion(s->meta) >= 110000;
  char sql[1000];
  snprintf(sql, sizeof sql,
           "SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), a.attnum, "
           "COALESCE(a.attnum = ANY(%s), false), COALESCE(a.attnum = ANY(%s), false) "
           "FROM pg_attribute a LEFT JOIN pg_index pk ON pk.indrelid = a.attrelid AND pk.indisprimary "
           "LEFT JOIN pg_index ri ON ri.indrelid = a.attrelid AND ri.indisreplident "
           "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped %s "
           "AND ($2::text IS NULL OR a.attname = ANY($2::name[])) ORDER BY a.attnum",
           /* An index's INCLUDE columns are not part of the key (pgoutput leaves them out too). */
           v11 ? "(pk.indkey::int2[])[0:pk.indnkeyatts - 1]" : "pk.indkey",
           v11 ? "(ri.indkey::int2[])[0:ri.indnkeyatts - 1]" : "ri.indkey",
           PQserverVersion(s->meta) >= 120000 ? "AND a.attgenerated = ''" : "");
  PGresult *r = od_pg_query(s, s->meta, sql, 2, p, err);
  if (!r) return od_error_prefix(err, "reading the columns of %s.%s: ", schema, name);
  int n = PQntuples(r);
  size_t size = sizeof(od_relation) + (size_t)n * sizeof(od_column) + strlen(schema) + strlen(name) + 2;
  for (int i = 0; i < n; i++) size += strlen(PQgetvalue(r, i, 0)) + 1;
  od_relation *rel = calloc(1, size);
  if (!rel) {
    PQclear(r);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory for the columns of %s.%s", s->where, schema, name);
  }
  rel->columns = (od_column *)(rel + 1);
  char *str = (char *)(rel->columns + n);
  rel->schema = strcpy(str, schema);
  str += strlen(schema) + 1;
  rel->name = strcpy(str, name);
  str += strlen(name) + 1;
  rel->oid = oid;
  rel->replica_identity = ri;
  rel->ncolumns = (uint16_t)n;
  rel->version = 1;
  bool any_key = false;
  int nkey = 0, key_col = -1;
  size_t cols_len = 0;
  for (int i = 0; i < n; i++) {
    od_column *c = &rel->columns[i];
    c->name = strcpy(str, PQgetvalue(r, i, 0));
    str += strlen(c->name) + 1;
    c->type_oid = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10);
    c->typmod = (int32_t)atoi(PQgetvalue(r, i, 2));
    snprintf(c->type_name, sizeof c->type_name, "%s", PQgetvalue(r, i, 3));
    c->attnum = (int16_t)atoi(PQgetvalue(r, i, 4));
    bool in_pk = PQgetvalue(r, i, 5)[0] == 't', in_ri = PQgetvalue(r, i, 6)[0] == 't';
    c->key = (ri == 'd' || ri == 'f') ? in_pk : ri == 'i' ? in_ri : false;
    if (c->key) {
      any_key = true;
      nkey++;
      key_col = i;
    }
    cols_len += strlen(c->name) * 2 + 10;
  }
  rel->has_primary_key = any_key && (ri == 'd' || ri == 'i' || ri == 'f');
  od_pg_set_identity(rel);
  PQclear(r);
  t->rel = rel;
  /* SQL fragments, quoted once. */
  pt->cols_q = malloc(cols_len + 1);
  pt->cols_bin_q = malloc(cols_len + 1);
  if (!pt->cols_q || !pt->cols_bin_q) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  pt->cols_q[0] = pt->cols_bin_q[0] = '\0';
  size_t o = 0, ob = 0;
  for (int i = 0; i < n; i++) {
    char *q = PQescapeIdentifier(s->meta, rel->columns[i].name, strlen(rel->columns[i].name));
    if (!q) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
    o += (size_t)snprintf(pt->cols_q + o, cols_len + 1 - o, "%s%s", i ? ", " : "", q);
    /* Binary reads carry user-defined types (enums, domains, composites, extension types) as
     * text, the form every sink stores them in (snapshot.h). */
    ob += (size_t)snprintf(pt->cols_bin_q + ob, cols_len + 1 - ob, "%s%s%s", i ? ", " : "", q,
                           rel->columns[i].type_oid >= OD_PG_FIRST_USER_OID ? "::text" : "");
    PQfreemem(q);
  }
  char *qs = quote_ident(s->meta, schema), *qt = quote_ident(s->meta, name);
  if (qs && qt && (pt->from_q = malloc(strlen(qs) + strlen(qt) + 2)))
    sprintf(pt->from_q, "%s.%s", qs, qt);
  free(qs);
  free(qt);
  if (!pt->from_q) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  uint32_t kt = nkey == 1 ? rel->columns[key_col].type_oid : 0;
  if (kt == OID_INT2 || kt == OID_INT4 || kt == OID_INT8) {
    t->method = OD_SNAP_INT_KEY;
    if (!(pt->key_q = quote_ident(s->meta, rel->columns[key_col].name)))
      return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  }
  return OD_OK;
}

/* A partitioned root not cut by an integer key is cut by its leaf partitions
 * (pg_partition_tree, PostgreSQL 12+; by schema and name, so the order is stable): t->method becomes
 * OD_SNAP_PARTITION and pt->leaves_q their quoted names, and the leaves' statistics add up to the
 * estimate. No leaves (a root without partitions): it stays one chunk. */
static int list_leaves(pg_source *s, od_snap_table *t, pg_snap_table *pt, const char *oid, od_error *err) {
  const char *p[] = {oid};
  PGresult *r = od_pg_query(s, s->meta,
                            "SELECT n.nspname, c.relname, c.reltuples::float8 FROM pg_partition_tree($1::oid::regclass) pt "
                            "JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE pt.isleaf ORDER BY 1, 2",
                            1, p, err);
  if (!r) return od_error_prefix(err, "listing the partitions of %s: ", t->name);
  int n = PQntuples(r);
  if (n == 0) {
    PQclear(r);
    return OD_OK;
  }
  if (!(pt->leaves_q = calloc((size_t)n, sizeof *pt->leaves_q))) {
    PQclear(r);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  }
  double rows = 0;
  for (int i = 0; i < n; i++) {
    char *qs = quote_ident(s->meta, PQgetvalue(r, i, 0)), *qt = quote_ident(s->meta, PQgetvalue(r, i, 1));
    const char *ls = PQgetvalue(r, i, 0), *ln = PQgetvalue(r, i, 1);
    char *q = qs && qt ? malloc(strlen(qs) + strlen(qt) + strlen(ls) + strlen(ln) + 4) : NULL;
    if (q) sprintf(q, "%s.%s%c%s.%s", qs, qt, '\0', ls, ln); /* quoted, then the plain name for messages */
    free(qs);
    free(qt);
    if (!q) {
      PQclear(r);
      return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
    }
    pt->leaves_q[pt->nleaves++] = q;
    double lt = atof(PQgetvalue(r, i, 2));
    if (lt > 0) rows += lt;
  }
  PQclear(r);
  t->method = OD_SNAP_PARTITION;
  if (rows > 0) t->estimated_rows = (uint64_t)rows;
  return OD_OK;
}

static int list_tables(pg_source *s, pg_snap *snap, od_error *err) {
  bool v15 = PQserverVersion(s->meta) >= 150000;
  char sql[900];
  snprintf(sql, sizeof sql,
           "SELECT c.oid, n.nspname, c.relname, c.relreplident, c.relkind, c.reltuples::float8, "
           "c.relpages::int8, %s "
           "FROM pg_publication_tables pt JOIN pg_namespace n ON n.nspname = pt.schemaname "
           "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
           "WHERE pt.pubname = $1 ORDER BY 2, 3",
           v15 ? "pt.attnames::text, pt.rowfilter" : "NULL::text, NULL::text");
  const char *p[] = {s->publication};
  PGresult *r = od_pg_query(s, s->meta, sql, 1, p, err);
  if (!r) return od_error_prefix(err, "listing the tables of publication %s: ", s->publication);
  int n = PQntuples(r);
  snap->tables = calloc((size_t)(n ? n : 1), sizeof *snap->tables);
  snap->priv = calloc((size_t)(n ? n : 1), sizeof *snap->priv);
  if (!snap->tables || !snap->priv) {
    PQclear(r);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  }
  int rc = OD_OK;
  for (int i = 0; i < n && rc == OD_OK; i++) {
    od_snap_table *t = &snap->tables[i];
    pg_snap_table *pt = &snap->priv[i];
    snap->ntables = i + 1;
    t->priv = pt;
    const char *schema = PQgetvalue(r, i, 1), *name = PQgetvalue(r, i, 2);
    snprintf(t->name, sizeof t->name, "%s.%s", schema, name);
    t->method = PQgetvalue(r, i, 4)[0] == 'r' ? OD_SNAP_CTID : OD_SNAP_WHOLE;
    pt->reltuples = atof(PQgetvalue(r, i, 5));
    pt->relpages = atoll(PQgetvalue(r, i, 6));
    t->estimated_rows = pt->reltuples > 0 ? (uint64_t)pt->reltuples : 0;
    if (!PQgetisnull(r, i, 8) && !(pt->filter = strdup(PQgetvalue(r, i, 8))))
      rc = OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
    if (!rc)
      rc = build_relation(s, t, pt, (uint32_t)strtoul(PQgetvalue(r, i, 0), NULL, 10), schema, name,
                          PQgetvalue(r, i, 3)[0], PQgetisnull(r, i, 7) ? NULL : PQgetvalue(r, i, 7), err);
    if (!rc) rc = od_pg_isnap_key(s, t, pt, err);
    /* A single integer key cuts a partitioned root by key ranges (they span partitions); else its leaves. */
    if (!rc && PQgetvalue(r, i, 4)[0] == 'p' && t->method != OD_SNAP_INT_KEY && PQserverVersion(s->meta) >= 120000)
      rc = list_leaves(s, t, pt, PQgetvalue(r, i, 0), err);
  }
  PQclear(r);
  return rc;
}

/* The stream's slot: exists (confirmed position) or not; fails when it cannot be used. */
static int slot_state(pg_source *s, bool *exists, od_lsn *confirmed, od_error *err) {
  const char *p[] = {s->slot};
  PGresult *r = od_pg_query(s, s->meta,
                            "SELECT plugin, database = current_database(), active, active_pid, "
                            "confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
                            1, p, err);
  if (!r) return err->code;
  int rc = OD_OK;
  *exists = PQntuples(r) > 0;
  if (!*exists) {
  } else if (!od_pg_plugin_known(PQgetvalue(r, 0, 0)) || PQgetvalue(r, 0, 1)[0] != 't') {
    rc = OD_FAIL(err, OD_ESOURCE, "%s: replication slot %s exists but is not a pgoutput slot of this database; "
                 "choose another source.slot or drop it", s->where, s->slot);
  } else if (PQgetvalue(r, 0, 2)[0] == 't') {
    rc = OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process (pid %s): "
                       "is another odsync running pipeline %s?", s->where, s->slot, PQgetvalue(r, 0, 3), s->pipeline);
  } else {
    od_pg_parse_lsn(PQgetvalue(r, 0, 4), confirmed);
    od_pg_plugin_use(s, PQgetvalue(r, 0, 0), false);
  }
  PQclear(r);
  return rc;
}

static int pg_snap_prepare(od_source *base, bool export_view, od_snapshot_info *out, od_error *err) {
  pg_source *s = (pg_source *)base;
  memset(out, 0, sizeof *out);
  pg_snap *snap = calloc(1, sizeof *snap);
  if (!snap) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  /* An earlier state of this session is kept, not freed: relations handed out stay valid until the
   * source closes (odsync/snapshot.h), whichever sink copied under them. */
  if (s->snap) {
    PQfinish(s->snap->tmp_repl);
    s->snap->tmp_repl = NULL;
  }
  snap->older = s->snap;
  s->snap = snap;
  int rc = od_pg_prepare_publication(s, err);
  if (rc) return rc;
  if (export_view) {
    bool exists = false;
    od_lsn slot_point = 0, point = 0;
    if ((rc = slot_state(s, &exists, &slot_point, err))) return rc;
    if (!exists) {
      if (!s->repl && !(s->repl = od_pg_connect(s, true, err))) return err->code;
      if ((rc = od_pg_create_slot(s, s->repl, s->slot, false, snap->view, sizeof snap->view, &point, err)))
        return rc;
      out->slot_created = true;
      slot_point = point;
      od_info("%s: created replication slot %s at " OD_LSN_FMT " exporting snapshot %s", s->where, s->slot,
              OD_LSN_ARGS(point), snap->view);
    } else {
      char tmp[64];
      snprintf(tmp, sizeof tmp, "%.40s_snap_%ld", s->slot, (long)getpid());
      if (!(snap->tmp_repl = od_pg_connect(s, true, err))) return err->code;
      if ((rc = od_pg_create_slot(s, snap->tmp_repl, tmp, true, snap->view, sizeof snap->view, &point, err)))
        return rc;
      od_info("%s: slot %s exists (confirmed up to " OD_LSN_FMT "); temporary slot %s exports snapshot %s at "
              OD_LSN_FMT, s->where, s->slot, OD_LSN_ARGS(slot_point), tmp, snap->view, OD_LSN_ARGS(point));
    }
    out->slot_point = od_pg_pos(slot_point);
    out->point = od_pg_pos(point);
  }
  if ((rc = list_tables(s, snap, err))) return rc;
  out->tables = snap->tables;
  out->ntables = snap->ntables;
  /* Binary values are the types' send form, which a server of the same major version receives
   * unchanged (built-in type OIDs are fixed). */
  snprintf(snap->binary_format, sizeof snap->binary_format, "postgresql-%d", PQserverVersion(s->meta) / 10000);
  out->binary_format = snap->binary_format;
  od_pg_isnap_text_form(s, out);
  return OD_OK;
}

static void pg_snap_finish(od_source *base) {
  pg_source *s = (pg_source *)base;
  if (s->snap) {
    PQfinish(s->snap->tmp_repl);
    s->snap->tmp_repl = NULL;
    s->snap->view[0] = '\0';
  }
  PQfinish(s->repl); /* releases the exported snapshot; start() connects again */
  PQfinish(s->meta);
  s->repl = s->meta = NULL;
}

/* ---- readers ---------------------------------------------------------------------------------- */

static void pg_reader_close(od_snap_reader *r) {
  if (!r) return;
  PQfinish(r->conn);
  free(r->rows);
  free(r->values);
  free(r->bufs);
  free(r->sql);
  free(r);
}

/* The connection's last error as an od_error; a lost connection is retriable. */
static int reader_error(od_snap_reader *r, const char *what, od_error *err) {
  char msg[400];
  snprintf(msg, sizeof msg, "%s", PQerrorMessage(r->conn));
  msg[strcspn(msg, "\n")] = '\0';
  bool lost = PQstatus(r->conn) != CONNECTION_OK;
  return od_error_set(err, lost ? OD_ECONNECT : OD_ESOURCE, lost, __FILE__, __LINE__, "%s: snapshot: %s: %s",
                      r->s->where, what, msg);
}

/* Run a statement on the reader's connection. */
static int reader_exec(od_snap_reader *r, const char *sql, PGresult **out, const char *what, od_error *err) {
  PGresult *res = PQexec(r->conn, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    if (out)
      *out = res;
    else
      PQclear(res);
    return OD_OK;
  }
  PQclear(res);
  return reader_error(r, what, err);
}

static int pg_reader_open(od_source *base, od_snap_reader **out, od_error *err) {
  pg_source *s = (pg_source *)base;
  if (!s->snap || !s->snap->view[0]) return OD_FAIL(err, OD_EINVAL, "%s: snapshot: no exported view", s->where);
  od_snap_reader *r = calloc(1, sizeof *r);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", s->where);
  r->s = s;
  if (!(r->conn = od_pg_connect(s, false, err))) {
    free(r);
    return err->code;
  }
  char sql[256];
  snprintf(sql, sizeof sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '%s'",
           s->snap->view);
  int rc = reader_exec(r, sql, NULL, "joining the exported snapshot", err);
  if (rc) {
    err->retriable = true; /* the view went away with its connection: a new session exports another */
    pg_reader_close(r);
    return rc;
  }
  *out = r;
  return OD_OK;
}

static int sql_reserve(od_snap_reader *r, size_t need, od_error *err) {
  if (need <= r->sql_cap) return OD_OK;
  char *p = realloc(r->sql, need);
  if (!p) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", r->s->where);
  r->sql = p;
  r->sql_cap = need;
  return OD_OK;
}

static int pg_snap_plan(od_snap_reader *r, const od_snap_table *t, uint32_t chunk_rows, od_snap_plan *out,
                        od_error *err) {
  const pg_snap_table *pt = t->priv;
  memset(out, 0, sizeof *out);
  out->method = t->method;
  out->nchunks = 1;
  out->step = 1;
  PGresult *res = NULL;
  int rc = sql_reserve(r, strlen(pt->from_q) + (pt->key_q ? 2 * strlen(pt->key_q) : 0) + 256, err);
  if (rc) return rc;
  uint64_t est = t->estimated_rows;
  if (t->method == OD_SNAP_INT_KEY) {
    sprintf(r->sql, "SELECT min(%s)::int8, max(%s)::int8 FROM %s", pt->key_q, pt->key_q, pt->from_q);
    if ((rc = reader_exec(r, r->sql, &res, "reading the key range", err))) return rc;
    if (!PQgetisnull(res, 0, 0)) {
      int64_t lo = atoll(PQgetvalue(res, 0, 0)), hi = atoll(PQgetvalue(res, 0, 1));
      uint64_t span = (uint64_t)hi - (uint64_t)lo; /* number of key values - 1 */
      if (!est) est = span + 1 ? span + 1 : UINT64_MAX;
      uint64_t n = (est + chunk_rows - 1) / chunk_rows;
      if (n < 1) n = 1;
      if (n > 1000000) n = 1000000;
      if (span < UINT64_MAX && n > span + 1) n = span + 1;
      out->lo = lo;
      out->nchunks = (uint32_t)n;
      out->step = (int64_t)(span / n + 1);
    }
    PQclear(res);
  } else if (t->method == OD_SNAP_PARTITION) {
    out->nchunks = pt->nleaves;
    size_t len = 0;
    char names[600];
    names[0] = '\0';
    for (uint32_t i = 0; i < pt->nleaves && len < sizeof names - 1; i++)
      len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                              pt->leaves_q[i] + strlen(pt->leaves_q[i]) + 1);
    if (len >= sizeof names - 1) snprintf(names + sizeof names - 5, 5, "...");
    od_info("snapshot: %s: its %u leaf partitions, one chunk each: %s", t->name, pt->nleaves, names);
  } else if (t->method == OD_SNAP_CTID) {
    /* from_q is a quoted identifier: quote it again as a literal for regclass. */
    char *lit = PQescapeLiteral(r->conn, pt->from_q, strlen(pt->from_q));
    if (!lit) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", r->s->where);
    sprintf(r->sql, "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int8", lit);
    PQfreemem(lit);
    if ((rc = reader_exec(r, r->sql, &res, "reading the table size", err))) return rc;
    int64_t pages = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    double per_page = pt->reltuples > 0 && pt->relpages > 0 ? pt->reltuples / (double)pt->relpages : 0;
    if (per_page <= 0 && pages > 0) { /* no statistics: count the first pages */
      int64_t sample = pages < 8 ? pages : 8;
      sprintf(r->sql, "SELECT count(*) FROM %s WHERE ctid < '(%lld,0)'::tid", pt->from_q, (long long)sample);
      if ((rc = reader_exec(r, r->sql, &res, "sampling the table", err))) return rc;
      per_page = atof(PQgetvalue(res, 0, 0)) / (double)sample;
      PQclear(res);
    }
    if (per_page < 1) per_page = 1;
    if (!est) est = (uint64_t)(per_page * (double)pages);
    int64_t ppc = (int64_t)((double)chunk_rows / per_page);
    if (ppc < 1) ppc = 1;
    int64_t n = pages > 0 ? (pages + ppc - 1) / ppc : 1;
    if (n > 1000000) {
      n = 1000000;
      ppc = (pages + n - 1) / n;
    }
    out->nchunks = (uint32_t)n;
    out->step = ppc;
  }
  out->estimated_rows = est;
  return OD_OK;
}

static size_t pt_longest_leaf(const pg_snap_table *pt) {
  size_t m = 0;
  for (uint32_t i = 0; i < pt->nleaves; i++)
    if (strlen(pt->leaves_q[i]) > m) m = strlen(pt->leaves_q[i]);
  return m;
}

/* WHERE clause of chunk `i` (without the leading WHERE), "" for the whole table. */
static void chunk_where(const od_snap_table *t, const od_snap_plan *p, uint32_t i, char *out, size_t cap) {
  const pg_snap_table *pt = t->priv;
  out[0] = '\0';
  if (p->nchunks <= 1 || p->method == OD_SNAP_WHOLE || p->method == OD_SNAP_PARTITION) return;
  size_t o = 0;
  bool first = i == 0, last = i + 1 >= p->nchunks;
  if (p->method == OD_SNAP_INT_KEY) {
    int64_t a = (int64_t)((uint64_t)p->lo + (uint64_t)i * (uint64_t)p->step);
    int64_t b = (int64_t)((uint64_t)p->lo + (uint64_t)(i + 1) * (uint64_t)p->step);
    if (!first) o += (size_t)snprintf(out + o, cap - o, "%s >= %lld", pt->key_q, (long long)a);
    if (!last) snprintf(out + o, cap - o, "%s%s < %lld", first ? "" : " AND ", pt->key_q, (long long)b);
  } else {
    long long a = (long long)i * p->step, b = (long long)(i + 1) * p->step;
    if (!first) o += (size_t)snprintf(out + o, cap - o, "ctid >= '(%lld,0)'::tid", a);
    if (!last) snprintf(out + o, cap - o, "%sctid < '(%lld,0)'::tid", first ? "" : " AND ", b);
  }
}

/* Room for a batch of BATCH_ROWS rows of ncols values. */
static int batch_reserve(od_snap_reader *r, uint16_t ncols, od_error *err) {
  if (!r->rows) {
    r->rows = malloc(BATCH_ROWS * sizeof *r->rows);
    r->bufs = malloc(BATCH_ROWS * sizeof *r->bufs);
    if (!r->rows || !r->bufs) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", r->s->where);
    r->rows_cap = BATCH_ROWS;
  }
  size_t nv = (size_t)BATCH_ROWS * (ncols ? ncols : 1);
  if (nv > r->values_cap) {
    od_value *v = realloc(r->values, nv * sizeof *v);
    if (!v) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", r->s->where);
    r->values = v;
    r->values_cap = nv;
  }
  return OD_OK;
}

static void free_bufs(od_snap_reader *r, size_t n) {
  for (size_t i = 0; i < n; i++) PQfreemem(r->bufs[i]);
}

/* A chunk's COPY ended early (error, stop): the connection is mid-COPY and its transaction cannot
 * go on, so drop it; the reader fails from now on (readers are not reused after a failed chunk). */
static void abandon(od_snap_reader *r) {
  PQfinish(r->conn);
  r->conn = NULL;
}

static int pg_snap_read(od_snap_reader *r, const od_snap_table *t, const od_snap_plan *plan, uint32_t chunk,
                        bool binary, od_snap_rows_fn fn, void *ctx, od_error *err) {
  const pg_snap_table *pt = t->priv;
  uint16_t ncols = t->rel->ncolumns;
  char where[640];
  chunk_where(t, plan, chunk, where, sizeof where);
  size_t need = strlen(pt->cols_bin_q) + strlen(pt->from_q) + pt_longest_leaf(pt) + strlen(where) + (pt->filter ? strlen(pt->filter) : 0) + 128;
  int rc = sql_reserve(r, need, err);
  if (!rc) rc = batch_reserve(r, ncols, err);
  if (rc) return rc;
  if (!r->conn) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: snapshot of %s: the reader's connection was dropped "
                                     "after an earlier failure", r->s->where, t->name);
  /* A leaf partition's chunk reads that leaf alone (ONLY: not its own partitions, it has none). The
   * root's column names and row filter hold for the leaf, whose columns have the same names. */
  const char *from = pt->from_q, *only = "";
  if (plan->method == OD_SNAP_PARTITION) {
    if (chunk >= pt->nleaves)
      return OD_FAIL(err, OD_EINVAL, "%s: snapshot of %s: chunk %u of a table of %u leaf partitions", r->s->where,
                     t->name, chunk, pt->nleaves);
    from = pt->leaves_q[chunk];
    only = "ONLY ";
  }
  bool w = where[0] != '\0';
  snprintf(r->sql, r->sql_cap, "COPY (SELECT %s FROM %s%s%s%s%s%s%s%s) TO STDOUT%s",
           binary ? pt->cols_bin_q : pt->cols_q, only, from,
           (w || pt->filter) ? " WHERE " : "", w ? where : "", (w && pt->filter) ? " AND " : "",
           pt->filter ? "(" : "", pt->filter ? pt->filter : "", pt->filter ? ")" : "",
           binary ? " (FORMAT binary)" : "");
  PGresult *res = PQexec(r->conn, r->sql);
  if (PQresultStatus(res) != PGRES_COPY_OUT) {
    PQclear(res);
    reader_error(r, "reading rows", err);
    return od_error_prefix(err, "%s: ", t->name);
  }
  PQclear(res);
  size_t n = 0, bytes = 0;
  bool header = binary; /* a binary stream starts with the file header */
  for (;;) {
    char *row;
    int len = PQgetCopyData(r->conn, &row, 0);
    if (len < 0) {
      if (len == -1 && n) rc = fn(ctx, r->rows, n, err); /* COPY done: the last batch */
      free_bufs(r, n);
      n = 0;
      if (len == -2 || rc) break;
      /* COPY's own result (an error that came after the last row), then none */
      res = PQgetResult(r->conn);
      bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
      PQclear(res);
      while ((res = PQgetResult(r->conn))) PQclear(res);
      if (!ok) {
        len = -2;
        break;
      }
      return OD_OK;
    }
    od_value *vals = r->values + n * ncols;
    int nf = binary ? od_pg_copy_split_binary(row, (size_t)len, &header, vals, ncols)
                    : od_pg_copy_split(row, (size_t)len, vals, ncols);
    if (binary && nf == 0) { /* the trailer; the end of the COPY follows */
      PQfreemem(row);
      continue;
    }
    r->bufs[n] = row;
    r->rows[n] = (od_change){.op = OD_OP_READ, .rel = t->rel, .newtup = {.ncolumns = ncols, .values = vals},
                             .index = (uint32_t)n};
    n++;
    bytes += (size_t)len;
    if (nf != ncols) {
      if (nf < 0)
        rc = OD_FAIL(err, OD_EPROTOCOL, "%s: snapshot of %s: a COPY row %s", r->s->where, t->name,
                     binary ? "is malformed (binary format)" : "ends inside an escape");
      else
        rc = OD_FAIL(err, OD_EPROTOCOL, "%s: snapshot of %s: a COPY row has %d fields, %u expected", r->s->where,
                     t->name, nf, ncols);
      free_bufs(r, n);
      break;
    }
    if (n == BATCH_ROWS || bytes >= BATCH_BYTES) {
      rc = fn(ctx, r->rows, n, err);
      free_bufs(r, n);
      n = 0;
      bytes = 0;
      if (rc) break;
    }
  }
  if (!rc) { /* -2: the server or the connection failed */
    reader_error(r, "reading rows", err);
    rc = od_error_prefix(err, "%s: ", t->name);
  }
  abandon(r);
  return rc;
}

const od_snapshot_ops od_pg_snapshot_ops = {
    .config = pg_snap_config,
    .prepare = pg_snap_prepare,
    .reader_open = pg_reader_open,
    .plan = pg_snap_plan,
    .read = pg_snap_read,
    .reader_close = pg_reader_close,
    .finish = pg_snap_finish,
    .incremental = &od_pg_isnap_ops,
};
