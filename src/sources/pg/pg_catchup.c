/* pg_catchup.c — catch-up by batch decoding: while the slot is far behind the server (a backlog
 * after downtime, a burst, a huge transaction), changes are fetched through SQL on an ordinary
 * connection instead of through the walsender's stream, whose per-message cost caps every
 * streaming consumer (docs/adapters/postgres-source.md, "Catch-up by batch decoding"). The
 * messages are the same pgoutput messages and go through the same decoder and handler.
 *
 * The pipeline's slot is only ever moved by pg_replication_slot_advance to a position the
 * pipeline said is durable in every sink; it is never consumed. Batches come from a TEMPORARY
 * COPY of it (pg_copy_logical_replication_slot, PostgreSQL 12+), consumed with
 * pg_logical_slot_get_binary_changes: each call continues where the last one ended, so batches
 * are fetched back to back while the sinks apply the previous ones, and nothing is decoded twice.
 * The copy dies with the connection; a crash leaves the real slot at or behind what the sinks
 * hold. Without the copy (PostgreSQL 10/11) batches come from pg_logical_slot_peek_binary_changes
 * on the real slot, which returns everything after its confirmed position: the next batch is then
 * fetched only once the last one is durable and the slot was advanced past it.
 * Near the head (less than catchup_exit_bytes of WAL left, or a batch that came back empty) the
 * source waits for the last batch to be durable and switches to streaming from there, so latency
 * at the head is the stream's.
 *
 * Owns: the peek connection (s->peek) and the catch-up fields of pg_source.
 * Never touches: the replication stream (pg_source.c), decoding (pgoutput.c), the catalog.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "sources/pg/pg_internal.h"

static void lsn_text(od_lsn l, char *buf, size_t n) { snprintf(buf, n, "%X/%X", OD_LSN_ARGS(l)); }

/* Bytes of WAL the server has written past `from` (0 when not behind). */
static int wal_behind(pg_source *s, PGconn *c, od_lsn from, int64_t *out, od_error *err) {
  char l[32];
  lsn_text(from, l, sizeof l);
  const char *p[] = {l};
  PGresult *r = od_pg_query(s, c, "SELECT pg_current_wal_lsn() - $1::pg_lsn", 1, p, err);
  if (!r) return err->code;
  *out = atoll(PQgetvalue(r, 0, 0));
  if (*out < 0) *out = 0;
  PQclear(r);
  return OD_OK;
}

static int advance_slot(pg_source *s, od_lsn to, od_error *err) {
  if (to <= s->catchup_advanced) return OD_OK;
  char l[32];
  lsn_text(to, l, sizeof l);
  const char *p[] = {s->slot, l};
  PGresult *r = od_pg_query(s, s->peek, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", 2, p, err);
  if (!r) {
    if (strstr(err->msg, "is active for PID"))
      return OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process: is another odsync "
                           "running pipeline %s?", s->where, s->slot, s->pipeline);
    return od_error_prefix(err, "advancing slot %s to %s: ", s->slot, l);
  }
  PQclear(r);
  s->catchup_advanced = to;
  return OD_OK;
}

static void leave(pg_source *s) {
  PQfinish(s->peek);
  s->peek = NULL;
  s->catchup = false;
}

int od_pg_catchup_enter(pg_source *s, od_lsn start, od_error *err) {
  s->catchup = false;
  if (s->catchup_lag_bytes <= 0) return OD_OK;
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  int64_t behind = 0;
  int rc = wal_behind(s, s->meta, start, &behind, err);
  if (rc) return rc;
  if (behind < s->catchup_lag_bytes) return OD_OK;
  if (!(s->peek = od_pg_connect(s, false, err))) return err->code;
  /* The sink holds everything before `start`: moving the slot there is what streaming's first
   * status would do, and a peek has no start position of its own. */
  s->catchup_advanced = s->floor;
  if ((rc = advance_slot(s, start, err))) {
    leave(s);
    return rc;
  }
  s->catchup_copy[0] = '\0';
  if (PQserverVersion(s->peek) >= 120000) {
    char copy[64];
    /* Named after this session's backend (unique while it lives; an earlier session's copy may
     * not be gone yet when a restarted pipeline makes a new one). */
    snprintf(copy, sizeof copy, "%.40s_catchup_%d", s->slot, PQbackendPID(s->peek));
    const char *p[] = {s->slot, copy};
    PGresult *r = od_pg_query(s, s->peek, "SELECT pg_copy_logical_replication_slot($1, $2, true)", 2, p, err);
    if (!r) {
      leave(s);
      return od_error_prefix(err, "copying slot %s for batch decoding: ", s->slot);
    }
    PQclear(r);
    snprintf(s->catchup_copy, sizeof s->catchup_copy, "%s", copy);
  }
  s->catchup = true;
  s->catchup_leaving = false;
  s->catchup_batch_end = 0; /* nothing delivered yet: the first batch needs no acknowledgement */
  s->catchup_batches = 0;
  od_info("%s: slot %s is %.1f MB behind: catching up by batch decoding (%ld changes per call) until less than "
          "%.1f MB remain",
          s->where, s->slot, behind / 1048576.0, s->catchup_batch, s->catchup_exit_bytes / 1048576.0);
  return OD_OK;
}

int od_pg_catchup_ack(pg_source *s, od_lsn durable, bool force, od_error *err) {
  if (durable > s->durable) s->durable = durable;
  return force && s->peek ? advance_slot(s, s->durable, err) : OD_OK;
}

/* Read one call's rows in single-row mode (never the whole batch in memory), each row one
 * pgoutput message for the decoder: a get call on the temporary copy, else a peek on the slot. */
static int fetch_batch(pg_source *s, long *rows, od_error *err) {
  char n[24];
  snprintf(n, sizeof n, "%ld", s->catchup_batch);
  char pubs[80];
  snprintf(pubs, sizeof pubs, "\"%s\"", s->publication);
  const char *p[] = {s->catchup_copy[0] ? s->catchup_copy : s->slot, n, pubs};
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT data FROM pg_logical_slot_%s_binary_changes($1, NULL, $2::int, 'proto_version', '1', "
           "'publication_names', $3%s)",
           s->catchup_copy[0] ? "get" : "peek", PQserverVersion(s->peek) >= 140000 ? ", 'messages', 'true'" : "");
  if (!PQsendQueryParams(s->peek, sql, 3, NULL, p, NULL, NULL, 1) || !PQsetSingleRowMode(s->peek)) {
    char m[300];
    snprintf(m, sizeof m, "%s", PQerrorMessage(s->peek));
    m[strcspn(m, "\n")] = '\0';
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: batch decoding: cannot send the peek call: %s", s->where, m);
  }
  int rc = OD_OK;
  *rows = 0;
  PGresult *r;
  while ((r = PQgetResult(s->peek))) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_SINGLE_TUPLE && rc == OD_OK) {
      rc = od_pgoutput_decode(s->decoder, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), &s->wrap, err);
      ++*rows;
    } else if (st == PGRES_FATAL_ERROR && rc == OD_OK) {
      char m[400];
      snprintf(m, sizeof m, "%s", PQresultErrorMessage(r));
      m[strcspn(m, "\n")] = '\0';
      if (strstr(m, "is active for PID"))
        rc = OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process (%s): is another "
                           "odsync running pipeline %s?", s->where, s->slot, m, s->pipeline);
      else
        rc = OD_FAIL_RETRY(err, PQstatus(s->peek) == CONNECTION_OK ? OD_ESOURCE : OD_ECONNECT,
                           "%s: batch decoding (logical decoding SQL call on slot %s) failed: %s", s->where,
                           p[0], m);
    }
    PQclear(r);
    if (rc && rc != OD_ECONNECT && PQstatus(s->peek) == CONNECTION_OK) {
      /* A handler failed (or the pipeline is stopping) mid-batch: stop the server's work rather
       * than reading the rest of a batch nobody will use. */
      PGcancel *c = PQgetCancel(s->peek);
      char ignored[64];
      if (c) PQcancel(c, ignored, sizeof ignored);
      PQfreeCancel(c);
    }
  }
  return rc;
}

int od_pg_catchup_poll(pg_source *s, int timeout_ms, od_error *err) {
  /* Wait for the last batch to be durable (the pipeline acknowledges between polls) before a peek
   * (it would return that batch again) and before switching to streaming. */
  if ((!s->catchup_copy[0] || s->catchup_leaving) && s->durable < s->catchup_batch_end) {
    usleep((useconds_t)(timeout_ms < 2 ? timeout_ms : 2) * 1000);
    return OD_OK;
  }
  int rc = advance_slot(s, s->durable, err);
  if (rc) return rc;
  if (s->catchup_leaving) {
    od_info("%s: caught up by batch decoding (%ld calls); streaming from %X/%X", s->where, s->catchup_batches,
            OD_LSN_ARGS(s->durable));
    leave(s);
    return OD_OK;
  }
  long rows = 0;
  int64_t t0 = od_mono_us();
  if ((rc = fetch_batch(s, &rows, err))) return rc;
  s->catchup_batches++;
  if (od_pgoutput_in_transaction(s->decoder))
    return OD_FAIL(err, OD_EPROTOCOL, "%s: batch decoding returned a transaction without its commit", s->where);
  if (s->catchup_last_end > s->catchup_batch_end) s->catchup_batch_end = s->catchup_last_end;
  if (s->catchup_batch_end > s->received) s->received = s->catchup_batch_end;
  int64_t behind = 0;
  if (rows == 0) {
    s->catchup_leaving = true;
  } else if ((rc = wal_behind(s, s->peek, s->catchup_batch_end, &behind, err))) {
    return rc;
  } else if (behind < s->catchup_exit_bytes) {
    s->catchup_leaving = true;
  }
  od_debug("%s: batch decoding: %ld messages in %.3f s, up to %X/%X, %.1f MB behind", s->where, rows,
           (od_mono_us() - t0) / 1e6, OD_LSN_ARGS(s->catchup_batch_end), behind / 1048576.0);
  return OD_OK;
}

void od_pg_catchup_close(pg_source *s) { leave(s); }
