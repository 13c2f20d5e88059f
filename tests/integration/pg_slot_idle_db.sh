#!/usr/bin/env bash
# pg_slot_idle_db.sh — an idle captured database inside a busy cluster: the slot still advances.
#
# One cluster, two databases: "quiet" is captured by odsync (one table, no writes during the test),
# "busy" runs pgbench (TPC-B plus a script writing ~100 KB rows, rate-limited). WAL is shared by the cluster, so a slot that is only
# acknowledged when its own database commits would hold back everything the busy database writes.
# The idle heartbeat (the source acknowledges keepalive positions once nothing of its own is in
# flight) must move it.
#
# Asserts: while the busy database writes at least 64 MB of WAL (about 1 MB/s, bounded: 150 s), the slot's
# confirmed_flush_lsn keeps advancing (it ends within 16 MB of the current WAL position) and its
# retained WAL (pg_current_wal_lsn() - restart_lsn) does not grow with what is written: the most it
# retains while the second 32 MB are written is at most 16 MB more than while the first 32 MB were
# (a slot that does not advance retains 64 MB at the end against 32), and never more than half of
# what was written. (restart_lsn moves only at the server's running-xacts records — every 15 s on
# their own, and at every checkpoint. On their own, restart_lsn trails by one to two 15 s intervals,
# ~15–30 MB at this rate, so one record missed on a loaded machine doubled what the slot retained;
# the test runs a CHECKPOINT every other sample, so the slot can release WAL every ~4 s, and what
# it retains is bounded by odsync's acknowledgements rather than by the server's 15 s timer.) odsync's own odsync_source_retained_bytes metric is
# within the same bound; the quiet database's table is intact in the sink (od_compare).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_slot_idle_db
pg_start quiet
pg_psql -c "CREATE DATABASE busy" >/dev/null
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v text)" -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g" >/dev/null
pgbench -i -s 1 -q -h 127.0.0.1 -p "$PGPORT" -U postgres busy >"$TEST_TMP/pgbench-init.log" 2>&1 || fail "pgbench -i failed"
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: quiet
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.t], status_interval_ms: 1000 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_quiet 60
wait_equal 60 >/dev/null
lsn() { lsn_to_int "$(pg_psql -c "SELECT $1")"; }
start=$(lsn "pg_current_wal_lsn()")
MB=$((1024 * 1024))
# The busy database: pgbench's TPC-B transactions plus one writing ~100 KB of incompressible rows,
# ~1 MB of WAL a second in all (rate-limited: the machine is shared).
pg_psql -d busy -c "CREATE TABLE pad (g int, v text)" >/dev/null
cat >"$TEST_TMP/pad.sql" <<'SQL'
INSERT INTO pad SELECT g, (SELECT string_agg(md5(random()::text || i || g), '') FROM generate_series(1, 60) i) FROM generate_series(1, 50) g;
SQL
pgbench -n -c 2 -j 1 -T 150 -R 20 -b tpcb-like@1 -f "$TEST_TMP/pad.sql@1" -h 127.0.0.1 -p "$PGPORT" -U postgres busy \
  >"$TEST_TMP/pgbench.log" 2>&1 &
BENCH=$!
test_extra_cleanup() { kill "$BENCH" 2>/dev/null; wait "$BENCH" 2>/dev/null; }
max_retained=0 max_first=0 max_second=0 samples=0 written=0
while kill -0 "$BENCH" 2>/dev/null; do
  sleep 2
  ((samples % 2 == 1)) && pg_psql -c "CHECKPOINT" >/dev/null
  now=$(lsn "pg_current_wal_lsn()")
  written=$((now - start))
  retained=$(pg_psql -c "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'odsync_quiet'")
  ((retained > max_retained)) && max_retained=$retained
  if ((written < 32 * MB)); then ((retained > max_first)) && max_first=$retained; else ((retained > max_second)) && max_second=$retained; fi
  samples=$((samples + 1))
  odsync_running || fail "odsync exited"
  ((written >= 64 * MB)) && break
done
kill "$BENCH" 2>/dev/null || true
wait "$BENCH" 2>/dev/null || true
((written >= 64 * MB)) || { cat "$TEST_TMP/pgbench.log"; fail "the busy database wrote only $((written / MB)) MB of WAL (need 64 MB; machine too slow?)"; }
log "busy database wrote $((written / MB)) MB of WAL; max retained by the idle slot over $samples samples: $((max_retained / MB)) MB (first 32 MB written: $((max_first / MB)) MB, after: $((max_second / MB)) MB)"
((max_second <= max_first + 16 * MB)) ||
  fail "the idle database's slot retains more as more is written: up to $max_first bytes while the first 32 MB were written, $max_second after"
((max_retained * 2 <= written)) ||
  fail "the idle database's slot retained up to $max_retained bytes while $written bytes were written"
# Its confirmed position follows the cluster's WAL (acknowledged keepalives).
now=$(lsn "pg_current_wal_lsn()")
wait_for "(( $now - \$(lsn \"confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_quiet'\") <= 16 * $MB ))" 30 ||
  fail "confirmed_flush_lsn of the idle slot lags more than 16 MB behind the WAL"
m=$(curl -sf "http://127.0.0.1:$APORT/metrics" | sed -n 's/^odsync_source_retained_bytes{pipeline="quiet"} \([0-9]*\)$/\1/p')
[[ -n "$m" ]] || fail "no odsync_source_retained_bytes for pipeline quiet"
((m * 2 <= written)) || fail "odsync reports $m retained bytes while $written bytes were written"
log "odsync_source_retained_bytes = $m"
compare >/dev/null || { compare; fail "the quiet table differs"; }
odsync_stop
log "VERIFIED: the idle slot advanced with the busy cluster (max retained $((max_retained / MB)) MB of $((written / MB)) MB written)"
