#!/usr/bin/env bash
# mariadb_trigger.sh — trigger-based capture of MariaDB (`type: mariadb_trigger`) into SQLite and
# PostgreSQL (one pipeline, two sinks), across SIGKILLs, with install-triggers/uninstall-triggers.
#
# Asserts:
#  - before install-triggers, `odsync check` fails naming the command to run; install-triggers
#    succeeds; rows that existed before odsync first ran arrive (the initial copy);
#  - under a mixed workload of two concurrent writers (started with odsync's first session, so it
#    runs during the initial copy) that update the same rows (so the final state
#    depends on commit order), inserts, updates, primary-key changes, deletes, savepoints rolled back,
#    insert+update+delete of one key in one transaction, with odsync SIGKILLed at random moments
#    (at least 4 times) and restarted, both sinks end equal to the source row for row
#    (od_compare_my --sqlite and --pg: same values in the documented forms, nothing missing, nothing
#    doubled);
#  - commit order: transaction A writes first (an uncaptured table) but commits its captured change
#    after transaction B, which wrote later and committed first; both end in the sinks with A's value
#    last. A transaction C that keeps its captured changes open blocks a later captured writer D
#    until C ends (D's changes are numbered after C's: the counter-lock the design rests on), and
#    while C is open odsync keeps delivering what committed before it;
#  - the change table is pruned once both sinks hold everything;
#  - after uninstall-triggers information_schema (tables, columns, triggers, routines, schemata) is
#    exactly as before install-triggers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mariadb.sh"

test_init mariadb_trigger
OD_COMPARE_MY=${OD_COMPARE_MY:-$ODSYNC_BUILD_DIR/od_compare_my}
[[ -x "$OD_COMPARE_MY" ]] || fail "od_compare_my not built at $OD_COMPARE_MY"
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
pg_start target
PG_DSN=$(pg_dsn target)
my_start shop
# install-triggers creates a database and triggers: the test's user may (a production setup would
# grant CREATE, DROP, TRIGGER on the captured tables and ALL on odsync.* to the installing user).
my_sql -e "GRANT ALL PRIVILEGES ON *.* TO '$MY_USER'@'%'"
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
my_sql <<'SQL'
CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), paid TINYINT,
  at TIMESTAMP(6) NULL DEFAULT NULL, payload VARBINARY(32), score DOUBLE, status ENUM('new','paid','gone'),
  updated DATETIME(3), note TEXT CHARACTER SET utf8mb4);
CREATE TABLE docs (id INT PRIMARY KEY, body TEXT);
CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL, last VARCHAR(60));
CREATE TABLE notes (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20));
INSERT INTO orders SELECT seq, CONCAT('pre ', seq), seq * 0.5, seq % 2, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq HOUR,
  x'00ff', seq / 7, 'new', '2024-02-03 04:05:06.789', 'ünïcode "quoted" \\ back' FROM seq_1_to_200;
INSERT INTO counters SELECT seq, 0, NULL FROM seq_0_to_4;
INSERT INTO docs VALUES (1, 'first');
SQL
schema_of() {
  my_sql -e "SELECT 'table', table_schema, table_name, table_type, engine FROM information_schema.tables
               WHERE table_schema NOT IN ('information_schema', 'performance_schema') ORDER BY 2, 3;
             SELECT 'column', table_schema, table_name, column_name, column_type FROM information_schema.columns
               WHERE table_schema NOT IN ('information_schema', 'performance_schema', 'mysql') ORDER BY 2, 3, 4;
             SELECT 'trigger', trigger_schema, trigger_name FROM information_schema.triggers ORDER BY 2, 3;
             SELECT 'routine', routine_schema, routine_name FROM information_schema.routines ORDER BY 2, 3;
             SELECT 'schema', schema_name FROM information_schema.schemata ORDER BY 2;"
}
schema_of >"$TEST_TMP/schema_before.txt"
grep -q "column	shop	orders	payload" "$TEST_TMP/schema_before.txt" || fail "schema_of printed no schema"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: mtrg
    source: { type: mariadb_trigger, dsn: "$(my_dsn)", tables: [shop.orders, shop.docs, shop.counters], interval_ms: 50, prune_interval_ms: 200 }
    sinks:
      - { name: lite, type: sqlite, path: $SINK_DB }
      - { name: pgs, type: postgres, dsn: "$PG_DSN" }
YAML
if out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1); then fail "odsync check passed before install-triggers: $out"; fi
[[ "$out" == *"run \`odsync install-triggers -c CONFIG\` first"* ]] || fail "check before install does not name install-triggers: $out"
out=$("$ODSYNC_BIN" install-triggers -c "$CONFIG") || fail "install-triggers failed: $out"
echo "$out"
[[ "$out" == *"installed capture triggers on 3 table(s)"* ]] || fail "install-triggers said: $out"
"$ODSYNC_BIN" check -c "$CONFIG" || fail "odsync check fails after install-triggers"
[[ $(my_sql -e "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'shop' AND trigger_name LIKE 'odsync\\_%'") == 9 ]] ||
  fail "install-triggers did not create 9 triggers"

compare_all() {
  local t a=()
  for t in orders docs counters; do a+=(--table "$t"); done
  "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --sqlite "$SINK_DB" "${a[@]}" &&
    "$OD_COMPARE_MY" --port "$MY_PORT" --user root --db shop --pg "$PG_DSN" "${a[@]}"
}
wait_equal_all() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  until out=$(compare_all 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the source after ${timeout}s ($2)"; }
    sleep 1
  done
  echo "$out"
}

# ---- mixed workload with SIGKILLs ----
run_sql() { # run stdin's SQL, retrying deadlock victims (the whole transaction was rolled back)
  local sql try out
  sql=$(cat)
  for try in 1 2 3 4 5 6 7 8; do
    if out=$(printf '%s\n' "$sql" | my_sql 2>&1 >/dev/null); then return 0; fi
    [[ "$out" == *Deadlock* || "$out" == *"Lock wait timeout"* ]] || { echo "$out"; return 1; }
  done
  echo "still deadlocking: $out"
  return 1
}
writer() {
  local w=$1 end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    run_sql <<SQL || { echo "writer $w: iteration $it failed"; return 1; }
BEGIN;
UPDATE counters SET n = n + 1, last = 'w$w it $it' WHERE id = $it % 5;
UPDATE counters SET n = n + 10, last = 'w$w it $it b' WHERE id = ($it + 2) % 5;
COMMIT;
SQL
    if ((w == 1)); then
      local base=$((100000 + it * 10))
      run_sql <<SQL || { echo "writer $w: iteration $it failed"; return 1; }
BEGIN;
INSERT INTO orders VALUES ($base, 'it $it', $it * 0.25, $it % 2, NOW(6), x'0102', $it / 3, 'new', NOW(3), 'n$it'),
  ($base + 1, 'it $it b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ($base + 2, 'it $it c', -0.5, 1, '2038-01-19 03:14:07.999999', x'', 1e300, 'paid', '1000-01-01 00:00:00', '');
SET @m = (SELECT MAX(id) FROM orders WHERE id < 1000000000);
UPDATE orders SET paid = 1 - paid, customer = CONCAT(customer, '.') WHERE id = @m - 4;
SAVEPOINT s;
UPDATE orders SET customer = 'rolled back' WHERE id = @m - 1;
INSERT INTO docs VALUES (100000 + $it, 'rolled back');
ROLLBACK TO SAVEPOINT s;
INSERT INTO orders (id, customer) VALUES (2000000000 + $it, 'transient');
UPDATE orders SET customer = 'transient updated' WHERE id = 2000000000 + $it;
DELETE FROM orders WHERE id = 2000000000 + $it;
COMMIT;
SET @mn = (SELECT MIN(id) FROM orders);
DELETE FROM orders WHERE id = @mn;
SET @k = (SELECT MAX(id) FROM orders WHERE id < 1000000000) - 1;
UPDATE orders SET id = id + 1000000000, status = 'gone' WHERE id = @k;
INSERT INTO docs VALUES ($it + 1, REPEAT('d', $it)) ON DUPLICATE KEY UPDATE body = CONCAT(body, '+');
SQL
      if ((it % 10 == 5)); then
        run_sql <<SQL || { echo "writer $w: bulk failed"; return 1; }
INSERT INTO orders (id, customer, amount, score) SELECT 500000 + $it * 1000 + seq, 'bulk', seq, seq FROM seq_1_to_500;
SQL
      fi
    fi
  done
  echo "writer $w: $it iterations"
}
workload() {
  writer 1 &
  local p1=$!
  writer 2 || { wait $p1; return 1; }
  wait $p1
}
# The workload starts together with odsync's first session, so transactions commit while the initial
# copy is taken (the copy and the counter it reads must agree).
workload_start workload
odsync_start "$CONFIG" "$LOG"
wait_for "grep -q 'initial copy of 3 table(s) done' $LOG" 120 || fail "no initial copy within 120 s"
wait_for "[[ \$(sqlite3 $SINK_DB \"SELECT count(*) FROM \\\"shop.orders\\\" WHERE customer LIKE 'pre %'\" 2>/dev/null) -gt 0 ]]" 60 ||
  fail "the rows that existed before the first run did not arrive"

kills=0
while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < 4)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.5 + r / 32767 * 2.0 }')"
  odsync_running || { wait "$ODSYNC_PID" || true; fail "odsync exited on its own (before kill $((kills + 1)))"; }
  odsync_kill9
  kills=$((kills + 1))
  log "kill $kills"
  odsync_start "$CONFIG" "$LOG"
done
workload_wait
grep -q "writer 1: [1-9][0-9]* iterations" "$WORKLOAD_LOG" || fail "writer 1 did no work"
[[ $(my_sql -e "SELECT COUNT(*) FROM docs WHERE body = 'rolled back'") == 0 ]] || fail "workload: savepoint not rolled back"
[[ $(my_sql -e "SELECT COUNT(*) FROM orders WHERE id > 1000000000") -gt 0 ]] || fail "workload: no key was changed"
wait_equal_all 180 "after the workload"
wait_for "[[ \$(my_sql -e 'SELECT COUNT(*) FROM odsync.changes') == 0 ]]" 60 ||
  fail "the change table was not pruned: $(my_sql -e 'SELECT COUNT(*) FROM odsync.changes') changes left"
# ---- commit order ----
# (Open transactions are found in innodb_trx by the test's user, root: odsync's pruning, as user
# odsync, is not one of them.)
# A writes first (uncaptured table), B writes later and commits first, then A changes the same row.
my_sql <<'SQL' &
BEGIN;
INSERT INTO notes (v) VALUES ('A first');
DO SLEEP(2);
UPDATE counters SET last = 'A', n = n + 1 WHERE id = 0;
INSERT INTO docs VALUES (9000900, 'A');
COMMIT;
SQL
a_pid=$!
wait_for "[[ \$(my_sql -e \"SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE t.trx_rows_modified > 0 AND p.user = 'root'\") -ge 1 ]]" 30 ||
  fail "transaction A did not start"
my_sql -e "BEGIN; UPDATE counters SET last = 'B', n = n + 100 WHERE id = 0; INSERT INTO docs VALUES (9000901, 'B'); COMMIT;"
wait "$a_pid" || fail "transaction A failed"
[[ $(my_sql -e "SELECT last FROM counters WHERE id = 0") == A ]] || fail "A did not commit last"
wait_equal_all 60 "A/B commit order"
[[ $(sqlite3 "$SINK_DB" "SELECT last FROM \"shop.counters\" WHERE id = 0") == A ]] || fail "the sink does not hold A's value"

# C keeps a captured change open; D (a later captured writer) must wait for it; meanwhile E, which
# committed before C began, is delivered.
my_sql -e "INSERT INTO docs VALUES (9000902, 'E')"
my_sql <<'SQL' &
BEGIN;
UPDATE counters SET last = 'C' WHERE id = 1;
DO SLEEP(4);
COMMIT;
SQL
c_pid=$!
wait_for "[[ \$(my_sql -e \"SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE t.trx_rows_modified > 0 AND p.user = 'root'\") -ge 1 ]]" 30 ||
  fail "transaction C did not start"
d_start=$(date +%s%N)
my_sql -e "UPDATE counters SET last = 'D' WHERE id = 2" &
d_pid=$!
wait_for "[[ \$(sqlite3 $SINK_DB \"SELECT body FROM \\\"shop.docs\\\" WHERE id = 9000902\" 2>/dev/null) == E ]]" 60 ||
  fail "E (committed before C) was not delivered while C was open"
[[ $(sqlite3 "$SINK_DB" "SELECT last FROM \"shop.counters\" WHERE id = 1") != C ]] || fail "C's uncommitted change reached the sink"
wait "$d_pid" || fail "D failed"
d_ms=$((($(date +%s%N) - d_start) / 1000000))
wait "$c_pid" || fail "C failed"
((d_ms >= 1500)) || fail "D did not wait for C (it took ${d_ms} ms): captured writers are not serialized"
wait_equal_all 60 "C/D"
log "commit order ok (D waited ${d_ms} ms for C)"

odsync_stop
compare_all >/dev/null || fail "sinks differ after the final stop"

# ---- uninstall ----
out=$("$ODSYNC_BIN" uninstall-triggers -c "$CONFIG") || fail "uninstall-triggers failed: $out"
echo "$out"
schema_of >"$TEST_TMP/schema_after.txt"
diff -u "$TEST_TMP/schema_before.txt" "$TEST_TMP/schema_after.txt" || fail "information_schema differs after uninstall-triggers"
log "ok ($kills kills)"
