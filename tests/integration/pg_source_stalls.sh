#!/usr/bin/env bash
# pg_source_stalls.sh — source failures that used to retry at WARN forever (or leave a slot
# behind) end their pipeline with an error that names the fix, and a failed pipeline ends alone.
#
# Asserts:
#  two pipelines in one process (databases shop and other, SQLite sinks): DROP PUBLICATION of
#  pipeline b and a write: b ends with an ERROR naming the publication, the slot and
#  pg_drop_replication_slot, without retrying; pipeline a keeps running and replicating (its sink
#  equals the source after more writes); on SIGTERM the process exits 1 (a pipeline failed);
#  a dropped slot (pipeline a, sink holding a checkpoint): odsync exits non-zero naming the slot and
#  the way out, and creates no slot;
#  a wrong password (scram-sha-256 in pg_hba.conf): exits non-zero within 30 s, naming the refused
#  login and source.dsn, without the password in its output;
#  a closed port: exits non-zero after a bounded number of attempts (reconnect_max_ms: 500), saying
#  it never connected.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_source_stalls
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
pg_psql -d postgres -c "CREATE DATABASE other"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

two_pipelines() {
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: a
    source: { type: postgres, dsn: "$(pg_dsn shop)" }
    sink: { type: sqlite, path: $TEST_TMP/a.db }
  - name: b
    source: { type: postgres, dsn: "$(pg_dsn other)" }
    sink: { type: sqlite, path: $TEST_TMP/b.db }
YAML
}
one_pipeline() { # one_pipeline DSN [EXTRA]
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: a
    source: { type: postgres, dsn: "$1" ${2:-} }
    sink: { type: sqlite, path: $TEST_TMP/a.db }
YAML
}
# exits_within SECONDS: odsync ends by itself in time; its exit status into $rc
exits_within() {
  wait_for "! odsync_running" "$1" || fail "odsync still running after $1 s (log: $(tail -3 "$LOG"))"
  rc=0
  wait "$ODSYNC_PID" || rc=$?
  ODSYNC_PID=
}

pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
pg_psql -d other -c "CREATE TABLE u (id int PRIMARY KEY, v text)"
two_pipelines
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_a 60
wait_slot_active odsync_b 60
pg_psql -c "INSERT INTO t VALUES (1, 'one')"
pg_psql -d other -c "INSERT INTO u VALUES (1, 'one')"
SINK_DB=$TEST_TMP/a.db wait_equal 60 >/dev/null

log "dropped publication (pipeline b)"
pg_psql -d other -c "DROP PUBLICATION odsync_b; INSERT INTO u VALUES (2, 'two')"
wait_for "grep -q 'ERROR pipeline b: .*publication \"odsync_b\" does not exist.*pg_drop_replication_slot' '$LOG'" 60 ||
  fail "pipeline b did not fail naming the publication and the fix: $(grep 'pipeline b' "$LOG" | tail -3)"
if grep -q "pipeline b: .*; retrying in" "$LOG"; then fail "pipeline b retried a dropped publication"; fi
odsync_running || fail "the process ended with pipeline b; pipeline a must go on"
pg_psql -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(2, 50) g"
SINK_DB=$TEST_TMP/a.db wait_equal 60 >/dev/null
kill -TERM "$ODSYNC_PID"
exits_within 60
[[ $rc == 1 ]] || fail "exit status $rc after SIGTERM with a failed pipeline (expected 1)"
wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_b'\") == f ]]" 30 ||
  fail "slot odsync_b still active after odsync exited"
pg_psql -d other -c "SELECT pg_drop_replication_slot('odsync_b')" >/dev/null

log "dropped slot (pipeline a, sink with a checkpoint)"
one_pipeline "$(pg_dsn shop)"
wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_a'\") == f ]]" 30 ||
  fail "slot odsync_a still active after odsync exited"
pg_psql -c "SELECT pg_drop_replication_slot('odsync_a')" >/dev/null
pg_psql -c "INSERT INTO t VALUES (100, 'lost')"
odsync_start "$CONFIG" "$LOG"
exits_within 60
[[ $rc != 0 ]] || fail "odsync exited 0 without its slot"
grep -q "replication slot odsync_a does not exist, but the sink holds changes up to .*To start over" "$LOG" ||
  fail "no error naming the dropped slot and the way out: $(tail -3 "$LOG")"
[[ $(pg_psql -c "SELECT count(*) FROM pg_replication_slots") == 0 ]] || fail "odsync left a slot behind"

log "wrong password"
pg_psql -c "CREATE ROLE odsync_pw LOGIN REPLICATION PASSWORD 'right-secret'"
pg_hba_prepend "host all odsync_pw 127.0.0.1/32 scram-sha-256"
pg_hba_prepend "host replication odsync_pw 127.0.0.1/32 scram-sha-256"
rm -rf "$TEST_TMP/state" "$TEST_TMP/a.db"
one_pipeline "host=127.0.0.1 port=$PGPORT dbname=shop user=odsync_pw password=Wr0ngSecret"
odsync_start "$CONFIG" "$LOG"
exits_within 30
[[ $rc != 0 ]] || fail "odsync exited 0 with a wrong password"
grep -q "password authentication failed .*The server refused the login: fix the user, password or database of source.dsn" "$LOG" ||
  fail "no error naming the refused login: $(tail -3 "$LOG")"
if grep -q "Wr0ngSecret" "$LOG"; then fail "the password appears in odsync's output"; fi

log "closed port"
port=$(pg_free_port)
one_pipeline "host=127.0.0.1 port=$port dbname=shop user=postgres" ", reconnect_max_ms: 500"
: >"$LOG"
odsync_start "$CONFIG" "$LOG"
exits_within 45
[[ $rc != 0 ]] || fail "odsync exited 0 without a server"
grep -q "gave up after 8 attempts without ever connecting" "$LOG" || fail "no bounded give-up: $(tail -3 "$LOG")"
[[ $(grep -c "retrying" "$LOG") == 7 ]] || fail "expected 7 retries before giving up: $(grep -c retrying "$LOG")"
log "ok"
