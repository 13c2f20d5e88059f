#!/usr/bin/env bash
# bench/governance.sh — what transforms and the audit log cost per change, for one build on the
# same WAL in the same run (docs/BENCHMARKS.md, "Governance").
#
#   bench/governance.sh [BIN]          default build-release/odsync
#
# Variants, each `odsync run` PostgreSQL -> a fresh SQLite file from its own pgoutput slot (all
# slots created before the workload, so every run decodes exactly the same WAL):
#   plain      no transform, audit off
#   transforms mask (keep_last 4) on b, pseudonymize on a, filter on d (d >= 0: every row passes,
#              so both write the same rows) — 3 columns; audit off
#   mask_filter the same without the HMAC: mask (fixed) on a instead of pseudonymize — separates the
#              cost of HMAC-SHA-256 from the rest of the transform stage
#   audit      no transform, audit on (the default): one hash-chained record per batch
# Headline: instructions per change under valgrind --tool=callgrind (the whole process, every
# thread), repeatable on a loaded machine; throughput ratio = plain instructions / variant
# instructions. Then BENCH_WALL_RUNS rounds without valgrind, the variants interleaved in each round
# so a change of load hits all alike: wall clock and the CPU time (user + system) of the odsync
# process, summed, and the throughput by CPU round by round (plain's CPU / the variant's in the same
# round) with its median and spread — all labelled as measured under load (the machine is shared).
#
# Environment: BENCH_WALL_RUNS (3 runs of each variant without valgrind), BENCH_ROWS (20000: inserts, then as many updates), BENCH_TXN (1000), BENCH_ROUNDS (1:
# callgrind rounds; 0: none), BENCH_WALL (1: also the wall-clock runs), BENCH_VARIANTS ("plain transforms
# mask_filter audit"; plain must be among them; a name ending in _before, e.g. transforms_before, runs that
# variant with the build BENCH_BEFORE, to compare two builds on the same WAL in the same run), PG_BIN, BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

BIN=${1:-$ROOT/build-release/odsync}
[[ -x $BIN ]] || od_die "$BIN is not an executable (cmake --build build-release --target odsync)"
command -v valgrind >/dev/null || od_die "valgrind not found (scripts/setup.sh installs it)"
BENCH_ROWS=${BENCH_ROWS:-20000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_WALL=${BENCH_WALL:-1}
BENCH_BEFORE=${BENCH_BEFORE:-}
read -r -a VARIANTS <<<"${BENCH_VARIANTS:-plain transforms mask_filter audit}"
for v in "${VARIANTS[@]}"; do
  [[ $v != *_before || -x $BENCH_BEFORE ]] || od_die "variant $v needs BENCH_BEFORE=<an odsync binary>"
done
export BENCH_KEY="bench-key-0123456789abcdef-$$"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-gov.XXXXXX")
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

od_pg_start "$TMP/pg" "shared_buffers = 512MB" "max_wal_size = 8GB" "autovacuum = off" "max_replication_slots = 64"
od_psql postgres -c "CREATE DATABASE bench"
od_bench_rows_table bench
RUNS=()
for r in $(seq 1 "$BENCH_ROUNDS"); do for v in "${VARIANTS[@]}"; do RUNS+=("cg_${v}_$r"); done; done
BENCH_WALL_RUNS=${BENCH_WALL_RUNS:-3}
if [[ $BENCH_WALL == 1 ]]; then
  for k in $(seq 1 "$BENCH_WALL_RUNS"); do for v in "${VARIANTS[@]}"; do RUNS+=("wall_${v}_$k"); done; done
fi
for s in "${RUNS[@]}"; do od_psql bench -c "SELECT pg_create_logical_replication_slot('$s', 'pgoutput')" >/dev/null; done
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
od_bench_rows_workload bench "$BENCH_ROWS" "$BENCH_TXN"
TARGET=$(od_bench_rows_last_txn bench) # inside the last transaction: a checkpoint at or past it holds all
CHANGES=$((2 * BENCH_ROWS + 1))

config() { # DIR SLOT VARIANT
  local tx="" audit="audit: { enabled: false }"
  [[ $3 == audit ]] && audit="audit: { enabled: true }"
  [[ $3 == transforms ]] && tx="
      transforms:
        - { type: mask, tables: [bench_rows], columns: [b], style: keep_last, keep: 4 }
        - { type: pseudonymize, tables: [bench_rows], columns: [a], key: \"\${env:BENCH_KEY}\" }
        - { type: filter, tables: [bench_rows], where: \"d >= 0\" }"
  [[ $3 == mask_filter ]] && tx="
      transforms:
        - { type: mask, tables: [bench_rows], columns: [b], style: keep_last, keep: 4 }
        - { type: mask, tables: [bench_rows], columns: [a] }
        - { type: filter, tables: [bench_rows], where: \"d >= 0\" }"
  cat >"$1/bench.yml" <<YAML
state_dir: $1/state
log_level: warn
$audit
pipelines:
  - name: gov
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", slot: $2, publication: odsync_bench, snapshot: never }
    sink:
      type: sqlite
      path: $1/sink.db$tx
YAML
}

run_one() { # SLOT VARIANT CALLGRIND(0|1) -> prints seconds
  local dir=$TMP/$1 t0 t1
  mkdir -p "$dir"
  local bin=$BIN variant=$2
  if [[ $variant == *_before ]]; then # the same variant run by the BENCH_BEFORE build
    bin=$BENCH_BEFORE
    variant=${variant%_before}
  fi
  config "$dir" "$1" "$variant"
  t0=$(od_now)
  if [[ $3 == 1 ]]; then
    valgrind -q --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$bin" run -c "$dir/bench.yml" \
      --no-progress >"$dir/odsync.log" 2>&1 &
  else
    "$bin" run -c "$dir/bench.yml" --no-progress >"$dir/odsync.log" 2>&1 &
  fi
  ODSYNC_PID=$!
  while :; do
    pos=$(od_sink_position "$dir/sink.db" gov)
    ((pos >= TARGET)) && break # TARGET lies inside the last transaction
    od_alive "$ODSYNC_PID" || { tail -n 20 "$dir/odsync.log" >&2; od_die "odsync ($1) exited early"; }
    sleep 0.2
  done
  t1=$(od_now)
  local cpu=0
  [[ $3 == 0 ]] && cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$ODSYNC_PID/stat")
  od_stop_pid "$ODSYNC_PID" 120
  wait "$ODSYNC_PID" || true
  ODSYNC_PID=
  local rows want
  rows=$(sqlite3 "$dir/sink.db" "SELECT count(*) FROM bench_rows")
  want=$(od_psql bench -c "SELECT count(*) FROM bench_rows")
  [[ $rows == "$want" ]] || od_die "$1: the sink holds $rows rows, the source $want"
  if [[ $2 == audit ]]; then
    "$BIN" audit verify -c "$dir/bench.yml" >"$dir/verify.txt" || od_die "$1: audit verify failed: $(cat "$dir/verify.txt")"
    log "$1: $(grep -c '"kind":"batch"' "$dir/state/audit/gov.jsonl") batch records, $(stat -c %s "$dir/state/audit/gov.jsonl") bytes; verify ok"
  fi
  awk -v a="$t0" -v b="$t1" -v c="$cpu" 'BEGIN { printf "%.2f %s\n", b - a, c }'
}

declare -A IR WALL CPU CPUR
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    log "round $r, $v: odsync under callgrind"
    run_one "cg_${v}_$r" "$v" 1 >/dev/null
    IR[$v-$r]=$(awk '/^(summary|totals):/ { print $2; exit }' "$TMP/cg_${v}_$r/callgrind.out")
    log "round $r, $v: ${IR[$v-$r]} instructions"
  done
done
if [[ $BENCH_WALL == 1 ]]; then
  for v in "${VARIANTS[@]}"; do WALL[$v]=0; CPU[$v]=0; done
  for k in $(seq 1 "$BENCH_WALL_RUNS"); do # variants interleaved, so a change of load hits all alike
    for v in "${VARIANTS[@]}"; do
      log "wall clock $k, $v (under load: the machine is shared)"
      read -r w c < <(run_one "wall_${v}_$k" "$v" 0)
      log "wall clock $k, $v: $w s, CPU $c s"
      CPUR[$v-$k]=$c
      WALL[$v]=$(awk -v a="${WALL[$v]}" -v b="$w" 'BEGIN { print a + b }')
      CPU[$v]=$(awk -v a="${CPU[$v]}" -v b="$c" 'BEGIN { print a + b }')
    done
  done
fi

printf '\n%d changes (%d inserts + %d updates + 1), %d-row transactions\n' "$CHANGES" "$BENCH_ROWS" "$BENCH_ROWS" "$BENCH_TXN"
printf '%-6s %-11s %16s %12s %22s\n' round variant instructions "per change" "throughput vs plain"
for r in $(seq 1 "$BENCH_ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    [[ $BENCH_ROUNDS -ge 1 ]] || break
    printf '%-6s %-11s %16s %12s %22s\n' "$r" "$v" "${IR[$v-$r]}" \
      "$(awk -v a="${IR[$v-$r]}" -v c="$CHANGES" 'BEGIN { printf "%.0f", a / c }')" \
      "$(awk -v p="${IR[plain-$r]}" -v a="${IR[$v-$r]}" 'BEGIN { printf "%.1f %%", 100 * p / a }')"
  done
done
if [[ $BENCH_WALL == 1 ]]; then
  printf '\nwithout valgrind (SHA-NI and the other CPU extensions in use), measured under load (shared machine),\n'
  printf 'start to checkpoint at the last transaction, summed over %d runs of each; CPU = user + system time of the\n' "$BENCH_WALL_RUNS"
  printf 'odsync process (all threads):\n'
  for v in "${VARIANTS[@]}"; do
    printf '  %-11s wall %7s s (%5.1f %% of plain)   CPU %6s s (throughput by CPU %5.1f %% of plain)\n' "$v" \
      "${WALL[$v]}" "$(awk -v p="${WALL[plain]}" -v s="${WALL[$v]}" 'BEGIN { print 100 * p / s }')" "${CPU[$v]}" \
      "$(awk -v p="${CPU[plain]}" -v s="${CPU[$v]}" 'BEGIN { print (s > 0 ? 100 * p / s : 0) }')"
  done
  printf '\nthroughput by CPU, run by run (plain CPU / variant CPU of the same round k), median and spread:\n'
  for v in "${VARIANTS[@]}"; do
    [[ $v == plain ]] && continue
    ratios=()
    for k in $(seq 1 "$BENCH_WALL_RUNS"); do
      ratios+=("$(awk -v p="${CPUR[plain-$k]}" -v s="${CPUR[$v-$k]}" 'BEGIN { printf "%.1f", (s > 0 ? 100 * p / s : 0) }')")
    done
    printf '  %-11s %s  median %s %%  (min %s, max %s)\n' "$v" "${ratios[*]}" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }')" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | head -1)" "$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)"
  done
fi
