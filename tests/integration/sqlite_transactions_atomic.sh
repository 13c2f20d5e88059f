#!/usr/bin/env bash
# sqlite_transactions_atomic.sh — a reader of the SQLite sink never sees half a source transaction.
#
# Bank transfers: 50 accounts of 1000 each are created in one transaction, then thousands of
# transactions each move an amount between accounts (two or more UPDATEs per transaction).
# While they stream, a reader samples the sink's SUM(balance) and COUNT(*) continuously; every
# sample must be either the empty table or exactly (50 rows, 50000). At the end the sink equals
# the source (od_compare).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sqlite_transactions_atomic
pg_start bank
SINK_DB=$TEST_TMP/bank.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(14,2) NOT NULL, updated_at timestamptz);
CREATE OR REPLACE PROCEDURE transfers(n int) LANGUAGE plpgsql AS $$
DECLARE a int; b int; c int; amt numeric;
BEGIN
  FOR i IN 1..n LOOP
    a := 1 + floor(random() * 50)::int;
    b := 1 + (a + floor(random() * 48)::int) % 50;
    amt := round((random() * 100)::numeric, 2);
    UPDATE accounts SET balance = balance - amt, updated_at = now() WHERE id = a;
    UPDATE accounts SET balance = balance + amt, updated_at = now() WHERE id = b;
    IF i % 7 = 0 THEN  -- a three-way transfer now and then
      c := 1 + (b + 1) % 50;
      UPDATE accounts SET balance = balance - 1 WHERE id = b;
      UPDATE accounts SET balance = balance + 1 WHERE id = c;
    END IF;
    COMMIT;
  END LOOP;
END $$;
SQL
write_config "$CONFIG" bank "public.accounts"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_bank 60

pg_psql -c "INSERT INTO accounts SELECT g, 1000, now() FROM generate_series(1, 50) g"
( for _ in 1 2 3 4; do pg_psql -c "CALL transfers(1500)" >/dev/null; done ) &
WORKLOAD=$!

# The reader: one sqlite3 process reading in a loop (a fresh read transaction per statement).
READER_OUT=$TEST_TMP/reader.txt
SQL_LOOP=$TEST_TMP/reader.sql
for _ in $(seq 1 4000); do
  echo "SELECT count(*) || ' ' || coalesce(sum(balance), 0) FROM accounts;"
done >"$SQL_LOOP"
samples=0
while kill -0 "$WORKLOAD" 2>/dev/null; do
  if [[ -f "$SINK_DB" ]]; then
    sqlite3 -cmd ".timeout 5000" "$SINK_DB" <"$SQL_LOOP" >>"$READER_OUT" 2>/dev/null || true
  fi
  sleep 0.05
done
wait "$WORKLOAD"
wait_equal 90

samples=$(grep -c . "$READER_OUT" || true)
bad=$(grep -v -x -e '0 0' -e '50 50000' -e '50 50000.0' "$READER_OUT" | sort | uniq -c | head -5 || true)
log "reader took $samples samples"
((samples > 1000)) || fail "the reader took only $samples samples"
grep -q -x -e '50 50000' -e '50 50000.0' "$READER_OUT" || fail "the reader never saw the accounts"
[[ -z "$bad" ]] || fail "the reader saw a broken invariant (count, sum): $bad"
odsync_stop
