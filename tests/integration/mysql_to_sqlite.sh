#!/usr/bin/env bash
# mysql_to_sqlite: MariaDB (binlog, default binlog_row_metadata=MINIMAL, so column facts come from
# information_schema) -> SQLite. Every type of docs/TYPES.md's MariaDB section (the decoder fixtures'
# tables and statements) plus a mixed workload of multi-statement transactions on tables with and
# without a primary key, while odsync is killed with SIGKILL and restarted three times; then an
# ALTER TABLE ADD COLUMN and a TRUNCATE. After each phase the sink must equal the source row for row
# (od_compare_my: same values in the documented forms, no duplicates, nothing missing).
set -euo pipefail
source "$(dirname "$0")/../env/common.sh"
source "$(dirname "$0")/../env/pg.sh"
source "$(dirname "$0")/../env/mariadb.sh"
test_init mysql_to_sqlite

OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"
FIX=$ODSYNC_SOURCE_DIR/tests/fixtures/binlog

my_start shop
SINK_DB=$TEST_TMP/sink.db
my_sql <"$FIX/schema.sql"
my_sql -e "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2),
             status ENUM('new','paid','shipped'), updated DATETIME(6));
           CREATE TABLE events (kind VARCHAR(20), n INT, at TIMESTAMP(3) NULL DEFAULT NULL);
           CREATE TABLE ignored (id INT PRIMARY KEY, v INT);"

cat >"$TEST_TMP/odsync.yml" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: shop
    source:
      type: mysql
      dsn: "$(my_dsn)"
      tables: [shop.t_*, shop.orders, shop.events]
    sink: { type: sqlite, path: $SINK_DB }
YAML

compare_my() {
  "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --sqlite "$SINK_DB" \
    --table t_int --table t_dec --table t_float --table t_time --table t_str --table t_bin --table t_misc \
    --table t_nokey --table orders --table events "$@"
}

wait_equal_my() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_my 2>&1); then
      echo "$out"
      return 0
    fi
    odsync_running || fail "odsync exited; compare said: $out"
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "sink not equal to MariaDB after ${timeout}s (od_compare_my report above)"
    fi
    sleep 1
  done
}

wait_streaming() {
  wait_for "grep -q 'reading the binlog' '$TEST_TMP/odsync.log'" 30 || fail "odsync did not start reading the binlog"
}

log "check: a server setting odsync cannot work with, a wrong password"
my_sql -e "SET GLOBAL binlog_row_image = MINIMAL"
rc=0
"$ODSYNC_BIN" check -c "$TEST_TMP/odsync.yml" >"$TEST_TMP/check.log" 2>&1 || rc=$?
((rc != 0)) || fail "odsync check passed with binlog_row_image=MINIMAL"
grep -q "binlog_row_image is MINIMAL: set binlog_row_image=FULL" "$TEST_TMP/check.log" || {
  cat "$TEST_TMP/check.log"
  fail "odsync check does not name binlog_row_image"
}
rc=0
timeout 20 "$ODSYNC_BIN" run -c "$TEST_TMP/odsync.yml" >"$TEST_TMP/run-minimal.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) || fail "odsync run did not stop on binlog_row_image=MINIMAL (exit $rc)"
grep -q "binlog_row_image is MINIMAL" "$TEST_TMP/run-minimal.log" || fail "odsync run does not name binlog_row_image"
my_sql -e "SET GLOBAL binlog_row_image = FULL"
sed "s/password=odsync-pw/password=wrong-pw/" "$TEST_TMP/odsync.yml" >"$TEST_TMP/badpw.yml"
rc=0
"$ODSYNC_BIN" check -c "$TEST_TMP/badpw.yml" >"$TEST_TMP/badpw.log" 2>&1 || rc=$?
((rc != 0)) || fail "odsync check passed with a wrong password"
grep -q "cannot connect as user odsync" "$TEST_TMP/badpw.log" || { cat "$TEST_TMP/badpw.log"; fail "no clear login error"; }
grep -q "wrong-pw" "$TEST_TMP/badpw.log" && fail "the password appeared in an error"
rm -rf "$TEST_TMP/state"

log "check"
"$ODSYNC_BIN" check -c "$TEST_TMP/odsync.yml" >"$TEST_TMP/check.log" 2>&1 || {
  cat "$TEST_TMP/check.log"
  fail "odsync check failed"
}

log "phase 1: every type (and an ALTER TABLE ADD COLUMN on a table without a key)"
odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
wait_streaming
{ echo "SET SESSION sql_mode='';"; grep -v -e 'TRUNCATE' "$FIX/workload.sql"; } | my_sql
my_sql -e "INSERT INTO ignored VALUES (1, 1)"
wait_equal_my 60
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM sqlite_master WHERE name = 'shop.ignored'") == 0 ]] ||
  fail "a table outside the tables list reached the sink"

# A mixed workload: each transaction inserts, updates and deletes on keyed and keyless tables;
# batches of 50 transactions with a pause between them, so that it lasts while odsync is killed.
workload() {
  local b
  for b in $(seq 0 $(($1 / 50 - 1))); do
    workload_batch 50 $(($2 + b * 50))
    sleep 0.4
  done
}
workload_batch() {
  local i
  for i in $(seq 1 "$1"); do
    local id=$(($2 + i)) old=$(($2 + i - 7))
    echo "BEGIN;"
    echo "INSERT INTO orders VALUES ($id, 'c$((id % 13))', $((id * 7 % 1000)).$((id % 100)), 'new', NOW(6));"
    echo "INSERT INTO events VALUES ('order', $id, NOW(3)), ('order', $id, NOW(3));"
    echo "UPDATE orders SET status = 'paid', amount = amount + 1, updated = NOW(6) WHERE id = $old;"
    echo "UPDATE events SET n = -n WHERE n = $old;"
    if ((i % 5 == 0)); then
      echo "DELETE FROM orders WHERE id = $((old - 3));"
      echo "DELETE FROM events WHERE n = $((id - 2));"
    fi
    echo "COMMIT;"
  done | my_sql
}

log "phase 2: mixed workload with SIGKILL/restart"
workload_start workload 600 1000
for k in 1 2 3; do
  sleep 1.2
  kill -0 "$WORKLOAD_PID" 2>/dev/null || fail "the workload ended before SIGKILL $k (make it longer)"
  log "SIGKILL $k"
  odsync_kill9
  sleep 0.5
  odsync_start "$TEST_TMP/odsync.yml" "$TEST_TMP/odsync.log"
done
# The server drops odsync's binlog connection: a retriable error, a new session resumes exactly.
wait_for "[[ -n \$(my_sql -e \"SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'\") ]]" 30 ||
  fail "no binlog dump thread to kill (odsync did not reconnect within 30 s)"
dumps=$(my_sql -e "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
for id in $dumps; do my_sql -e "KILL $id" || true; done
log "killed the server side of the binlog connection ($dumps)"
workload_wait
wait_equal_my 90
grep -q "binlog stream" "$TEST_TMP/odsync.log" || fail "the dropped connection was not reported"
odsync_running || fail "odsync stopped after its binlog connection was dropped"
n=$(my_sql -e "SELECT count(*) FROM orders")
((n > 400)) || fail "workload too small: $n orders"
starts=$(grep -o "reading the binlog from GTID [0-9,-]*" "$TEST_TMP/odsync.log" | sort -u | wc -l)
((starts >= 3)) || fail "expected restarts to resume at distinct GTID positions, saw $starts"

log "phase 3: ALTER TABLE ADD COLUMN, TRUNCATE"
my_sql -e "ALTER TABLE orders ADD COLUMN note VARCHAR(20) DEFAULT NULL;
           INSERT INTO orders VALUES (5000, 'late', 1.00, 'new', NULL, 'hello');
           UPDATE orders SET note = 'x' WHERE id = 1001;
           TRUNCATE TABLE t_nokey;
           INSERT INTO t_nokey VALUES (9, 'nine', 99);"
wait_equal_my 60
odsync_stop
log "checkpoint: $(sqlite3 "$SINK_DB" "SELECT * FROM _odsync_checkpoint WHERE pipeline = 'shop'" 2>/dev/null)"

log "phase 4: the binlog past the checkpoint is purged: a clear fatal error, nothing applied"
my_sql -e "FLUSH BINARY LOGS; INSERT INTO orders VALUES (6000, 'lost', 1.00, 'new', NULL, NULL); FLUSH BINARY LOGS;"
last=$(my_sql -e "SHOW MASTER STATUS" | cut -f1)
# Dump threads of the SIGKILLed odsync runs may still hold old files open (PURGE skips those).
for id in $(my_sql -e "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"); do
  my_sql -e "KILL $id" || true
done
wait_for "my_sql -e \"PURGE BINARY LOGS TO '$last'\" && [[ \$(my_sql -e 'SHOW BINARY LOGS' | head -1 | cut -f1) == $last ]]" 15 ||
  fail "could not purge the binlogs before $last: $(my_sql -e 'SHOW BINARY LOGS' | tr '\n' ' ')"
rc=0
timeout 20 "$ODSYNC_BIN" run -c "$TEST_TMP/odsync.yml" >"$TEST_TMP/purged.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) || { cat "$TEST_TMP/purged.log"; fail "odsync exited with $rc on a purged binlog (expected a fatal error)"; }
grep -q "the binlog no longer holds mysql:0-1-" "$TEST_TMP/purged.log" || { cat "$TEST_TMP/purged.log"; fail "no clear purge error"; }
grep -q "re-seeding the sink" "$TEST_TMP/purged.log" || fail "the purge error does not name the recovery"
grep -q "odsync-pw" "$TEST_TMP/purged.log" "$TEST_TMP/odsync.log" && fail "the password appeared in a log"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM \"shop.orders\" WHERE id = 6000") == 0 ]] || fail "a row past the gap was applied"
grep "no longer holds" "$TEST_TMP/purged.log" | head -1
