#!/usr/bin/env bash
# trigger_capture.sh — trigger-based capture (`type: postgres_trigger`) into SQLite and PostgreSQL
# (one pipeline, two sinks), across SIGKILLs, with install-triggers/uninstall-triggers.
#
# Asserts:
#  - before install-triggers, `odsync check` fails naming the command to run; install-triggers
#    succeeds and says so; rows that existed before odsync first ran arrive (the
#    initial copy);
#  - under a mixed workload of two concurrent writers (started with odsync's first session, so it
#    runs during the initial copy) that update the same rows (so the final
#    state depends on commit order), inserts, updates, deletes, primary-key changes, savepoints
#    rolled back, insert+update+delete of one key in one transaction and TRUNCATEs, with odsync
#    SIGKILLed at random moments (at least 4 times) and restarted, both sinks end equal to the
#    source row for row (od_compare, od_compare_pg: nothing missing, nothing doubled);
#  - the change table is pruned once both sinks hold everything (odsync.changes and odsync.txns empty);
#  - after uninstall-triggers the source's schema (pg_dump --schema-only) is byte-identical to
#    the one before install-triggers, and the captured tables have no trigger left.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init trigger_capture
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
TABLES=(public.orders public.docs public.counters)
pg_psql <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), paid bool, created_at timestamptz,
  payload bytea, attrs jsonb, score float8, tags int[]);
CREATE TABLE docs (id int PRIMARY KEY, body text);
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, last text);
CREATE SEQUENCE order_ids;
INSERT INTO orders SELECT nextval('order_ids'), 'pre ' || g, g * 0.5, g % 2 = 0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 h',
  '\x00ff', jsonb_build_object('g', g), CASE WHEN g = 3 THEN 'NaN'::float8 ELSE g / 7.0 END, ARRAY[g, g + 1]
FROM generate_series(1, 200) g;
INSERT INTO counters SELECT g, 0, NULL FROM generate_series(0, 4) g;
INSERT INTO docs VALUES (1, 'first');
SQL
# The schema as pg_dump prints it (without its per-run \restrict token) and the catalog rows a
# capture install could leave behind.
schema_of() {
  pg_dump -s -h 127.0.0.1 -p "$SRC_PORT" -U postgres shop | grep -v '^\\\(un\)\?restrict '
  pg_psql -c "SELECT 'class', relname, relkind FROM pg_class WHERE relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema', 'pg_toast')) ORDER BY 2" \
    -c "SELECT 'trigger', tgrelid::regclass, tgname FROM pg_trigger ORDER BY 2, 3" \
    -c "SELECT 'proc', proname FROM pg_proc WHERE pronamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema')) ORDER BY 2" \
    -c "SELECT 'namespace', nspname FROM pg_namespace ORDER BY 2"
}
schema_of >"$TEST_TMP/schema_before.sql"
grep -q "CREATE TABLE public.orders" "$TEST_TMP/schema_before.sql" || fail "schema_of printed no schema"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: trg
    source: { type: postgres_trigger, dsn: "$SRC_DSN", tables: [${TABLES[*]// /, }], interval_ms: 50, prune_interval_ms: 200 }
    sinks:
      - { name: lite, type: sqlite, path: $SINK_DB }
      - { name: pgs, type: postgres, dsn: "$DST_DSN" }
YAML
sed -i 's/tables: \[\(.*\) \(.*\) \(.*\)\]/tables: [\1, \2, \3]/' "$CONFIG"
if out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1); then fail "odsync check passed before install-triggers: $out"; fi
[[ "$out" == *"run \`odsync install-triggers -c CONFIG\` first"* ]] || fail "check before install does not name install-triggers: $out"
out=$("$ODSYNC_BIN" install-triggers -c "$CONFIG") || fail "install-triggers failed: $out"
echo "$out"
[[ "$out" == *"installed capture triggers on 3 table(s)"* ]] || fail "install-triggers said: $out"
"$ODSYNC_BIN" check -c "$CONFIG" || fail "odsync check fails after install-triggers"
schema_of >"$TEST_TMP/schema_installed.sql"
grep -q "odsync_capture_truncate" "$TEST_TMP/schema_installed.sql" || fail "the catalog listing does not show the installed triggers"

compare_all() {
  local t a=() b=()
  for t in "${TABLES[@]}"; do a+=(--table "$t"); b+=(--table "$t"); done
  compare "${a[@]}" && "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${b[@]}"
}

writer() {
  local w=$1 end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    {
      cat <<SQL
BEGIN;
UPDATE counters SET n = n + 1, last = 'w$w it $it' WHERE id = $it % 5;
UPDATE counters SET n = n + 10, last = 'w$w it $it b' WHERE id = ($it + 2) % 5;
COMMIT;
SQL
      if ((w == 1)); then
        cat <<SQL
BEGIN;
INSERT INTO orders SELECT nextval('order_ids'), 'it $it', $it * 0.25, $it % 2 = 0, now(), '\x0102', '{"it": $it}', $it / 3.0, ARRAY[$it] FROM generate_series(1, 3);
UPDATE orders SET paid = NOT paid, note = note || '.' WHERE id = (SELECT max(id) FROM orders) - 4;
SAVEPOINT s;
UPDATE orders SET note = 'rolled back' WHERE id = (SELECT max(id) FROM orders) - 1;
INSERT INTO docs VALUES (100000 + $it, 'rolled back');
ROLLBACK TO SAVEPOINT s;
INSERT INTO orders (id, note) VALUES (2000000000 + $it, 'transient');
UPDATE orders SET note = 'transient updated' WHERE id = 2000000000 + $it;
DELETE FROM orders WHERE id = 2000000000 + $it;
COMMIT;
DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE id < 1000000000);
UPDATE orders SET id = id + 1000000000 WHERE id = (SELECT max(id) FROM orders WHERE id < 1000000000) - 1;
INSERT INTO docs VALUES ($it + 1, repeat('d', $it)) ON CONFLICT (id) DO UPDATE SET body = excluded.body || '+';
SQL
        if ((it % 15 == 0)); then echo "TRUNCATE docs; INSERT INTO docs VALUES (1, 'after truncate $it');"; fi
        if ((it % 10 == 5)); then
          echo "INSERT INTO orders SELECT nextval('order_ids'), 'bulk', g, true, now(), NULL, NULL, g, NULL FROM generate_series(1, 2000) g;"
        fi
      fi
    } | pg_psql >/dev/null || {
      echo "writer $w: psql failed in iteration $it"
      return 1
    }
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
# copy is taken (some land in the copy and are replayed after it).
workload_start workload
odsync_start "$CONFIG" "$LOG"
wait_for "grep -q 'initial copy of 3 table(s) done' $LOG" 120 || fail "no initial copy within 120 s"
wait_for "[[ \$(sqlite3 $SINK_DB \"SELECT count(*) FROM orders WHERE note LIKE 'pre %'\" 2>/dev/null) -gt 0 ]]" 60 ||
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
[[ $(pg_psql -c "SELECT count(*) FROM docs WHERE body = 'rolled back'") == 0 ]] || fail "workload: savepoint not rolled back"
deadline=$(($(date +%s) + 180))
until out=$(compare_all 2>&1); do
  (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the source 180 s after the workload"; }
  sleep 1
done
echo "$out"
wait_for "[[ \$(pg_psql -c 'SELECT (SELECT count(*) FROM odsync.changes) + (SELECT count(*) FROM odsync.txns)') == 0 ]]" 60 ||
  fail "the change table was not pruned: $(pg_psql -c 'SELECT count(*) FROM odsync.changes') changes left"
odsync_stop
compare_all >/dev/null || fail "sinks differ after the final stop"
grep -q "initial copy of 3 table(s) done" "$LOG" || fail "no initial copy in the log"
out=$("$ODSYNC_BIN" uninstall-triggers -c "$CONFIG") || fail "uninstall-triggers failed: $out"
echo "$out"
schema_of >"$TEST_TMP/schema_after.sql"
diff -u "$TEST_TMP/schema_before.sql" "$TEST_TMP/schema_after.sql" || fail "the source schema differs after uninstall-triggers"
[[ $(pg_psql -c "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname IN ('orders', 'docs', 'counters')") == 0 ]] ||
  fail "triggers left on the captured tables"
[[ $(pg_psql -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'odsync'") == 0 ]] || fail "schema odsync left behind"
log "ok ($kills kills)"
