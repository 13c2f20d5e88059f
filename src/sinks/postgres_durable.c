/* sinks/postgres_durable.c — the PostgreSQL sink's `synchronous_commit: off`: commits that return
 * before their WAL flush, and the account of which of them are durable (OD_SINK_DEFERRED_DURABILITY).
 *
 * Owns: pgs_sink.dur (the commits not yet known flushed, each with the end of WAL it needs and the
 * checkpoint position it wrote; the last position known durable). How it learns: every commit with a
 * checkpoint sends, in the same pipeline after its COMMIT, `SELECT pg_current_wal_insert_lsn(),
 * pg_current_wal_flush_lsn()`: the first is at or past the end of that commit's record, the second
 * is how far the server has flushed, which covers the earlier commits once its WAL writer caught up
 * (wal_writer_delay, 200 ms by default). Between transactions the pipeline may poll: the flush
 * position alone, and, when a commit has waited longer than PGS_DURABLE_FORCE_US, a forced flush —
 * a transaction that rewrites the checkpoint row as it is and commits with synchronous_commit = on,
 * whose WAL flush covers every record before it. read_position() forces one first, so a checkpoint it reads is
 * durable. With synchronous_commit on (the default) every commit is durable when it returns and
 * durable() reports the last one.
 * At most PGS_DURABLE_MAX commits are listed; past that, every other one is dropped (a later entry
 * still covers it, so durable() only answers later, never wrongly).
 * Never touches: the batch's statements, the checkpoint row itself (postgres.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "sinks/postgres_internal.h"

#define PGS_DURABLE_FORCE_US 1000000

static bool parse_lsn(const char *t, uint64_t *out) {
  unsigned hi, lo;
  char tail;
  if (!t || sscanf(t, "%X/%X%c", &hi, &lo, &tail) != 2) return false;
  *out = (uint64_t)hi << 32 | lo;
  return true;
}

/* Everything listed up to `flushed` is durable. */
static void advance(pgs_sink *s, uint64_t flushed) {
  pgs_durable_state *d = &s->dur;
  size_t k = 0;
  while (k < d->n && d->pend[k].lsn <= flushed) d->durable = d->pend[k++].pos;
  if (!k) return;
  memmove(d->pend, d->pend + k, (d->n - k) * sizeof *d->pend);
  d->n -= k;
  if (d->n) d->oldest_us = od_mono_us(); /* the next one starts its wait now at the latest */
}

int pgs_durable_send(pgs_sink *s, od_error *err) {
  if (!pgs_cmd_push(s, PGS_CMD_WAL_LSN, NULL, "reading the WAL position of the commit", -1))
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  if (!PQsendQueryParams(s->conn, "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text", 0,
                         NULL, NULL, NULL, NULL, 0))
    return pgs_fail(s, NULL, "reading the WAL position of the commit", NULL, err);
  s->dur.commit_lsn = 0;
  return OD_OK;
}

void pgs_durable_note(pgs_sink *s, const PGresult *res) {
  uint64_t at, flushed;
  if (PQntuples(res) != 1 || PQnfields(res) != 2) return;
  if (parse_lsn(PQgetvalue(res, 0, 0), &at)) s->dur.commit_lsn = at;
  if (parse_lsn(PQgetvalue(res, 0, 1), &flushed) && flushed > s->dur.flushed) s->dur.flushed = flushed;
}

void pgs_durable_committed(pgs_sink *s, const od_pos *pos) {
  pgs_durable_state *d = &s->dur;
  if (!s->async_commit) {
    d->durable = *pos;
    return;
  }
  if (!d->commit_lsn) { /* no answer (cannot happen after a COMMIT that succeeded): wait for a forced flush */
    d->commit_lsn = UINT64_MAX;
  }
  if (d->n == PGS_DURABLE_MAX) { /* keep every other one, and the last */
    size_t w = 0;
    for (size_t r = 1; r < d->n; r += 2) d->pend[w++] = d->pend[r];
    d->n = w;
  }
  if (!d->n) d->oldest_us = od_mono_us();
  d->pend[d->n++] = (pgs_pending){.lsn = d->commit_lsn, .pos = *pos};
  advance(s, d->flushed);
}

void pgs_durable_reset(pgs_sink *s) {
  /* Commits of a lost session: their fate is the server's; a new session reads the checkpoint
   * after a forced flush. */
  s->dur.n = 0;
  s->dur.flushed = 0;
}

/* A synchronous commit waits for its WAL flush only when it wrote WAL before its commit record (a
 * transaction id alone writes none): it rewrites the checkpoint row's updated_at with its own
 * value. No row, no WAL: then there is no checkpoint whose durability matters. */
int pgs_durable_flush(pgs_sink *s, od_error *err) {
  if (!s->async_commit) return OD_OK;
  if (!s->conn) return pgs_fail(s, NULL, "flushing the WAL", NULL, err);
  char *name = PQescapeLiteral(s->conn, s->pipeline, strlen(s->pipeline));
  od_sqlbuf *b = &s->sql;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "BEGIN; SET LOCAL synchronous_commit = on; UPDATE ");
  od_sqlbuf_add(b, s->ck_q);
  od_sqlbuf_add(b, " SET updated_at = updated_at WHERE pipeline = ");
  od_sqlbuf_add(b, name ? name : "NULL");
  od_sqlbuf_add(b, "; COMMIT");
  PQfreemem(name);
  if (!name || b->oom) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  PGresult *r = PQexec(s->conn, b->p);
  s->stats.round_trips++;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    int rc = pgs_fail(s, NULL, "flushing the WAL (a synchronous commit)", r, err);
    PQclear(r);
    return rc;
  }
  PQclear(r);
  advance(s, UINT64_MAX); /* that flush covered every commit before it */
  return OD_OK;
}

static int poll_flushed(pgs_sink *s, od_error *err) {
  PGresult *r = PQexec(s->conn, "SELECT pg_current_wal_flush_lsn()::text");
  s->stats.round_trips++;
  uint64_t flushed;
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || !parse_lsn(PQgetvalue(r, 0, 0), &flushed)) {
    int rc = pgs_fail(s, NULL, "reading the WAL flush position", r, err);
    PQclear(r);
    return rc;
  }
  PQclear(r);
  if (flushed > s->dur.flushed) s->dur.flushed = flushed;
  advance(s, s->dur.flushed);
  return OD_OK;
}

int pgs_durable(od_sink *base, bool poll, od_pos *out, od_error *err) {
  pgs_sink *s = (pgs_sink *)base;
  pgs_durable_state *d = &s->dur;
  if (poll && d->n && s->async_commit && !s->in_txn) {
    if (!s->conn) return pgs_fail(s, NULL, "reading the WAL flush position", NULL, err);
    int rc = poll_flushed(s, err);
    if (!rc && d->n && od_mono_us() - d->oldest_us >= PGS_DURABLE_FORCE_US) rc = pgs_durable_flush(s, err);
    if (rc) return rc;
  }
  *out = d->durable;
  return OD_OK;
}
