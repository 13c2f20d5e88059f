#!/usr/bin/env bash
# tests/chaos/kill9.sh — odsync killed with SIGKILL at random moments (CHAOS_KILLS, default 20),
# under pgbench load, fanning out to a SQLite and a PostgreSQL sink.
#
# Injected: CHAOS_KILLS SIGKILLs, each one aimed at a running odsync (counted only when the process
# was alive when the signal was sent) at a random moment 0.3-1.8 s after its start (some while it
# connects, some while it streams).
# Verified: after every 5th kill the slot's confirmed_flush_lsn is not ahead of either sink's
# checkpoint; the sinks kept moving between kills (pgbench_history grew in both), then chaos_finish:
# both sinks equal the source row for row, pgbench_history's exact count, SIGTERM under load drains,
# a restart applies nothing twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/chaos.sh"

test_init chaos_kill9
chaos_setup
chaos_load_start
KILLS=${CHAOS_KILLS:-20}
before_lite=$(chaos_history_lite) before_pg=$(chaos_history_pg)
# Every 5th kill: once the walsender has gone, the slot's confirmed_flush_lsn is not ahead of the
# least checkpoint of the two sinks (the source is acknowledged only up to what both hold).
sink_lsn_lite() { sqlite3 "$LITE_DB" "SELECT position_lsn FROM _odsync_checkpoint WHERE pipeline = 'bench.lite'"; }
sink_lsn_pg() { dst_psql -c "SELECT position FROM public._odsync_checkpoint WHERE pipeline = 'bench.pg'"; }
acks=0
check_ack() {
  local what=$1 confirmed lite pg
  wait_for "[[ \$(src_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_bench'\") == f ]]" 30 ||
    fail "$what: slot still active 30 s after the kill"
  confirmed=$(lsn_to_int "$(src_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_bench'")")
  lite=$(lsn_to_int "$(sink_lsn_lite)") pg=$(lsn_to_int "$(sink_lsn_pg)")
  ((confirmed <= lite && confirmed <= pg)) ||
    fail "$what: slot confirmed_flush $confirmed is ahead of a sink checkpoint (SQLite $lite, PostgreSQL $pg)"
  acks=$((acks + 1))
  chaos_log "$what: confirmed_flush $confirmed <= checkpoints (SQLite $lite, PostgreSQL $pg)"
}
hit=0
while ((hit < KILLS)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + r / 32767 * 1.5 }')"
  chaos_running || { wait "$ODSYNC_PID" || true; fail "odsync exited on its own (before kill $((hit + 1)))"; }
  kill -KILL "$ODSYNC_PID"
  hit=$((hit + 1))
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
  ((hit % 5 == 0)) && check_ack "kill $hit"
  chaos_start
done
chaos_injected "SIGKILLs that hit a running odsync" "$hit"
((acks == KILLS / 5)) || fail "only $acks acknowledgement checks ran"
# Let it stream for a moment so the last kills' backlog is visibly applied.
wait_for "(( \$(chaos_history_lite) > $before_lite && \$(chaos_history_pg) > $before_pg ))" 120 ||
  fail "the sinks did not move during the kills (SQLite $before_lite -> $(chaos_history_lite), PostgreSQL $before_pg -> $(chaos_history_pg))"
chaos_log "during the kills: SQLite pgbench_history $before_lite -> $(chaos_history_lite), PostgreSQL $before_pg -> $(chaos_history_pg)"
chaos_finish
