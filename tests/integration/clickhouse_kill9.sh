#!/usr/bin/env bash
# clickhouse_kill9.sh — exactly-once into ClickHouse across crashes and a server outage: while a
# ~30 s workload runs (inserts, updates, deletes, key changes, TOAST-unchanged updates), odsync is
# killed with SIGKILL 4 times at random moments and restarted, then clickhouse-server itself is
# stopped for 20 s mid-load and started again while odsync keeps running (it retries).
#
# Asserts:
#   - after each kill, the slot's confirmed_flush_lsn is never ahead of the checkpoint ClickHouse
#     holds (the source is acknowledged only for what the sink has), and that checkpoint never
#     goes backwards;
#   - odsync survives the 20 s outage (still running, no exit) and catches up afterwards;
#   - at the end every table's view equals the source row for row, FINAL shows each key once
#     (replayed batches collapsed: same versions), and SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_kill9
test_extra_cleanup() { ch_cleanup_all; }
pg_start shop
ch_start || fail "clickhouse-server did not start"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
DB=shop_k9
SLOT=odsync_shop

pg_psql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, note text, amount numeric(12,2), paid bool);
CREATE TABLE documents (id int PRIMARY KEY, title text, version int, body text);
CREATE TABLE items (a int, b text, qty int, PRIMARY KEY (a, b));
INSERT INTO documents SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 5) d;
INSERT INTO items SELECT g, 'k' || g, g FROM generate_series(1, 200) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.orders, public.documents, public.items], reconnect_max_ms: 1000 }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: $DB, user: odsync, password: "\${env:CH_PASSWORD}" }
    batch: { max_rows: 50000, max_delay_ms: 300 }
YAML

compare_all() {
  ch_compare_table orders "SELECT id, customer_id, note, amount, paid::int FROM orders ORDER BY id" \
    "SELECT id, customer_id, note, amount, paid FROM $DB.orders_current ORDER BY id" &&
  ch_compare_table documents "SELECT id, title, version, body FROM documents ORDER BY id" \
    "SELECT id, title, version, body FROM $DB.documents_current ORDER BY id" &&
  ch_compare_table items "SELECT a, b, qty FROM items ORDER BY a, b" "SELECT a, b, qty FROM $DB.items_current ORDER BY a, b"
}

checkpoint() { ch_query "SELECT position FROM $DB._odsync_checkpoint FINAL WHERE key = 'shop'" 2>/dev/null || true; }

odsync_start "$CONFIG" "$LOG"
wait_slot_active "$SLOT" 60
slot_created=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")")

workload() {
  local end=$((SECONDS + 30)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    {
      cat <<SQL
BEGIN;
INSERT INTO orders SELECT 100 * $it + g, $it, 'it $it', $it * 0.5, false FROM generate_series(1, 40) g;
UPDATE orders SET paid = NOT paid, amount = amount + 1 WHERE id % 37 = $it % 37;
DELETE FROM orders WHERE id = 100 * ($it - 1) + 5;
COMMIT;
UPDATE documents SET title = 'doc ' || id || ' v$it', version = version + 1 WHERE id = 1 + $it % 5;
UPDATE items SET a = a + 1000 WHERE a = (SELECT min(a) FROM items WHERE a < 1000);
UPDATE items SET qty = qty + 1 WHERE a % 11 = $it % 11;
SQL
      if ((it % 10 == 0)); then
        echo "INSERT INTO orders SELECT 10000000 + 10000 * $it + g, g, 'bulk', g, true FROM generate_series(1, 3000) g;"
        echo "UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1500)) WHERE id = 1 + $it % 5;"
      fi
    } | pg_psql >/dev/null || { echo "workload: psql failed in iteration $it"; return 1; }
    sleep 0.1
  done
  echo "workload: $it iterations"
}
workload_start workload

last_cp=0
check_ack_not_ahead() {
  local what=$1 confirmed cp
  wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'\") == f ]]" 30 ||
    fail "$what: slot still active 30 s after odsync died"
  confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")")
  cp=$(checkpoint)
  if [[ -z "$cp" ]]; then
    ((confirmed == slot_created)) || fail "$what: no checkpoint in ClickHouse, yet the slot was acknowledged to $confirmed"
  else
    ((confirmed <= cp)) || fail "$what: slot confirmed_flush_lsn $confirmed is ahead of the ClickHouse checkpoint $cp"
    ((cp >= last_cp)) || fail "$what: the checkpoint went backwards ($last_cp -> $cp)"
    last_cp=$cp
  fi
  log "$what: confirmed_flush $confirmed <= checkpoint ${cp:-none}"
}

for k in 1 2 3 4; do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.5 + r / 32767 * 2 }')"
  odsync_running || fail "odsync exited on its own before kill $k"
  odsync_kill9
  check_ack_not_ahead "kill $k"
  odsync_start "$CONFIG" "$LOG"
done

sleep 1
log "stopping clickhouse-server for 20 s while the workload runs"
ch_stop_server
sleep 20
odsync_running || fail "odsync exited while ClickHouse was down (it must retry)"
ch_restart_server || fail "clickhouse-server did not start again"
log "clickhouse-server is back"
workload_wait
wait_for compare_all 120 || { compare_all || true; fail "ClickHouse not equal to the source 120 s after the workload"; }
odsync_running || fail "odsync is not running after catching up"
grep -q "clickhouse sink.*connecting\|clickhouse sink.*Couldn't connect\|clickhouse sink.*onnect" "$LOG" ||
  fail "no connection error was logged during the outage (was the server really down?)"

dups=$(ch_query "SELECT count() - uniqExact(id) FROM $DB.orders FINAL")
[[ $dups == 0 ]] || fail "orders: $dups duplicate keys under FINAL"
dups=$(ch_query "SELECT count() - uniqExact(a, b) FROM $DB.items FINAL")
[[ $dups == 0 ]] || fail "items: $dups duplicate keys under FINAL"
rows=$(ch_query "SELECT count() FROM $DB.orders")
live=$(pg_psql -c "SELECT count(*) FROM orders")
odsync_stop
check_ack_not_ahead "after SIGTERM"
log "orders: $live rows at the source, $rows row versions stored; all assertions passed"
