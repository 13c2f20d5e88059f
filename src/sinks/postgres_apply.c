/* sinks/postgres_apply.c — applying a batch of changes to the PostgreSQL target.
 *
 * Owns: the per-batch command records and parameter arrays (reused, grown only when a batch or a
 * relation is larger than any before), the libpq pipeline of one apply() call, and the meaning of
 * each change as SQL:
 *   insert/read    keyed: upsert (ON CONFLICT DO UPDATE); keyless: INSERT
 *   update         keyed, full new row: upsert (after deleting the old key when the key changed);
 *                  keyed with UNCHANGED (TOAST) values: UPDATE of the sent columns by (old) key;
 *                  keyless: exactly one row equal to the old row (ctid = (SELECT ... LIMIT 1))
 *   delete         by key, or exactly one row equal to the old row
 *   truncate       TRUNCATE TABLE
 * Every statement of one apply() goes out in one pipeline followed by one Sync: one round trip
 * per batch, in the order of the changes; BEGIN goes with the first statement that is sent, so a
 * batch that was all buffered (postgres_bulk.c) costs none: at the head a sink transaction is one
 * round trip, BEGIN, the buffered changes, the checkpoint and COMMIT (postgres.c). Results are
 * read afterwards: the first error fails the batch (the server aborted everything after it), row
 * counts feed the missing-row rules.
 * Keyed tables' inserts, full-row updates that keep the key, and deletes do not take this path:
 * they are buffered and sent set-based by postgres_bulk.c (flushed before anything else of the
 * same relation version runs here, before DDL, and at commit).
 * Never touches: DDL and statement text (postgres_table.c), COMMIT and the checkpoint
 * (postgres.c). Change values are borrowed: nothing keeps a pointer to them after apply().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sinks/postgres_internal.h"
#include "sinks/postgres_mesh.h"

bool pgs_cmd_push(pgs_sink *s, uint8_t cmd, const pg_rel *r, const char *what, int32_t change) {
  if (s->ncmds == s->cmds_cap) {
    size_t cap = s->cmds_cap ? s->cmds_cap * 2 : 1024;
    pgs_cmd_rec *c = realloc(s->cmds, cap * sizeof *c);
    if (!c) return false;
    s->cmds = c;
    s->cmds_cap = cap;
  }
  s->cmds[s->ncmds++] = (pgs_cmd_rec){.cmd = cmd, .r = r, .what = what, .change = change};
  return true;
}

static int oom(pgs_sink *s, od_error *err) { return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where); }

int pgs_send_prepare(pgs_sink *s, const pg_rel *r, const char *what, const char *name, od_error *err) {
  if (!pgs_cmd_push(s, PGS_CMD_OTHER, r, what, -1)) return oom(s, err);
  if (!PQsendPrepare(s->conn, name, s->sql.p, 0, NULL)) return pgs_fail(s, r ? r->target : NULL, what, NULL, err);
  return OD_OK;
}

int pgs_send_utility(pgs_sink *s, const pg_rel *r, const char *what, const char *sql, od_error *err) {
  if (!pgs_cmd_push(s, PGS_CMD_OTHER, r, what, -1)) return oom(s, err);
  if (!PQsendQueryParams(s->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
    return pgs_fail(s, r ? r->target : NULL, what, NULL, err);
  return OD_OK;
}

int pgs_send_begin(pgs_sink *s, od_error *err) {
  if (s->begin_sent) return OD_OK;
  s->begin_sent = true;
  return pgs_send_utility(s, NULL, "BEGIN", "BEGIN", err);
}

/* "id=42, region=eu" of the row's key, for log lines. */
static void describe_key(const pg_rel *r, const od_tuple *t, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (int k = 0; k < r->nkey && n < cap; k++) {
    int col = PGS_COL(r->key_plan[k]);
    const od_value *v = col < t->ncolumns ? &t->values[col] : NULL;
    const char *val = !v ? "?" : v->kind == OD_VALUE_TEXT ? v->data : v->kind == OD_VALUE_NULL ? "NULL" : "?";
    int w = snprintf(out + n, cap - n, "%s%s=%.64s", k ? ", " : "", r->rel->columns[col].name, val);
    if (w < 0) break;
    n += (size_t)w;
  }
}

static void note_result(pgs_sink *s, const pgs_cmd_rec *rec, const PGresult *res, const od_change *changes) {
  const char *t = PQcmdTuples((PGresult *)res);
  long rows = t && *t ? strtol(t, NULL, 10) : 0;
  switch (rec->cmd) {
    case PGS_CMD_INSERT: s->stats.inserted++; break;
    case PGS_CMD_UPSERT:
    case PGS_CMD_UPSERT_ROW: s->stats.updated++; break;
    case PGS_CMD_DELETE:
      if (rows > 0) s->stats.deleted++;
      else s->stats.delete_missing++;
      break;
    case PGS_CMD_TRUNCATE: s->stats.truncated++; break;
    case PGS_CMD_WAL_LSN: pgs_durable_note(s, res); break;
    case PGS_CMD_UPDATE:
      if (rows > 0) {
        s->stats.updated++;
      } else {
        char key[256] = "no row equal to the old row";
        if (rec->r->keyed && changes && rec->change >= 0) {
          const od_change *c = &changes[rec->change];
          describe_key(rec->r, c->old_kind ? &c->oldtup : &c->newtup, key, sizeof key);
        }
        od_warn("postgres sink %s: table %s: update of a missing row (%s) has unchanged TOAST values; row "
                "skipped", s->where, rec->r->target, key);
        s->stats.missing_skipped++;
      }
      break;
    default: break;
  }
}

int pgs_pipeline_finish(pgs_sink *s, const od_change *changes, od_error *err) {
  int rc = OD_OK;
  PGconn *conn = s->conn;
  if (!conn) return pgs_fail(s, NULL, "sending changes", NULL, err);
  if (!PQpipelineSync(conn)) rc = pgs_fail(s, NULL, "syncing the pipeline", NULL, err);
  size_t i = 0, nulls = 0;
  while (rc == OD_OK || PQstatus(conn) == CONNECTION_OK) {
    PGresult *res = PQgetResult(conn);
    if (!res) {
      /* One NULL ends each command's results; more than that means the connection is gone. */
      if (PQstatus(conn) != CONNECTION_OK || ++nulls > s->ncmds + 2) {
        if (!rc) rc = pgs_fail(s, NULL, "reading results", NULL, err);
        break;
      }
      continue;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      break;
    }
    const pgs_cmd_rec *rec = i < s->ncmds ? &s->cmds[i] : NULL;
    i++;
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      if (!rc && rec && rec->cmd == PGS_CMD_TRY_INSERT && state && strcmp(state, "23505") == 0)
        s->try_conflict = true; /* a key already there: the caller redoes the run as an upsert */
      else if (!rc) rc = pgs_fail(s, rec && rec->r ? rec->r->target : NULL, rec ? rec->what : "pipeline", res, err);
    } else if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (rec && rec->cmd == PGS_CMD_COMMIT && strcmp(PQcmdStatus(res), "COMMIT") != 0 && !rc)
        rc = OD_FAIL(err, OD_ESINK, "postgres sink %s: COMMIT: the server rolled the transaction back (%s)",
                     s->where, PQcmdStatus(res));
      else if (rec && !rc) note_result(s, rec, res, changes);
    }
    PQclear(res);
  }
  s->ncmds = 0;
  s->stats.round_trips++;
  if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(conn) && !rc)
    rc = pgs_fail(s, NULL, "leaving pipeline mode", NULL, err);
  return rc;
}

/* ---- one change -> statements -------------------------------------------------------------- */

static int check_tuple(pgs_sink *s, const pg_rel *r, const od_tuple *t, const char *which, od_error *err) {
  if (t->ncolumns == r->rel->ncolumns && t->values) return OD_OK;
  return OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s: %s tuple has %d values, relation has %d columns",
                 s->where, r->target, which, t->ncolumns, r->rel->ncolumns);
}

static int need_old_row(pgs_sink *s, const pg_rel *r, const od_change *c, const char *op, od_error *err) {
  if (c->old_kind == 'O') return check_tuple(s, r, &c->oldtup, "old", err);
  return OD_FAIL(err, OD_ESINK,
                 "postgres sink %s: table %s: %s on a table without key needs the full old row; set "
                 "REPLICA IDENTITY FULL on the source table or give it a primary key",
                 s->where, r->target, op);
}

/* Bind the plan's values (text format) and queue Bind/Execute of `st`. */
static int send_exec(pgs_sink *s, const pg_rel *r, const pgs_stmt *st, uint8_t cmd, const char *what, int32_t idx,
                     const od_tuple *nt, const od_tuple *mt, od_error *err) {
  for (int p = 0; p < st->nplan; p++) {
    int col = PGS_COL(st->plan[p]);
    const od_value *v = &((st->plan[p] & PGS_FROM_MATCH) ? mt : nt)->values[col];
    switch (v->kind) {
      case OD_VALUE_NULL: s->pvals[p] = NULL; break;
      case OD_VALUE_TEXT: s->pvals[p] = v->data; break;
      case OD_VALUE_BINARY:
        return OD_FAIL(err, OD_EUNSUPPORTED,
                       "postgres sink %s: table %s: column %s: binary values are not supported yet; the "
                       "source must send text (pgoutput without binary)", s->where, r->target,
                       r->rel->columns[col].name);
      default:
        return OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s: %s: column %s has no value to send",
                       s->where, r->target, what, r->rel->columns[col].name);
    }
  }
  if (!pgs_cmd_push(s, cmd, r, what, idx)) return oom(s, err);
  if (!PQsendQueryPrepared(s->conn, st->name, st->nplan, s->pvals, NULL, NULL, 0))
    return pgs_fail(s, r->target, what, NULL, err);
  return OD_OK;
}

static bool any_unchanged(const od_tuple *t) {
  for (int i = 0; i < t->ncolumns; i++)
    if (t->values[i].kind == OD_VALUE_UNCHANGED) return true;
  return false;
}

static bool key_changed(const pg_rel *r, const od_tuple *old, const od_tuple *nt) {
  for (int k = 0; k < r->nkey; k++) {
    int col = PGS_COL(r->key_plan[k]);
    const od_value *a = &old->values[col], *b = &nt->values[col];
    if (a->kind != b->kind || a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0)) return true;
  }
  return false;
}

static int send_update(pgs_sink *s, pg_rel *r, const od_change *c, int32_t idx, od_error *err) {
  const od_tuple *nt = &c->newtup;
  const pgs_stmt *st;
  const pgs_variant *v;
  int rc;
  if (r->keyed) {
    const od_tuple *mt = nt;
    if (c->old_kind == 'K' || c->old_kind == 'O') {
      if ((rc = check_tuple(s, r, &c->oldtup, "old", err))) return rc;
      mt = &c->oldtup;
    }
    if (!any_unchanged(nt)) {
      /* The whole row is known: upsert it (a missing row is written), after removing the old key. */
      if (mt != nt && key_changed(r, mt, nt)) {
        if ((rc = pgs_stmt_delete_keyed(s, r, &st, err)) ||
            (rc = send_exec(s, r, st, PGS_CMD_OTHER, "update (removing the old key)", idx, mt, mt, err)))
          return rc;
      }
      if ((rc = pgs_stmt_insert(s, r, &st, err))) return rc;
      return send_exec(s, r, st, PGS_CMD_UPSERT, "update", idx, nt, nt, err);
    }
    if ((rc = pgs_variant_get(s, r, PGS_V_UPDATE, nt, NULL, &v, err))) return rc;
    if (!v) { /* every value unchanged: nothing to write */
      s->stats.updated++;
      return OD_OK;
    }
    return send_exec(s, r, &v->st, PGS_CMD_UPDATE, "update", idx, nt, mt, err);
  }
  if ((rc = need_old_row(s, r, c, "update", err))) return rc;
  bool partial = any_unchanged(nt);
  if ((rc = pgs_variant_get(s, r, partial ? PGS_V_UPDATE : PGS_V_UPSERT_ROW, nt, &c->oldtup, &v, err))) return rc;
  if (!v) {
    s->stats.updated++;
    return OD_OK;
  }
  return send_exec(s, r, &v->st, partial ? PGS_CMD_UPDATE : PGS_CMD_UPSERT_ROW, "update", idx, nt, &c->oldtup, err);
}

static int send_delete(pgs_sink *s, pg_rel *r, const od_change *c, int32_t idx, od_error *err) {
  int rc;
  if (r->keyed) {
    if (c->old_kind != 'K' && c->old_kind != 'O')
      return OD_FAIL(err, OD_ESINK, "postgres sink %s: table %s: delete without the old key", s->where, r->target);
    const pgs_stmt *st;
    if ((rc = check_tuple(s, r, &c->oldtup, "old", err)) || (rc = pgs_stmt_delete_keyed(s, r, &st, err))) return rc;
    return send_exec(s, r, st, PGS_CMD_DELETE, "delete", idx, &c->oldtup, &c->oldtup, err);
  }
  if ((rc = need_old_row(s, r, c, "delete", err))) return rc;
  const pgs_variant *v;
  if ((rc = pgs_variant_get(s, r, PGS_V_DELETE, NULL, &c->oldtup, &v, err))) return rc;
  return send_exec(s, r, &v->st, PGS_CMD_DELETE, "delete", idx, &c->oldtup, &c->oldtup, err);
}

static int send_change(pgs_sink *s, pg_rel *r, const od_change *c, int32_t idx, od_error *err) {
  const pgs_stmt *st;
  int rc = pgs_send_begin(s, err);
  if (rc) return rc;
  switch (c->op) {
    case OD_OP_INSERT:
    case OD_OP_READ:
      if ((rc = check_tuple(s, r, &c->newtup, "new", err)) || (rc = pgs_stmt_insert(s, r, &st, err))) return rc;
      return send_exec(s, r, st, PGS_CMD_INSERT, "insert", idx, &c->newtup, &c->newtup, err);
    case OD_OP_UPDATE:
      if ((rc = check_tuple(s, r, &c->newtup, "new", err))) return rc;
      return send_update(s, r, c, idx, err);
    case OD_OP_DELETE:
      return send_delete(s, r, c, idx, err);
    case OD_OP_TRUNCATE:
      if ((rc = pgs_stmt_truncate(s, r, &st, err))) return rc;
      return send_exec(s, r, st, PGS_CMD_TRUNCATE, "truncate", idx, NULL, NULL, err);
    default:
      return OD_FAIL(err, OD_EUNSUPPORTED, "postgres sink %s: table %s: unknown operation %d", s->where, r->target,
                     c->op);
  }
}

/* Pass 2 over changes[from, to): one pipeline, one sync. Every relation has its state. */
static int send_range_in(pgs_sink *s, const od_change *changes, size_t from, size_t to, od_error *err);

static int send_range(pgs_sink *s, const od_change *changes, size_t from, size_t to, od_error *err) {
  s->batch = changes; /* a flush may read results mid-batch (postgres_bulk.c) */
  int rc = send_range_in(s, changes, from, to, err);
  s->batch = NULL;
  return rc;
}

static int send_range_in(pgs_sink *s, const od_change *changes, size_t from, size_t to, od_error *err) {
  if (!PQenterPipelineMode(s->conn)) return pgs_fail(s, NULL, "entering pipeline mode", NULL, err);
  int rc = OD_OK;
  /* No BEGIN here: the first statement sent sends it (pgs_send_begin), so an apply() whose
   * changes all went into set-based buffers costs no round trip; the commit sends BEGIN then. A
   * mesh sink sends it at once (postgres_mesh.c writes outside the pipeline after apply(), in the
   * transaction). */
  if (s->mesh) rc = pgs_send_begin(s, err);
  const od_relation *last = NULL;
  pg_rel *r = NULL;
  for (size_t i = from; i < to && rc == OD_OK; i++) {
    const od_change *c = &changes[i];
    if (c->op == OD_OP_MESSAGE) continue;
    if (c->rel != last && (rc = pgs_rel_get(s, c->rel, &r, err))) break;
    last = c->rel;
    /* Simple changes of keyed tables are buffered (postgres_bulk.c); anything else of the same
     * relation first flushes its buffer, then takes the per-row path. */
    bool taken = false;
    if (r->bulk && (rc = pgs_bulk_add(s, r, c, &taken, err))) break;
    if (taken) continue;
    if (r->bulk && (rc = pgs_bulk_flush(s, r, err))) break;
    rc = send_change(s, r, c, (int32_t)i, err);
  }
  /* Everything went into set-based buffers: no round trip. */
  if (rc == OD_OK && s->ncmds == 0)
    return PQexitPipelineMode(s->conn) ? OD_OK : pgs_fail(s, NULL, "leaving pipeline mode", NULL, err);
  od_error ignored;
  int frc = pgs_pipeline_finish(s, changes, rc ? &ignored : err);
  return rc ? rc : frc;
}

int pgs_apply(od_sink *base, const od_change *changes, size_t n, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  if (s->mesh && s->in_txn && s->conn) return pgs_mesh_apply(s, changes, n, err);
  return pgs_apply_changes(s, changes, n, err);
}

int pgs_apply_changes(pgs_sink *s, const od_change *changes, size_t n, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: apply without begin", s->where);
  if (!s->conn) return pgs_fail(s, NULL, "applying changes", NULL, err);
  int lrc = pgs_load_end(s, err);
  if (lrc) return lrc;
  if (n > INT32_MAX) return OD_FAIL(err, OD_EINVAL, "postgres sink %s: batch of %zu changes is too large", s->where, n);
  /* In segments: a new version of a table already used in the segment starts the next one, so
   * that its DDL runs after the older version's statements and before its own. */
  size_t start = 0;
  int rc = OD_OK;
  while (start < n) {
    size_t end = n;
    s->seg++;
    /* Pass 1: every relation's state (DDL runs synchronously, inside the transaction). */
    const od_relation *last = NULL;
    pg_rel *r = NULL;
    for (size_t i = start; i < n; i++) {
      const od_change *c = &changes[i];
      if (c->op == OD_OP_MESSAGE || c->rel == last) continue;
      if (!c->rel)
        return OD_FAIL(err, OD_EINVAL, "postgres sink %s: change %zu (op %c) has no relation", s->where, i, c->op);
      if (i > start && !pgs_rel_known(s, c->rel) && pgs_rel_table_in_segment(s, c->rel)) {
        end = i;
        break;
      }
      /* DDL may follow: buffered changes go out first. */
      if (!pgs_rel_known(s, c->rel) && (rc = pgs_bulk_flush_now(s, err))) return rc;
      if (c->op == OD_OP_TRUNCATE && (c->truncate_flags & OD_TRUNCATE_START_OVER) && !pgs_rel_known(s, c->rel))
        s->start_over = c->rel;
      rc = pgs_rel_get(s, c->rel, &r, err);
      s->start_over = NULL;
      if (rc || (rc = pgs_bulk_ready(s, r, err))) return rc;
      r->seg = s->seg;
      last = c->rel;
    }
    if ((rc = send_range(s, changes, start, end, err))) return rc;
    start = end;
  }
  return OD_OK;
}

