#!/usr/bin/env bash
# mysql_ddl: schema changes of a MariaDB source reach the SQLite sink. With binlog_row_metadata=FULL
# every row event carries its own column names, so odsync replays, after a restart, rows written
# before and after ADD COLUMN (in the middle), DROP COLUMN and a widening MODIFY, each under its own
# shape; the sink ends equal to MariaDB. With the default MINIMAL the column facts come from
# information_schema, which only knows the newest shape: replaying rows from before a DROP COLUMN
# stops with an error that names the table and binlog_row_metadata=FULL.
set -euo pipefail
source "$(dirname "$0")/../env/common.sh"
source "$(dirname "$0")/../env/pg.sh"
source "$(dirname "$0")/../env/mariadb.sh"
test_init mysql_ddl

OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"

my_start shop
SINK_DB=$TEST_TMP/sink.db
my_sql -e "SET GLOBAL binlog_row_metadata = FULL"
my_sql -e "CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(10), c DECIMAL(5,2));
           INSERT INTO t VALUES (1, 10, 'one', 1.10), (2, 20, 'two', 2.20);"

cat >"$TEST_TMP/odsync.yml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: mysql, dsn: "$(my_dsn)" }
    sink: { type: sqlite, path: $SINK_DB }
YAML

compare_my() { "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --sqlite "$SINK_DB" "$@"; }
wait_equal_my() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_my 2>&1); then
      echo "$out"
      return 0
    fi
    odsync_running || fail "odsync exited; compare said: $out"
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sink not equal to MariaDB after ${timeout}s"; }
    sleep 1
  done
}

log "FULL metadata: changes of shape while odsync is stopped, replayed after the restart"
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
wait_equal_my 60
odsync_stop
my_sql -e "INSERT INTO t VALUES (3, 30, 'three', 3.30);
           ALTER TABLE t ADD COLUMN d DATE AFTER id;
           INSERT INTO t VALUES (4, '2024-04-04', 40, 'four', 4.40);
           UPDATE t SET d = '2024-01-01', a = a + 1 WHERE id = 1;
           ALTER TABLE t DROP COLUMN a;
           INSERT INTO t VALUES (5, '2024-05-05', 'five', 5.50);
           UPDATE t SET b = 'TWO' WHERE id = 2;
           ALTER TABLE t MODIFY c DECIMAL(9,2);
           INSERT INTO t VALUES (6, NULL, 'six', 1234567.89);
           DELETE FROM t WHERE id = 3;"
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
wait_equal_my 60
for change in "column d date added" "column a dropped"; do
  grep -q "$change" "$ODSYNC_LOG" || fail "schema change '$change' not reported"
done
[[ $(sqlite3 "$SINK_DB" "SELECT c FROM \"shop.t\" WHERE id = 6") == "1234567.89" ]] || fail "widened DECIMAL value wrong"
odsync_stop

log "MINIMAL metadata: replaying rows from before a DROP COLUMN is a clear error"
my_sql -e "SET GLOBAL binlog_row_metadata = MINIMAL"
my_sql -e "INSERT INTO t VALUES (7, NULL, 'seven', 7.00); ALTER TABLE t DROP COLUMN b; INSERT INTO t VALUES (8, NULL, 8.00);"
rc=0
timeout 30 "$ODSYNC_BIN" run -c "$TEST_TMP/odsync.yml" >"$TEST_TMP/minimal.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) || { cat "$TEST_TMP/minimal.log"; fail "odsync did not stop on a shape it cannot know (exit $rc)"; }
grep -q "table shop.t: the binlog row event (4 columns) does not match the table as it is now (3 columns" \
  "$TEST_TMP/minimal.log" || { cat "$TEST_TMP/minimal.log"; fail "no clear error for the MINIMAL shape mismatch"; }
grep -q "binlog_row_metadata=FULL" "$TEST_TMP/minimal.log" || fail "the error does not name binlog_row_metadata=FULL"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM \"shop.t\" WHERE id = 7") == 0 ]] || fail "a row was applied with a guessed shape"
