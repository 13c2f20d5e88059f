#!/usr/bin/env bash
# ddl_while_behind.sh — schema history and table lifecycles when odsync is behind the DDL: odsync
# is stopped, the source goes through a series of renames, adds, type changes and drop-recreates
# (with rows written under every shape), then odsync starts and catches up from the WAL, reading
# today's catalog for shapes of the past. Two pipelines of one process, into SQLite and into a
# PostgreSQL sink on a second server (schema_changes: apply, FOR ALL TABLES).
#
# Asserts:
#  after catching up, both sinks equal the source row for row (od_compare, od_compare_pg), with
#  the source's final column names, for:
#    a_star: RENAME COLUMN a TO aa, then ADD COLUMN a text under the old name (the history's
#      version for the old shape keeps type_oid 23 with attnum 2, the new a is text, attnum 4);
#    poly: RENAME COLUMN f TO f_old, ADD COLUMN f polygon (the old f keeps integer);
#    kept: ADD COLUMN n int, RENAME n TO m, ALTER m TYPE bigint USING m::bigint (values that need
#      bigint written afterwards), ALTER v varchar(10) -> text;
#    same: rows inserted, then DROP TABLE and CREATE TABLE with the same shape and other rows, all
#      in the backlog of one start: the sinks hold only the new table's rows;
#    grown: DROP and CREATE with one more column;
#    bits: DROP and CREATE with bit(11) -> bit(16) (a change no sink can make by altering: the sink
#      table is dropped and created again in the transaction that first writes the new table);
#  odsync keeps running (no stop) and logs the re-creations;
#  schema_changes: stop, then a drop-recreate of `same`: odsync exits non-zero naming the table and
#  the way out (schema_changes: apply), the sinks keep the old rows; with apply again it catches
#  up and both sinks are equal;
#  ALTER TABLE ... RENAME TO while running: a warning naming both names and `odsync snapshot`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init ddl_while_behind
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SINK_DB=$TEST_TMP/lite.db

config() { # config POLICY
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: sqlite, path: $SINK_DB }
    schema_changes: $1
  - name: pgs
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: postgres, dsn: "$DST_DSN" }
    schema_changes: $1
YAML
}

both_equal() { # both_equal TIMEOUT: both sinks equal the source
  local timeout=$1 deadline out1 out2
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out1=$(compare 2>&1) && out2=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" 2>&1); then
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      echo "sqlite: $out1" >&2
      echo "postgres: $(("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" 2>&1) || true)" >&2
      tail -30 "$LOG" >&2
      fail "sinks not equal to the source after ${timeout}s (reports above)"
    fi
    odsync_running || { tail -30 "$LOG" >&2; fail "odsync exited while catching up"; }
    sleep 1
  done
}

log "source on port $SRC_PORT, PostgreSQL sink on port $DST_PORT"
pg_psql <<'SQL'
CREATE TABLE a_star (id int PRIMARY KEY, a int, b text);
CREATE TABLE poly (id int PRIMARY KEY, f int);
CREATE TABLE kept (id int PRIMARY KEY, v varchar(10));
CREATE TABLE same (id int PRIMARY KEY, v text);
CREATE TABLE grown (id int PRIMARY KEY, v text);
CREATE TABLE bits (id int PRIMARY KEY, flags bit(11));
INSERT INTO bits VALUES (1, B'10101010101'), (2, B'00000000001');
INSERT INTO a_star SELECT g, g, 'b' || g FROM generate_series(1, 20) g;
INSERT INTO poly SELECT g, g * 10 FROM generate_series(1, 10) g;
INSERT INTO kept SELECT g, 'k' || g FROM generate_series(1, 10) g;
INSERT INTO same SELECT g, 'old ' || g FROM generate_series(1, 10) g;
INSERT INTO grown SELECT g, 'old ' || g FROM generate_series(1, 10) g;
SQL
config apply
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_lite 60
wait_slot_active odsync_pgs 60
both_equal 90
odsync_stop

log "odsync stopped; DDL and rows under every shape"
pg_psql <<'SQL'
UPDATE a_star SET a = a + 100 WHERE id <= 5;
ALTER TABLE a_star RENAME COLUMN a TO aa;
UPDATE a_star SET aa = aa + 1000 WHERE id BETWEEN 6 AND 10;
ALTER TABLE a_star ADD COLUMN a text;
UPDATE a_star SET a = 'text ' || id WHERE id BETWEEN 8 AND 12;
INSERT INTO a_star VALUES (21, 21, 'b21', 'twenty-one');

UPDATE poly SET f = f + 1 WHERE id <= 3;
ALTER TABLE poly RENAME COLUMN f TO f_old;
ALTER TABLE poly ADD COLUMN f polygon;
UPDATE poly SET f = '((1,3),(2,4))' WHERE id BETWEEN 2 AND 5;
INSERT INTO poly VALUES (11, 110, '((0,0),(1,1),(2,0))');

ALTER TABLE kept ADD COLUMN n int;
UPDATE kept SET n = id WHERE id <= 4;
ALTER TABLE kept RENAME COLUMN n TO m;
UPDATE kept SET m = m + 1 WHERE id <= 2;
ALTER TABLE kept ALTER COLUMN m TYPE bigint USING m::bigint;
UPDATE kept SET m = 9000000000 + id WHERE id BETWEEN 3 AND 6;
ALTER TABLE kept ALTER COLUMN v TYPE text;
UPDATE kept SET v = 'longer than ten characters' WHERE id = 7;

INSERT INTO same VALUES (11, 'old 11');
UPDATE same SET v = 'old changed' WHERE id = 1;
DROP TABLE same;
CREATE TABLE same (id int PRIMARY KEY, v text);
INSERT INTO same VALUES (1, 'new 1'), (100, 'new 100');

UPDATE grown SET v = 'old changed' WHERE id = 2;
DROP TABLE grown;
CREATE TABLE grown (id int PRIMARY KEY, v text, w int);
INSERT INTO grown VALUES (5, 'new 5', 5), (50, 'new 50', NULL);

UPDATE bits SET flags = B'11111111111' WHERE id = 1;
DROP TABLE bits;
CREATE TABLE bits (id int PRIMARY KEY, flags bit(16));
INSERT INTO bits VALUES (3, B'1010101010101010');
SQL

log "odsync started: catching up"
odsync_start "$CONFIG" "$LOG"
both_equal 120
odsync_running || fail "odsync exited"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM \"same\"") == 2 ]] || fail "SQLite sink: same holds rows of the dropped table"
[[ $(dst_psql -c "SELECT count(*) FROM same") == 2 ]] || fail "PostgreSQL sink: same holds rows of the dropped table"
[[ $(dst_psql -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.a_star'::regclass AND attname = 'aa'") == integer ]] ||
  fail "PostgreSQL sink: a_star.aa is not integer"
[[ $(dst_psql -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.poly'::regclass AND attname = 'f'") == polygon ]] ||
  fail "PostgreSQL sink: poly.f is not polygon"
hist=$TEST_TMP/state/pgs.schema.jsonl
grep '"table":"public.a_star"' "$hist" | grep_q '{"name":"a","type":"integer","type_oid":23,"typmod":-1,"attnum":2' ||
  fail "history: the old a_star.a is not integer attnum 2: $(grep a_star "$hist")"
grep '"table":"public.a_star"' "$hist" | grep_q '{"name":"a","type":"text","type_oid":25,"typmod":-1,"attnum":4' ||
  fail "history: the new a_star.a is not text attnum 4: $(grep a_star "$hist")"
if grep '"table":"public.a_star"' "$hist" | grep_q '"name":"a","type":"text","type_oid":23'; then
  fail "history: a_star.a recorded with the new column's type name and the old type oid"
fi
grep -q "table public.same: schema version .*dropped and re-created" "$LOG" || fail "the re-creation of same is not logged"
grep -q "table public.grown: schema version .*dropped and re-created" "$LOG" || fail "the re-creation of grown is not logged"
[[ $(dst_psql -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.bits'::regclass AND attname = 'flags'") == "bit(16)" ]] ||
  fail "PostgreSQL sink: bits.flags is not bit(16)"
grep -q "postgres sink .*table public.bits starts over" "$LOG" || fail "the PostgreSQL sink does not say bits starts over"
grep -q "sqlite sink .*table bits starts over" "$LOG" || fail "the SQLite sink does not say bits starts over"
if grep -E "ERROR|retrying" "$LOG"; then fail "odsync logged errors or retried while catching up"; fi

log "schema_changes: stop, and a re-creation"
odsync_stop
config stop
pg_psql -c "DROP TABLE same; CREATE TABLE same (id int PRIMARY KEY, v text); INSERT INTO same VALUES (7, 'newer 7')"
odsync_start "$CONFIG" "$LOG"
wait_for "! odsync_running" 60 || fail "odsync keeps running after a re-creation under schema_changes: stop"
rc=0
wait "$ODSYNC_PID" || rc=$?
ODSYNC_PID=
((rc != 0)) || fail "odsync exited 0 after refusing a re-creation"
grep -q "table public.same was dropped and re-created on the source .*set schema_changes: apply" "$LOG" ||
  fail "the stop does not name the table and the way out"
[[ $(sqlite3 "$SINK_DB" "SELECT group_concat(id) FROM (SELECT id FROM \"same\" ORDER BY id)") == "1,100" ]] ||
  fail "SQLite sink: same changed under schema_changes: stop"
config apply
odsync_start "$CONFIG" "$LOG"
both_equal 90
[[ $(dst_psql -c "SELECT string_agg(id::text, ',') FROM same") == 7 ]] || fail "PostgreSQL sink: same is not the newest table"

log "RENAME TO while running"
pg_psql -c "ALTER TABLE kept RENAME TO kept2; INSERT INTO kept2 (id, v) VALUES (99, 'after rename')"
wait_for "grep -q 'table public.kept is now named public.kept2 at the source.*odsync snapshot -p [a-z]* -t public.kept2' '$LOG'" 60 ||
  fail "no warning for the renamed table"
odsync_stop
log "ok"
[[ -z "${DEBUG_KEEP_LOG:-}" ]] || cp "$LOG" "$DEBUG_KEEP_LOG"
