#!/usr/bin/env bash
# circuit_breaker.sh — the per-sink circuit breaker of a postgres -> postgres pipeline whose target
# server goes away (docs/DEAD_LETTERS.md).
#
# Asserts: with circuit_breaker { failures: 2, cooldown_ms: 8000 }, stopping the target opens the
# breaker (odsync_sink_circuit_state 1, /status "circuit":"open", `odsync status` names it, the log
# says the breaker is open); while open no session starts (odsync_sessions_total stays still for
# most of the cool-down); after the target is back, a half-open probe closes it (state 0, at least
# 3 transitions: open, half-open, closed) and the target equals the source row for row, with the
# rows written during the outage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init circuit_breaker
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair shop warehouse
DST_DIR=$(dirname "$DST_LOG")
APORT=$(pg_free_port)
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    reconnect_max_ms: 300
    circuit_breaker: { failures: 2, cooldown_ms: 8000 }
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.t] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.t; }
metric() { curl -s --max-time 5 "http://127.0.0.1:$APORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
STATE='odsync_sink_circuit_state{pipeline="shop",sink="default"}'
TRANS='odsync_sink_circuit_transitions_total{pipeline="shop",sink="default"}'
SESS='odsync_sessions_total{pipeline="shop"}'

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
wait_for compare_pg 120 || fail "initial copy not in the target"
[[ $(metric "$STATE") == 0 ]] || fail "the breaker is not closed at start: $(metric "$STATE")"

log "injected: the target server stopped"
pgsrv_stop "$DST_DIR"
pg_psql -c "INSERT INTO t SELECT g, g FROM generate_series(101, 200) g"
wait_for "[[ \$(metric '$STATE') == 1 ]]" 60 || fail "the breaker did not open: state $(metric "$STATE")"
curl -s "http://127.0.0.1:$APORT/status" | grep_q '"circuit":"open"' || fail "/status does not show the open circuit"
out=$("$ODSYNC_BIN" status -c "$CONFIG") || fail "odsync status failed"
grep -q 'sink default: circuit open' <<<"$out" || fail "odsync status does not name the open circuit: $out"
grep -q "circuit breaker is open" "$LOG" || fail "the log does not say the breaker is open"
# No session may start during the first 3 s of an open period (cool-down 8 s). Each failed half-open
# probe opens the breaker again, so an open period is measured from its start, and on a machine too
# loaded to read the counters within the window (more than 7 s between the two reads) the next one.
measured=""
for attempt in 1 2 3 4 5; do
  # measure from the start of an open period: the next transition into open (after a failed probe)
  tr=$(metric "$TRANS")
  wait_for "[[ \$(metric '$STATE') == 1 && \$(metric '$TRANS') -gt $tr ]]" 30 ||
    fail "the breaker did not open again: state $(metric "$STATE"), transitions $(metric "$TRANS")"
  t0=$(date +%s%N)
  s0=$(metric "$SESS")
  sleep 3
  s1=$(metric "$SESS")
  t1=$(date +%s%N)
  (( (t1 - t0) / 1000000 <= 7000 )) || { log "attempt $attempt: $(((t1 - t0) / 1000000)) ms between the reads, past the window: again"; continue; }
  [[ -n "$s0" && "$s0" -ge 2 ]] || fail "odsync_sessions_total not read: '$s0'"
  [[ "$s1" == "$s0" ]] || fail "sessions started while the breaker was open ($s0 -> $s1 in $(((t1 - t0) / 1000000)) ms)"
  measured=1
  break
done
[[ -n $measured ]] || fail "the counters could not be read twice within 7 s of an open period in 5 attempts"
log "verified: breaker open (state 1) after $s0 sessions, no session for 3 s of its 8 s cool-down, shown in /status and odsync status"

pgsrv_as_user "$(pg_bindir)/pg_ctl" -D "$DST_DIR/data" -l "$DST_LOG" -w -t 60 start >/dev/null || fail "cannot restart the target"
log "target back"
wait_for "[[ \$(metric '$STATE') == 0 ]]" 90 || fail "the breaker did not close after the target came back"
(($(metric "$TRANS") >= 3)) || fail "fewer than 3 transitions: $(metric "$TRANS")"
wait_for compare_pg 120 || { compare_pg; fail "target not equal to the source after the outage"; }
log "verified: half-open probe closed the breaker ($(metric "$TRANS") transitions); target equal to source"
odsync_stop
