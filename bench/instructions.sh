#!/usr/bin/env bash
# bench/instructions.sh — CPU cost of odsync per change, counted in instructions (valgrind's
# callgrind), for two builds on the same WAL in the same run: a change to the core can be judged on a
# busy machine, where wall-clock figures measure the neighbours. Instruction counts are repeatable for
# the same binary and input (thread scheduling moves them a little: batches are cut differently).
#
#   bench/instructions.sh BASE_BIN NEW_BIN        e.g. a Release build of main and of a branch
#
# What it does: a PostgreSQL cluster, table bench_rows (bigint key, int, text, timestamptz,
# numeric), one pgoutput slot per build (created before the workload, so both decode the same WAL),
# BENCH_ROWS inserts then BENCH_ROWS updates in BENCH_TXN-row transactions; then, for each round and
# each build, `odsync run` into a fresh SQLite file under `valgrind --tool=callgrind` until its
# checkpoint reaches the last transaction, SIGTERM, and the total instructions of the process
# (every thread). Prints instructions per change for each build and NEW/BASE per round.
#
# Environment: BENCH_ROWS (50000), BENCH_TXN (1000), BENCH_ROUNDS (2), PG_BIN, BENCH_KEEP=1;
# BENCH_YAML_BASE / BENCH_YAML_NEW: top-level config lines added for that build only (e.g. a
# `tracing:` block; bench/metrics_cost.sh compares one feature on and off this way).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ $# -eq 2 ]] || od_die "usage: bench/instructions.sh BASE_BIN NEW_BIN"
BINS=("$1" "$2")
NAMES=(base new)
for b in "${BINS[@]}"; do [[ -x $b ]] || od_die "$b is not an executable"; done
command -v valgrind >/dev/null || od_die "valgrind not found (scripts/setup.sh installs it)"
BENCH_ROWS=${BENCH_ROWS:-50000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
CHANGES=$((2 * BENCH_ROWS))

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-instr.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $ODSYNC_PID ]]; then od_stop_pid "$ODSYNC_PID" 60; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  od_pg_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

od_pg_start "$TMP/pg" "shared_buffers = 512MB" "max_wal_size = 8GB" "autovacuum = off"
od_psql postgres -c "CREATE DATABASE bench"
od_bench_rows_table bench
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for n in "${NAMES[@]}"; do
    od_psql bench -c "SELECT pg_create_logical_replication_slot('instr_${n}_$r', 'pgoutput')" >/dev/null
  done
done
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
od_bench_rows_workload bench "$BENCH_ROWS" "$BENCH_TXN"
# An LSN inside the last transaction (row 0): a checkpoint at or past it holds every row. (An LSN
# read after the workload, before row 0, was reached by the workload's last commit: a large run
# could stop before row 0 arrived and fail the comparison.)
TARGET=$(od_bench_rows_last_txn bench)
CHANGES=$((CHANGES + 1))

declare -A IR
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for i in 0 1; do
    n=${NAMES[$i]}
    dir=$TMP/$n-$r
    mkdir -p "$dir"
    extra=BENCH_YAML_${n^^}
    cat >"$dir/bench.yml" <<YAML
state_dir: $dir/state
log_level: warn
${!extra:-}
pipelines:
  - name: instr
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", slot: instr_${n}_$r, publication: odsync_bench, snapshot: never }
    sink: { type: sqlite, path: $dir/sink.db }
YAML
    log "round $r, $n: odsync under callgrind"
    valgrind -q --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "${BINS[$i]}" run -c "$dir/bench.yml" \
      --no-progress >"$dir/odsync.log" 2>&1 &
    ODSYNC_PID=$!
    while :; do
      pos=$(od_sink_position "$dir/sink.db" instr)
      ((pos >= TARGET)) && break
      od_alive "$ODSYNC_PID" || { tail -n 20 "$dir/odsync.log" >&2; od_die "odsync ($n) exited early"; }
      sleep 1
    done
    od_stop_pid "$ODSYNC_PID" 120
    wait "$ODSYNC_PID" || true
    ODSYNC_PID=
    rows=$(sqlite3 "$dir/sink.db" "SELECT count(*) || ':' || sum(a) FROM bench_rows")
    want=$(od_psql bench -c "SELECT count(*) || ':' || sum(a) FROM bench_rows")
    [[ $rows == "$want" ]] || od_die "round $r, $n: the sink holds $rows (count:sum), the source $want"
    IR[$n-$r]=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out")
    log "round $r, $n: ${IR[$n-$r]} instructions"
  done
done

printf '\n%-6s %-6s %16s %14s %10s\n' round build instructions "per change" new/base
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for n in "${NAMES[@]}"; do
    ratio=""
    [[ $n == new ]] && ratio=$(awk -v a="${IR[new-$r]}" -v b="${IR[base-$r]}" 'BEGIN { printf "%.4f", a / b }')
    printf '%-6s %-6s %16s %14s %10s\n' "$r" "$n" "${IR[$n-$r]}" \
      "$(awk -v a="${IR[$n-$r]}" -v c="$CHANGES" 'BEGIN { printf "%.0f", a / c }')" "$ratio"
  done
done
