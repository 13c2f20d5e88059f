/* pg_slot_health.c — slot safety of the PostgreSQL source: how much WAL the replication slot holds
 * back on the server, its wal_status and safe_wal_size (pg_replication_slots, PostgreSQL 13+), read
 * through the ordinary connection every status interval while streaming and once before
 * START_REPLICATION; a warning (logged once per transition) when the retained WAL passes
 * source.slot_warn_retained_bytes or the slot becomes 'unreserved'; an invalidated slot ('lost', or
 * the walsender's "can no longer get changes"/"has been invalidated" error) is a fatal error that
 * names the recovery. With it, the source's spill of decoded changes (pg_spill.c).
 * Owns: the health fields of pg_source (health, health_ok, health_read_warned, last_health_at is
 * pg_source.c's). A health read that fails on a live connection is logged once and never stops
 * the stream. Never touches: the replication connection, the slot itself (it never drops or
 * advances it).
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sources/pg/pg_internal.h"

/* The fatal error for an invalidated slot, with what to do. `why` is the server's word for it. */
int od_pg_slot_lost(pg_source *s, const char *why, od_error *err) {
  return OD_FAIL(err, OD_ESOURCE,
                 "%s: replication slot %s was invalidated by the server (%s): it kept more WAL than "
                 "max_slot_wal_keep_size allows, and the changes it had not yet delivered are gone; this "
                 "pipeline cannot resume from it. Recovery (a new initial snapshot): stop odsync; on the source run "
                 "SELECT pg_drop_replication_slot('%s'); empty the sink (drop its tables and its _odsync_checkpoint "
                 "row for pipeline %s, or point the sink at a new database/file); then start `odsync run -c "
                 "<config>` again: it creates the slot and copies a new initial snapshot. To keep it from happening "
                 "again, raise max_slot_wal_keep_size or watch odsync_source_retained_bytes "
                 "(source.slot_warn_retained_bytes)",
                 s->where, s->slot, why, s->slot, s->pipeline);
}

/* True when a walsender/START_REPLICATION error message says the slot is invalidated. */
bool od_pg_slot_lost_message(const char *msg) {
  return strstr(msg, "has been invalidated") || strstr(msg, "can no longer get changes from replication slot") ||
         strstr(msg, "cannot read from logical replication slot");
}

int od_pg_slot_health_check(pg_source *s, od_error *err) {
  if (!s->meta) return OD_OK;
  bool v13 = PQserverVersion(s->meta) >= 130000;
  const char *sql =
      v13 ? "SELECT wal_status, safe_wal_size, (pg_current_wal_lsn() - restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = $1"
          : "SELECT NULL, NULL, (pg_current_wal_lsn() - restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = $1";
  const char *params[] = {s->slot};
  PGresult *r = od_pg_query(s, s->meta, sql, 1, params, err);
  if (!r) {
    if (err->retriable) return err->code; /* the connection is gone: the session restarts */
    /* Not being able to read the slot's health (a standby, a statement_timeout) never stops the
     * stream: said once, then the metrics stay unknown. */
    if (!s->health_read_warned) od_warn("%s: cannot read the health of slot %s: %s", s->where, s->slot, err->msg);
    s->health_read_warned = true;
    od_error_clear(err);
    return OD_OK;
  }
  if (PQntuples(r) != 1) { /* dropped under us: START_REPLICATION / the stream says so */
    PQclear(r);
    return OD_OK;
  }
  od_source_health h = {.retained_bytes = -1, .safe_bytes = -1, .spilled_bytes = -1};
  snprintf(h.status, sizeof h.status, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
  if (!PQgetisnull(r, 0, 1)) h.safe_bytes = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  if (!PQgetisnull(r, 0, 2)) h.retained_bytes = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  PQclear(r);
  if (!strcmp(h.status, "lost")) {
    s->health = h;
    s->health_ok = true;
    return od_pg_slot_lost(s, "wal_status = 'lost'", err);
  }
  h.warning = s->slot_warn_bytes > 0 && h.retained_bytes >= s->slot_warn_bytes;
  char ret[32], lim[32], safe[32];
  od_fmt_bytes(h.retained_bytes, ret, sizeof ret);
  od_fmt_bytes(s->slot_warn_bytes, lim, sizeof lim);
  if (h.safe_bytes < 0) snprintf(safe, sizeof safe, "%s", v13 ? "unlimited" : "n/a");
  else od_fmt_bytes(h.safe_bytes, safe, sizeof safe);
  bool was = s->health_ok && s->health.warning;
  if (h.warning && !was)
    od_warn("%s: replication slot %s retains %s of WAL on the server (source.slot_warn_retained_bytes %s; "
            "wal_status %s, safe_wal_size %s): the sink is behind or odsync was stopped; WAL keeps piling up "
            "on the source until it catches up",
            s->where, s->slot, ret, lim, h.status[0] ? h.status : "n/a", safe);
  else if (!h.warning && was)
    od_info("%s: replication slot %s retains %s of WAL again, below source.slot_warn_retained_bytes %s", s->where,
            s->slot, ret, lim);
  bool unres = !strcmp(h.status, "unreserved");
  if (unres && !(s->health_ok && !strcmp(s->health.status, "unreserved")))
    od_warn("%s: replication slot %s is 'unreserved': it retains more WAL than max_wal_size and only %s more may be "
            "written before the server invalidates it (then the pipeline cannot resume and needs a new snapshot)",
            s->where, s->slot, safe);
  if (PQserverVersion(s->meta) >= 140000) {
    int rc = od_pg_spill_read(s, err);
    if (rc && err->retriable) return rc;
    if (rc) {
      if (!s->health_read_warned) od_warn("%s: cannot read the spill of slot %s: %s", s->where, s->slot, err->msg);
      s->health_read_warned = true;
      od_error_clear(err);
    } else {
      h.spilled_bytes = s->spilled_bytes;
    }
  }
  s->health = h;
  s->health_ok = true;
  return OD_OK;
}

bool od_pg_health(od_source *base, od_source_health *out) {
  pg_source *s = (pg_source *)base;
  if (!s->health_ok) return false;
  *out = s->health;
  out->batch_decoding = s->catchup ? 1 : 0;
  out->catchups = s->catchup_entries;
  return true;
}
