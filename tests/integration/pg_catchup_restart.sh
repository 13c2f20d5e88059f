#!/usr/bin/env bash
# pg_catchup_restart: after catch-up by batch decoding, the slot's restart_lsn is at the head, so the
# stream does not decode the backlog's WAL again (catchup_move_restart, src/sources/pg/pg_restart.c).
#
# 1. A backlog of 50,000 changes in one burst (a few seconds, no checkpoint: no running-transactions
#    record of the server's own inside it) on a slot made before it; odsync catches up from an empty
#    sink (snapshot: never) in calls of 10,000 and switches to streaming. Asserts: restart_lsn moved
#    from the backlog's start to at least its end (pg_replication_slots, and the debug line saying so);
#    the slot's confirmed position never passed the sink's checkpoint (sampled while catching up); no
#    temporary slot is left; the sink equals the source row for row (od_compare); a change made after
#    the switch arrives by streaming (equal again).
# 2. A second backlog while a transaction that wrote stays open: logging the record (creating a
#    temporary slot) waits for it and is cancelled by catchup_move_restart_timeout_ms; no slot is left,
#    the pipeline goes on, the open transaction's rows arrive once it commits (equal).
# 3. No free replication slot for the record (max_replication_slots filled up with physical slots):
#    one warning naming max_replication_slots, the pipeline catches up all the same (equal).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_catchup_restart
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
# No autovacuum: an ANALYZE transaction open when the record is logged would hold restart_lsn
# before it (documented), which would make assertion (a) depend on timing.
PG_START_CONF="autovacuum = off" pg_start shop
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
slot_lsn() { lsn_to_int "$(pg_psql -c "SELECT $1 FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")"; }
other_slots() { pg_psql -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name <> 'odsync_shop' AND slot_type = 'logical'"; }

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text);
CREATE TABLE events (id bigserial PRIMARY KEY, item bigint, what text);
CREATE PUBLICATION odsync_shop FOR TABLE items, events;
SELECT pg_create_logical_replication_slot('odsync_shop', 'pgoutput');
SQL
START=$(slot_lsn restart_lsn)
CREATED=$(slot_lsn confirmed_flush_lsn)

log "backlog: 50,000 changes in one burst"
pg_psql <<'SQL'
INSERT INTO items SELECT g, g % 10, 'n' || g FROM generate_series(1, 20000) g;
DO $$ BEGIN FOR i IN 1..100 LOOP
  UPDATE items SET qty = qty + 1, note = note || '.' WHERE id BETWEEN (i - 1) * 150 + 1 AND i * 150;
  COMMIT;
END LOOP; END $$;
INSERT INTO events (item, what) SELECT g, 'made' FROM generate_series(1, 12000) g;
DELETE FROM items WHERE id BETWEEN 19001 AND 19500;
INSERT INTO items SELECT g, 1, 'late' FROM generate_series(30001, 32500) g;
SQL
BACKLOG_END=$(lsn_to_int "$(pg_psql -c "SELECT pg_current_wal_lsn()")")
changes=$(pg_psql -c "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM events)")
log "backlog of $(((BACKLOG_END - START) / 1024)) KiB; slot restart_lsn still at its start: $START"
(($(slot_lsn restart_lsn) == START)) || fail "restart_lsn moved before odsync ran: the test's premise does not hold"

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", snapshot: never, catchup_lag_bytes: 1, catchup_batch_changes: 10000, catchup_move_restart_timeout_ms: 500 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
sed 's/catchup_move_restart_timeout_ms: 500/catchup_move_restart_timeout_ms: 5/' "$CONFIG" >"$TEST_TMP/bad.yaml"
if out=$("$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" 2>&1); then fail "catchup_move_restart_timeout_ms: 5 was accepted"; fi
grep -q "catchup_move_restart_timeout_ms" <<<"$out" || fail "the error does not name the key: $out"

odsync_start "$CONFIG" "$LOG" 7>&-
deadline=$(($(date +%s) + 300))
until grep -q 'caught up by batch decoding' "$LOG"; do
  confirmed=$(slot_lsn confirmed_flush_lsn)
  held=$(checkpoint_lsn shop)
  ((confirmed <= CREATED || confirmed <= ${held:-0})) || fail "slot confirmed up to $confirmed while the sink's checkpoint is ${held:-none}"
  (($(date +%s) < deadline)) || fail "no switch to streaming within 300 s: $(tail -n 5 "$LOG")"
  odsync_running || fail "odsync exited: $(tail -n 20 "$LOG")"
  sleep 0.2
done
grep -q 'catching up by batch decoding' "$LOG" || fail "catch-up mode was not entered"
restart=$(slot_lsn restart_lsn)
log "restart_lsn $START -> $restart (backlog $START..$BACKLOG_END)"
((restart >= BACKLOG_END)) || fail "restart_lsn at $restart, before the end of the backlog ($BACKLOG_END, started at $START): the stream decodes $(((BACKLOG_END - restart) / 1024)) KiB again"
grep -q 'for the switch: restart_lsn .* (at or past the running-transactions record' "$LOG" ||
  fail "no debug line saying restart_lsn passed the record logged for the switch"
grep -q 'logged a running-transactions record .* created and dropped' "$LOG" || fail "no record logged (debug line missing)"
(($(other_slots) == 0)) || fail "a logical slot besides odsync_shop is left: $(pg_psql -c "SELECT slot_name FROM pg_replication_slots")"
wait_equal 120
(($(sqlite3 "$SINK_DB" "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM events)") == changes)) ||
  fail "row counts differ from the source's $changes"

log "a change after the switch arrives by streaming"
pg_psql -c "UPDATE items SET note = 'after' WHERE id % 1000 = 0"
pg_psql -c "INSERT INTO events (item, what) VALUES (1, 'after the switch')"
wait_equal 120
grep -q 'after the switch' <<<"$(sqlite3 "$SINK_DB" "SELECT what FROM events WHERE item = 1")" || fail "the new event did not arrive"
confirmed=$(slot_lsn confirmed_flush_lsn)
((confirmed <= $(checkpoint_lsn shop))) || fail "slot confirmed up to $confirmed, past the sink's checkpoint"
odsync_stop

log "second backlog with a transaction left open: the record's wait is cancelled, nothing is left"
pg_psql -c "INSERT INTO items SELECT g, 2, 'second' FROM generate_series(40001, 60000) g"
OPEN_FIFO=$TEST_TMP/open.fifo
mkfifo "$OPEN_FIFO"
# psql reads its commands from the fifo: the transaction stays open until COMMIT is written.
pg_psql <"$OPEN_FIFO" >"$TEST_TMP/open.out" 2>&1 &
OPEN_PID=$!
exec 7>"$OPEN_FIFO"
echo "BEGIN; INSERT INTO events (item, what) VALUES (2, 'held open');" >&7
until (($(pg_psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND state = 'idle in transaction'") == 1)); do
  kill -0 "$OPEN_PID" 2>/dev/null || fail "the open transaction's psql exited: $(cat "$TEST_TMP/open.out")"
  sleep 0.1
done
pg_psql -c "UPDATE items SET qty = qty + 5 WHERE id > 45000"
: >"$LOG"
odsync_start "$CONFIG" "$LOG" 7>&-
wait_for "grep -q 'caught up by batch decoding' '$LOG'" 300 || fail "no switch to streaming: $(tail -n 5 "$LOG")"
grep -q 'cancelled by catchup_move_restart_timeout_ms' "$LOG" || fail "the record's creation was not cancelled by the timeout"
(($(other_slots) == 0)) || fail "a cancelled creation left a slot: $(pg_psql -c "SELECT slot_name FROM pg_replication_slots")"
! grep -q 'WARN.*running-transactions' "$LOG" || fail "a warning while the record's wait was cancelled: $(grep WARN "$LOG")"
echo "COMMIT;" >&7
exec 7>&-
wait "$OPEN_PID" || fail "the open transaction failed: $(cat "$TEST_TMP/open.out")"
wait_equal 120
(($(sqlite3 "$SINK_DB" "SELECT count(*) FROM events WHERE what = 'held open'") == 1)) || fail "the held transaction did not arrive once"
odsync_stop

log "no free replication slot for the record: a warning, catch-up all the same"
max=$(pg_psql -c "SHOW max_replication_slots")
used=$(pg_psql -c "SELECT count(*) FROM pg_replication_slots")
# Leave exactly one free slot: the copy for batch decoding takes it, the record finds none.
for ((i = used; i < max - 1; i++)); do pg_psql -c "SELECT pg_create_physical_replication_slot('filler_$i')" >/dev/null; done
pg_psql -c "INSERT INTO items SELECT g, 3, 'third' FROM generate_series(60001, 75000) g"
: >"$LOG"
odsync_start "$CONFIG" "$LOG" 7>&-
wait_for "grep -q 'caught up by batch decoding' '$LOG'" 300 || fail "no switch to streaming: $(tail -n 5 "$LOG")"
grep -q 'WARN.*cannot log a running-transactions record.*max_replication_slots' "$LOG" ||
  fail "no warning naming max_replication_slots: $(grep -i 'running-transactions' "$LOG" | head -3)"
(($(grep 'WARN' "$LOG" | grep -c 'cannot log a running-transactions record') == 1)) || fail "the warning was repeated"
pg_psql -c "DELETE FROM items WHERE id > 74000"
wait_equal 120
odsync_stop
for ((i = used; i < max - 1; i++)); do pg_psql -c "SELECT pg_drop_replication_slot('filler_$i')" >/dev/null; done
log "all assertions passed"
