#!/usr/bin/env bash
# sink_table_dropped.sh — a sink table dropped by hand is never made again empty as if new.
#
# For the SQLite sink and the PostgreSQL sink (pipelines lite and pg, one source), with a keyed
# table a and a keyless table k (REPLICA IDENTITY FULL):
#   1. initial snapshot + stream: both sinks equal the source;
#   2. odsync stopped, table a dropped in both sinks, more rows written to the source;
#   3. `odsync check` exits 1 and names table a and the fix (`odsync snapshot ... --table public.a`);
#   4. `odsync run` exits 1 within 30 s with an ERROR naming table a and that fix, and the sinks do
#      not have table a again (before: SQLite made it again empty at once and ran on; PostgreSQL
#      after a restart);
#   5. `odsync snapshot -c CONFIG -p P --table public.a` for each pipeline exits 0, then
#      `odsync run`: table a is made anew and re-copied, and both sinks equal the source row for
#      row, also after more changes;
#   6. the keyless table k dropped by hand: run stops with an ERROR that says it cannot be re-copied
#      by itself and names the statement that accepts an empty table; after that statement, run
#      goes on and k holds the rows changed from then on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_table_dropped
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair shop target
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE k (n int, v text);
ALTER TABLE k REPLICA IDENTITY FULL;
INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 2000) g;
INSERT INTO k SELECT g % 10, 'k' || g FROM generate_series(1, 50) g;
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.a, public.k] }
    sink: { type: sqlite, path: $SINK_DB }
  - name: pg
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.a, public.k] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

equal() { compare "$@" >/dev/null 2>&1 && "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "$@" >/dev/null 2>&1; }
wait_both_equal() {
  local deadline=$(($(date +%s) + 60))
  until equal "$@"; do
    odsync_running || fail "odsync exited"
    if (($(date +%s) >= deadline)); then
      compare "$@" || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "$@" || true
      fail "sinks not equal to the source after 60 s"
    fi
    sleep 1
  done
  compare "$@"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "$@"
}
# run_expect_stop WHAT PATTERN...: odsync run exits 1 within 30 s; each PATTERN is in an ERROR line.
run_expect_stop() {
  local what=$1 rc=0
  shift
  : >"$TEST_TMP/run.log"
  timeout 30 "$ODSYNC_BIN" run -c "$CONFIG" >"$TEST_TMP/run.log" 2>&1 || rc=$?
  cat "$TEST_TMP/run.log" >>"$LOG"
  [[ $rc -eq 1 ]] || { tail -20 "$TEST_TMP/run.log"; fail "$what: odsync run exited $rc, expected 1"; }
  for pat in "$@"; do
    grep "ERROR" "$TEST_TMP/run.log" | grep_q -F -- "$pat" || { grep ERROR "$TEST_TMP/run.log"; fail "$what: no ERROR with: $pat"; }
  done
}
sqlite_has() { [[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM sqlite_master WHERE name = '$1'") == 1 ]]; }
pg_has() { [[ $(dst_psql -c "SELECT to_regclass('public.$1') IS NOT NULL") == t ]]; }

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_lite 60
wait_slot_active odsync_pg 60
pg_psql -c "INSERT INTO a SELECT g, 'v' || g FROM generate_series(2001, 2100) g; UPDATE k SET v = 'u' WHERE n = 1"
wait_both_equal
odsync_stop

log "dropping table a in both sinks; more changes at the source"
sqlite3 "$SINK_DB" "DROP TABLE a"
dst_psql -c "DROP TABLE public.a"
pg_psql -c "INSERT INTO a SELECT g, 'w' || g FROM generate_series(2101, 2200) g; UPDATE a SET v = 'x' WHERE id < 100; DELETE FROM a WHERE id BETWEEN 500 AND 510"

rc=0
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || rc=$?
echo "$out"
[[ $rc -ne 0 ]] || fail "odsync check passed with table a dropped from the sinks"
grep -qF "sqlite sink $SINK_DB: table a (source table public.a, pipeline lite) is gone from the sink" <<<"$out" || fail "check: SQLite finding missing"
grep -qF "table public.a (source table public.a, pipeline pg) is gone from the sink" <<<"$out" || fail "check: PostgreSQL finding missing"
grep -qF -- "odsync snapshot -c CONFIG -p lite --table public.a" <<<"$out" || fail "check: the fix is not named"

run_expect_stop "table a dropped" "table a (source table public.a, pipeline lite) is gone from the sink" \
  "odsync snapshot -c CONFIG -p lite --table public.a"
sqlite_has a && fail "the SQLite sink made table a again"
pg_has a && fail "the PostgreSQL sink made table a again"
log "run refused to make a again; re-copying it with odsync snapshot"

for p in lite pg; do
  "$ODSYNC_BIN" snapshot -c "$CONFIG" -p "$p" --table public.a || fail "odsync snapshot -p $p failed"
done
odsync_start "$CONFIG" "$LOG"
pg_psql -c "INSERT INTO a SELECT g, 'y' || g FROM generate_series(2201, 2300) g; UPDATE a SET v = 'z' WHERE id % 7 = 0"
wait_both_equal --table public.a --table public.k
odsync_stop
grep -q "creating it again (it was dropped; odsync snapshot re-copies it)" "$LOG" || fail "SQLite did not log the re-creation"

log "dropping the keyless table k in both sinks"
sqlite3 "$SINK_DB" "DROP TABLE k"
dst_psql -c "DROP TABLE public.k"
pg_psql -c "INSERT INTO k VALUES (100, 'after the drop')"
run_expect_stop "keyless table k dropped" "table k (source table public.k, pipeline lite) is gone from the sink" \
  "has no key, so it cannot be re-copied by itself" "UPDATE _odsync_tables SET recreate = 1 WHERE tbl = 'k'"
sqlite3 "$SINK_DB" "UPDATE _odsync_tables SET recreate = 1 WHERE tbl = 'k'"
dst_psql -c "UPDATE public._odsync_tables SET recreate = true WHERE tbl_schema = 'public' AND tbl_name = 'k'"
odsync_start "$CONFIG" "$LOG"
pg_psql -c "INSERT INTO k VALUES (101, 'later')"
deadline=$(($(date +%s) + 60))
until [[ $(sqlite3 "$SINK_DB" "SELECT group_concat(n) FROM (SELECT n FROM k ORDER BY n)" 2>/dev/null) == "100,101" &&
  $(dst_psql -c "SELECT string_agg(n::text, ',' ORDER BY n) FROM public.k" 2>/dev/null) == "100,101" ]]; do
  odsync_running || fail "odsync exited after the keyless table was accepted empty"
  (($(date +%s) < deadline)) || fail "k does not hold the rows written since the drop"
  sleep 1
done
wait_both_equal --table public.a
odsync_stop
log "a dropped table was refused, re-copied by itself, and a keyless one accepted empty on request"
