#!/usr/bin/env bash
# sink_hygiene.sh — files odsync creates hold replicated data; a deleted state dir is noticed.
#
# Asserts, with odsync started under umask 000 (the worst case):
#   - the SQLite sink file it creates, its -wal and -shm, are mode 0600 and the directory it
#     creates for them 0700 (before: 0666/0777 under umask 000, 0644/0755 under 022);
#   - a sink file that already exists keeps the mode its owner gave it (0640 here);
#   - the sink equals the source (od_compare);
#   - deleting the state dir under a running pipeline stops it within seconds (exit code 1) with
#     an ERROR naming the lock file and the state dir (before: it ran on, and a second instance
#     could take a new lock next to it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_hygiene
pg_start hygiene
SINK_DB=$TEST_TMP/newdir/sub/h.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql -c "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g"
write_config "$CONFIG" hyg public.t

mode_of() { stat -c %a "$1"; }

umask 000
odsync_start "$CONFIG" "$LOG"
umask 022
wait_slot_active odsync_hyg 60
pg_psql -c "INSERT INTO t SELECT g, 'w' || g FROM generate_series(101, 150) g"
wait_equal 30
for f in "$SINK_DB" "$SINK_DB-wal" "$SINK_DB-shm"; do
  [[ -e "$f" ]] || fail "$f does not exist"
  m=$(mode_of "$f")
  [[ $m == 600 ]] || fail "$f has mode $m, expected 600"
done
for d in "$TEST_TMP/newdir" "$TEST_TMP/newdir/sub"; do
  m=$(mode_of "$d")
  [[ $m == 700 ]] || fail "directory $d has mode $m, expected 700"
done
log "sink file, -wal, -shm 0600; directories 0700"

log "deleting the state dir under the running pipeline"
rm -rf "$TEST_TMP/state"
for _ in $(seq 1 100); do
  odsync_running || break
  sleep 0.1
done
if odsync_running; then fail "odsync still runs 10 s after its state dir was deleted"; fi
rc=0
wait "$ODSYNC_PID" || rc=$?
ODSYNC_PID=
[[ $rc -eq 1 ]] || fail "odsync exited with $rc after its state dir was deleted, expected 1"
grep -E "ERROR .*lock file $TEST_TMP/state/hyg.lock was deleted.*state_dir $TEST_TMP/state" "$LOG" ||
  fail "no ERROR naming the lock file and the state dir"

log "an existing sink file keeps its mode"
SINK_DB=$TEST_TMP/own.db
sqlite3 "$SINK_DB" "PRAGMA user_version = 1"
chmod 0640 "$SINK_DB"
write_config "$CONFIG" hyg2 public.t
umask 000
odsync_start "$CONFIG" "$LOG"
umask 022
wait_slot_active odsync_hyg2 60
wait_equal 30
m=$(mode_of "$SINK_DB")
[[ $m == 640 ]] || fail "the existing sink file's mode changed to $m (was 640)"
odsync_stop
