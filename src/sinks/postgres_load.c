/* sinks/postgres_load.c — bulk loading of initial-snapshot chunks with COPY (od_sink_ops.load_*).
 *
 * Owns: the COPY ... FROM STDIN in progress on the sink's connection (pgs_sink.copy_*: the table,
 * the format and the buffer of encoded rows), the decision whether a table takes the source's
 * binary values as they are, and the deferred primary key: a table created for a load is created
 * without it (pgs_sink.defer_key, read by make_table) and gets it from load_finish, built once
 * from the loaded rows instead of maintained row by row.
 * A COPY stays open across load() calls of the same table and ends (its result read) before any
 * other statement on the connection: pgs_exec() (every synchronous statement) and the two
 * pipeline-mode entry points, apply and commit, call pgs_load_end() first. A duplicate key (the
 * table held rows before odsync) surfaces as OD_EDUPLICATE.
 * Never touches: marks, the checkpoint, pipeline mode (a COPY runs outside it), the source.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "core/log.h"
#include "core/clock.h"
#include "sinks/postgres_internal.h"

#define COPY_FLUSH_BYTES (256u << 10) /* hand encoded rows to libpq in pieces of about this size */
#define FIRST_USER_OID 16384          /* FirstNormalObjectId: OIDs below are built in, the same everywhere */
#define OID_TEXT OD_PGT_TEXT /* common/pg_types.h */

static int oom(pgs_sink *s, od_error *err) { return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where); }

static bool reserve(pgs_sink *s, size_t extra) {
  if (s->copy_len + extra <= s->copy_cap) return true;
  size_t cap = s->copy_cap ? s->copy_cap : COPY_FLUSH_BYTES + 4096;
  while (cap < s->copy_len + extra) cap *= 2;
  char *p = realloc(s->copy_buf, cap);
  if (!p) return false;
  s->copy_buf = p;
  s->copy_cap = cap;
  return true;
}

static void put16(char *p, int16_t v) {
  uint16_t n = htons((uint16_t)v);
  memcpy(p, &n, 2);
}

static void put32(char *p, int32_t v) {
  uint32_t n = htonl((uint32_t)v);
  memcpy(p, &n, 4);
}

/* Read the results of the COPY just ended; a unique violation becomes OD_EDUPLICATE. */
static int copy_result(pgs_sink *s, const char *table, od_error *err) {
  int rc = OD_OK;
  PGresult *res;
  while ((res = PQgetResult(s->conn)) != NULL) {
    if (PQresultStatus(res) == PGRES_COPY_IN) { /* still ours to end: end it as failed */
      PQclear(res);
      if (rc == OD_OK) rc = pgs_fail(s, table, "sending rows (COPY)", NULL, err);
      if (PQputCopyEnd(s->conn, "odsync: COPY abandoned") != 1) break;
      continue;
    }
    if (rc == OD_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
      rc = pgs_fail(s, table, "loading snapshot rows (COPY)", res, err);
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      if (state && strcmp(state, "23505") == 0) {
        err->code = rc = OD_EDUPLICATE;
        err->retriable = false;
      }
    }
    PQclear(res);
  }
  return rc;
}

static int send_buf(pgs_sink *s, od_error *err) {
  if (!s->copy_len) return OD_OK;
  if (PQputCopyData(s->conn, s->copy_buf, (int)s->copy_len) == 1) {
    s->copy_len = 0;
    return OD_OK;
  }
  /* The server may have ended the COPY early with an error (a duplicate key found in rows sent
   * before): report that error, classified like one found at the end. */
  const pg_rel *r = s->copy_rel;
  s->copy_rel = NULL;
  s->copy_len = 0;
  s->copy_rows = 0;
  int rc = copy_result(s, r->target, err);
  return rc ? rc : pgs_fail(s, r->target, "sending rows (COPY)", NULL, err);
}

int pgs_load_end(pgs_sink *s, od_error *err) {
  if (!s->copy_rel) return OD_OK;
  const pg_rel *r = s->copy_rel;
  int rc = OD_OK;
  if (s->copy_binary) {
    if (!reserve(s, 2)) rc = oom(s, err);
    else {
      put16(s->copy_buf + s->copy_len, -1); /* file trailer */
      s->copy_len += 2;
    }
  }
  if (!rc) rc = send_buf(s, err);
  if (rc) {
    pgs_load_abort(s); /* nothing left to do when send_buf already ended the COPY */
    return rc;
  }
  if (PQputCopyEnd(s->conn, NULL) != 1) {
    s->copy_rel = NULL;
    s->copy_len = 0;
    s->copy_rows = 0;
    rc = copy_result(s, r->target, err);
    return rc ? rc : pgs_fail(s, r->target, "ending COPY", NULL, err);
  }
  s->copy_rel = NULL;
  s->copy_len = 0;
  s->stats.inserted += s->copy_rows;
  s->copy_rows = 0;
  return copy_result(s, r->target, err);
}

void pgs_load_abort(pgs_sink *s) {
  if (!s->copy_rel) return;
  s->copy_rel = NULL;
  s->copy_len = 0;
  s->copy_rows = 0;
  if (!s->conn) return;
  if (PQputCopyEnd(s->conn, "odsync: transaction rolled back") == 1) {
    od_error ignored;
    copy_result(s, NULL, &ignored);
  }
}

void pgs_add_columns(od_sqlbuf *b, const pg_rel *r) {
  od_sqlbuf_add(b, " (");
  for (int i = 0; i < r->rel->ncolumns; i++) {
    if (i) od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, r->rel->columns[i].name);
  }
  od_sqlbuf_add(b, ")");
}

static int copy_start(pgs_sink *s, const od_relation *rel, bool binary, od_error *err) {
  int rc = pgs_ensure_begin(s, err);
  pg_rel *r = NULL;
  if (!rc) rc = pgs_rel_get(s, rel, &r, err);
  if (rc) return rc;
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "COPY ");
  od_sqlbuf_add(b, r->qtarget);
  pgs_add_columns(b, r);
  od_sqlbuf_add(b, binary ? " FROM STDIN (FORMAT binary)" : " FROM STDIN");
  if (b->oom) return oom(s, err);
  PGresult *res = PQexec(s->conn, b->p);
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    rc = pgs_fail(s, r->target, "starting COPY", res, err);
    PQclear(res);
    return rc;
  }
  PQclear(res);
  s->copy_rel = r;
  s->copy_binary = binary;
  s->copy_len = 0;
  s->copy_rows = 0;
  if (binary) {
    static const char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    if (!reserve(s, 19)) return oom(s, err);
    memcpy(s->copy_buf, sig, sizeof sig);
    put32(s->copy_buf + 11, 0); /* flags */
    put32(s->copy_buf + 15, 0); /* header extension length */
    s->copy_len = 19;
  }
  return OD_OK;
}

char *pgs_copy_escape(char *o, const char *p, size_t len) {
  const char *end = p + len;
  while (p < end) {
    /* Copy the run without special characters at once. */
    const char *q = p;
    while (q < end && *q != '\\' && *q != '\n' && *q != '\r' && *q != '\t') q++;
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    if (q == end) break;
    *o++ = '\\';
    *o++ = *q == '\\' ? '\\' : *q == '\n' ? 'n' : *q == '\r' ? 'r' : 't';
    p = q + 1;
  }
  return o;
}

/* COPY's text format: backslash, newline, carriage return and tab escaped; NULL is \N. */
static bool encode_text_row(pgs_sink *s, const od_tuple *t) {
  size_t need = 1;
  for (uint16_t c = 0; c < t->ncolumns; c++) need += 3 + (size_t)t->values[c].len * 2;
  if (!reserve(s, need)) return false;
  char *o = s->copy_buf + s->copy_len;
  for (uint16_t c = 0; c < t->ncolumns; c++) {
    const od_value *v = &t->values[c];
    if (c) *o++ = '\t';
    if (v->kind == OD_VALUE_NULL) {
      *o++ = '\\';
      *o++ = 'N';
      continue;
    }
    o = pgs_copy_escape(o, v->data, v->len);
  }
  *o++ = '\n';
  s->copy_len = (size_t)(o - s->copy_buf);
  return true;
}

static bool encode_binary_row(pgs_sink *s, const od_tuple *t) {
  size_t need = 2;
  for (uint16_t c = 0; c < t->ncolumns; c++) need += 4 + t->values[c].len;
  if (!reserve(s, need)) return false;
  char *o = s->copy_buf + s->copy_len;
  put16(o, (int16_t)t->ncolumns);
  o += 2;
  for (uint16_t c = 0; c < t->ncolumns; c++) {
    const od_value *v = &t->values[c];
    if (v->kind == OD_VALUE_NULL) {
      put32(o, -1);
      o += 4;
      continue;
    }
    put32(o, (int32_t)v->len);
    memcpy(o + 4, v->data, v->len);
    o += 4 + v->len;
  }
  s->copy_len = (size_t)(o - s->copy_buf);
  return true;
}

/* The format a row's values are in: 1 binary, 0 text, -1 only NULLs, -2 mixed or unusable. */
static int row_format(const od_tuple *t) {
  int f = -1;
  for (uint16_t c = 0; c < t->ncolumns; c++) {
    uint8_t k = t->values[c].kind;
    if (k == OD_VALUE_NULL) continue;
    int g = k == OD_VALUE_BINARY ? 1 : k == OD_VALUE_TEXT ? 0 : -2;
    if (g == -2 || (f >= 0 && f != g)) return -2;
    f = g;
  }
  return f;
}

int pgs_load(od_sink *base, const od_change *rows, size_t n, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: load outside a transaction", s->where);
  for (size_t i = 0; i < n; i++) {
    const od_change *c = &rows[i];
    int f = row_format(&c->newtup);
    if (c->op != OD_OP_READ || !c->rel || c->newtup.ncolumns != c->rel->ncolumns || f == -2)
      return OD_FAIL(err, OD_EINVAL, "postgres sink %s: table %s.%s: load takes snapshot rows with every column "
                     "either text or binary", s->where, c->rel ? c->rel->schema : "?", c->rel ? c->rel->name : "?");
    if (s->copy_rel && (s->copy_rel->rel != c->rel || (f >= 0 && (f == 1) != s->copy_binary))) {
      int rc = pgs_load_end(s, err);
      if (rc) return rc;
    }
    if (!s->copy_rel) {
      int rc = copy_start(s, c->rel, f == 1, err);
      if (rc) return rc;
    }
    if (!(s->copy_binary ? encode_binary_row(s, &c->newtup) : encode_text_row(s, &c->newtup))) return oom(s, err);
    s->copy_rows++;
    if (s->copy_len >= COPY_FLUSH_BYTES) {
      int rc = send_buf(s, err);
      if (rc) return rc;
    }
  }
  return OD_OK;
}

/* Does every column of the target have exactly the source's built-in type, one whose binary form
 * the server receives as the source sent it (or, for a user-defined type, which the source sends
 * as text in binary reads, a text column)? OID-alias types (regclass, ...) are left out: their
 * binary form is an OID, which names different objects in two databases. */
static int takes_binary(pgs_sink *s, const pg_rel *r, bool *out, od_error *err) {
  *out = false;
  const char *p[] = {r->qtarget};
  PGresult *res = pgs_exec(s, r->target, "reading the column types",
                           "SELECT a.attname, a.atttypid::int8, t.typreceive <> 0 AND t.typname !~ '^_?reg' "
                           "AND (e.oid IS NULL OR e.typreceive <> 0) "
                           "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
                           "LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
                           "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                           1, p, err);
  if (!res) return err->code;
  int matched = 0;
  bool ok = true;
  for (int i = 0; i < r->rel->ncolumns && ok; i++) {
    const od_column *col = &r->rel->columns[i];
    bool found = false;
    for (int t = 0; t < PQntuples(res); t++) {
      if (strcmp(PQgetvalue(res, t, 0), col->name) != 0) continue;
      found = true;
      unsigned long long target = strtoull(PQgetvalue(res, t, 1), NULL, 10);
      /* A user-defined type arrives as text (snapshot.h) and needs a text column, as the sink
       * creates them. */
      ok = col->type_oid < FIRST_USER_OID ? target == col->type_oid && PQgetvalue(res, t, 2)[0] == 't'
                                          : target == OID_TEXT;

      break;
    }
    if (found) matched++;
    else ok = false;
  }
  PQclear(res);
  *out = ok && matched == r->rel->ncolumns;
  return OD_OK;
}

int pgs_load_prepare(od_sink *base, const od_relation *rel, const char *binary_format, bool *binary, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  *binary = false;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: load_prepare outside a transaction", s->where);
  int rc = pgs_ensure_begin(s, err);
  if (rc) return rc;
  pg_rel *r = NULL;
  s->defer_key = true;
  rc = pgs_rel_get(s, rel, &r, err);
  s->defer_key = false;
  if (rc) return rc;
  char mine[32];
  snprintf(mine, sizeof mine, "postgresql-%d", PQserverVersion(s->conn) / 10000);
  if (binary_format && strcmp(binary_format, mine) == 0 && (rc = takes_binary(s, r, binary, err))) return rc;
  od_info("postgres sink %s: table %s: snapshot chunks load with COPY (%s values)", s->where, r->target,
          *binary ? "binary" : "text");
  return OD_OK;
}

/* Has the target a primary key, or a plain unique index on exactly r's key columns? Either lets
 * INSERT ... ON CONFLICT find rows by key. */
static int has_key_index(pgs_sink *s, const pg_rel *r, bool *out, od_error *err) {
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "{");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ",");
    od_sqlbuf_add(b, "\"");
    for (const char *c = r->rel->columns[PGS_COL(r->key_plan[k])].name; *c; c++) {
      char ch[3] = {'\\', *c, '\0'};
      od_sqlbuf_add(b, (*c == '"' || *c == '\\') ? ch : ch + 1);
    }
    od_sqlbuf_add(b, "\"");
  }
  od_sqlbuf_add(b, "}");
  if (b->oom) return oom(s, err);
  char *keys = strdup(b->p);
  if (!keys) return oom(s, err);
  const char *p[] = {r->qtarget, keys};
  PGresult *res = pgs_exec(s, r->target, "looking for the key's index",
                           "SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = $1::regclass AND "
                           "(i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL)) AND "
                           "(SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_catalog.pg_attribute a "
                           " WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = "
                           "(SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k)",
                           2, p, err);
  free(keys);
  if (!res) return err->code;
  *out = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
  PQclear(res);
  return OD_OK;
}

int pgs_load_finish(od_sink *base, const od_relation *rel, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: load_finish outside a transaction", s->where);
  int rc = pgs_ensure_begin(s, err);
  pg_rel *r = NULL;
  if (!rc) rc = pgs_rel_get(s, rel, &r, err);
  if (rc || !r->keyed) return rc;
  bool has = false;
  if ((rc = has_key_index(s, r, &has, err)) || has) return rc;
  /* On a big table this takes a while after the last row is in: say what is going on. */
  od_info("postgres sink %s: table %s: building the primary key", s->where, r->target);
  int64_t t0 = od_mono_us();
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_addf(b, "SET LOCAL maintenance_work_mem = '%s'", s->maintenance_work_mem);
  PGresult *res = pgs_exec(s, r->target, "setting maintenance_work_mem", b->p, 0, NULL, err);
  if (!res) return err->code;
  PQclear(res);
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "ALTER TABLE ");
  od_sqlbuf_add(b, r->qtarget);
  od_sqlbuf_add(b, " ADD PRIMARY KEY (");
  for (int k = 0; k < r->nkey; k++) {
    if (k) od_sqlbuf_add(b, ", ");
    od_sqlbuf_ident(b, r->rel->columns[PGS_COL(r->key_plan[k])].name);
  }
  od_sqlbuf_add(b, ")");
  if (b->oom) return oom(s, err);
  if (!(res = pgs_exec(s, r->target, "building the primary key after the snapshot", b->p, 0, NULL, err)))
    return err->code;
  PQclear(res);
  od_info("postgres sink %s: table %s: primary key built in %.2f s", s->where, r->target,
          (double)(od_mono_us() - t0) / 1e6);
  return OD_OK;
}
