#!/usr/bin/env bash
# pg_catchup_streamed: catch-up by batch decoding with large transactions streamed by the source
# while it decodes them (protocol 2, 'streaming' 'on' in the batch calls, PostgreSQL 14+) instead of
# spilled to its disk and read back (docs/adapters/postgres-source.md, "Large transactions in a
# catch-up"). catchup_decoding_mem_bytes: 65536 (64 kB) makes every transaction of more than a few
# hundred rows a streamed one; catchup_batch_changes: 1000 makes the calls end inside them, so the
# next call streams such a transaction again from its start, with a limit of 4x what the last call
# returned (else it would end at the same place for ever); catchup_prefetch_bytes: 300000 has some calls read ahead and some decoded as read.
#
# The backlog (odsync stopped) holds, interleaved:
#   - A: a transaction held open while others commit: 15,000 inserts, a savepoint with 10,000
#     inserts rolled back, 5,000 more inserts, 5,000 updates of its own rows; committed last;
#   - B: small transactions committing while A is open (inserts, updates);
#   - C: a 20,000-row transaction rolled back (streamed, then aborted);
#   - then one 20,000-row UPDATE and one 7,000-row DELETE.
# Asserts: the log says a call ended inside a streamed transaction and the catch-up line counts at
# least 3 streamed transactions and at least 1 call that streamed one again; the sink equals the
# source row for row (od_compare); nothing of C nor of A's rolled-back savepoint is in the sink.
# Then a second backlog of the same kind, odsync SIGKILLed right after a call ended inside a
# streamed transaction, restarted: equal again, and the new process removed the spill files of the
# streamed transactions it had kept (none left in the state directory once caught up).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_catchup_streamed
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text);
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items], status_interval_ms: 200,
              catchup_lag_bytes: 1, catchup_exit_bytes: 0, catchup_batch_changes: 1000,
              catchup_prefetch_bytes: 300000, catchup_decoding_mem_bytes: 65536,
              stream_memory_bytes: 1048576 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
equal() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items >/dev/null 2>&1; }
wait_equal() { # $1: what
  wait_for equal 180 || { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items || true; fail "$1: sink differs from the source"; }
}

# The first run creates the slot and copies the (empty) table, then stops: what follows is a backlog.
odsync_start "$CONFIG" "$TEST_TMP/first.log"
wait_for "grep -q 'streaming from' '$TEST_TMP/first.log'" 60 || fail "odsync does not start"
odsync_stop

backlog() { # $1: id offset
  local o=$1 fifo=$TEST_TMP/open.fifo
  rm -f "$fifo"
  mkfifo "$fifo"
  pg_psql <"$fifo" >"$TEST_TMP/open.out" 2>&1 &
  local pid=$!
  exec 7>"$fifo"
  echo "BEGIN; INSERT INTO items SELECT g, 1, 'a' FROM generate_series($o + 1, $o + 15000) g;" >&7
  for i in $(seq 1 10); do
    pg_psql -c "INSERT INTO items VALUES ($o + 100000 + $i, $i, 'b')" >/dev/null
  done
  echo "SAVEPOINT s1; INSERT INTO items SELECT g, 2, 'rolled back' FROM generate_series($o + 20001, $o + 30000) g;" >&7
  echo "ROLLBACK TO s1; INSERT INTO items SELECT g, 3, 'a2' FROM generate_series($o + 30001, $o + 35000) g;" >&7
  pg_psql -c "BEGIN" -c "INSERT INTO items SELECT g, 4, 'c' FROM generate_series($o + 50001, $o + 70000) g" \
    -c "ROLLBACK" >/dev/null
  echo "UPDATE items SET qty = qty + 10, note = note || '+' WHERE id BETWEEN $o + 1 AND $o + 5000;" >&7
  for i in $(seq 1 10); do
    pg_psql -c "UPDATE items SET qty = qty + 1 WHERE id = $o + 100000 + $i" >/dev/null
  done
  echo "COMMIT;" >&7
  exec 7>&-
  wait "$pid" || fail "the held transaction failed: $(cat "$TEST_TMP/open.out")"
  pg_psql -c "UPDATE items SET note = 'u' || id WHERE id BETWEEN $o + 1 AND $o + 35000 AND id % 7 <> 0" >/dev/null
  pg_psql -c "DELETE FROM items WHERE id BETWEEN $o + 8001 AND $o + 15000" >/dev/null
  pg_psql -c "INSERT INTO items VALUES ($o + 200000, 9, 'after')" >/dev/null
}

log "1. a backlog of interleaved, rolled-back and large transactions"
backlog 0
LOG1=$TEST_TMP/one.log
odsync_start "$CONFIG" "$LOG1"
wait_for "grep -q 'caught up by batch decoding' '$LOG1'" 180 || { tail -n 30 "$LOG1" >&2; fail "1: catch-up did not end"; }
wait_equal 1
grep -q "batch call [0-9]* ended inside a transaction that the source streams" "$LOG1" ||
  { grep "batch call" "$LOG1" | head -20 >&2; fail "1: no call ended inside a streamed transaction"; }
line=$(grep -o "caught up by batch decoding (.*" "$LOG1" | head -1)
n=$(sed -n 's/.*; \([0-9]*\) large transactions streamed by the source while decoded.*/\1/p' <<<"$line")
u=$(sed -n 's/.*, \([0-9]*\) calls that streamed one again.*/\1/p' <<<"$line")
[[ -n $n && -n $u ]] || fail "1: the catch-up line does not count streamed transactions: $line"
((n >= 3)) || fail "1: $n transactions streamed, expected at least 3 (A, the update, the delete): $line"
((u >= 1)) || fail "1: no call streamed a transaction again: $line"
(($(sqlite3 "$SINK_DB" "SELECT count(*) FROM items WHERE note IN ('c', 'rolled back')") == 0)) ||
  fail "1: rows of a rolled-back transaction or savepoint reached the sink"
(($(sqlite3 "$SINK_DB" "SELECT count(*) FROM items") == $(pg_psql -c "SELECT count(*) FROM items"))) ||
  fail "1: row counts differ"
log "1: $n transactions streamed, $u calls streamed one again; sink equal ($(sqlite3 "$SINK_DB" "SELECT count(*) FROM items") rows)"
odsync_stop

log "2. the same backlog again; SIGKILL right after a call ended inside a streamed transaction"
backlog 1000000
LOG2=$TEST_TMP/two.log
odsync_start "$CONFIG" "$LOG2"
wait_for "grep -q 'ended inside a transaction that the source streams' '$LOG2'" 180 ||
  { tail -n 30 "$LOG2" >&2; fail "2: no call ended inside a streamed transaction"; }
odsync_kill9
LOG3=$TEST_TMP/three.log
odsync_start "$CONFIG" "$LOG3"
wait_for "grep -q 'caught up by batch decoding' '$LOG3'" 180 || { tail -n 30 "$LOG3" >&2; fail "2: catch-up after the kill did not end"; }
wait_equal 2
(($(sqlite3 "$SINK_DB" "SELECT count(*) FROM items WHERE note IN ('c', 'rolled back')") == 0)) ||
  fail "2: rows of a rolled-back transaction or savepoint reached the sink"
left=$(find "$TEST_TMP/state" -name '*.xact' | wc -l)
((left == 0)) || fail "2: $left spill files of streamed transactions left in the state directory"
log "2: equal after the kill; $(grep -o 'caught up by batch decoding (.*' "$LOG3" | head -c 300)"

log "3. live changes after the switch arrive by streaming"
pg_psql -c "INSERT INTO items SELECT g, 5, 'live' FROM generate_series(3000001, 3020000) g" >/dev/null
wait_equal 3
odsync_stop
log "all assertions passed"
