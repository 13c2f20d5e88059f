#!/usr/bin/env bash
# pg_catchup_backlog: catch-up by batch decoding from a backlog the pipeline has never seen. The slot
# and publication exist before any change; then, with odsync not running, a backlog: small and large
# transactions (one of 12,000 rows, larger than a batch of 3,000 messages), updates that leave
# TOASTed bodies alone, deletes, an ALTER TABLE ADD COLUMN in the middle, rows under the new shape,
# a keyless table. odsync starts with an empty sink (no checkpoint, snapshot: never) and
# catchup_lag_bytes: 1; a read-ahead buffer of 200,000 bytes (catchup_prefetch_bytes), which the
# large transaction overflows: calls are both read ahead (next call sent before decoding) and, past
# the buffer, decoded as read. catchup_decoding_mem_bytes: 65536 (64 kB, the server's minimum of
# logical_decoding_work_mem) makes the server spill the large transaction (and others) to disk and read
# it back at commit, for the batch calls only.
#
# Asserts: the log shows catch-up mode entered and left for streaming; the sink equals the source row
# for row (od_compare); the slot's confirmed position never passed the sink's checkpoint while
# catching up (sampled every 0.2 s) and ended past the backlog; changes made after the switch arrive
# by streaming (equal again); both read paths were taken (log); the batch calls' session decoded with
# logical_decoding_work_mem = 64 kB (log; a negative value is refused); a restart below the default threshold streams at once (no catch-up line).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_catchup_backlog
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text, body text);
ALTER TABLE items ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE hits (path text, n int);
ALTER TABLE hits REPLICA IDENTITY FULL;
CREATE PUBLICATION odsync_shop FOR TABLE items, hits;
SELECT pg_create_logical_replication_slot('odsync_shop', 'pgoutput');
SQL
CREATED=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")

log "backlog: small and large transactions, TOAST, deletes, a DDL in the middle, a keyless table"
pg_psql <<'SQL'
INSERT INTO items SELECT g, g % 7, 'n' || g, CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 200) END
  FROM generate_series(1, 2000) g;
DO $$ BEGIN FOR i IN 1..300 LOOP
  UPDATE items SET qty = qty + 1 WHERE id = i;
  INSERT INTO hits VALUES ('/p/' || (i % 5), i);
  COMMIT;
END LOOP; END $$;
INSERT INTO items SELECT g, 1, 'big', NULL FROM generate_series(10001, 22000) g;
UPDATE items SET note = note || '!' WHERE id % 50 = 0;
DELETE FROM items WHERE id BETWEEN 500 AND 650;
ALTER TABLE items ADD COLUMN price numeric(10,2);
UPDATE items SET price = id / 100.0 WHERE id % 3 = 0 AND id < 2000;
INSERT INTO hits SELECT '/p/1', 1 FROM generate_series(1, 40);
DELETE FROM hits WHERE n = 7;
SQL
BACKLOG_END=$(lsn_to_int "$(pg_psql -c "SELECT pg_current_wal_lsn()")")

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", snapshot: never, catchup_lag_bytes: 1, catchup_exit_bytes: 0, catchup_batch_changes: 3000, catchup_prefetch_bytes: 200000, catchup_decoding_mem_bytes: 65536 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
# A bad catch-up setting is refused before anything starts, naming the key and the range.
sed 's/catchup_batch_changes: 3000/catchup_batch_changes: 10/' "$CONFIG" >"$TEST_TMP/bad.yaml"
if out=$("$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" 2>&1); then fail "catchup_batch_changes: 10 was accepted"; fi
grep -q "catchup_batch_changes" <<<"$out" || fail "the error does not name catchup_batch_changes: $out"
sed 's/catchup_prefetch_bytes: 200000/catchup_prefetch_bytes: -1/' "$CONFIG" >"$TEST_TMP/bad.yaml"
if out=$("$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" 2>&1); then fail "catchup_prefetch_bytes: -1 was accepted"; fi
grep -q "catchup_prefetch_bytes" <<<"$out" || fail "the error does not name catchup_prefetch_bytes: $out"
sed 's/catchup_decoding_mem_bytes: 65536/catchup_decoding_mem_bytes: -1/' "$CONFIG" >"$TEST_TMP/bad.yaml"
if out=$("$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" 2>&1); then fail "catchup_decoding_mem_bytes: -1 was accepted"; fi
grep -q "catchup_decoding_mem_bytes" <<<"$out" || fail "the error does not name catchup_decoding_mem_bytes: $out"
odsync_start "$CONFIG" "$LOG"
# While it catches up: the slot is never confirmed past the sink's checkpoint.
samples=0
deadline=$(($(date +%s) + 180))
until grep -q 'caught up by batch decoding' "$LOG"; do
  confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")
  held=$(checkpoint_lsn shop)
  if ((confirmed > CREATED && confirmed > held)); then
    fail "slot confirmed up to $confirmed while the sink's checkpoint is $held"
  fi
  samples=$((samples + 1))
  (($(date +%s) < deadline)) || fail "no switch to streaming within 180 s: $(tail -n 5 "$LOG")"
  odsync_running || fail "odsync exited: $(tail -n 20 "$LOG")"
  sleep 0.2
done
grep -q 'catching up by batch decoding' "$LOG" || fail "catch-up mode was not entered"
batches=$(grep -c 'batch call [0-9]* (upto_nchanges [0-9]*): [0-9]* messages' "$LOG" || true)
((batches >= 3)) || fail "only $batches batch decoding calls for a backlog of ~30,000 messages in batches of 3,000"
log "caught up in $batches batch calls ($samples slot samples, never past the sink)"
grep -q 'messages; .* (buffered)' "$LOG" || fail "no batch call was read ahead into the buffer"
grep -q 'messages; .* (decoded as read)' "$LOG" || fail "no batch call overflowed the 200,000-byte buffer"
grep -q 'batch calls decode with logical_decoding_work_mem = 64 kB' "$LOG" ||
  fail "the batch calls did not set logical_decoding_work_mem from catchup_decoding_mem_bytes: 65536"
wait_for "compare" 120 || { compare || true; fail "sink differs from the source after catching up"; }

log "streaming after the switch"
pg_psql -c "INSERT INTO items SELECT g, 2, 'after', NULL, 1.5 FROM generate_series(30001, 30500) g"
pg_psql -c "UPDATE items SET qty = 0 WHERE id < 100"
wait_for "compare" 120 || { compare || true; fail "sink differs from the source after streaming changes"; }
odsync_stop
confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")")
((confirmed >= BACKLOG_END)) || fail "slot confirmed only up to $confirmed, backlog ended at $BACKLOG_END"
((confirmed <= $(checkpoint_lsn shop))) || fail "slot confirmed past the sink's checkpoint after the stop"

log "restart with nothing behind (default catchup_lag_bytes, 64 MiB): streams at once"
sed -i 's/, catchup_lag_bytes: 1, catchup_exit_bytes: 0, catchup_batch_changes: 3000, catchup_prefetch_bytes: 200000, catchup_decoding_mem_bytes: 65536//' "$CONFIG"
: >"$LOG"
odsync_start "$CONFIG" "$LOG"
pg_psql -c "DELETE FROM items WHERE id > 30400"
wait_for "compare" 120 || { compare || true; fail "sink differs after the restart"; }
! grep -q 'catching up by batch decoding' "$LOG" || fail "catch-up mode entered with nothing behind"
odsync_stop
log "all assertions passed"
