/* pg_spill.c — the source's spill of decoded changes to its own disk: when the changes of the
 * transactions being decoded pass logical_decoding_work_mem, PostgreSQL's reorder buffer writes
 * the largest transaction to pg_replslot/<slot>/ one change at a time and reads it back at its
 * commit, which makes decoding it 2-3x slower (docs/BENCHMARKS.md, "One big transaction: the
 * source's spill"). Read from pg_stat_replication_slots (PostgreSQL 14+) on the ordinary
 * connection with the slot's health, for the slot that decodes now: the temporary copy the batch
 * calls consume during catch-up (its counts start at 0 with it) and the pipeline's own slot (the
 * walsender's; its counts before this process started are history, not counted). The bytes add up
 * to odsync_source_spilled_bytes_total; the first spill of a catch-up, and of a stretch of
 * streaming, is logged once with what to change.
 * Owns: the spill_* fields of pg_source. A failed read is the health read's (logged once there,
 * never stops the stream). Never touches: the slots themselves, the server's settings.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "sources/pg/pg_internal.h"

/* What a slot spilled since its last read, given its spill_bytes now (v) and at that read (*seen);
 * `fresh`: its counts started with this process (the catch-up copy), so all of v is new the first
 * time; the pipeline's slot's first reading is only the baseline. */
static int64_t delta(int64_t v, int64_t *seen, bool *known, bool fresh) {
  int64_t d = 0;
  if (*known) d = v >= *seen ? v - *seen : v; /* lower: reset by pg_stat_reset_replication_slot */
  else if (fresh) d = v;
  *seen = v;
  *known = true;
  return d;
}

static void warn_catchup(pg_source *s, int64_t bytes) {
  char b[32], lim[48];
  od_fmt_bytes(bytes, b, sizeof b);
  long mem = s->catchup_decoding_mem < 65536 ? 65536 : s->catchup_decoding_mem; /* the server's minimum */
  if (s->catchup_decoding_mem > 0) od_fmt_bytes(mem, lim, sizeof lim);
  else snprintf(lim, sizeof lim, "the server's setting");
  if (s->catchup_stream) {
    od_warn("%s: catch-up: the source spills decoded changes to its disk (%s so far, pg_replslot/%s): the batch calls "
            "have the server stream a transaction larger than their logical_decoding_work_mem "
            "(source.catchup_decoding_mem_bytes: %s) while it is decoded, except the part a call decodes again (up "
            "to where the last call ended, inside that transaction) and a transaction with an incomplete TOAST "
            "value or speculative insert: those are written out and read back, 2-3x slower than in memory. A "
            "larger catchup_decoding_mem_bytes keeps them in the source's memory (about 200 bytes per row changed; "
            "docs/adapters/postgres-source.md, \"Server memory and temporary files per call\")",
            s->where, b, s->spill_copy_name, lim);
    return;
  }
  od_warn("%s: catch-up: the source spills decoded changes to its disk (%s so far, pg_replslot/%s): a transaction's "
          "changes pass the batch calls' logical_decoding_work_mem (source.catchup_decoding_mem_bytes: %s), so the "
          "server writes them out and reads them back at its commit, 2-3x slower than in memory. A larger "
          "catchup_decoding_mem_bytes keeps such a transaction in the source's memory (about 200 bytes per row "
          "changed; docs/adapters/postgres-source.md, \"Server memory and temporary files per call\")",
          s->where, b, s->spill_copy_name, lim);
}

static void warn_stream(pg_source *s, int64_t bytes) {
  char b[32];
  od_fmt_bytes(bytes, b, sizeof b);
  const char *hint =
      s->stream_v2 ? "PostgreSQL spills even with stream_in_progress a transaction it cannot send yet (one with "
                     "an incomplete TOAST value or speculative insert)"
      : s->mesh    ? "a mesh source reads whole transactions (stream_in_progress is off for it); a larger "
                     "logical_decoding_work_mem on the server keeps them in memory"
                   : "stream_in_progress: true (the default) has the server send such a transaction while it runs "
                     "instead";
  od_warn("%s: the walsender spills decoded changes to the source's disk (%s so far, pg_replslot/%s): transactions "
          "larger than the server's logical_decoding_work_mem are written out and read back at their commit; %s",
          s->where, b, s->slot, hint);
}

void od_pg_spill_phase(pg_source *s) {
  s->spill_phase_bytes = 0;
  s->spill_warned = false;
}

int od_pg_spill_read(pg_source *s, od_error *err) {
  if (!s->meta || PQserverVersion(s->meta) < 140000) return OD_OK;
  bool copy = s->catchup && s->catchup_copy[0];
  const char *params[] = {s->slot, copy ? s->catchup_copy : s->slot};
  PGresult *r = od_pg_query(s, s->meta,
                            "SELECT slot_name = $1, spill_bytes FROM pg_stat_replication_slots "
                            "WHERE slot_name IN ($1, $2)",
                            2, params, err);
  if (!r) return err->code;
  int64_t own = 0, theirs = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    if (PQgetisnull(r, i, 1)) continue;
    int64_t v = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    if (!strcmp(PQgetvalue(r, i, 0), "t")) {
      own += delta(v, &s->spill_slot_seen, &s->spill_slot_known, false);
    } else {
      if (strcmp(s->spill_copy_name, s->catchup_copy)) { /* a new copy: its counts began at 0 */
        snprintf(s->spill_copy_name, sizeof s->spill_copy_name, "%s", s->catchup_copy);
        s->spill_copy_known = false;
      }
      theirs += delta(v, &s->spill_copy_seen, &s->spill_copy_known, true);
    }
  }
  PQclear(r);
  s->spilled_bytes += own + theirs;
  /* The slot that decodes for the phase: the copy in catch-up, the slot itself otherwise (also in
   * catch-up without a copy: peek calls on PostgreSQL 10/11 never reach here, below 14). */
  int64_t phase = copy ? theirs : own;
  s->spill_phase_bytes += phase;
  if (phase > 0 && !s->spill_warned) {
    s->spill_warned = true;
    if (copy) warn_catchup(s, s->spill_phase_bytes);
    else warn_stream(s, s->spill_phase_bytes);
  }
  return OD_OK;
}
