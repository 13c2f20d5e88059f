#!/usr/bin/env bash
# redis_kill9.sh — exactly-once into Redis across crashes and a server outage: while a ~30 s
# workload runs (inserts, updates, deletes, key changes, TOAST-unchanged updates; one table in
# stream mode), odsync is killed with SIGKILL 4 times at random moments and restarted, then
# redis-server is shut down for 20 s mid-load and started again (AOF, appendfsync always) while
# odsync keeps running (it retries).
#
# Asserts:
#   - after each kill, the slot's confirmed_flush_lsn is never ahead of the checkpoint Redis holds,
#     and that checkpoint never goes backwards;
#   - odsync survives the outage and catches up; every hash then equals its source row, with no
#     extra and no missing keys;
#   - the stream holds exactly one entry per source change of its table (none lost in a kill or the
#     outage, none written twice), with strictly increasing ids;
#   - SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init redis_kill9
test_extra_cleanup() { redis_cleanup_all; }
pg_start shop
redis_start || fail "redis-server did not start"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SLOT=odsync_shop

pg_psql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, note text, amount numeric(12,2), paid bool);
CREATE TABLE documents (id int PRIMARY KEY, title text, version int, body text);
CREATE TABLE items (a int, b text, qty int, PRIMARY KEY (a, b));
CREATE TABLE events (id bigserial PRIMARY KEY, it int, n int);
INSERT INTO documents SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 5) d;
INSERT INTO items SELECT g, 'k' || g, g FROM generate_series(1, 200) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.orders, public.documents, public.items, public.events], reconnect_max_ms: 1000 }
    sink: { type: redis, port: $REDIS_PORT, user: odsync, password: "\${env:REDIS_PASSWORD}", prefix: k9, modes: [public.events=stream] }
    batch: { max_rows: 5000, max_delay_ms: 50 }
YAML

compare_all() {
  redis_compare orders "SELECT 'k9:orders:' || id, id, customer_id, note, amount, paid FROM orders" 'k9:orders:*' \
    id customer_id note amount paid &&
  redis_compare documents "SELECT 'k9:documents:' || id, id, title, version, body FROM documents" 'k9:documents:*' \
    id title version body &&
  redis_compare items "SELECT 'k9:items:' || a || ':' || b, a, b, qty FROM items" 'k9:items:*' a b qty
}
# The checkpoint ("pg:X/Y") as a decimal LSN; empty when there is none.
checkpoint() {
  local t
  t=$(rcli HGET k9:_odsync:checkpoint shop 2>/dev/null || true)
  [[ -n "$t" ]] && lsn_to_int "${t#pg:}"
  return 0
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active "$SLOT" 60
slot_created=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")")

# events: every iteration inserts 3 rows and updates one; every 10th deletes one.
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
INSERT INTO events (it, n) SELECT $it, g FROM generate_series(1, 3) g;
COMMIT;
UPDATE documents SET title = 'doc ' || id || ' v$it', version = version + 1 WHERE id = 1 + $it % 5;
UPDATE items SET a = a + 1000 WHERE a = (SELECT min(a) FROM items WHERE a < 1000);
UPDATE items SET qty = qty + 1 WHERE a % 11 = $it % 11;
UPDATE events SET n = -n WHERE id = (SELECT max(id) FROM events);
SQL
      if ((it % 10 == 0)); then
        echo "INSERT INTO orders SELECT 10000000 + 10000 * $it + g, g, 'bulk', g, true FROM generate_series(1, 3000) g;"
        echo "UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1500)) WHERE id = 1 + $it % 5;"
        echo "DELETE FROM events WHERE id = (SELECT min(id) FROM events);"
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
    ((confirmed == slot_created)) || fail "$what: no checkpoint in Redis, yet the slot was acknowledged to $confirmed"
  else
    ((confirmed <= cp)) || fail "$what: slot confirmed_flush_lsn $confirmed is ahead of the Redis checkpoint $cp"
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
log "stopping redis-server for 20 s while the workload runs"
redis_stop_server
sleep 20
odsync_running || fail "odsync exited while Redis was down (it must retry)"
redis_restart_server || fail "redis-server did not start again"
log "redis-server is back"
workload_wait
iterations=$(sed -n 's/^workload: \([0-9]*\) iterations/\1/p' "$WORKLOAD_LOG")
wait_for compare_all 120 || { compare_all || true; fail "Redis not equal to the source 120 s after the workload"; }
odsync_running || fail "odsync is not running after catching up"
grep -q "redis sink" "$LOG" || fail "no Redis error was logged during the outage (was the server really down?)"

expected=$((iterations * 4 + iterations / 10))
wait_for "[[ \$(rcli XLEN k9:events) == $expected ]]" 30 ||
  fail "stream k9:events has $(rcli XLEN k9:events) entries, expected $expected (one per change of events)"
ids=$(rcli XRANGE k9:events - + | awk '/^[0-9]+-[0-9]+$/')
[[ "$ids" == "$(echo "$ids" | sort -t- -k1,1n -k2,2n -u)" ]] || fail "stream ids are not strictly increasing"
odsync_stop
check_ack_not_ahead "after SIGTERM"
log "$iterations iterations, $expected stream entries; all assertions passed"
