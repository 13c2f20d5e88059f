/* sources/poll/pg_poll.c — query-based polling of PostgreSQL (`type: postgres_poll`).
 *
 * Each poll cycle reads, inside one REPEATABLE READ READ ONLY transaction, the rows of every
 * captured table whose watermark lies in [previous horizon, new horizon), through a server-side
 * cursor (FETCH fetch_rows at a time, so memory is bounded by a page), and delivers them as ONE
 * source transaction of upserts (OD_OP_READ; a row whose deleted_column is true is a delete by key).
 * The initial load is cut into transactions of load_chunk_rows rows whose positions carry the last
 * delivered key: a restart resumes after it by keyset pagination, and the load ends at its first
 * snapshot's horizon (whatever changed since is read again by the next cycles).
 * The cycle's position is its horizon (poll_position.h); the sinks store it in their checkpoint with
 * the data, so a restart resumes at the last horizon a sink holds and re-reads nothing it has
 * (a replayed range reads the rows' current state again: the same final state).
 *
 * The horizon never passes a write that could still become visible below it (the late-commit hole):
 *  - watermark: xmin — H = pg_snapshot_xmin(pg_current_snapshot()) of the cycle's own snapshot:
 *    every transaction id below H has ended, so every row version with xmin < H that will ever be
 *    visible is visible now. The row's 32-bit xmin is widened to the 64-bit xid8 relative to H
 *    (rows are never 2^31 transactions newer than H; older ones were read by an earlier cycle).
 *  - watermark: <timestamp column> — H = min(clock_timestamp() - lag_ms, the earliest xact_start of any
 *    other open transaction), read BEFORE the cycle's snapshot is taken. A transaction that is not
 *    visible to the snapshot was open at that read (so H <= its start) or began after it (so its
 *    start >= the read >= H); a watermark written by the server's clock inside that transaction
 *    (now(), clock_timestamp(), a trigger) is >= its start, so it lands at or above H and a later cycle
 *    reads it. lag_ms covers watermarks set by a client clock up to lag_ms behind the server's.
 * What it cannot see: hard DELETEs (found by reconciliation cycles: key-range checksums against the
 * delivered-key ledger, poll_reconcile.h / poll_keys.h, or a full reload; or use deleted_column),
 * intermediate versions between two polls, rows whose watermark is not advanced by a write (NULL, or
 * set by a client clock more than lag_ms behind).
 *
 * Ownership: owns its settings, connection, table descriptions (relations live until close()) and
 * the key ledger.
 * Borrows the config section. Never touches sinks or the pipeline's queue.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/poll/poll_keys.h"
#include "sources/poll/poll_position.h"
#include "sources/poll/poll_reconcile.h"
#include "sources/poll/pq_util.h"

extern const od_source_ops od_source_postgres_poll;

typedef struct pp_source {
  od_source base;
  const char *pipeline;
  char where[160];
  const char *dsn;
  char *const *names;
  int nnames;
  const char *watermark; /* "xmin" or a column name */
  char mode;             /* 'x' or 't' */
  long lag_ms, interval_ms, fetch_rows;
  long reconcile_ms;      /* 0: never; else a reconciliation cycle at most this often */
  bool reconcile_reload;  /* reconcile_mode: reload (truncate and re-read); else checksum */
  long reconcile_chunk_rows;
  char ledger_path[1024];  /* checksum mode: <state_dir>/postgres_poll/<pipeline>.keys */
  bool ledger_on;          /* checksum mode: the ledger is loaded and every delivered key goes into it */
  bool ledger_trusted;     /* else the next reconciliation is a full reload that makes it so */
  pk_ledger ledger;
  od_metric **m_recon;     /* per table: chunks equal, chunks fetched, deletes (3 series each); owned array */
  long load_chunk_rows;  /* initial load: a source transaction per this many rows (0: one) */
  uint64_t load_seq;     /* initial load: the number of the next chunk transaction */
  uint64_t load_horizon; /* initial load: the horizon it ends at (its first snapshot's, across restarts) */
  int resume_table;      /* initial load: resume in this table after resume_key; -1: from the start */
  char resume_key[OD_POS_MAX];
  size_t resume_keylen;
  int64_t next_reconcile_us;
  const char *deleted_column;
  PGconn *conn;
  pq_table *tables;
  int ntables;
  od_value *vals;          /* scratch for one row's values (new and old), reused by every read; owned */
  size_t nvals;
  bool have_horizon;
  uint64_t horizon;
  od_pos last;           /* the end of the last cycle delivered (the next one starts there) */
  int64_t next_cycle_us; /* monotonic */
  uint64_t cycles;
} pp_source;

static const char *const allowed_keys[] = {"dsn", "tables", "watermark", "lag_ms", "interval_ms", "fetch_rows",
                                           "deleted_column", "reconcile_interval_ms", "reconcile_mode",
                                           "reconcile_chunk_rows", "load_chunk_rows", "reconnect_max_ms", NULL};

static int pp_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  pp_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_postgres_poll;
  s->pipeline = pipeline;
  snprintf(s->where, sizeof s->where, "pipeline %s: postgres_poll source", pipeline);
  int rc = od_config_check_keys(cfg, allowed_keys, err);
  if (!rc) rc = od_config_require_string(cfg, "dsn", &s->dsn, err);
  if (!rc) rc = od_config_list(cfg, "tables", &s->names, &s->nnames, err);
  if (!rc && s->nnames == 0)
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: postgres_poll needs `tables:` (the tables to poll, schema.table)",
                 cfg->file, cfg->line, cfg->col, cfg->path);
  if (!rc) rc = od_config_string(cfg, "watermark", "xmin", &s->watermark, err);
  if (!rc) rc = od_config_int(cfg, "lag_ms", 5000, 0, 86400000L, &s->lag_ms, err);
  if (!rc) rc = od_config_int(cfg, "interval_ms", 1000, 10, 86400000L, &s->interval_ms, err);
  if (!rc) rc = od_config_int(cfg, "fetch_rows", 5000, 1, 1000000, &s->fetch_rows, err);
  if (!rc) rc = od_config_string(cfg, "deleted_column", NULL, &s->deleted_column, err);
  if (!rc) rc = od_config_int(cfg, "reconcile_interval_ms", 0, 0, 604800000L, &s->reconcile_ms, err);
  if (!rc) rc = od_config_int(cfg, "load_chunk_rows", 100000, 0, 100000000L, &s->load_chunk_rows, err);
  const char *mode = NULL;
  if (!rc) rc = od_config_string(cfg, "reconcile_mode", "checksum", &mode, err);
  if (!rc && strcmp(mode, "checksum") && strcmp(mode, "reload"))
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.reconcile_mode: '%s' is not a mode; use checksum (compare key-range "
                 "checksums, fetch only differing chunks) or reload (truncate and re-read every table)",
                 cfg->file, cfg->line, cfg->col, cfg->path, mode);
  if (!rc) rc = od_config_int(cfg, "reconcile_chunk_rows", 1000, 1, 10000000L, &s->reconcile_chunk_rows, err);
  if (rc) {
    free(s);
    return rc;
  }
  s->mode = strcmp(s->watermark, "xmin") ? 't' : 'x';
  s->reconcile_reload = !strcmp(mode, "reload");
  snprintf(s->ledger_path, sizeof s->ledger_path, "%s/postgres_poll/%s.keys",
           cfg->state_dir ? cfg->state_dir : "./odsync-state", pipeline);
  pk_init(&s->ledger, s->ledger_path);
  *out = &s->base;
  return OD_OK;
}

static void disconnect(pp_source *s) {
  if (s->conn) PQfinish(s->conn);
  s->conn = NULL;
}

static void free_tables(pp_source *s) {
  for (int i = 0; i < s->ntables; i++) pq_table_free(&s->tables[i]);
  free(s->tables);
  s->tables = NULL;
  s->ntables = 0;
}

static void pp_close(od_source *base) {
  pp_source *s = (pp_source *)base;
  if (!s) return;
  disconnect(s);
  free_tables(s);
  pk_free(&s->ledger);
  free(s->m_recon);
  free(s->vals);
  free(s);
}

/* Describe every table and check its watermark and soft-delete columns. problem: report instead of
 * failing (check()); returns the number of fatal problems then. */
static int load_tables(pp_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  if (s->tables) return 0; /* once per source object: the pipeline keeps pointers to the relations */
  s->tables = calloc((size_t)s->nnames, sizeof *s->tables);
  if (!s->tables) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  int fatal = 0;
  for (int i = 0; i < s->nnames; i++) {
    pq_table *t = &s->tables[s->ntables];
    od_error e = {0};
    int rc = pq_describe(s->conn, s->names[i], t, s->where, &e);
    if (!rc && s->mode == 't') {
      t->wm_col = pq_column(t, s->watermark);
      const char *type = t->wm_col >= 0 ? t->rel.columns[t->wm_col].type_name : "";
      if (t->wm_col < 0)
        rc = OD_FAIL(&e, OD_ESOURCE, "%s: table %s has no column %s (source.watermark); name a timestamptz column "
                     "every write sets (e.g. updated_at maintained by a trigger), or use watermark: xmin",
                     s->where, t->display, s->watermark);
      else if (strcmp(type, "timestamp with time zone") && strcmp(type, "timestamp without time zone"))
        rc = OD_FAIL(&e, OD_ESOURCE, "%s: table %s: watermark column %s is of type %s; it must be a timestamp "
                     "(timestamptz) set by every write, or use watermark: xmin", s->where, t->display, s->watermark,
                     type);
    }
    if (!rc && s->deleted_column) {
      t->del_col = pq_column(t, s->deleted_column);
      if (t->del_col < 0 || strcmp(t->rel.columns[t->del_col].type_name, "boolean"))
        rc = OD_FAIL(&e, OD_ESOURCE, "%s: table %s has no boolean column %s (source.deleted_column)", s->where,
                     t->display, s->deleted_column);
    }
    if (rc) {
      pq_table_free(t);
      if (!problem || e.retriable) {
        *err = e;
        return rc;
      }
      problem(ctx, true, e.msg);
      fatal++;
      continue;
    }
    s->ntables++;
  }
  return fatal;
}

static int pp_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  pp_source *s = (pp_source *)base;
  int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
  if (rc) return rc;
  int fatal = load_tables(s, problem, ctx, err);
  int e = s->reconcile_ms > 0 && !s->reconcile_reload ? pk_dir_ready(s->ledger_path) : 0;
  if (fatal >= 0 && e) {
    char msg[1400];
    snprintf(msg, sizeof msg, "%s: the key ledger of checksum reconciliation, %s, cannot be written (%s); fix state_dir "
             "or its permissions, or set reconcile_mode: reload", s->where, s->ledger_path, strerror(e));
    problem(ctx, true, msg);
    fatal++;
  }
  if (fatal >= 0 && s->mode == 't') {
    PGresult *r = pq_run(s->conn,
                         "SELECT usesuper OR pg_has_role(current_user, 'pg_read_all_stats', 'member') FROM pg_user "
                         "WHERE usename = current_user", 0, NULL, s->where, err);
    if (r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] != 't') {
      char msg[600];
      snprintf(msg, sizeof msg, "%s: the user cannot read other sessions' transaction start times (grant it "
               "pg_read_all_stats): the horizon then only trails the clock by lag_ms, and a transaction longer "
               "than lag_ms that sets %s can be missed", s->where, s->watermark);
      problem(ctx, false, msg);
    }
    PQclear(r);
  }
  disconnect(s);
  return fatal;
}

static int pp_tables(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                     void *ctx, od_error *err) {
  pp_source *s = (pp_source *)base;
  bool own = !s->conn;
  if (own) {
    int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
    if (rc) return rc;
  }
  for (int i = 0; i < s->nnames; i++) {
    pq_table t;
    int rc = pq_describe(s->conn, s->names[i], &t, s->where, err);
    if (rc) {
      if (own) disconnect(s);
      return rc;
    }
    fn(ctx, t.rel.schema, t.rel.name, true);
    pq_table_free(&t);
  }
  if (own) disconnect(s);
  return OD_OK;
}

/* The resume key names a table of the list and has one NUL-ended part per key column. */
static bool resume_key_valid(pp_source *s) {
  if (s->resume_table >= s->ntables || !s->resume_keylen || s->resume_key[s->resume_keylen - 1]) return false;
  int parts = 0;
  for (size_t i = 0; i < s->resume_keylen; i++) parts += !s->resume_key[i];
  return parts == s->tables[s->resume_table].nkey;
}

/* Checksum reconciliation: (re)load the delivered-key ledger for the position the sinks hold. */
static int ledger_load(pp_source *s, const od_pos *from, od_error *err) {
  if (!s->ledger.ntables) {
    for (int i = 0; i < s->ntables; i++) {
      pq_table *t = &s->tables[i];
      bool numeric[PK_MAX_PARTS] = {0};
      int k = 0;
      for (int c = 0; c < t->rel.ncolumns; c++)
        if (t->rel.columns[c].key && k < PK_MAX_PARTS) numeric[k++] = pr_numeric_type(t->rel.columns[c].type_name);
      int rc = pk_add_table(&s->ledger, t->display, t->nkey, numeric, err);
      if (rc) {
        pk_free(&s->ledger);
        pk_init(&s->ledger, s->ledger_path);
        return rc;
      }
    }
  }
  if (!s->m_recon && (s->m_recon = calloc((size_t)s->ntables * 3, sizeof *s->m_recon))) {
    static const char *const cl[] = {"pipeline", "table", "result", NULL}, *const dl[] = {"pipeline", "table", NULL};
    static const od_metric_family_def cdef = {
        .name = "odsync_poll_reconcile_chunks_total",
        .help = "postgres_poll checksum reconciliation: key-range chunks compared, by result (equal, fetched)",
        .type = OD_METRIC_COUNTER, .labels = cl};
    static const od_metric_family_def ddef = {
        .name = "odsync_poll_reconcile_deletes_total",
        .help = "postgres_poll checksum reconciliation: hard deletes found (keys delivered that the source no longer has)",
        .type = OD_METRIC_COUNTER, .labels = dl};
    od_metric_family *fc = od_metrics_family(od_metrics_global(), &cdef);
    od_metric_family *fd = od_metrics_family(od_metrics_global(), &ddef);
    for (int i = 0; i < s->ntables; i++) {
      const char *eq[] = {s->pipeline, s->tables[i].display, "equal"}, *fe[] = {s->pipeline, s->tables[i].display, "fetched"};
      const char *dv[] = {s->pipeline, s->tables[i].display};
      s->m_recon[3 * i] = fc ? od_metrics_series(fc, eq) : NULL;
      s->m_recon[3 * i + 1] = fc ? od_metrics_series(fc, fe) : NULL;
      s->m_recon[3 * i + 2] = fd ? od_metrics_series(fd, dv) : NULL;
    }
  }
  s->ledger_on = false;
  int rc = pk_load(&s->ledger, from, &od_pgpoll_position, &s->ledger_trusted, err);
  if (rc) return rc;
  s->ledger_on = true;
  if (!s->ledger_trusted) s->next_reconcile_us = 0; /* the first cycle reloads, which makes it trusted */
  return OD_OK;
}

static int pp_start(od_source *base, const od_pos *from, od_error *err) {
  pp_source *s = (pp_source *)base;
  disconnect(s);
  s->have_horizon = false;
  s->resume_table = -1;
  s->last = od_pgpoll_pos('i', s->load_seq);
  if (!od_pos_is_none(from)) {
    char mode;
    uint64_t v;
    if (!od_pgpoll_get(from, &mode, &v))
      return OD_FAIL(err, OD_EGAP, "%s: the sinks hold a position of another kind (%s); a pipeline cannot change its "
                     "source type: use a new pipeline name", s->where, from->kind ? from->kind->name : "?");
    if (mode == 'i') { /* an initial load was cut short: it resumes after its last key, or starts over */
      s->load_seq = v;
      s->last = *from;
      const uint8_t *key;
      uint16_t table;
      if (od_pgpoll_load_resume(from, &s->load_horizon, &table, &key, &s->resume_keylen)) {
        s->resume_table = table;
        memcpy(s->resume_key, key, s->resume_keylen);
      }
    } else if (mode != s->mode)
      return OD_FAIL(err, OD_ECONFIG, "%s: the sinks hold a %s horizon but source.watermark is %s; the watermark of "
                     "a pipeline cannot change (use a new pipeline name to start over)", s->where,
                     mode == 'x' ? "xmin" : "timestamp", s->watermark);
    else {
      s->horizon = v;
      s->have_horizon = true;
      s->last = *from;
    }
  }
  int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
  if (rc) return rc;
  rc = load_tables(s, NULL, NULL, err);
  if (rc) {
    free_tables(s);
    disconnect(s);
    return rc;
  }
  if (s->reconcile_ms > 0 && !s->reconcile_reload && (rc = ledger_load(s, from, err))) {
    disconnect(s);
    return rc;
  }
  if (s->resume_table >= 0 && !resume_key_valid(s)) {
    od_warn("%s: the initial load's resume point (table %d) does not match the tables; the load starts over", s->where,
            s->resume_table);
    s->resume_table = -1;
  }
  s->next_cycle_us = 0;
  char buf[64];
  od_info("%s: polling %d table(s) by %s every %ld ms, from %s", s->where, s->ntables, s->watermark, s->interval_ms,
          s->have_horizon ? od_pos_display(from, buf, sizeof buf) : "the beginning (initial load)");
  return OD_OK;
}

/* ---- one cycle ---------------------------------------------------------------------------------- */

typedef struct cycle {
  pp_source *s;
  const od_change_handler *h;
  od_txn_info txn;
  bool open;
  bool chunking;   /* initial load cut into transactions of load_chunk_rows */
  uint32_t index;  /* of the next change in the open transaction */
  uint64_t rows;
} cycle;

/* The source's scratch for one row of t: 2 × its columns (new values, then old), zeroed; NULL when
 * out of memory. Valid until the next call. */
static od_value *row_vals(pp_source *s, const pq_table *t) {
  size_t n = t->rel.ncolumns * 2u;
  if (n > s->nvals) {
    od_value *grown = realloc(s->vals, n * sizeof *grown);
    if (!grown) return NULL;
    s->vals = grown;
    s->nvals = n;
  }
  memset(s->vals, 0, n * sizeof *s->vals);
  return s->vals;
}

static int64_t scalar_i64(PGresult *r) { return PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0; }

/* The condition on a table's rows for the range [lo, hi) ("" on the first cycle: every row). */
static void range_sql(pp_source *s, pq_table *t, bool first, uint64_t lo, uint64_t hi, char *out, size_t size) {
  if (first) { /* the initial load and reconciliation cycles read every row, whatever its watermark */
    snprintf(out, size, "true");
    return;
  }
  if (s->mode == 'x') {
    /* d = how far (mod 2^32) the row's xmin lies below hi; its xid8 is hi - d when d <= 2^31. */
    const char *d = "((%" PRIu64 "::bigint - xmin::text::bigint + 4294967296) %% 4294967296)";
    char dexpr[128];
    snprintf(dexpr, sizeof dexpr, d, hi % 4294967296ULL);
    uint64_t span = hi - lo;
    if (span > 2147483648ULL) span = 2147483648ULL;
    snprintf(out, size, "%s BETWEEN 1 AND %" PRIu64, dexpr, span);
    return;
  }
  char col[200];
  pq_quote_ident(t->rel.columns[t->wm_col].name, col, sizeof col);
  snprintf(out, size,
           "%s >= 'epoch'::timestamptz + %" PRIu64 " * interval '1 microsecond' AND %s < 'epoch'::timestamptz + %" PRIu64
           " * interval '1 microsecond'", col, lo, col, hi);
}

/* Record the key of row `row` of r (all of t's columns) in the delivered-key ledger. */
static int ledger_add(pp_source *s, pq_table *t, PGresult *r, int row, od_error *err) {
  const char *parts[PK_MAX_PARTS];
  int k = 0;
  for (int i = 0; i < t->rel.ncolumns && k < PK_MAX_PARTS; i++)
    if (t->rel.columns[i].key) parts[k++] = PQgetvalue(r, row, i);
  return pk_add(&s->ledger, (int)(t - s->tables), parts, err);
}

static int deliver_row(cycle *c, pq_table *t, PGresult *r, int row, od_value *vals, od_value *keyvals, od_error *err) {
  pp_source *s = c->s;
  int rc;
  if (!c->open) {
    c->txn.commit_time = od_now_us();
    if ((rc = c->h->begin(c->h->ctx, &c->txn, err))) return rc;
    c->open = true;
  }
  if (!t->announced) {
    if (c->h->relation && (rc = c->h->relation(c->h->ctx, &t->rel, err))) return rc;
    t->announced = true;
  }
  uint16_t n = t->rel.ncolumns;
  for (int i = 0; i < n; i++) {
    if (PQgetisnull(r, row, i)) {
      vals[i] = (od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL};
    } else {
      vals[i] = (od_value){.data = PQgetvalue(r, row, i), .len = (uint32_t)PQgetlength(r, row, i), .kind = OD_VALUE_TEXT};
    }
  }
  od_change ch = {0};
  ch.rel = &t->rel;
  ch.index = c->index++;
  bool deleted = t->del_col >= 0 && !PQgetisnull(r, row, t->del_col) && PQgetvalue(r, row, t->del_col)[0] == 't';
  if (deleted) {
    for (int i = 0; i < n; i++) keyvals[i] = t->rel.columns[i].key ? vals[i] : (od_value){.kind = OD_VALUE_NULL};
    ch.op = OD_OP_DELETE;
    ch.old_kind = 'K';
    ch.oldtup = (od_tuple){.ncolumns = n, .values = keyvals};
  } else {
    ch.op = OD_OP_READ;
    ch.newtup = (od_tuple){.ncolumns = n, .values = vals};
  }
  c->rows++;
  if ((rc = c->h->change(c->h->ctx, &c->txn, &ch, err))) return rc;
  if (s->ledger_on && (rc = ledger_add(s, t, r, row, err))) return rc;
  if (c->chunking && c->index >= (uint32_t)s->load_chunk_rows) {
    /* A chunk of the initial load: [its start, load:k+1@<horizon>/<table>/<last key>). A restart resumes
     * after that key by keyset pagination (a key too long for a position: the load starts over). */
    char key[OD_POS_MAX];
    size_t keylen = 0;
    for (int i = 0; i < t->rel.ncolumns && keylen <= OD_PGPOLL_LOAD_KEY_MAX; i++) {
      if (!t->rel.columns[i].key) continue;
      size_t m = (size_t)PQgetlength(r, row, i) + 1;
      if (keylen + m > OD_PGPOLL_LOAD_KEY_MAX) {
        keylen = OD_PGPOLL_LOAD_KEY_MAX + 1;
        break;
      }
      memcpy(key + keylen, PQgetvalue(r, row, i), m);
      keylen += m;
    }
    c->txn.end = od_pgpoll_load_pos(s->load_seq + 1, s->load_horizon, (uint16_t)(t - s->tables), key,
                                    keylen <= OD_PGPOLL_LOAD_KEY_MAX ? keylen : 0);
    if (s->ledger_on && (rc = pk_sync(&s->ledger, err))) return rc; /* the keys before the sinks can hold them */
    if ((rc = c->h->commit(c->h->ctx, &c->txn, err))) return rc;
    od_debug("%s: initial load: chunk transaction load:%" PRIu64 " delivered (%u rows)", s->where, s->load_seq,
             c->index);
    s->load_seq++;
    c->open = false;
    c->index = 0;
    s->last = c->txn.start = c->txn.end;
    c->txn.end = od_pos_none();
  }
  return OD_OK;
}

/* Begin the cycle's transaction if it is not open, and announce t. */
static int open_for(cycle *c, pq_table *t, od_error *err) {
  int rc;
  if (!c->open) {
    c->txn.commit_time = od_now_us();
    if ((rc = c->h->begin(c->h->ctx, &c->txn, err))) return rc;
    c->open = true;
  }
  if (!t->announced) {
    if (c->h->relation && (rc = c->h->relation(c->h->ctx, &t->rel, err))) return rc;
    t->announced = true;
  }
  return OD_OK;
}

/* Checksum reconciliation: a delete by key of a row the source no longer has. */
static int emit_delete(void *ctx, pq_table *t, const pk_table *kt, const char *key, od_error *err) {
  cycle *c = ctx;
  int rc = open_for(c, t, err);
  if (rc) return rc;
  uint16_t n = t->rel.ncolumns;
  od_value *vals = row_vals(c->s, t);
  if (!vals) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (!t->rel.columns[i].key) {
      vals[i] = (od_value){.kind = OD_VALUE_NULL};
      continue;
    }
    const char *part = pk_key_part(kt, key, k++);
    vals[i] = (od_value){.data = part, .len = (uint32_t)strlen(part), .kind = OD_VALUE_TEXT};
  }
  od_change ch = {.op = OD_OP_DELETE, .rel = &t->rel, .index = c->index++, .old_kind = 'K'};
  ch.oldtup = (od_tuple){.ncolumns = n, .values = vals};
  c->rows++;
  return c->h->change(c->h->ctx, &c->txn, &ch, err);
}

/* Checksum reconciliation: a row of a differing chunk the ledger lacks, delivered as an upsert. */
static int emit_row(void *ctx, pq_table *t, PGresult *r, int row, od_error *err) {
  cycle *c = ctx;
  od_value *vals = row_vals(c->s, t);
  if (!vals) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  return deliver_row(c, t, r, row, vals, vals + t->rel.ncolumns, err);
}

/* A truncate of t's sink table, first change of a reconciliation cycle's table. */
static int truncate_table(cycle *c, pq_table *t, od_error *err) {
  int rc = open_for(c, t, err);
  if (rc) return rc;
  od_change ch = {.op = OD_OP_TRUNCATE, .rel = &t->rel, .index = c->index++};
  c->rows++;
  return c->h->change(c->h->ctx, &c->txn, &ch, err);
}

/* The keyset condition "(k1, k2) > ('v1'::type1, 'v2'::type2)" resuming the load after s->resume_key. */
static int resume_condition(pp_source *s, pq_table *t, char *out, size_t size, od_error *err) {
  size_t o = 0, v = 0;
  char lhs[2048] = "", rhs[2048] = "";
  const char *part = s->resume_key;
  for (int i = 0; i < t->rel.ncolumns; i++) {
    if (!t->rel.columns[i].key) continue;
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    char *lit = PQescapeLiteral(s->conn, part, strlen(part));
    if (!lit) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    o += (size_t)snprintf(lhs + o, o < sizeof lhs ? sizeof lhs - o : 0, "%s%s", o ? ", " : "", q);
    v += (size_t)snprintf(rhs + v, v < sizeof rhs ? sizeof rhs - v : 0, "%s%s::%s", v ? ", " : "", lit,
                          t->rel.columns[i].type_name);
    PQfreemem(lit);
    part += strlen(part) + 1;
  }
  if (o >= sizeof lhs || v >= sizeof rhs || (size_t)snprintf(out, size, "(%s) > (%s)", lhs, rhs) >= size)
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: table %s: the key is too long to resume the initial load", s->where,
                   t->display);
  return OD_OK;
}

static int read_table(cycle *c, pq_table *t, bool first, uint64_t lo, uint64_t hi, const char *after, od_error *err) {
  pp_source *s = c->s;
  char cond[5000], cols[8192], keys[2048], sql[16384];
  size_t o = 0, k = 0;
  cols[0] = keys[0] = '\0';
  for (int i = 0; i < t->rel.ncolumns; i++) {
    char q[200];
    pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
    o += (size_t)snprintf(cols + o, o < sizeof cols ? sizeof cols - o : 0, "%s%s", i ? ", " : "", q);
    if (t->rel.columns[i].key) k += (size_t)snprintf(keys + k, k < sizeof keys ? sizeof keys - k : 0, "%s%s", k ? ", " : "", q);
  }
  if (o >= sizeof cols || k >= sizeof keys)
    return OD_FAIL(err, OD_EUNSUPPORTED, "%s: table %s has too many columns for a poll query", s->where, t->display);
  range_sql(s, t, first, lo, hi, cond, sizeof cond);
  if (after) snprintf(cond, sizeof cond, "%s", after);
  snprintf(sql, sizeof sql, "DECLARE odsync_poll NO SCROLL CURSOR FOR SELECT %s FROM %s WHERE %s ORDER BY %s", cols,
           t->qname, cond, keys);
  int rc = pq_cmd(s->conn, sql, s->where, err);
  if (rc) return rc;
  od_value *vals = row_vals(s, t);
  if (!vals) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %ld FROM odsync_poll", s->fetch_rows);
  for (;;) {
    PGresult *r = pq_run(s->conn, fetch, 0, NULL, s->where, err);
    if (!r) {
      rc = err->code;
      break;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n && !rc; i++) rc = deliver_row(c, t, r, i, vals, vals + t->rel.ncolumns, err);
    PQclear(r);
    if (rc || n < s->fetch_rows) break;
  }
  if (!rc) rc = pq_cmd(s->conn, "CLOSE odsync_poll", s->where, err);
  return rc;
}

/* The timestamp horizon, read before the cycle's snapshot (see the top of the file). */
static int timestamp_horizon(pp_source *s, uint64_t *out, od_error *err) {
  char sql[700];
  snprintf(sql, sizeof sql,
           "SELECT (extract(epoch FROM least(clock_timestamp() - %ld * interval '1 millisecond', "
           "(SELECT min(xact_start) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL "
           "AND backend_type = 'client backend'))) * 1000000)::bigint",
           s->lag_ms);
  PGresult *r = pq_run(s->conn, sql, 0, NULL, s->where, err);
  if (!r) return err->code;
  int64_t v = scalar_i64(r);
  PQclear(r);
  *out = v > 0 ? (uint64_t)v : 0;
  return OD_OK;
}

static int run_cycle(pp_source *s, const od_change_handler *h, od_error *err) {
  uint64_t hi = 0;
  int rc;
  if (s->mode == 't' && (rc = timestamp_horizon(s, &hi, err))) return rc;
  if ((rc = pq_cmd(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", s->where, err))) return rc;
  if (s->mode == 'x') {
    PGresult *r = pq_run(s->conn, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint", 0, NULL, s->where, err);
    if (!r) return err->code;
    hi = (uint64_t)scalar_i64(r);
    PQclear(r);
  }
  bool first = !s->have_horizon;
  uint64_t lo = first ? 0 : s->horizon;
  bool reconcile = !first && s->reconcile_ms > 0 && od_mono_us() >= s->next_reconcile_us;
  /* The horizon did not move (an idle database in xmin mode, or one held back by an open transaction):
   * nothing can be new — but a reconciliation that is due runs anyway (deletes must not wait for a
   * write), its changes in a transaction after the horizon's own position (poll_position.h). */
  bool stay = !first && hi <= lo;
  if (stay && !reconcile) {
    s->cycles++;
    od_debug("%s: cycle %" PRIu64 ": horizon %" PRIu64 " unchanged (next %" PRIu64 ")", s->where, s->cycles, lo, hi);
    return pq_cmd(s->conn, "COMMIT", s->where, err);
  }
  if (stay) hi = lo;
  /* The initial load ends at its first snapshot's horizon, however often it was resumed: every row
   * changed since that snapshot has a watermark at or above it, so the next cycles read it again. */
  bool resume = first && s->resume_table >= 0;
  if (resume) hi = s->load_horizon;
  else if (first) s->load_horizon = hi;
  cycle c = {.s = s, .h = h};
  c.txn.start = s->last;
  c.txn.end = od_pos_none();
  c.chunking = first && s->load_chunk_rows > 0;
  c.txn.xid = 0;
  /* Reconciliation (hard deletes), in the cycle's snapshot and transaction; the horizon advances as
   * in any cycle. reload (or checksum with a ledger not yet trusted): the cycle empties each sink table
   * and reads every row of the snapshot into it (readers of a sink with atomic commits never see it
   * empty). checksum: after the cycle's rows, the key-range chunks of each table are compared with
   * the ledger's and only differing chunks are fetched (poll_reconcile.h). */
  if (reconcile) s->next_reconcile_us = od_mono_us() + s->reconcile_ms * 1000;
  bool reload = reconcile && (s->reconcile_reload || !s->ledger_trusted);
  od_pos end = stay ? od_pgpoll_pos_seq(s->mode, lo, od_pgpoll_seq(&s->last) + 1) : od_pgpoll_pos(s->mode, hi);
  if (resume)
    od_info("%s: resuming the initial load (load:%" PRIu64 ") at table %s after the last delivered key", s->where,
            s->load_seq, s->tables[s->resume_table].display);
  for (int i = resume ? s->resume_table : 0; i < s->ntables && !rc && (!stay || reload); i++) {
    if (reload && (rc = truncate_table(&c, &s->tables[i], err))) break;
    char after[5000];
    if (resume && i == s->resume_table && (rc = resume_condition(s, &s->tables[i], after, sizeof after, err))) break;
    rc = read_table(&c, &s->tables[i], first || reload, lo, hi, resume && i == s->resume_table ? after : NULL, err);
  }
  if (first && !rc)
    od_info("%s: initial load: %" PRIu64 " rows read in this run%s", s->where, c.rows, resume ? " (resumed)" : "");
  if (reload && !rc) od_debug("%s: reconciliation cycle (every row re-read)", s->where);
  if (reconcile && !reload && !rc) {
    od_debug("%s: reconciliation cycle (checksums) started", s->where);
    pr_emit emit = {.ctx = &c, .del = emit_delete, .row = emit_row};
    for (int i = 0; i < s->ntables && !rc; i++) {
      pr_stats st = {0};
      rc = pr_reconcile_table(s->conn, s->where, &s->tables[i], &s->ledger, i, s->reconcile_chunk_rows, &end, &emit,
                              &st, err);
      if (!rc && s->m_recon) {
        if (s->m_recon[3 * i]) od_counter_add(s->m_recon[3 * i], st.chunks - st.fetched);
        if (s->m_recon[3 * i + 1]) od_counter_add(s->m_recon[3 * i + 1], st.fetched);
        if (s->m_recon[3 * i + 2]) od_counter_add(s->m_recon[3 * i + 2], st.deletes);
      }
      if (!rc)
        od_debug("%s: reconciliation of %s: %" PRIu64 " chunks compared, %" PRIu64 " differed and were fetched, %" PRIu64
                 " deletes, %" PRIu64 " rows re-sent", s->where, s->tables[i].display, st.chunks, st.fetched,
                 st.deletes, st.upserts);
    }
  }
  if (!rc) rc = pq_cmd(s->conn, "COMMIT", s->where, err);
  if (rc) return rc;
  if (c.open) {
    c.txn.end = end;
    if (s->ledger_on && reload && !s->ledger_trusted) {
      /* The ledger now holds every key this reload delivers; a sink holding `end` holds no other. */
      if ((rc = pk_set_valid_from(&s->ledger, &end, err))) return rc;
      s->ledger_trusted = true;
    }
    if (s->ledger_on && (rc = pk_sync(&s->ledger, err))) return rc; /* the keys before the sinks can hold them */
    if ((rc = h->commit(h->ctx, &c.txn, err))) return rc;
    s->last = end;
  } else if (!stay) {
    if (h->idle && (rc = h->idle(h->ctx, &end, err))) return rc;
    s->last = end;
  }
  s->horizon = hi;
  s->have_horizon = true;
  s->resume_table = -1;
  s->cycles++;
  od_debug("%s: cycle %" PRIu64 " read [%" PRIu64 ", %" PRIu64 "): %" PRIu64 " rows", s->where, s->cycles, lo, hi,
           c.rows);
  return OD_OK;
}

static int pp_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  pp_source *s = (pp_source *)base;
  if (!s->conn) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: not connected", s->where);
  if (!od_sleep_until_due(s->next_cycle_us, timeout_ms)) return OD_OK;
  int64_t now = od_mono_us();
  s->next_cycle_us = now + s->interval_ms * 1000;
  int rc = run_cycle(s, h, err);
  if (rc && s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
    PGresult *r = PQexec(s->conn, "ROLLBACK");
    PQclear(r);
  }
  return rc;
}

static int pp_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)force;
  pp_source *s = (pp_source *)base;
  /* Nothing to tell the server; the ledger writes the deletes every sink now holds. */
  return s->ledger_on ? pk_acked(&s->ledger, durable, err) : OD_OK;
}

const od_source_ops od_source_postgres_poll = {
    .type = "postgres_poll",
    .position = &od_pgpoll_position,
    .open = pp_open,
    .check = pp_check,
    .tables = pp_tables,
    .start = pp_start,
    .poll = pp_poll,
    .ack = pp_ack,
    .close = pp_close,
};
