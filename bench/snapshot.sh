#!/usr/bin/env bash
# bench/snapshot.sh — initial snapshot throughput of odsync against pg_dump | psql.
#
# Two throwaway PostgreSQL servers on this machine (source, sink). One table of BENCH_ROWS rows,
# bench_rows(id bigint primary key, a int, b text (40 chars), c timestamptz, d numeric(12,2)),
# loaded, vacuumed and checkpointed before anything is timed. Then, in one run:
#   1. odsync, PostgreSQL sink, snapshot_workers = each of BENCH_WORKERS (fresh target database and
#      fresh slot each time): wall time from starting `odsync run` until the sink's checkpoint row
#      exists (it is committed together with the snapshot-done mark, docs/SNAPSHOTS.md), then
#      SIGTERM;
#   2. the same into a fresh SQLite file (snapshot_workers = BENCH_SQLITE_WORKERS);
#   3. baseline: pg_dump -t bench_rows | psql into a fresh database on the sink server;
#   4. COPY bench_rows TO STDOUT | COPY FROM STDIN (table created without key, then ADD PRIMARY KEY,
#      as pg_dump's output does).
# Every target is checked (count, sum(id), sum(a), sum(length(b)), count(DISTINCT c)). Prints seconds, rows/s
# and the ratio to pg_dump | psql.
# With BENCH_RUNS=N the baseline and the SQLite run are repeated N times, alternating (baseline,
# sqlite, baseline, sqlite, ...), and a last line gives the medians and their ratio: on a shared
# machine single runs vary by tens of percent.
# Environment: BENCH_ROWS (3000000)  BENCH_WORKERS ("1 2 4"; "" = no PostgreSQL-sink runs)
#   BENCH_SQLITE_WORKERS (2)  BENCH_CHUNK_ROWS (100000)  BENCH_TIMEOUT (1800)  BENCH_RUNS (1)
#   ODSYNC_BIN (build/odsync)  PG_BIN  BENCH_KEEP=1 (keep the temp dir)  BENCH_SKIP_SQLITE=1
#   BENCH_SKIP_COPY=1  BENCH_SKIP_PG=1 (same as BENCH_WORKERS="")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

BENCH_ROWS=${BENCH_ROWS:-3000000}
BENCH_WORKERS=${BENCH_WORKERS-1 2 4}
[[ ${BENCH_SKIP_PG:-0} == 1 ]] && BENCH_WORKERS=
BENCH_RUNS=${BENCH_RUNS:-1}
BENCH_SQLITE_WORKERS=${BENCH_SQLITE_WORKERS:-2}
BENCH_CHUNK_ROWS=${BENCH_CHUNK_ROWS:-100000}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
PIPELINE=bench

[[ $BENCH_ROWS =~ ^[1-9][0-9]*$ ]] || od_die "BENCH_ROWS must be a positive integer"
[[ $BENCH_RUNS =~ ^[1-9][0-9]*$ ]] || od_die "BENCH_RUNS must be a positive integer"
[[ -x $ODSYNC_BIN ]] || od_die "odsync not found at $ODSYNC_BIN (build it: scripts/build.sh)"
command -v psql >/dev/null || od_die "psql not found (apt-get install postgresql-client)"
command -v sqlite3 >/dev/null || od_die "sqlite3 CLI not found (apt-get install sqlite3)"
PGBIN=$(od_pg_bindir)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-snap.XXXXXX")
ODSYNC_PID=
SRC_DIR= SRC_PORT= DST_DIR= DST_PORT=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $ODSYNC_PID ]]; then od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  if [[ -n $DST_DIR ]]; then OD_PG_DIR=$DST_DIR od_pg_stop; fi
  if [[ -n $SRC_DIR ]]; then OD_PG_DIR=$SRC_DIR od_pg_stop; fi
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
src_psql() { OD_PG_PORT=$SRC_PORT od_psql "$@"; }
dst_psql() { OD_PG_PORT=$DST_PORT od_psql "$@"; }
src_dsn() { OD_PG_PORT=$SRC_PORT od_pg_dsn "$1"; }
dst_dsn() { OD_PG_PORT=$DST_PORT od_pg_dsn "$1"; }

CONF=("shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" "autovacuum = off")
log "starting two PostgreSQL servers ($("$PGBIN/postgres" --version | awk '{print $3}')) in $TMP; $(nproc) CPUs"
od_pg_start "$TMP/src" "${CONF[@]}"
SRC_DIR=$OD_PG_DIR SRC_PORT=$OD_PG_PORT
od_pg_start "$TMP/dst" "${CONF[@]}"
DST_DIR=$OD_PG_DIR DST_PORT=$OD_PG_PORT
log "source 127.0.0.1:$SRC_PORT, sink 127.0.0.1:$DST_PORT"

src_psql postgres -c "CREATE DATABASE bench"
log "loading $BENCH_ROWS rows"
L0=$(od_now)
src_psql bench <<SQL
CREATE TABLE bench_rows (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2));
INSERT INTO bench_rows
  SELECT g, ((g::bigint * 7919) % 1000003)::int, md5(g::text) || lpad(g::text, 8, '0'),
         timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', (g % 1000000) / 100.0
  FROM generate_series(1, $BENCH_ROWS) g;
VACUUM ANALYZE bench_rows;
CHECKPOINT;
SQL
log "loaded in $(elapsed "$L0" "$(od_now)") s; $(src_psql bench -c "SELECT pg_size_pretty(pg_total_relation_size('bench_rows'))") on disk"
SUMS_SQL="SELECT count(*) || ' ' || sum(id) || ' ' || sum(a) || ' ' || sum(length(b)) || ' ' || count(DISTINCT c) FROM bench_rows"
EXPECT=$(src_psql bench -c "$SUMS_SQL")

RESULTS=()
BASE_SECS=
add_result() { RESULTS+=("$1"$'\t'"$2"); }

# check WHAT ACTUAL: the target's sums must equal the source's.
check() {
  [[ "$2" == "$EXPECT" ]] || od_die "$1: target holds '$2', the source '$EXPECT'"
}

# run_odsync LABEL SINK_YAML WORKERS POLL_CMD CHECK_CMD
run_odsync() {
  local label=$1 sink=$2 workers=$3 poll=$4 verify=$5
  src_psql bench -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'odsync_$PIPELINE'" >/dev/null
  rm -rf "$TMP/state"
  mkdir -p "$TMP/state"
  cat >"$TMP/bench.yml" <<YAML
state_dir: $TMP/state
pipelines:
  - name: $PIPELINE
    source: { type: postgres, dsn: "$(src_dsn bench)", tables: [public.bench_rows],
              snapshot_workers: $workers, snapshot_chunk_rows: $BENCH_CHUNK_ROWS }
    sink: $sink
YAML
  log "$label: odsync run (snapshot_workers $workers) until the sink's checkpoint row exists"
  local t0 t1 deadline
  t0=$(od_now)
  "$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >>"$TMP/odsync.log" 2>&1 &
  ODSYNC_PID=$!
  deadline=$(( $(date +%s) + BENCH_TIMEOUT ))
  until eval "$poll" >/dev/null 2>&1; do
    od_alive "$ODSYNC_PID" || { tail -n 20 "$TMP/odsync.log" >&2; od_die "$label: odsync exited"; }
    (( $(date +%s) < deadline )) || od_die "$label: no checkpoint after ${BENCH_TIMEOUT}s"
    sleep 0.1
  done
  t1=$(od_now)
  od_stop_pid "$ODSYNC_PID" 60
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
  check "$label" "$(eval "$verify")"
  add_result "$label" "$(elapsed "$t0" "$t1")"
}

# 3. baseline first: pg_dump | psql
BASE_ALL=() SQLITE_ALL=()
run_baseline() {
  dst_psql postgres -c "CREATE DATABASE dump_target"
  log "pg_dump -t bench_rows | psql"
  local t0 t1
  t0=$(od_now)
  "$PGBIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres -t bench_rows bench |
    psql -X -q -v ON_ERROR_STOP=1 "$(dst_dsn dump_target)" >/dev/null
  t1=$(od_now)
  check "pg_dump | psql" "$(dst_psql dump_target -c "$SUMS_SQL")"
  BASE_SECS=$(elapsed "$t0" "$t1")
  BASE_ALL+=("$BASE_SECS")
  add_result "pg_dump -t | psql" "$BASE_SECS"
  dst_psql postgres -c "DROP DATABASE dump_target"
}
run_baseline

# 4. COPY | COPY
if [[ ${BENCH_SKIP_COPY:-0} != 1 ]]; then
  dst_psql postgres -c "CREATE DATABASE copy_target"
  dst_psql copy_target -c "CREATE TABLE bench_rows (id bigint, a int, b text, c timestamptz, d numeric(12,2))"
  log "psql COPY TO STDOUT | psql COPY FROM STDIN, then ADD PRIMARY KEY"
  T0=$(od_now)
  psql -X -q -v ON_ERROR_STOP=1 "$(src_dsn bench)" -c "COPY bench_rows TO STDOUT" |
    psql -X -q -v ON_ERROR_STOP=1 "$(dst_dsn copy_target)" -c "COPY bench_rows FROM STDIN"
  dst_psql copy_target -c "ALTER TABLE bench_rows ADD PRIMARY KEY (id)"
  T1=$(od_now)
  check "COPY | COPY" "$(dst_psql copy_target -c "$SUMS_SQL")"
  add_result "COPY | COPY (+ ADD PRIMARY KEY)" "$(elapsed "$T0" "$T1")"
  dst_psql postgres -c "DROP DATABASE copy_target"
fi

# 1. odsync -> PostgreSQL
for w in $BENCH_WORKERS; do
  db=snap_w$w
  dst_psql postgres -c "CREATE DATABASE $db"
  run_odsync "odsync -> postgres, $w worker(s)" "{ type: postgres, dsn: \"$(dst_dsn $db)\" }" "$w" \
    "[[ \$(dst_psql $db -c \"SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = '$PIPELINE'\") == 1 ]]" \
    "dst_psql $db -c \"\$SUMS_SQL\""
  dst_psql postgres -c "DROP DATABASE $db"
done

# 2. odsync -> SQLite (with BENCH_RUNS > 1: alternating with the baseline)
if [[ ${BENCH_SKIP_SQLITE:-0} != 1 ]]; then
  SINK=$TMP/snap.db
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    ((run == 1)) || run_baseline
    rm -f "$SINK"*
    run_odsync "odsync -> sqlite, $BENCH_SQLITE_WORKERS worker(s)" "{ type: sqlite, path: $SINK }" "$BENCH_SQLITE_WORKERS" \
      "[[ \$(sqlite3 -cmd '.timeout 2000' '$SINK' \"SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = '$PIPELINE'\") == 1 ]]" \
      "sqlite3 '$SINK' \"\$SUMS_SQL\""
    SQLITE_ALL+=("${RESULTS[-1]##*$'\t'}")
    rm -f "$SINK"*
  done
fi

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
BASE_MEDIAN=$(median "${BASE_ALL[@]}")
printf '\n%-40s %9s %12s %14s\n' "tool ($BENCH_ROWS rows)" seconds "rows/s" "vs pg_dump|psql"
for r in "${RESULTS[@]}"; do
  name=${r%%$'\t'*} secs=${r##*$'\t'}
  awk -v n="$name" -v s="$secs" -v rows="$BENCH_ROWS" -v b="$BASE_MEDIAN" \
    'BEGIN { printf "%-40s %9.2f %12.0f %13.2fx\n", n, s, rows / s, b / s }'
done
if ((BENCH_RUNS > 1 && ${#SQLITE_ALL[@]} > 0)); then
  awk -v b="$BASE_MEDIAN" -v s="$(median "${SQLITE_ALL[@]}")" -v n="$BENCH_RUNS" \
    'BEGIN { printf "medians of %d runs: pg_dump|psql %.2f s, odsync -> sqlite %.2f s: %.2fx\n", n, b, s, b / s }'
fi
