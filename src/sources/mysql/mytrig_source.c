/* sources/mysql/mytrig_source.c — trigger-based capture of MariaDB (`type: mariadb_trigger`).
 *
 * Reads the change table that `odsync install-triggers` created (mytrig_install.c). The triggers
 * number changes with a one-row counter whose row lock a writer holds until it ends, so numbers
 * follow commit order, a transaction's changes are contiguous and a rolled-back transaction returns
 * its numbers (docs/adapters/mariadb_trigger.md has the argument). Each read is one InnoDB consistent
 * snapshot: it reads the counter M in that snapshot (the safe horizon: every change numbered <= M
 * belongs to a transaction that committed before the snapshot and is visible in it; the holder of
 * the next numbers is still open and invisible) and then the changes last < seq <= M in seq order.
 * Consecutive changes with the same txn value (CONNECTION_ID()/@@last_gtid) form one transaction.
 * Rows are stored as JSON arrays of text (mytrig_values.c) and turned into the forms of
 * docs/TYPES.md ("MariaDB") with the column types read from information_schema (my_catalog.c).
 *
 * Position: the change number (mytrig.h, "mytrig"). The first session (no checkpoint in any sink)
 * copies the captured tables in one consistent snapshot together with the counter M read in it
 * (transaction [0, M + 1)); the stream continues after M. ack() records what every sink holds; the
 * next poll() deletes those changes (prune). One pipeline per change table.
 *
 * Ownership: owns its settings, catalog, relation cache (relations live until close()), reader
 * connection, table descriptions and buffers. Borrows the config. Never touches sinks or queues.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/mysql/my_relcache.h"
#include "sources/mysql/mytrig.h"

extern const od_source_ops od_source_mariadb_trigger;

const char *const od_mytrig_config_keys[] = {"dsn",      "host",        "port",          "user",
                                             "password", "database",    "tables",        "snapshot",
                                             "interval_ms", "txns_per_poll", "prune_interval_ms", NULL};

typedef struct mt_source {
  od_source base;
  const char *pipeline;
  char where[500];
  my_settings set;
  my_catalog *cat;
  my_relcache *rels;
  MYSQL *conn;
  mytrig_table *tables;
  int ntables, maxcols;
  long txns_per_poll, prune_interval_ms, interval_ms;
  char *select_head; /* "SELECT seq, ..., JSON_VALUE(...) ... FROM odsync.changes" (built at start) */
  bool need_snapshot;
  uint64_t last;   /* highest change number delivered */
  uint64_t acked;  /* every sink holds the changes numbered < acked */
  uint64_t pruned; /* changes numbered < pruned were deleted */
  int64_t next_prune_us, next_read_us;
  char *buf; /* converted values of one change */
  size_t bufcap;
  od_value *vals; /* 2 * maxcols */
} mt_source;

static int mt_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  mt_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_mariadb_trigger;
  s->pipeline = pipeline;
  int rc = my_settings_load_keys(&s->set, cfg, pipeline, od_mytrig_config_keys, err);
  if (rc) {
    free(s);
    return rc;
  }
  snprintf(s->where, sizeof s->where, "pipeline %s: mariadb_trigger source %s", pipeline, s->set.where);
  if (!rc) rc = od_config_int(cfg, "txns_per_poll", 1000, 1, 1000000, &s->txns_per_poll, err);
  if (!rc) rc = od_config_int(cfg, "prune_interval_ms", 1000, 0, 86400000L, &s->prune_interval_ms, err);
  if (!rc) rc = od_config_int(cfg, "interval_ms", 100, 1, 86400000L, &s->interval_ms, err);
  if (!rc && !(s->cat = my_catalog_new(&s->set))) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (!rc && !(s->rels = my_relcache_new())) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (rc) {
    my_catalog_free(s->cat);
    my_settings_free(&s->set);
    free(s);
    return rc;
  }
  *out = &s->base;
  return OD_OK;
}

static void disconnect(mt_source *s) {
  if (s->conn) mysql_close(s->conn);
  s->conn = NULL;
  my_catalog_disconnect(s->cat);
}

static void drop_tables(mt_source *s) {
  mytrig_tables_free(s->tables, s->ntables);
  s->tables = NULL;
  s->ntables = 0;
  s->maxcols = 0;
}

static void mt_close(od_source *base) {
  mt_source *s = (mt_source *)base;
  if (!s) return;
  disconnect(s);
  drop_tables(s);
  my_catalog_free(s->cat);
  my_relcache_free(s->rels);
  my_settings_free(&s->set);
  free(s->select_head);
  free(s->buf);
  free(s->vals);
  free(s);
}

/* Run a query that returns one row of one column into buf; "" when it returns no row. */
static int scalar(mt_source *s, MYSQL *m, const char *sql, char *buf, size_t size, od_error *err) {
  if (mysql_query(m, sql)) return my_fail(&s->set, m, sql, err);
  MYSQL_RES *r = mysql_store_result(m);
  if (!r) return my_fail(&s->set, m, sql, err);
  MYSQL_ROW row = mysql_fetch_row(r);
  snprintf(buf, size, "%s", row && row[0] ? row[0] : "");
  mysql_free_result(r);
  return OD_OK;
}

/* Describe the captured tables and verify the capture objects; problem() per problem (or the first
 * as an error without problem). Returns the number of fatal problems. */
static int load(mt_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  MYSQL *m;
  int rc = my_catalog_conn(s->cat, &m, err), fatal = 0;
  char v[32], msg[1024];
  if (!rc) rc = scalar(s, m, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'odsync' AND "
                       "table_name IN ('counter', 'changes')", v, sizeof v, err);
  if (rc) return rc;
  if (strcmp(v, "2")) {
    snprintf(msg, sizeof msg, "%s: the change table odsync.changes does not exist in the source server: run "
             "`odsync install-triggers -c CONFIG` first", s->where);
    if (!problem) return OD_FAIL(err, OD_ESOURCE, "%s", msg);
    problem(ctx, true, msg);
    return 1;
  }
  drop_tables(s);
  if ((rc = mytrig_list_tables(&s->set, s->cat, &s->tables, &s->ntables, err))) return rc;
  if (s->ntables == 0) {
    snprintf(msg, sizeof msg, "%s: no table matches tables: (patterns db.table)", s->where);
    if (!problem) return OD_FAIL(err, OD_ECONFIG, "%s", msg);
    problem(ctx, true, msg);
    return 1;
  }
  for (int i = 0; i < s->ntables; i++) {
    mytrig_table *t = &s->tables[i];
    if (t->shape->ncols > s->maxcols) s->maxcols = t->shape->ncols;
    char sql[600], ni[80], nu[80], nd[80];
    mytrig_trigger_name(t->name, 'i', ni, sizeof ni);
    mytrig_trigger_name(t->name, 'u', nu, sizeof nu);
    mytrig_trigger_name(t->name, 'd', nd, sizeof nd);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM information_schema.triggers WHERE event_object_schema = '%s' AND "
             "event_object_table = '%s' AND trigger_name IN ('%s', '%s', '%s')", t->db, t->name, ni, nu, nd);
    if ((rc = scalar(s, m, sql, v, sizeof v, err))) return rc;
    if (!strcmp(v, "3")) continue;
    snprintf(msg, sizeof msg, "%s: table %s.%s has no capture triggers: run `odsync install-triggers -c CONFIG` "
             "(again after adding a table to tables:)", s->where, t->db, t->name);
    if (!problem) return OD_FAIL(err, OD_ESOURCE, "%s", msg);
    problem(ctx, true, msg);
    fatal++;
  }
  return fatal;
}

static int mt_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  mt_source *s = (mt_source *)base;
  int rc = load(s, problem, ctx, err);
  my_catalog_disconnect(s->cat);
  return rc;
}

static int mt_tables(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                     void *ctx, od_error *err) {
  mt_source *s = (mt_source *)base;
  mytrig_table *t;
  int n;
  int rc = mytrig_list_tables(&s->set, s->cat, &t, &n, err);
  if (rc) return rc;
  for (int i = 0; i < n; i++) fn(ctx, t[i].db, t[i].name, t[i].shape->has_key);
  mytrig_tables_free(t, n);
  my_catalog_disconnect(s->cat);
  return OD_OK;
}

static int build_select(mt_source *s, od_error *err) {
  free(s->select_head);
  size_t cap = 512 + (size_t)s->maxcols * 80, n = 0;
  if (!(s->select_head = malloc(cap))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  n += (size_t)snprintf(s->select_head + n, cap - n, "SELECT seq, txn, db, tbl, op, FLOOR(UNIX_TIMESTAMP(at) * 1000000), "
                        "JSON_LENGTH(new_row), JSON_LENGTH(old_row)");
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < s->maxcols; i++)
      n += (size_t)snprintf(s->select_head + n, cap - n, ", JSON_VALUE(%s, '$[%d]')", pass ? "old_row" : "new_row", i);
  snprintf(s->select_head + n, cap - n, " FROM odsync.changes");
  return OD_OK;
}

static int mt_start(od_source *base, const od_pos *from, od_error *err) {
  mt_source *s = (mt_source *)base;
  disconnect(s);
  if (!od_pos_is_none(from) && from->kind != &od_mytrig_position)
    return OD_FAIL(err, OD_EGAP, "%s: the sinks hold a position of another kind (%s); a pipeline cannot change its "
                   "source type: use a new pipeline name", s->where, from->kind->name);
  int rc = my_connect(&s->set, &s->conn, err);
  if (!rc) rc = load(s, NULL, NULL, err);
  my_catalog_disconnect(s->cat);
  if (!rc) rc = build_select(s, err);
  free(s->vals);
  s->vals = rc ? NULL : calloc((size_t)s->maxcols * 2 + 2, sizeof *s->vals);
  if (!rc && !s->vals) rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
  if (rc) {
    disconnect(s);
    return rc;
  }
  s->need_snapshot = od_pos_is_none(from) && s->set.snapshot_initial;
  uint64_t c = od_pos_is_none(from) ? 0 : od_pos_to_u64(from);
  s->last = c ? c - 1 : 0;
  if (c > s->acked) s->acked = c;
  s->next_read_us = 0;
  od_info("%s: capturing %d table(s) from %s", s->where, s->ntables,
          s->need_snapshot ? "an initial copy" : "the change table");
  return OD_OK;
}

/* ---- reading ---------------------------------------------------------------------------------- */

typedef struct reader {
  mt_source *s;
  const od_change_handler *h;
  od_txn_info txn;
  bool open;
  uint32_t index;
  uint64_t prev_seq;
  char txn_id[104];
} reader;

static int announce(reader *r, mytrig_table *t, od_error *err) {
  if (t->announced && t->rel) return OD_OK;
  bool is_new = false;
  int rc = my_relcache_get(r->s->rels, t->shape, &t->rel, &is_new, err);
  if (!rc && is_new && r->h->relation) rc = r->h->relation(r->h->ctx, t->rel, err);
  if (!rc) t->announced = true;
  return rc;
}

static mytrig_table *table_of(mt_source *s, const char *db, const char *name) {
  for (int i = 0; i < s->ntables; i++)
    if (!strcmp(s->tables[i].db, db) && !strcmp(s->tables[i].name, name)) return &s->tables[i];
  return NULL;
}

static int reserve(mt_source *s, size_t need, od_error *err) {
  if (need <= s->bufcap) return OD_OK;
  size_t cap = s->bufcap ? s->bufcap : 65536;
  while (cap < need) cap *= 2;
  char *b = realloc(s->buf, cap);
  if (!b) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->buf = b;
  s->bufcap = cap;
  return OD_OK;
}

/* Convert the stored texts row[0..n) (lengths len) of table t into vals, text in s->buf from *off. */
static bool convert(mt_source *s, const mytrig_table *t, char **row, unsigned long *len, od_value *vals,
                    size_t *off) {
  for (int c = 0; c < t->shape->ncols; c++) {
    if (!row[c]) {
      vals[c] = (od_value){.kind = OD_VALUE_NULL};
      continue;
    }
    long k = mytrig_value(&t->shape->cols[c], row[c], len[c], s->buf + *off, s->bufcap - *off);
    if (k < 0) return false;
    vals[c] = (od_value){.data = s->buf + *off, .len = (uint32_t)k, .kind = OD_VALUE_TEXT};
    *off += (size_t)k + 1;
  }
  return true;
}

static int close_txn(reader *r, od_error *err) {
  if (!r->open) return OD_OK;
  r->open = false;
  r->txn.end = od_pos_from_u64(&od_mytrig_position, r->prev_seq + 1);
  int rc = r->h->commit(r->h->ctx, &r->txn, err);
  if (!rc) r->s->last = r->prev_seq;
  return rc;
}

enum { C_SEQ, C_TXN, C_DB, C_TBL, C_OP, C_AT, C_NLEN, C_OLEN, C_VALS };

/* One row of the change query. */
static int change_row(reader *r, MYSQL_ROW row, unsigned long *len, od_error *err) {
  mt_source *s = r->s;
  uint64_t seq = strtoull(row[C_SEQ], NULL, 10);
  int rc;
  if (!r->open) {
    r->txn = (od_txn_info){0};
    r->txn.start = od_pos_from_u64(&od_mytrig_position, seq);
    r->txn.commit_time = strtoll(row[C_AT], NULL, 10);
    r->index = 0;
    snprintf(r->txn_id, sizeof r->txn_id, "%s", row[C_TXN]);
    if ((rc = r->h->begin(r->h->ctx, &r->txn, err))) return rc;
    r->open = true;
  }
  r->prev_seq = seq;
  mytrig_table *t = table_of(s, row[C_DB], row[C_TBL]);
  if (!t) return OD_OK; /* a table left out of tables: since the install */
  if ((rc = announce(r, t, err))) return rc;
  char op = row[C_OP][0];
  int ncols = t->shape->ncols;
  bool has_new = op != 'D', has_old = op != 'I';
  if ((has_new && (!row[C_NLEN] || atoi(row[C_NLEN]) != ncols)) || (has_old && (!row[C_OLEN] || atoi(row[C_OLEN]) != ncols)))
    return OD_FAIL(err, OD_ESCHEMA, "%s: change %" PRIu64 " of %s.%s has %s values but the table has %d columns: the "
                   "table was altered after install-triggers; run `odsync install-triggers -c CONFIG` again after "
                   "every ALTER TABLE of a captured table, then restart odsync",
                   s->where, seq, t->db, t->name, has_new ? row[C_NLEN] ? row[C_NLEN] : "no" : row[C_OLEN] ? row[C_OLEN] : "no", ncols);
  size_t need = 0;
  for (int i = 0; i < 2 * s->maxcols; i++) need += len[C_VALS + i] + 64;
  if ((rc = reserve(s, need, err))) return rc;
  size_t off = 0;
  od_value *nv = s->vals, *ov = s->vals + s->maxcols;
  bool ok = (!has_new || convert(s, t, row + C_VALS, len + C_VALS, nv, &off)) &&
            (!has_old || convert(s, t, row + C_VALS + s->maxcols, len + C_VALS + s->maxcols, ov, &off));
  if (!ok)
    return OD_FAIL(err, OD_EPROTOCOL, "%s: change %" PRIu64 " of %s.%s holds a value that is not in the form the "
                   "triggers write (was the change table edited by hand?)", s->where, seq, t->db, t->name);
  od_change ch = {0};
  ch.rel = t->rel;
  ch.index = r->index++;
  ch.op = op == 'I' ? OD_OP_INSERT : op == 'U' ? OD_OP_UPDATE : OD_OP_DELETE;
  if (has_new) ch.newtup = (od_tuple){.ncolumns = (uint16_t)ncols, .values = nv};
  if (has_old) {
    ch.old_kind = 'O';
    ch.oldtup = (od_tuple){.ncolumns = (uint16_t)ncols, .values = ov};
  }
  return r->h->change(r->h->ctx, &r->txn, &ch, err);
}

/* A consistent snapshot and the counter read in it: every change numbered <= *m is visible in it. */
static int snapshot(mt_source *s, uint64_t *m, od_error *err) {
  char v[32];
  int rc = my_exec(&s->set, s->conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", err);
  if (!rc) rc = my_exec(&s->set, s->conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", err);
  if (!rc) rc = scalar(s, s->conn, "SELECT n FROM odsync.counter WHERE id = 1", v, sizeof v, err);
  if (!rc && !v[0])
    rc = OD_FAIL(err, OD_ESOURCE, "%s: odsync.counter has no row: run `odsync install-triggers -c CONFIG`", s->where);
  if (!rc) *m = strtoull(v, NULL, 10);
  return rc;
}

/* The first session: every captured table and the counter M in one consistent snapshot. */
static int initial_copy(mt_source *s, reader *r, od_error *err) {
  uint64_t m = 0;
  int rc = snapshot(s, &m, err);
  if (rc) return rc;
  r->txn = (od_txn_info){0};
  r->txn.start = od_pos_from_u64(&od_mytrig_position, 0);
  r->txn.commit_time = od_now_us();
  if ((rc = r->h->begin(r->h->ctx, &r->txn, err))) return rc;
  uint32_t index = 0;
  for (int k = 0; k < s->ntables && !rc; k++) {
    mytrig_table *t = &s->tables[k];
    if ((rc = announce(r, t, err))) break;
    size_t cap = 256 + (size_t)t->shape->ncols * 700, n = 0;
    char *sql = malloc(cap);
    if (!sql) {
      rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
      break;
    }
    n += (size_t)snprintf(sql, cap, "SELECT ");
    for (int i = 0; i < t->shape->ncols; i++) {
      if (i) sql[n++] = ',';
      n += (size_t)mytrig_column_expr(&t->shape->cols[i], "t", sql + n, cap - n);
    }
    snprintf(sql + n, cap - n, " FROM `%s`.`%s` AS t", t->db, t->name);
    if (mysql_query(s->conn, sql)) rc = my_fail(&s->set, s->conn, "initial copy: reading a table", err);
    free(sql);
    MYSQL_RES *res = rc ? NULL : mysql_use_result(s->conn);
    if (!rc && !res) rc = my_fail(&s->set, s->conn, "initial copy: reading a table", err);
    MYSQL_ROW row;
    while (!rc && (row = mysql_fetch_row(res))) {
      unsigned long *len = mysql_fetch_lengths(res);
      size_t need = 0, off = 0;
      for (int i = 0; i < t->shape->ncols; i++) need += len[i] + 64;
      if ((rc = reserve(s, need, err))) break;
      if (!convert(s, t, row, len, s->vals, &off)) {
        rc = OD_FAIL(err, OD_EPROTOCOL, "%s: initial copy of %s.%s: a value has an unexpected form", s->where, t->db,
                     t->name);
        break;
      }
      od_change ch = {.op = OD_OP_READ, .rel = t->rel, .index = index++};
      ch.newtup = (od_tuple){.ncolumns = (uint16_t)t->shape->ncols, .values = s->vals};
      rc = r->h->change(r->h->ctx, &r->txn, &ch, err);
    }
    if (!rc && res && mysql_errno(s->conn)) rc = my_fail(&s->set, s->conn, "initial copy: reading a table", err);
    if (res) mysql_free_result(res);
  }
  if (!rc) rc = my_exec(&s->set, s->conn, "COMMIT", err);
  if (rc) return rc;
  r->txn.end = od_pos_from_u64(&od_mytrig_position, m + 1);
  if ((rc = r->h->commit(r->h->ctx, &r->txn, err))) return rc;
  s->last = m;
  s->need_snapshot = false;
  od_info("%s: initial copy of %d table(s) done (%u rows); changes follow after change %" PRIu64, s->where,
          s->ntables, index, m);
  return OD_OK;
}

/* Delete what every sink holds (autocommit, outside any read). Writers insert above the largest
 * number, so the DELETE's next-key locks meet them at most on the gap after the last row, for the
 * DELETE's instant; no cycle is possible (the DELETE waits for no lock a writer holds but rows it
 * deletes, which are committed). */
static int prune(mt_source *s, od_error *err) {
  if (s->acked <= s->pruned || s->acked <= 1) return OD_OK;
  int64_t now = od_mono_us();
  if (now < s->next_prune_us) return OD_OK;
  s->next_prune_us = now + s->prune_interval_ms * 1000;
  char sql[200];
  snprintf(sql, sizeof sql, "DELETE FROM odsync.changes WHERE seq < %" PRIu64, s->acked);
  int rc = my_exec(&s->set, s->conn, sql, err);
  if (!rc) s->pruned = s->acked;
  return rc;
}

static int read_changes(mt_source *s, reader *r, bool *caught_up, od_error *err) {
  uint64_t m = 0;
  *caught_up = true;
  int rc = snapshot(s, &m, err);
  if (!rc && m > s->last) {
    size_t need = strlen(s->select_head) + 200;
    char *sql = malloc(need);
    if (!sql) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    snprintf(sql, need, "%s WHERE seq > %" PRIu64 " AND seq <= %" PRIu64 " ORDER BY seq", s->select_head, s->last, m);
    if (mysql_query(s->conn, sql)) rc = my_fail(&s->set, s->conn, "reading odsync.changes", err);
    free(sql);
    MYSQL_RES *res = rc ? NULL : mysql_use_result(s->conn);
    if (!rc && !res) rc = my_fail(&s->set, s->conn, "reading odsync.changes", err);
    long ntx = 0;
    MYSQL_ROW row;
    while (!rc && (row = mysql_fetch_row(res))) {
      if (r->open && strcmp(r->txn_id, row[C_TXN]) != 0) {
        if ((rc = close_txn(r, err))) break;
        if (++ntx >= s->txns_per_poll) {
          *caught_up = false;
          break;
        }
      }
      rc = change_row(r, row, mysql_fetch_lengths(res), err);
    }
    if (!rc && *caught_up && res && mysql_errno(s->conn)) rc = my_fail(&s->set, s->conn, "reading odsync.changes", err);
    if (res) mysql_free_result(res); /* reads what is left when stopped early */
    if (!rc) rc = close_txn(r, err);
  }
  if (!rc) rc = my_exec(&s->set, s->conn, "COMMIT", err);
  return rc;
}

static int mt_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  mt_source *s = (mt_source *)base;
  if (!s->conn) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: not connected", s->where);
  if (!od_sleep_until_due(s->next_read_us, timeout_ms)) return OD_OK;
  reader r = {.s = s, .h = h};
  bool caught_up = false;
  int rc = prune(s, err);
  if (!rc && s->need_snapshot) rc = initial_copy(s, &r, err);
  else if (!rc) rc = read_changes(s, &r, &caught_up, err);
  if (rc && s->conn) {
    /* leave no transaction open; a lost connection makes the pipeline call start() again */
    if (mysql_query(s->conn, "ROLLBACK") == 0) mysql_free_result(mysql_store_result(s->conn));
  }
  if (rc) return rc;
  if (caught_up) {
    s->next_read_us = od_mono_us() + s->interval_ms * 1000;
    od_pos idle = od_pos_from_u64(&od_mytrig_position, s->last + 1);
    if (h->idle) rc = h->idle(h->ctx, &idle, err);
  }
  return rc;
}

static int mt_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)force, (void)err;
  mt_source *s = (mt_source *)base;
  if (!od_pos_is_none(durable) && durable->kind == &od_mytrig_position) {
    uint64_t c = od_pos_to_u64(durable);
    if (c > s->acked) s->acked = c; /* pruned by the next poll(), outside its read */
  }
  return OD_OK;
}

const od_source_ops od_source_mariadb_trigger = {
    .type = "mariadb_trigger",
    .position = &od_mytrig_position,
    .open = mt_open,
    .check = mt_check,
    .tables = mt_tables,
    .start = mt_start,
    .poll = mt_poll,
    .ack = mt_ack,
    .close = mt_close,
};
