# shellcheck shell=bash
# tests/env/common.sh — helpers for integration tests (source this file, then tests/env/pg.sh).
#
#   test_init NAME        make $TEST_TMP, set the paths below, install the cleanup trap (which removes
#                         $TEST_TMP; KEEP_TMP=1 keeps it when the test fails, KEEP_TMP=always always)
#   fail "msg"            print FAIL and exit 1 (the EXIT trap cleans up)
#   wait_for CMD TIMEOUT_S  run CMD (eval'd) every 0.2 s until it succeeds; 1 on timeout
#   odsync_start CONFIG LOG  start `odsync run -c CONFIG` in the background, output appended to LOG
#   odsync_stop           SIGTERM, wait (60 s at most), fail unless the exit code is 0
#   odsync_kill9          SIGKILL and reap
#   compare ARGS...       run od_compare against the current PG database and $SINK_DB
#
# Paths (CTest sets them; defaults fit a manual run from the source tree):
#   ODSYNC_SOURCE_DIR, ODSYNC_BUILD_DIR (default $ODSYNC_SOURCE_DIR/build), ODSYNC_BIN, OD_COMPARE

ODSYNC_SOURCE_DIR=${ODSYNC_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ODSYNC_BUILD_DIR=${ODSYNC_BUILD_DIR:-$ODSYNC_SOURCE_DIR/build}
ODSYNC_BIN=${ODSYNC_BIN:-$ODSYNC_BUILD_DIR/odsync}
OD_COMPARE=${OD_COMPARE:-$ODSYNC_BUILD_DIR/od_compare}
ODSYNC_PID=
ODSYNC_LOG=
TEST_TMP=
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}

# Sanitizer builds: a leak or UB report must make odsync exit non-zero.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

log() { echo "[$TEST_NAME $(date +%H:%M:%S)] $*"; }
# grep_q ARGS: `grep -q ARGS` for the end of a pipeline. `grep -q` exits at its first match; with
# pipefail, a producer still writing then dies of SIGPIPE and the pipeline fails although the text
# was there (flaky under load). This reads all of its input.
grep_q() { grep "$@" >/dev/null; }

fail() {
  echo "FAIL [$TEST_NAME]: $*" >&2
  exit 1
}

wait_for() {
  local cmd=$1 timeout=$2 deadline
  deadline=$(($(date +%s) + timeout))
  while true; do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    if (($(date +%s) >= deadline)); then return 1; fi
    sleep 0.2
  done
}

odsync_running() {
  [[ -n "$ODSYNC_PID" ]] && kill -0 "$ODSYNC_PID" 2>/dev/null
}

odsync_start() {
  local config=$1 logfile=$2
  [[ -x "$ODSYNC_BIN" ]] || fail "odsync binary not found at $ODSYNC_BIN"
  if odsync_running; then fail "odsync_start: odsync is already running (pid $ODSYNC_PID)"; fi
  ODSYNC_LOG=$logfile
  echo "=== odsync run -c $config ($(date +%H:%M:%S.%N)) ===" >>"$logfile"
  "$ODSYNC_BIN" run -c "$config" >>"$logfile" 2>&1 </dev/null &
  ODSYNC_PID=$!
}

odsync_stop() {
  local rc=0 i
  [[ -n "$ODSYNC_PID" ]] || fail "odsync_stop: odsync was not started"
  kill -TERM "$ODSYNC_PID" 2>/dev/null || true
  for i in $(seq 1 600); do
    kill -0 "$ODSYNC_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$ODSYNC_PID" 2>/dev/null; then
    kill -KILL "$ODSYNC_PID" 2>/dev/null || true
    wait "$ODSYNC_PID" 2>/dev/null || true
    ODSYNC_PID=
    fail "odsync did not exit within 60 s of SIGTERM"
  fi
  wait "$ODSYNC_PID" || rc=$?
  ODSYNC_PID=
  [[ $rc -eq 0 ]] || fail "odsync exited with code $rc after SIGTERM (expected 0)"
}

odsync_kill9() {
  [[ -n "$ODSYNC_PID" ]] || return 0
  kill -KILL "$ODSYNC_PID" 2>/dev/null || true
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
}

# A background workload: `workload_start FN [ARG...]` runs FN with its output in
# $TEST_TMP/workload.log; `workload_wait` waits for it, prints that output and fails the test
# when it failed. test_cleanup stops one still running (and shows its log's end on failure).
WORKLOAD_PID=
WORKLOAD_LOG=
workload_start() {
  WORKLOAD_LOG=$TEST_TMP/workload.log
  "$@" >"$WORKLOAD_LOG" 2>&1 &
  WORKLOAD_PID=$!
}
workload_wait() {
  local rc=0
  wait "$WORKLOAD_PID" || rc=$?
  WORKLOAD_PID=
  cat "$WORKLOAD_LOG"
  [[ $rc -eq 0 ]] || fail "the workload failed (exit $rc)"
}

compare() {
  "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" "$@"
}

# "X/Y" (hex halves of a PG LSN) -> decimal integer.
lsn_to_int() {
  local hi=${1%/*} lo=${1#*/}
  echo $(((16#$hi << 32) | 16#$lo))
}

test_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  trap '' PIPE
  set +e
  if [[ -n "$ODSYNC_PID" ]]; then
    kill -KILL "$ODSYNC_PID" 2>/dev/null
    wait "$ODSYNC_PID" 2>/dev/null
    ODSYNC_PID=
  fi
  if [[ -n "${WORKLOAD_PID:-}" ]]; then
    kill "$WORKLOAD_PID" 2>/dev/null
    wait "$WORKLOAD_PID" 2>/dev/null
    WORKLOAD_PID=
  fi
  if [[ $rc -ne 0 && -n "${WORKLOAD_LOG:-}" && -f "${WORKLOAD_LOG:-}" ]]; then
    echo "---- last 20 lines of the workload log ----" >&2
    tail -n 20 "$WORKLOAD_LOG" >&2
  fi
  # The second server of pg_start_pair (the first's log is PG_LOG, shown below).
  if [[ $rc -ne 0 && -n "${DST_LOG:-}" && -f "${DST_LOG:-}" && "${DST_LOG:-}" != "${PG_LOG:-}" ]]; then
    echo "---- last 20 lines of the target server log ----" >&2
    tail -n 20 "$DST_LOG" >&2
  fi
  TEST_RC=$rc
  if declare -F test_extra_cleanup >/dev/null; then test_extra_cleanup; fi
  if [[ $rc -ne 0 ]]; then
    if [[ -n "$ODSYNC_LOG" && -f "$ODSYNC_LOG" ]]; then
      echo "---- last 60 lines of $ODSYNC_LOG ----" >&2
      tail -n 60 "$ODSYNC_LOG" >&2
    fi
    if [[ -n "${PG_LOG:-}" && -f "${PG_LOG:-}" ]]; then
      echo "---- last 30 lines of the PostgreSQL log ----" >&2
      tail -n 30 "$PG_LOG" >&2
    fi
    if [[ -n "${MY_LOG:-}" && -f "${MY_LOG:-}" ]]; then
      echo "---- last 30 lines of the MariaDB log ----" >&2
      tail -n 30 "$MY_LOG" >&2
    fi
  fi
  if declare -F pg_cleanup_all >/dev/null; then pg_cleanup_all; fi
  if declare -F my_cleanup_all >/dev/null; then my_cleanup_all; fi
  if [[ -n "$TEST_TMP" && -d "$TEST_TMP" ]]; then
    if [[ ( $rc -ne 0 && -n "${KEEP_TMP:-}" ) || "${KEEP_TMP:-}" == always ]]; then
      echo "kept $TEST_TMP" >&2
    else
      rm -rf "$TEST_TMP"
    fi
  fi
  if [[ $rc -eq 0 ]]; then echo "PASS [$TEST_NAME]"; else echo "FAIL [$TEST_NAME] (exit $rc)" >&2; fi
  exit $rc
}

test_init() {
  TEST_NAME=${1:-$TEST_NAME}
  TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-test-$TEST_NAME.XXXXXX")
  trap test_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 141' PIPE
}

# write_config FILE PIPELINE TABLES_CSV: one postgres -> sqlite pipeline into $SINK_DB, state in
# $TEST_TMP/state, source = the current PG database.
write_config() {
  local file=$1 name=$2 tables=$3
  cat >"$file" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: $name
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [$tables] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
}

# wait_slot_active SLOT TIMEOUT_S: the replication slot exists and a walsender streams from it.
wait_slot_active() {
  local slot=$1 timeout=$2 deadline
  deadline=$(($(date +%s) + timeout))
  while true; do
    # Active and not held by a walsender still in `startup`: the connection that creates the slot
    # holds it while its exported snapshot is in use (initial snapshots), before odsync streams.
    if [[ $(pg_poll_true "SELECT s.active AND NOT EXISTS (SELECT 1 FROM pg_stat_replication r
                          WHERE r.pid = s.active_pid AND r.state = 'startup')
                        FROM pg_replication_slots s WHERE s.slot_name = '$slot'" 2>/dev/null) == t ]]; then
      return 0
    fi
    odsync_running || fail "odsync exited while waiting for slot $slot to become active"
    (($(date +%s) < deadline)) || fail "slot $slot not active after ${timeout}s"
    sleep 0.2
  done
}

# wait_equal TIMEOUT_S: poll od_compare until the sink equals the source; fail with its report.
wait_equal() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare 2>&1); then
      echo "$out"
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "sink not equal to source after ${timeout}s (od_compare report above)"
    fi
    sleep 1
  done
}

# checkpoint_lsn PIPELINE: the sink's checkpoint as a decimal LSN (position_lsn if set, else
# position); empty when there is no checkpoint row.
checkpoint_lsn() {
  local row lsn pos
  row=$(sqlite3 -separator '|' "$SINK_DB" \
    "SELECT coalesce(position_lsn,''), coalesce(position,'') FROM _odsync_checkpoint WHERE pipeline = '$1'" 2>/dev/null) || return 0
  [[ -n "$row" ]] || return 0
  lsn=${row%%|*}
  pos=${row#*|}
  if [[ -n "$lsn" ]]; then lsn_to_int "$lsn"; else echo "$pos"; fi
}
