#!/usr/bin/env bash
# bench/mariadb_trigger_cost.sh — what the `mariadb_trigger` capture triggers cost MariaDB's writers
# (docs/adapters/mariadb_trigger.md, "The cost"): the same write workload without triggers, with
# them (odsync install-triggers), and without again (uninstall-triggers), in one run.
#
# One throwaway MariaDB (tests/env/mariadb.sh: binlog on, sync_binlog=1,
# innodb_flush_log_at_trx_commit=1). BENCH_CLIENTS mariadb clients (one connection each) run
# BENCH_TXNS transactions each: BEGIN; 3 INSERTs into bench_orders; UPDATE of one of the client's
# own bench_accounts rows; COMMIT. Clients touch disjoint keys, so without triggers they never wait
# for each other; with triggers every capturing transaction holds the counter row from its first
# captured change to its commit (the design's serialization), which is what this measures. No odsync
# runs: the change table grows unpruned.
# Prints wall seconds, transactions/s and the server's CPU seconds (mariadbd, /proc) per phase, and
# the ratios with / mean(without). Wall figures on a shared machine are "measured under load": compare
# only the phases of one run.
#
# Environment: BENCH_CLIENTS (4), BENCH_TXNS (500 per client), ODSYNC_BIN (build/odsync),
# BENCH_KEEP=1 (keep the temp dirs).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ODSYNC_SOURCE_DIR=$ROOT
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
# shellcheck source=tests/env/common.sh
source "$ROOT/tests/env/common.sh"
# shellcheck source=tests/env/pg.sh
source "$ROOT/tests/env/pg.sh"
# shellcheck source=tests/env/mariadb.sh
source "$ROOT/tests/env/mariadb.sh"

BENCH_CLIENTS=${BENCH_CLIENTS:-4}
BENCH_TXNS=${BENCH_TXNS:-500}
[[ -x $ODSYNC_BIN ]] || { echo "odsync not built at $ODSYNC_BIN (scripts/build.sh)" >&2; exit 1; }
BENCH_TMP=$(mktemp -d /tmp/odsync-bench-mytrig.XXXXXX)
cleanup() {
  my_cleanup_all || true
  pg_cleanup_all || true
  [[ -n "${BENCH_KEEP:-}" ]] || rm -rf "$BENCH_TMP"
}
trap cleanup EXIT

my_start shop
my_sql -e "GRANT ALL PRIVILEGES ON *.* TO '$MY_USER'@'%';
  CREATE TABLE bench_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, note VARCHAR(40));
  CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, account INT NOT NULL, amount DECIMAL(12,2), at DATETIME(6));
  INSERT INTO bench_accounts SELECT seq, 0, 'start' FROM seq_0_to_9999;"
cat >"$BENCH_TMP/odsync.yml" <<YAML
state_dir: $BENCH_TMP/state
pipelines:
  - name: bench
    source: { type: mariadb_trigger, dsn: "$(my_dsn)", tables: [shop.bench_accounts, shop.bench_orders] }
    sink: { type: sqlite, path: $BENCH_TMP/sink.db }
YAML

# The SQL of client c in phase p: its own account rows (c, c + clients, ...) and order keys.
client_sql() {
  local c=$1 p=$2 i base
  for ((i = 0; i < BENCH_TXNS; i++)); do
    base=$(((p * BENCH_CLIENTS + c) * 10000000 + i * 3))
    printf 'BEGIN; INSERT INTO bench_orders VALUES (%d, %d, 1.25, NOW(6)), (%d, %d, 2.5, NOW(6)), (%d, %d, 3.75, NOW(6)); UPDATE bench_accounts SET balance = balance + 1, note = %s WHERE id = %d; COMMIT;\n' \
      "$base" "$c" "$((base + 1))" "$c" "$((base + 2))" "$c" "'p$p i$i'" "$(((i * BENCH_CLIENTS + c) % 10000))"
  done
}
server_cpu() { # mariadbd's user+system CPU seconds
  local pid
  pid=$(cat "$MY_DIR/mariadbd.pid")
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}
declare -A WALL TPS CPU
phase() {
  local p=$1 name=$2 c pids=() t0 t1 cpu0 cpu1 before after
  for ((c = 0; c < BENCH_CLIENTS; c++)); do client_sql "$c" "$p" >"$BENCH_TMP/c$c.sql"; done
  before=$(my_sql -e "SELECT COUNT(*) FROM bench_orders")
  cpu0=$(server_cpu)
  t0=$(date +%s%N)
  for ((c = 0; c < BENCH_CLIENTS; c++)); do
    my_sql <"$BENCH_TMP/c$c.sql" &
    pids+=($!)
  done
  for c in "${pids[@]}"; do wait "$c" || { echo "a client failed in phase $name" >&2; exit 1; }; done
  t1=$(date +%s%N)
  cpu1=$(server_cpu)
  after=$(my_sql -e "SELECT COUNT(*) FROM bench_orders")
  (((after - before) == 3 * BENCH_CLIENTS * BENCH_TXNS)) || { echo "phase $name inserted $((after - before)) rows" >&2; exit 1; }
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  TPS[$name]=$(awk -v w="${WALL[$name]}" -v n="$((BENCH_CLIENTS * BENCH_TXNS))" 'BEGIN { printf "%.0f", n / w }')
  CPU[$name]=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
  echo "$name: $((BENCH_CLIENTS * BENCH_TXNS)) transactions in ${WALL[$name]} s = ${TPS[$name]} tps, server CPU ${CPU[$name]} s"
}

phase 0 without
"$ODSYNC_BIN" install-triggers -c "$BENCH_TMP/odsync.yml" >/dev/null
phase 1 with
captured=$(my_sql -e "SELECT COUNT(*) FROM odsync.changes")
(("captured" == 4 * BENCH_CLIENTS * BENCH_TXNS)) || { echo "captured $captured changes, expected $((4 * BENCH_CLIENTS * BENCH_TXNS))" >&2; exit 1; }
"$ODSYNC_BIN" uninstall-triggers -c "$BENCH_TMP/odsync.yml" >/dev/null
phase 2 again
awk -v w="${TPS[with]}" -v a="${TPS[without]}" -v b="${TPS[again]}" -v cw="${CPU[with]}" -v ca="${CPU[without]}" -v cb="${CPU[again]}" \
  -v n="$captured" 'BEGIN { printf "changes captured: %d\nwith / mean(without): tps %.2f, server CPU %.2f\n", n, w / ((a + b) / 2), cw / ((ca + cb) / 2) }'
