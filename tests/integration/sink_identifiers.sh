#!/usr/bin/env bash
# sink_identifiers.sh — identifiers the apply path writes, in every position, in both sinks.
#
# Tables and columns named excluded, new, old, u, c1, odsync_target, with capitals, spaces, double
# quotes, unicode, a schema with a space, and 63-byte table and column names (PostgreSQL's limit),
# keyed and keyless, are copied by the initial snapshot (SQLite: upserts; PostgreSQL: COPY bulk
# load) and then changed through the stream (inserts, updates of non-key and key columns, deletes)
# into three sinks at once: SQLite, PostgreSQL with bulk: true (set-based upsert/delete) and
# PostgreSQL with bulk: false (one statement per change).
# Asserts: every pipeline keeps running and each sink equals the source row for row (od_compare,
# od_compare_pg), after the snapshot and after the stream. Before the fix the PostgreSQL sink failed
# on the table "excluded" with "table reference "excluded" is ambiguous" (42P09) and SQLite's upsert
# on it wrote the wrong values.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_identifiers
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair names bulkon
dst_psql -c "CREATE DATABASE bulkoff"
DST2_DSN="host=127.0.0.1 port=$DST_PORT dbname=bulkoff user=postgres"
SINK_DB=$TEST_TMP/sink/names.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
L63=t23456789012345678901234567890123456789012345678901234567890123
C63=c23456789012345678901234567890123456789012345678901234567890123

pg_psql <<SQL
CREATE TABLE excluded (id int PRIMARY KEY, "excluded" text, "new" int, "old" int);
CREATE TABLE "new" (id int PRIMARY KEY, v text);
CREATE TABLE "old" ("Key" int PRIMARY KEY, u text, c1 text);
CREATE TABLE "ExcludedCaps" ("EXCLUDED" int PRIMARY KEY, "odsync_target" text);
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."Orders ""2024""" ("Order Id" int PRIMARY KEY, "Näme" text, "quo""te" text);
CREATE TABLE "tablé_ü" ("ключ" int PRIMARY KEY, "値" text);
CREATE TABLE $L63 ($C63 int PRIMARY KEY, "v v" text);
CREATE TABLE u (id int, v text);
ALTER TABLE u REPLICA IDENTITY FULL;
CREATE TABLE odsync_target (id int, k2 text, v text, PRIMARY KEY (id, k2));
INSERT INTO excluded SELECT g, 'e' || g, g, -g FROM generate_series(1, 50) g;
INSERT INTO "new" SELECT g, 'n' || g FROM generate_series(1, 50) g;
INSERT INTO "old" SELECT g, 'u' || g, 'c' || g FROM generate_series(1, 50) g;
INSERT INTO "ExcludedCaps" SELECT g, 'x' || g FROM generate_series(1, 50) g;
INSERT INTO "Sales Dept"."Orders ""2024""" SELECT g, 'ä' || g, '"' || g FROM generate_series(1, 50) g;
INSERT INTO "tablé_ü" SELECT g, '値' || g FROM generate_series(1, 50) g;
INSERT INTO $L63 SELECT g, 'l' || g FROM generate_series(1, 50) g;
INSERT INTO u SELECT g % 7, 'k' || g FROM generate_series(1, 50) g;
INSERT INTO odsync_target SELECT g, 'k' || g, 'v' || g FROM generate_series(1, 50) g;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: tosqlite
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: sqlite, path: $SINK_DB }
  - name: bulkon
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: postgres, dsn: "$DST_DSN", bulk: true }
  - name: bulkoff
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: postgres, dsn: "$DST2_DSN", bulk: false }
YAML

all_equal() {
  compare >/dev/null 2>&1 && "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" >/dev/null 2>&1 &&
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN" >/dev/null 2>&1
}
wait_all_equal() {
  local what=$1 deadline=$(($(date +%s) + 60))
  until all_equal; do
    odsync_running || fail "odsync exited ($what)"
    if (($(date +%s) >= deadline)); then
      compare || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" || true
      "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN" || true
      fail "a sink is not equal to the source after 60 s ($what)"
    fi
    sleep 1
  done
  compare
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN"
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST2_DSN"
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_tosqlite 60
wait_slot_active odsync_bulkon 60
wait_slot_active odsync_bulkoff 60
wait_all_equal "after the initial snapshot"
log "snapshot equal in all three sinks; streaming changes"

pg_psql <<SQL
BEGIN;
INSERT INTO excluded SELECT g, 'e' || g, g, -g FROM generate_series(51, 80) g;
UPDATE excluded SET "excluded" = 'changed', "new" = "new" + 1000 WHERE id % 3 = 0;
DELETE FROM excluded WHERE id % 10 = 0;
UPDATE excluded SET id = id + 1000 WHERE id = 7;
COMMIT;
INSERT INTO "new" SELECT g, 'n' || g FROM generate_series(51, 80) g;
UPDATE "new" SET v = 'N' WHERE id < 20;
DELETE FROM "new" WHERE id > 75;
UPDATE "old" SET u = NULL, c1 = 'C' WHERE "Key" % 2 = 0;
INSERT INTO "old" VALUES (500, 'x', 'y') ON CONFLICT ("Key") DO UPDATE SET u = 'z';
UPDATE "ExcludedCaps" SET "odsync_target" = 'upd' WHERE "EXCLUDED" < 10;
DELETE FROM "ExcludedCaps" WHERE "EXCLUDED" > 45;
UPDATE "Sales Dept"."Orders ""2024""" SET "quo""te" = '""' WHERE "Order Id" < 25;
UPDATE "Sales Dept"."Orders ""2024""" SET "Order Id" = "Order Id" + 100 WHERE "Order Id" = 30;
INSERT INTO "tablé_ü" VALUES (1000, 'ü');
DELETE FROM "tablé_ü" WHERE "ключ" < 5;
UPDATE $L63 SET "v v" = 'w' WHERE $C63 > 40;
DELETE FROM $L63 WHERE $C63 = 1;
INSERT INTO u VALUES (1, 'again'), (1, 'again');
UPDATE u SET v = 'one of them' WHERE ctid = (SELECT ctid FROM u WHERE id = 3 LIMIT 1);
DELETE FROM u WHERE ctid = (SELECT ctid FROM u WHERE id = 4 LIMIT 1);
INSERT INTO odsync_target SELECT g, 'k' || g, 'v' || g FROM generate_series(51, 60) g;
UPDATE odsync_target SET v = 'w' WHERE id % 4 = 0;
DELETE FROM odsync_target WHERE id % 5 = 0;
SQL
wait_all_equal "after the stream"
odsync_stop
grep -q "ERROR" "$LOG" && fail "odsync logged an error (see $LOG)"
log "every identifier went through both sinks, snapshot and stream"
