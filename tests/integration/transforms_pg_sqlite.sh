#!/usr/bin/env bash
# transforms_pg_sqlite.sh — PostgreSQL -> SQLite through filter + mask + pseudonymize, over the
# initial snapshot and the stream, with one SIGKILL in the stream.
#
# customers (default replica identity): filter "status IN ('active', 'vip') AND balance >= 100",
# email masked (style email), card masked (keep_last 4), ssn pseudonymized (prefix ssn_). orders
# (REPLICA IDENTITY FULL): filter "amount > 50", its key id and customer_id pseudonymized (a key
# column: allowed, deterministic). The workload inserts rows on both sides of the filters, moves rows
# into it (becoming inserts) and out of it (becoming deletes), updates pseudonymized values, changes
# an order's key and deletes rows in and out of the filter.
# Asserts: each sink table equals, row for row, the expected transformed rows computed in PostgreSQL
# with pgcrypto's hmac() (same key, same truncation) and string functions; the pseudonymized key
# columns are TEXT in the sink; no duplicated keys; the checkpoint is a pg: position; the HMAC key
# never appears in odsync's output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init transforms_pg_sqlite
pg_start tx
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
export ODSYNC_TX_KEY="tx-test-key-$RANDOM-0123456789abcdef"

pg_psql <<'SQL'
CREATE EXTENSION pgcrypto;
CREATE TABLE customers (id int PRIMARY KEY, email text, card text, status text, balance int, ssn text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int, note text);
ALTER TABLE orders REPLICA IDENTITY FULL;
INSERT INTO customers
  SELECT g, 'user' || g || '@example' || (g % 3) || '.com', lpad((4000000000000000 + g * 7919)::text, 16, '0'),
         (ARRAY['active', 'vip', 'closed', 'pending'])[g % 4 + 1], (g * 37) % 300, 'ssn-' || g
  FROM generate_series(1, 400) g;
INSERT INTO orders SELECT g, g % 400 + 1, (g * 13) % 120, 'order ' || g FROM generate_series(1, 600) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: tx
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.customers, public.orders] }
    transforms:
      - { type: filter, tables: [customers], where: "status IN ('active', 'vip') AND balance >= 100" }
      - { type: filter, tables: [orders], where: "amount > 50" }
    sink:
      type: sqlite
      path: $SINK_DB
      transforms:
        - { type: mask, tables: [customers], columns: [email], style: email }
        - { type: mask, tables: [customers], columns: [card], style: keep_last, keep: 4 }
        - { type: pseudonymize, tables: [customers], columns: [ssn], prefix: ssn_, key: "\${env:ODSYNC_TX_KEY}" }
        - { type: pseudonymize, tables: [orders], columns: [id, customer_id], key: "\${env:ODSYNC_TX_KEY}" }
YAML

tok() { echo "substr(encode(hmac(($1)::text, '$ODSYNC_TX_KEY', 'sha256'), 'hex'), 1, 16)"; }
want_customers() {
  pg_psql -c "SELECT id, left(split_part(email, '@', 1), 1) || repeat('*', length(split_part(email, '@', 1)) - 1)
                       || '@' || split_part(email, '@', 2),
                     repeat('*', length(card) - 4) || right(card, 4), status, balance, 'ssn_' || $(tok ssn)
              FROM customers WHERE status IN ('active', 'vip') AND balance >= 100 ORDER BY id"
}
got_customers() {
  sqlite3 -separator '|' "$SINK_DB" "SELECT id, email, card, status, balance, ssn FROM customers ORDER BY id"
}
want_orders() {
  pg_psql -c "SELECT $(tok id), $(tok customer_id), amount, note FROM orders WHERE amount > 50 ORDER BY 1"
}
got_orders() {
  sqlite3 -separator '|' "$SINK_DB" "SELECT id, customer_id, amount, note FROM orders ORDER BY id COLLATE BINARY"
}
equal() {
  [[ "$(want_customers)" == "$(got_customers 2>/dev/null)" ]] && [[ "$(want_orders)" == "$(got_orders 2>/dev/null)" ]]
}
wait_transformed_equal() {
  local deadline=$(($(date +%s) + $1))
  until equal; do
    if (($(date +%s) >= deadline)); then
      diff <(want_customers) <(got_customers) | head -20 >&2 || true
      diff <(want_orders) <(got_orders) | head -20 >&2 || true
      fail "$2: the sink does not hold the expected transformed rows after $1 s (diff above: < expected, > sink)"
    fi
    sleep 0.5
  done
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_tx 60
wait_transformed_equal 60 "after the snapshot"
n=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM customers")
m=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM orders")
[[ $n -gt 50 && $n -lt 400 && $m -gt 100 && $m -lt 600 ]] || fail "snapshot: $n customers, $m orders passed the filters (expected a part of each)"
log "snapshot: $n of 400 customers and $m of 600 orders passed the filters, transformed as expected"

workload() {
  for i in $(seq 1 30); do
    pg_psql <<SQL
BEGIN;
INSERT INTO customers VALUES (1000 + $i, 'new$i@example.org', '55555555000$((1000 + i))', 'active', 100 + $i, 'ssn-new-$i'),
                             (2000 + $i, 'out$i@example.org', '5555', 'closed', 500, 'ssn-out-$i');
UPDATE customers SET status = 'active' WHERE id = $((i * 4 + 3));         -- closed -> active: into the filter when balance >= 100
UPDATE customers SET balance = 5 WHERE id = $((i * 4 + 1));              -- out of the filter
UPDATE customers SET ssn = 'ssn-changed-$i', email = 'changed$i@x.io' WHERE id = $((i * 4 + 2));
INSERT INTO orders VALUES (5000 + $i, $i, 40 + $i * 2, 'new order $i');
UPDATE orders SET amount = 99 WHERE id = $((i * 7));                     -- into the filter (full old row)
UPDATE orders SET amount = 1 WHERE id = $((i * 7 + 1));                  -- out of it
COMMIT;
SQL
    if ((i % 10 == 0)); then
      pg_psql -c "UPDATE orders SET id = id + 100000 WHERE id = $((i * 7 + 3))"
      pg_psql -c "DELETE FROM customers WHERE id IN ($((i * 4)), $((i * 4 + 5)))"
      pg_psql -c "DELETE FROM orders WHERE id IN ($((i * 7 + 4)), $((i * 7 + 5)))"
    fi
    sleep 0.05
  done
}

workload_start workload
sleep 1
odsync_kill9
log "SIGKILL during the workload"
odsync_start "$CONFIG" "$LOG"
workload_wait
wait_transformed_equal 60 "after the stream"
odsync_stop
log "stream: the sink equals the expected transformed rows"

types=$(sqlite3 "$SINK_DB" "SELECT group_concat(name || ':' || type, ',') FROM pragma_table_info('orders')")
[[ "$types" == "id:TEXT,customer_id:TEXT,amount:INTEGER,note:TEXT" ]] || fail "sink orders has columns '$types'; pseudonymized id and customer_id should be TEXT"
d=$(sqlite3 "$SINK_DB" "SELECT (SELECT count(*) - count(DISTINCT id) FROM customers) + (SELECT count(*) - count(DISTINCT id) FROM orders)")
[[ "$d" == 0 ]] || fail "duplicated keys in the sink"
text=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'tx'")
[[ "$text" =~ ^pg:[0-9A-F]+/[0-9A-F]+$ ]] || fail "checkpoint holds '$text', expected pg:X/Y"
! grep -qF "$ODSYNC_TX_KEY" "$LOG" || fail "the HMAC key appears in odsync's output"
grep -q "streaming from" "$LOG" || fail "odsync never streamed"
log "all assertions passed"
