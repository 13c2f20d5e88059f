#!/usr/bin/env bash
# bench/capture_methods.sh — the three PostgreSQL capture methods into SQLite, in one run, on one
# server: pgoutput (`postgres`), query-based polling (`postgres_poll`, watermark xmin) and trigger
# capture (`postgres_trigger`); then the cost of the capture triggers on the source (pgbench TPS
# without and with them). Not part of CI; on a shared machine every figure is "measured under load",
# and only figures of the same run are comparable.
#
# Per method (each in a database of its own, a fresh SQLite sink, odsync started before the load):
#   throughput: BENCH_ROWS inserts in BENCH_TXN-row transactions, then one UPDATE per row in the same
#               transaction size (2 x BENCH_ROWS source changes); time from the start of the load until
#               the sink holds every row in its updated state. changes/s = source changes / that time
#               (polling delivers the state at each cycle: an insert and its update between two cycles
#               arrive as one row, so it applies fewer sink changes for the same source changes).
#   latency:    BENCH_PINGS single-row inserts, one at a time; time from COMMIT until the row is in the
#               sink (probed every 10 ms with sqlite3): median and p95.
# pgbench: scale BENCH_SCALE, BENCH_CLIENTS clients, BENCH_SECONDS each for TPS, then BENCH_TXNS
#   transactions per client for the server's CPU time per transaction (and, during the TPS run, the CPU
#   time of the pgbench connections' own backends per committed transaction, read from /proc: the
#   steadier figure, free of background processes and start-up): without triggers, with the
#   capture triggers on pgbench_accounts/tellers/branches (pgbench_history has no primary key, so it is
#   not captured), and without again (the two "without" runs bracket drift). No odsync runs meanwhile
#   (the change table grows unpruned: the trigger's own cost).
# Environment: BENCH_ROWS (20000) BENCH_TXN (500) BENCH_PINGS (20) BENCH_SCALE (10) BENCH_CLIENTS (4)
#   BENCH_METHODS (all three; "" for pgbench only) BENCH_SECONDS (20) BENCH_TXNS (1500 per client, for CPU/txn) POLL_INTERVAL_MS (200) TRIGGER_INTERVAL_MS (100) ODSYNC_BIN PG_BIN BENCH_KEEP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

BENCH_ROWS=${BENCH_ROWS:-20000}
BENCH_TXN=${BENCH_TXN:-500}
BENCH_PINGS=${BENCH_PINGS:-20}
BENCH_SCALE=${BENCH_SCALE:-10}
BENCH_CLIENTS=${BENCH_CLIENTS:-4}
BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_TXNS=${BENCH_TXNS:-1500}
POLL_INTERVAL_MS=${POLL_INTERVAL_MS:-200}
TRIGGER_INTERVAL_MS=${TRIGGER_INTERVAL_MS:-100}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
command -v sqlite3 >/dev/null || od_die "sqlite3 CLI not found"
command -v pgbench >/dev/null || od_die "pgbench not found (apt-get install postgresql-contrib)"
PGBIN=$(od_pg_bindir)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-capture.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $ODSYNC_PID ]]; then od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  od_pg_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

od_pg_start "$TMP/pg" "shared_buffers = 256MB" "max_wal_size = 4GB" "wal_level = logical" "timezone = 'UTC'"
log "PostgreSQL on 127.0.0.1:$OD_PG_PORT"

# run_method METHOD: prints "METHOD changes/s median_ms p95_ms"
run_method() {
  local m=$1 db=b_$1 sink=$TMP/$1.db cfg=$TMP/$1.yaml t0 t1 lat=() i
  od_psql postgres -c "CREATE DATABASE $db"
  od_psql "$db" -c "CREATE TABLE bench_rows (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2))"
  local extra=""
  case $m in
    postgres_poll) extra=", watermark: xmin, interval_ms: $POLL_INTERVAL_MS" ;;
    postgres_trigger) extra=", interval_ms: $TRIGGER_INTERVAL_MS" ;;
  esac
  cat >"$cfg" <<YAML
state_dir: $TMP/state_$m
log_level: warn
pipelines:
  - name: b_$m
    source: { type: $m, dsn: "$(od_pg_dsn "$db")", tables: [public.bench_rows]$extra }
    sink: { type: sqlite, path: $sink }
YAML
  if [[ $m == postgres_trigger ]]; then "$ODSYNC_BIN" install-triggers -c "$cfg" >&2; fi
  "$ODSYNC_BIN" run -c "$cfg" >>"$TMP/$m.log" 2>&1 &
  ODSYNC_PID=$!
  # Ready: a first row made it through.
  od_psql "$db" -c "INSERT INTO bench_rows VALUES (0, 0, 'ready', now(), 0)"
  for ((i = 0; i < 1200; i++)); do
    [[ $(sqlite3 -cmd ".timeout 2000" "$sink" "SELECT count(*) FROM bench_rows" 2>/dev/null || echo 0) == 1 ]] && break
    sleep 0.1
  done
  ((i < 1200)) || od_die "$m: the first row did not arrive (log $TMP/$m.log)"
  t0=$(od_now)
  od_psql "$db" <<SQL
DO \$\$ DECLARE lo bigint := 1; BEGIN
  WHILE lo <= $BENCH_ROWS LOOP
    INSERT INTO bench_rows SELECT g, 0, md5(g::text), now(), g * 0.01 FROM generate_series(lo, least(lo + $BENCH_TXN - 1, $BENCH_ROWS)) g;
    COMMIT; lo := lo + $BENCH_TXN;
  END LOOP;
  lo := 1;
  WHILE lo <= $BENCH_ROWS LOOP
    UPDATE bench_rows SET a = 1, b = b || '+' WHERE id BETWEEN lo AND lo + $BENCH_TXN - 1;
    COMMIT; lo := lo + $BENCH_TXN;
  END LOOP;
END \$\$;
SQL
  for ((i = 0; i < 36000; i++)); do
    [[ $(sqlite3 -cmd ".timeout 2000" "$sink" "SELECT count(*) FROM bench_rows WHERE a = 1" 2>/dev/null || echo 0) == "$BENCH_ROWS" ]] && break
    sleep 0.05
  done
  t1=$(od_now)
  ((i < 36000)) || od_die "$m: the load did not arrive in 30 minutes"
  for ((k = 1; k <= BENCH_PINGS; k++)); do
    local s e
    s=$(od_now)
    od_psql "$db" -c "INSERT INTO bench_rows VALUES (-$k, 2, 'ping', now(), 0)"
    until [[ $(sqlite3 -cmd ".timeout 2000" "$sink" "SELECT count(*) FROM bench_rows WHERE id = -$k" 2>/dev/null || echo 0) == 1 ]]; do sleep 0.01; done
    e=$(od_now)
    lat+=("$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
  done
  od_stop_pid "$ODSYNC_PID" 30
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
  printf '%s\n' "${lat[@]}" | sort -n >"$TMP/$m.lat"
  awk -v m="$m" -v n="$((2 * BENCH_ROWS))" -v a="$t0" -v b="$t1" -v f="$TMP/$m.lat" 'BEGIN {
    while ((getline x < f) > 0) l[c++] = x;
    printf "%-17s %10.0f changes/s   latency median %7.1f ms  p95 %7.1f ms\n", m, n / (b - a), l[int(c / 2)], l[int(c * 0.95) < c ? int(c * 0.95) : c - 1] }'
}

echo "capture methods into SQLite: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions; $BENCH_PINGS pings"
for m in ${BENCH_METHODS-postgres postgres_poll postgres_trigger}; do run_method "$m"; done

# ---------------------------------------------------------------- pgbench: the triggers' cost
od_psql postgres -c "CREATE DATABASE pgb"
pgbench -q -i -s "$BENCH_SCALE" "$(od_pg_dsn pgb)" >/dev/null 2>&1
# CPU seconds used so far by the server: the postmaster, its live children and its exited ones.
server_cpu() {
  local pid kids
  pid=$(head -n 1 "$TMP/pg/data/postmaster.pid")
  kids=$(pgrep -P "$pid" | sed 's|.*|/proc/&/stat|' | tr '\n' ' ')
  # shellcheck disable=SC2086
  cat "/proc/$pid/stat" $kids 2>/dev/null | awk -v hz="$(getconf CLK_TCK)" -v pm="$pid" '
    { t += $14 + $15; if ($1 == pm) t += $16 + $17 } END { printf "%.2f", t / hz }'
}
# CPU seconds used so far by the listed processes (PIDs as arguments).
pids_cpu() {
  local f=()
  for p in "$@"; do f+=("/proc/$p/stat"); done
  cat "${f[@]}" 2>/dev/null | awk -v hz="$(getconf CLK_TCK)" '{ t += $14 + $15 } END { printf "%.3f", t / hz }'
}
# Committed pgbench transactions so far: each TPC-B-like transaction inserts exactly one history row.
pgb_txns() { od_psql pgb -c "SELECT count(*) FROM pgbench_history"; }
# "TPS CPU_MS_PER_TXN BACKEND_CPU_MS_PER_TXN": a time-bounded run for TPS, during which the CPU time of
# the pgbench connections' own backends (no background writer, WAL writer, checkpointer, autovacuum,
# no connection start-up) is read from /proc between second 2 and 2 s before the end, divided by the
# transactions committed in between; then BENCH_TXNS transactions per client for the whole server's
# CPU time per transaction (CPU time is far less sensitive to the neighbours than wall time).
tps() {
  local t c0 c1 pids b0 b1 x0 x1 out=$TMP/pgbench.out
  pgbench -n -c "$BENCH_CLIENTS" -j 2 -T "$BENCH_SECONDS" "$(od_pg_dsn pgb)" >"$out" 2>/dev/null &
  local pgb=$!
  sleep 2
  mapfile -t pids < <(od_psql pgb -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")
  b0=$(pids_cpu "${pids[@]}")
  x0=$(pgb_txns)
  sleep $((BENCH_SECONDS - 4))
  b1=$(pids_cpu "${pids[@]}")
  x1=$(pgb_txns)
  wait "$pgb"
  t=$(awk '/^tps/ { printf "%.0f", $3; exit }' "$out")
  c0=$(server_cpu)
  pgbench -n -c "$BENCH_CLIENTS" -j 2 -t "$BENCH_TXNS" "$(od_pg_dsn pgb)" >/dev/null 2>&1
  c1=$(server_cpu)
  ((${#pids[@]} == BENCH_CLIENTS && x1 > x0)) || od_die "backend CPU: found ${#pids[@]} pgbench backends, $((x1 - x0)) transactions"
  awk -v t="$t" -v a="$c0" -v b="$c1" -v n="$((BENCH_TXNS * BENCH_CLIENTS))" -v p="$b0" -v q="$b1" -v x="$((x1 - x0))" \
    'BEGIN { printf "%s %.3f %.3f", t, (b - a) * 1000 / n, (q - p) * 1000 / x }'
}
# The n-th field (1-based) of a "TPS CPU BACKEND" triple.
f() { echo "$1" | awk -v i="$2" '{ print $i }'; }
cat >"$TMP/pgb.yaml" <<YAML
pipelines:
  - name: pgb
    source: { type: postgres_trigger, dsn: "$(od_pg_dsn pgb)", tables: [public.pgbench_accounts, public.pgbench_tellers, public.pgbench_branches] }
    sink: { type: sqlite, path: $TMP/pgb.db }
YAML
before=$(tps)
"$ODSYNC_BIN" install-triggers -c "$TMP/pgb.yaml" >&2
with=$(tps)
captured=$(od_psql pgb -c "SELECT count(*) FROM odsync.changes")
"$ODSYNC_BIN" uninstall-triggers -c "$TMP/pgb.yaml" >&2
after=$(tps)
echo "pgbench (scale $BENCH_SCALE, $BENCH_CLIENTS clients, TPC-B-like; ${BENCH_SECONDS}s for TPS, then $BENCH_TXNS transactions per client for server CPU per transaction):"
echo "  without triggers: $(f "$before" 1) tps, $(f "$before" 2) ms server CPU/txn, $(f "$before" 3) ms backend CPU/txn"
echo "  with capture triggers: $(f "$with" 1) tps, $(f "$with" 2) ms server CPU/txn, $(f "$with" 3) ms backend CPU/txn ($captured changes captured)"
echo "  without again: $(f "$after" 1) tps, $(f "$after" 2) ms server CPU/txn, $(f "$after" 3) ms backend CPU/txn"
awk -v a="$(f "$before" 1)" -v b="$(f "$with" 1)" -v c="$(f "$after" 1)" -v x="$(f "$before" 2)" -v y="$(f "$with" 2)" \
  -v z="$(f "$after" 2)" -v u="$(f "$before" 3)" -v v="$(f "$with" 3)" -v w="$(f "$after" 3)" 'BEGIN {
  printf "  with/without (mean of both without runs): TPS %.2f, server CPU per transaction %.2f, backend CPU per transaction %.2f\n",
    b / ((a + c) / 2), y / ((x + z) / 2), v / ((u + w) / 2) }'
