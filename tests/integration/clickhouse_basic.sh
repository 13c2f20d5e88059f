#!/usr/bin/env bash
# clickhouse_basic.sh — PostgreSQL -> ClickHouse (clickhouse-server from Debian, HTTP interface,
# user/password from ${env:CH_PASSWORD}, gzip request bodies): rows that exist before the first
# start are copied by the initial snapshot, then a mixed workload streams for ~12 s: inserts,
# updates, deletes, key changes (composite key), updates that leave TOASTed values unchanged (with
# and without REPLICA IDENTITY FULL), a truncate, and schema changes (ADD, RENAME, DROP COLUMN,
# int -> bigint and numeric(10,2) -> numeric(14,2) widening).
#
# Asserts:
#   - every table's view <table>_current equals the source row for row (keys, values, NULLs,
#     numeric scale, timestamps, bytea bytes, the TOASTed bodies), compared as TabSeparated text;
#   - SELECT ... FINAL on each base table shows each key once, and no key twice among live rows;
#   - the target tables are ReplacingMergeTree(_odsync_version) ordered by the key;
#   - the ClickHouse password never appears in odsync's output;
#   - SIGTERM makes odsync exit 0; the checkpoint row holds a position.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"

test_init clickhouse_basic
test_extra_cleanup() { ch_cleanup_all; }
pg_start shop
ch_start || fail "clickhouse-server did not start"
log "clickhouse-server $(ch_query 'SELECT version()') up in ${CH_START_SECONDS}s on port $CH_HTTP_PORT"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
DB=shop_ch

pg_psql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, note text, amount numeric(10,2), paid bool,
  created_at timestamptz, score float8, payload bytea, day date);
CREATE TABLE documents (id int PRIMARY KEY, title text, version int, body text);
CREATE TABLE docs_full (id int PRIMARY KEY, title text, body text);
ALTER TABLE docs_full REPLICA IDENTITY FULL;
CREATE TABLE items (a int, b text, qty int, PRIMARY KEY (a, b));
CREATE TABLE scratch (id int PRIMARY KEY, v text);
INSERT INTO orders SELECT g, g % 7, 'pre ' || g, g * 0.25, g % 2 = 0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 min',
  g / 4.0, '\x00ff0a09', '2024-02-01'::date + g FROM generate_series(1, 500) g;
INSERT INTO documents SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 4) d;
INSERT INTO docs_full SELECT d, 'full ' || d, (SELECT string_agg(md5('f' || d || g), '') FROM generate_series(1, 2000) g)
  FROM generate_series(1, 4) d;
INSERT INTO items SELECT g, 'k' || g, g FROM generate_series(1, 50) g;
INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 20) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.orders, public.documents, public.docs_full, public.items, public.scratch] }
    sink:
      type: clickhouse
      url: http://127.0.0.1:$CH_HTTP_PORT
      database: $DB
      user: odsync
      password: \${env:CH_PASSWORD}
      compression: gzip
    batch: { max_rows: 20000, max_delay_ms: 200 }
YAML

compare_all() {
  ch_compare_table orders \
    "SELECT id, customer_id, note, amount, paid::int, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), score, upper(encode(payload, 'hex')), day FROM orders ORDER BY id" \
    "SELECT id, customer_id, note, amount, paid, created_at, score, hex(payload), day FROM $DB.orders_current ORDER BY id" &&
  ch_compare_table documents "SELECT id, title, version, body FROM documents ORDER BY id" \
    "SELECT id, title, version, body FROM $DB.documents_current ORDER BY id" &&
  ch_compare_table docs_full "SELECT id, title, body FROM docs_full ORDER BY id" \
    "SELECT id, title, body FROM $DB.docs_full_current ORDER BY id" &&
  ch_compare_table items "SELECT a, b, qty FROM items ORDER BY a, b" "SELECT a, b, qty FROM $DB.items_current ORDER BY a, b" &&
  ch_compare_table scratch "SELECT id, v FROM scratch ORDER BY id" "SELECT id, v FROM $DB.scratch_current ORDER BY id"
}

wait_ch_equal() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_all 2>&1); then return 0; fi
    odsync_running || fail "odsync exited while waiting for the sink to catch up"
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "ClickHouse not equal to the source after ${timeout}s"
    fi
    sleep 1
  done
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
wait_ch_equal 60
log "initial snapshot equal"

workload() {
  # At least 16 iterations (the DDL below is tied to iteration numbers), whatever the machine's load.
  local end=$((SECONDS + 12)) it=0
  while ((SECONDS < end || it < 16)); do
    it=$((it + 1))
    {
      cat <<SQL
BEGIN;
INSERT INTO orders (id, customer_id, amount, paid, created_at, payload, day) SELECT 1000 * $it + g, $it, $it * 0.5, $it % 2 = 1, '2024-03-01 12:00:00+02'::timestamptz + g * interval '1 s', NULL, NULL FROM generate_series(1, 20) g;
UPDATE orders SET paid = NOT paid, amount = amount + 1 WHERE id % 50 = $it % 50;
DELETE FROM orders WHERE id = 1000 * ($it - 1) + 7;
COMMIT;
UPDATE documents SET title = 'doc ' || id || ' v' || $it, version = version + 1 WHERE id = 1 + $it % 4;
UPDATE docs_full SET title = 'full ' || id || ' v' || $it WHERE id = 1 + $it % 4;
UPDATE items SET a = a + 1000 WHERE a = (SELECT min(a) FROM items WHERE a < 1000);
UPDATE items SET qty = qty + 1 WHERE a % 5 = $it % 5;
INSERT INTO scratch VALUES (100 + $it, E'it $it\\ttab\\nline\\\\ back''quote');
SQL
      if ((it % 5 == 0)); then
        echo "UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1500)) WHERE id = 1 + $it % 4;"
        echo "DELETE FROM items WHERE a % 7 = $it % 7;"
      fi
      if ((it == 8)); then echo "TRUNCATE scratch; INSERT INTO scratch VALUES (1, 'after truncate');"; fi
      if ((it == 4)); then echo "ALTER TABLE orders ADD COLUMN region text DEFAULT 'eu';"; fi
      if ((it == 6)); then echo "ALTER TABLE orders RENAME COLUMN note TO remark; ALTER TABLE orders ALTER COLUMN amount TYPE numeric(14,2);"; fi
      if ((it == 9)); then echo "ALTER TABLE orders DROP COLUMN score;"; fi
      # A type change rewrites the table (the ADD COLUMN default is then no longer a missing value
      # in the catalog): well after the ADD has reached the sink.
      if ((it == 14)); then echo "ALTER TABLE orders ALTER COLUMN customer_id TYPE bigint;"; fi
    } | pg_psql >/dev/null || { echo "workload: psql failed in iteration $it"; return 1; }
    sleep 0.2
  done
  echo "workload: $it iterations"
}
workload_start workload
workload_wait

compare_all() {
  ch_compare_table orders \
    "SELECT id, customer_id, remark, amount, paid::int, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), upper(encode(payload, 'hex')), day, region FROM orders ORDER BY id" \
    "SELECT id, customer_id, remark, amount, paid, created_at, hex(payload), day, region FROM $DB.orders_current ORDER BY id" &&
  ch_compare_table documents "SELECT id, title, version, body FROM documents ORDER BY id" \
    "SELECT id, title, version, body FROM $DB.documents_current ORDER BY id" &&
  ch_compare_table docs_full "SELECT id, title, body FROM docs_full ORDER BY id" \
    "SELECT id, title, body FROM $DB.docs_full_current ORDER BY id" &&
  ch_compare_table items "SELECT a, b, qty FROM items ORDER BY a, b" "SELECT a, b, qty FROM $DB.items_current ORDER BY a, b" &&
  ch_compare_table scratch "SELECT id, v FROM scratch ORDER BY id" "SELECT id, v FROM $DB.scratch_current ORDER BY id"
}
wait_ch_equal 90
log "streamed workload equal"

for t in orders documents docs_full scratch; do
  dups=$(ch_query "SELECT count() - uniqExact(id) FROM $DB.$t FINAL")
  [[ $dups == 0 ]] || fail "$t: $dups duplicate keys under FINAL"
done
dups=$(ch_query "SELECT count() - uniqExact(a, b) FROM $DB.items FINAL")
[[ $dups == 0 ]] || fail "items: $dups duplicate keys under FINAL"
engine=$(ch_query "SELECT engine_full FROM system.tables WHERE database = '$DB' AND name = 'items'")
[[ $engine == *"ReplacingMergeTree(_odsync_version)"*"ORDER BY (a, b)"* ]] || fail "items engine: $engine"
types=$(ch_query "SELECT name, type FROM system.columns WHERE database = '$DB' AND table = 'orders' ORDER BY name FORMAT TSV" | tr '\t\n' ' ')
log "orders columns: $types"
[[ $types == *"amount Nullable(Decimal(14, 2))"* && $types == *"customer_id Nullable(Int64)"* && $types == *"id Int64"* && $types != *score* ]] ||
  fail "orders columns after the schema changes: $types"
deleted=$(ch_query "SELECT count() FROM $DB.orders FINAL WHERE _odsync_deleted = 1")
((deleted > 0)) || fail "no deleted-flag rows in orders (deletes were not written as rows)"
if grep -qF "$CH_PASSWORD" "$LOG"; then fail "the ClickHouse password appears in odsync's output"; fi
odsync_stop
pos=$(ch_query "SELECT text FROM $DB._odsync_checkpoint FINAL WHERE key = 'shop'")
[[ $pos == pg:*/* ]] || fail "the checkpoint row of pipeline shop holds '$pos', expected pg:X/Y"
log "checkpoint $pos; $deleted deleted-flag rows; all assertions passed"
