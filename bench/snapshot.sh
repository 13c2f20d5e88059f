#!/usr/bin/env bash
# bench/snapshot.sh — initial snapshot throughput of odsync against pg_dump | psql.
#
# Two throwaway PostgreSQL servers on this machine (source, sink). One table of BENCH_ROWS rows,
# bench_rows(id bigint primary key, a int, b text (40 chars), c timestamptz, d numeric(12,2)),
# loaded, vacuumed and checkpointed before anything is timed. Then, in one run:
#   1. odsync, PostgreSQL sink, snapshot_workers = each of BENCH_WORKERS (fresh target database and
#      fresh slot each time): wall time from starting `odsync run` until the commit of the sink's
#      checkpoint together with the snapshot-done mark (docs/SNAPSHOTS.md), taken from the
#      timestamp of odsync's "initial snapshot done" log line; the checkpoint row is then checked;
#      then SIGTERM;
#   2. the same into a fresh SQLite file (snapshot_workers = BENCH_SQLITE_WORKERS);
#   3. baseline: pg_dump -t bench_rows | psql into a fresh database on the sink server;
#   4. COPY bench_rows TO STDOUT | COPY FROM STDIN (table created without key, then ADD PRIMARY KEY,
#      as pg_dump's output does);
#   5. PostgreSQL's own logical replication: CREATE SUBSCRIPTION ... WITH (copy_data = true) into a
#      table created with its key, until pg_subscription_rel says synchronized.
# Every target is checked (count, sum(id), sum(a), sum(length(b)), count(DISTINCT c)). All of it
# runs BENCH_REPEAT times, the tools taking turns, so a busy minute hits every tool; prints per
# tool the median and fastest seconds, rows/s of the median and the ratio of medians to
# pg_dump | psql, and the median CPU time the whole machine used meanwhile (all processes: on a
# quiet machine, the work each tool costs), and odsync's peak resident memory (VmHWM).
# Environment: BENCH_ROWS (3000000)  BENCH_WORKERS ("1 2 4"; "" = no PostgreSQL-sink runs)
#   BENCH_SKIP_PG=1 (same as BENCH_WORKERS="")  BENCH_SQLITE_WORKERS (2)
#   BENCH_CHUNK_ROWS (100000)  BENCH_TIMEOUT (1800)  ODSYNC_BIN (build/odsync)  PG_BIN
#   BENCH_REPEAT (3; BENCH_RUNS is the same)  BENCH_KEEP=1 (keep the temp dir)  BENCH_SKIP_SQLITE=1  BENCH_SKIP_COPY=1
#   BENCH_SKIP_NATIVE=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

BENCH_ROWS=${BENCH_ROWS:-3000000}
BENCH_WORKERS=${BENCH_WORKERS-1 2 4}
[[ ${BENCH_SKIP_PG:-0} == 1 ]] && BENCH_WORKERS=
BENCH_SQLITE_WORKERS=${BENCH_SQLITE_WORKERS:-2}
BENCH_CHUNK_ROWS=${BENCH_CHUNK_ROWS:-100000}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
BENCH_REPEAT=${BENCH_REPEAT:-${BENCH_RUNS:-3}} # BENCH_RUNS: an older name
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
PIPELINE=bench

[[ $BENCH_ROWS =~ ^[1-9][0-9]*$ ]] || od_die "BENCH_ROWS must be a positive integer"
[[ $BENCH_REPEAT =~ ^[1-9][0-9]*$ ]] || od_die "BENCH_REPEAT must be a positive integer"
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
declare -A RSS=() # odsync's peak resident memory (MiB) per label, of its last round
# add_result LABEL SECONDS CPU_SECONDS
add_result() { RESULTS+=("$1"$'\t'"$2"$'\t'"$3"); }
# CPU time used by the whole machine (every process: both servers, the clients, odsync; and
# anything else running), in seconds, from /proc/stat (user + nice + system + irq + softirq).
cpu_now() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat; }

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
  log "$label: odsync run (snapshot_workers $workers) until the snapshot's done transaction commits"
  local t0 t1 c0 c1 deadline line runlog=$TMP/run.log
  : >"$runlog"
  t0=$(od_now)
  c0=$(cpu_now)
  "$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$runlog" 2>&1 &
  ODSYNC_PID=$!
  deadline=$(( $(date +%s) + BENCH_TIMEOUT ))
  # The end is the timestamp of odsync's "initial snapshot done" line, logged right after the
  # commit of the checkpoint together with the done mark; polling a file (not the sink with psql,
  # a Perl wrapper on Debian) keeps the measurement from taking CPU from the run it measures.
  until line=$(grep -m1 "initial snapshot done" "$runlog"); do
    od_alive "$ODSYNC_PID" || { tail -n 20 "$runlog" >&2; od_die "$label: odsync exited"; }
    (( $(date +%s) < deadline )) || od_die "$label: no checkpoint after ${BENCH_TIMEOUT}s"
    sleep 0.05
  done
  t1=$(date -d "${line%% *}" +%s.%N)
  c1=$(cpu_now)
  local rss
  rss=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$ODSYNC_PID/status" 2>/dev/null || echo "?")
  RSS[$label]=$rss
  eval "$poll" >/dev/null 2>&1 || od_die "$label: odsync logged the snapshot done, but the sink holds no checkpoint row"
  od_stop_pid "$ODSYNC_PID" 60
  wait "$ODSYNC_PID" 2>/dev/null || true
  ODSYNC_PID=
  cat "$runlog" >>"$TMP/odsync.log"
  check "$label" "$(eval "$verify")"
  add_result "$label" "$(elapsed "$t0" "$t1")" "$(elapsed "$c0" "$c1")"
}

[[ ${BENCH_SKIP_NATIVE:-0} == 1 ]] || src_psql bench -c "CREATE PUBLICATION bench_native FOR TABLE bench_rows"

one_round() {
  # 3. baseline first: pg_dump | psql
  dst_psql postgres -c "CREATE DATABASE dump_target"
  log "pg_dump -t bench_rows | psql"
  T0=$(od_now) C0=$(cpu_now)
  "$PGBIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres -t bench_rows bench |
    psql -X -q -v ON_ERROR_STOP=1 "$(dst_dsn dump_target)" >/dev/null
  T1=$(od_now) C1=$(cpu_now)
  check "pg_dump | psql" "$(dst_psql dump_target -c "$SUMS_SQL")"
  add_result "pg_dump -t | psql" "$(elapsed "$T0" "$T1")" "$(elapsed "$C0" "$C1")"
  dst_psql postgres -c "DROP DATABASE dump_target"

  # 4. COPY | COPY
  if [[ ${BENCH_SKIP_COPY:-0} != 1 ]]; then
    dst_psql postgres -c "CREATE DATABASE copy_target"
    dst_psql copy_target -c "CREATE TABLE bench_rows (id bigint, a int, b text, c timestamptz, d numeric(12,2))"
    log "psql COPY TO STDOUT | psql COPY FROM STDIN, then ADD PRIMARY KEY"
    T0=$(od_now) C0=$(cpu_now)
    psql -X -q -v ON_ERROR_STOP=1 "$(src_dsn bench)" -c "COPY bench_rows TO STDOUT" |
      psql -X -q -v ON_ERROR_STOP=1 "$(dst_dsn copy_target)" -c "COPY bench_rows FROM STDIN"
    dst_psql copy_target -c "ALTER TABLE bench_rows ADD PRIMARY KEY (id)"
    T1=$(od_now) C1=$(cpu_now)
    check "COPY | COPY" "$(dst_psql copy_target -c "$SUMS_SQL")"
    add_result "COPY | COPY (+ ADD PRIMARY KEY)" "$(elapsed "$T0" "$T1")" "$(elapsed "$C0" "$C1")"
    dst_psql postgres -c "DROP DATABASE copy_target"
  fi

  # 5. native logical replication: a subscription's initial table synchronization (COPY into the
  #    table with its key, then catch-up), timed until the table's state is synchronized
  if [[ ${BENCH_SKIP_NATIVE:-0} != 1 ]]; then
    dst_psql postgres -c "CREATE DATABASE native_target"
    dst_psql native_target -c "CREATE TABLE bench_rows (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2))"
    log "CREATE SUBSCRIPTION ... WITH (copy_data = true) until the table is synchronized"
    T0=$(od_now) C0=$(cpu_now)
    dst_psql native_target -c "CREATE SUBSCRIPTION bench_native CONNECTION '$(src_dsn bench)' PUBLICATION bench_native WITH (copy_data = true)"
    # Polled with the server's own psql (a C program; Debian's psql is a Perl wrapper).
    until [[ $("$PGBIN/psql" -X -A -t -h 127.0.0.1 -p "$DST_PORT" -U postgres -d native_target -c \
      "SELECT count(*) FILTER (WHERE srsubstate IN ('s', 'r')) || '/' || count(*) FROM pg_subscription_rel") == 1/1 ]]; do
      sleep 0.05
    done
    T1=$(od_now) C1=$(cpu_now)
    check "native subscription" "$(dst_psql native_target -c "$SUMS_SQL")"
    add_result "native subscription (copy_data)" "$(elapsed "$T0" "$T1")" "$(elapsed "$C0" "$C1")"
    dst_psql native_target -c "DROP SUBSCRIPTION bench_native"
    dst_psql postgres -c "DROP DATABASE native_target"
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

  # 2. odsync -> SQLite
  if [[ ${BENCH_SKIP_SQLITE:-0} != 1 ]]; then
    SINK=$TMP/snap.db
    rm -f "$SINK"*
    run_odsync "odsync -> sqlite, $BENCH_SQLITE_WORKERS worker(s)" "{ type: sqlite, path: $SINK }" "$BENCH_SQLITE_WORKERS" \
      "[[ \$(sqlite3 -cmd '.timeout 2000' '$SINK' \"SELECT count(*) FROM _odsync_checkpoint WHERE pipeline = '$PIPELINE'\") == 1 ]]" \
      "sqlite3 '$SINK' \"\$SUMS_SQL\""
    rm -f "$SINK"*
  fi
}

for ((round = 1; round <= BENCH_REPEAT; round++)); do
  log "round $round of $BENCH_REPEAT"
  one_round
done

# Per tool: the median of its rounds (and the fastest); the ratio is of medians.
median_of() { # LABEL FIELD (2: seconds, 3: CPU seconds)
  local r v=() f
  for r in "${RESULTS[@]}"; do
    [[ ${r%%$'\t'*} == "$1" ]] || continue
    IFS=$'\t' read -r -a f <<<"$r"
    v+=("${f[$(($2 - 1))]}")
  done
  printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%s %s %d", m, a[1], NR }'
}
BASE_MED=$(median_of "pg_dump -t | psql" 2)
BASE_MED=${BASE_MED%% *}
printf '\n%-40s %9s %9s %12s %16s %8s %9s\n' "tool ($BENCH_ROWS rows, $BENCH_REPEAT rounds)" median fastest "rows/s" "vs pg_dump|psql" "CPU s" "peak RSS"
declare -A SEEN=()
for r in "${RESULTS[@]}"; do
  name=${r%%$'\t'*}
  [[ -n ${SEEN[$name]:-} ]] && continue
  SEEN[$name]=1
  read -r med fast _ <<<"$(median_of "$name" 2)"
  read -r cpu _ <<<"$(median_of "$name" 3)"
  awk -v n="$name" -v s="$med" -v f="$fast" -v rows="$BENCH_ROWS" -v b="$BASE_MED" -v c="$cpu" \
    -v m="${RSS[$name]:+${RSS[$name]} MiB}" \
    'BEGIN { printf "%-40s %9.2f %9.2f %12.0f %15.2fx %8.2f %9s\n", n, s, f, rows / s, b / s, c, m }'
done
echo
echo "seconds of every round, in order (machine CPU seconds in brackets):"
for name in "${!SEEN[@]}"; do
  line=""
  for r in "${RESULTS[@]}"; do
    IFS=$'\t' read -r -a f <<<"$r"
    [[ ${f[0]} == "$name" ]] && line+=" ${f[1]} (${f[2]})"
  done
  printf '  %-40s%s\n' "$name" "$line"
done | sort
