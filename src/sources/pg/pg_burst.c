/* pg_burst.c — leaving the replication stream for batch decoding when it falls far behind the server
 * while streaming: a burst at the head (a bulk load, a restore, a backfill) that the walsender,
 * which sends and flushes one message at a time, cannot keep up with (issue #9; batch calls decode
 * several times faster, docs/adapters/postgres-source.md "Catch-up by batch decoding").
 *
 * Every half second (or status_interval_ms, if shorter) the stream's distance to the server's WAL
 * (pg_current_wal_lsn() minus what the stream has sent) is read. When the reads show a burst of
 * transactions at catchup_lag_bytes or more behind (the threshold a session uses at its start; the
 * rule, its window of reads and its counts: pg_burst_rule.h), not one large transaction (after a
 * catch-up the stream reads 60 intervals, 30 s by default, before the next read), the switch is
 * pending: the source stops reading at the next transaction boundary, asks the pipeline to commit
 * what it holds (an idle position at the last transaction delivered), waits until the sinks hold
 * every transaction delivered (standby status keeps going out), ends the stream with CopyDone (the
 * walsender releases the slot), opens a new replication connection for the stream that follows, and
 * enters catch-up from that position (pg_catchup.c), which returns to streaming below
 * catchup_exit_bytes.
 * Nothing delivered is delivered again, nothing undelivered is skipped: the batch calls start where
 * the sinks' durable position is, which is the end of the last transaction delivered.
 *
 * The wait for the sinks is bounded (30 s): past it (a sink down, its spool filling) the stream
 * goes on as before and the switch is tried again a minute later.
 * Not for mesh sources (their clock state is seeded from what the stream shows since the session's
 * start), before PostgreSQL 12 (no slot copy), nor while a streamed transaction is open or being
 * replayed (it is finished first: the calls would send it again from its start).
 * Owns: the switch's state in pg_source (burst_*).
 * Never touches: decoding, the batch calls (pg_catchup.c), the sinks.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_stream.h"

/* How long ending the stream may take (reading what the walsender sent before our CopyDone). */
#define BURST_END_WAIT_US (30 * 1000000LL)
/* How long the source stops reading for the sinks to hold what was delivered: past it (a sink that
 * is down, a spool filling) the stream goes on as before, and the switch is tried again later. */
#define BURST_DRAIN_WAIT_US (30 * 1000000LL)
#define BURST_RETRY_AFTER_US (60 * 1000000LL)
/* Which reads make a burst: pg_burst_rule.c (a burst of transactions, not one large transaction
 * that the walsender decodes, which leaves the distance as it is and delivers none meanwhile, nor a
 * backlog the stream is already reducing). */

int od_pg_burst_check(pg_source *s, od_error *err) {
  if (s->burst_pending || s->catchup || s->mesh || s->catchup_lag_bytes <= 0 || !s->meta ||
      PQserverVersion(s->meta) < 120000)
    return OD_OK;
  int64_t behind = 0;
  od_lsn from = s->received > s->floor ? s->received : s->floor;
  int rc = od_pg_catchup_wal_behind(s, s->meta, from, &behind, err);
  if (rc) {
    od_debug("%s: reading how far the stream is behind: %s", s->where, err->msg);
    od_error_clear(err); /* retried at the next status interval */
    return OD_OK;
  }
  pg_burst_window w = s->burst; /* the window before this read (reads 0: this read starts one) */
  if (behind >= s->catchup_lag_bytes)
    od_debug("%s: the stream is %.1f MB behind the server (read %d of %d..%d: %.1f MB at the first, %llu transactions "
             "delivered since)", s->where, behind / 1048576.0, w.reads + 1, PG_BURST_MIN_READS, PG_BURST_MAX_READS,
             (w.reads ? w.first_behind : behind) / 1048576.0,
             (unsigned long long)(w.reads ? s->commits_delivered - w.first_commits : 0));
  if (!pg_burst_window_read(&s->burst, behind, s->commits_delivered, s->catchup_lag_bytes)) return OD_OK;
  s->burst_pending = true;
  s->burst_idle_offered = false;
  s->burst_pending_at = od_mono_us();
  od_info("%s: the stream is %.1f MB behind the server (catchup_lag_bytes %.1f MB): switching to batch decoding "
          "once the sinks hold what was delivered", s->where, behind / 1048576.0, s->catchup_lag_bytes / 1048576.0);
  return OD_OK;
}

bool od_pg_burst_ready(const pg_source *s) {
  return s->burst_pending && !od_pgoutput_in_transaction(s->decoder) &&
         !(s->stream_v2 && (od_pg_stream_replaying(s->stream) || od_pg_stream_busy(s->stream)));
}

/* CopyDone, then read (and drop) what the walsender sent before it saw ours, up to its CopyDone and
 * the end of START_REPLICATION: every transaction in it is after the last one delivered. */
static int end_stream(pg_source *s, od_error *err) {
  if (PQputCopyEnd(s->repl, NULL) != 1 || PQflush(s->repl) != 0)
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: ending the replication stream: %s", s->where, PQerrorMessage(s->repl));
  int64_t deadline = od_mono_us() + BURST_END_WAIT_US;
  long dropped = 0;
  for (;;) {
    char *buf = NULL;
    int n = PQgetCopyData(s->repl, &buf, 1);
    if (n > 0) {
      PQfreemem(buf);
      dropped++;
      continue;
    }
    if (n == -1) break;
    if (n == -2 || od_mono_us() > deadline)
      return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: ending the replication stream: %s", s->where,
                           n == -2 ? PQerrorMessage(s->repl) : "the server did not end it within 30 s");
    struct pollfd p = {.fd = PQsocket(s->repl), .events = POLLIN};
    (void)poll(&p, 1, 100);
    if (!PQconsumeInput(s->repl))
      return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: ending the replication stream: %s", s->where, PQerrorMessage(s->repl));
  }
  int rc = OD_OK;
  PGresult *r;
  while ((r = PQgetResult(s->repl))) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && rc == OD_OK) {
      char m[300];
      snprintf(m, sizeof m, "%s", PQresultErrorMessage(r));
      m[strcspn(m, "\n")] = '\0';
      rc = OD_FAIL_RETRY(err, OD_ESOURCE, "%s: ending the replication stream: %s", s->where, m);
    }
    PQclear(r);
  }
  if (rc) return rc;
  od_debug("%s: replication stream ended (%ld messages sent after the last delivered transaction dropped)", s->where,
           dropped);
  /* The slot is released now (the walsender did so before ending the command). A walsender does
   * not stream a second time on the same connection (PostgreSQL 15 ends the next START_REPLICATION
   * at once), so the stream that follows the catch-up gets a new one. */
  PQfinish(s->repl);
  s->repl = od_pg_connect(s, true, err);
  return s->repl ? OD_OK : err->code;
}

int od_pg_burst_step(pg_source *s, int timeout_ms, od_error *err) {
  od_lsn delivered = s->catchup_last_end > s->floor ? s->catchup_last_end : s->floor;
  int rc;
  if (s->durable < delivered && od_mono_us() - s->burst_pending_at > BURST_DRAIN_WAIT_US) {
    s->burst_pending = false;
    s->burst_checked_at = od_mono_us() + BURST_RETRY_AFTER_US; /* the next check in about a minute */
    od_info("%s: the sinks did not hold what the stream delivered within %d s: the stream goes on (batch decoding is "
            "tried again in a minute)", s->where, (int)(BURST_DRAIN_WAIT_US / 1000000));
    return OD_OK;
  }
  if (s->durable < delivered) {
    /* The pipeline may keep a batch open for more rows (batch.linger): there are none until it
     * commits, so say so once. */
    if (!s->burst_idle_offered && s->outer && s->outer->idle) {
      s->burst_idle_offered = true;
      od_pos idle = od_pg_pos(delivered);
      if ((rc = s->outer->idle(s->outer->ctx, &idle, err))) return rc;
    }
    if (od_mono_us() - s->last_status_at >= s->status_interval_ms * 1000 && (rc = od_pg_send_status(s, err)))
      return rc;
    usleep((useconds_t)(timeout_ms < 2 ? timeout_ms : 2) * 1000);
    return OD_OK;
  }
  s->burst_pending = false;
  int64_t behind = 0;
  if ((rc = od_pg_catchup_wal_behind(s, s->meta, delivered, &behind, err))) return rc;
  if (behind < s->catchup_lag_bytes) {
    od_info("%s: the stream is %.1f MB behind now: it goes on", s->where, behind / 1048576.0);
    return OD_OK;
  }
  /* The slot's confirmed position follows the sinks before the stream ends. */
  if ((rc = od_pg_send_status(s, err)) || (rc = end_stream(s, err))) return rc;
  od_pgoutput_reset(s->decoder);
  if (s->stream) od_pg_stream_reset(s->stream);
  s->stream_v2 = false;
  s->received = delivered;
  if ((rc = od_pg_catchup_enter(s, delivered, err))) return rc;
  return s->catchup ? OD_OK : od_pg_start_streaming(s, delivered, err);
}
