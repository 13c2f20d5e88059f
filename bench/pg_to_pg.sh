#!/usr/bin/env bash
# bench/pg_to_pg.sh — PostgreSQL → PostgreSQL: odsync against PostgreSQL's own logical replication.
#
# Two throwaway servers on loopback (source, sink), one run, the same workloads for every tool:
#   1. throughput: BENCH_ROWS inserts + BENCH_ROWS updates in BENCH_TXN-row transactions. Every
#      slot (decode ceiling, odsync per consistency level, native subscriptions) is created before
#      the workload; then each consumer runs alone, into its own fresh sink database, timed from
#      its start until its target holds the last workload transaction.
#   2. ceiling: pg_recvlogical (pgoutput proto 1, decode only, to /dev/null) on the same WAL.
#   3. big transaction: one BIG_TXN_ROWS-row INSERT transaction through odsync (strong): peak RSS.
#   4. latency: pgbench at LATENCY_TPS (UPDATE of a random account + INSERT of a history row) for
#      LATENCY_SECONDS with a marker row committed every 10 ms; a poller in the sink database
#      records when each marker becomes visible there; p50/p95/p99 of (seen - marker time). Run for
#      each setting of LATENCY_NATIVE (the native subscription with synchronous_commit off / on),
#      each odsync level of LATENCY_LEVELS and, when LATENCY_BASE_BIN is set, the same levels with
#      that other odsync binary (a before/after in one run); one table at the end.
# See bench/README.md. Environment (defaults):
#   BENCH_ROWS (1000000) BENCH_TXN (1000) BIG_TXN_ROWS (5000000) LATENCY_SECONDS (30)
#   LATENCY_TPS (1000) APPLY_WORKERS (4) BENCH_MAX_ROWS (5000) BENCH_MAX_DELAY_MS (20)
#   BENCH_LEVELS ("strong causal eventual") LATENCY_LEVELS ("strong eventual"); a level written
#   <level>+async runs that level with the sink's synchronous_commit: off (e.g. "strong strong+async")
#   LATENCY_NATIVE ("off on": the native subscription's synchronous_commit settings to run)
#   LATENCY_BASE_BIN ("": another odsync binary, e.g. a build of an older commit, run as "base")
#   BENCH_NATIVE_SYNC (1: also time native with the subscription's synchronous_commit = on)
#   BENCH_PHASES ("throughput big latency") BENCH_PERF ("": odsync levels to record with perf)
#   BENCH_TIMEOUT (1800) ODSYNC_BIN (build/odsync) PG_BIN BENCH_KEEP=1 (keep the temp dir)
#   BENCH_LOG_LEVEL (info: odsync's log_level) BENCH_SOURCE_EXTRA ("": keys added to odsync's source
#   block, e.g. "catchup_decoding_mem_bytes: 1073741824")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BIG_TXN_ROWS=${BIG_TXN_ROWS:-5000000}
LATENCY_SECONDS=${LATENCY_SECONDS:-30}
LATENCY_TPS=${LATENCY_TPS:-1000}
LATENCY_ACCOUNTS=${LATENCY_ACCOUNTS:-100000}
MARKER_MS=10
APPLY_WORKERS=${APPLY_WORKERS:-4}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-5000}
BENCH_MAX_DELAY_MS=${BENCH_MAX_DELAY_MS:-20}
BENCH_LEVELS=${BENCH_LEVELS:-strong causal eventual}
LATENCY_LEVELS=${LATENCY_LEVELS:-strong eventual}
LATENCY_NATIVE=${LATENCY_NATIVE:-off on}
LATENCY_BASE_BIN=${LATENCY_BASE_BIN:-}
BENCH_NATIVE_SYNC=${BENCH_NATIVE_SYNC:-1}
BENCH_PHASES=${BENCH_PHASES:-throughput big latency}
BENCH_PERF=${BENCH_PERF:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
CHANGES=$(( 2 * BENCH_ROWS ))

for v in BENCH_ROWS BENCH_TXN BIG_TXN_ROWS LATENCY_SECONDS LATENCY_TPS APPLY_WORKERS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || od_die "$v must be a positive integer (got '${!v}')"
done
[[ -x $ODSYNC_BIN ]] || od_die "odsync binary not found: $ODSYNC_BIN (build it, or set ODSYNC_BIN)"
[[ -z $LATENCY_BASE_BIN || -x $LATENCY_BASE_BIN ]] || od_die "LATENCY_BASE_BIN is not an executable: $LATENCY_BASE_BIN"
for v in $LATENCY_NATIVE; do [[ $v == on || $v == off ]] || od_die "LATENCY_NATIVE takes on and/or off (got '$v')"; done
for c in psql pgbench; do command -v "$c" >/dev/null || od_die "$c not found (apt-get install postgresql-client)"; done
[[ -z $BENCH_PERF ]] || command -v perf >/dev/null || od_die "BENCH_PERF is set but perf is not installed"
PGBIN=$(od_pg_bindir)
has_phase() { [[ " $BENCH_PHASES " == *" $1 "* ]]; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-pg.XXXXXX")
ODSYNC_PID= PERF_PID=
BG_PIDS=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [[ -n $PERF_PID ]] && { kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; }
  if [[ -n $ODSYNC_PID ]]; then od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  for p in "${BG_PIDS[@]}"; do
    od_alive "$p" && kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pgb_stop_all
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
cpu_delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
lat_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf (a / b >= 0.1 ? "%.2f" : "%.2g"), a / b; else printf "-" }'; }
src() { pgb_psql src "$@"; }
snk() { pgb_psql snk "$@"; }

# ---------------------------------------------------------------- servers
# Both tuned for bulk writes; autovacuum off so nothing competes with the timed consumers.
# The sink commits durably (synchronous_commit = on): odsync's sink sessions set it anyway; the
# native subscription's apply worker uses the subscription's own setting (default off).
log "starting source and sink PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')) in $TMP"
# The latency phase also reads each marker's commit timestamp at the source (section 4).
if has_phase latency; then PGB_PAIR_EXTRA=("track_commit_timestamp = on"); fi
pgb_start_pair "$TMP"
log "source on 127.0.0.1:${PGB_PORT[src]}, sink on 127.0.0.1:${PGB_PORT[snk]}"

# The row shape of the throughput and big-transaction workloads; a cheap checksum over every column.
ROW_DDL=$PGB_ROW_DDL
ROW_GEN=$PGB_ROW_GEN
checksum_sql() {
  echo "SELECT count(*) || ' ' || coalesce(sum(id), 0) || ' ' || coalesce(sum(a), 0) || ' ' ||
               coalesce(sum(d), 0) || ' ' || coalesce(sum(hashtext(b)::bigint), 0) || ' ' ||
               coalesce(sum(extract(epoch FROM c)), 0) FROM $1"
}

# odsync_yaml NAME SLOT PUBLICATION TABLES SINKDB LEVEL -> path of a config for one pipeline.
# LEVEL "<level>+async": that level with the sink's synchronous_commit: off.
odsync_yaml() {
  local name=$1 slot=$2 pub=$3 tables=$4 db=$5 level=${6%+async} f=$TMP/$1.yml sink_extra=
  [[ $6 == *+async ]] && sink_extra=", synchronous_commit: off"
  mkdir -p "$TMP/state_$name"
  cat >"$f" <<YAML
state_dir: $TMP/state_$name
log_level: ${BENCH_LOG_LEVEL:-info}
pipelines:
  - name: $name
    source: { type: postgres, dsn: "$SRC_DSN", slot: $slot, publication: $pub, tables: [$tables], snapshot: never${BENCH_SOURCE_EXTRA:+, $BENCH_SOURCE_EXTRA} }
    sink: { type: postgres, dsn: "$(pgb_dsn snk "$db")"$sink_extra }
    batch: { max_rows: $BENCH_MAX_ROWS, max_delay_ms: $BENCH_MAX_DELAY_MS }
    consistency: $level
    apply_workers: $APPLY_WORKERS
YAML
  echo "$f"
}

# run_odsync_until NAME DB THRESHOLD_LSN [PERF] -> sets RUN_SEC RUN_CPU RUN_RSS. Timed from process
# start until the sink's checkpoint row of NAME is at or past THRESHOLD_LSN.
run_odsync_until() {
  local name=$1 db=$2 lsn=$3 perf=${4:-} t0 t1 rc c0s c0d
  c0s=$(pgb_server_cpu src) c0d=$(pgb_server_cpu snk)
  pgb_sessions_start "$TMP/sessions.$name.txt" src snk
  t0=$(od_now)
  "$ODSYNC_BIN" run -c "$TMP/$name.yml" --no-progress >"$TMP/$name.log" 2>&1 &
  ODSYNC_PID=$!
  if [[ -n $perf ]]; then
    # system-wide: odsync, the walsender on the source and the backends on the sink all count
    perf record -q -a -g -F 999 -o "$TMP/perf.$name.data" >/dev/null 2>"$TMP/perf.$name.err" &
    PERF_PID=$!
  fi
  t1=$(pgb_wait_sql snk "$db" \
        "(SELECT position FROM public._odsync_checkpoint WHERE pipeline = '$name') >= '$lsn'::pg_lsn" \
        "$BENCH_TIMEOUT" "$ODSYNC_PID") && rc=0 || rc=$?
  if (( rc != 0 )); then
    tail -n 30 "$TMP/$name.log" >&2
    od_die "odsync $name did not reach $lsn (status $rc: 1 = timeout, 2 = odsync exited)"
  fi
  RUN_SCPU=$(cpu_delta "$c0s" "$(pgb_server_cpu src)")
  RUN_DCPU=$(cpu_delta "$c0d" "$(pgb_server_cpu snk)")
  pgb_sessions_stop
  pgb_sessions_sample "$TMP/sessions.$name.txt" src snk
  RUN_SBUSY=$(pgb_sessions_busiest "$TMP/sessions.$name.txt" src ":odsync_${name}\$")
  RUN_DBUSY=$(pgb_sessions_busiest "$TMP/sessions.$name.txt" snk ":odsync_${name}_sink\$")
  RUN_RSS=$(pgb_hwm_mib "$ODSYNC_PID")
  RUN_CPU=$(pgb_cpu_seconds "$ODSYNC_PID")
  if [[ -n $PERF_PID ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    perf report -i "$TMP/perf.$name.data" --stdio --no-children --sort comm,dso --percent-limit 0.5 -g none \
      >"$TMP/perf.$name.comm.txt" 2>/dev/null || true
    perf report -i "$TMP/perf.$name.data" --stdio --no-children --percent-limit 0.3 -g none \
      >"$TMP/perf.$name.txt" 2>/dev/null || true
    log "perf profile of $name: $TMP/perf.$name.txt (BENCH_KEEP=1 keeps it)"
  fi
  od_stop_pid "$ODSYNC_PID" 60
  wait "$ODSYNC_PID" && rc=0 || rc=$?
  ODSYNC_PID=
  (( rc == 0 )) || { tail -n 30 "$TMP/$name.log" >&2; log "warning: odsync $name exited with status $rc after SIGTERM"; }
  RUN_SEC=$(elapsed "$t0" "$t1")
}

# The native subscription's applied position (its replication origin) is at or past LSN.
native_reached() {
  echo "(SELECT o.remote_lsn FROM pg_replication_origin_status o JOIN pg_subscription s
          ON o.external_id = 'pg_' || s.oid WHERE s.subname = '$1') >= '$2'::pg_lsn"
}

declare -A TP_SEC=() TP_CPU=() TP_RSS=() TP_OK=() TP_SCPU=() TP_DCPU=() TP_SBUSY=() TP_DBUSY=()
TP_TOOLS=()

# ================================================================ 1+2. throughput and ceiling
if has_phase throughput; then
  src bench <<SQL
CREATE TABLE bench_rows ($ROW_DDL);
CREATE PROCEDURE bench_insert(first bigint, last bigint, txn int) LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    INSERT INTO bench_rows SELECT $ROW_GEN FROM generate_series(lo, least(lo + txn - 1, last)) AS g;
    COMMIT;
    lo := lo + txn;
  END LOOP;
END \$\$;
CREATE PROCEDURE bench_update(first bigint, last bigint, txn int) LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + interval '1 day', d = d + 1
     WHERE id BETWEEN lo AND least(lo + txn - 1, last);
    COMMIT;
    lo := lo + txn;
  END LOOP;
END \$\$;
CREATE PUBLICATION pub_tp FOR TABLE bench_rows;
SQL
  # Every consumer's slot exists before the first workload change: all decode the same WAL.
  src bench -c "SELECT pg_create_logical_replication_slot('tp_ceiling', 'pgoutput')" >/dev/null
  src bench -c "SELECT pg_create_logical_replication_slot('tp_sql', 'pgoutput')" >/dev/null
  # Every target table exists before its consumer starts (the native subscriber needs it; odsync
  # would create it, but with several writers that deadlocks today: see docs/BENCHMARKS.md).
  for level in $BENCH_LEVELS; do
    src bench -c "SELECT pg_create_logical_replication_slot('tp_${level/+/_}', 'pgoutput')" >/dev/null
    snk postgres -c "CREATE DATABASE tp_${level/+/_}"
    snk "tp_${level/+/_}" -c "CREATE TABLE bench_rows ($ROW_DDL)"
  done
  NATIVE_RUNS=(native)
  [[ $BENCH_NATIVE_SYNC == 1 ]] && NATIVE_RUNS+=(native_sync)
  for n in "${NATIVE_RUNS[@]}"; do
    sc=off; [[ $n == native_sync ]] && sc=on
    snk postgres -c "CREATE DATABASE tp_$n"
    snk "tp_$n" -c "CREATE TABLE bench_rows ($ROW_DDL)"
    PGOPTIONS="-c client_min_messages=warning" snk "tp_$n" -c "CREATE SUBSCRIPTION tp_$n CONNECTION '$SRC_DSN' PUBLICATION pub_tp
                    WITH (create_slot = true, slot_name = 'tp_$n', enabled = false, copy_data = false,
                          synchronous_commit = '$sc')"
  done
  START_LSN=$(src bench -c "SELECT pg_current_wal_lsn()")

  # The last transaction runs alone and reads, before its COMMIT, an LSN after every earlier
  # commit and not after its own: each consumer's applied position reaches it exactly when the
  # last transaction is in.
  LAST_LO=$(( ((BENCH_ROWS - 1) / BENCH_TXN) * BENCH_TXN + 1 ))
  log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
  W0=$(od_now)
  PGOPTIONS="-c synchronous_commit=off" src bench -c "CALL bench_insert(1, $BENCH_ROWS, $BENCH_TXN)"
  if (( LAST_LO > 1 )); then
    PGOPTIONS="-c synchronous_commit=off" src bench -c "CALL bench_update(1, $((LAST_LO - 1)), $BENCH_TXN)"
  fi
  LAST_TXN_LSN=$(src bench <<SQL
BEGIN;
UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + interval '1 day', d = d + 1
 WHERE id BETWEEN $LAST_LO AND $BENCH_ROWS;
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)
  END_LSN=$(src bench -c "SELECT pg_current_wal_lsn()")
  W1=$(od_now)
  WAL_MIB=$(( ($(od_lsn_to_int "$END_LSN") - $(od_lsn_to_int "$START_LSN")) / 1048576 ))
  log "workload done in $(elapsed "$W0" "$W1")s: WAL $START_LSN..$END_LSN ($WAL_MIB MiB), last txn >= $LAST_TXN_LSN"
  SRC_SUM=$(src bench -c "$(checksum_sql bench_rows)")
  src bench -c "CHECKPOINT"

  # ---- ceiling
  log "ceiling: pg_recvlogical --start --endpos $END_LSN (pgoutput proto 1 -> /dev/null)"
  c0s=$(pgb_server_cpu src)
  pgb_sessions_start "$TMP/sessions.ceiling.txt" src
  C0=$(od_now)
  /usr/bin/time -f '%M %U %S' -o "$TMP/recvlogical.time" \
    "$PGBIN/pg_recvlogical" -d "$SRC_DSN" -S tp_ceiling --start --no-loop \
      -o proto_version=1 -o publication_names=pub_tp -E "$END_LSN" -F 0 -f /dev/null
  C1=$(od_now)
  pgb_sessions_stop
  TP_SBUSY[ceiling]=$(pgb_sessions_busiest "$TMP/sessions.ceiling.txt" src "^walsender:pg_recvlogical\$")
  TP_DBUSY[ceiling]="- -"
  read -r kb usr sys < <(tail -n 1 "$TMP/recvlogical.time")
  TP_TOOLS+=(ceiling)
  TP_SEC[ceiling]=$(elapsed "$C0" "$C1")
  TP_RSS[ceiling]=$(( kb / 1024 ))
  TP_CPU[ceiling]=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  TP_OK[ceiling]=-
  TP_SCPU[ceiling]=$(cpu_delta "$c0s" "$(pgb_server_cpu src)") TP_DCPU[ceiling]=-
  src bench -c "SELECT pg_drop_replication_slot('tp_ceiling')" >/dev/null
  log "ceiling: ${TP_SEC[ceiling]}s"

  # ---- reference: the same decoding inside one backend (no walsender, no network, no client)
  log "reference: pg_logical_slot_get_binary_changes (decode in a backend, no client)"
  c0s=$(pgb_server_cpu src)
  S0=$(od_now)
  NMSG=$(src bench -c "SELECT count(*) FROM pg_logical_slot_get_binary_changes('tp_sql', '$END_LSN', NULL,
            'proto_version', '1', 'publication_names', 'pub_tp')")
  S1=$(od_now)
  TP_TOOLS+=(sql)
  TP_SEC[sql]=$(elapsed "$S0" "$S1") TP_CPU[sql]=- TP_RSS[sql]=- TP_OK[sql]=-
  TP_SCPU[sql]=$(cpu_delta "$c0s" "$(pgb_server_cpu src)") TP_DCPU[sql]=-
  TP_SBUSY[sql]="- -" TP_DBUSY[sql]="- -"
  src bench -c "SELECT pg_drop_replication_slot('tp_sql')" >/dev/null
  log "reference: ${TP_SEC[sql]}s, $NMSG pgoutput messages"

  # ---- native subscriptions
  for n in "${NATIVE_RUNS[@]}"; do
    snk postgres -c "CHECKPOINT"
    log "$n: ALTER SUBSCRIPTION tp_$n ENABLE, until its origin reaches $LAST_TXN_LSN"
    c0s=$(pgb_server_cpu src) c0d=$(pgb_server_cpu snk)
    pgb_sessions_start "$TMP/sessions.$n.txt" src snk
    N0=$(od_now)
    snk "tp_$n" -c "ALTER SUBSCRIPTION tp_$n ENABLE"
    N1=$(pgb_wait_sql snk "tp_$n" "$(native_reached "tp_$n" "$LAST_TXN_LSN")" "$BENCH_TIMEOUT") \
      || od_die "$n did not reach $LAST_TXN_LSN in ${BENCH_TIMEOUT}s (sink log: $TMP/snk/server.log)"
    pgb_sessions_stop
    pgb_sessions_sample "$TMP/sessions.$n.txt" src snk
    TP_SBUSY[$n]=$(pgb_sessions_busiest "$TMP/sessions.$n.txt" src "^walsender:tp_$n\$")
    TP_DBUSY[$n]=$(pgb_sessions_busiest "$TMP/sessions.$n.txt" snk "^logical_replication_worker:")
    TP_TOOLS+=("$n")
    TP_SEC[$n]=$(elapsed "$N0" "$N1")
    TP_SCPU[$n]=$(cpu_delta "$c0s" "$(pgb_server_cpu src)") TP_DCPU[$n]=$(cpu_delta "$c0d" "$(pgb_server_cpu snk)")
    TP_CPU[$n]=- TP_RSS[$n]=-
    sum=$(snk "tp_$n" -c "$(checksum_sql bench_rows)")
    if [[ $sum == "$SRC_SUM" ]]; then TP_OK[$n]=ok; else TP_OK[$n]=WRONG; log "$n: checksum '$sum' != source '$SRC_SUM'"; fi
    PGOPTIONS="-c client_min_messages=warning" snk "tp_$n" -c "DROP SUBSCRIPTION tp_$n"
    log "$n: ${TP_SEC[$n]}s, data ${TP_OK[$n]}"
  done

  # ---- odsync, one consistency level after the other
  for level in $BENCH_LEVELS; do
    snk postgres -c "CHECKPOINT"
    odsync_yaml "tp_${level/+/_}" "tp_${level/+/_}" pub_tp public.bench_rows "tp_${level/+/_}" "$level" >/dev/null
    perf=
    [[ " $BENCH_PERF " == *" $level "* ]] && perf=1
    log "odsync $level: until _odsync_checkpoint.position >= $LAST_TXN_LSN${perf:+ (under perf record)}"
    run_odsync_until "tp_${level/+/_}" "tp_${level/+/_}" "$LAST_TXN_LSN" "$perf"
    TP_TOOLS+=("$level")
    TP_SEC[$level]=$RUN_SEC TP_CPU[$level]=$RUN_CPU TP_RSS[$level]=$RUN_RSS
    TP_SCPU[$level]=$RUN_SCPU TP_DCPU[$level]=$RUN_DCPU TP_SBUSY[$level]=$RUN_SBUSY TP_DBUSY[$level]=$RUN_DBUSY
    sum=$(snk "tp_${level/+/_}" -c "$(checksum_sql bench_rows)")
    if [[ $sum == "$SRC_SUM" ]]; then TP_OK[$level]=ok; else TP_OK[$level]=WRONG; log "odsync $level: checksum '$sum' != source '$SRC_SUM'"; fi
    src bench -c "SELECT pg_drop_replication_slot('tp_${level/+/_}')" >/dev/null
    log "odsync $level: ${RUN_SEC}s, ${RUN_CPU} CPU s, peak RSS ${RUN_RSS} MiB, data ${TP_OK[$level]}"
  done
fi

# ================================================================ 3. one big transaction
# big_sampler: every 2 s while odsync runs, one line to $TMP/big_samples.txt with the seconds since
# the start and the cumulative CPU seconds of the source server, the sink server and odsync, so the
# phases show (the source decoding before the first change arrives, then the sink applying).
big_sampler() {
  local t0 s0 d0 pid
  t0=$(od_now) s0=$(pgb_server_cpu src) d0=$(pgb_server_cpu snk)
  : >"$TMP/big_samples.txt"
  while sleep 2; do
    pid=$(pgrep -n -f -- "run -c $TMP/big_strong.yml" || true)
    printf '  %6s s  source %6s  sink %6s  odsync %6s\n' "$(elapsed "$t0" "$(od_now)")" \
      "$(cpu_delta "$s0" "$(pgb_server_cpu src)")" "$(cpu_delta "$d0" "$(pgb_server_cpu snk)")" \
      "$( [[ -n $pid ]] && pgb_cpu_seconds "$pid" || echo -)" >>"$TMP/big_samples.txt"
  done
}
if has_phase big; then
  src bench -c "CREATE TABLE big_rows ($ROW_DDL)"
  src bench -c "CREATE PUBLICATION pub_big FOR TABLE big_rows"
  src bench -c "SELECT pg_create_logical_replication_slot('big_strong', 'pgoutput')" >/dev/null
  snk postgres -c "CREATE DATABASE big_strong"
  snk big_strong -c "CREATE TABLE big_rows ($ROW_DDL)"
  log "big transaction: one INSERT of $BIG_TXN_ROWS rows"
  BIG_LSN=$(src bench <<SQL
BEGIN;
INSERT INTO big_rows SELECT $ROW_GEN FROM generate_series(1, $BIG_TXN_ROWS) AS g;
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)
  BIG_SUM=$(src bench -c "$(checksum_sql big_rows)")
  src bench -c "CHECKPOINT"
  snk postgres -c "CHECKPOINT"
  odsync_yaml big_strong big_strong pub_big public.big_rows big_strong strong >/dev/null
  log "odsync strong: the $BIG_TXN_ROWS-row transaction, until position >= $BIG_LSN"
  big_sampler &
  BIG_SAMPLER_PID=$!
  run_odsync_until big_strong big_strong "$BIG_LSN"
  kill "$BIG_SAMPLER_PID" 2>/dev/null || true
  wait "$BIG_SAMPLER_PID" 2>/dev/null || true
  log "big transaction over time (every 2 s: seconds, cumulative CPU s of source server / sink server / odsync):"
  cat "$TMP/big_samples.txt" >&2
  BIG_SEC=$RUN_SEC BIG_CPU=$RUN_CPU BIG_RSS=$RUN_RSS BIG_SCPU=$RUN_SCPU BIG_DCPU=$RUN_DCPU
  sum=$(snk big_strong -c "$(checksum_sql big_rows)")
  if [[ $sum == "$BIG_SUM" ]]; then BIG_OK=ok; else BIG_OK=WRONG; log "big: checksum '$sum' != source '$BIG_SUM'"; fi
  src bench -c "SELECT pg_drop_replication_slot('big_strong')" >/dev/null
  log "big transaction: ${BIG_SEC}s ($(rate "$BIG_TXN_ROWS" "$BIG_SEC") rows/s), odsync ${BIG_CPU} CPU s," \
      "source server ${BIG_SCPU} CPU s, sink server ${BIG_DCPU} CPU s, peak RSS ${BIG_RSS} MiB, data $BIG_OK"
fi

# ================================================================ 4. latency at a steady load
declare -A LAT=() LATC=() LAT_TPS=() LAT_OK=()
LAT_TOOLS=() LAT_NOTES=()
lat_name() {
  case $1 in
    native:off) echo "native subscription, sync off" ;;
    native:on) echo "native subscription, sync on" ;;
    odsync:*+async) local l=${1#*:}; echo "odsync ${l%+async}, sink sync off" ;;
    base:*+async) local l=${1#*:}; echo "odsync ${l%+async}, sink sync off (base)" ;;
    odsync:*) echo "odsync ${1#*:}" ;;
    base:*) echo "odsync ${1#*:} (base binary)" ;;
  esac
}
# lat_percentiles DB DIGITS INTERVAL_EXPR FROM -> "n p50 p95 p99 max" in ms over the rows of FROM
lat_percentiles() {
  snk "$1" -F ' ' -c "
    SELECT count(*),
           round(percentile_disc(0.50) WITHIN GROUP (ORDER BY ms)::numeric, $2),
           round(percentile_disc(0.95) WITHIN GROUP (ORDER BY ms)::numeric, $2),
           round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, $2),
           round(max(ms)::numeric, $2)
      FROM (SELECT extract(epoch FROM $3) * 1000 AS ms FROM $4) x"
}
if has_phase latency; then
  src bench <<SQL
CREATE TABLE lat_accounts (id int PRIMARY KEY, balance bigint NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE lat_history (id bigserial PRIMARY KEY, account int NOT NULL, delta int NOT NULL, at timestamptz NOT NULL);
CREATE TABLE markers (id bigint PRIMARY KEY, t timestamptz NOT NULL);
INSERT INTO lat_accounts SELECT g, 0, '2024-01-01 00:00:00+00' FROM generate_series(1, $LATENCY_ACCOUNTS) g;
CREATE PUBLICATION pub_lat FOR TABLE lat_accounts, lat_history, markers;
-- n marker rows, one transaction each, one every gap_ms (on a fixed schedule, no drift);
-- t = the source's clock just before the COMMIT.
CREATE PROCEDURE lat_markers(first bigint, n int, gap_ms float8) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp(); d float8;
BEGIN
  FOR i IN 0 .. n - 1 LOOP
    INSERT INTO markers (id, t) VALUES (first + i, clock_timestamp());
    COMMIT;
    d := extract(epoch FROM t0 + (i + 1) * gap_ms * interval '1 millisecond' - clock_timestamp());
    IF d > 0 THEN PERFORM pg_sleep(d); END IF;
  END LOOP;
END \$\$;
SQL
  cat >"$TMP/lat.pgbench" <<SQL
\\set aid random(1, $LATENCY_ACCOUNTS)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE lat_accounts SET balance = balance + :delta, updated_at = now() WHERE id = :aid;
INSERT INTO lat_history (account, delta, at) VALUES (:aid, :delta, now());
END;
SQL
  NMARK=$(( LATENCY_SECONDS * 1000 / MARKER_MS ))
  # Settings, as kind:variant (see lat_name): odsync levels first, then the base binary's, then native.
  LAT_RUNS=()
  for level in $LATENCY_LEVELS; do LAT_RUNS+=("odsync:$level"); done
  if [[ -n $LATENCY_BASE_BIN ]]; then for level in $LATENCY_LEVELS; do LAT_RUNS+=("base:$level"); done; fi
  for v in $LATENCY_NATIVE; do LAT_RUNS+=("native:$v"); done
  k=0
  for tool in "${LAT_RUNS[@]}"; do
    k=$(( k + 1 ))
    kind=${tool%%:*} variant=${tool#*:}
    db=lat_$k base=$(( k * 10000000 ))
    # The sink database starts with the same tables and accounts as the source.
    snk postgres -c "CREATE DATABASE $db"
    snk "$db" <<SQL
CREATE TABLE lat_accounts (id int PRIMARY KEY, balance bigint NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO lat_accounts SELECT g, 0, '2024-01-01 00:00:00+00' FROM generate_series(1, $LATENCY_ACCOUNTS) g;
CREATE TABLE lat_history (id bigint PRIMARY KEY, account int NOT NULL, delta int NOT NULL, at timestamptz NOT NULL);
CREATE TABLE markers (id bigint PRIMARY KEY, t timestamptz NOT NULL);
CREATE UNLOGGED TABLE lat_seen (id bigint PRIMARY KEY, seen timestamptz NOT NULL);
-- The sink's clock when the applying transaction writes each marker (ENABLE ALWAYS: it fires in
-- the native apply worker too, and for odsync's session_replication_role = replica).
-- Qualified: the apply worker runs with an empty search_path.
CREATE UNLOGGED TABLE lat_applied (id bigint PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION lat_applied_note() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO public.lat_applied VALUES (NEW.id, clock_timestamp()) ON CONFLICT DO NOTHING; RETURN NULL; END \$\$;
CREATE TRIGGER lat_applied_note AFTER INSERT ON markers FOR EACH ROW EXECUTE FUNCTION lat_applied_note();
ALTER TABLE markers ENABLE ALWAYS TRIGGER lat_applied_note;
-- Every ~1 ms: record (id, clock) for each marker in [first, last] that became visible since the
-- last round (visibility may be out of id order under eventual, hence the anti-join above a
-- low-water mark); commits each round so it holds no snapshot back.
CREATE PROCEDURE lat_poll(first bigint, last bigint, secs float8) LANGUAGE plpgsql AS \$\$
DECLARE lw bigint := first - 1; n bigint := 0; k bigint; t0 timestamptz := clock_timestamp();
BEGIN
  WHILE n < last - first + 1 AND clock_timestamp() < t0 + secs * interval '1 second' LOOP
    INSERT INTO lat_seen (id, seen)
      SELECT m.id, clock_timestamp() FROM markers m
       WHERE m.id > lw AND m.id <= last AND NOT EXISTS (SELECT 1 FROM lat_seen s WHERE s.id = m.id);
    GET DIAGNOSTICS k = ROW_COUNT;
    IF k > 0 THEN
      n := n + k;
      WHILE EXISTS (SELECT 1 FROM lat_seen WHERE id = lw + 1) LOOP lw := lw + 1; END LOOP;
    END IF;
    COMMIT;
    PERFORM pg_sleep(0.001);
  END LOOP;
END \$\$;
SQL
    snk postgres -c "CHECKPOINT"
    label=$(lat_name "$tool")
    if [[ $kind == native ]]; then
      PGOPTIONS="-c client_min_messages=warning" snk "$db" -c "CREATE SUBSCRIPTION lat_native CONNECTION '$SRC_DSN' PUBLICATION pub_lat
                    WITH (copy_data = false, synchronous_commit = '$variant')"
    else
      bin=$ODSYNC_BIN; [[ $kind == base ]] && bin=$LATENCY_BASE_BIN
      src bench -c "SELECT pg_create_logical_replication_slot('$db', 'pgoutput')" >/dev/null
      odsync_yaml "$db" "$db" pub_lat "public.lat_accounts, public.lat_history, public.markers" "$db" "$variant" >/dev/null
      "$bin" run -c "$TMP/$db.yml" --no-progress >"$TMP/$db.log" 2>&1 &
      ODSYNC_PID=$!
    fi
    # Warm-up: a first marker must arrive before the load starts.
    src bench -c "INSERT INTO markers VALUES ($base, clock_timestamp())"
    pgb_wait_sql snk "$db" "EXISTS (SELECT 1 FROM markers WHERE id = $base)" 60 "$ODSYNC_PID" >/dev/null \
      || { [[ -f $TMP/$db.log ]] && tail -n 20 "$TMP/$db.log" >&2; od_die "$label: warm-up marker not applied in 60 s"; }
    log "$label: ${LATENCY_SECONDS}s of pgbench -R $LATENCY_TPS + a marker every ${MARKER_MS} ms"
    PGOPTIONS="-c synchronous_commit=off" snk "$db" \
      -c "CALL lat_poll($(( base + 1 )), $(( base + NMARK )), $(( LATENCY_SECONDS + 60 )))" &
    POLL_PID=$!; BG_PIDS+=("$POLL_PID")
    src bench -c "CALL lat_markers($(( base + 1 )), $NMARK, $MARKER_MS)" &
    MARK_PID=$!; BG_PIDS+=("$MARK_PID")
    pgbench -n -h 127.0.0.1 -p "${PGB_PORT[src]}" -U postgres -M prepared -c 4 -j 2 \
      -R "$LATENCY_TPS" -T "$LATENCY_SECONDS" -f "$TMP/lat.pgbench" bench >"$TMP/$db.pgbench" 2>&1 \
      || { cat "$TMP/$db.pgbench" >&2; od_die "pgbench failed"; }
    wait "$MARK_PID" || od_die "marker loop failed"
    wait "$POLL_PID" || od_die "sink poller failed"
    BG_PIDS=()
    # A consumer that fell far behind: the poller gave up before every marker was seen (its
    # percentiles then cover only the markers seen: lower bounds, flagged in the table). Its data
    # is still checked, once it has caught up.
    pgb_wait_sql snk "$db" "(SELECT count(*) FROM markers WHERE id BETWEEN $base AND $(( base + NMARK ))) = $(( NMARK + 1 ))" \
      "$BENCH_TIMEOUT" "$ODSYNC_PID" >/dev/null || log "warning: $label: not every marker on the sink after ${BENCH_TIMEOUT}s"
    if [[ $kind == native ]]; then
      PGOPTIONS="-c client_min_messages=warning" snk "$db" -c "DROP SUBSCRIPTION lat_native"
    else
      od_stop_pid "$ODSYNC_PID" 60
      wait "$ODSYNC_PID" || log "warning: $label exited non-zero after SIGTERM"
      ODSYNC_PID=
      src bench -c "SELECT pg_drop_replication_slot('$db')" >/dev/null
      # What odsync says at its stop: sink round trips per commit, the latency of each stage.
      notes=$(grep -E 'round trips|head latency' "$TMP/$db.log" | sed -E "s/^[^ ]+ [^ ]+ //; s/^/  $label: /" || true)
      [[ -z $notes ]] || LAT_NOTES+=("$notes")
    fi
    LAT[$tool]=$(lat_percentiles "$db" 1 "s.seen - m.t" "lat_seen s JOIN markers m USING (id)")
    # Source commit (its commit timestamp) -> the marker written in the sink's applying transaction
    # (lat_applied: no poller in it, and no sink commit: that is odsync's "commit" stage).
    snk "$db" -c "CREATE UNLOGGED TABLE src_commit (id bigint PRIMARY KEY, ts timestamptz NOT NULL)"
    src bench -c "COPY (SELECT id, pg_xact_commit_timestamp(xmin) FROM markers
                         WHERE id BETWEEN $(( base + 1 )) AND $(( base + NMARK ))) TO STDOUT" \
      | snk "$db" -c "COPY src_commit FROM STDIN"
    LATC[$tool]=$(lat_percentiles "$db" 2 "a.at - c.ts" "lat_applied a JOIN src_commit c USING (id)")
    LAT_TPS[$tool]=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$TMP/$db.pgbench")
    # Every marker must be on the sink, once, with the source's values (a wrong sink is no figure).
    LAT_OK[$tool]=$(snk "$db" -c "SELECT CASE WHEN count(*) = $NMARK + 1 THEN 'ok' ELSE 'WRONG' END FROM markers
                                   WHERE id = $base OR id BETWEEN $(( base + 1 )) AND $(( base + NMARK ))")
    LAT_TOOLS+=("$tool")
    log "$label: markers seen, p50, p95, p99, max (ms): ${LAT[$tool]}; source commit to applied: ${LATC[$tool]}; pgbench tps ${LAT_TPS[$tool]}"
  done
fi

# ================================================================ table
per_change() { [[ $1 =~ ^[0-9.]+$ ]] && awk -v c="$1" -v n="$CHANGES" 'BEGIN { printf "%.2f", 1e6 * c / n }' || echo -; }
echo
echo "PostgreSQL → PostgreSQL ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'))"
name_of() {
  case $1 in
    ceiling) echo "pg_recvlogical (decode only)" ;;
    sql) echo "(ref) decode in backend, SQL" ;;
    native) echo "native subscription (sync off)" ;;
    native_sync) echo "native subscription (sync on)" ;;
    strong) echo "odsync strong" ;;
    strong+async) echo "odsync strong, sink sync off" ;;
    *+async) echo "odsync ${1%+async} ($APPLY_WORKERS writers), sink sync off" ;;
    *) echo "odsync $1 ($APPLY_WORKERS writers)" ;;
  esac
}
STATUS=0
if has_phase throughput; then
  echo
  echo "Throughput: $BENCH_ROWS inserts + $BENCH_ROWS updates = $CHANGES changes, $BENCH_TXN rows/txn, WAL $WAL_MIB MiB"
  R_NAT=$(rate "$CHANGES" "${TP_SEC[native]}")
  R_CEIL=$(rate "$CHANGES" "${TP_SEC[ceiling]}")
  printf '%-34s %8s %10s %9s %8s %9s %8s %8s %8s %5s\n' tool seconds changes/s "x native" ceiling "peak RSS" \
    "own CPU" "src CPU" "sink CPU" data
  for t in "${TP_TOOLS[@]}"; do
    r=$(rate "$CHANGES" "${TP_SEC[$t]}")
    rss=${TP_RSS[$t]}; [[ $rss == - ]] || rss="$rss MiB"
    printf '%-34s %8s %10s %9s %8s %9s %8s %8s %8s %5s\n' "$(name_of "$t")" "${TP_SEC[$t]}" "$r" \
      "$(ratio "$r" "$R_NAT")x" "$(awk -v a="$r" -v b="$R_CEIL" 'BEGIN { printf "%.0f%%", 100 * a / b }')" \
      "$rss" "${TP_CPU[$t]}" "${TP_SCPU[$t]}" "${TP_DCPU[$t]}" "${TP_OK[$t]}"
    [[ ${TP_OK[$t]} == WRONG ]] && STATUS=1
  done
  # CPU per change, so the result can be read for a machine with more cores: the walltime is
  # about max(src, sink, own) per change when the three run in parallel.
  echo
  echo "CPU microseconds per change (CPU seconds / $CHANGES): own = odsync or pg_recvlogical, src = source server" \
       "(walsender or SQL backend), sink = sink server (apply worker or odsync's sessions)"
  printf '%-34s %9s %9s %9s\n' tool "own µs" "src µs" "sink µs"
  for t in "${TP_TOOLS[@]}"; do
    printf '%-34s %9s %9s %9s\n' "$(name_of "$t")" "$(per_change "${TP_CPU[$t]}")" "$(per_change "${TP_SCPU[$t]}")" \
      "$(per_change "${TP_DCPU[$t]}")"
  done
  # The busiest single process bounds a consumer whatever the number of cores: one walsender, one
  # apply worker, one sink session per writer. Sampled every 0.5 s (pgb_sessions_*).
  echo
  echo "Busiest single process, CPU µs per change: src = the walsender (or odsync's SQL backend), sink = the"
  echo "apply worker (or odsync's busiest sink session); a consumer cannot beat 1e6 / max(src, sink) changes/s"
  printf '%-34s %9s %9s  %s\n' tool "src µs" "sink µs" "busiest processes"
  declare -A BUSY_MAX=()
  for t in "${TP_TOOLS[@]}"; do
    read -r sc sk <<<"${TP_SBUSY[$t]:-- -}"
    read -r dc dk <<<"${TP_DBUSY[$t]:-- -}"
    [[ $sc == - && $dc == - ]] && continue
    BUSY_MAX[$t]=$(awk -v a="$sc" -v b="$dc" 'BEGIN { m = (a ~ /^[0-9.]+$/ ? a : 0); if (b ~ /^[0-9.]+$/ && b > m) m = b; print m }')
    printf '%-34s %9s %9s  %s\n' "$(name_of "$t")" "$(per_change "$sc")" "$(per_change "$dc")" "$sk $dk"
  done
  if [[ -n ${BUSY_MAX[native]:-} ]]; then
    for t in "${TP_TOOLS[@]}"; do
      case $t in ceiling|sql|native|native_sync) continue ;; esac
      [[ -n ${BUSY_MAX[$t]:-} ]] || continue
      echo "$(name_of "$t"): x native if each ran at its busiest process's speed = $(ratio "${BUSY_MAX[native]}" "${BUSY_MAX[$t]}")x"
    done
  fi
fi
if has_phase big; then
  echo
  echo "One $BIG_TXN_ROWS-row INSERT transaction, odsync strong:" \
       "${BIG_SEC}s ($(rate "$BIG_TXN_ROWS" "$BIG_SEC") rows/s), peak RSS ${BIG_RSS} MiB, CPU ${BIG_CPU} s, data $BIG_OK"
  [[ $BIG_OK == ok ]] || STATUS=1
fi
if has_phase latency; then
  echo
  echo "Latency, source commit -> visible on the sink: pgbench -R $LATENCY_TPS for ${LATENCY_SECONDS}s" \
       "+ a marker every ${MARKER_MS} ms ($NMARK markers); n = markers seen;" \
       "/on, /off = p95 and p99 as a ratio to native sync on, sync off (target: p95/on and p99/on <= 1)"
  printf '%-38s %8s %8s %8s %8s %6s %8s %5s %8s %8s %8s %8s\n' setting "p50 ms" "p95 ms" "p99 ms" "max ms" n \
    "load tps" data "p95/on" "p99/on" "p95/off" "p99/off"
  short=0
  read -r _ _ on95 on99 _ <<<"${LAT[native:on]:-- - - - -}"
  read -r _ _ off95 off99 _ <<<"${LAT[native:off]:-- - - - -}"
  for t in "${LAT_TOOLS[@]}"; do
    read -r cnt p50 p95 p99 mx <<<"${LAT[$t]}"
    name=$(lat_name "$t")
    (( cnt == NMARK )) || { name="$name (*)"; short=1; }
    printf '%-38s %8s %8s %8s %8s %6s %8s %5s %8s %8s %8s %8s\n' "$name" "$p50" "$p95" "$p99" "$mx" "$cnt" \
      "${LAT_TPS[$t]}" "${LAT_OK[$t]}" "$(lat_ratio "$p95" "$on95")" "$(lat_ratio "$p99" "$on99")" \
      "$(lat_ratio "$p95" "$off95")" "$(lat_ratio "$p99" "$off99")"
    (( cnt == NMARK )) || log "warning: $(lat_name "$t"): $cnt of $NMARK markers seen"
    [[ ${LAT_OK[$t]} == ok ]] || STATUS=1
  done
  (( short == 0 )) || echo "(*) not every marker seen within $(( LATENCY_SECONDS + 60 ))s of the start: its percentiles are lower bounds"
  echo
  echo "Source commit (its commit timestamp) -> the marker written by the sink's applying transaction (a"
  echo "trigger's clock; no poller, no sink commit in it); n = markers:"
  printf '%-38s %8s %8s %8s %8s %6s %8s %8s\n' setting "p50 ms" "p95 ms" "p99 ms" "max ms" n "p95/on" "p99/on"
  read -r _ _ con95 con99 _ <<<"${LATC[native:on]:-- - - - -}"
  for t in "${LAT_TOOLS[@]}"; do
    read -r cnt p50 p95 p99 mx <<<"${LATC[$t]}"
    printf '%-38s %8s %8s %8s %8s %6s %8s %8s\n' "$(lat_name "$t")" "$p50" "$p95" "$p99" "$mx" "$cnt" \
      "$(lat_ratio "$p95" "$con95")" "$(lat_ratio "$p99" "$con99")"
  done
  if (( ${#LAT_NOTES[@]} )); then
    echo "odsync's own account at its stop (sink round trips per commit; per-stage latency of the batches'"
    echo "first transactions: source = source commit -> its first change in odsync's reader, decode = -> queued,"
    echo "queue = -> taken by the sink's writer, apply = -> sink commit starts, commit = the sink commit itself):"
    printf '%s\n' "${LAT_NOTES[@]}"
  fi
fi
echo
echo "Targets: >= 2.5x native throughput, >= 75% of the decode ceiling, latency p95/on and p99/on <= 1, RSS < 200 MB (5M-row txn)"
exit "$STATUS"
