/* pg_restart.c — moving a slot's restart_lsn to the head after catch-up by batch decoding
 * (docs/adapters/postgres-source.md, "Moving restart_lsn").
 *
 * A logical slot's restart_lsn moves only when decoding passes an xl_running_xacts record (and the
 * confirmed position passes that record). The background writer logs one every 15 s while there is
 * WAL activity, checkpoints log one; a burst written faster than that holds none, so after catching
 * up the slot would still restart decoding at the start of the backlog: every batch call and, once
 * streaming, the walsender decode it all again. PostgreSQL 15 has no pg_log_standby_snapshot()
 * (16+), but creating a logical slot logs a standby snapshot at the current insert position first
 * (ReplicationSlotReserveWal: LogStandbySnapshot, then XLogFlush). So a TEMPORARY slot is created on
 * a connection of its own and dropped at once. The creation then waits for the transactions running
 * at that record to end (to reach a consistent point); that wait is bounded by statement_timeout
 * (catchup_move_restart_timeout_ms): the record is in the WAL either way, and a cancelled creation
 * leaves no slot (the backend drops its temporary slots on error; the connection is closed after
 * all the same). Nothing here can fail the pipeline: a missing privilege, no free slot
 * (max_replication_slots) or a lost connection is a warning (once per source), and the cost is
 * what it was before.
 *
 * Owns: the short-lived connection it opens. Never touches: the pipeline's slot (only reads it),
 * the stream, the copy's calls (pg_catchup.c), decoding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sources/pg/pg_internal.h"

static void warn_once(pg_source *s, const char *what, const char *why) {
  char m[400];
  snprintf(m, sizeof m, "%.399s", why);
  m[strcspn(m, "\n")] = '\0';
  if (s->restart_warned) {
    od_debug("%s: %s: %s", s->where, what, m);
    return;
  }
  s->restart_warned = true;
  od_warn("%s: %s: %s. Catch-up goes on, but slot %s's restart_lsn stays where it is until the server logs a "
          "running-transactions record by itself (every 15 s of WAL activity, or a checkpoint): the stream decodes "
          "the WAL since then again. Needed: the REPLICATION attribute (or superuser) and one free replication slot "
          "(max_replication_slots); or set source.catchup_move_restart: false to stop trying",
          s->where, what, m, s->slot);
}

static int lsn_of(PGconn *c, const char *sql, od_lsn *out) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) &&
           od_pg_parse_lsn(PQgetvalue(r, 0, 0), out) == OD_OK;
  PQclear(r);
  return ok ? OD_OK : OD_ESOURCE;
}

int od_pg_log_running_xacts(pg_source *s, od_lsn *before, od_lsn *after, od_error *err) {
  *before = *after = 0;
  const char *what = "cannot log a running-transactions record (creating a temporary logical slot)";
  PGconn *c = od_pg_connect(s, false, err);
  if (!c) {
    warn_once(s, what, err->msg);
    od_error_clear(err);
    return OD_OK;
  }
  char sql[64], name[64];
  snprintf(sql, sizeof sql, "SET statement_timeout = %ld", s->catchup_move_restart_timeout_ms);
  snprintf(name, sizeof name, "%.40s_rx_%d", s->slot, PQbackendPID(c));
  PGresult *r = PQexec(c, sql);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok || lsn_of(c, "SELECT pg_current_wal_insert_lsn()", before)) {
    warn_once(s, what, PQerrorMessage(c));
    PQfinish(c);
    return OD_OK;
  }
  const char *p[] = {name};
  r = PQexecParams(c, "SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)", 1, NULL, p, NULL, NULL, 0);
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  bool created = PQresultStatus(r) == PGRES_TUPLES_OK;
  /* 57014: cancelled by statement_timeout while waiting for running transactions; the record was
   * logged before that wait began. */
  bool cancelled = !created && state && strcmp(state, "57014") == 0;
  if (!created && !cancelled) {
    warn_once(s, what, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    *before = 0;
    return OD_OK;
  }
  PQclear(r);
  if (created) {
    r = PQexecParams(c, "SELECT pg_drop_replication_slot($1)", 1, NULL, p, NULL, NULL, 0);
    PQclear(r); /* if this fails, the slot is temporary: it goes with the connection below */
  }
  if (lsn_of(c, "SELECT pg_current_wal_flush_lsn()", after)) {
    warn_once(s, what, PQerrorMessage(c));
    *before = *after = 0;
  } else {
    od_debug("%s: logged a running-transactions record between %X/%X and %X/%X (temporary slot %s %s)", s->where,
             OD_LSN_ARGS(*before), OD_LSN_ARGS(*after), name,
             created ? "created and dropped"
                     : "cancelled by catchup_move_restart_timeout_ms while waiting for running transactions");
  }
  PQfinish(c);
  return OD_OK;
}

int od_pg_slot_restart(pg_source *s, PGconn *c, const char *slot, od_lsn *restart, od_error *err) {
  const char *p[] = {slot};
  PGresult *r = od_pg_query(s, c, "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = $1", 1, p, err);
  if (!r) return err->code;
  *restart = 0;
  if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) od_pg_parse_lsn(PQgetvalue(r, 0, 0), restart);
  PQclear(r);
  return OD_OK;
}
