#!/usr/bin/env bash
# sink_unwritable_types.sh — built-in types that no server accepts as input (pg_node_tree, the type
# of pg_rewrite.ev_action and pg_class.relpartbound) reach both sinks as text.
#
# Tables made with CREATE TABLE ... AS SELECT from pg_rewrite and pg_class (keyed and keyless) are
# copied by the initial snapshot and then changed through the stream (rows of new views and
# partitions inserted, updated, deleted) into SQLite, PostgreSQL bulk: true and bulk: false.
# Asserts: every pipeline keeps running, no ERROR is logged, each sink equals the source row for
# row (od_compare / od_compare_pg, which accept text on the target for these types), and the
# PostgreSQL sink's column is of type text. Before the fix the PostgreSQL sink failed with
# "cannot accept a value of type pg_node_tree (SQLSTATE 0A000)".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_unwritable_types
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair cat bulkon
dst_psql -c "CREATE DATABASE bulkoff"
DST2_DSN="host=127.0.0.1 port=$DST_PORT dbname=bulkoff user=postgres"
SINK_DB=$TEST_TMP/cat.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE VIEW v1 AS SELECT 1 AS one, 'x'::text AS two;
CREATE TABLE rules AS SELECT oid::int8 AS id, rulename::text AS rulename, ev_action FROM pg_rewrite;
ALTER TABLE rules ADD PRIMARY KEY (id);
CREATE TABLE classes AS SELECT relname::text AS relname, relpartbound FROM pg_class WHERE relpartbound IS NOT NULL;
ALTER TABLE classes REPLICA IDENTITY FULL;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: tosqlite
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.rules, public.classes] }
    sink: { type: sqlite, path: $SINK_DB }
  - name: bulkon
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.rules, public.classes] }
    sink: { type: postgres, dsn: "$DST_DSN", bulk: true }
  - name: bulkoff
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.rules, public.classes] }
    sink: { type: postgres, dsn: "$DST2_DSN", bulk: false }
YAML

T=(--table public.rules --table public.classes)
all_equal() {
  compare "${T[@]}" >/dev/null 2>&1 && "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${T[@]}" >/dev/null 2>&1 &&
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN" "${T[@]}" >/dev/null 2>&1
}
wait_all_equal() {
  local what=$1 deadline=$(($(date +%s) + 60))
  until all_equal; do
    odsync_running || fail "odsync exited ($what)"
    if (($(date +%s) >= deadline)); then
      compare "${T[@]}" || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${T[@]}" || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN" "${T[@]}" || true
      fail "a sink is not equal to the source after 60 s ($what)"
    fi
    sleep 1
  done
  compare "${T[@]}"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${T[@]}"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN" "${T[@]}"
}

n=$(pg_psql -c "SELECT count(*) FROM rules WHERE ev_action IS NOT NULL")
((n > 10)) || fail "expected pg_node_tree values in rules, found $n"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_tosqlite 60
wait_slot_active odsync_bulkon 60
wait_slot_active odsync_bulkoff 60
wait_all_equal "after the initial snapshot"

pg_psql <<'SQL'
CREATE VIEW v2 AS SELECT 2 AS two, now() AS at;
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20);
INSERT INTO rules SELECT oid::int8, rulename::text, ev_action FROM pg_rewrite WHERE oid NOT IN (SELECT id FROM rules);
UPDATE rules SET ev_action = (SELECT ev_action FROM pg_rewrite WHERE rulename = '_RETURN' ORDER BY oid DESC LIMIT 1)
  WHERE id IN (SELECT id FROM rules ORDER BY id LIMIT 3);
DELETE FROM rules WHERE id IN (SELECT id FROM rules ORDER BY id DESC LIMIT 2 OFFSET 1);
INSERT INTO classes SELECT relname::text, relpartbound FROM pg_class WHERE relname = 'parted_2';
UPDATE classes SET relname = 'renamed' WHERE relname = 'parted_1';
SQL
wait_all_equal "after the stream"
for dsn in "$DST_DSN" "$DST2_DSN"; do
  t=$(psql -X -At -d "$dsn" -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.rules'::regclass AND attname = 'ev_action'")
  [[ $t == text ]] || fail "rules.ev_action is $t on the target, expected text"
done
odsync_stop
if grep -q "ERROR" "$LOG"; then fail "odsync logged an error"; fi
log "pg_node_tree columns reached both sinks as text, snapshot and stream"
