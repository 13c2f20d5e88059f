#!/usr/bin/env bash
# pg_reconnect_and_slot_busy.sh — a dropped replication connection is survived, and a second
# odsync on the same slot is refused with a clear error.
#
# 1. While a workload runs, the walsender serving odsync is terminated three times
#    (pg_terminate_backend): odsync must reconnect by itself (log says it retries) and the sink
#    must end up equal to the source, without a restart of odsync.
# 2. A second odsync with its own state_dir and sink but the same slot must report that the slot
#    is in use by another process, naming the slot, and the first one must keep working.
# 3. A second odsync with the same state_dir must refuse to start the same pipeline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_reconnect_and_slot_busy
pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text, n int)"
write_config "$CONFIG" shop "public.items"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60

( for i in $(seq 1 60); do
    pg_psql -c "INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series($((i * 100)), $((i * 100 + 99))) g;
                UPDATE items SET n = n + 1 WHERE id % 7 = $((i % 7))" >/dev/null
    sleep 0.05
  done ) &
WORKLOAD=$!
for k in 1 2 3; do
  sleep 0.7
  pid=$(pg_psql -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")
  [[ -n "$pid" ]] || { sleep 1; continue; }
  pg_psql -c "SELECT pg_terminate_backend($pid)" >/dev/null
  log "terminated walsender $pid"
done
wait "$WORKLOAD"
wait_equal 90
odsync_running || fail "odsync exited instead of reconnecting"
grep -q "retrying in" "$LOG" || fail "odsync log does not show a reconnect"

# A second process on the same slot.
SECOND=$TEST_TMP/second.yaml
cat >"$SECOND" <<YAML
state_dir: $TEST_TMP/state2
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $TEST_TMP/second.db }
YAML
"$ODSYNC_BIN" run -c "$SECOND" >"$TEST_TMP/second.log" 2>&1 &
SECOND_PID=$!
wait_for "grep -q 'in use by another process' '$TEST_TMP/second.log'" 30 ||
  { cat "$TEST_TMP/second.log" >&2; fail "the second odsync did not report the busy slot"; }
grep -q "odsync_shop" "$TEST_TMP/second.log" || fail "the busy-slot message does not name the slot"
kill -TERM "$SECOND_PID"
wait "$SECOND_PID" || true
if grep -q "password" "$TEST_TMP/second.log"; then fail "a log mentions a password"; fi

# The same pipeline twice in one state_dir.
if "$ODSYNC_BIN" run -c "$CONFIG" >"$TEST_TMP/third.log" 2>&1; then fail "a second run of the same pipeline started"; fi
grep -q "already running" "$TEST_TMP/third.log" || { cat "$TEST_TMP/third.log" >&2; fail "no 'already running' message"; }

pg_psql -c "INSERT INTO items VALUES (999999, 'after', 1)"
wait_equal 60
odsync_stop
