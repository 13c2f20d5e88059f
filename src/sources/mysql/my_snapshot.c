/* sources/mysql/my_snapshot.c — the MariaDB side of the initial snapshot (odsync/snapshot.h).
 *
 * The view is one connection inside START TRANSACTION WITH CONSISTENT SNAPSHOT: InnoDB's read view
 * and, taken with it without any lock, the binlog position it corresponds to (MariaDB's status
 * variables binlog_snapshot_file / binlog_snapshot_position; the GTID list from
 * BINLOG_GTID_POS()). Everything committed before that position is in the view, everything after it
 * comes through the stream, which starts exactly there. MariaDB cannot share a read view between
 * connections, so there is one reader (the view's connection); a table with a single integer key is
 * read in key ranges (chunks), any other in one piece. An interrupted snapshot is resumed
 * (docs/SNAPSHOTS.md, "Resume"): MariaDB keeps no slot, so the earlier attempt's stream start
 * (handed in as od_snapshot_info.resume_from) is kept as the stream's start when the binlog still
 * holds it, and a new view (a later position) copies what is missing: key-range chunks already in
 * the sink stay, tables read in one piece are emptied and copied again with a skip mark.
 * Rows are read with the text protocol and put into the same text forms the binlog decoder
 * produces (docs/TYPES.md, "MariaDB"): TIMESTAMP gets "+00", YEAR and BIT are selected as numbers
 * and binary digits, binary strings become bytea hex, FLOAT/DOUBLE are re-printed shortest.
 * Ownership: the view connection, the table list and the snapshot's relations belong to the source
 * (s->snap) until close; rows passed to fn are valid for the call.
 * Never touches: the binlog stream, sinks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapter.h"
#include "sources/mysql/my_position.h"
#include "sources/mysql/my_source.h"

#define ROWS_PER_BATCH 256

struct my_snap {
  MYSQL *view;
  bool reader_taken;
  my_relcache *rels;
  my_table **shapes; /* per table, the catalog's description the SELECT is built from */
  od_snap_table *tables;
  int ntables;
};

struct od_snap_reader {
  my_source *s;
};

static void free_tables(my_snap *sn) {
  for (int i = 0; i < sn->ntables; i++) my_table_free(sn->shapes[i]);
  free(sn->shapes);
  free(sn->tables);
  sn->shapes = NULL;
  sn->tables = NULL;
  sn->ntables = 0;
}

void my_snap_free(my_source *s) {
  my_snap *sn = s->snap;
  if (!sn) return;
  if (sn->view) mysql_close(sn->view);
  free_tables(sn);
  my_relcache_free(sn->rels);
  free(sn);
  s->snap = NULL;
}

static void snap_config(od_source *base, od_snapshot_config *out) {
  my_source *s = (my_source *)base;
  /* One view, one connection: MariaDB cannot hand a read view to a second connection. */
  *out = (od_snapshot_config){.mode = s->set.snapshot_initial ? OD_SNAPSHOT_INITIAL : OD_SNAPSHOT_NEVER,
                              .workers = 1,
                              .chunk_rows = s->set.snapshot_chunk_rows};
}

static int view_fail(my_source *s, const char *what, od_error *err) {
  return my_fail(&s->set, s->snap->view, what, err);
}

static int scalar(my_source *s, const char *sql, char *buf, size_t size, od_error *err) {
  MYSQL *m = s->snap->view;
  if (mysql_query(m, sql) != 0) return view_fail(s, sql, err);
  MYSQL_RES *r = mysql_store_result(m);
  MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
  snprintf(buf, size, "%s", row && row[mysql_num_fields(r) - 1] ? row[mysql_num_fields(r) - 1] : "");
  mysql_free_result(r);
  return OD_OK;
}

/* The captured tables, with relations built from information_schema. */
static int list_tables(my_source *s, od_error *err) {
  my_snap *sn = s->snap;
  MYSQL *m = sn->view;
  if (mysql_query(m, "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES WHERE "
                     "TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', "
                     "'performance_schema', 'sys') ORDER BY TABLE_SCHEMA, TABLE_NAME") != 0)
    return view_fail(s, "listing tables", err);
  MYSQL_RES *r = mysql_store_result(m);
  if (!r) return view_fail(s, "listing tables", err);
  int n = (int)mysql_num_rows(r), rc = OD_OK;
  sn->tables = calloc((size_t)(n ? n : 1), sizeof *sn->tables);
  sn->shapes = calloc((size_t)(n ? n : 1), sizeof *sn->shapes);
  if (!sn->tables || !sn->shapes) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  MYSQL_ROW row;
  while (!rc && (row = mysql_fetch_row(r))) {
    if (!my_catalog_captured(s->cat, row[0], row[1])) continue;
    my_table *t = NULL;
    if ((rc = my_catalog_shape(s->cat, row[0], row[1], &t, err)) || !t) continue;
    od_relation *rel;
    bool is_new;
    if ((rc = my_relcache_get(sn->rels, t, &rel, &is_new, err))) {
      my_table_free(t);
      break;
    }
    od_snap_table *st = &sn->tables[sn->ntables];
    st->rel = rel;
    snprintf(st->name, sizeof st->name, "%s.%s", row[0], row[1]);
    st->method = OD_SNAP_WHOLE;
    st->priv = NULL;
    int nkey = 0, key = -1;
    for (int k = 0; k < t->ncols; k++)
      if (t->cols[k].key) nkey++, key = k;
    if (nkey == 1) {
      const my_column *kc = &t->cols[key];
      bool integer = kc->type == MY_T_TINY || kc->type == MY_T_SHORT || kc->type == MY_T_INT24 || kc->type == MY_T_LONG ||
                     (kc->type == MY_T_LONGLONG && !kc->is_unsigned);
      if (integer) {
        st->method = OD_SNAP_INT_KEY;
        st->priv = &t->cols[key]; /* the key column, owned by the shape */
      }
    }
    st->estimated_rows = strtoull(row[2], NULL, 10);
    snprintf(st->no_keyset, sizeof st->no_keyset, "incremental snapshots of mysql sources are not supported");
    sn->shapes[sn->ntables++] = t;
  }
  mysql_free_result(r);
  return rc;
}

/* Whether an earlier attempt's stream start `from` can be resumed: a MariaDB position, not after
 * this view, in a binlog file the server still has. A purged one means starting over (logged). */
static int attempt_held(my_source *s, const od_pos *from, const od_pos *view, bool *held, od_error *err) {
  *held = false;
  if (od_pos_is_none(from)) return OD_OK;
  char ft[OD_POS_TEXT_MAX];
  od_pos_display(from, ft, sizeof ft);
  if (from->kind != &od_pos_mysql || od_pos_lt(view, from)) {
    od_warn("%s: snapshot: the earlier attempt's start %s is not a position of this server's binlog; "
            "copying every table again", s->set.where, ft);
    return OD_OK;
  }
  char file[256];
  my_pos_parts(from, file, sizeof file, NULL, NULL, 0);
  MYSQL *m = s->snap->view;
  if (mysql_query(m, "SHOW BINARY LOGS") != 0) return view_fail(s, "snapshot: listing binlog files", err);
  MYSQL_RES *r = mysql_store_result(m);
  if (!r) return view_fail(s, "snapshot: listing binlog files", err);
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(r)))
    if (row[0] && !strcmp(row[0], file)) *held = true;
  mysql_free_result(r);
  if (!*held)
    od_warn("%s: snapshot: the earlier attempt streams from %s, but binlog file %s is purged; copying every "
            "table again under a new view", s->set.where, ft, file);
  return OD_OK;
}

static int snap_prepare(od_source *base, bool export_view, od_snapshot_info *out, od_error *err) {
  my_source *s = (my_source *)base;
  my_snap_free(s);
  if (!(s->snap = calloc(1, sizeof *s->snap)) || !(s->snap->rels = my_relcache_new()))
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  my_snap *sn = s->snap;
  const od_pos resume = out->resume_from;
  memset(out, 0, sizeof *out);
  out->resume_from = resume;
  int rc = my_connect(&s->set, &sn->view, err);
  if (rc) return rc;
  if (export_view) {
    char file[256], pos[32], gtids[OD_POS_MAX + 1], sql[700];
    if ((rc = my_exec(&s->set, sn->view, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", err)) ||
        (rc = my_exec(&s->set, sn->view, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", err)) ||
        (rc = scalar(s, "SHOW STATUS LIKE 'binlog_snapshot_file'", file, sizeof file, err)) ||
        (rc = scalar(s, "SHOW STATUS LIKE 'binlog_snapshot_position'", pos, sizeof pos, err)))
      return rc;
    if (!file[0]) return OD_FAIL(err, OD_ESOURCE, "%s: snapshot: the server reports no binlog position for it: is log_bin on?",
                                 s->set.where);
    char efile[520];
    mysql_real_escape_string(sn->view, efile, file, (unsigned long)strlen(file));
    snprintf(sql, sizeof sql, "SELECT BINLOG_GTID_POS('%s', %s)", efile, pos);
    if ((rc = scalar(s, sql, gtids, sizeof gtids, err))) return rc;
    if ((rc = my_pos_make(file, strtoull(pos, NULL, 10), gtids, &out->point, err))) return rc;
    od_info("%s: snapshot view at %s%s%s:%s", s->set.where, gtids, gtids[0] ? " @ " : "", file, pos);
    bool held = false;
    if ((rc = attempt_held(s, &resume, &out->point, &held, err))) return rc;
    if (held) {
      /* Resume the earlier attempt: its stream start stays, this view is the newer generation. */
      out->slot_point = resume;
      out->slot_created = false;
      char rt[OD_POS_TEXT_MAX];
      od_info("%s: snapshot: an earlier attempt streams from %s, which the binlog still holds: resuming it "
              "(chunks it copied stay; the rest is read under this view)",
              s->set.where, od_pos_display(&resume, rt, sizeof rt));
    } else {
      out->slot_point = out->point;
      out->slot_created = true; /* nothing of an earlier attempt lines up with this view */
    }
  }
  if ((rc = list_tables(s, err))) return rc;
  out->tables = sn->tables;
  out->ntables = sn->ntables;
  out->binary_format = NULL;
  snprintf(out->text_form, sizeof out->text_form, "time_zone=+00:00;names=utf8mb4");
  return OD_OK;
}

static int snap_reader_open(od_source *base, od_snap_reader **out, od_error *err) {
  my_source *s = (my_source *)base;
  if (!s->snap || !s->snap->view) return OD_FAIL(err, OD_EINVAL, "%s: snapshot: no view", s->set.where);
  if (s->snap->reader_taken)
    return OD_FAIL(err, OD_EINVAL, "%s: snapshot: one reader only (MariaDB cannot share a read view)", s->set.where);
  od_snap_reader *r = calloc(1, sizeof *r);
  if (!r) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  r->s = s;
  s->snap->reader_taken = true;
  *out = r;
  return OD_OK;
}

static void snap_reader_close(od_snap_reader *r) {
  if (!r) return;
  if (r->s->snap) r->s->snap->reader_taken = false;
  free(r);
}

static void quote_ident(const char *name, char *out, size_t size) {
  size_t k = 0;
  out[k++] = '`';
  for (const char *p = name; *p && k < size - 3; p++) {
    if (*p == '`') out[k++] = '`';
    out[k++] = *p;
  }
  out[k++] = '`';
  out[k] = '\0';
}

/* A table with a single integer key is cut into key ranges (smaller sink transactions, progress);
 * anything else is one chunk. All chunks are read under the same view. */
static int snap_plan(od_snap_reader *r, const od_snap_table *t, uint32_t chunk_rows, od_snap_plan *out, od_error *err) {
  *out = (od_snap_plan){.method = OD_SNAP_WHOLE, .nchunks = 1, .estimated_rows = t->estimated_rows};
  if (t->method != OD_SNAP_INT_KEY || !t->priv) return OD_OK;
  my_source *s = r->s;
  const my_column *kc = t->priv;
  const char *dot = strchr(t->name, '.');
  char qk[300], qd[300], qt[300], sql[1400], db[192];
  snprintf(db, sizeof db, "%.*s", (int)(dot - t->name), t->name);
  quote_ident(kc->name, qk, sizeof qk);
  quote_ident(db, qd, sizeof qd);
  quote_ident(dot + 1, qt, sizeof qt);
  snprintf(sql, sizeof sql, "SELECT MIN(%s), MAX(%s), COUNT(*) FROM %s.%s", qk, qk, qd, qt);
  MYSQL *m = s->snap->view;
  if (mysql_query(m, sql) != 0) return view_fail(s, "snapshot: planning a table", err);
  MYSQL_RES *res = mysql_store_result(m);
  MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
  if (row && row[0] && row[1]) {
    long long lo = strtoll(row[0], NULL, 10), hi = strtoll(row[1], NULL, 10);
    unsigned long long rows = strtoull(row[2], NULL, 10);
    uint32_t per = chunk_rows ? chunk_rows : 100000;
    unsigned long long n = (rows + per - 1) / per;
    if (n < 1) n = 1;
    if (n > 100000) n = 100000;
    unsigned long long span = (unsigned long long)(hi - lo) + 1;
    unsigned long long step = (span + n - 1) / n;
    if (step < 1) step = 1;
    *out = (od_snap_plan){.method = OD_SNAP_INT_KEY, .nchunks = (uint32_t)((span + step - 1) / step), .lo = lo,
                          .step = (int64_t)step, .estimated_rows = rows};
  }
  mysql_free_result(res);
  return OD_OK;
}

static my_table *shape_of(my_snap *sn, const od_snap_table *t) {
  for (int i = 0; i < sn->ntables; i++)
    if (&sn->tables[i] == t || !strcmp(sn->tables[i].name, t->name)) return sn->shapes[i];
  return NULL;
}

/* The SELECT list: each column in the form the binlog decoder gives it. */
static int select_sql(const my_table *t, const od_snap_table *st, const od_snap_plan *plan, uint32_t chunk,
                      char **out) {
  size_t cap = 256 + (size_t)t->ncols * 600, n = 0;
  char *sql = malloc(cap);
  if (!sql) return -1;
  n += (size_t)snprintf(sql + n, cap - n, "SELECT ");
  for (int i = 0; i < t->ncols; i++) {
    const my_column *c = &t->cols[i];
    char q[300];
    size_t k = 0;
    q[k++] = '`';
    for (const char *p = c->name; *p && k < sizeof q - 3; p++) {
      if (*p == '`') q[k++] = '`';
      q[k++] = *p;
    }
    q[k++] = '`';
    q[k] = '\0';
    if (c->type == MY_T_YEAR) n += (size_t)snprintf(sql + n, cap - n, "%s%s+0", i ? ", " : "", q);
    else if (c->type == MY_T_BIT)
      n += (size_t)snprintf(sql + n, cap - n, "%sLPAD(BIN(%s), %u, '0')", i ? ", " : "", q, c->length);
    else n += (size_t)snprintf(sql + n, cap - n, "%s%s", i ? ", " : "", q);
  }
  n += (size_t)snprintf(sql + n, cap - n, " FROM `%s`.`%s`", t->db, t->name);
  if (plan->method == OD_SNAP_INT_KEY && plan->nchunks > 1 && st->priv) {
    char qk[300];
    quote_ident(((const my_column *)st->priv)->name, qk, sizeof qk);
    long long from = plan->lo + (long long)chunk * plan->step, to = from + plan->step;
    if (chunk == 0) n += (size_t)snprintf(sql + n, cap - n, " WHERE %s < %lld", qk, to);
    else if (chunk + 1 == plan->nchunks) n += (size_t)snprintf(sql + n, cap - n, " WHERE %s >= %lld", qk, from);
    else n += (size_t)snprintf(sql + n, cap - n, " WHERE %s >= %lld AND %s < %lld", qk, from, qk, to);
  }
  *out = sql;
  return 0;
}

typedef struct batch {
  od_change rows[ROWS_PER_BATCH];
  od_value *vals;
  char *text;  /* converted values of the batch */
  size_t tlen, tcap;
  size_t *offs;
  int n;
} batch;

static long put_text(batch *b, const char *p, size_t n) {
  if (b->tlen + n + 1 > b->tcap) {
    size_t cap = b->tcap ? b->tcap * 2 : 65536;
    while (cap < b->tlen + n + 1) cap *= 2;
    char *t = realloc(b->text, cap);
    if (!t) return -1;
    b->text = t;
    b->tcap = cap;
  }
  long off = (long)b->tlen;
  memcpy(b->text + b->tlen, p, n);
  b->tlen += n;
  b->text[b->tlen++] = '\0';
  return off;
}

static int flush(batch *b, int ncols, od_snap_rows_fn fn, void *ctx, od_error *err) {
  if (!b->n) return OD_OK;
  for (int r = 0; r < b->n; r++)
    for (int c = 0; c < ncols; c++) {
      od_value *v = &b->vals[(size_t)r * ncols + c];
      if (v->kind == OD_VALUE_TEXT) v->data = b->text + b->offs[(size_t)r * ncols + c];
    }
  int rc = fn(ctx, b->rows, (size_t)b->n, err);
  b->n = 0;
  b->tlen = 0;
  return rc;
}

static int snap_read(od_snap_reader *r, const od_snap_table *t, const od_snap_plan *plan, uint32_t chunk, bool binary,
                     od_snap_rows_fn fn, void *ctx, od_error *err) {
  (void)binary;
  my_source *s = r->s;
  my_snap *sn = s->snap;
  my_table *shape = shape_of(sn, t);
  if (!shape) return OD_FAIL(err, OD_EINVAL, "%s: snapshot: unknown table %s", s->set.where, t->name);
  int ncols = shape->ncols;
  char *sql;
  if (select_sql(shape, t, plan, chunk, &sql) != 0) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (mysql_query(sn->view, sql) != 0) {
    free(sql);
    return view_fail(s, "snapshot: reading a table", err);
  }
  free(sql);
  MYSQL_RES *res = mysql_use_result(sn->view);
  if (!res) return view_fail(s, "snapshot: reading a table", err);
  batch b = {0};
  b.vals = calloc((size_t)ROWS_PER_BATCH * (size_t)ncols, sizeof *b.vals);
  b.offs = calloc((size_t)ROWS_PER_BATCH * (size_t)ncols, sizeof *b.offs);
  int rc = b.vals && b.offs ? OD_OK : OD_FAIL(err, OD_ENOMEM, "out of memory");
  MYSQL_ROW row;
  char tmp[64];
  while (!rc && (row = mysql_fetch_row(res))) {
    unsigned long *len = mysql_fetch_lengths(res);
    od_value *vals = &b.vals[(size_t)b.n * ncols];
    size_t *offs = &b.offs[(size_t)b.n * ncols];
    for (int c = 0; c < ncols && !rc; c++) {
      const my_column *col = &shape->cols[c];
      vals[c] = (od_value){.kind = OD_VALUE_NULL};
      if (!row[c]) continue;
      long off;
      bool binary_str = col->charset == MY_CS_BINARY && col->real_type != MY_T_ENUM && col->real_type != MY_T_SET &&
                        (col->type == MY_T_STRING || col->type == MY_T_VARCHAR || col->type == MY_T_BLOB);
      if (binary_str || col->type == MY_T_GEOMETRY) {
        static const char hx[] = "0123456789abcdef";
        char *h = malloc(2 + 2 * (size_t)len[c] + 1);
        if (!h) {
          rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
          break;
        }
        h[0] = '\\';
        h[1] = 'x';
        for (unsigned long k = 0; k < len[c]; k++) {
          h[2 + 2 * k] = hx[(unsigned char)row[c][k] >> 4];
          h[3 + 2 * k] = hx[(unsigned char)row[c][k] & 15];
        }
        off = put_text(&b, h, 2 + 2 * (size_t)len[c]);
        free(h);
      } else if (col->type == MY_T_FLOAT || col->type == MY_T_DOUBLE) {
        int n = my_format_float(strtod(row[c], NULL), col->type == MY_T_FLOAT, tmp, sizeof tmp);
        off = put_text(&b, tmp, (size_t)n);
      } else if (col->type == MY_T_TIMESTAMP2 && strncmp(row[c], "0000-00-00", 10) != 0) {
        off = put_text(&b, row[c], len[c]);
        if (off >= 0) {
          b.tlen--; /* append "+00" before the NUL */
          if (put_text(&b, "+00", 3) < 0) off = -1;
        }
      } else {
        off = put_text(&b, row[c], len[c]);
      }
      if (off < 0) {
        rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
        break;
      }
      offs[c] = (size_t)off;
      vals[c].kind = OD_VALUE_TEXT;
      vals[c].len = (uint32_t)(b.tlen - 1 - (size_t)off); /* the bytes put, NUL excluded */
    }
    if (rc) break;
    b.rows[b.n] = (od_change){.op = OD_OP_READ, .rel = t->rel, .newtup = {.ncolumns = (uint16_t)ncols, .values = vals},
                              .index = (uint32_t)b.n};
    if (++b.n == ROWS_PER_BATCH) rc = flush(&b, ncols, fn, ctx, err);
  }
  if (!rc && mysql_errno(sn->view)) rc = view_fail(s, "snapshot: reading a table", err);
  if (!rc) rc = flush(&b, ncols, fn, ctx, err);
  mysql_free_result(res);
  free(b.vals);
  free(b.offs);
  free(b.text);
  return rc;
}

static void snap_finish(od_source *base) {
  my_source *s = (my_source *)base;
  if (s->snap && s->snap->view) {
    mysql_close(s->snap->view); /* ends the read view; the tables and relations stay until close */
    s->snap->view = NULL;
  }
}

const od_snapshot_ops my_snapshot_ops = {
    .config = snap_config,
    .prepare = snap_prepare,
    .reader_open = snap_reader_open,
    .plan = snap_plan,
    .read = snap_read,
    .reader_close = snap_reader_close,
    .finish = snap_finish,
    .incremental = NULL,
};
