#!/usr/bin/env bash
# key_changes.sh — a primary key dropped at the source stops the pipeline with an error naming the
# table and both keys, in both sinks (SQLite and PostgreSQL; two pipelines of one process),
# instead of later failing with misleading errors (duplicate key, not-null violation).
#
# Asserts:
#  after ALTER TABLE k DROP CONSTRAINT k_pkey (REPLICA IDENTITY FULL) and a row whose id
#  duplicates an existing one, odsync exits non-zero; each pipeline's error names table k and
#  "key changed from (id) to ()"; neither sink holds the duplicate (the transaction is not applied),
#  and a table changed in an earlier transaction arrived.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init key_changes
pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SINK_DB=$TEST_TMP/lite.db
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: sqlite, path: $SINK_DB }
  - name: pgs
    source: { type: postgres, dsn: "$SRC_DSN" }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
pg_psql <<'SQL'
CREATE TABLE k (id int PRIMARY KEY, v text);
CREATE TABLE other (id int PRIMARY KEY);
INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 5) g;
SQL
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_lite 60
wait_slot_active odsync_pgs 60
pg_psql -c "INSERT INTO other VALUES (1)"
pg_psql -c "ALTER TABLE k DROP CONSTRAINT k_pkey; ALTER TABLE k REPLICA IDENTITY FULL"
pg_psql -c "INSERT INTO k VALUES (1, 'duplicate id')"
wait_for "! odsync_running" 60 || fail "odsync keeps running after the source's key was dropped"
rc=0
wait "$ODSYNC_PID" || rc=$?
ODSYNC_PID=
((rc != 0)) || fail "odsync exited 0"
grep -q "ERROR pipeline lite: .*table k: the source's row key changed from (id) to ()" "$LOG" ||
  fail "SQLite pipeline: no error naming both keys: $(grep ERROR "$LOG" | head -3)"
grep -q "ERROR pipeline pgs: .*table public.k: the source's row key changed from (id) to ()" "$LOG" ||
  fail "PostgreSQL pipeline: no error naming both keys: $(grep ERROR "$LOG" | head -3)"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM k") == 5 ]] || fail "SQLite sink: k changed"
[[ $(PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c "SELECT count(*) FROM k") == 5 ]] || fail "PostgreSQL sink: k changed"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM other") == 1 ]] || fail "SQLite sink: the earlier transaction is missing"
log "ok"
