# shellcheck shell=bash
# tests/env/mesh.sh — N PostgreSQL nodes for multi-master mesh tests (source after common.sh, pg.sh).
#
#   mesh_start_nodes NAME...   one server per node (track_commit_timestamp = on), database "shop";
#                              sets MESH_NODES, NODE_PORT[name], NODE_DSN[name]
#   node_psql NAME ARGS...     psql against that node
#   mesh_psql_all <<SQL        the same SQL (stdin) on every node of MESH_NODES, output dropped
#   mesh_config FILE POLICY TABLES_CSV [extra mesh lines]  a `mesh:` config over MESH_NODES
#                              (MESH_GC_INTERVAL=N adds gc_interval_s: N)
#   mesh_wait_equal TIMEOUT TABLE...  poll od_compare_pg until every node equals the first one
#   mesh_wait_marker TIMEOUT FROM TO  write a marker row at FROM, wait for it at TO (stream caught up)
#   mesh_step NAME ARGS...     node_psql, output dropped, then 50 ms: each write gets a later commit
#                              time than the last (the deterministic conflict tests)
#   mesh_kill9_while_held CONFIG LOG  odsync started with every sink batch held before its apply,
#                              SIGKILLed while one is held, started again (slots active)
#   mesh_unique_conflicts NAME the node's conflict log as sorted "table:kind:index:policy:winner"
#   mesh_restart_node NAME MODE  stop that node's server (pg_ctl -m MODE: fast or immediate, i.e. a
#                              crash) and start it again on the same port and data directory
#   mesh_load_start SCRIPT RATE NODE...  writers at each NODE until mesh_load_stop: pgbench (2
#                              clients, RATE transactions/s per node, SCRIPT) in rounds of
#                              MESH_LOAD_ROUND transactions per client, each round checked complete
#   mesh_loading               true while the writers run (they stop only when told, or on an error)
#   mesh_load_stop             stop the writers after their current round; fails on any error
#   mesh_load_kill             for test_extra_cleanup: stop them now
declare -A NODE_PORT NODE_DSN NODE_DIR
MESH_NODES=()
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}

mesh_start_nodes() {
  local n
  for n in "$@"; do
    PG_START_CONF="track_commit_timestamp = on" pg_start shop || fail "cannot start node $n"
    NODE_PORT[$n]=$PGPORT
    NODE_DIR[$n]=$PG_DIR
    NODE_DSN[$n]="host=127.0.0.1 port=$PGPORT dbname=shop user=postgres"
    MESH_NODES+=("$n")
  done
}

node_psql() {
  local n=$1
  shift
  PGPORT=${NODE_PORT[$n]} PGDATABASE=shop pg_psql "$@"
}

# node_poll_true NODE SQL: pg_poll_true at NODE (t once the boolean SQL is true there, within 2 s)
node_poll_true() {
  local n=$1
  shift
  PGPORT=${NODE_PORT[$n]} PGDATABASE=shop pg_poll_true "$@"
}

mesh_psql_all() {
  local sql n
  sql=$(cat)
  for n in "${MESH_NODES[@]}"; do node_psql "$n" <<<"$sql" >/dev/null || fail "node $n: setup SQL failed"; done
}

mesh_config() {
  local file=$1 policy=$2 tables=$3 extra=${4:-} n
  {
    echo "state_dir: $TEST_TMP/state"
    [[ -n "${MESH_LOG_LEVEL:-}" ]] && echo "log_level: $MESH_LOG_LEVEL"
    echo "mesh:"
    echo "  name: m"
    echo "  policy: $policy"
    echo "  tables: [$tables]"
    [[ -n "$extra" ]] && echo "$extra"
    # MESH_GC_INTERVAL: run any mesh test with the clean-up at that interval (mesh.gc_interval_s)
    [[ -n "${MESH_GC_INTERVAL:-}" && $extra != *gc_interval_s* ]] && echo "  gc_interval_s: $MESH_GC_INTERVAL"
    echo "  nodes:"
    for n in "${MESH_NODES[@]}"; do echo "    - { name: $n, dsn: \"${NODE_DSN[$n]}\" }"; done
  } >"$file"
}

# Every pipeline's slot is streaming.
mesh_wait_active() {
  local timeout=$1 a b deadline
  deadline=$(($(date +%s) + timeout))
  for a in "${MESH_NODES[@]}"; do
    for b in "${MESH_NODES[@]}"; do
      [[ $a == "$b" ]] && continue
      until [[ $(node_poll_true "$a" "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_m_${a}_to_${b}'") == t ]]; do
        odsync_running || fail "odsync exited while waiting for slot odsync_m_${a}_to_${b}"
        (($(date +%s) < deadline)) || fail "slot odsync_m_${a}_to_${b} on $a not active after ${timeout}s"
        sleep 0.3
      done
    done
  done
}

mesh_compare() {
  local a=$1 b=$2 t args=()
  shift 2
  for t in "$@"; do args+=(--table "$t"); done
  "$OD_COMPARE_PG" --source "${NODE_DSN[$a]}" --target "${NODE_DSN[$b]}" "${args[@]}"
}

mesh_wait_equal() {
  local timeout=$1 deadline out n first=${MESH_NODES[0]} ok
  shift
  deadline=$(($(date +%s) + timeout))
  while true; do
    ok=1
    for n in "${MESH_NODES[@]:1}"; do
      if ! out=$(mesh_compare "$first" "$n" "$@" 2>&1); then ok=0; break; fi
    done
    ((ok)) && return 0
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "nodes $first and $n differ after ${timeout}s (od_compare_pg report above)"
    fi
    sleep 1
  done
}

# Every ordered pair of the nodes (default: MESH_NODES), twice, a marker each (mesh_wait_marker
# TIMEOUT): what any node applied has reached the others, and their vectors have come back.
mesh_quiesce() {
  local timeout=$1 round x y
  shift
  local nodes=("$@")
  ((${#nodes[@]})) || nodes=("${MESH_NODES[@]}")
  for round in 1 2; do
    for x in "${nodes[@]}"; do
      for y in "${nodes[@]}"; do [[ $x == "$y" ]] || mesh_wait_marker "$timeout" "$x" "$y"; done
    done
  done
}

# Every node after the first holds TABLE row for row as the first does (od_compare_pg), else the
# test fails naming LABEL: mesh_same_everywhere LABEL TABLE NODE...
mesh_same_everywhere() {
  local label=$1 table=$2 first=$3 n
  shift 3
  for n in "$@"; do mesh_compare "$first" "$n" "$table" || fail "$first and $n differ ($label)"; done
}

# A marker row (table mesh_marker(id text primary key, n int), replicated) written at FROM and
# awaited at TO: everything FROM had applied or written before it has reached TO.
mesh_wait_marker() {
  local timeout=$1 from=$2 to=$3 deadline tag
  tag="$from-$to-$RANDOM$RANDOM"
  node_psql "$from" -c "INSERT INTO mesh_marker VALUES ('$tag', 0)"
  deadline=$(($(date +%s) + timeout))
  until [[ $(node_poll_true "$to" "EXISTS (SELECT 1 FROM mesh_marker WHERE id = '$tag')") == t ]]; do
    odsync_running || fail "odsync exited while waiting for a marker from $from at $to"
    (($(date +%s) < deadline)) || fail "marker from $from not at $to after ${timeout}s"
    sleep 0.2
  done
}

mesh_restart_node() {
  local n=$1 mode=$2 dir=${NODE_DIR[$1]}
  pg_as_user "$(pg_bindir)/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null ||
    fail "cannot stop node $n's server ($mode)"
  pg_as_user "$(pg_bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null ||
    fail "cannot start node $n's server again: $(tail -n 20 "$dir/server.log")"
}

mesh_step() { node_psql "$@" >/dev/null; sleep 0.05; }

# Start odsync with every sink batch held between its versions read and its apply
# (ODSYNC_MESH_TEST_PAUSE_MS), SIGKILL it once a sink of MESH_NODES holds one open, start it again
# (without the pause) and wait until every slot streams: mesh_kill9_while_held CONFIG LOG
mesh_kill9_while_held() {
  local config=$1 logf=$2 held=0 n c
  ODSYNC_MESH_TEST_PAUSE_MS=5000 odsync_start "$config" "$logf"
  for _ in $(seq 1 300); do
    for n in "${MESH_NODES[@]}"; do
      c=$(node_psql $n -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'odsync_%_sink' AND state = 'idle in transaction'")
      ((c > 0)) && held=1
    done
    ((held)) && break
    odsync_running || fail "odsync exited during its first run"
    sleep 0.1
  done
  ((held)) || fail "no sink held a batch open within 30 s"
  log "a sink holds a decided batch: SIGKILL"
  odsync_kill9
  odsync_start "$config" "$logf"
  mesh_wait_active 120
}

mesh_unique_conflicts() {
  node_psql "$1" -c "SELECT coalesce(string_agg(s, ' ' ORDER BY s), '') FROM (SELECT concat_ws(':', split_part(table_name, '.', 2), kind, index_name, policy, winner) AS s FROM _odsync_conflicts) c"
}

# Writers that run until the test has seen what it needed under load, not for a fixed count: a
# wait-bound test then ends when its assertions are done. Each round is a complete pgbench run
# (--max-tries: serialization failures and deadlocks retried), its report checked for every
# transaction; a failed round leaves MESH_LOAD_DIR/failed_<node> and ends that node's writer.
MESH_LOAD_PIDS=()
MESH_LOAD_ROUND=${MESH_LOAD_ROUND:-150}
mesh_load_start() {
  local script=$1 rate=$2 n
  shift 2
  MESH_LOAD_DIR=$TEST_TMP/load
  mkdir -p "$MESH_LOAD_DIR"
  rm -f "$MESH_LOAD_DIR"/stop "$MESH_LOAD_DIR"/failed_*
  for n in "$@"; do
    (
      round=0
      while [[ ! -e $MESH_LOAD_DIR/stop ]]; do
        round=$((round + 1))
        out=$MESH_LOAD_DIR/pgbench_${n}_$round.log
        if ! pgbench -n -h 127.0.0.1 -p "${NODE_PORT[$n]}" -U postgres -c 2 -j 1 -t "$MESH_LOAD_ROUND" -R "$rate" \
          --max-tries=10 --verbose-errors -f "$script" shop >"$out" 2>&1 ||
          ! grep -q "number of transactions actually processed: $((2 * MESH_LOAD_ROUND))/" "$out"; then
          echo "round $round: $(tail -n 5 "$out")" >"$MESH_LOAD_DIR/failed_$n"
          exit 1
        fi
      done
      echo "$round" >"$MESH_LOAD_DIR/rounds_$n"
    ) &
    MESH_LOAD_PIDS+=($!)
  done
}
mesh_loading() {
  local p
  for p in "${MESH_LOAD_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}
mesh_load_stop() {
  local p f
  [[ -n ${MESH_LOAD_DIR:-} ]] || return 0
  touch "$MESH_LOAD_DIR/stop"
  for p in "${MESH_LOAD_PIDS[@]}"; do wait "$p" || true; done
  MESH_LOAD_PIDS=()
  for f in "$MESH_LOAD_DIR"/failed_*; do
    [[ -e $f ]] && fail "the writers at ${f##*failed_} failed: $(cat "$f")"
  done
  local rounds=0 r
  for f in "$MESH_LOAD_DIR"/rounds_*; do read -r r <"$f"; rounds=$((rounds + r)); done
  log "writers stopped after $rounds rounds of $((2 * MESH_LOAD_ROUND)) transactions"
}
# For a test's test_extra_cleanup: the writers' loops end, a running round ends with its servers.
mesh_load_kill() {
  local p
  [[ -n ${MESH_LOAD_DIR:-} ]] && touch "$MESH_LOAD_DIR/stop"
  for p in "${MESH_LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  return 0
}
