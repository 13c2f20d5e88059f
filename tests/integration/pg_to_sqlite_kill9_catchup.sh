#!/usr/bin/env bash
# pg_to_sqlite_kill9_catchup: the kill9 scenario (tests/env/kill9.sh) with the PostgreSQL source in
# catch-up mode: every restart finds the slot behind, so changes are read by batch decoding
# (get calls on a temporary copy of the slot, batches of 2,000 messages: the workload's 5,000-row
# transactions are larger than a batch) until a batch comes back empty, then by streaming. On top of
# kill9's assertions (slot never acknowledged past the sink, exact equality, no duplicates), the log
# must show both modes and the switch between them. Each restart waits for its session to start
# the source (KILL9_WAIT_SESSION, tests/env/kill9.sh) before the next random kill.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/kill9.sh"

test_init pg_to_sqlite_kill9_catchup
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-25}
KILL9_SOURCE_EXTRA="catchup_lag_bytes: 1, catchup_exit_bytes: 0, catchup_batch_changes: 2000"
KILL9_WAIT_SESSION=1
kill9_run sqlite
entered=$(grep -c 'catching up by batch decoding' "$TEST_TMP/odsync.log" || true)
left=$(grep -c 'caught up by batch decoding' "$TEST_TMP/odsync.log" || true)
((entered >= 3)) || fail "catch-up mode was entered $entered times (expected at least 3: after the kills)"
((left >= 1)) || fail "odsync never switched from batch decoding to streaming"
log "catch-up by batch decoding entered $entered times, left for streaming $left times"
