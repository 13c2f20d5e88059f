/* sources/poll/trig_source.c — trigger-based capture of PostgreSQL (`type: postgres_trigger`).
 *
 * Reads the change table that `odsync install-triggers` created (trig_install.c) in commit order:
 * transactions by their commit sequence (odsync.txns.seq, taken at commit), each transaction's
 * changes by their insertion id. Each read first passes the gate (gate()): it learns the highest
 * sequence S whose transactions have all ended, then reads "last < seq <= S" in one REPEATABLE READ
 * READ ONLY transaction through a server-side cursor, so a transaction still committing with a
 * smaller number than one already read cannot exist. Rows are stored as jsonb by the triggers and turned back
 * into the table's own types (jsonb_populate_record) and text forms under this connection's fixed
 * settings.
 *
 * Position: the commit sequence (poll_position.h, "pgtrig"). The first session of a pipeline (no
 * checkpoint in any sink) copies the captured tables in one snapshot taken after the gate at M
 * (transaction [0, M+1)); the stream continues after M (see initial_copy()). ack() records what every
 * sink holds; the next poll() deletes those transactions from the change table (prune), outside any
 * read. One pipeline per change table: a second pipeline reading it would lose what the first prunes.
 *
 * Ownership: owns its settings, connection, table descriptions (relations live until close()) and
 * the query text. Borrows the config. Never touches sinks or the pipeline's queue.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapter.h"
#include "odsync/source.h"
#include "sources/poll/poll_position.h"
#include "sources/poll/pq_util.h"
#include "sources/poll/trig_gate.h"

extern const od_source_ops od_source_postgres_trigger;

typedef struct tg_source {
  od_source base;
  const char *pipeline;
  char where[160];
  const char *dsn;
  char *const *names;
  int nnames;
  long fetch_rows, txns_per_poll, prune_interval_ms, interval_ms;
  PGconn *conn;
  pq_table *tables;
  int ntables;
  int maxcols;
  char *select_tail; /* the CASE expressions and FROM ... (built once) */
  bool need_snapshot;
  uint64_t last;     /* highest sequence delivered (the sinks hold <= last once durable) */
  uint64_t acked;    /* every sink holds the transactions with seq < acked */
  uint64_t pruned;   /* transactions with seq < pruned were deleted */
  int64_t next_prune_us, next_read_us;
} tg_source;

static const char *const allowed_keys[] = {"dsn", "tables", "fetch_rows", "txns_per_poll", "prune_interval_ms",
                                           "interval_ms", "reconnect_max_ms", NULL};

static int tg_open(const od_config_section *cfg, const char *pipeline, od_source **out, od_error *err) {
  tg_source *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  s->base.ops = &od_source_postgres_trigger;
  s->pipeline = pipeline;
  snprintf(s->where, sizeof s->where, "pipeline %s: postgres_trigger source", pipeline);
  int rc = od_config_check_keys(cfg, allowed_keys, err);
  if (!rc) rc = od_config_require_string(cfg, "dsn", &s->dsn, err);
  if (!rc) rc = od_config_list(cfg, "tables", &s->names, &s->nnames, err);
  if (!rc && s->nnames == 0)
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: postgres_trigger needs `tables:` (the captured tables, schema.table)",
                 cfg->file, cfg->line, cfg->col, cfg->path);
  if (!rc) rc = od_config_int(cfg, "fetch_rows", 5000, 1, 1000000, &s->fetch_rows, err);
  if (!rc) rc = od_config_int(cfg, "txns_per_poll", 1000, 1, 1000000, &s->txns_per_poll, err);
  if (!rc) rc = od_config_int(cfg, "prune_interval_ms", 1000, 0, 86400000L, &s->prune_interval_ms, err);
  if (!rc) rc = od_config_int(cfg, "interval_ms", 100, 1, 86400000L, &s->interval_ms, err);
  if (rc) {
    free(s);
    return rc;
  }
  *out = &s->base;
  return OD_OK;
}

static void disconnect(tg_source *s) {
  if (s->conn) PQfinish(s->conn);
  s->conn = NULL;
}

static void tg_close(od_source *base) {
  tg_source *s = (tg_source *)base;
  if (!s) return;
  disconnect(s);
  for (int i = 0; i < s->ntables; i++) pq_table_free(&s->tables[i]);
  free(s->tables);
  free(s->select_tail);
  free(s);
}

/* Whether the capture objects exist for table t; fills why. */
static int installed(tg_source *s, const pq_table *t, bool *ok, od_error *err) {
  *ok = false;
  char oid[16];
  snprintf(oid, sizeof oid, "%u", t ? t->rel.oid : 0);
  const char *p[1] = {oid};
  PGresult *r = t ? pq_run(s->conn,
                           "SELECT count(*) = 2 FROM pg_trigger WHERE tgrelid = $1::oid AND tgname IN "
                           "('odsync_capture', 'odsync_capture_truncate') AND tgenabled <> 'D'",
                           1, p, s->where, err)
                  : pq_run(s->conn, "SELECT to_regclass('odsync.txns') IS NOT NULL AND to_regclass('odsync.changes') IS NOT NULL",
                           0, NULL, s->where, err);
  if (!r) return err->code;
  *ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  return OD_OK;
}

/* Describe the tables (once per source object) and verify the triggers. */
static int load(tg_source *s, od_problem_fn problem, void *ctx, od_error *err) {
  bool ok = false;
  int rc = installed(s, NULL, &ok, err), fatal = 0;
  if (rc) return rc;
  char msg[700];
  if (!ok) {
    snprintf(msg, sizeof msg, "%s: the change table odsync.changes does not exist in the source database: run "
             "`odsync install-triggers -c CONFIG` first", s->where);
    if (!problem) return OD_FAIL(err, OD_ESOURCE, "%s", msg);
    problem(ctx, true, msg);
    return 1;
  }
  bool fresh = !s->tables;
  if (fresh && !(s->tables = calloc((size_t)s->nnames, sizeof *s->tables))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  for (int i = 0; fresh && i < s->nnames; i++) {
    od_error e = {0};
    rc = pq_describe(s->conn, s->names[i], &s->tables[s->ntables], s->where, &e);
    if (rc) {
      if (!problem || e.retriable) {
        *err = e;
        return rc;
      }
      problem(ctx, true, e.msg);
      fatal++;
      continue;
    }
    if (s->tables[s->ntables].rel.ncolumns > s->maxcols) s->maxcols = s->tables[s->ntables].rel.ncolumns;
    s->ntables++;
  }
  for (int i = 0; i < s->ntables; i++) {
    if ((rc = installed(s, &s->tables[i], &ok, err))) return rc;
    if (ok) continue;
    snprintf(msg, sizeof msg, "%s: table %s has no (enabled) capture triggers: run `odsync install-triggers -c CONFIG` "
             "after adding it to source.tables", s->where, s->tables[i].display);
    if (!problem) return OD_FAIL(err, OD_ESOURCE, "%s", msg);
    problem(ctx, true, msg);
    fatal++;
  }
  return fatal;
}

static int tg_check(od_source *base, od_problem_fn problem, void *ctx, od_error *err) {
  tg_source *s = (tg_source *)base;
  int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
  if (rc) return rc;
  rc = load(s, problem, ctx, err);
  disconnect(s);
  return rc;
}

static int tg_tables(od_source *base, void (*fn)(void *ctx, const char *schema, const char *name, bool keyed),
                     void *ctx, od_error *err) {
  tg_source *s = (tg_source *)base;
  bool own = !s->conn;
  if (own) {
    int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
    if (rc) return rc;
  }
  int rc = OD_OK;
  for (int i = 0; i < s->nnames && !rc; i++) {
    pq_table t;
    if ((rc = pq_describe(s->conn, s->names[i], &t, s->where, err))) break;
    fn(ctx, t.rel.schema, t.rel.name, true);
    pq_table_free(&t);
  }
  if (own) disconnect(s);
  return rc;
}

/* "CASE c.relid WHEN oid THEN (SELECT ARRAY[r.a::text, ...] FROM jsonb_populate_record(NULL::t, c.<col>) r) ... END" */
static int append_case(tg_source *s, char **buf, size_t *len, size_t *cap, const char *col) {
  for (int pass = 0; pass <= s->ntables; pass++) {
    char piece[16384];
    size_t o = 0;
    if (pass == 0) {
      o = (size_t)snprintf(piece, sizeof piece, ", CASE c.relid");
    } else {
      const pq_table *t = &s->tables[pass - 1];
      o = (size_t)snprintf(piece, sizeof piece, " WHEN %u THEN (SELECT ARRAY[", t->rel.oid);
      for (int i = 0; i < t->rel.ncolumns && o < sizeof piece; i++) {
        char q[200];
        pq_quote_ident(t->rel.columns[i].name, q, sizeof q);
        o += (size_t)snprintf(piece + o, sizeof piece - o, "%sr.%s::text", i ? ", " : "", q);
      }
      if (o < sizeof piece)
        o += (size_t)snprintf(piece + o, sizeof piece - o, "] FROM jsonb_populate_record(NULL::%s, c.%s) r)", t->qname, col);
      if (pass == s->ntables && o < sizeof piece) o += (size_t)snprintf(piece + o, sizeof piece - o, " END");
    }
    if (o >= sizeof piece) return OD_EUNSUPPORTED;
    if (*len + o + 1 > *cap) {
      size_t ncap = (*cap + o + 1) * 2;
      char *nb = realloc(*buf, ncap);
      if (!nb) return OD_ENOMEM;
      *buf = nb;
      *cap = ncap;
    }
    memcpy(*buf + *len, piece, o + 1);
    *len += o;
  }
  return OD_OK;
}

static int build_select(tg_source *s, od_error *err) {
  if (s->select_tail) return OD_OK;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = append_case(s, &buf, &len, &cap, "new_row");
  if (!rc) rc = append_case(s, &buf, &len, &cap, "old_row");
  if (rc) {
    free(buf);
    return OD_FAIL(err, rc, "%s: cannot build the change query (%s)", s->where, od_status_message(rc));
  }
  s->select_tail = buf;
  return OD_OK;
}

static int tg_start(od_source *base, const od_pos *from, od_error *err) {
  tg_source *s = (tg_source *)base;
  disconnect(s);
  if (!od_pos_is_none(from) && from->kind != &od_pgtrig_position)
    return OD_FAIL(err, OD_EGAP, "%s: the sinks hold a position of another kind (%s); a pipeline cannot change its "
                   "source type: use a new pipeline name", s->where, from->kind->name);
  int rc = pq_connect(s->dsn, s->pipeline, s->where, &s->conn, err);
  if (!rc) rc = load(s, NULL, NULL, err);
  if (!rc) rc = build_select(s, err);
  if (rc) {
    disconnect(s);
    return rc;
  }
  s->need_snapshot = od_pos_is_none(from);
  uint64_t c = od_pos_is_none(from) ? 0 : od_pos_to_u64(from);
  s->last = c ? c - 1 : 0;
  if (c > s->acked) s->acked = c;
  s->next_read_us = 0;
  od_info("%s: capturing %d table(s) from %s", s->where, s->ntables,
          s->need_snapshot ? "an initial copy" : "the change table");
  return OD_OK;
}

/* ---- reading ------------------------------------------------------------------------------------ */

typedef struct reader {
  tg_source *s;
  const od_change_handler *h;
  od_txn_info txn;
  bool open;
  uint32_t index;
  od_value *newv, *oldv;
  char **ptrs;
} reader;

static int announce(reader *r, pq_table *t, od_error *err) {
  if (t->announced) return OD_OK;
  int rc = r->h->relation ? r->h->relation(r->h->ctx, &t->rel, err) : OD_OK;
  if (!rc) t->announced = true;
  return rc;
}

static pq_table *table_of(tg_source *s, uint32_t oid) {
  for (int i = 0; i < s->ntables; i++)
    if (s->tables[i].rel.oid == oid) return &s->tables[i];
  return NULL;
}

/* Parse a text[] of t's row into vals; false when malformed. */
static bool row_values(reader *r, const pq_table *t, char *text, od_value *vals) {
  int n = pq_parse_text_array(text, r->ptrs, r->s->maxcols);
  if (n != t->rel.ncolumns) return false;
  for (int i = 0; i < n; i++)
    vals[i] = r->ptrs[i] ? (od_value){.data = r->ptrs[i], .len = (uint32_t)strlen(r->ptrs[i]), .kind = OD_VALUE_TEXT}
                         : (od_value){.kind = OD_VALUE_NULL};
  return true;
}

static int close_txn(reader *r, od_error *err) {
  if (!r->open) return OD_OK;
  r->open = false;
  r->txn.end = od_pos_from_u64(&od_pgtrig_position, od_pos_to_u64(&r->txn.start) + 1);
  int rc = r->h->commit(r->h->ctx, &r->txn, err);
  if (!rc) r->s->last = od_pos_to_u64(&r->txn.start);
  return rc;
}

/* One row of the change query: seq, xid, commit µs, relid, op, new text[], old text[]. */
static int change_row(reader *r, PGresult *res, int i, od_error *err) {
  tg_source *s = r->s;
  uint64_t seq = strtoull(PQgetvalue(res, i, 0), NULL, 10);
  int rc;
  if (r->open && od_pos_to_u64(&r->txn.start) != seq && (rc = close_txn(r, err))) return rc;
  if (!r->open) {
    r->txn = (od_txn_info){0};
    r->txn.start = od_pos_from_u64(&od_pgtrig_position, seq);
    r->txn.xid = strtoull(PQgetvalue(res, i, 1), NULL, 10);
    r->txn.commit_time = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    r->index = 0;
    if ((rc = r->h->begin(r->h->ctx, &r->txn, err))) return rc;
    r->open = true;
  }
  pq_table *t = table_of(s, (uint32_t)strtoul(PQgetvalue(res, i, 3), NULL, 10));
  if (!t) return OD_OK;
  if ((rc = announce(r, t, err))) return rc;
  char op = PQgetvalue(res, i, 4)[0];
  od_change ch = {0};
  ch.rel = &t->rel;
  ch.index = r->index++;
  bool ok = true;
  switch (op) {
    case 'I':
      ch.op = OD_OP_INSERT;
      ok = row_values(r, t, PQgetvalue(res, i, 5), r->newv);
      ch.newtup = (od_tuple){.ncolumns = t->rel.ncolumns, .values = r->newv};
      break;
    case 'U':
      ch.op = OD_OP_UPDATE;
      ok = row_values(r, t, PQgetvalue(res, i, 5), r->newv) && row_values(r, t, PQgetvalue(res, i, 6), r->oldv);
      ch.newtup = (od_tuple){.ncolumns = t->rel.ncolumns, .values = r->newv};
      ch.old_kind = 'O';
      ch.oldtup = (od_tuple){.ncolumns = t->rel.ncolumns, .values = r->oldv};
      break;
    case 'D':
      ch.op = OD_OP_DELETE;
      ok = row_values(r, t, PQgetvalue(res, i, 6), r->oldv);
      ch.old_kind = 'O';
      ch.oldtup = (od_tuple){.ncolumns = t->rel.ncolumns, .values = r->oldv};
      break;
    case 'T':
      ch.op = OD_OP_TRUNCATE;
      break;
    default:
      ok = false;
  }
  if (!ok)
    return OD_FAIL(err, OD_EPROTOCOL, "%s: change of transaction %" PRIu64 " on %s (op %c) does not match the table's "
                   "%u columns; if the table was altered, restart odsync", s->where, seq, t->display, op,
                   t->rel.ncolumns);
  return r->h->change(r->h->ctx, &r->txn, &ch, err);
}

/* The gate: take the writers' advisory lock exclusively for an instant (it waits for every
 * transaction that has taken a sequence number and not yet ended; new ones wait behind it) and read
 * the sequence's last value. Every transaction with a sequence number <= *out has then ended, so a
 * snapshot taken afterwards sees all of those that committed. */
static int gate(tg_source *s, uint64_t *out, od_error *err) {
  int rc = pq_cmd(s->conn, "BEGIN", s->where, err);
  if (!rc) rc = pq_cmd(s->conn, "SELECT pg_advisory_xact_lock(" TRIG_LOCK_KEY ")", s->where, err);
  PGresult *r = rc ? NULL
                   : pq_run(s->conn, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM odsync.commit_seq", 0,
                            NULL, s->where, err);
  if (!rc && !r) rc = err->code;
  if (r) *out = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (!rc) rc = pq_cmd(s->conn, "COMMIT", s->where, err);
  return rc;
}

/* The first session: every captured table in one snapshot taken after the gate at M. Transactions
 * up to M are in the copy; a few after M may be too (they committed between the gate and the
 * snapshot) and are delivered again after it: their changes carry whole rows and replay in commit
 * order on top of a state that already holds them, which ends in the source's state. */
static int initial_copy(tg_source *s, reader *r, od_error *err) {
  uint64_t m = 0;
  int rc = gate(s, &m, err);
  if (!rc) rc = pq_cmd(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", s->where, err);
  if (rc) return rc;
  PGresult *res;
  r->txn = (od_txn_info){0};
  r->txn.start = od_pos_from_u64(&od_pgtrig_position, 0);
  r->txn.commit_time = od_now_us();
  if ((rc = r->h->begin(r->h->ctx, &r->txn, err))) return rc;
  uint32_t index = 0;
  for (int k = 0; k < s->ntables && !rc; k++) {
    pq_table *t = &s->tables[k];
    if ((rc = announce(r, t, err))) break;
    char sql[600];
    snprintf(sql, sizeof sql, "DECLARE odsync_copy NO SCROLL CURSOR FOR SELECT * FROM %s", t->qname);
    if ((rc = pq_cmd(s->conn, sql, s->where, err))) break;
    char fetch[64];
    snprintf(fetch, sizeof fetch, "FETCH %ld FROM odsync_copy", s->fetch_rows);
    for (;;) {
      res = pq_run(s->conn, fetch, 0, NULL, s->where, err);
      if (!res) {
        rc = err->code;
        break;
      }
      int n = PQntuples(res);
      if (PQnfields(res) != t->rel.ncolumns) {
        PQclear(res);
        rc = OD_FAIL_RETRY(err, OD_ESCHEMA, "%s: table %s changed shape during the initial copy", s->where, t->display);
        break;
      }
      for (int i = 0; i < n && !rc; i++) {
        for (int j = 0; j < t->rel.ncolumns; j++)
          r->newv[j] = PQgetisnull(res, i, j)
                           ? (od_value){.kind = OD_VALUE_NULL}
                           : (od_value){.data = PQgetvalue(res, i, j), .len = (uint32_t)PQgetlength(res, i, j),
                                        .kind = OD_VALUE_TEXT};
        od_change ch = {.op = OD_OP_READ, .rel = &t->rel, .index = index++};
        ch.newtup = (od_tuple){.ncolumns = t->rel.ncolumns, .values = r->newv};
        rc = r->h->change(r->h->ctx, &r->txn, &ch, err);
      }
      PQclear(res);
      if (rc || n < s->fetch_rows) break;
    }
    if (!rc) rc = pq_cmd(s->conn, "CLOSE odsync_copy", s->where, err);
  }
  if (!rc) rc = pq_cmd(s->conn, "COMMIT", s->where, err);
  if (rc) return rc;
  r->txn.end = od_pos_from_u64(&od_pgtrig_position, m + 1);
  if ((rc = r->h->commit(r->h->ctx, &r->txn, err))) return rc;
  s->last = m;
  s->need_snapshot = false;
  od_info("%s: initial copy of %d table(s) done (%u rows); changes follow after commit sequence %" PRIu64, s->where,
          s->ntables, index, m);
  return OD_OK;
}

static int prune(tg_source *s, od_error *err) {
  if (s->acked <= s->pruned || s->acked <= 1) return OD_OK; /* nothing newly held by every sink */
  int64_t now = od_mono_us();
  if (now < s->next_prune_us) return OD_OK;
  s->next_prune_us = now + s->prune_interval_ms * 1000;
  char sql[400];
  snprintf(sql, sizeof sql,
           "WITH d AS (DELETE FROM odsync.txns WHERE seq < %" PRIu64 " RETURNING xid) "
           "DELETE FROM odsync.changes WHERE xid IN (SELECT xid FROM d)", s->acked);
  int rc = pq_cmd(s->conn, sql, s->where, err);
  if (!rc) s->pruned = s->acked;
  return rc;
}

static int read_changes(tg_source *s, reader *r, bool *caught_up, od_error *err) {
  uint64_t safe = 0;
  int rc = gate(s, &safe, err);
  if (rc) return rc;
  size_t need = strlen(s->select_tail) + 1024;
  char *sql = malloc(need);
  if (!sql) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  snprintf(sql, need,
           "DECLARE odsync_changes NO SCROLL CURSOR FOR SELECT t.seq, t.xid::text, "
           "(extract(epoch FROM t.committed_at) * 1000000)::bigint, c.relid, c.op%s "
           "FROM odsync.txns t JOIN odsync.changes c ON c.xid = t.xid WHERE t.seq > %" PRIu64 " AND t.seq <= "
           "(SELECT max(seq) FROM (SELECT seq FROM odsync.txns WHERE seq > %" PRIu64 " AND seq <= %" PRIu64
           " ORDER BY seq LIMIT %ld) x) ORDER BY t.seq, c.id",
           s->select_tail, s->last, s->last, safe, s->txns_per_poll);
  rc = pq_cmd(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", s->where, err);
  /* How many transactions this read covers (to know whether it caught up). */
  char cnt[256];
  snprintf(cnt, sizeof cnt,
           "SELECT count(*) FROM (SELECT 1 FROM odsync.txns WHERE seq > %" PRIu64 " AND seq <= %" PRIu64 " LIMIT %ld) x",
           s->last, safe, s->txns_per_poll);
  PGresult *res = rc ? NULL : pq_run(s->conn, cnt, 0, NULL, s->where, err);
  if (!rc && !res) rc = err->code;
  long ntx = res ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  PQclear(res);
  if (!rc) rc = pq_cmd(s->conn, sql, s->where, err);
  free(sql);
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %ld FROM odsync_changes", s->fetch_rows);
  while (!rc) {
    res = pq_run(s->conn, fetch, 0, NULL, s->where, err);
    if (!res) {
      rc = err->code;
      break;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n && !rc; i++) rc = change_row(r, res, i, err);
    PQclear(res);
    if (n < s->fetch_rows) break;
  }
  if (!rc) rc = close_txn(r, err);
  if (!rc) rc = pq_cmd(s->conn, "COMMIT", s->where, err);
  *caught_up = ntx < s->txns_per_poll;
  return rc;
}

static int tg_poll(od_source *base, const od_change_handler *h, int timeout_ms, od_error *err) {
  tg_source *s = (tg_source *)base;
  if (!s->conn) return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: not connected", s->where);
  if (!od_sleep_until_due(s->next_read_us, timeout_ms)) return OD_OK;
  reader r = {.s = s, .h = h};
  r.newv = calloc((size_t)s->maxcols * 2, sizeof(od_value));
  r.ptrs = calloc((size_t)s->maxcols + 1, sizeof(char *));
  if (!r.newv || !r.ptrs) {
    free(r.newv);
    free(r.ptrs);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  r.oldv = r.newv + s->maxcols;
  bool caught_up = false;
  int rc = prune(s, err);
  if (!rc && s->need_snapshot) rc = initial_copy(s, &r, err);
  else if (!rc) rc = read_changes(s, &r, &caught_up, err);
  free(r.newv);
  free(r.ptrs);
  if (rc && s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
    PGresult *x = PQexec(s->conn, "ROLLBACK");
    PQclear(x);
  }
  if (rc) return rc;
  if (caught_up) {
    s->next_read_us = od_mono_us() + s->interval_ms * 1000;
    od_pos idle = od_pos_from_u64(&od_pgtrig_position, s->last + 1);
    if (h->idle) rc = h->idle(h->ctx, &idle, err);
  }
  return rc;
}

static int tg_ack(od_source *base, const od_pos *durable, bool force, od_error *err) {
  (void)force, (void)err;
  tg_source *s = (tg_source *)base;
  if (!od_pos_is_none(durable) && durable->kind == &od_pgtrig_position) {
    uint64_t c = od_pos_to_u64(durable);
    if (c > s->acked) s->acked = c; /* pruned by the next poll(), outside its read */
  }
  return OD_OK;
}

const od_source_ops od_source_postgres_trigger = {
    .type = "postgres_trigger",
    .position = &od_pgtrig_position,
    .open = tg_open,
    .check = tg_check,
    .tables = tg_tables,
    .start = tg_start,
    .poll = tg_poll,
    .ack = tg_ack,
    .close = tg_close,
};
