#!/usr/bin/env bash
# mysql_snapshot: the initial snapshot of a MariaDB source (snapshot: initial, the default). Tables
# filled before odsync starts — every type (the decoder fixtures' rows) and 20,000 rows in a table
# with a key and one without — are copied under one consistent read view while a workload keeps
# inserting, updating and deleting; the stream then starts exactly at the view's binlog position.
# The sink must equal MariaDB row for row (nothing missing, nothing twice), also after a SIGKILL
# and restart, and a second start must not copy again.
set -euo pipefail
source "$(dirname "$0")/../env/common.sh"
source "$(dirname "$0")/../env/pg.sh"
source "$(dirname "$0")/../env/mariadb.sh"
test_init mysql_snapshot

OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"
FIX=$ODSYNC_SOURCE_DIR/tests/fixtures/binlog

my_start shop
SINK_DB=$TEST_TMP/sink.db
my_sql <"$FIX/schema.sql"
{ echo "SET SESSION sql_mode='';"; grep -v 'TRUNCATE' "$FIX/workload.sql"; } | my_sql
my_sql -e "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT, d DECIMAL(10,3), at DATETIME(3));
           CREATE TABLE bag (k INT, v VARCHAR(40));
           INSERT INTO big SELECT seq, CONCAT('v', seq), seq * 1000, seq / 7, '2024-01-01 00:00:00.123' + INTERVAL seq SECOND
             FROM seq_1_to_20000;
           INSERT INTO bag SELECT seq % 500, CONCAT('b', seq % 37) FROM seq_1_to_20000;"

cat >"$TEST_TMP/odsync.yml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source:
      type: mysql
      dsn: "$(my_dsn)"
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

workload() {
  local i
  for i in $(seq 1 40); do
    echo "BEGIN;
      UPDATE big SET v = CONCAT(v, '+'), n = n + 1 WHERE id % 40 = $((i % 40));
      INSERT INTO big VALUES ($((20000 + i)), 'new', $i, $i / 3, NOW(3));
      DELETE FROM big WHERE id = $((i * 97));
      UPDATE bag SET v = CONCAT(v, '*') WHERE k = $((i % 500)) LIMIT 3;
      INSERT INTO bag VALUES ($i, 'late'), ($i, 'late');
      DELETE FROM bag WHERE k = $((i + 250)) LIMIT 1;
    COMMIT;"
    sleep 0.1
  done | my_sql
}

log "snapshot while a workload runs"
seq_before=$(my_sql -e "SELECT @@gtid_binlog_pos" | awk -F- '{print $3}')
workload_start workload
sleep 0.3
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
workload_wait
wait_equal_my 90
grep -q "snapshot view at" "$ODSYNC_LOG" || fail "no snapshot view was taken"
grep -q "initial snapshot done" "$ODSYNC_LOG" || fail "the snapshot did not finish"
seq_after=$(my_sql -e "SELECT @@gtid_binlog_pos" | awk -F- '{print $3}')
seq_view=$(grep -o "snapshot view at 0-1-[0-9]*" "$ODSYNC_LOG" | head -1 | awk -F- '{print $3}')
log "GTIDs: before the workload $seq_before, the view $seq_view, after $seq_after"
((seq_view > seq_before && seq_view < seq_after)) || fail "the view was not taken while the workload ran"
[[ $(sqlite3 "$SINK_DB" 'SELECT count(*) FROM "shop.big"') -gt 19000 ]] || fail "big was not copied"

log "SIGKILL, more changes, restart: the stream resumes, nothing is copied again"
odsync_kill9
my_sql -e "UPDATE big SET v = 'after' WHERE id <= 100; INSERT INTO bag VALUES (-1, 'after');"
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
wait_equal_my 60
[[ $(grep -c "snapshot view at" "$ODSYNC_LOG") == 1 ]] || fail "the restart took a second snapshot"
odsync_stop
