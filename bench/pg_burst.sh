#!/usr/bin/env bash
# bench/pg_burst.sh — a burst at the head while replication runs: PostgreSQL → PostgreSQL, the
# native subscription against odsync (strong), each already streaming when the burst starts.
#
# Two throwaway servers on loopback (source, sink). For each tool in turn, alone: a table of its
# own, the consumer started and streaming (native: the subscription enabled and its worker
# running; odsync: "streaming from" in its log), then the burst — BURST_ROWS inserts in
# BENCH_TXN-row transactions written as fast as the source takes them (synchronous_commit off),
# then one last transaction whose LSN is read before its COMMIT. Timed from the burst's start until
# the tool's target holds that last transaction; "after" is the part after the burst ended (the
# lag a user sees). odsync switches from the stream to batch decoding when it falls
# catchup_lag_bytes behind (src/sources/pg/pg_burst.c); BURST_BASE_BIN runs another odsync binary
# the same way (e.g. a build from before that switch existed) as "base".
# Environment (defaults): BURST_ROWS (1000000) BENCH_TXN (1000) BURST_BASE_BIN ("") ODSYNC_BIN
# (build/odsync) BENCH_SOURCE_EXTRA ("": keys added to odsync's source block) BENCH_TIMEOUT (900)
# BENCH_KEEP=1 (keep the temp dir).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"
BURST_ROWS=${BURST_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BURST_BASE_BIN=${BURST_BASE_BIN:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
[[ -x $ODSYNC_BIN ]] || od_die "odsync binary not found: $ODSYNC_BIN"
[[ -z $BURST_BASE_BIN || -x $BURST_BASE_BIN ]] || od_die "BURST_BASE_BIN is not an executable: $BURST_BASE_BIN"
PGBIN=$(od_pg_bindir)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-burst.XXXXXX")
ODSYNC_PID=
pgb_bench_traps
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
per_row_us() { awk -v c="$1" -v n="$BURST_ROWS" 'BEGIN { printf "%.2f", c * 1e6 / n }'; }
src() { pgb_psql src "$@"; }
snk() { pgb_psql snk "$@"; }

log "starting source and sink PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')) in $TMP"
pgb_start_pair "$TMP"
ROW_DDL=$PGB_ROW_DDL
ROW_GEN=$PGB_ROW_GEN
checksum_sql() { echo "SELECT count(*) || ' ' || coalesce(sum(id), 0) || ' ' || coalesce(sum(hashtext(b)::bigint), 0) FROM $1"; }

TOOLS=(native odsync)
[[ -n $BURST_BASE_BIN ]] && TOOLS+=(base)
declare -A SEC=() AFTER=() WORK=() SCPU=() DCPU=() OCPU=() OK=() SWITCHED=()
for t in "${TOOLS[@]}"; do
  tbl=burst_$t
  src bench <<SQL
CREATE TABLE $tbl ($ROW_DDL);
CREATE PUBLICATION pub_$tbl FOR TABLE $tbl;
CREATE PROCEDURE ins_$tbl(first bigint, last bigint, txn int) LANGUAGE plpgsql AS \$\$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    INSERT INTO $tbl SELECT $ROW_GEN FROM generate_series(lo, least(lo + txn - 1, last)) AS g;
    COMMIT;
    lo := lo + txn;
  END LOOP;
END \$\$;
SQL
  snk postgres -c "CREATE DATABASE $tbl"
  snk "$tbl" -c "CREATE TABLE $tbl ($ROW_DDL)"
  c0o=0
  if [[ $t == native ]]; then
    PGOPTIONS="-c client_min_messages=warning" snk "$tbl" -c "CREATE SUBSCRIPTION sub_$tbl CONNECTION '$SRC_DSN'
      PUBLICATION pub_$tbl WITH (create_slot = true, slot_name = 'slot_$tbl', copy_data = false, synchronous_commit = 'off')"
    pgb_wait_sql snk "$tbl" "(SELECT received_lsn IS NOT NULL FROM pg_stat_subscription WHERE subname = 'sub_$tbl' AND pid IS NOT NULL)" 60 >/dev/null \
      || od_die "native: the subscription's worker did not start"
  else
    bin=$ODSYNC_BIN
    [[ $t == base ]] && bin=$BURST_BASE_BIN
    src bench -c "SELECT pg_create_logical_replication_slot('slot_$tbl', 'pgoutput')" >/dev/null
    mkdir -p "$TMP/state_$t"
    cat >"$TMP/$t.yml" <<YAML
state_dir: $TMP/state_$t
pipelines:
  - name: $tbl
    source: { type: postgres, dsn: "$SRC_DSN", slot: slot_$tbl, publication: pub_$tbl, tables: [public.$tbl], snapshot: never${BENCH_SOURCE_EXTRA:+, $BENCH_SOURCE_EXTRA} }
    sink: { type: postgres, dsn: "$(pgb_dsn snk "$tbl")" }
    consistency: strong
YAML
    "$bin" run -c "$TMP/$t.yml" --no-progress >"$TMP/$t.log" 2>&1 &
    ODSYNC_PID=$!
    for _ in $(seq 1 300); do grep -q 'streaming from' "$TMP/$t.log" && break; sleep 0.1; done
    grep -q 'streaming from' "$TMP/$t.log" || od_die "$t: odsync did not start streaming: $(tail -n 5 "$TMP/$t.log")"
    c0o=$(pgb_cpu_seconds "$ODSYNC_PID")
  fi
  src bench -c "CHECKPOINT"
  snk postgres -c "CHECKPOINT"
  c0s=$(pgb_server_cpu src) c0d=$(pgb_server_cpu snk)
  log "$t: burst of $BURST_ROWS inserts in $BENCH_TXN-row transactions"
  W0=$(od_now)
  PGOPTIONS="-c synchronous_commit=off" src bench -c "CALL ins_$tbl(1, $BURST_ROWS - 1, $BENCH_TXN)"
  LAST=$(src bench <<SQL
BEGIN;
INSERT INTO $tbl SELECT $ROW_GEN FROM generate_series($BURST_ROWS, $BURST_ROWS) AS g;
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)
  W1=$(od_now)
  if [[ $t == native ]]; then
    cond="(SELECT o.remote_lsn FROM pg_replication_origin_status o JOIN pg_subscription s
           ON o.external_id = 'pg_' || s.oid WHERE s.subname = 'sub_$tbl') >= '$LAST'::pg_lsn"
    T1=$(pgb_wait_sql snk "$tbl" "$cond" "$BENCH_TIMEOUT") || od_die "native did not reach $LAST"
  else
    T1=$(pgb_wait_sql snk "$tbl" "(SELECT position FROM public._odsync_checkpoint WHERE pipeline = '$tbl') >= '$LAST'::pg_lsn" \
          "$BENCH_TIMEOUT" "$ODSYNC_PID") || { tail -n 20 "$TMP/$t.log" >&2; od_die "$t did not reach $LAST"; }
    OCPU[$t]=$(od_secs "$c0o" "$(pgb_cpu_seconds "$ODSYNC_PID")")
    SWITCHED[$t]=$(grep -c 'switching to batch decoding' "$TMP/$t.log" || true)
  fi
  SCPU[$t]=$(od_secs "$c0s" "$(pgb_server_cpu src)") DCPU[$t]=$(od_secs "$c0d" "$(pgb_server_cpu snk)")
  WORK[$t]=$(od_secs "$W0" "$W1") SEC[$t]=$(od_secs "$W0" "$T1") AFTER[$t]=$(od_secs "$W1" "$T1")
  if [[ $(snk "$tbl" -c "$(checksum_sql "$tbl")") == "$(src bench -c "$(checksum_sql "$tbl")")" ]]; then OK[$t]=ok; else OK[$t]=WRONG; fi
  if [[ $t == native ]]; then
    PGOPTIONS="-c client_min_messages=warning" snk "$tbl" -c "DROP SUBSCRIPTION sub_$tbl"
  else
    od_stop_pid "$ODSYNC_PID" 60
    wait "$ODSYNC_PID" 2>/dev/null || true
    ODSYNC_PID=
    src bench -c "SELECT pg_drop_replication_slot('slot_$tbl')" >/dev/null
  fi
  log "$t: ${SEC[$t]} s (burst written in ${WORK[$t]} s, ${AFTER[$t]} s after it), data ${OK[$t]}"
done

echo
echo "A burst of $BURST_ROWS inserts ($BENCH_TXN-row transactions) at the head, PostgreSQL → PostgreSQL ($(nproc) cores, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'))"
printf '%-26s %9s %9s %9s %9s %11s %11s %11s %9s %5s\n' tool "burst s" "total s" "after s" "x native" \
  "src µs/row" "sink µs/row" "own µs/row" switches data
for t in "${TOOLS[@]}"; do
  name=$t
  [[ $t == native ]] && name="native subscription"
  [[ $t == odsync ]] && name="odsync strong"
  [[ $t == base ]] && name="odsync strong (base bin)"
  x=$(awk -v a="${AFTER[native]}" -v b="${AFTER[$t]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }')
  printf '%-26s %9s %9s %9s %9s %11s %11s %11s %9s %5s\n' "$name" "${WORK[$t]}" "${SEC[$t]}" "${AFTER[$t]}" "$x" \
    "$(per_row_us "${SCPU[$t]}")" "$(per_row_us "${DCPU[$t]}")" "$( [[ -n ${OCPU[$t]:-} ]] && per_row_us "${OCPU[$t]}" || echo -)" \
    "${SWITCHED[$t]:--}" "${OK[$t]}"
done
echo "x native: the native subscription's time after the burst over the tool's (higher is better)"
