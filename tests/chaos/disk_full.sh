#!/usr/bin/env bash
# tests/chaos/disk_full.sh — the disks under odsync fill up and are freed, under pgbench load:
# first the state directory's (a 2 MB tmpfs), then the SQLite sink's (a 64 MB tmpfs). odsync fans out
# to a SQLite and a PostgreSQL sink.
#
# Injected: (1) the state_dir tmpfs filled to ENOSPC, then a source DDL (ALTER TABLE pgbench_history
# ADD COLUMN) whose new schema version must be appended to the schema history there, and a SIGKILL +
# restart of odsync while the disk is full (it must start, report and wait); (2) the SQLite
# sink's tmpfs filled to ENOSPC while rows stream in (SQLITE_FULL). Each phase counts the "retrying"
# messages naming the full path and the source rows written while the disk was full (> 0).
# Verified: odsync never exits while a disk is full (it pauses, saying which path), resumes once the
# fill file is removed, and chaos_finish: both sinks equal the source row for row (the added column
# included), pgbench_history's exact count, SIGTERM under load drains, a restart applies nothing twice.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/chaos.sh"

test_init chaos_disk_full
test_extra_cleanup() { chaos_umount_all; }
chaos_tmpfs 2m
CHAOS_STATE_DIR=$CHAOS_TMPFS/state
chaos_tmpfs 64m
CHAOS_LITE_DIR=$CHAOS_TMPFS
chaos_setup
chaos_load_start
count_msgs() { grep -c -- "$1" "$LOG" || true; }

# ---- (1) state_dir full ------------------------------------------------------------------------
sleep 2
fs=$(dirname "$CHAOS_STATE_DIR")
bytes=$(chaos_fill "$fs")
src0=$(chaos_history_src)
chaos_log "state_dir file system $fs filled ($bytes bytes); adding a column on the source"
src_psql -c "ALTER TABLE pgbench_history ADD COLUMN note text DEFAULT 'chaos'" >/dev/null
pat="schema history $CHAOS_STATE_DIR/bench.schema.jsonl: cannot append: No space left on device"
# The history file's last page may have room for a line or two (tmpfs allocates pages): add columns
# until a new schema version no longer fits.
for i in $(seq 1 12); do
  wait_for "(( \$(count_msgs '$pat') >= 1 ))" 3 && break
  src_psql -c "ALTER TABLE pgbench_history ADD COLUMN extra_column_with_a_long_name_$i text" >/dev/null
done
wait_for "(( \$(count_msgs '$pat') >= 1 ))" 120 || fail "no 'cannot append: No space left' retry message for the schema history"
chaos_log "schema history append failed on the full state_dir after $((i - 1)) more column(s)"
chaos_kill9
before=$(count_msgs "$pat")
chaos_start
wait_for "(( \$(count_msgs '$pat') > $before ))" 120 || fail "odsync restarted on a full state_dir did not report the full schema history"
sleep 3
chaos_running || fail "odsync exited after a restart with a full state_dir"
n=$(count_msgs "$pat")
during=$(($(chaos_history_src) - src0))
chaos_injected "state_dir full: schema-history retries naming $CHAOS_STATE_DIR (one restart while full)" "$n"
chaos_injected "source rows written while the state_dir was full" "$during"
rm -f "$fs/.fill"
lite=$(chaos_history_lite)
wait_for "(( \$(chaos_history_lite) > $lite + 20 ))" 120 || fail "SQLite did not resume after the state_dir was freed"
[[ $(sqlite3 "$CHAOS_LITE_DIR/bench.db" "SELECT count(*) FROM pgbench_history WHERE note = 'chaos'") -gt 0 ]] ||
  fail "the added column did not reach SQLite"
chaos_log "VERIFIED: state_dir freed, odsync resumed (SQLite pgbench_history $lite -> $(chaos_history_lite), new column carried)"

# ---- (2) SQLite sink's disk full ---------------------------------------------------------------
bytes=$(chaos_fill "$CHAOS_LITE_DIR")
src0=$(chaos_history_src)
chaos_log "SQLite sink file system $CHAOS_LITE_DIR filled ($bytes bytes)"
pat="sqlite sink $CHAOS_LITE_DIR/bench.db: .*full"
wait_for "(( \$(grep -c -- '$pat' '$LOG' || true) >= 1 ))" 120 || fail "no disk-full retry message naming the SQLite sink"
sleep 5
chaos_running || fail "odsync exited while the SQLite sink's disk was full"
n=$(grep -c -- "$pat" "$LOG" || true)
during=$(($(chaos_history_src) - src0))
chaos_injected "SQLite sink disk full: retries naming $CHAOS_LITE_DIR/bench.db" "$n"
chaos_injected "source rows written while the SQLite sink's disk was full" "$during"
grep -m1 -- "$pat" "$LOG" | sed 's/^/message: /'
rm -f "$CHAOS_LITE_DIR/.fill"
lite=$(chaos_history_lite)
wait_for "(( \$(chaos_history_lite) > $lite + 20 ))" 120 || fail "SQLite did not resume after its disk was freed"
chaos_log "VERIFIED: SQLite disk freed, odsync resumed (SQLite pgbench_history $lite -> $(chaos_history_lite))"
[[ $(sqlite3 "$CHAOS_LITE_DIR/bench.db" "PRAGMA integrity_check") == ok ]] || fail "SQLite integrity_check failed"
chaos_finish
