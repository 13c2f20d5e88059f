#!/usr/bin/env bash
# pg_sink_user_types.sh — target tables that already exist in the PostgreSQL sink with the source's
# user-defined types: the sink resolves them on the target by name (source type OIDs mean nothing
# there), in the initial snapshot, the stream and an incremental snapshot, with bulk: true and
# bulk: false.
#
# Source and both targets (databases ton, toff) have the composite type pair, a domain over it
# (dpair), an enum, and the tables
#   comp  id int primary key, cp pair, dp dpair, arr pair[], mood mood
#   ckey  k pair primary key, v text                 (a composite key)
#   kl    cp pair, v text, REPLICA IDENTITY FULL     (keyless, matched on the whole row)
# created by hand on the targets with the real types. Rows exist before odsync starts (initial
# snapshot), then inserts, updates (of composite values and of composite keys), deletes stream, and
# `odsync snapshot --table` re-copies comp and ckey (their rows go through the apply path).
# Asserts: no ERROR, both targets equal the source row for row (od_compare_pg: same format_type,
# same text of every value) after each step, and the target columns kept their types. Before the
# fix: `column "cp" is of type pair but expression is of type integer` (set-based upsert),
# `operator does not exist: pair = integer` (set-based delete), `input of anonymous composite
# types is not implemented` (bulk: false), keyless updates failing in both modes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_sink_user_types
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair src ton
dst_psql -c "CREATE DATABASE toff"
DSN_ON=$DST_DSN
DSN_OFF="host=127.0.0.1 port=$DST_PORT dbname=toff user=postgres"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

DDL=$(cat <<'SQL'
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN dpair AS pair CHECK ((VALUE).a IS NOT NULL);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE comp (id int PRIMARY KEY, cp pair, dp dpair, arr pair[], mood mood);
CREATE TABLE ckey (k pair PRIMARY KEY, v text);
CREATE TABLE kl (cp pair, v text);
ALTER TABLE kl REPLICA IDENTITY FULL;
SQL
)
pg_psql -c "$DDL"
psql -X -q -v ON_ERROR_STOP=1 -d "$DSN_ON" -c "$DDL"
psql -X -q -v ON_ERROR_STOP=1 -d "$DSN_OFF" -c "$DDL"
pg_psql <<'SQL'
INSERT INTO comp SELECT g, ROW(g, 'b' || g)::pair, ROW(g, 'd "q"')::pair, ARRAY[ROW(g, 'x,y')::pair, NULL], 'ok'
  FROM generate_series(1, 300) g;
INSERT INTO ckey SELECT ROW(g, 'k' || g)::pair, 'v' || g FROM generate_series(1, 300) g;
INSERT INTO kl SELECT ROW(g % 5, 'dup')::pair, 'v' FROM generate_series(1, 20) g;
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: ton
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.comp, public.ckey, public.kl] }
    sink: { type: postgres, dsn: "$DSN_ON", bulk: true }
  - name: toff
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.comp, public.ckey, public.kl] }
    sink: { type: postgres, dsn: "$DSN_OFF", bulk: false }
YAML
T=(--table public.comp --table public.ckey --table public.kl)
equal() {
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_ON" "${T[@]}" >/dev/null 2>&1 &&
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_OFF" "${T[@]}" >/dev/null 2>&1
}
wait_both() {
  local what=$1 deadline=$(($(date +%s) + 60))
  until equal; do
    odsync_running || fail "odsync exited ($what)"
    if (($(date +%s) >= deadline)); then
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_ON" "${T[@]}" || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_OFF" "${T[@]}" || true
      fail "targets not equal after 60 s ($what)"
    fi
    sleep 1
  done
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_ON" "${T[@]}"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DSN_OFF" "${T[@]}"
  log "equal: $what"
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_ton 60
wait_slot_active odsync_toff 60
wait_both "initial snapshot"

pg_psql <<'SQL'
INSERT INTO comp SELECT g, ROW(g, 'n')::pair, ROW(-g, '')::pair, ARRAY[ROW(1, NULL)::pair], 'happy' FROM generate_series(301, 400) g;
UPDATE comp SET cp = ROW((cp).a * 10, 'upd')::pair, mood = 'sad' WHERE id % 3 = 0;
UPDATE comp SET dp = ROW(7, 'seven')::pair WHERE id % 5 = 0;
DELETE FROM comp WHERE id % 11 = 0;
INSERT INTO ckey SELECT ROW(g, 'k' || g)::pair, 'new' FROM generate_series(301, 350) g;
UPDATE ckey SET v = 'changed' WHERE (k).a % 4 = 0;
UPDATE ckey SET k = ROW((k).a + 1000, 'moved')::pair WHERE (k).a % 9 = 0;
DELETE FROM ckey WHERE (k).a % 13 = 0;
UPDATE kl SET v = 'one' WHERE ctid = (SELECT ctid FROM kl WHERE (cp).a = 2 LIMIT 1);
UPDATE kl SET cp = ROW(99, 'changed')::pair WHERE (cp).a = 3;
DELETE FROM kl WHERE ctid = (SELECT ctid FROM kl WHERE (cp).a = 4 LIMIT 1);
INSERT INTO kl VALUES (ROW(1, 'dup')::pair, 'v');
SQL
wait_both "stream"

for p in ton toff; do
  "$ODSYNC_BIN" snapshot -c "$CONFIG" -p "$p" --table public.comp --table public.ckey || fail "odsync snapshot -p $p"
done
pg_psql -c "UPDATE comp SET cp = ROW(1, 'after')::pair WHERE id < 10; DELETE FROM ckey WHERE (k).a < 5"
deadline=$(($(date +%s) + 60))
until [[ $(grep -c "incremental snapshot of public.c[a-z]*: done\|incremental snapshot of public.c[a-z]* done" "$LOG") -ge 4 ]]; do
  odsync_running || fail "odsync exited during the incremental snapshots"
  (($(date +%s) < deadline)) || fail "the incremental snapshots did not finish"
  sleep 1
done
wait_both "incremental snapshot"
odsync_stop
for dsn in "$DSN_ON" "$DSN_OFF"; do
  types=$(psql -X -At -d "$dsn" -c "SELECT string_agg(attrelid::regclass || '.' || attname || ':' || format_type(atttypid, atttypmod), ' ' ORDER BY attrelid::regclass::text, attnum) FROM pg_attribute WHERE attrelid IN ('comp'::regclass, 'ckey'::regclass, 'kl'::regclass) AND attnum > 0")
  [[ $types == "ckey.k:pair ckey.v:text comp.id:integer comp.cp:pair comp.dp:dpair comp.arr:pair[] comp.mood:mood kl.cp:pair kl.v:text" ]] ||
    fail "target column types changed: $types"
done
if grep -q "ERROR" "$LOG"; then fail "odsync logged an error"; fi
log "user-defined types in existing targets: snapshot, stream and incremental snapshot, bulk on and off"
