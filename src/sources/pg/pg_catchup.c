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
 * Pipelining (copy only): a call's result is materialized by the server before its first row is
 * sent, so a call and the decoding of its rows cannot overlap; two calls can. The rows of call k
 * are read into a buffer (up to catchup_prefetch_bytes), call k+1 is sent at once, and call k's
 * rows are decoded and handed to the pipeline while the server decodes k+1. A call larger than the
 * buffer is decoded straight from the socket (no overlap for it, memory bounded all the same).
 * Every call is a new decoding session that starts at the copy's restart_lsn and decodes the WAL
 * up to where the last call ended again (not returned; about a fifth of the cost of decoding it).
 * restart_lsn moves only past an xl_running_xacts record (logged every 15 s and at checkpoints),
 * so after a fast burst it stays at the start of the backlog and fixed-size calls cost O(n²): while
 * the WAL decoded again exceeds twice what the last call covered, the next call's upto_nchanges
 * doubles (bounded by what the read-ahead buffer holds), which keeps the total at about one
 * backlog; it returns to catchup_batch_changes when restart_lsn follows.
 * The real slot is advanced on a connection of its own, asynchronously and at most once per
 * status_interval_ms: each advance re-reads WAL from the slot's restart_lsn (fast-forward), which
 * after a burst without xl_running_xacts records is the start of the backlog.
 Moving restart_lsn (catchup_move_restart, pg_restart.c): a running-transactions record is logged
 * at the head on entry and again when the source is near the head; one more call decodes past the
 * latter, the copy's confirmed position (all before it delivered) goes to the pipeline as an idle
 * position, and once the sinks hold it the slot is advanced there synchronously, so its
 * restart_lsn passes the record before the stream starts (checked in pg_replication_slots).
 *
 * Owns: the peek and advance connections (s->peek, s->catchup_adv), the row buffer (pg_readahead.c) and the
 * catch-up fields of pg_source.
 * Never touches: the replication stream (pg_source.c), decoding (pgoutput.c), the catalog.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "sources/pg/pg_internal.h"
#include "sources/pg/pg_plugin.h"
#include "sources/pg/pg_readahead.h"
#include "sources/pg/pg_stream.h"

/* At the switch, how long to wait for the sinks to acknowledge the copy's confirmed position. */
#define CATCHUP_IDLE_WAIT_US (10 * 1000000LL)

static void lsn_text(od_lsn l, char *buf, size_t n) { snprintf(buf, n, "%X/%X", OD_LSN_ARGS(l)); }

/* Bytes of WAL the server has written past `from` (0 when not behind). */
int od_pg_catchup_wal_behind(pg_source *s, PGconn *c, od_lsn from, int64_t *out, od_error *err) {
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

/* After a call that ended at `end`: bytes of WAL left on the server, bytes between the slot's
 * restart_lsn and `end` (what the next call decodes again; 0 if the slot is not found), and the
 * slot's confirmed position (with the copy: where the call stopped decoding — every transaction
 * that commits before it was returned by this call or an earlier one; 0 if unknown). */
static int call_distances(pg_source *s, od_lsn end, int64_t *behind, int64_t *redecode, od_lsn *confirmed,
                          od_error *err) {
  char l[32];
  lsn_text(end, l, sizeof l);
  const char *p[] = {l, s->catchup_copy[0] ? s->catchup_copy : s->slot};
  PGresult *r = od_pg_query(s, s->peek,
                            "SELECT pg_current_wal_lsn() - $1::pg_lsn, "
                            "(SELECT $1::pg_lsn - restart_lsn FROM pg_replication_slots WHERE slot_name = $2), "
                            "(SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $2)",
                            2, p, err);
  if (!r) return err->code;
  *behind = atoll(PQgetvalue(r, 0, 0));
  *redecode = PQgetisnull(r, 0, 1) ? 0 : atoll(PQgetvalue(r, 0, 1));
  *confirmed = 0;
  if (!PQgetisnull(r, 0, 2)) od_pg_parse_lsn(PQgetvalue(r, 0, 2), confirmed);
  if (*behind < 0) *behind = 0;
  if (*redecode < 0) *redecode = 0;
  PQclear(r);
  return OD_OK;
}

/* The next call's upto_nchanges (pg_readahead_next_limit), at most what the read-ahead buffer holds
 * at the last call's message size (`rows` messages of `bytes`). */
static void size_next_call(pg_source *s, int64_t span, int64_t redecode, long rows, int64_t bytes) {
  long most = 10000000;
  if (s->catchup_copy[0] && s->catchup_prefetch_bytes > 0 && rows > 0 && bytes > 0) {
    int64_t fit = s->catchup_prefetch_bytes / (bytes / rows + 4 + 1);
    if (fit < most) most = (long)fit;
  }
  s->catchup_limit = pg_readahead_next_limit(s->catchup_limit, s->catchup_batch, most, span, redecode);
}

static int advance_failed(pg_source *s, const char *lsn, od_error *err) {
  if (strstr(err->msg, "is active for PID"))
    return OD_FAIL_RETRY(err, OD_EBUSY, "%s: replication slot %s is in use by another process: is another odsync "
                         "running pipeline %s?", s->where, s->slot, s->pipeline);
  return od_error_prefix(err, "advancing slot %s to %s: ", s->slot, lsn);
}

/* Synchronous advance of the real slot on connection c (at entry, and for peek calls). */
static int advance_slot(pg_source *s, PGconn *c, od_lsn to, od_error *err) {
  if (to <= s->catchup_advanced) return OD_OK;
  char l[32];
  lsn_text(to, l, sizeof l);
  const char *p[] = {s->slot, l};
  PGresult *r = od_pg_query(s, c, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", 2, p, err);
  if (!r) return advance_failed(s, l, err);
  PQclear(r);
  s->catchup_advanced = to;
  s->catchup_stats.advances++;
  return OD_OK;
}

/* Collect the in-flight asynchronous advance: at once if `block`, else only if it has finished. */
static int adv_collect(pg_source *s, bool block, od_error *err) {
  if (!s->catchup_adv_inflight) return OD_OK;
  PGconn *c = s->catchup_adv;
  if (!block) {
    if (!PQconsumeInput(c)) {
      s->catchup_adv_inflight = false;
      return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: advancing slot %s: connection lost: %s", s->where, s->slot,
                           PQerrorMessage(c));
    }
    if (PQisBusy(c)) return OD_OK;
  }
  char l[32];
  lsn_text(s->catchup_adv_target, l, sizeof l);
  int rc = OD_OK;
  PGresult *r;
  while ((r = PQgetResult(c))) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK && rc == OD_OK) {
      char m[400];
      snprintf(m, sizeof m, "%s", PQresultErrorMessage(r));
      m[strcspn(m, "\n")] = '\0';
      rc = OD_FAIL_RETRY(err, PQstatus(c) == CONNECTION_OK ? OD_ESOURCE : OD_ECONNECT, "%s", m);
      rc = advance_failed(s, l, err);
    }
    PQclear(r);
  }
  s->catchup_adv_inflight = false;
  if (rc) return rc;
  if (s->catchup_adv_target > s->catchup_advanced) s->catchup_advanced = s->catchup_adv_target;
  s->catchup_stats.advances++;
  return OD_OK;
}

/* Send an advance of the real slot to the durable position, if it moved and the last advance was
 * at least status_interval_ms ago (or `now`); it runs while batches go on. */
static int adv_send(pg_source *s, bool now, od_error *err) {
  if (s->catchup_adv_inflight || s->durable <= s->catchup_advanced) return OD_OK;
  if (!now && od_mono_us() - s->catchup_adv_at < s->status_interval_ms * 1000) return OD_OK;
  char l[32];
  lsn_text(s->durable, l, sizeof l);
  const char *p[] = {s->slot, l};
  if (!PQsendQueryParams(s->catchup_adv, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", 2, NULL, p, NULL,
                         NULL, 0))
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: advancing slot %s to %s: cannot send: %s", s->where, s->slot, l,
                         PQerrorMessage(s->catchup_adv));
  s->catchup_adv_inflight = true;
  s->catchup_adv_target = s->durable;
  s->catchup_adv_at = od_mono_us();
  return OD_OK;
}

/* A transaction is open: in the decoder, or streamed and not committed yet. */
static bool in_transaction(const pg_source *s) {
  return od_pgoutput_in_transaction(s->decoder) || (s->catchup_stream && od_pg_stream_busy(s->stream));
}

/* Offer the copy's confirmed position to the pipeline as an idle position (heartbeat): every
 * transaction before it was delivered and none is open, so the sinks may checkpoint it and the
 * acknowledgement may carry the slot past the running-transactions record logged for the switch. */
static int offer_idle(pg_source *s, od_error *err) {
  if (!s->outer || !s->outer->idle || in_transaction(s)) return OD_OK;
  if (s->catchup_copy_confirmed <= s->durable) return OD_OK;
  od_pos idle = od_pg_pos(s->catchup_copy_confirmed);
  return s->outer->idle(s->outer->ctx, &idle, err);
}

/* The source waits for the sinks (the last batch must be durable before a peek or the switch): say
 * so, at the end of the last transaction delivered, so that a batch the sinks keep open for more
 * rows (batch.linger) commits now instead of after its max_delay_ms — there are no more rows until
 * it does. */
static int offer_waiting(pg_source *s, od_error *err) {
  if (!s->outer || !s->outer->idle || in_transaction(s) || !s->catchup_batch_end) return OD_OK;
  od_pos idle = od_pg_pos(s->catchup_batch_end);
  return s->outer->idle(s->outer->ctx, &idle, err);
}

/* At the switch to streaming (the last batch and the idle position durable, no advance in flight):
 * advance the slot to the durable position, synchronously on s->catchup_adv, so that its
 * restart_lsn passes the running-transactions record logged for the switch before the stream
 * starts (else the walsender decodes the backlog again first). One advance takes the first such
 * record after the slot's confirmed position as its candidate; when that is an earlier one, a
 * second advance to the same position (re-reading only from there) takes the last. */
static int follow_restart(pg_source *s, od_error *err) {
  od_lsn to = s->durable > s->catchup_advanced ? s->durable : s->catchup_advanced;
  od_lsn before = 0, now = 0;
  int rc = od_pg_slot_restart(s, s->catchup_adv, s->slot, &before, err);
  now = before;
  char l[32];
  lsn_text(to, l, sizeof l);
  const char *p[] = {s->slot, l};
  for (int pass = 0; rc == OD_OK && pass < 2; pass++) {
    od_lsn last = now;
    PGresult *r = od_pg_query(s, s->catchup_adv, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", 2, p, err);
    if (!r) return advance_failed(s, l, err);
    PQclear(r);
    s->catchup_stats.advances++;
    s->catchup_advanced = to;
    if ((rc = od_pg_slot_restart(s, s->catchup_adv, s->slot, &now, err))) break;
    if (now >= s->catchup_mark_from || now == last) break;
  }
  if (rc) return rc;
  if (to > s->floor) s->floor = to; /* the slot's confirmed position: statuses never go below it */
  s->catchup_stats.restart_to = now;
  od_debug("%s: slot %s advanced to %X/%X for the switch: restart_lsn %X/%X -> %X/%X (%s the running-transactions "
           "record logged at %X/%X; the stream decodes %.1f MB again before its first change)",
           s->where, s->slot, OD_LSN_ARGS(to), OD_LSN_ARGS(before), OD_LSN_ARGS(now),
           now >= s->catchup_mark_from ? "at or past" : "still before", OD_LSN_ARGS(s->catchup_mark_from),
           now && to > now ? (to - now) / 1048576.0 : 0.0);
  return OD_OK;
}

/* Ask the server to stop an in-flight call on c; the connection is closed right after. */
static void cancel(PGconn *c) {
  if (!c || PQstatus(c) != CONNECTION_OK) return;
  PGcancel *k = PQgetCancel(c);
  char ignored[64];
  if (k) PQcancel(k, ignored, sizeof ignored);
  PQfreeCancel(k);
}

static void leave(pg_source *s) {
  if (s->catchup_inflight) cancel(s->peek);
  if (s->catchup_adv_inflight) cancel(s->catchup_adv);
  PQfinish(s->peek);
  PQfinish(s->catchup_adv);
  s->peek = s->catchup_adv = NULL;
  s->catchup_inflight = s->catchup_adv_inflight = false;
  if (s->catchup_buf) pg_readahead_free(s->catchup_buf);
  free(s->catchup_buf);
  s->catchup_buf = NULL;
  s->catchup = false;
  s->catchup_stream = false;
  s->catchup_restream = 0;
}

/* The reorder buffer of the batch calls' decoding sessions may hold catchup_decoding_mem bytes of
 * changes before it spills the largest transaction to pg_replslot/ (one write() per change, read
 * back at commit): a transaction larger than the server's logical_decoding_work_mem (64 MB by
 * default) costs the source 2-3x more per change spilled (docs/BENCHMARKS.md, "One big
 * transaction: the source's spill"). logical_decoding_work_mem is a user setting (PostgreSQL 13+),
 * set for this session only; the stream and the slot advances keep the server's. */
static int set_decoding_mem(pg_source *s, od_error *err) {
  if (s->catchup_decoding_mem <= 0 || PQserverVersion(s->peek) < 130000) return OD_OK;
  long kb = s->catchup_decoding_mem / 1024 < 64 ? 64 : s->catchup_decoding_mem / 1024; /* the server's minimum */
  char sql[96];
  snprintf(sql, sizeof sql, "SET logical_decoding_work_mem = '%ldkB'", kb);
  PGresult *r = od_pg_query(s, s->peek, sql, 0, NULL, err);
  if (!r)
    return od_error_prefix(err, "batch decoding: setting logical_decoding_work_mem for the batch calls "
                           "(source.catchup_decoding_mem_bytes; 0 keeps the server's setting): ");
  PQclear(r);
  od_debug("%s: batch calls decode with logical_decoding_work_mem = %ld kB", s->where, kb);
  return OD_OK;
}

int od_pg_catchup_enter(pg_source *s, od_lsn start, od_error *err) {
  s->catchup = false;
  if (s->catchup_lag_bytes <= 0) return OD_OK;
  if (!s->meta && !(s->meta = od_pg_connect(s, false, err))) return err->code;
  int64_t behind = 0;
  int rc = od_pg_catchup_wal_behind(s, s->meta, start, &behind, err);
  if (rc) return rc;
  if (behind < s->catchup_lag_bytes) return OD_OK;
  if (!(s->peek = od_pg_connect(s, false, err))) return err->code;
  if ((rc = set_decoding_mem(s, err))) {
    leave(s);
    return rc;
  }
  if (!(s->catchup_buf = calloc(1, sizeof *s->catchup_buf))) {
    leave(s);
    return OD_FAIL(err, OD_ENOMEM, "out of memory");
  }
  memset(&s->catchup_stats, 0, sizeof s->catchup_stats);
  if (s->stream) {
    od_pg_xact_stats xs;
    od_pg_stream_stats(s->stream, &xs);
    s->catchup_stats.store_spilled_from = xs.spilled_bytes; /* the store counts since it opened */
  }
  /* The sink holds everything before `start`: moving the slot there is what streaming's first
   * status would do, and a peek has no start position of its own. */
  s->catchup_advanced = s->floor;
  if ((rc = advance_slot(s, s->peek, start, err))) {
    leave(s);
    return rc;
  }
  if ((rc = od_pg_slot_restart(s, s->peek, s->slot, &s->catchup_stats.restart_from, err))) {
    leave(s);
    return rc;
  }
  s->catchup_stats.restart_to = s->catchup_stats.restart_from;
  s->catchup_copy[0] = '\0';
  s->catchup_stream = false;
  s->catchup_restream = 0;
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
    /* A transaction larger than logical_decoding_work_mem is streamed by the server while it is
     * decoded (PostgreSQL 14+) instead of spilled to its disk and read back: odsync keeps it in the
     * store of streamed transactions until its Stream Commit, as for the stream. */
    if (s->stream_in_progress && PQserverVersion(s->peek) >= 140000) {
      if ((rc = od_pg_stream_ensure(s, err))) {
        leave(s);
        return rc;
      }
      s->catchup_stream = true;
    }
    if (!(s->catchup_adv = od_pg_connect(s, false, err))) {
      leave(s);
      return err->code;
    }
    s->catchup_adv_at = od_mono_us();
    /* A record at today's head: once the copy's calls pass it, the calls after decode again only
     * from there (a burst holds none of its own), and so does the closing call. */
    od_lsn ignored_from, ignored_to;
    if (s->catchup_move_restart && (rc = od_pg_log_running_xacts(s, &ignored_from, &ignored_to, err))) {
      leave(s);
      return rc;
    }
  }
  s->catchup_mark = s->catchup_mark_from = s->catchup_copy_confirmed = 0;
  s->catchup_idle_wait_at = 0;
  s->catchup = true;
  s->catchup_entries++;
  od_pg_spill_phase(s);
  s->catchup_leaving = false;
  s->catchup_inflight = false;
  s->catchup_batch_end = 0; /* nothing delivered yet: the first batch needs no acknowledgement */
  s->catchup_batches = 0;
  s->catchup_limit = s->catchup_batch;
  od_info("%s: slot %s is %.1f MB behind: catching up by batch decoding (%ld changes per call%s%s) until less "
          "than %.1f MB remain",
          s->where, s->slot, behind / 1048576.0, s->catchup_batch,
          s->catchup_copy[0] && s->catchup_prefetch_bytes > 0 ? ", next call sent before decoding" : "",
          s->catchup_stream ? ", large transactions streamed while decoded" : "",
          s->catchup_exit_bytes / 1048576.0);
  return OD_OK;
}

int od_pg_catchup_ack(pg_source *s, od_lsn durable, bool force, od_error *err) {
  if (durable > s->durable) s->durable = durable;
  if (!force || !s->peek) return OD_OK;
  if (!s->catchup_copy[0]) return advance_slot(s, s->peek, s->durable, err);
  int rc = adv_collect(s, true, err);
  if (!rc) rc = adv_send(s, true, err);
  if (!rc) rc = adv_collect(s, true, err);
  return rc;
}

/* Send one batch call on s->peek, binary, in single-row mode: a get call on the temporary copy,
 * else a peek on the slot. */
static int send_call(pg_source *s, od_error *err) {
  /* After a call that ended inside a streamed transaction the next one streams it again from its
   * start: its limit is 4x what that call returned, so it gets further than the last and the
   * transaction is sent O(1) times over (not once per call), while the server's result (its
   * tuplestore) stays within a few times what was seen of it. */
  char n[24];
  s->catchup_sent_limit = s->catchup_restream ? s->catchup_restream : s->catchup_limit;
  snprintf(n, sizeof n, "%ld", s->catchup_sent_limit);
  if (s->catchup_restream) s->catchup_stats.restream_calls++;
  s->catchup_restream = 0;
  char pubs[80];
  snprintf(pubs, sizeof pubs, "\"%s\"", s->publication);
  const char *p[] = {s->catchup_copy[0] ? s->catchup_copy : s->slot, n, pubs};
  char sql[320];
  snprintf(sql, sizeof sql,
           "SELECT data FROM pg_logical_slot_%s_binary_changes($1, NULL, $2::int, 'proto_version', '%s', "
           "'publication_names', $3%s%s%s)",
           s->catchup_copy[0] ? "get" : "peek", s->catchup_stream ? "2" : "1",
           PQserverVersion(s->peek) >= 140000 ? ", 'messages', 'true'" : "",
           s->catchup_stream ? ", 'streaming', 'on'" : "", od_pg_plugin_options(s, true));
  if (!PQsendQueryParams(s->peek, sql, 3, NULL, p, NULL, NULL, 1) || !PQsetSingleRowMode(s->peek)) {
    char m[300];
    snprintf(m, sizeof m, "%s", PQerrorMessage(s->peek));
    m[strcspn(m, "\n")] = '\0';
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: batch decoding: cannot send the batch call: %s", s->where, m);
  }
  s->catchup_inflight = true;
  s->catchup_sent_at = od_mono_us();
  return OD_OK;
}

/* One row of a call: with catchup_stream, messages of streamed transactions go to their store and
 * a Stream Commit replays the transaction through the decoder at once (the handler applies its
 * back-pressure); everything else is decoded as protocol 1. */
static int decode_row(pg_source *s, const char *row, size_t n, od_error *err) {
  if (s->catchup_stream) {
    bool handled = false;
    int rc = od_pg_stream_route(s->stream, s->decoder, row, n, &s->wrap, &handled, err);
    while (rc == OD_OK && od_pg_stream_replaying(s->stream))
      rc = od_pg_stream_pump(s->stream, s->decoder, &s->wrap, 65536, err);
    if (rc) return od_error_prefix(err, "%s: batch decoding: ", s->where);
    if (handled && n && row[0] == 'c') s->catchup_stats.streamed_txns++;
    if (handled) return OD_OK;
  }
  return od_pgoutput_decode(s->decoder, row, n, &s->wrap, err);
}

/* Decode the buffered rows and empty the buffer. */
static int decode_buffer(pg_source *s, od_error *err) {
  pg_readahead *b = s->catchup_buf;
  int64_t t0 = od_mono_us();
  int rc = OD_OK;
  const char *row;
  size_t off = 0, n;
  while (rc == OD_OK && pg_readahead_next(b, &off, &row, &n)) rc = decode_row(s, row, n, err);
  pg_readahead_reset(b);
  s->catchup_stats.decode_us += od_mono_us() - t0;
  return rc;
}

/* Read the in-flight call's rows (never the whole result in libpq's memory): into the buffer while
 * it has room (prefetch), else — after decoding what the buffer holds — straight into the decoder.
 * *direct: some rows were decoded already. */
static int receive_call(pg_source *s, bool prefetch, long *rows, bool *direct, od_error *err) {
  size_t limit = prefetch ? (size_t)s->catchup_prefetch_bytes : 0;
  int rc = OD_OK;
  int64_t first = 0, start = od_mono_us();
  *rows = 0;
  *direct = false;
  /* Every call is a new decoding session: a transaction streamed by the last call and still open
   * is streamed again from its start (first segment), so what the store holds of it goes. */
  if (s->catchup_stream) od_pg_stream_reset(s->stream);
  PGresult *r;
  while ((r = PQgetResult(s->peek))) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_SINGLE_TUPLE && rc == OD_OK) {
      if (!first) {
        first = od_mono_us();
        s->catchup_stats.wait_us += first - start;         /* odsync had nothing else to do */
        s->catchup_stats.call_us += first - s->catchup_sent_at; /* the server's part, overlapped or not */
      }
      const char *v = PQgetvalue(r, 0, 0);
      size_t n = (size_t)PQgetlength(r, 0, 0);
      s->catchup_stats.row_bytes += (int64_t)n;
      if (*direct || !pg_readahead_push(s->catchup_buf, v, n, limit)) {
        if (!*direct) {
          *direct = true;
          rc = decode_buffer(s, err);
        }
        int64_t t0 = od_mono_us();
        if (rc == OD_OK) rc = decode_row(s, v, n, err);
        s->catchup_stats.decode_us += od_mono_us() - t0;
      }
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
                           s->catchup_copy[0] ? s->catchup_copy : s->slot, m);
    }
    PQclear(r);
    /* A handler failed (or the pipeline is stopping) mid-batch: stop the server's work rather than
     * reading the rest of a batch nobody will use. */
    if (rc && rc != OD_ECONNECT) cancel(s->peek);
  }
  s->catchup_inflight = false;
  if (first) s->catchup_stats.recv_us += od_mono_us() - first;
  s->catchup_stats.rows += *rows;
  return rc;
}

int od_pg_catchup_poll(pg_source *s, int timeout_ms, od_error *err) {
  bool copy = s->catchup_copy[0] != '\0';
  int rc;
  if (copy && ((rc = adv_collect(s, false, err)) || (rc = adv_send(s, false, err)))) return rc;
  /* Wait for the last batch to be durable (the pipeline acknowledges between polls) before a peek
   * (it would return that batch again) and before switching to streaming. */
  if ((!copy || s->catchup_leaving) && s->durable < s->catchup_batch_end) {
    if ((rc = offer_waiting(s, err))) return rc;
    usleep((useconds_t)(timeout_ms < 2 ? timeout_ms : 2) * 1000);
    return OD_OK;
  }
  if (!copy && (rc = advance_slot(s, s->peek, s->durable, err))) return rc;
  if (s->catchup_leaving) {
    /* With a record logged for the switch, wait (bounded) for the sinks to hold the copy's
     * confirmed position past it, then advance the slot there; without, streaming starts at the
     * durable position and its statuses move the slot. */
    if (copy && s->catchup_mark && s->durable < s->catchup_copy_confirmed && !in_transaction(s)) {
      int64_t now = od_mono_us();
      if (!s->catchup_idle_wait_at) s->catchup_idle_wait_at = now;
      if (now - s->catchup_idle_wait_at < CATCHUP_IDLE_WAIT_US) {
        if ((rc = offer_idle(s, err))) return rc;
        usleep((useconds_t)(timeout_ms < 2 ? timeout_ms : 2) * 1000);
        return OD_OK;
      }
      od_debug("%s: the sinks did not acknowledge the idle position %X/%X within %d s: restart_lsn may stay before "
               "the record logged for the switch", s->where, OD_LSN_ARGS(s->catchup_copy_confirmed),
               (int)(CATCHUP_IDLE_WAIT_US / 1000000));
    }
    if (copy && (rc = adv_collect(s, true, err))) return rc;
    if (copy && s->catchup_mark && (rc = follow_restart(s, err))) return rc;
    /* The copy's last spill, read while it lives (it goes with the peek connection). */
    if (od_pg_spill_read(s, err)) {
      od_debug("%s: reading the catch-up's spill: %s", s->where, err->msg);
      od_error_clear(err);
    }
    char spill[96] = "";
    if (s->spill_phase_bytes > 0)
      snprintf(spill, sizeof spill, "; the source spilled %.1f MiB of decoded changes to its disk",
               (double)s->spill_phase_bytes / 1048576.0);
    const struct pg_catchup_stats *t = &s->catchup_stats;
    char streamed[200] = "";
    od_pg_xact_stats xs = {0};
    if (s->catchup_stream) od_pg_stream_stats(s->stream, &xs);
    xs.spilled_bytes -= xs.spilled_bytes >= t->store_spilled_from ? t->store_spilled_from : xs.spilled_bytes;
    if (t->streamed_txns > 0)
      snprintf(streamed, sizeof streamed, "; %ld large transactions streamed by the source while decoded (%.1f MiB "
               "kept on odsync's disk until their commit), %ld calls that streamed one again", t->streamed_txns,
               (double)xs.spilled_bytes / 1048576.0, t->restream_calls);
    od_info("%s: caught up by batch decoding (%ld calls, %lld messages, %.1f MB; server %.2f s from call to first "
            "row, %.2f s of it with nothing to decode; %.2f s receiving rows, %.2f s decoding and handing them to "
            "the sinks; %.1f MB of WAL decoded again; %ld slot advances; restart_lsn %X/%X -> %X/%X%s%s); streaming "
            "from %X/%X",
            s->where, s->catchup_batches, (long long)t->rows, t->row_bytes / 1048576.0, t->call_us / 1e6,
            t->wait_us / 1e6, t->recv_us / 1e6, t->decode_us / 1e6, t->redecode_bytes / 1048576.0, t->advances,
            OD_LSN_ARGS(t->restart_from), OD_LSN_ARGS(t->restart_to), spill, streamed,
            OD_LSN_ARGS(s->durable > s->floor ? s->durable : s->floor));
    leave(s);
    return OD_OK;
  }
  bool prefetch = copy && s->catchup_prefetch_bytes > 0;
  if (!s->catchup_inflight && (rc = send_call(s, err))) return rc;
  int64_t t0 = od_mono_us(), wait0 = s->catchup_stats.wait_us, call0 = s->catchup_stats.call_us;
  int64_t bytes0 = s->catchup_stats.row_bytes;
  long rows = 0, limit = s->catchup_sent_limit;
  bool direct = false;
  if ((rc = receive_call(s, prefetch, &rows, &direct, err))) return rc;
  int64_t received = od_mono_us();
  s->catchup_batches++;
  /* Where this call ended: its last commit (rows still buffered), else the decoder's last. */
  od_lsn from = s->catchup_batch_end ? s->catchup_batch_end : s->catchup_advanced;
  od_lsn end = s->catchup_buf->last_end > s->catchup_last_end ? s->catchup_buf->last_end : s->catchup_last_end;
  if (end < from) end = from;
  int64_t behind = 0, redecode = 0;
  od_lsn confirmed = 0;
  if ((rows > 0 || copy) && (rc = call_distances(s, end, &behind, &redecode, &confirmed, err))) return rc;
  if (copy && confirmed > s->catchup_copy_confirmed) s->catchup_copy_confirmed = confirmed;
  bool near = rows == 0 || behind < s->catchup_exit_bytes;
  if (near && copy && s->catchup_move_restart && !s->catchup_mark) {
    /* Near the head: log a running-transactions record there and make one more call, which
     * decodes past it (the copy's restart_lsn follows); the slot is advanced past it at the switch. */
    if ((rc = od_pg_log_running_xacts(s, &s->catchup_mark_from, &s->catchup_mark, err))) return rc;
    if (!s->catchup_mark) s->catchup_leaving = true;
  } else if (near && s->catchup_copy_confirmed >= s->catchup_mark) {
    s->catchup_leaving = true;
  }
  /* Ended inside a streamed transaction (its last row a Stream Stop, or the store still open after
   * decoding as read): the next call's limit is 4x this call's messages (send_call). Near the head
   * (leaving) it is left to the stream, which sends it once as it grows. */
  if (s->catchup_stream && !s->catchup_leaving &&
      (direct ? od_pg_stream_busy(s->stream) : s->catchup_buf->last_type == 'E')) {
    long most = 2000000000L; /* upto_nchanges is an int */
    s->catchup_restream = rows > (most - s->catchup_batch) / 4 ? most : rows * 4 + s->catchup_batch;
    od_info("%s: batch call %ld ended inside a transaction that the source streams while decoding it (larger than "
            "catchup_decoding_mem_bytes) after %ld messages: the next call, which streams that transaction again "
            "from its start, may return up to %ld", s->where, s->catchup_batches, rows, s->catchup_restream);
  }
  if (!s->catchup_leaving) {
    if (!near) size_next_call(s, (int64_t)(end - from), redecode, rows, s->catchup_stats.row_bytes - bytes0);
    s->catchup_stats.redecode_bytes += redecode;
    /* The copy is free again: the server decodes the next call while this one's rows are decoded. */
    if (prefetch && (rc = send_call(s, err))) return rc;
  }
  if (!direct && (rc = decode_buffer(s, err))) return rc;
  if (od_pgoutput_in_transaction(s->decoder))
    return OD_FAIL(err, OD_EPROTOCOL, "%s: batch decoding returned a transaction without its commit", s->where);
  if (s->catchup_last_end > s->catchup_batch_end) s->catchup_batch_end = s->catchup_last_end;
  if (s->catchup_batch_end > s->received) s->received = s->catchup_batch_end;
  if (s->catchup_leaving && s->catchup_mark && (rc = offer_idle(s, err))) return rc;
  od_debug("%s: batch call %ld (upto_nchanges %ld): %ld messages; first row %.3f s after the call (%.3f s idle "
           "waiting for it), %.3f s receiving (%s), %.3f s decoding; up to %X/%X, %.1f MB behind, next call "
           "decodes %.1f MB again",
           s->where, s->catchup_batches, limit, rows, (s->catchup_stats.call_us - call0) / 1e6,
           (s->catchup_stats.wait_us - wait0) / 1e6,
           (received - t0) / 1e6 - (s->catchup_stats.wait_us - wait0) / 1e6, direct ? "decoded as read" : "buffered",
           (od_mono_us() - received) / 1e6, OD_LSN_ARGS(s->catchup_batch_end), behind / 1048576.0,
           redecode / 1048576.0);
  return OD_OK;
}

void od_pg_catchup_close(pg_source *s) { leave(s); }
