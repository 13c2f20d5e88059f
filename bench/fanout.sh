#!/usr/bin/env bash
# bench/fanout.sh — fan-out cost: one pipeline with ONE SQLite sink against the same pipeline with
# TWO SQLite sinks (the slower sink's type, so the single run is "the slower one alone"), on the same
# WAL in the same run. Headline: instructions per change (valgrind's callgrind, every thread), which
# the loaded shared machine does not move; then wall-clock throughput of each (no valgrind), labelled
# as measured under load, and two/single.
#
#   bench/fanout.sh BIN           e.g. build-release/odsync
#
# Workload as bench/instructions.sh: table bench_rows, BENCH_ROWS inserts then BENCH_ROWS updates in
# BENCH_TXN-row transactions, one slot per run created before the workload. The two-sink runs have
# their spools on (the default); the queue never fills while both sinks keep up, so nothing spills.
#
# Environment: BENCH_ROWS (50000), BENCH_TXN (1000), BENCH_ROUNDS (1), PG_BIN, BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[[ $# -eq 1 ]] || od_die "usage: bench/fanout.sh BIN"
BIN=$1
[[ -x $BIN ]] || od_die "$BIN is not an executable"
NAMES=(one two)
MODES=(cg wall)
command -v valgrind >/dev/null || od_die "valgrind not found (scripts/setup.sh installs it)"
BENCH_ROWS=${BENCH_ROWS:-50000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
CHANGES=$((2 * BENCH_ROWS))

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-fanout.XXXXXX")
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
    for m in "${MODES[@]}"; do
      od_psql bench -c "SELECT pg_create_logical_replication_slot('fan_${n}_${m}_$r', 'pgoutput')" >/dev/null
    done
  done
done
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
od_bench_rows_workload bench "$BENCH_ROWS" "$BENCH_TXN"
TARGET=$(od_bench_rows_last_txn bench) # inside the last transaction: a checkpoint at or past it holds all
CHANGES=$((CHANGES + 1))

declare -A IR WALL
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for m in "${MODES[@]}"; do
    for n in "${NAMES[@]}"; do
      dir=$TMP/$n-$m-$r
      mkdir -p "$dir"
      {
        cat <<YAML
state_dir: $dir/state
log_level: warn
pipelines:
  - name: fan
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", slot: fan_${n}_${m}_$r, publication: odsync_bench, snapshot: never }
YAML
        if [[ $n == one ]]; then
          echo "    sink: { type: sqlite, path: $dir/a.db }"
        else
          printf '    sinks:\n      - { name: a, type: sqlite, path: %s/a.db }\n      - { name: b, type: sqlite, path: %s/b.db }\n' "$dir" "$dir"
        fi
      } >"$dir/bench.yml"
      dbs=("$dir/a.db:fan")
      [[ $n == two ]] && dbs=("$dir/a.db:fan.a" "$dir/b.db:fan.b")
      log "round $r, $n sink(s), ${m}"
      t0=$(od_now)
      if [[ $m == cg ]]; then
        valgrind -q --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$BIN" run -c "$dir/bench.yml" \
          --no-progress >"$dir/odsync.log" 2>&1 &
      else
        "$BIN" run -c "$dir/bench.yml" --no-progress >"$dir/odsync.log" 2>&1 &
      fi
      ODSYNC_PID=$!
      for db in "${dbs[@]}"; do
        while :; do
          pos=$(od_sink_position "${db%%:*}" "${db#*:}")
          ((pos >= TARGET)) && break
          od_alive "$ODSYNC_PID" || { tail -n 20 "$dir/odsync.log" >&2; od_die "odsync ($n, $m) exited early"; }
          sleep 0.2
        done
      done
      t1=$(od_now)
      od_stop_pid "$ODSYNC_PID" 120
      wait "$ODSYNC_PID" || true
      ODSYNC_PID=
      want=$(od_psql bench -c "SELECT count(*) || ':' || sum(a) FROM bench_rows")
      for db in "${dbs[@]}"; do
        rows=$(sqlite3 "${db%%:*}" "SELECT count(*) || ':' || sum(a) FROM bench_rows")
        [[ $rows == "$want" ]] || od_die "round $r, $n, $m: ${db%%:*} holds $rows (count:sum), the source $want"
      done
      if [[ $m == cg ]]; then
        IR[$n-$r]=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out")
        log "  ${IR[$n-$r]} instructions"
      else
        WALL[$n-$r]=$(awk -v a="$t0" -v b="$t1" -v c="$CHANGES" 'BEGIN { printf "%.0f", c / (b - a) }')
        log "  ${WALL[$n-$r]} changes/s (wall clock, under load)"
      fi
    done
  done
done

printf '\n%-6s %-8s %16s %12s %22s\n' round sinks instructions "per change" "changes/s (under load)"
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for n in "${NAMES[@]}"; do
    printf '%-6s %-8s %16s %12s %22s\n' "$r" "$n" "${IR[$n-$r]}" \
      "$(awk -v a="${IR[$n-$r]}" -v c="$CHANGES" 'BEGIN { printf "%.0f", a / c }')" "${WALL[$n-$r]}"
  done
  echo "round $r: two/one instructions $(awk -v a="${IR[two-$r]}" -v b="${IR[one-$r]}" 'BEGIN { printf "%.3f", a / b }'),"\
    "throughput two/one $(awk -v a="${WALL[two-$r]}" -v b="${WALL[one-$r]}" 'BEGIN { printf "%.3f", a / b }') (wall clock, under load)"
done
