#!/usr/bin/env bash
# tests/chaos/sink_outage.sh — both sinks become unwritable under pgbench load: the SQLite sink's
# directory (its own tmpfs) is remounted read-only, then the PostgreSQL sink server is stopped for
# 30 s; odsync fans out to both.
#
# Injected: (1) odsync SIGKILLed and restarted with the SQLite sink's file system read-only (as root a
# chmod would not stop odsync: a read-only mount does), held ~15 s; (2) the PostgreSQL sink stopped
# (pg_ctl -m fast) for 30 s, overlapping (1) and lasting past it. Counted: the retry messages naming
# each sink, and the source rows written while each sink was away (> 0).
# Verified: odsync never exits; while away, the sink's rows do not move; after each sink is back it
# resumes; chaos_finish: both sinks equal the source row for row, pgbench_history's exact count,
# SIGTERM under load drains, a restart applies nothing twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/chaos.sh"

test_init chaos_sink_outage
test_extra_cleanup() { chaos_umount_all; }
chaos_tmpfs 64m
CHAOS_LITE_DIR=$CHAOS_TMPFS
chaos_setup
chaos_load_start
sleep 2

# ---- (1) SQLite directory read-only ------------------------------------------------------------
chaos_kill9
mount -o remount,ro "$CHAOS_LITE_DIR" || fail "cannot remount $CHAOS_LITE_DIR read-only"
touch "$CHAOS_LITE_DIR/probe" 2>/dev/null && fail "$CHAOS_LITE_DIR is still writable"
lite_src0=$(chaos_history_src) lite0=$(chaos_history_lite)
chaos_log "SQLite sink directory $CHAOS_LITE_DIR remounted read-only (odsync restarted on it)"
chaos_start
lite_pat="sqlite sink $CHAOS_LITE_DIR/bench.db: .*not writable"
wait_for "(( \$(grep -c -- '$lite_pat' '$LOG' || true) >= 1 ))" 60 || fail "no retry message naming the read-only SQLite sink"
grep -m1 -- "$lite_pat" "$LOG" | sed 's/^/message: /'

# ---- (2) PostgreSQL sink stopped for 30 s ------------------------------------------------------
sleep 2
pg_src0=$(chaos_history_src) pg0=$(chaos_history_pg)
chaos_pg_stop "$DST_DIR" fast
pg_down=$SECONDS
chaos_log "PostgreSQL sink stopped"
sleep 12
chaos_running || fail "odsync exited while the sinks were away"
[[ $(chaos_history_lite) == "$lite0" ]] || fail "SQLite moved while read-only?"
lite_n=$(grep -c -- "$lite_pat" "$LOG" || true)
chaos_injected "SQLite sink read-only: retries naming $CHAOS_LITE_DIR/bench.db" "$lite_n"
chaos_injected "source rows written while the SQLite sink was read-only" "$(($(chaos_history_src) - lite_src0))"
mount -o remount,rw "$CHAOS_LITE_DIR" || fail "cannot remount $CHAOS_LITE_DIR read-write"
chaos_log "SQLite sink directory writable again"
pg_pat="sink pg: .*$DST_DIR"
wait_for "(( \$(grep -c -- '$pg_pat' '$LOG' || true) >= 1 ))" 60 || fail "no retry message naming the stopped PostgreSQL sink"
grep -m1 -- "$pg_pat" "$LOG" | sed 's/^/message: /'
while ((SECONDS - pg_down < 30)); do
  sleep 1
  chaos_running || fail "odsync exited while the PostgreSQL sink was stopped"
done
pg_n=$(grep -c -- "$pg_pat" "$LOG" || true)
chaos_injected "PostgreSQL sink stopped $((SECONDS - pg_down)) s: retries naming it" "$pg_n"
chaos_injected "source rows written while the PostgreSQL sink was stopped" "$(($(chaos_history_src) - pg_src0))"
chaos_pg_start "$DST_DIR"
chaos_log "PostgreSQL sink started again"
wait_for "(( \$(chaos_history_pg) > $pg0 + 20 && \$(chaos_history_lite) > $lite0 + 20 ))" 120 ||
  fail "the sinks did not resume (SQLite $lite0 -> $(chaos_history_lite), PostgreSQL $pg0 -> $(chaos_history_pg))"
chaos_log "VERIFIED: both sinks resumed (SQLite pgbench_history $lite0 -> $(chaos_history_lite), PostgreSQL $pg0 -> $(chaos_history_pg))"
[[ $(sqlite3 "$LITE_DB" "PRAGMA integrity_check") == ok ]] || fail "SQLite integrity_check failed"
chaos_finish
