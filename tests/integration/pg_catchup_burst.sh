#!/usr/bin/env bash
# pg_catchup_burst: a burst at the head while odsync streams makes it leave the stream for batch
# decoding and come back (src/sources/pg/pg_burst.c; docs/adapters/postgres-source.md, "A burst
# while streaming"). catchup_lag_bytes: 4 MiB, status_interval_ms: 200 (the distance is read every
# 0.2 s; a switch needs it over the threshold at 3..10 reads in a row, growing, with 20 transactions
# delivered meanwhile; CI of 12-05 16:19 saw a loaded stream deliver 11-17 in three reads). Each burst: odsync
# is stopped (SIGSTOP) while ~10 MiB of WAL is written — 40,000 inserts in 200-row transactions,
# updates, deletes, rows of a keyless table (where a duplicate would be a difference) — then resumed
# while a writer goes on (another 400,000 inserts): the stream is behind and falling further behind.
# Asserts: the log says the stream fell behind and catch-up was entered after the session's start
# (not at it), then left for streaming; the slot's confirmed position never passed the sink's
# checkpoint (sampled every 0.2 s); the sink equals the source row for row (od_compare, both
# tables); the stream after the catch-up does not fail (it needs a new replication connection);
# odsync_source_catchups_total and /status source_health count each switch (0 at the start, then
# 1, 2) and say streaming (batch_decoding false / 0) once caught up; changes after the switch back
# arrive by streaming; a second burst switches again; a third one with odsync SIGKILLed right after
# the switch was decided ends equal after a restart. Last, one large transaction (~80 MiB of WAL,
# more than the threshold) committed while odsync streams does not switch: the distance does not
# grow while the walsender decodes it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_catchup_burst
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text);
CREATE TABLE hits (path text, n int);
ALTER TABLE hits REPLICA IDENTITY FULL;
INSERT INTO items SELECT g, 0, 'seed' FROM generate_series(1, 100) g;
INSERT INTO hits VALUES ('/seed', 0);
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items, public.hits], status_interval_ms: 200,
              catchup_lag_bytes: 4194304, catchup_exit_bytes: 1048576, catchup_batch_changes: 5000 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
compare() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items --table hits >/dev/null 2>&1; }
wait_equal() { # $1: what
  wait_for compare 180 || { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items --table hits || true; fail "$1: sink differs from the source"; }
}
burst() { # $1: first id
  pg_psql <<SQL >/dev/null
DO \$\$ BEGIN FOR i IN 0..199 LOOP
  INSERT INTO items SELECT g, 1, md5(g::text) FROM generate_series($1 + i * 200, $1 + i * 200 + 199) g;
  INSERT INTO hits SELECT '/p/' || (g % 7), g FROM generate_series(1, 20) g;
  COMMIT;
END LOOP; END \$\$;
UPDATE items SET qty = qty + 1, note = note || '!' WHERE id BETWEEN $1 AND $1 + 9999;
DELETE FROM items WHERE id BETWEEN $1 + 20000 AND $1 + 24999;
DELETE FROM hits WHERE n = 3;
SQL
}
metric() { # $1: family name; the pipeline's value
  curl -s --max-time 5 "$ADMIN/metrics" | sed -n "s/^$1{pipeline=\"shop\"} \([0-9]*\)\$/\1/p"
}
status_health() { # $1: key of /status source_health
  curl -s --max-time 5 "$ADMIN/status" | python3 -c '
import json, sys
h = json.load(sys.stdin)["pipelines"][0]["source_health"]
print(json.dumps(h[sys.argv[1]]) if h else "")' "$1"
}
# A writer that goes on after odsync is resumed: 400 transactions of 1,000 rows from id $1, in two
# sessions of 200 each. One session writes about three times faster than a walsender sends
# (bench/pg_burst.sh), but on a loaded machine the stream can keep up (CI of 12-05 23:36 with one
# session, of 12-06 01:09 with two): odsync is throttled too until it switches (throttle below).
writer() {
  local k
  WRITER_PIDS=()
  for k in 0 1; do
    pg_psql <<SQL >/dev/null &
DO \$\$ BEGIN FOR i IN 0..199 LOOP
  INSERT INTO items SELECT g, 2, 'live' FROM generate_series($1 + $k * 200000 + i * 1000, $1 + $k * 200000 + i * 1000 + 999) g;
  COMMIT;
END LOOP; END \$\$;
SQL
    WRITER_PIDS+=($!)
  done
}
writer_wait() { # $1: what
  local p
  for p in "${WRITER_PIDS[@]}"; do wait "$p" || fail "$1: the writer failed"; done
}
# Pauses odsync three quarters of the time (SIGSTOP 150 ms, SIGCONT 50 ms) until the Nth switch to
# batch decoding is logged: the stream then falls behind the writers whatever else loads the machine
# (CI of 12-06 01:09, three tests at once: the stream caught up with two writer sessions by itself,
# 9.6 -> 4.3 MB, and no switch came). Its reads of the distance run in the 50 ms windows.
throttle() { # $1: N
  while (($(grep -c 'switching to batch decoding' "$LOG") < $1)); do
    kill -STOP "$ODSYNC_PID" 2>/dev/null || return 0
    sleep 0.15
    kill -CONT "$ODSYNC_PID" 2>/dev/null || return 0
    sleep 0.05
  done
}
THROTTLE_PID=
throttle_start() { throttle "$1" & THROTTLE_PID=$!; }
throttle_end() { # the loop ends at the switch; odsync runs on
  [[ -n $THROTTLE_PID ]] && wait "$THROTTLE_PID" 2>/dev/null
  THROTTLE_PID=
  kill -CONT "$ODSYNC_PID" 2>/dev/null || true
}
test_extra_cleanup() { [[ -n $THROTTLE_PID ]] && kill "$THROTTLE_PID" 2>/dev/null; return 0; }

# Samples the slot against the sink's checkpoint until $1 shows up in the log.
watch_slot_until() { # $1: pattern, $2: what
  local deadline=$(($(date +%s) + 180)) confirmed held
  until grep -q "$1" "$LOG"; do
    confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")
    held=$(checkpoint_lsn shop)
    ((confirmed <= held || held == 0)) || fail "$2: slot confirmed up to $confirmed while the sink's checkpoint is $held"
    (($(date +%s) < deadline)) || fail "$2: '$1' not logged within 180 s: $(tail -n 5 "$LOG")"
    odsync_running || fail "$2: odsync exited: $(tail -n 20 "$LOG")"
    sleep 0.2
  done
}

odsync_start "$CONFIG" "$LOG"
wait_for "grep -q 'streaming from' '$LOG'" 60 || fail "odsync does not start"
wait_equal "start"
! grep -q 'catching up by batch decoding' "$LOG" || fail "catch-up entered at the start with nothing behind"
wait_for "[[ \$(metric odsync_source_catchups_total) == 0 && \$(status_health batch_decoding) == false ]]" 10 ||
  fail "start: odsync_source_catchups_total '$(metric odsync_source_catchups_total)', batch_decoding '$(status_health batch_decoding)'"

log "1. a burst written while odsync is stopped (SIGSTOP), then resumed"
kill -STOP "$ODSYNC_PID"
burst 100000
kill -CONT "$ODSYNC_PID"
writer 3000000
throttle_start 1
watch_slot_until 'caught up by batch decoding' 1
throttle_end
writer_wait 1
grep -q 'the stream is [0-9.]* MB behind the server (catchup_lag_bytes 4.0 MB): switching to batch decoding' "$LOG" ||
  fail "1: the switch was not logged"
grep -q 'catching up by batch decoding' "$LOG" || fail "1: catch-up was not entered"
wait_equal 1
# The stream after the catch-up runs on a new replication connection (a walsender ends a second
# START_REPLICATION on the same one at once): no reconnect after an error.
! grep -q 'replication stream ended: ' "$LOG" || fail "1: the stream after the catch-up failed: $(grep 'replication stream ended: ' "$LOG" | head -1)"
log "1: $(grep -o 'the stream is .* MB behind the server' "$LOG" | head -1); $(grep -o 'caught up by batch decoding ([0-9]* calls, [0-9]* messages' "$LOG" | head -1)"

# Counted once, and streaming again: on /metrics and in /status.
wait_for "[[ \$(metric odsync_source_catchups_total) == 1 && \$(metric odsync_source_batch_decoding) == 0 ]]" 10 ||
  fail "1: odsync_source_catchups_total '$(metric odsync_source_catchups_total)', odsync_source_batch_decoding '$(metric odsync_source_batch_decoding)'"
[[ $(status_health catchups) == 1 && $(status_health batch_decoding) == false ]] ||
  fail "1: /status source_health catchups '$(status_health catchups)', batch_decoding '$(status_health batch_decoding)'"
log "changes at the head arrive by streaming again"
pg_psql -c "UPDATE items SET qty = 7 WHERE id <= 50" -c "INSERT INTO hits VALUES ('/after', 1)" >/dev/null
wait_equal "after the switch back"

sleep 13 # after a catch-up the stream reads 60 intervals of 0.2 s before the distance is read again
log "2. a second burst switches again"
kill -STOP "$ODSYNC_PID"
burst 200000
kill -CONT "$ODSYNC_PID"
writer 4000000
throttle_start 2
wait_for "(( \$(grep -c 'caught up by batch decoding' '$LOG') >= 2 ))" 180 || fail "2: no second catch-up: $(tail -n 5 "$LOG")"
throttle_end
writer_wait 2
wait_equal 2
! grep -q 'replication stream ended: ' "$LOG" || fail "2: the stream after the catch-up failed"
wait_for "[[ \$(metric odsync_source_catchups_total) == 2 ]]" 10 || fail "2: odsync_source_catchups_total '$(metric odsync_source_catchups_total)', expected 2"

sleep 13
log "3. a third burst; SIGKILL as soon as the switch is decided, then a restart"
kill -STOP "$ODSYNC_PID"
burst 300000
kill -CONT "$ODSYNC_PID"
writer 5000000
throttle_start 3
wait_for "(( \$(grep -c 'switching to batch decoding' '$LOG') >= 3 ))" 60 || fail "3: no third switch: $(tail -n 5 "$LOG")"
odsync_kill9
throttle_end
writer_wait 3
odsync_start "$CONFIG" "$TEST_TMP/after_kill.log"
wait_for "grep -q 'caught up by batch decoding' '$TEST_TMP/after_kill.log'" 180 ||
  fail "3: the restarted process did not catch up: $(tail -n 5 "$TEST_TMP/after_kill.log")"
wait_equal 3
LOG=$TEST_TMP/after_kill.log

log "4. one large transaction (~80 MiB of WAL) while streaming: no switch"
pg_psql -c "INSERT INTO items SELECT g, 3, repeat(md5(g::text), 8) FROM generate_series(7000000, 7250000) g" >/dev/null
wait_equal 4
sleep 1 # a few more reads of the distance
(($(grep -c 'switching to batch decoding' "$LOG") == 0)) || fail "4: one large transaction switched to batch decoding"
odsync_stop
confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")
((confirmed <= $(checkpoint_lsn shop))) || fail "slot confirmed past the sink's checkpoint after the stop"
log "all assertions passed"
