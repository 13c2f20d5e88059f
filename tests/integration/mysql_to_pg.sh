#!/usr/bin/env bash
# mysql_to_pg: MariaDB -> PostgreSQL sink. Every type of docs/TYPES.md's MariaDB section except the
# zero dates PostgreSQL cannot hold: half the rows exist before odsync starts (initial snapshot),
# half come through the binlog; then a mixed workload on tables with and without a key, one SIGKILL
# and restart, an ALTER TABLE ADD COLUMN and a TRUNCATE. The PostgreSQL tables odsync creates must
# equal MariaDB row for row (od_compare_my --pg) and have the mapped column types.
set -euo pipefail
source "$(dirname "$0")/../env/common.sh"
source "$(dirname "$0")/../env/pg.sh"
source "$(dirname "$0")/../env/mariadb.sh"
test_init mysql_to_pg

OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"
FIX=$ODSYNC_SOURCE_DIR/tests/fixtures/binlog

pg_start target
PG_DSN=$(pg_dsn target)
my_start shop
my_sql <"$FIX/schema.sql"
my_sql -e "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40), amount DECIMAL(12,2), updated DATETIME(6));
           CREATE TABLE events (kind VARCHAR(20), n INT);"
# The fixture statements without the one that writes zero and partial dates (PostgreSQL has none).
awk '/^INSERT INTO t_time VALUES \(2,/ { skip = 1 } !skip { print } /;$/ { skip = 0 }' "$FIX/workload.sql" |
  grep -v TRUNCATE >"$TEST_TMP/types.sql"
grep -q "0000-00-00" "$TEST_TMP/types.sql" && fail "zero dates left in the PostgreSQL type workload"
n=$(grep -c ';$' "$TEST_TMP/types.sql")
head -n "$(grep -n ';$' "$TEST_TMP/types.sql" | sed -n "$((n / 2))p" | cut -d: -f1)" "$TEST_TMP/types.sql" >"$TEST_TMP/before.sql"
tail -n "+$(($(wc -l <"$TEST_TMP/before.sql") + 1))" "$TEST_TMP/types.sql" >"$TEST_TMP/after.sql"
{ echo "SET SESSION sql_mode='';"; cat "$TEST_TMP/before.sql"; } | my_sql

cat >"$TEST_TMP/odsync.yml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: mysql, dsn: "$(my_dsn)" }
    sink: { type: postgres, dsn: "$PG_DSN" }
YAML

compare_my() { "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --pg "$PG_DSN" "$@"; }
wait_equal_my() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_my 2>&1); then
      echo "$out"
      return 0
    fi
    odsync_running || fail "odsync exited; compare said: $out"
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "PostgreSQL not equal to MariaDB after ${timeout}s"; }
    sleep 1
  done
}

log "snapshot, then the stream"
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
{ echo "SET SESSION sql_mode='';"; cat "$TEST_TMP/after.sql"; } | my_sql
wait_equal_my 60
grep -q "initial snapshot done" "$ODSYNC_LOG" || fail "no initial snapshot"

types=$(pg_psql -d target -c "SELECT string_agg(column_name || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
  FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = ('shop.' || c.table_name)::regclass
   AND a.attname = c.column_name WHERE c.table_schema = 'shop' AND c.table_name = 't_int'")
log "shop.t_int in PostgreSQL: $types"
[[ "$types" == *"tiu smallint"*"siu integer"*"iu bigint"*"biu numeric(20,0)"* ]] || fail "unexpected column types: $types"
dtypes=$(pg_psql -d target -c "SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
  WHERE attrelid = 'shop.t_time'::regclass AND attnum > 0")
[[ "$dtypes" == "integer, date, interval, interval, interval, timestamp(0) without time zone, timestamp(2) without time zone, timestamp(6) without time zone, timestamp(0) with time zone, timestamp(4) with time zone, smallint" ]] ||
  fail "unexpected t_time types: $dtypes"

log "mixed workload, SIGKILL, restart"
workload() {
  local i
  for i in $(seq 1 200); do
    echo "BEGIN; INSERT INTO orders VALUES ($i, 'c$((i % 7))', $i.25, NOW(6)); INSERT INTO events VALUES ('e', $i), ('e', $i);
      UPDATE orders SET amount = amount * 2 WHERE id = $((i - 3)); DELETE FROM events WHERE n = $((i - 5)) LIMIT 1; COMMIT;"
    ((i % 50 == 0)) && sleep 0.3
  done | my_sql
}
workload_start workload
sleep 0.6
kill -0 "$WORKLOAD_PID" 2>/dev/null || fail "the workload ended before the SIGKILL (make it longer)"
odsync_kill9
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
workload_wait
my_sql -e "ALTER TABLE orders ADD COLUMN note VARCHAR(10); UPDATE orders SET note = 'n' WHERE id < 20; TRUNCATE TABLE t_nokey;"
wait_equal_my 90
odsync_stop
