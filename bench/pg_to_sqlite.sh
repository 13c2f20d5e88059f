#!/usr/bin/env bash
# bench/pg_to_sqlite.sh — PostgreSQL → SQLite throughput of odsync against the decode ceiling.
#
# One throwaway PostgreSQL, one WAL: BENCH_ROWS inserts then BENCH_ROWS updates of bench_rows in
# BENCH_TXN-row transactions. Two pgoutput slots are created before the workload; each reader
# then consumes the same WAL:
#   1. ceiling: pg_recvlogical --start (pgoutput proto 1, decode only, output to /dev/null)
#   2. odsync:  odsync run into a fresh SQLite file, until its checkpoint holds the last txn
# See bench/README.md. Environment:
#   BENCH_ROWS (1000000)  BENCH_TXN (1000)  BENCH_MAX_ROWS (5000)  BENCH_MAX_DELAY_MS (20)
#   ODSYNC_BIN (build/odsync)  OD_COMPARE (build/od_compare)  PG_BIN  BENCH_KEEP=1 (keep temp dir)
#   BENCH_TIMEOUT (seconds odsync may take, 1800)  BENCH_LOG_LEVEL (info)
#   BENCH_SOURCE_EXTRA (keys added to the source block, e.g. "catchup_lag_bytes: 0" for streaming only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-5000}
BENCH_MAX_DELAY_MS=${BENCH_MAX_DELAY_MS:-20}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
OD_COMPARE=${OD_COMPARE:-$ROOT/build/od_compare}
PIPELINE=bench
PUB=odsync_$PIPELINE
ODSYNC_SLOT=odsync_$PIPELINE
CEILING_SLOT=bench_ceiling
SQL_SLOT=bench_sql_decode
CHANGES=$(( 2 * BENCH_ROWS ))

[[ $BENCH_ROWS =~ ^[1-9][0-9]*$ && $BENCH_TXN =~ ^[1-9][0-9]*$ ]] \
  || od_die "BENCH_ROWS and BENCH_TXN must be positive integers"
command -v sqlite3 >/dev/null || od_die "sqlite3 CLI not found (apt-get install sqlite3)"
command -v psql >/dev/null || od_die "psql not found (apt-get install postgresql-client)"
PGBIN=$(od_pg_bindir)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench.XXXXXX")
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
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ---------------------------------------------------------------- server
log "starting PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')) in $TMP"
od_pg_start "$TMP/pg" \
  "shared_buffers = 1GB" \
  "max_wal_size = 8GB" \
  "checkpoint_timeout = 30min" \
  "autovacuum = off"
log "PostgreSQL on 127.0.0.1:$OD_PG_PORT"
PGB_DIR[src]=$OD_PG_DIR # pgb_server_cpu src: CPU seconds of every process of this server
od_psql postgres -c "CREATE DATABASE bench"
DSN=$(od_pg_dsn bench)

od_psql bench <<'SQL'
CREATE TABLE bench_rows (
  id bigint PRIMARY KEY,
  a  int,
  b  text,
  c  timestamptz,
  d  numeric(12,2)
);

-- Rows [first, last] inserted in transactions of txn rows each.
CREATE PROCEDURE bench_insert(first bigint, last bigint, txn int) LANGUAGE plpgsql AS $$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    INSERT INTO bench_rows (id, a, b, c, d)
    SELECT g, (g % 1000003)::int, md5(g::text),
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
           (g % 10000000) / 100.0
      FROM generate_series(lo, least(lo + txn - 1, last)) AS g;
    COMMIT;
    lo := lo + txn;
  END LOOP;
END $$;

-- Rows [first, last] updated (every column but the key) in transactions of txn rows each.
CREATE PROCEDURE bench_update(first bigint, last bigint, txn int) LANGUAGE plpgsql AS $$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + interval '1 day', d = d + 1
     WHERE id BETWEEN lo AND least(lo + txn - 1, last);
    COMMIT;
    lo := lo + txn;
  END LOOP;
END $$;
SQL

# Publication and both slots exist before the first workload change, so both readers see it all.
od_psql bench -c "CREATE PUBLICATION $PUB FOR TABLE bench_rows"
od_psql bench -c "SELECT pg_create_logical_replication_slot('$CEILING_SLOT', 'pgoutput')" >/dev/null
od_psql bench -c "SELECT pg_create_logical_replication_slot('$ODSYNC_SLOT', 'pgoutput')" >/dev/null
od_psql bench -c "SELECT pg_create_logical_replication_slot('$SQL_SLOT', 'pgoutput')" >/dev/null
START_LSN=$(od_psql bench -c "SELECT pg_current_wal_lsn()")

# ---------------------------------------------------------------- workload
# The last transaction runs on its own so we can read, inside it, an LSN that is after every
# earlier transaction's commit and not after its own commit record: any checkpoint position
# (commit LSN or end LSN) of the last transaction is >= LAST_TXN_LSN, and every earlier
# transaction's position is below it.
LAST_LO=$(( ((BENCH_ROWS - 1) / BENCH_TXN) * BENCH_TXN + 1 ))
log "workload: $BENCH_ROWS inserts + $BENCH_ROWS updates in $BENCH_TXN-row transactions"
T0=$(od_now)
PGOPTIONS="-c synchronous_commit=off" od_psql bench -c "CALL bench_insert(1, $BENCH_ROWS, $BENCH_TXN)"
T1=$(od_now)
if (( LAST_LO > 1 )); then
  PGOPTIONS="-c synchronous_commit=off" od_psql bench -c "CALL bench_update(1, $((LAST_LO - 1)), $BENCH_TXN)"
fi
LAST_TXN_LSN=$(od_psql bench <<SQL
BEGIN;
UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + interval '1 day', d = d + 1
 WHERE id BETWEEN $LAST_LO AND $BENCH_ROWS;
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)
# The last commit was synchronous, so all workload WAL is flushed and this is after all of it.
END_LSN=$(od_psql bench -c "SELECT pg_current_wal_lsn()")
T2=$(od_now)
WAL_BYTES=$(( $(od_lsn_to_int "$END_LSN") - $(od_lsn_to_int "$START_LSN") ))
log "workload done: inserts $(elapsed "$T0" "$T1")s, updates $(elapsed "$T1" "$T2")s," \
    "WAL $START_LSN..$END_LSN ($(( WAL_BYTES / 1048576 )) MiB), last txn at >= $LAST_TXN_LSN"
od_psql bench -c "CHECKPOINT"

# ---------------------------------------------------------------- 1. ceiling
log "ceiling: pg_recvlogical --start --endpos $END_LSN (pgoutput proto 1 → /dev/null)"
RSS_CEIL=n/a CPU_CEIL=n/a
SRV0=$(pgb_server_cpu src)
C0=$(od_now)
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -f '%M %U %S' -o "$TMP/recvlogical.time" \
    "$PGBIN/pg_recvlogical" -d "$DSN" -S "$CEILING_SLOT" --start --no-loop \
      -o proto_version=1 -o publication_names="$PUB" -E "$END_LSN" -F 0 -f /dev/null
  read -r kb usr sys < <(tail -n 1 "$TMP/recvlogical.time")
  RSS_CEIL=$(( kb / 1024 ))
  CPU_CEIL=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
else
  "$PGBIN/pg_recvlogical" -d "$DSN" -S "$CEILING_SLOT" --start --no-loop \
    -o proto_version=1 -o publication_names="$PUB" -E "$END_LSN" -F 0 -f /dev/null
fi
C1=$(od_now)
SRV_CEIL=$(elapsed "$SRV0" "$(pgb_server_cpu src)")
SEC_CEIL=$(elapsed "$C0" "$C1")
log "ceiling: ${SEC_CEIL}s"

# ---------------------------------------------------------------- reference: decode in the server
# The same decoding without walsender, network or client: pgoutput messages counted by SQL.
# Shows how much of the ceiling run is the client (pg_recvlogical writes each message).
log "reference: pg_logical_slot_get_binary_changes (decode in the backend, no client)"
SRV0=$(pgb_server_cpu src)
S0=$(od_now)
NMSG=$(od_psql bench -c "SELECT count(*) FROM pg_logical_slot_get_binary_changes('$SQL_SLOT', '$END_LSN', NULL,
          'proto_version', '1', 'publication_names', '$PUB')")
S1=$(od_now)
SRV_SQL=$(elapsed "$SRV0" "$(pgb_server_cpu src)")
SEC_SQL=$(elapsed "$S0" "$S1")
log "reference: ${SEC_SQL}s, $NMSG pgoutput messages"
(( NMSG >= CHANGES )) || log "warning: only $NMSG messages decoded, expected >= $CHANGES"
od_psql bench -c "SELECT pg_drop_replication_slot('$SQL_SLOT')" >/dev/null

# ---------------------------------------------------------------- 2. odsync
SEC_OD= RSS_OD= CPU_OD= SRV_OD=- OD_STATUS=
if [[ ! -x $ODSYNC_BIN ]]; then
  OD_STATUS="pending: $ODSYNC_BIN not built"
  log "odsync: $OD_STATUS"
else
  mkdir -p "$TMP/state"
  SINK=$TMP/bench.db
  cat >"$TMP/bench.yml" <<YAML
state_dir: $TMP/state
log_level: ${BENCH_LOG_LEVEL:-info}
pipelines:
  - name: $PIPELINE
    source: { type: postgres, dsn: "$DSN", tables: [public.bench_rows], snapshot: never${BENCH_SOURCE_EXTRA:+, $BENCH_SOURCE_EXTRA} }
    sink: { type: sqlite, path: $SINK }
    batch: { max_rows: $BENCH_MAX_ROWS, max_delay_ms: $BENCH_MAX_DELAY_MS }
YAML
  TARGET=$(od_lsn_to_int "$LAST_TXN_LSN")
  log "odsync: $ODSYNC_BIN run -c bench.yml (until checkpoint position >= $TARGET)"
  SRV0=$(pgb_server_cpu src)
  O0=$(od_now)
  "$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync.log" 2>&1 &
  ODSYNC_PID=$!
  POS=0 LAST_REPORT=$SECONDS
  while :; do
    POS=$(od_sink_position "$SINK" "$PIPELINE")
    (( POS >= TARGET )) && break
    if ! od_alive "$ODSYNC_PID"; then
      wait "$ODSYNC_PID" && rc=0 || rc=$?
      ODSYNC_PID=
      tail -n 30 "$TMP/odsync.log" >&2
      od_die "odsync exited (status $rc) before reaching the end of the workload (position $POS < $TARGET)"
    fi
    if (( SECONDS - LAST_REPORT >= 10 )); then
      LAST_REPORT=$SECONDS
      log "odsync: position $POS / $TARGET"
    fi
    if (( $(elapsed "$O0" "$(od_now)" | cut -d. -f1) > BENCH_TIMEOUT )); then
      tail -n 30 "$TMP/odsync.log" >&2
      od_die "odsync did not reach $TARGET within ${BENCH_TIMEOUT}s (position $POS)"
    fi
    sleep 0.1
  done
  O1=$(od_now)
  SRV_OD=$(elapsed "$SRV0" "$(pgb_server_cpu src)")
  HWM_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$ODSYNC_PID/status" 2>/dev/null || echo 0)
  # user + system CPU seconds (fields 14, 15 of /proc/PID/stat; comm has no spaces here)
  CPU_OD=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$ODSYNC_PID/stat" 2>/dev/null || echo n/a)
  od_stop_pid "$ODSYNC_PID" 60
  wait "$ODSYNC_PID" && rc=0 || rc=$?
  ODSYNC_PID=
  (( rc == 0 )) || { tail -n 30 "$TMP/odsync.log" >&2; log "warning: odsync exited with status $rc after SIGTERM"; }
  SEC_OD=$(elapsed "$O0" "$O1")
  RSS_OD=$(( HWM_KB / 1024 ))
  log "odsync: ${SEC_OD}s, ${CPU_OD} CPU s, peak RSS ${RSS_OD} MiB"

  # Sanity: the sink must hold what the source holds.
  SRC_SUM=$(od_psql bench -c "SELECT count(*) || ' ' || sum(id) || ' ' || sum(a) FROM bench_rows")
  SNK_SUM=$(sqlite3 "$SINK" "SELECT count(*) || ' ' || sum(id) || ' ' || sum(a) FROM bench_rows" 2>&1 || true)
  if [[ $SRC_SUM == "$SNK_SUM" ]]; then
    log "check: source and sink agree (count, sum(id), sum(a) = $SRC_SUM)"
  else
    log "check FAILED: source '$SRC_SUM' vs sink '$SNK_SUM'"
    OD_STATUS="WRONG DATA"
  fi
  if [[ -x $OD_COMPARE ]]; then
    if "$OD_COMPARE" --pg "$DSN" --sqlite "$SINK" >"$TMP/compare.log" 2>&1; then
      log "check: od_compare: equal"
    else
      cat "$TMP/compare.log" >&2
      log "check FAILED: od_compare reports differences"
      OD_STATUS="WRONG DATA"
    fi
  fi
fi

# ---------------------------------------------------------------- table
rate() { awk -v n="$CHANGES" -v s="$1" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
R_CEIL=$(rate "$SEC_CEIL")
R_SQL=$(rate "$SEC_SQL")
echo
echo "PostgreSQL → SQLite: $BENCH_ROWS inserts + $BENCH_ROWS updates = $CHANGES changes," \
     "$BENCH_TXN rows/txn, WAL $(( WAL_BYTES / 1048576 )) MiB"
us() { [[ $1 =~ ^[0-9.]+$ ]] && awk -v c="$1" -v n="$CHANGES" 'BEGIN { printf "%.2f", 1e6 * c / n }' || echo -; }
printf '%-30s %8s %10s %8s %9s %11s %11s %9s %9s\n' tool seconds changes/s ceiling "peak RSS" "client CPU" \
  "server CPU" "client µs" "server µs"
printf '%-30s %8s %10s %8s %9s %11s %11s %9s %9s\n' "pg_recvlogical (decode only)" "$SEC_CEIL" "$R_CEIL" "100%" \
  "${RSS_CEIL} MiB" "${CPU_CEIL} s" "${SRV_CEIL} s" "$(us "$CPU_CEIL")" "$(us "$SRV_CEIL")"
printf '%-30s %8s %10s %8s %9s %11s %11s %9s %9s\n' "(ref) decode in backend, SQL" "$SEC_SQL" "$R_SQL" \
  "$(awk -v a="$R_SQL" -v b="$R_CEIL" 'BEGIN { printf "%.0f%%", 100 * a / b }')" - - "${SRV_SQL} s" - "$(us "$SRV_SQL")"
if [[ -n $SEC_OD ]]; then
  R_OD=$(rate "$SEC_OD")
  SHARE=$(awk -v a="$R_OD" -v b="$R_CEIL" 'BEGIN { printf "%.0f%%", 100 * a / b }')
  printf '%-30s %8s %10s %8s %9s %11s %11s %9s %9s\n' "odsync run -> sqlite" "$SEC_OD" "$R_OD" "$SHARE" \
    "${RSS_OD} MiB" "${CPU_OD} s" "${SRV_OD} s" "$(us "$CPU_OD")" "$(us "$SRV_OD")"
  [[ -n $OD_STATUS ]] && echo "odsync: $OD_STATUS"
  # Where catch-up's time went (pg_catchup.c's summary line), when the run ended in catch-up mode's exit.
  grep -o 'caught up by batch decoding (.*)' "$TMP/odsync.log" | head -n 1 || true
else
  printf '%-30s %s\n' "odsync run -> sqlite" "$OD_STATUS"
fi
[[ $OD_STATUS != "WRONG DATA" ]]
