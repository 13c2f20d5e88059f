#!/usr/bin/env bash
# pg_tables_and_check.sh — `source.tables` names as PostgreSQL reads them, a listed table dropped
# and re-created while running, and `odsync check` finding what `run` refuses.
#
# Asserts:
#  tables: ['"Sales Dept"."Orders"', LOWER_T, '"MiXed"'] is accepted by check (exit 0) and run
#  captures the three tables (od_compare equal after writes), a quoted schema with a blank and
#  mixed case, an unquoted name folded to lower case, a quoted mixed-case name;
#  a listed table dropped and re-created while running is put back into the publication, with a
#  warning naming `odsync snapshot`, and its later rows reach the sink (the sink table starts
#  over: the dropped table's rows are gone);
#  `tables: [Sales Dept.Orders]`: check and run exit 2 naming FILE:LINE:COL of the entry;
#  check exits 1 with one error line each for: a non-superuser without tables: (FOR ALL TABLES
#  needs a superuser), an UNLOGGED table in tables:, a state_dir that cannot be created, and (exit
#  2, config) reconnect_max_ms: -5 and two pipelines naming the same slot of one database; run refuses
#  the unlogged table and the non-superuser too (exit 1) without creating a slot.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_tables_and_check
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."Orders" (id int PRIMARY KEY, v text);
CREATE TABLE lower_t (id int PRIMARY KEY, v text);
CREATE TABLE "MiXed" (id int PRIMARY KEY, v text);
CREATE TABLE other (id int PRIMARY KEY);
CREATE UNLOGGED TABLE ul (id int PRIMARY KEY);
INSERT INTO "Sales Dept"."Orders" VALUES (1, 'one');
INSERT INTO lower_t VALUES (1, 'one');
INSERT INTO "MiXed" VALUES (1, 'one');
CREATE ROLE plain LOGIN REPLICATION;
SQL

# captured_equal TIMEOUT: the three captured tables equal the source
captured_equal() {
  wait_for "compare --table 'Sales Dept.Orders' --table public.lower_t --table public.MiXed >/dev/null 2>&1" "$1" ||
    { compare --table 'Sales Dept.Orders' --table public.lower_t --table public.MiXed || true; fail "sink not equal"; }
}
# check_out CONFIG: runs odsync check, output into $OUT, status into $RC
check_out() {
  RC=0
  OUT=$("$ODSYNC_BIN" check -c "$1" 2>&1) || RC=$?
}
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source:
      type: postgres
      dsn: "$(pg_dsn)"
      status_interval_ms: 500
      tables: ['"Sales Dept"."Orders"', LOWER_T, '"MiXed"']
    sink: { type: sqlite, path: $SINK_DB }
YAML
check_out "$CONFIG"
[[ $RC == 0 ]] || fail "check refused quoted/unquoted table names: $OUT"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO \"Sales Dept\".\"Orders\" VALUES (2, 'two'); INSERT INTO lower_t VALUES (2, 'two'); INSERT INTO \"MiXed\" VALUES (2, 'two')"
captured_equal 60
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM \"MiXed\"") == 2 ]] || fail "MiXed not captured"

log "a listed table dropped and re-created while running"
pg_psql -c "DROP TABLE lower_t; CREATE TABLE lower_t (id int PRIMARY KEY, v text)"
wait_for "grep -q 'table public.lower_t (source.tables) was not in publication odsync_shop.*odsync snapshot -p shop -t public.lower_t' '$LOG'" 30 ||
  fail "no warning for the re-created listed table: $(tail -3 "$LOG")"
pg_psql -c "INSERT INTO lower_t VALUES (10, 'after')"
captured_equal 60
[[ $(sqlite3 "$SINK_DB" "SELECT group_concat(id) FROM lower_t") == 10 ]] || fail "lower_t in the sink: $(sqlite3 "$SINK_DB" "SELECT group_concat(id) FROM lower_t")"
odsync_stop

log "a name PostgreSQL cannot read"
cat >"$TEST_TMP/bad.yaml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)",
              tables: [public.other, Sales Dept.Orders] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
check_out "$TEST_TMP/bad.yaml"
[[ $RC != 0 ]] || fail "check accepted [Sales Dept.Orders]"
grep -qF "$TEST_TMP/bad.yaml:5:38: pipelines[0].source.tables[1] 'Sales Dept.Orders' is not a table name" <<<"$OUT" ||
  fail "check: no FILE:LINE:COL for the bad entry: $OUT"
RC=0
OUT=$("$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" 2>&1) || RC=$?
[[ $RC == 2 ]] || fail "run accepted [Sales Dept.Orders] (exit $RC)"
grep -qF "$TEST_TMP/bad.yaml:5:38:" <<<"$OUT" || fail "run: no FILE:LINE:COL for the bad entry: $OUT"

log "check finds what run refuses"
pipeline() { # pipeline NAME DSN EXTRA -> one pipeline's YAML
  printf '  - name: %s\n    source: { type: postgres, dsn: "%s" %s }\n    sink: { type: sqlite, path: %s }\n' "$1" "$2" "$3" "$TEST_TMP/$1.db"
}
PLAIN_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=plain"
{ echo "state_dir: $TEST_TMP/state2"; echo "pipelines:"; pipeline nosuper "$PLAIN_DSN" ""; } >"$TEST_TMP/c1.yaml"
{ echo "state_dir: $TEST_TMP/state2"; echo "pipelines:"; pipeline unlogged "$(pg_dsn)" ", tables: [public.other, ul]"; } >"$TEST_TMP/c2.yaml"
{ echo "state_dir: $TEST_TMP/state2"; echo "pipelines:"; pipeline neg "$(pg_dsn)" ", tables: [public.other], reconnect_max_ms: -5"; } >"$TEST_TMP/c3.yaml"
touch "$TEST_TMP/afile"
{ echo "state_dir: $TEST_TMP/afile/state"; echo "pipelines:"; pipeline ro "$(pg_dsn)" ", tables: [public.other]"; } >"$TEST_TMP/c4.yaml"
{ echo "state_dir: $TEST_TMP/state2"; echo "pipelines:"; pipeline one "$(pg_dsn)" ", slot: shared, tables: [public.other]"
  pipeline two "$(pg_dsn)" ", slot: shared, tables: [public.other]"; } >"$TEST_TMP/c5.yaml"
expect_check() { # expect_check FILE RC TEXT
  check_out "$1"
  [[ $RC == "$2" ]] || fail "check $1: exit $RC (expected $2): $OUT"
  grep -qF -- "$3" <<<"$OUT" || fail "check $1: no '$3' in: $OUT"
  log "check $(basename "$1"): $(grep -m1 -F -- "$3" <<<"$OUT" | cut -c1-160)"
}
expect_check "$TEST_TMP/c1.yaml" 1 "FOR ALL TABLES (source.tables is not set), which needs a superuser; role plain is not one"
expect_check "$TEST_TMP/c2.yaml" 1 "table public.ul (source.tables) is UNLOGGED"
expect_check "$TEST_TMP/c3.yaml" 2 "reconnect_max_ms"
expect_check "$TEST_TMP/c4.yaml" 1 "state_dir $TEST_TMP/afile/state cannot be created or used: Not a directory"
expect_check "$TEST_TMP/c5.yaml" 2 "pipelines one and two read the same database through the same replication slot shared"
for c in c1 c2; do
  RC=0
  timeout 60 "$ODSYNC_BIN" run -c "$TEST_TMP/$c.yaml" >"$TEST_TMP/$c.out" 2>&1 || RC=$?
  [[ $RC == 1 ]] || fail "run $c.yaml: exit $RC (expected 1): $(tail -3 "$TEST_TMP/$c.out")"
done
[[ $(pg_psql -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name <> 'odsync_shop'") == 0 ]] ||
  fail "a refused run left a slot: $(pg_psql -c 'SELECT slot_name FROM pg_replication_slots')"
log "ok"
