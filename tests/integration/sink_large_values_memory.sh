#!/usr/bin/env bash
# sink_large_values_memory.sh — memory is bounded by bytes, not by the number of rows, when one
# transaction carries N rows of large bytea values, for the SQLite and the PostgreSQL sink.
#
# For each sink, and N = 4 and N = 8 rows of 16 MiB bytea (32 MiB of hex text each in the stream)
# in one transaction, with queue.max_bytes 32MB: a fresh odsync streams the transaction, the sink
# ends equal to the source (PostgreSQL: md5 of every value; SQLite: length and first byte of every
# value), and odsync's peak RSS (VmHWM) minus its RSS before the transaction is
#   - at most queue.max_bytes + 8 values' text (288 MiB): the source connection's buffer, the
#     reader's chunk, the queue, the apply thread's chunk, the sink's one copy (SQLite: the decoded
#     blob and its record), allocator slack (measured after the fix: 199-261 MiB in both sinks;
#     before it the PostgreSQL sink: 292 MiB for N = 4 and 5, 324 MiB for N = 10);
#   for N = 4 and for N = 8 alike: the bound does not depend on N. The SQLite sink adds its page
#   cache (`cache_mb`, 32 MiB by default since the sink stopped using SQLite's 2 MiB: a large value's
#   overflow pages pass through it), so its bound is 320 MiB.
# Before the fix the PostgreSQL sink buffered each large row for its set-based statement (an
# arena copy, an array literal twice its size and libpq's message of that literal), and the queue
# admitted a chunk whenever it held less than max_bytes, so a chunk of any size came on top.
# Each case runs twice: with the source's `stream_in_progress` off (the walsender sends the
# transaction at its commit) and on (protocol 2: the walsender streams it while in progress, odsync
# keeps it in its spill file and replays it at the commit — asserted through the slot's
# stream_txns). The bound is the same: the streamed path must not hold a value more often than the
# commit-time path (before the fix it grew 403 MiB for N = 4 into SQLite: the message copied without
# its xid, the spill chunk, the file's write buffer and the replay's read buffer each kept a value).
# Measured 2026-12-04 (ASan build, quiet machine) before and after the decoder stopped copying text
# values into its scratch (it terminates them in libpq's buffer or the replay's record instead):
# PostgreSQL sink 228-260 -> 196 MiB (CI had reached 288 with streaming on); SQLite 237-270 MiB
# both times (its peak is elsewhere). Release build after: 188-199 MiB in every case.
# odsync runs with ASAN_OPTIONS quarantine_size_mb=0 so that freed blocks count as freed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_large_values_memory
pg_start_pair src dst
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
VALUE_MB=16
TEXT=$((2 * VALUE_MB * 1048576)) # bytes of one value's hex text
QUEUE=$((32 * 1048576))
BOUND=$((QUEUE + 8 * TEXT))
SQLITE_CACHE=$((32 * 1048576)) # the SQLite sink's default cache_mb

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$ODSYNC_PID/status"; }
declare -A PEAK
stream_txns() { # streamed transactions of slot $1 so far (0 before its first)
  pg_psql -c "SELECT coalesce((SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '$1'), 0)"
}
run_one() {
  local sink=$1 n=$2 stream=$3 name=t_${1}_$2_$3 conf sinkyaml before peak count streamed
  pg_psql -c "CREATE TABLE $name (id int PRIMARY KEY, b bytea); ALTER TABLE $name ALTER b SET STORAGE EXTERNAL"
  if [[ $sink == sqlite ]]; then
    SINK_DB=$TEST_TMP/$name.db
    sinkyaml="{ type: sqlite, path: $SINK_DB }"
  else
    sinkyaml="{ type: postgres, dsn: \"$DST_DSN\" }"
  fi
  conf=$TEST_TMP/$name.yaml
  cat >"$conf" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: $name
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.$name], stream_in_progress: $stream }
    sink: $sinkyaml
    queue: { max_bytes: 32MB }
YAML
  odsync_start "$conf" "$TEST_TMP/odsync.log"
  wait_slot_active "odsync_$name" 60
  sleep 1
  before=$(kb VmRSS)
  pg_psql -c "INSERT INTO $name SELECT g, decode(repeat(lpad(to_hex(g), 2, '0'), $VALUE_MB * 1048576), 'hex') FROM generate_series(1, $n) g"
  local deadline=$(($(date +%s) + 120))
  while true; do
    if [[ $sink == sqlite ]]; then
      count=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM $name" 2>/dev/null || echo 0)
    else
      count=$(dst_psql -c "SELECT count(*) FROM $name" 2>/dev/null || echo 0)
    fi
    [[ $count == "$n" ]] && break
    odsync_running || fail "$name: odsync exited"
    (($(date +%s) < deadline)) || fail "$name: $count of $n rows after 120 s"
    sleep 0.5
  done
  peak=$(kb VmHWM)
  odsync_stop
  streamed=$(stream_txns "odsync_$name")
  if [[ $stream == on ]]; then
    ((streamed > 0)) || fail "$name: the server streamed no transaction (stream_txns $streamed)"
  else
    ((streamed == 0)) || fail "$name: stream_in_progress is off but the server streamed $streamed transactions"
  fi
  local want got
  want=$(pg_psql -c "SELECT string_agg(id || ':' || md5(b), ',' ORDER BY id) FROM $name")
  if [[ $sink == sqlite ]]; then
    got=$(psql -X -At -d "$SRC_DSN" -c "SELECT 1" >/dev/null && sqlite3 "$SINK_DB" "SELECT group_concat(id || ':' || length(b), ',') FROM (SELECT id, b FROM $name ORDER BY id)")
    [[ $got == "$(pg_psql -c "SELECT string_agg(id || ':' || length(b), ',' ORDER BY id) FROM $name")" ]] || fail "$name: SQLite rows differ: $got"
    [[ $(sqlite3 "$SINK_DB" "SELECT count(DISTINCT hex(substr(b, 1, 1)) || length(b)) FROM $name") == "$n" ]] || fail "$name: SQLite values differ"
  else
    got=$(dst_psql -c "SELECT string_agg(id || ':' || md5(b), ',' ORDER BY id) FROM $name")
    [[ $got == "$want" ]] || fail "$name: PostgreSQL target rows differ"
  fi
  local grown=$(((peak - before) * 1024)) bound=$BOUND
  [[ $sink == sqlite ]] && bound=$((BOUND + SQLITE_CACHE))
  PEAK[$name]=$grown
  log "$name: stream_txns $streamed, RSS before $((before / 1024)) MiB, peak $((peak / 1024)) MiB, grown $((grown / 1048576)) MiB (bound $((bound / 1048576)) MiB)"
  ((grown <= bound)) || fail "$name: peak RSS grew by $((grown / 1048576)) MiB, more than $((bound / 1048576)) MiB"
}

for stream in ${STREAMS:-off on}; do
  for sink in ${SINKS:-sqlite postgres}; do
    run_one "$sink" 4 "$stream"
    run_one "$sink" 8 "$stream"
    d=$((PEAK[t_${sink}_8_$stream] - PEAK[t_${sink}_4_$stream]))
    # Not asserted: how many chunks are in flight at the peak is a matter of timing (on a busy
    # machine the N = 4 run may never fill the pipeline); the bound above holds for both.
    log "$sink, stream_in_progress $stream: N=8 grew $((d / 1048576)) MiB more than N=4 (both under the same bound)"
  done
done
log "peak RSS bounded by bytes, independent of N, in both sinks"
