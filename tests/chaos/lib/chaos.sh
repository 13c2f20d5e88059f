# shellcheck shell=bash
# tests/chaos/lib/chaos.sh — what every chaos scenario shares (source after tests/env/common.sh and
# tests/env/pg.sh; not a test itself, so CMake does not register it).
#
#   chaos_setup NAME        two throwaway PostgreSQL servers (a source "bench" with pgbench -i tables
#                           and wal_sender_timeout = 5 s, a sink "replica"), one odsync pipeline
#                           "bench" fanning out to BOTH sinks: SQLite ($LITE_DB, in $LITE_DIR) and
#                           PostgreSQL ($DST_DSN). Honours CHAOS_STATE_DIR, CHAOS_LITE_DIR (set them
#                           to a tmpfs first) and CHAOS_NS (run odsync in that network namespace,
#                           reaching the source at $CHAOS_SRC_HOST); calls chaos_pre_start, when
#                           the scenario defines it, before odsync first starts.
#   chaos_start / chaos_kill9 / chaos_running
#                           odsync (in the namespace when CHAOS_NS is set)
#   chaos_load_start        pgbench load (tpcb-like: accounts/tellers/branches updates and inserts
#                           into the keyless pgbench_history) running until chaos_load_stop; it is
#                           restarted whenever pgbench ends (a source restart breaks its connections)
#   chaos_history_src / chaos_history_lite / chaos_history_pg
#                           pgbench_history row counts (source, SQLite sink, PostgreSQL sink)
#   chaos_wait_equal T      poll both comparisons until source == each sink (T seconds)
#   chaos_finish            stop the load, catch up, compare row for row (both sinks, all four
#                           tables, pgbench_history's exact count), SIGTERM under a last burst of load
#                           (exit 0 = drained), compare again, restart odsync and prove nothing was
#                           applied twice (a new burst arrives once, the counts still match exactly)
#   chaos_injected WHAT N   record what a scenario injected; chaos_finish fails when N is 0
#
# Keyless pgbench_history: pgbench only inserts into it, and PostgreSQL publishes inserts of a table
# without replica identity, so it is captured as it is (no REPLICA IDENTITY FULL needed); od_compare
# compares keyless tables as multisets, so a duplicate or a missing row is a difference.

CHAOS_TABLES=(public.pgbench_accounts public.pgbench_branches public.pgbench_tellers public.pgbench_history)
CHAOS_NS=${CHAOS_NS:-}
CHAOS_SRC_HOST=${CHAOS_SRC_HOST:-}
CHAOS_INJECTED=0
CHAOS_LOAD_PID=
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
CHAOS_RATE=${CHAOS_RATE:-40}

chaos_log() { echo "[$TEST_NAME $(date +%H:%M:%S)] $*"; }

chaos_injected() {
  local what=$1 n=$2
  chaos_log "INJECTED: $what: $n"
  ((n > 0)) || fail "scenario injected nothing: $what = $n"
  CHAOS_INJECTED=$((CHAOS_INJECTED + 1))
}

src_psql() { PGPORT=$SRC_PORT PGDATABASE=bench pg_psql "$@"; }

chaos_setup() {
  [[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
  [[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
  pg_start_pair bench replica
  SRC_DIR=$PG_DIR
  SRC_DATA=$PG_DATA
  DST_DIR=${PG_STARTED_DIRS[0]}
  # A short wal_sender_timeout: the network scenario cuts for longer than it.
  src_psql -c "ALTER SYSTEM SET wal_sender_timeout = '5s'" >/dev/null
  src_psql -c "SELECT pg_reload_conf()" >/dev/null
  pgbench -i -s 1 -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >"$TEST_TMP/pgbench-init.log" 2>&1 ||
    { cat "$TEST_TMP/pgbench-init.log" >&2; fail "pgbench -i failed"; }
  # A few rows in pgbench_history before the snapshot (an empty table is created by the SQLite sink
  # only with its first row).
  pgbench -n -c 1 -t 10 -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >/dev/null 2>&1 || fail "first pgbench run failed"
  LITE_DIR=${CHAOS_LITE_DIR:-$TEST_TMP/lite}
  mkdir -p "$LITE_DIR"
  LITE_DB=$LITE_DIR/bench.db
  STATE_DIR=${CHAOS_STATE_DIR:-$TEST_TMP/state}
  # A scenario may prepare more before odsync first starts (the network namespace).
  if declare -F chaos_pre_start >/dev/null; then chaos_pre_start; fi
  local src_host=${CHAOS_SRC_HOST:-127.0.0.1}
  SRC_ODSYNC_DSN="host=$src_host port=$SRC_PORT dbname=bench user=postgres connect_timeout=5"
  # The sink server is reached through its Unix socket (a path: visible from any network namespace).
  DST_SOCK_DSN="host=$DST_DIR port=$DST_PORT dbname=replica user=postgres"
  CONFIG=$TEST_TMP/odsync.yaml
  LOG=$TEST_TMP/odsync.log
  local tables
  tables=$(IFS=,; echo "${CHAOS_TABLES[*]}")
  cat >"$CONFIG" <<YAML
state_dir: $STATE_DIR
pipelines:
  - name: bench
    reconnect_max_ms: 2000
    source: { type: postgres, dsn: "$SRC_ODSYNC_DSN", tables: [${tables//,/, }], status_interval_ms: 1000${CHAOS_SOURCE_EXTRA:+, $CHAOS_SOURCE_EXTRA} }
    sinks:
      - { name: lite, type: sqlite, path: $LITE_DB }
      - { name: pg, type: postgres, dsn: "$DST_SOCK_DSN" }
YAML
  chaos_start
  wait_for "[[ \$(src_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_bench'\") == t ]]" 120 ||
    fail "slot odsync_bench not active 120 s after start"
  chaos_wait_equal 60
  chaos_log "initial snapshot in both sinks ($(src_psql -c 'SELECT count(*) FROM pgbench_accounts') accounts)"
}

chaos_running() { odsync_running; }

chaos_start() {
  if [[ -n "$CHAOS_NS" ]]; then
    ODSYNC_LOG=$LOG
    echo "=== odsync run -c $CONFIG in netns $CHAOS_NS ($(date +%H:%M:%S.%N)) ===" >>"$LOG"
    ip netns exec "$CHAOS_NS" "$ODSYNC_BIN" run -c "$CONFIG" >>"$LOG" 2>&1 </dev/null &
    ODSYNC_PID=$!
  else
    odsync_start "$CONFIG" "$LOG"
  fi
}

chaos_kill9() { odsync_kill9; }

# ---- load --------------------------------------------------------------------------------------

chaos_load_loop() {
  local runs=0 tx=0 n
  while [[ ! -f "$TEST_TMP/load.stop" ]]; do
    runs=$((runs + 1))
    pgbench -n -c 2 -j 1 -T 4 -R "$CHAOS_RATE" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench \
      >"$TEST_TMP/pgbench.out" 2>&1 || true
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$TEST_TMP/pgbench.out")
    tx=$((tx + ${n:-0}))
    echo "$tx" >"$TEST_TMP/load.tx"
    [[ -n "$n" ]] || sleep 0.5 # the server was away: try again shortly
  done
  echo "load: $runs pgbench runs, $tx transactions"
}

chaos_load_start() {
  rm -f "$TEST_TMP/load.stop"
  echo 0 >"$TEST_TMP/load.tx"
  chaos_load_loop >"$TEST_TMP/load.log" 2>&1 &
  CHAOS_LOAD_PID=$!
  WORKLOAD_PID=$CHAOS_LOAD_PID WORKLOAD_LOG=$TEST_TMP/load.log
}

chaos_load_stop() {
  [[ -n "$CHAOS_LOAD_PID" ]] || return 0
  touch "$TEST_TMP/load.stop"
  wait "$CHAOS_LOAD_PID" || fail "the pgbench load loop failed"
  CHAOS_LOAD_PID= WORKLOAD_PID=
  chaos_log "$(cat "$TEST_TMP/load.log")"
}

# ---- comparison --------------------------------------------------------------------------------

chaos_history_src() { src_psql -c "SELECT count(*) FROM pgbench_history"; }
chaos_history_lite() { sqlite3 "$LITE_DB" "SELECT count(*) FROM pgbench_history" 2>/dev/null || echo -1; }
chaos_history_pg() { dst_psql -c "SELECT count(*) FROM pgbench_history" 2>/dev/null || echo -1; }

chaos_compare_lite() {
  local t args=()
  for t in "${CHAOS_TABLES[@]}"; do args+=(--table "$t"); done
  "$OD_COMPARE" --pg "host=127.0.0.1 port=$SRC_PORT dbname=bench user=postgres" --sqlite "$LITE_DB" "${args[@]}"
}
chaos_compare_pg() {
  local t args=()
  for t in "${CHAOS_TABLES[@]}"; do args+=(--table "$t"); done
  "$OD_COMPARE_PG" --source "host=127.0.0.1 port=$SRC_PORT dbname=bench user=postgres" --target "$DST_DSN" "${args[@]}"
}

chaos_wait_equal() {
  local timeout=$1 deadline out1 out2
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out1=$(chaos_compare_lite 2>&1) && out2=$(chaos_compare_pg 2>&1); then return 0; fi
    if (($(date +%s) >= deadline)); then
      echo "---- SQLite sink ----" >&2
      chaos_compare_lite >&2 || true
      echo "---- PostgreSQL sink ----" >&2
      chaos_compare_pg >&2 || true
      fail "sinks not equal to the source after ${timeout}s"
    fi
    chaos_running || fail "odsync exited while waiting for the sinks to catch up"
    sleep 1
  done
}

chaos_check_counts() {
  local what=$1 s l p
  s=$(chaos_history_src) l=$(chaos_history_lite) p=$(chaos_history_pg)
  [[ "$s" == "$l" && "$s" == "$p" ]] ||
    fail "$what: pgbench_history rows: source $s, SQLite $l, PostgreSQL $p"
  chaos_compare_lite >/dev/null || { chaos_compare_lite || true; fail "$what: SQLite sink differs"; }
  chaos_compare_pg >/dev/null || { chaos_compare_pg || true; fail "$what: PostgreSQL sink differs"; }
  chaos_log "VERIFIED ($what): 4 tables equal row for row in both sinks; pgbench_history $s rows in source, SQLite and PostgreSQL"
}

# A few pgbench transactions at full speed (no rate limit), counted.
chaos_burst() {
  pgbench -n -c 2 -j 1 -t "${1:-50}" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >"$TEST_TMP/burst.out" 2>&1 ||
    { cat "$TEST_TMP/burst.out" >&2; fail "pgbench burst failed"; }
}

chaos_finish() {
  ((CHAOS_INJECTED > 0)) || fail "scenario injected nothing"
  chaos_running || fail "odsync is not running at the end of the scenario"
  local tx
  chaos_load_stop
  tx=$(cat "$TEST_TMP/load.tx")
  ((tx > 0)) || fail "the pgbench load committed no transaction"
  chaos_wait_equal 240
  chaos_check_counts "after the faults ($tx pgbench transactions)"
  # Graceful shutdown under load: SIGTERM while a burst is being written; odsync drains what it
  # holds and exits 0; after the burst ends and odsync restarts, everything arrives exactly once.
  chaos_burst 200 &
  local burst=$!
  wait_for "(( \$(chaos_history_src) >= $(chaos_history_src) + 20 ))" 60 || fail "the burst wrote nothing"
  odsync_stop
  chaos_log "SIGTERM under load: odsync exited 0"
  wait "$burst" || fail "pgbench burst failed"
  chaos_start
  chaos_burst 20
  chaos_wait_equal 180
  chaos_check_counts "after SIGTERM under load and a restart"
  odsync_stop
}

# ---- fault helpers -----------------------------------------------------------------------------

# Restart a server whose data directory is DIR/data (immediate mode = crash; fast otherwise).
chaos_pg_stop() {
  local dir=$1 mode=${2:-fast}
  pgsrv_as_user "$(pgsrv_bindir)/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null ||
    fail "pg_ctl -m $mode stop of $dir failed"
}
chaos_pg_start() {
  local dir=$1
  pgsrv_as_user "$(pgsrv_bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null ||
    { tail -n 20 "$dir/server.log" >&2; fail "restart of the server in $dir failed"; }
}

# A tmpfs of SIZE mounted on a fresh directory, left in $CHAOS_TMPFS (not printed: called in $(...)
# the mount would escape the list). chaos_umount_all unmounts them (the scenario's cleanup).
declare -a CHAOS_MOUNTS=()
CHAOS_TMPFS=
chaos_tmpfs() {
  local size=$1 dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/odsync-chaos-fs.XXXXXX") || fail "mktemp"
  mount -t tmpfs -o "size=$size,mode=0755" tmpfs "$dir" || { rmdir "$dir"; fail "cannot mount a tmpfs on $dir (root needed)"; }
  CHAOS_MOUNTS+=("$dir")
  CHAOS_TMPFS=$dir
}
chaos_umount_all() {
  local d
  for d in "${CHAOS_MOUNTS[@]}"; do
    umount -l "$d" 2>/dev/null
    rmdir "$d" 2>/dev/null
  done
  CHAOS_MOUNTS=()
}

# Fill the filesystem of DIR with DIR/.fill until ENOSPC; prints the bytes written.
chaos_fill() {
  local dir=$1
  dd if=/dev/zero of="$dir/.fill" bs=64k >/dev/null 2>&1 || true
  [[ $(df --output=avail "$dir" | tail -1) -eq 0 ]] || fail "$dir is not full after filling"
  stat -c %s "$dir/.fill"
}
