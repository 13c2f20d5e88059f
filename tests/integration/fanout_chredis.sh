#!/usr/bin/env bash
# fanout_chredis.sh — one pipeline, one replication slot, two sinks: ClickHouse (`dw`) and Redis
# (`cache`, hash mode). A mixed workload (inserts, updates, deletes, key changes, TOAST-unchanged
# updates) runs for ~8 s.
#
# Asserts: both sinks equal the source row for row (ClickHouse view, Redis hashes); each keeps its
# own checkpoint under <pipeline>.<sink> (ClickHouse key shop.dw, Redis field shop.cache), both
# "pg:X/Y"; SIGTERM exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init fanout_chredis
test_extra_cleanup() {
  ch_cleanup_all
  redis_cleanup_all
}
pg_start shop
ch_start || fail "clickhouse-server did not start"
redis_start || fail "redis-server did not start"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), paid bool);
CREATE TABLE documents (id int PRIMARY KEY, title text, body text);
INSERT INTO orders SELECT g, 'pre ' || g, g * 0.5, false FROM generate_series(1, 300) g;
INSERT INTO documents SELECT d, 'doc ' || d, (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 3) d;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.orders, public.documents] }
    sinks:
      - { name: dw, type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: dw, user: odsync, password: "\${env:CH_PASSWORD}" }
      - { name: cache, type: redis, port: $REDIS_PORT, user: odsync, password: "\${env:REDIS_PASSWORD}", prefix: c }
    batch: { max_rows: 20000, max_delay_ms: 200 }
YAML

compare_all() {
  ch_compare_table orders "SELECT id, note, amount, paid::int FROM orders ORDER BY id" \
    "SELECT id, note, amount, paid FROM dw.orders_current ORDER BY id" &&
  ch_compare_table documents "SELECT id, title, body FROM documents ORDER BY id" \
    "SELECT id, title, body FROM dw.documents_current ORDER BY id" &&
  redis_compare orders "SELECT 'c:orders:' || id, id, note, amount, paid FROM orders" 'c:orders:*' id note amount paid &&
  redis_compare documents "SELECT 'c:documents:' || id, id, title, body FROM documents" 'c:documents:*' id title body
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
wait_for compare_all 60 || { compare_all || true; fail "the sinks do not hold the initial snapshot after 60 s"; }
log "initial snapshot equal in both sinks"

workload() {
  local end=$((SECONDS + 8)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
BEGIN;
INSERT INTO orders SELECT 1000 * $it + g, 'it $it', g, true FROM generate_series(1, 30) g;
UPDATE orders SET paid = NOT paid, amount = amount + 1 WHERE id % 23 = $it % 23;
DELETE FROM orders WHERE id = 1000 * ($it - 1) + 3;
UPDATE orders SET id = id + 100000000 WHERE id = (SELECT min(id) FROM orders WHERE id < 100000000);
COMMIT;
UPDATE documents SET title = 'doc ' || id || ' v$it' WHERE id = 1 + $it % 3;
SQL
    sleep 0.1
  done
  echo "workload: $it iterations"
}
workload_start workload
workload_wait
wait_for compare_all 90 || { compare_all || true; fail "the sinks differ from the source 90 s after the workload"; }
odsync_stop
ch_pos=$(ch_query "SELECT text FROM dw._odsync_checkpoint FINAL WHERE key = 'shop.dw'")
rd_pos=$(rcli HGET c:_odsync:checkpoint shop.cache)
[[ $ch_pos == pg:*/* ]] || fail "ClickHouse checkpoint shop.dw is '$ch_pos'"
[[ $rd_pos == pg:*/* ]] || fail "Redis checkpoint shop.cache is '$rd_pos'"
log "checkpoints: dw $ch_pos, cache $rd_pos; all assertions passed"
