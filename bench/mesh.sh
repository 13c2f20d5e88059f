#!/usr/bin/env bash
# bench/mesh.sh — multi-master: odsync's mesh against one-way PG→PG and pglogical 2 (not CI).
#
# Two throwaway servers a, b (track_commit_timestamp = on; pglogical preloaded when installed):
#   1. one-way: odsync pipeline a → b (plain postgres sink); MESH_TXNS single-row insert
#      transactions written at a while odsync is stopped, then timed from odsync's start until b
#      holds them all (apply throughput, transactions/s).
#   2. bidirectional, no conflicts: odsync mesh a ↔ b; MESH_TXNS/2 transactions written at each
#      node (disjoint keys: per-node sequences) while odsync is stopped, timed until both nodes hold
#      all MESH_TXNS. Reported: total and per-direction rate, ratio to one-way.
#   3. conflicting workload, both tools: pgbench at both nodes at once, MESH_CONFLICT_TXNS
#      transactions per node of random upserts/updates/deletes on 30 shared keys, replicated live;
#      after the load, wait for quiescence (markers both ways, up to 120 s); report whether the
#      nodes converged (row-for-row compare), the conflicts detected (odsync: _odsync_conflicts
#      rows; pglogical: "CONFLICT" lines its conflict logging writes to the server logs) and the
#      throughput (transactions of both nodes / seconds from load start to quiescence).
#      pglogical: bidirectional subscriptions with forward_origins = '{}', conflict_resolution
#      last_update_wins. Skipped (and said so) when postgresql-15-pglogical is not installed.
# The machine may be shared and loaded: all figures are wall-clock, measured under that load, both
# sides in the same run. Environment: MESH_TXNS (20000) MESH_CONFLICT_TXNS (2000) ODSYNC_BIN PG_BIN
# BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"

MESH_TXNS=${MESH_TXNS:-20000}
MESH_CONFLICT_TXNS=${MESH_CONFLICT_TXNS:-2000}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
[[ -x $ODSYNC_BIN ]] || od_die "odsync binary not found: $ODSYNC_BIN"
PGBIN=$(od_pg_bindir)
HAVE_PGLOGICAL=0
[[ -f $PGBIN/../lib/pglogical.so || -f /usr/lib/postgresql/15/lib/pglogical.so ]] && HAVE_PGLOGICAL=1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-mesh.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $ODSYNC_PID ]]; then od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  pgb_stop_all
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }

conf=("track_commit_timestamp = on" "max_connections = 60" "shared_buffers = 64MB")
((HAVE_PGLOGICAL)) && conf+=("shared_preload_libraries = 'pglogical'" "pglogical.conflict_log_level = 'log'")
pgb_start a "$TMP/a" "${conf[@]}"
pgb_start b "$TMP/b" "${conf[@]}"
q() { local n=$1; shift; psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn "$n" postgres)" "$@"; }
qd() { local n=$1 d=$2; shift 2; psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn "$n" "$d")" "$@"; }

start_odsync() { "$ODSYNC_BIN" run -c "$1" >>"$TMP/odsync.log" 2>&1 </dev/null & ODSYNC_PID=$!; }
stop_odsync() { od_stop_pid "$ODSYNC_PID" 60; wait "$ODSYNC_PID" 2>/dev/null || true; ODSYNC_PID=; }
wait_true() { # NODE DB SQL TIMEOUT -> waits until SQL returns t
  local deadline=$(( $(date +%s) + $4 ))
  until [[ $(qd "$1" "$2" -c "$3" 2>/dev/null) == t ]]; do
    (( $(date +%s) < deadline )) || return 1
    sleep 0.05
  done
}

# ---- schema: database "od" for odsync, "pgl" for pglogical ----
for n in a b; do
  q $n -c "CREATE DATABASE od" -c "CREATE DATABASE pgl"
  step=2; start=1; [[ $n == b ]] && start=2
  for d in od pgl; do
    qd $n $d <<SQL
CREATE SEQUENCE ids INCREMENT $step START $start;
CREATE TABLE items (id bigint PRIMARY KEY DEFAULT nextval('ids'), v text, n int NOT NULL DEFAULT 0);
CREATE TABLE one (id bigint PRIMARY KEY DEFAULT nextval('ids'), v text, n int NOT NULL DEFAULT 0);
CREATE TABLE hot (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO hot SELECT g, 'init', 0 FROM generate_series(1, 30) g;
SQL
  done
done
echo 'INSERT INTO one (v, n) VALUES (md5(random()::text), 1);' >"$TMP/one.sql"
echo 'INSERT INTO items (v, n) VALUES (md5(random()::text), 1);' >"$TMP/items.sql"
cat >"$TMP/hot.sql" <<'SQL'
\set k random(1, 30)
\set op random(1, 10)
\if :op <= 3
INSERT INTO hot VALUES (:k, 'i' || :client_id || md5(random()::text), 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = hot.n + 1;
\elif :op <= 9
UPDATE hot SET v = 'u' || :client_id || md5(random()::text), n = n + 1 WHERE id = :k;
\else
DELETE FROM hot WHERE id = :k;
\endif
SQL
bench_load() { # NODE DB SCRIPT TXNS CLIENTS
  pgbench -n -h 127.0.0.1 -p "${PGB_PORT[$1]}" -U postgres -c "$5" -j 1 -t $(( $4 / $5 )) -f "$3" "$2" >>"$TMP/pgbench.log" 2>&1
}

# ---- 1. one-way ----
cat >"$TMP/oneway.yaml" <<YAML
state_dir: $TMP/state_one
pipelines:
  - name: oneway
    source: { type: postgres, dsn: "$(pgb_dsn a od)", tables: [public.one], snapshot: never }
    sink: { type: postgres, dsn: "$(pgb_dsn b od)" }
YAML
start_odsync "$TMP/oneway.yaml"
wait_true a od "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_oneway'" 60 || od_die "one-way slot not active"
stop_odsync
log "one-way: $MESH_TXNS transactions at a"
bench_load a od "$TMP/one.sql" "$MESH_TXNS" 4
t0=$EPOCHREALTIME
start_odsync "$TMP/oneway.yaml"
wait_true b od "SELECT count(*) = $MESH_TXNS FROM one" 1800 || od_die "one-way did not catch up"
t1=$EPOCHREALTIME
stop_odsync
one_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
one_rate=$(rate "$MESH_TXNS" "$one_s")
log "one-way: $MESH_TXNS transactions in ${one_s}s = $one_rate txn/s"

# ---- 2. bidirectional, no conflicts ----
cat >"$TMP/mesh.yaml" <<YAML
state_dir: $TMP/state_mesh
mesh:
  name: m
  tables: [public.items, public.hot, public.mesh_marker]
  nodes:
    - { name: a, dsn: "$(pgb_dsn a od)" }
    - { name: b, dsn: "$(pgb_dsn b od)" }
YAML
start_odsync "$TMP/mesh.yaml"
wait_true a od "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_m_a_to_b'" 60 || od_die "mesh slot a not active"
wait_true b od "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_m_b_to_a'" 60 || od_die "mesh slot b not active"
stop_odsync
half=$(( MESH_TXNS / 2 ))
log "bidirectional: $half transactions at each node"
bench_load a od "$TMP/items.sql" "$half" 4 &
p1=$!
bench_load b od "$TMP/items.sql" "$half" 4
wait $p1
t0=$EPOCHREALTIME
start_odsync "$TMP/mesh.yaml"
wait_true a od "SELECT count(*) = $(( 2 * half )) FROM items" 1800 || od_die "mesh a did not catch up"
wait_true b od "SELECT count(*) = $(( 2 * half )) FROM items" 1800 || od_die "mesh b did not catch up"
t1=$EPOCHREALTIME
bi_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
bi_rate=$(rate $(( 2 * half )) "$bi_s")
bi_conf=$(qd a od -c "SELECT count(*) FROM _odsync_conflicts")
log "bidirectional: $(( 2 * half )) transactions in ${bi_s}s = $bi_rate txn/s total ($(rate "$half" "$bi_s") per direction); conflicts logged: $bi_conf"

# ---- 3. conflicting workload, odsync ----
quiesce() { # DB -> markers both ways
  local tag=$RANDOM$RANDOM
  qd a "$1" -c "INSERT INTO mesh_marker VALUES ('a$tag', 0)"
  qd b "$1" -c "INSERT INTO mesh_marker VALUES ('b$tag', 0)"
  wait_true b "$1" "SELECT count(*) = 1 FROM mesh_marker WHERE id = 'a$tag'" 120 &&
    wait_true a "$1" "SELECT count(*) = 1 FROM mesh_marker WHERE id = 'b$tag'" 120
}
same() { # DB -> "yes" when both nodes hold the same rows of hot
  local x y
  x=$(qd a "$1" -c "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM hot t")
  y=$(qd b "$1" -c "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM hot t")
  [[ $x == "$y" ]] && echo yes || echo NO
}
log "conflicting workload through odsync: $MESH_CONFLICT_TXNS transactions at each node on 30 keys"
t0=$EPOCHREALTIME
bench_load a od "$TMP/hot.sql" "$MESH_CONFLICT_TXNS" 2 &
p1=$!
bench_load b od "$TMP/hot.sql" "$MESH_CONFLICT_TXNS" 2
wait $p1
quiesce od && quiesce od || log "odsync: not quiescent after 120 s"
t1=$EPOCHREALTIME
od_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
od_same=$(same od)
od_conf=$(( $(qd a od -c "SELECT count(*) FROM _odsync_conflicts") + $(qd b od -c "SELECT count(*) FROM _odsync_conflicts") - 2 * bi_conf ))
stop_odsync
log "odsync: converged $od_same, conflicts logged (both nodes) $od_conf, $(rate $(( 2 * MESH_CONFLICT_TXNS )) "$od_s") txn/s"

# ---- 3b. the same with pglogical ----
pgl_line="pglogical: not installed (apt-get install postgresql-15-pglogical)"
if ((HAVE_PGLOGICAL)); then
  for n in a b; do
    qd $n pgl -c "CREATE EXTENSION pglogical" \
      -c "SELECT pglogical.create_node(node_name := '$n', dsn := '$(pgb_dsn $n pgl)')" \
      -c "SELECT pglogical.replication_set_add_table('default', 'hot')" \
      -c "SELECT pglogical.replication_set_add_table('default', 'mesh_marker')" >/dev/null
  done
  for n in a b; do
    o=b; [[ $n == b ]] && o=a
    qd $n pgl -c "SELECT pglogical.create_subscription(subscription_name := 'from_$o', provider_dsn := '$(pgb_dsn $o pgl)', synchronize_data := false, forward_origins := '{}')" >/dev/null
  done
  for n in a b; do
    wait_true $n pgl "SELECT status = 'replicating' FROM pglogical.show_subscription_status()" 120 || log "pglogical subscription at $n not replicating"
  done
  c0=$(cat "$TMP"/a/server.log "$TMP"/b/server.log 2>/dev/null | grep -c "CONFLICT" || true)
  log "conflicting workload through pglogical"
  t0=$EPOCHREALTIME
  bench_load a pgl "$TMP/hot.sql" "$MESH_CONFLICT_TXNS" 2 &
  p1=$!
  bench_load b pgl "$TMP/hot.sql" "$MESH_CONFLICT_TXNS" 2
  wait $p1
  quiesce pgl && quiesce pgl || log "pglogical: not quiescent after 120 s"
  t1=$EPOCHREALTIME
  pg_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  c1=$(cat "$TMP"/a/server.log "$TMP"/b/server.log 2>/dev/null | grep -c "CONFLICT" || true)
  pgl_line="pglogical 2: converged $(same pgl), conflicts logged (both nodes) $((c1 - c0)), $(rate $(( 2 * MESH_CONFLICT_TXNS )) "$pg_s") txn/s"
fi

cat <<EOF

multi-master, 2 nodes on one machine (measured under the machine's current load; wall clock)
  one-way odsync a->b:              $MESH_TXNS txns in ${one_s}s = $one_rate txn/s
  bidirectional odsync mesh a<->b:  $(( 2 * half )) txns in ${bi_s}s = $bi_rate txn/s total, $(rate "$half" "$bi_s") per direction
  ratio bidirectional total / one-way: $(awk -v a="$bi_rate" -v b="$one_rate" 'BEGIN { printf "%.0f %%", 100 * a / b }')
  conflicting workload ($MESH_CONFLICT_TXNS txns per node, 30 keys):
    odsync mesh: converged $od_same, conflicts logged (both nodes) $od_conf, $(rate $(( 2 * MESH_CONFLICT_TXNS )) "$od_s") txn/s
    $pgl_line
EOF
