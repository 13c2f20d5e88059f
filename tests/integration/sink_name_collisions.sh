#!/usr/bin/env bash
# sink_name_collisions.sh — two source tables (or two pipelines) that a sink would write to one
# target table are refused up front by `odsync check` and `odsync run`, before anything is written.
#
# Cases (one source server with databases dots, one, two, flat; one target server):
#   1. SQLite: public."x.y" and table y of schema x both map to "x.y"; public."Caps" and public.caps
#      meet because SQLite table names ignore case. check exits 1 naming both pairs; run exits 1
#      with an ERROR naming them, and the sink file holds no data table (before: both wrote into
#      "x.y", a delete in one removed the other's row, check said ok).
#   2. SQLite: pipelines p1 (database one) and p2 (database two) write public.t into one file. p1
#      runs first and owns t; then check of p2 exits 1 naming pipeline p1, run of p2 exits 1, and p1's
#      table still equals database one (before: p2 wrote its rows into p1's table).
#   3. PostgreSQL sink with schema: flat and tables a.dup, b.dup: check and run exit 1 naming both;
#      no table flat.dup is made (before: found only when the primary key build failed).
#   4. PostgreSQL sink: pipelines q1 (database one) and q2 (database two) write public.t into one
#      target database: check and run of q2 exit 1 naming q1; q1's table still equals database one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_name_collisions
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair dots target
dsn() { echo "host=127.0.0.1 port=$SRC_PORT dbname=$1 user=postgres"; }
for db in one two flat; do pg_psql -c "CREATE DATABASE $db"; done
pg_psql <<'SQL'
CREATE TABLE "x.y" (id int PRIMARY KEY, v text);
CREATE SCHEMA x;
CREATE TABLE x.y (id int PRIMARY KEY, v text);
CREATE TABLE "Caps" (id int PRIMARY KEY);
CREATE TABLE caps (id int PRIMARY KEY);
INSERT INTO "x.y" VALUES (1, 'public');
INSERT INTO x.y VALUES (1, 'schema x');
SQL
PGDATABASE=one pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'one' FROM generate_series(1, 100) g"
PGDATABASE=two pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'two' FROM generate_series(1, 150) g"
PGDATABASE=flat pg_psql -c "CREATE SCHEMA a; CREATE SCHEMA b; CREATE TABLE a.dup (id int PRIMARY KEY); CREATE TABLE b.dup (id int PRIMARY KEY)"
LOG=$TEST_TMP/odsync.log
CONFIG=$TEST_TMP/odsync.yaml
SINK_DB=$TEST_TMP/shared.db
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: dots
    source: { type: postgres, dsn: "$(dsn dots)" }
    sink: { type: sqlite, path: $TEST_TMP/dots.db }
  - name: p1
    source: { type: postgres, dsn: "$(dsn one)", tables: [public.t] }
    sink: { type: sqlite, path: $SINK_DB }
  - name: p2
    source: { type: postgres, dsn: "$(dsn two)", tables: [public.t] }
    sink: { type: sqlite, path: $SINK_DB }
  - name: flat
    source: { type: postgres, dsn: "$(dsn flat)", tables: [a.dup, b.dup] }
    sink: { type: postgres, dsn: "$DST_DSN", schema: flat }
  - name: q1
    source: { type: postgres, dsn: "$(dsn one)", tables: [public.t] }
    sink: { type: postgres, dsn: "$DST_DSN" }
  - name: q2
    source: { type: postgres, dsn: "$(dsn two)", tables: [public.t] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

# expect_refused PIPELINE PATTERN...: check and run of PIPELINE exit 1 and print every PATTERN.
expect_refused() {
  local p=$1 rc=0 out
  shift
  out=$("$ODSYNC_BIN" check -c "$CONFIG" -p "$p" 2>&1) || rc=$?
  [[ $rc -eq 1 ]] || { echo "$out"; fail "check -p $p exited $rc, expected 1"; }
  for pat in "$@"; do grep -qF -- "$pat" <<<"$out" || { echo "$out"; fail "check -p $p does not say: $pat"; }; done
  rc=0
  out=$(timeout 30 "$ODSYNC_BIN" run -c "$CONFIG" -p "$p" 2>&1) || rc=$?
  echo "$out" >>"$LOG"
  [[ $rc -eq 1 ]] || { echo "$out" | tail; fail "run -p $p exited $rc, expected 1"; }
  for pat in "$@"; do
    grep ERROR <<<"$out" | grep_q -F -- "$pat" || { echo "$out" | tail; fail "run -p $p: no ERROR saying: $pat"; }
  done
  log "$p refused by check and run"
}

log "1. SQLite: \"x.y\" vs x.y, \"Caps\" vs caps"
expect_refused dots 'source tables public."x.y" and x.y would both be written to table x.y' \
  'source tables public."Caps" and public.caps would both be written to table caps'
[[ $(sqlite3 "$TEST_TMP/dots.db" "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\_odsync%' ESCAPE '\'") == 0 ]] ||
  fail "the refused pipeline made tables in its sink"

log "2. SQLite: two pipelines from two databases into one file"
cat >"$TEST_TMP/p1.yaml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: p1
    source: { type: postgres, dsn: "$(dsn one)", tables: [public.t] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
odsync_start "$TEST_TMP/p1.yaml" "$LOG"
deadline=$(($(date +%s) + 60))
until [[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM t" 2>/dev/null) == 100 ]]; do
  odsync_running || fail "p1 exited"
  (($(date +%s) < deadline)) || fail "p1 did not copy t"
  sleep 0.5
done
odsync_stop
expect_refused p2 "source table public.t of pipeline p2 would be written to table t, which already holds source table public.t of pipeline p1"
"$OD_COMPARE" --pg "$(dsn one)" --sqlite "$SINK_DB" --table public.t

log "3. PostgreSQL sink, schema: flat with a.dup and b.dup"
expect_refused flat "source tables a.dup and b.dup would both be written to table flat.dup"
[[ $(dst_psql -c "SELECT to_regclass('flat.dup') IS NULL") == t ]] || fail "flat.dup was made"

log "4. PostgreSQL sink: two pipelines from two databases into one target"
cat >"$TEST_TMP/q1.yaml" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: q1
    source: { type: postgres, dsn: "$(dsn one)", tables: [public.t] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
odsync_start "$TEST_TMP/q1.yaml" "$LOG"
deadline=$(($(date +%s) + 60))
until "$OD_COMPARE_PG" --source "$(dsn one)" --target "$DST_DSN" --table public.t >/dev/null 2>&1; do
  odsync_running || fail "q1 exited"
  (($(date +%s) < deadline)) || fail "q1 did not copy t"
  sleep 0.5
done
odsync_stop
expect_refused q2 "source table public.t of pipeline q2 would be written to table public.t, which already holds source table public.t of pipeline q1"
"$OD_COMPARE_PG" --source "$(dsn one)" --target "$DST_DSN" --table public.t
log "every collision was refused before anything was written"
