#!/usr/bin/env bash
# tests/chaos/kill9.sh — odsync killed with SIGKILL at random moments (CHAOS_KILLS, default 20),
# under pgbench load, fanning out to a SQLite and a PostgreSQL sink.
#
# Injected: CHAOS_KILLS SIGKILLs, each one aimed at a running odsync (counted only when the process
# was alive when the signal was sent) at a random moment 0.3-1.8 s after its start (some while it
# connects, some while it streams).
# Verified: the sinks kept moving between kills (pgbench_history grew in both), then chaos_finish:
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
hit=0
while ((hit < KILLS)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + r / 32767 * 1.5 }')"
  chaos_running || { wait "$ODSYNC_PID" || true; fail "odsync exited on its own (before kill $((hit + 1)))"; }
  kill -KILL "$ODSYNC_PID"
  hit=$((hit + 1))
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
  chaos_start
done
chaos_injected "SIGKILLs that hit a running odsync" "$hit"
# Let it stream for a moment so the last kills' backlog is visibly applied.
wait_for "(( \$(chaos_history_lite) > $before_lite && \$(chaos_history_pg) > $before_pg ))" 120 ||
  fail "the sinks did not move during the kills (SQLite $before_lite -> $(chaos_history_lite), PostgreSQL $before_pg -> $(chaos_history_pg))"
chaos_log "during the kills: SQLite pgbench_history $before_lite -> $(chaos_history_lite), PostgreSQL $before_pg -> $(chaos_history_pg)"
chaos_finish
