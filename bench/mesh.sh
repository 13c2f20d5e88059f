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
#      For both phases also: the start-up (odsync's start until the first row of the load is on
#      the sink) and the steady state: rows applied after that moment / time until the last row
#      (a watcher inside each sink server, 10 ms polls); and the CPU seconds per transaction of
#      odsync and of each server (all its processes, the watchers included) over the phase, so the
#      ratio can be read for a machine with more cores. The ratio is the same in every line:
#      bidirectional total transactions/s over one-way transactions/s, both in the same run.
#   3. conflicting workload, both tools: pgbench at both nodes at once, MESH_CONFLICT_TXNS
#      transactions per node of random upserts/updates/deletes on 30 shared keys, replicated live;
#      after the load, wait for quiescence (markers both ways, up to 120 s); report whether the
#      nodes converged (row-for-row compare), the conflicts detected (odsync: _odsync_conflicts
#      rows; pglogical: "CONFLICT" lines its conflict logging writes to the server logs) and the
#      throughput (transactions of both nodes / seconds from load start to quiescence).
#      pglogical: bidirectional subscriptions with forward_origins = '{}', conflict_resolution
#      last_update_wins. Skipped (and said so) when postgresql-15-pglogical is not installed.
# The machine may be shared and loaded: all figures are wall-clock, measured under that load, both
# sides in the same run. Environment: MESH_TXNS (100000) MESH_CONFLICT_TXNS (2000) ODSYNC_BIN PG_BIN
# BENCH_KEEP=1 MESH_STATEMENTS=1 (pg_stat_statements preloaded: after phases 1 and 2 the sinks'
# costliest statements, execution and planning time per transaction, executions and plans, go to stderr) MESH_SKIP_CONFLICTS=1 (phases
# 1 and 2 only) MESH_OUTPUT_PLUGIN (mesh.output_plugin: auto (default), pgoutput or odsync_pgoutput;
# the servers are offered odsync_pgoutput from the pgplugin folder beside ODSYNC_BIN when it was built
# there: scripts/lib/pg_server.sh). The bidirectional line names the slots' output plugin.
# MESH_PERF=1: `perf record -a -g` over the bidirectional phase; after it, the top symbols (self
# time) of node a's walsender and sink session and of odsync go to stderr (perf.data kept in the
# bench's temp dir with BENCH_KEEP=1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"

MESH_TXNS=${MESH_TXNS:-100000}
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
preload=()
((HAVE_PGLOGICAL)) && preload+=(pglogical) && conf+=("pglogical.conflict_log_level = 'log'")
[[ ${MESH_STATEMENTS:-0} == 1 ]] && preload+=(pg_stat_statements) &&
  conf+=("pg_stat_statements.track = all" "pg_stat_statements.track_planning = on")
((${#preload[@]})) && conf+=("shared_preload_libraries = '$(IFS=,; echo "${preload[*]}")'")
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
  PGOPTIONS="-c synchronous_commit=off" pgbench -n -h 127.0.0.1 -p "${PGB_PORT[$1]}" -U postgres -c "$5" -j 1 -t $(( $4 / $5 )) -f "$3" "$2" >>"$TMP/pgbench.log" 2>&1
}

# ---- measuring helpers ----
# The id of the transaction committed first (ORDER asc) or last (desc) at NODE among the rows of
# TABLE matching WHERE (every row is one transaction of the load).
load_id() { qd "$1" od -c "SELECT id FROM $2 WHERE $3 ORDER BY pg_xact_commit_timestamp(xmin) $4 LIMIT 1"; }
# In the background, inside NODE's server (10 ms polls, index probes, committing every round so no
# snapshot is held back): wait until the row FIRST of TABLE is there, note the server clock and the
# rows matching WHERE then; wait until the row LAST is there and COUNT rows match WHERE; note the
# clock. Writes "t_first rows_then t_last" to FILE. The sink applies in the source's commit order,
# so FIRST arrives with the first apply commit and LAST with the last.
watch_apply() { # NODE TABLE FIRST LAST WHERE COUNT FILE
  pgb_psql "$1" od -c "DO \$w\$
DECLARE t0 timestamptz := clock_timestamp(); f float8; n bigint; ok bool;
BEGIN
  LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM $2 WHERE id = $3);
    IF clock_timestamp() - t0 > interval '1800 seconds' THEN RAISE EXCEPTION 'watch_apply: timeout'; END IF;
    COMMIT; PERFORM pg_sleep(0.01);
  END LOOP;
  f := extract(epoch FROM clock_timestamp());
  SELECT count(*) INTO n FROM $2 WHERE $5;
  COMMIT;
  LOOP
    IF EXISTS (SELECT 1 FROM $2 WHERE id = $4) THEN
      SELECT count(*) = $6 INTO ok FROM $2 WHERE $5;
      EXIT WHEN ok;
    END IF;
    IF clock_timestamp() - t0 > interval '1800 seconds' THEN RAISE EXCEPTION 'watch_apply: timeout'; END IF;
    COMMIT; PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE NOTICE 'watch_apply % % %', f, n, extract(epoch FROM clock_timestamp());
END \$w\$" 2>&1 >/dev/null | sed -n 's/.*watch_apply \([0-9.]*\) \([0-9]*\) \([0-9.]*\).*/\1 \2 \3/p' >"$7"
  [[ -s $7 ]]
}
# Wait for the watchers (pids) while odsync runs; 1 when odsync exits first or a watcher failed.
wait_watchers() {
  local p
  for p in "$@"; do
    while od_alive "$p"; do
      od_alive "$ODSYNC_PID" || { echo "odsync exited during the measurement (log: $TMP/odsync.log)" >&2; return 1; }
      sleep 0.05
    done
    wait "$p" || return 1
  done
}
# Statement profile (MESH_STATEMENTS=1): reset, then the top statements by server time.
stmt_reset() {
  [[ ${MESH_STATEMENTS:-0} == 1 ]] || return 0
  for n in a b; do qd $n od -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null; done
}
stmt_report() { # TITLE TXNS
  [[ ${MESH_STATEMENTS:-0} == 1 ]] || return 0
  for n in a b; do
    echo "-- $1, node $n: statements by server time (µs per transaction of the phase: execution | planning;" \
      "executions | plans per 1000 txns; rows)" >&2
    qd $n od -F ' | ' -c "SELECT round((total_exec_time * 1000 / $2)::numeric, 2), round((total_plan_time * 1000 / $2)::numeric, 2),
        round(calls * 1000.0 / $2, 1), round(plans * 1000.0 / $2, 1), rows,
        left(regexp_replace(query, '\s+', ' ', 'g'), 150) FROM pg_stat_statements
        WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pgb_wait%' AND query NOT LIKE 'DO \$w\$%'
          AND query NOT LIKE 'SELECT pg_sleep%'
        ORDER BY total_exec_time + total_plan_time DESC LIMIT 12" >&2
  done
}
# Where a server's CPU of the phase went, by process (read before odsync stops: its walsenders and
# sessions started with the phase, so their whole CPU time is the phase's): "walsender W, sink S,
# source meta M, watcher X, other O" in µs per transaction; other = the server's CPU over the phase
# less those (background processes, exited sessions).
# The pid of NODE's walsender (CLASS walsender) or odsync sink session (CLASS sink).
class_pid() { qd "$1" postgres -c "SELECT pid FROM pg_stat_activity WHERE $( [[ $2 == walsender ]] &&
  echo "backend_type = 'walsender'" || echo "application_name LIKE 'odsync%sink'") LIMIT 1"; }
perf_top() { # TITLE PID
  echo "-- perf, $1 (pid $2): top symbols by self time" >&2
  perf report -i "$TMP/perf.data" --pid "$2" --no-children --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 25 >&2 || true
}
proc_split() { # NODE SERVER_CPU_SECONDS_OF_PHASE TXNS
  local rows hz
  hz=$(getconf CLK_TCK)
  rows=$(qd "$1" postgres -F ' ' -c "SELECT pid, CASE WHEN backend_type = 'walsender' THEN 'walsender'
      WHEN application_name LIKE 'odsync%sink' THEN 'sink' WHEN application_name LIKE 'odsync%' THEN 'meta'
      WHEN application_name = 'psql' THEN 'watcher' ELSE 'skip' END FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
  while read -r pid cls; do
    [[ $cls == skip ]] && continue
    awk -v c="$cls" -v hz="$hz" '{ printf "%s %.4f\n", c, ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true
  done <<<"$rows" | awk -v tot="$2" -v n="$3" '{ t[$1] += $2; sum += $2 }
    END { printf "walsender %.1f, sink %.1f, source meta %.1f, watcher %.1f, other %.1f",
          t["walsender"] * 1e6 / n, t["sink"] * 1e6 / n, t["meta"] * 1e6 / n, t["watcher"] * 1e6 / n, (tot - sum) * 1e6 / n }'
}
us_per() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.1f", c * 1000000 / n }'; }

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
id0=$(load_id a one true ASC) id1=$(load_id a one true DESC)
stmt_reset
ca0=$(pgb_server_cpu a) cb0=$(pgb_server_cpu b)
t0=$EPOCHREALTIME
start_odsync "$TMP/oneway.yaml"
watch_apply b one "$id0" "$id1" true "$MESH_TXNS" "$TMP/w_one" &
w1=$!
wait_watchers $w1 || od_die "one-way did not catch up"
t1=$EPOCHREALTIME
one_cpu=$(od_cpu_seconds "$ODSYNC_PID") ca1=$(pgb_server_cpu a) cb1=$(pgb_server_cpu b)
one_split_a=$(proc_split a "$(od_secs "$ca0" "$ca1")" "$MESH_TXNS") one_split_b=$(proc_split b "$(od_secs "$cb0" "$cb1")" "$MESH_TXNS")
stop_odsync
stmt_report one-way "$MESH_TXNS"
one_s=$(od_secs "$t0" "$t1")
one_rate=$(rate "$MESH_TXNS" "$one_s")
read -r f0 fn f1 <"$TMP/w_one"
one_start=$(od_secs "$t0" "$f0")
one_ss=$(od_secs "$f0" "$f1")
one_ss_rate=$(rate $(( MESH_TXNS - fn )) "$one_ss")
one_cpu_line="odsync $(us_per "$one_cpu" "$MESH_TXNS"), server a $(us_per "$(od_secs "$ca0" "$ca1")" "$MESH_TXNS"), server b $(us_per "$(od_secs "$cb0" "$cb1")" "$MESH_TXNS")"
one_cpu_all=$(us_per "$(awk -v o="$one_cpu" -v a="$(od_secs "$ca0" "$ca1")" -v b="$(od_secs "$cb0" "$cb1")" 'BEGIN { print o + a + b }')" "$MESH_TXNS")
log "one-way: $MESH_TXNS transactions in ${one_s}s = $one_rate txn/s; start-up ${one_start}s, steady $one_ss_rate txn/s; CPU µs/txn: $one_cpu_line"

# ---- 2. bidirectional, no conflicts ----
cat >"$TMP/mesh.yaml" <<YAML
state_dir: $TMP/state_mesh
mesh:
  name: m
  tables: [public.items, public.hot, public.mesh_marker]${MESH_OUTPUT_PLUGIN:+
  output_plugin: $MESH_OUTPUT_PLUGIN}
  nodes:
    - { name: a, dsn: "$(pgb_dsn a od)" }
    - { name: b, dsn: "$(pgb_dsn b od)" }
YAML
start_odsync "$TMP/mesh.yaml"
wait_true a od "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_m_a_to_b'" 60 || od_die "mesh slot a not active"
wait_true b od "SELECT active FROM pg_replication_slots WHERE slot_name = 'odsync_m_b_to_a'" 60 || od_die "mesh slot b not active"
stop_odsync
plugins=$(for n in a b; do qd $n od -c "SELECT '$n: ' || plugin FROM pg_replication_slots WHERE slot_name LIKE 'odsync_m_%'"; done | paste -sd, -)
log "mesh slots' output plugin: $plugins"
half=$(( MESH_TXNS / 2 ))
log "bidirectional: $half transactions at each node"
bench_load a od "$TMP/items.sql" "$half" 4 &
p1=$!
bench_load b od "$TMP/items.sql" "$half" 4
wait $p1
# a's rows have odd ids, b's even ones (per-node sequences)
ia0=$(load_id a items "id % 2 = 1" ASC) ia1=$(load_id a items "id % 2 = 1" DESC)
ib0=$(load_id b items "id % 2 = 0" ASC) ib1=$(load_id b items "id % 2 = 0" DESC)
stmt_reset
ca0=$(pgb_server_cpu a) cb0=$(pgb_server_cpu b)
PERF_PID=
if [[ ${MESH_PERF:-0} == 1 ]]; then
  perf record -a -g -F 999 -o "$TMP/perf.data" >/dev/null 2>"$TMP/perf.log" & PERF_PID=$!
  sleep 0.5
fi
t0=$EPOCHREALTIME
start_odsync "$TMP/mesh.yaml"
watch_apply a items "$ib0" "$ib1" "id % 2 = 0" "$half" "$TMP/w_ba" &
w1=$!
watch_apply b items "$ia0" "$ia1" "id % 2 = 1" "$half" "$TMP/w_ab" &
w2=$!
wait_watchers $w1 $w2 || od_die "the mesh did not catch up"
t1=$EPOCHREALTIME
bi_cpu=$(od_cpu_seconds "$ODSYNC_PID") ca1=$(pgb_server_cpu a) cb1=$(pgb_server_cpu b)
bi_split_a=$(proc_split a "$(od_secs "$ca0" "$ca1")" $(( 2 * half ))) bi_split_b=$(proc_split b "$(od_secs "$cb0" "$cb1")" $(( 2 * half )))
if [[ -n $PERF_PID ]]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true
  perf_top "node a walsender" "$(class_pid a walsender)"
  perf_top "node a sink session" "$(class_pid a sink)"
  perf_top "odsync" "$ODSYNC_PID"
fi
stmt_report bidirectional $(( 2 * half ))
bi_s=$(od_secs "$t0" "$t1")
bi_rate=$(rate $(( 2 * half )) "$bi_s")
bi_conf=$(qd a od -c "SELECT count(*) FROM _odsync_conflicts")
read -r g0 gn g1 <"$TMP/w_ba"  # b -> a
read -r h0 hn h1 <"$TMP/w_ab"  # a -> b
bi_f0=$(awk -v x="$g0" -v y="$h0" 'BEGIN { print (x < y ? x : y) }')
bi_f1=$(awk -v x="$g1" -v y="$h1" 'BEGIN { print (x > y ? x : y) }')
bi_start=$(od_secs "$t0" "$bi_f0")
bi_ss=$(od_secs "$bi_f0" "$bi_f1")
bi_ss_rate=$(rate $(( 2 * half - gn - hn )) "$bi_ss")
bi_cpu_line="odsync $(us_per "$bi_cpu" $(( 2 * half ))), server a $(us_per "$(od_secs "$ca0" "$ca1")" $(( 2 * half ))), server b $(us_per "$(od_secs "$cb0" "$cb1")" $(( 2 * half )))"
bi_cpu_all=$(us_per "$(awk -v o="$bi_cpu" -v a="$(od_secs "$ca0" "$ca1")" -v b="$(od_secs "$cb0" "$cb1")" 'BEGIN { print o + a + b }')" $(( 2 * half )))
log "bidirectional: $(( 2 * half )) transactions in ${bi_s}s = $bi_rate txn/s total ($(rate "$half" "$bi_s") per direction); start-up ${bi_start}s, steady $bi_ss_rate txn/s; CPU µs/txn: $bi_cpu_line; conflicts logged: $bi_conf"
if [[ ${MESH_SKIP_CONFLICTS:-0} == 1 ]]; then
  stop_odsync
  od_same="(skipped)" od_conf=- od_s=
  pgl_line="pglogical: skipped (MESH_SKIP_CONFLICTS=1)"
else

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

fi

cat <<EOF

multi-master, 2 nodes on one machine (measured under the machine's current load; wall clock)
  one-way odsync a->b:              $MESH_TXNS txns in ${one_s}s = $one_rate txn/s
  bidirectional odsync mesh a<->b (slots' output plugin $plugins):
                                    $(( 2 * half )) txns in ${bi_s}s = $bi_rate txn/s total, $(rate "$half" "$bi_s") per direction
  ratio bidirectional total / one-way: $(awk -v a="$bi_rate" -v b="$one_rate" 'BEGIN { printf "%.0f %%", 100 * a / b }')
  start-up (odsync start until the first row is on the sink): one-way ${one_start}s, bidirectional ${bi_start}s
  steady state (rows after the first on the sink / time to the last): one-way $one_ss_rate txn/s, bidirectional $bi_ss_rate txn/s total, ratio $(awk -v a="$bi_ss_rate" -v b="$one_ss_rate" 'BEGIN { printf "%.0f %%", 100 * a / b }')
  CPU µs per transaction: one-way: $one_cpu_line (all $one_cpu_all)
                          bidirectional: $bi_cpu_line (all $bi_cpu_all)
  servers' CPU by process, µs per transaction of the phase:
    one-way        a: $one_split_a
                   b: $one_split_b
    bidirectional  a: $bi_split_a
                   b: $bi_split_b
  ratio where the CPU is the limit (one-way CPU per txn / bidirectional): $(awk -v a="$one_cpu_all" -v b="$bi_cpu_all" 'BEGIN { printf "%.0f %%", (b > 0 ? 100 * a / b : 0) }')
  conflicting workload ($MESH_CONFLICT_TXNS txns per node, 30 keys):
    odsync mesh: converged $od_same, conflicts logged (both nodes) $od_conf, $([[ -n $od_s ]] && echo "$(rate $(( 2 * MESH_CONFLICT_TXNS )) "$od_s") txn/s" || echo "throughput -")
    $pgl_line
EOF
