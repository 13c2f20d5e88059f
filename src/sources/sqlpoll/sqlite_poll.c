/* sources/sqlpoll/sqlite_poll.c — query-based polling of an SQLite database file (`type: sqlite_poll`).
 *
 * Each poll cycle opens one read transaction (one snapshot of the file) and, for every table of
 * source.tables, steps through the rows whose integer watermark column is above the table's last
 * watermark (ordered by it), delivering them as ONE source transaction of upserts (OD_OP_READ; a row
 * whose deleted_column is true is a delete by key). The cycle's position is the list of the tables'
 * highest watermarks (sqlpoll_position.h), stored by the sink with the data.
 *
 * Why no late commit can slip under a watermark: SQLite runs one write transaction at a time, and a
 * watermark taken inside it from a counter that never goes back (a counter table, AUTOINCREMENT's
 * sqlite_sequence) is committed before the next writer can take a larger one; a reader's snapshot
 * holds a prefix of the commits. So every row with a watermark at or below the highest one a
 * snapshot shows is in that snapshot. `watermark: rowid` is right only for insert-only tables declared
 * AUTOINCREMENT (a plain rowid may be reused after the largest row is deleted).
 * What it cannot see: hard deletes (use deleted_column), updates that do not raise the watermark,
 * intermediate versions between cycles, rows whose watermark is NULL after the first cycle.
 *
 * Values are sent in the text forms of the types the declared column types map to (INTEGER ->
 * bigint, REAL -> double precision, TEXT -> text, BLOB -> bytea as \x hex, anything else -> text).
 * Ownership: owns its settings, the read-only connection and the relations (live until close()).
 * Borrows the config. Never touches sinks or the pipeline's queue.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/sqlpoll/sqlpoll_position.h"

extern const od_source_ops od_source_sqlite_poll;

typedef struct sp_table {
  od_relation rel; /* owned */
  char qname[300];
  int wm_col, del_col; /* column indexes; wm_col -1: rowid */
  bool announced;
} sp_table;

typedef struct sp_source {
  od_source base;
  char where[160];
  const char *path, *watermark, *deleted_column;
  char *const *names;
  int nnames;
  long interval_ms;
  sqlite3 *db;
  sp_table *tables;
  int ntables;
  int64_t wm[SQLPOLL_MAX_TABLES];
  bool first;
  int64_t next_cycle_us;
} sp_source;

static const char *const allowed_keys[] = {"path", "tables", "watermark", "deleted_column", "interval_ms", "reconnect_max_ms",
                                           NULL};

static int sp_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  sp_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_sqlite_poll;
  snprintf(s->where, sizeof s->where, "pipeline %s: sqlite_poll source", pipeline);
  int rc = od_config_check_keys(cfg, allowed_keys, err);
  if (!rc) rc = od_config_require_string(cfg, "path", &s->path, err);
  if (!rc) rc = od_config_list(cfg, "tables", &s->names, &s->nnames, err);
  if (!rc && (s->nnames == 0 || s->nnames > SQLPOLL_MAX_TABLES))
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: sqlite_poll needs `tables:` with 1 to %d tables (a pipeline per group "
                 "of tables beyond that)", cfg->file, cfg->line, cfg->col, cfg->path, SQLPOLL_MAX_TABLES);
  if (!rc) rc = od_config_string(cfg, "watermark", "rowid", &s->watermark, err);
  if (!rc) rc = od_config_string(cfg, "deleted_column", NULL, &s->deleted_column, err);
  if (!rc) rc = od_config_int(cfg, "interval_ms", 1000, 10, 86400000L, &s->interval_ms, err);
  if (rc) {
    free(s);
    return rc;
  }
  *out = &s->base;
  return OD_OK;
}

static void free_table(sp_table *t) {
  for (int i = 0; t->rel.columns && i < t->rel.ncolumns; i++) free(t->rel.columns[i].name);
  free(t->rel.columns);
  free(t->rel.schema);
  free(t->rel.name);
}

static void sp_close(od_source *base) {
  sp_source *s = (sp_source *)base;
  if (!s) return;
  if (s->db) sqlite3_close(s->db);
  for (int i = 0; i < s->ntables; i++) free_table(&s->tables[i]);
  free(s->tables);
  free(s);
}

static int connect_db(sp_source *s, od_error *err) {
  if (s->db) return OD_OK;
  int rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READONLY, NULL);
  if (rc != SQLITE_OK) {
    OD_FAIL_RETRY(err, OD_ECONNECT, "%s: cannot open %s: %s", s->where, s->path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    sqlite3_close(s->db);
    s->db = NULL;
    return OD_ECONNECT;
  }
  sqlite3_busy_timeout(s->db, 10000);
  return OD_OK;
}

static void quote(const char *id, char *out, size_t size) {
  size_t o = 0;
  out[o++] = '"';
  for (; *id && o + 3 < size; id++) {
    if (*id == '"') out[o++] = '"';
    out[o++] = *id;
  }
  out[o++] = '"';
  out[o] = '\0';
}

static void map_type(const char *decl, od_column *c) {
  char up[64];
  size_t i = 0;
  for (; decl && decl[i] && i < sizeof up - 1; i++) up[i] = (char)(decl[i] >= 'a' && decl[i] <= 'z' ? decl[i] - 32 : decl[i]);
  up[i] = '\0';
  /* SQLite's affinity rules, in their order. */
  if (strstr(up, "INT")) c->type_oid = 20, snprintf(c->type_name, sizeof c->type_name, "bigint");
  else if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT")) c->type_oid = 25, snprintf(c->type_name, sizeof c->type_name, "text");
  else if (strstr(up, "BLOB")) c->type_oid = 17, snprintf(c->type_name, sizeof c->type_name, "bytea");
  else if (strstr(up, "REAL") || strstr(up, "FLOA") || strstr(up, "DOUB")) c->type_oid = 701, snprintf(c->type_name, sizeof c->type_name, "double precision");
  else c->type_oid = 25, snprintf(c->type_name, sizeof c->type_name, "text");
  c->typmod = -1;
}

static char *dup(const char *x) {
  size_t n = strlen(x) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, x, n);
  return d;
}

static int describe(sp_source *s, const char *name, sp_table *t, od_error *err) {
  memset(t, 0, sizeof *t);
  const char *dot = strchr(name, '.');
  const char *tbl = dot && !strncmp(name, "main.", 5) ? dot + 1 : name;
  char q[256], sql[400];
  quote(tbl, q, sizeof q);
  snprintf(t->qname, sizeof t->qname, "%s", q);
  snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", q);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
    return OD_FAIL_RETRY(err, OD_ESOURCE, "%s: reading the columns of %s: %s", s->where, tbl, sqlite3_errmsg(s->db));
  int n = 0, cap = 16, nkey = 0;
  t->rel.columns = calloc((size_t)cap, sizeof(od_column));
  while (t->rel.columns && sqlite3_step(st) == SQLITE_ROW) {
    if (n == cap) {
      od_column *nc = realloc(t->rel.columns, (size_t)cap * 2 * sizeof(od_column));
      if (!nc) break;
      memset(nc + cap, 0, (size_t)cap * sizeof(od_column));
      t->rel.columns = nc;
      cap *= 2;
    }
    od_column *c = &t->rel.columns[n++];
    c->name = dup((const char *)sqlite3_column_text(st, 1));
    map_type((const char *)sqlite3_column_text(st, 2), c);
    c->attnum = (int16_t)n;
    c->key = sqlite3_column_int(st, 5) > 0;
    nkey += c->key;
  }
  sqlite3_finalize(st);
  t->rel.ncolumns = (uint16_t)n;
  t->rel.schema = dup("public"); /* sinks name public tables by their own name (SQLite: "items") */
  t->rel.name = dup(tbl);
  t->rel.version = 1;
  t->rel.replica_identity = 'd';
  t->rel.has_primary_key = nkey > 0;
  t->wm_col = t->del_col = -1;
  if (!t->rel.columns || !t->rel.schema || !t->rel.name) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (n == 0) return OD_FAIL(err, OD_ESOURCE, "%s: table %s does not exist in %s; check source.tables", s->where, tbl, s->path);
  if (!nkey)
    return OD_FAIL(err, OD_ESOURCE, "%s: table %s has no PRIMARY KEY; polling matches rows by key: declare one or "
                   "leave the table out", s->where, tbl);
  for (int i = 0; i < n; i++) {
    if (strcmp(s->watermark, "rowid") && !strcmp(t->rel.columns[i].name, s->watermark)) t->wm_col = i;
    if (s->deleted_column && !strcmp(t->rel.columns[i].name, s->deleted_column)) t->del_col = i;
  }
  if (strcmp(s->watermark, "rowid") && t->wm_col < 0)
    return OD_FAIL(err, OD_ESOURCE, "%s: table %s has no column %s (source.watermark: an integer every write raises)",
                   s->where, tbl, s->watermark);
  if (s->deleted_column && t->del_col < 0)
    return OD_FAIL(err, OD_ESOURCE, "%s: table %s has no column %s (source.deleted_column)", s->where, tbl,
                   s->deleted_column);
  return OD_OK;
}

static int load_tables(sp_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  if (s->tables) return 0;
  if (!(s->tables = calloc((size_t)s->nnames, sizeof *s->tables))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  int fatal = 0;
  for (int i = 0; i < s->nnames; i++) {
    od_error e = {0};
    int rc = describe(s, s->names[i], &s->tables[i], &e);
    s->ntables = i + 1;
    if (rc) {
      if (!problem || e.retriable) {
        *err = e;
        return rc;
      }
      problem(ctx, true, e.msg);
      fatal++;
    }
  }
  return fatal;
}

static int sp_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  sp_source *s = (sp_source *)base;
  int rc = connect_db(s, err);
  if (rc) return rc;
  return load_tables(s, problem, ctx, err);
}

static int sp_tables(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                     void *ctx, od_error *err) {
  (void)err;
  sp_source *s = (sp_source *)base;
  for (int i = 0; i < s->nnames; i++) {
    const char *dot = strchr(s->names[i], '.');
    fn(ctx, "public", dot && !strncmp(s->names[i], "main.", 5) ? dot + 1 : s->names[i], true);
  }
  return OD_OK;
}

static int sp_start(od_source *base, const od_pos *from, od_error *err) {
  sp_source *s = (sp_source *)base;
  int rc = connect_db(s, err);
  if (!rc) rc = load_tables(s, NULL, NULL, err);
  if (rc) return rc;
  s->first = od_pos_is_none(from);
  for (int i = 0; i < s->ntables; i++) s->wm[i] = INT64_MIN;
  if (!s->first) {
    int n = od_sqlpoll_get(from, s->wm, SQLPOLL_MAX_TABLES);
    if (n != s->ntables)
      return OD_FAIL(err, OD_ECONFIG, "%s: the sinks hold watermarks for %d table(s) but source.tables lists %d; the "
                     "table list of a sqlite_poll pipeline cannot change (use a new pipeline name)", s->where, n,
                     s->ntables);
  }
  s->next_cycle_us = 0;
  od_info("%s: polling %d table(s) of %s by %s every %ld ms%s", s->where, s->ntables, s->path, s->watermark,
          s->interval_ms, s->first ? " (initial load first)" : "");
  return OD_OK;
}

typedef struct cycle {
  sp_source *s;
  const od_change_handler *h;
  od_txn_info txn;
  bool open;
  uint32_t index;
} cycle;

static int text_of(sqlite3_stmt *st, int col, od_value *v, char **scratch, size_t *scap) {
  int type = sqlite3_column_type(st, col);
  if (type == SQLITE_NULL) {
    *v = (od_value){.kind = OD_VALUE_NULL};
    return OD_OK;
  }
  if (type == SQLITE_TEXT) {
    *v = (od_value){.data = (const char *)sqlite3_column_text(st, col), .len = (uint32_t)sqlite3_column_bytes(st, col),
                    .kind = OD_VALUE_TEXT};
    return OD_OK;
  }
  size_t need = type == SQLITE_BLOB ? 3 + 2 * (size_t)sqlite3_column_bytes(st, col) : 40;
  if (need > *scap) {
    char *n = realloc(*scratch, need);
    if (!n) return OD_ENOMEM;
    *scratch = n;
    *scap = need;
  }
  char *b = *scratch;
  int len;
  if (type == SQLITE_INTEGER) {
    len = snprintf(b, need, "%lld", (long long)sqlite3_column_int64(st, col));
  } else if (type == SQLITE_FLOAT) {
    len = snprintf(b, need, "%.17g", sqlite3_column_double(st, col));
  } else {
    const unsigned char *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    static const char hex[] = "0123456789abcdef";
    b[0] = '\\', b[1] = 'x';
    for (int i = 0; i < n; i++) b[2 + 2 * i] = hex[p[i] >> 4], b[3 + 2 * i] = hex[p[i] & 15];
    len = 2 + 2 * n;
    b[len] = '\0';
  }
  *v = (od_value){.data = b, .len = (uint32_t)len, .kind = OD_VALUE_TEXT};
  return OD_OK;
}

static int read_table(cycle *c, int ti, int64_t *newwm, od_error *err) {
  sp_source *s = c->s;
  sp_table *t = &s->tables[ti];
  char wm[256], sql[2048];
  if (t->wm_col < 0) snprintf(wm, sizeof wm, "rowid");
  else quote(t->rel.columns[t->wm_col].name, wm, sizeof wm);
  /* The first cycle (initial load) also takes the rows whose watermark is NULL. */
  snprintf(sql, sizeof sql, "SELECT *, %s FROM %s WHERE %s > ?1%s%s%s ORDER BY %s", wm, t->qname, wm,
           s->first ? " OR " : "", s->first ? wm : "", s->first ? " IS NULL" : "", wm);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
    return OD_FAIL_RETRY(err, OD_ESOURCE, "%s: polling %s: %s", s->where, t->rel.name, sqlite3_errmsg(s->db));
  sqlite3_bind_int64(st, 1, s->wm[ti]);
  int n = t->rel.ncolumns, rc = OD_OK, step;
  od_value *vals = calloc((size_t)n * 2, sizeof *vals);
  char **scratch = calloc((size_t)n, sizeof(char *));
  size_t *scap = calloc((size_t)n, sizeof(size_t));
  if (!vals || !scratch || !scap) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
    if (sqlite3_column_type(st, n) != SQLITE_NULL) {
      int64_t w = sqlite3_column_int64(st, n);
      if (w > *newwm) *newwm = w;
    }
    for (int i = 0; i < n && !rc; i++)
      if (text_of(st, i, &vals[i], &scratch[i], &scap[i])) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    if (rc) break;
    if (!c->open) {
      c->txn.commit_time = od_now_us();
      if ((rc = c->h->begin(c->h->ctx, &c->txn, err))) break;
      c->open = true;
    }
    if (!t->announced) {
      if (c->h->relation && (rc = c->h->relation(c->h->ctx, &t->rel, err))) break;
      t->announced = true;
    }
    od_change ch = {.rel = &t->rel, .index = c->index++};
    bool deleted = t->del_col >= 0 && sqlite3_column_type(st, t->del_col) != SQLITE_NULL &&
                   sqlite3_column_int64(st, t->del_col) != 0;
    if (deleted) {
      for (int i = 0; i < n; i++) vals[n + i] = t->rel.columns[i].key ? vals[i] : (od_value){.kind = OD_VALUE_NULL};
      ch.op = OD_OP_DELETE;
      ch.old_kind = 'K';
      ch.oldtup = (od_tuple){.ncolumns = (uint16_t)n, .values = vals + n};
    } else {
      ch.op = OD_OP_READ;
      ch.newtup = (od_tuple){.ncolumns = (uint16_t)n, .values = vals};
    }
    rc = c->h->change(c->h->ctx, &c->txn, &ch, err);
  }
  if (!rc && step != SQLITE_DONE)
    rc = OD_FAIL_RETRY(err, OD_ESOURCE, "%s: polling %s: %s", s->where, t->rel.name, sqlite3_errmsg(s->db));
  sqlite3_finalize(st);
  for (int i = 0; scratch && i < n; i++) free(scratch[i]);
  free(scratch);
  free(scap);
  free(vals);
  return rc;
}

static int sp_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  sp_source *s = (sp_source *)base;
  if (!s->db) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: not open", s->where);
  if (!od_sleep_until_due(s->next_cycle_us, timeout_ms)) return OD_OK;
  int64_t now = od_mono_us();
  s->next_cycle_us = now + s->interval_ms * 1000;
  if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    return OD_FAIL_RETRY(err, OD_ESOURCE, "%s: BEGIN: %s", s->where, sqlite3_errmsg(s->db));
  cycle c = {.s = s, .h = h};
  c.txn.start = od_sqlpoll_pos(s->ntables, s->wm);
  int64_t newwm[SQLPOLL_MAX_TABLES];
  memcpy(newwm, s->wm, sizeof newwm);
  int rc = OD_OK;
  for (int i = 0; i < s->ntables && !rc; i++) rc = read_table(&c, i, &newwm[i], err);
  sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
  if (rc) return rc;
  od_pos end = od_sqlpoll_pos(s->ntables, newwm);
  if (c.open) {
    if (od_pos_eq(&end, &c.txn.start)) {
      /* Rows read but no watermark moved (the first cycle over NULL watermarks): make the end
       * position larger all the same, so the transaction rule holds; the values stay exact. */
      for (int i = 0; i < s->ntables; i++)
        if (newwm[i] == INT64_MIN) {
          newwm[i] = INT64_MIN + 1;
          break;
        }
      end = od_sqlpoll_pos(s->ntables, newwm);
    }
    c.txn.end = end;
    if ((rc = h->commit(h->ctx, &c.txn, err))) return rc;
  } else if (h->idle && !s->first) {
    if ((rc = h->idle(h->ctx, &end, err))) return rc;
  }
  memcpy(s->wm, newwm, sizeof newwm);
  s->first = false;
  return OD_OK;
}

static int sp_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)base, (void)durable, (void)force, (void)err;
  return OD_OK;
}

const od_source_ops od_source_sqlite_poll = {
    .type = "sqlite_poll",
    .position = &od_sqlpoll_position,
    .open = sp_open,
    .check = sp_check,
    .tables = sp_tables,
    .start = sp_start,
    .poll = sp_poll,
    .ack = sp_ack,
    .close = sp_close,
};
