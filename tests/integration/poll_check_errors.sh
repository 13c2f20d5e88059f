#!/usr/bin/env bash
# poll_check_errors.sh — what `odsync check` and `odsync run` say when a query-based source is
# misconfigured, for postgres_poll, postgres_trigger and sqlite_poll.
#
# Asserts (each: non-zero exit and a message naming the table/column/key and what to do):
#  - postgres_poll: a watermark column missing in one table; a watermark column that is not a
#    timestamp; a table without a primary key; a deleted_column that is not boolean; a changed
#    watermark mode against a sink that holds the other mode's checkpoint (run stops, names both); an
#    unknown reconcile_mode; checksum reconciliation whose key ledger cannot be written (state_dir);
#  - postgres_trigger: install-triggers on a config without such a source (exit 2);
#  - sqlite_poll: 12 tables (more than a position holds); a table missing in the file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init poll_check_errors
pg_start shop
pg_psql <<'SQL'
CREATE TABLE a (id int PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now(), deleted bool NOT NULL DEFAULT false);
CREATE TABLE b (id int PRIMARY KEY, v text, deleted int);
CREATE TABLE c (id int PRIMARY KEY, updated_at int);
CREATE TABLE nokey (v text, updated_at timestamptz);
INSERT INTO a VALUES (1);
SQL
CONFIG=$TEST_TMP/odsync.yaml
expect_fail() { # CMD PATTERN WHAT
  local out rc=0
  out=$("$ODSYNC_BIN" "$1" -c "$CONFIG" 2>&1) || rc=$?
  ((rc != 0)) || fail "$3: odsync $1 succeeded: $out"
  [[ "$out" == *"$2"* ]] || fail "$3: the message does not say '$2': $out"
  log "$3: ok ($rc)"
}
source_yaml() {
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: p
    source: { $1 }
    sink: { type: sqlite, path: $TEST_TMP/sink.db }
YAML
}
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a, b], watermark: updated_at"
expect_fail check "table public.b has no column updated_at (source.watermark)" "missing watermark column"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [c], watermark: updated_at"
expect_fail check "watermark column updated_at is of type integer; it must be a timestamp" "non-timestamp watermark"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [nokey]"
expect_fail check "table public.nokey has no primary key" "table without a key"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a, b], deleted_column: deleted"
expect_fail check "table public.b has no boolean column deleted (source.deleted_column)" "non-boolean deleted_column"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a], watermark: xmin, interval_ms: 100"
"$ODSYNC_BIN" check -c "$CONFIG" >/dev/null || fail "a valid postgres_poll config fails check"
odsync_start "$CONFIG" "$TEST_TMP/run.log"
wait_for "[[ \$(sqlite3 $TEST_TMP/sink.db 'SELECT count(*) FROM a' 2>/dev/null) == 1 ]]" 60 || fail "row did not arrive"
pg_psql -c "INSERT INTO a VALUES (2)"
wait_for "[[ \$(sqlite3 $TEST_TMP/sink.db 'SELECT count(*) FROM a' 2>/dev/null) == 2 ]]" 60 || fail "second row did not arrive"
odsync_stop
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a], watermark: updated_at"
expect_fail run "the sinks hold a xmin horizon but source.watermark is updated_at" "changed watermark mode"
expect_fail install-triggers "has a source of type postgres_trigger" "install-triggers without a trigger source"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a], reconcile_interval_ms: 1000, reconcile_mode: fast"
expect_fail check "reconcile_mode: 'fast' is not a mode; use checksum" "unknown reconcile_mode"
source_yaml "type: postgres_poll, dsn: \"$(pg_dsn)\", tables: [a], reconcile_interval_ms: 1000"
: >"$TEST_TMP/not-a-dir"
sed -i "s|^state_dir: .*|state_dir: $TEST_TMP/not-a-dir|" "$CONFIG"
expect_fail check "the key ledger of checksum reconciliation, $TEST_TMP/not-a-dir/postgres_poll/p.keys, cannot be written" \
  "checksum reconciliation with an unwritable state_dir"
tables=$(printf 't%d, ' $(seq 1 12))
source_yaml "type: sqlite_poll, path: $TEST_TMP/src.db, tables: [${tables%, }]"
expect_fail check "sqlite_poll needs \`tables:\` with 1 to 11 tables" "sqlite_poll with 12 tables"
sqlite3 "$TEST_TMP/src.db" "CREATE TABLE t1 (id INTEGER PRIMARY KEY, version INTEGER)"
source_yaml "type: sqlite_poll, path: $TEST_TMP/src.db, tables: [t1, t2], watermark: version"
expect_fail check "table t2 does not exist in $TEST_TMP/src.db" "sqlite_poll missing table"
log "ok"
