#!/usr/bin/env bash
# bench/pg_to_clickhouse.sh — PostgreSQL → ClickHouse throughput of odsync against the sink's
# ceiling: a plain `clickhouse-client` insert of the same row versions as TSV, in the same run.
#
# One throwaway PostgreSQL (bench/lib.sh), one throwaway clickhouse-server (tests/env/clickhouse.sh);
# the bench_rows workload (od_bench_rows_workload: BENCH_ROWS inserts, then BENCH_ROWS updates, in
# BENCH_TXN-row transactions) is written while odsync is stopped (its slot made first), so odsync
# catches up on a backlog:
#   1. ceiling: the 2 × BENCH_ROWS row versions (each row as inserted and as updated), exported from
#      PostgreSQL as TSV beforehand, inserted with `clickhouse-client --query "INSERT ... FORMAT
#      TabSeparated"` into a MergeTree table of the same columns (the time of the insert only);
#   2. odsync: `odsync run` into the ClickHouse sink until its checkpoint holds the last transaction;
#      then the sink's view (bench_rows_current) is compared with the source (count, sum(a), sum(d)).
# Prints changes/s of both, odsync/ceiling (issue #12's target: ≥ 0.5) and CPU seconds of odsync
# and of the ClickHouse server while each ran.
#
# Environment: BENCH_ROWS (1000000), BENCH_TXN (1000), BENCH_MAX_ROWS (50000: batch.max_rows),
# ODSYNC_BIN (build/odsync: a Release build, scripts/build.sh), BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
pg_free_port() { od_free_port; } # tests/env/clickhouse.sh picks its ports with it
# shellcheck source=tests/env/clickhouse.sh
source "$ROOT/tests/env/clickhouse.sh"

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-50000}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
CHANGES=$((2 * BENCH_ROWS))
[[ -x $ODSYNC_BIN ]] || od_die "odsync not built at $ODSYNC_BIN (scripts/build.sh)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-chbench.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $ODSYNC_PID ]] && { od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; }
  ch_cleanup_all || true
  od_pg_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

od_bench_rows_source "$TMP/pg"
ch_start || od_die "clickhouse-server did not start"
ch_query "CREATE DATABASE bench"
log "PostgreSQL on $OD_PG_PORT, ClickHouse HTTP on $CH_HTTP_PORT; workload: $BENCH_ROWS inserts + $BENCH_ROWS updates"

# The row versions for the ceiling, taken before the workload changes them: as inserted, as updated.
od_bench_rows_workload bench "$BENCH_ROWS" "$BENCH_TXN"
LAST_LSN=$(od_bench_rows_last_txn bench)
CHANGES=$((CHANGES + 1))
od_psql bench -c "\\copy (SELECT id, a - 1, lower(b), to_char((c - interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), d - 1 FROM bench_rows WHERE id > 0 UNION ALL SELECT id, a, b, to_char(c AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), d FROM bench_rows) TO '$TMP/rows.tsv'"
[[ $(wc -l <"$TMP/rows.tsv") == "$CHANGES" ]] || od_die "the export holds $(wc -l <"$TMP/rows.tsv") rows, expected $CHANGES"
ch_query "CREATE TABLE bench.ceiling (id Int64, a Int32, b String, c DateTime, d Decimal(12,2)) ENGINE = MergeTree ORDER BY id"

CH_SERVER_PID=$(cat "$CH_DIR/server.pid" 2>/dev/null || echo "$CH_PID")
log "ceiling: clickhouse-client INSERT ... FORMAT TabSeparated of $CHANGES rows"
S0=$(od_cpu_seconds "$CH_SERVER_PID")
T0=$EPOCHREALTIME
clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" --query "INSERT INTO bench.ceiling FORMAT TabSeparated" <"$TMP/rows.tsv"
T1=$EPOCHREALTIME
CEIL_S=$(od_secs "$T0" "$T1")
CEIL_SRV=$(od_secs "$S0" "$(od_cpu_seconds "$CH_SERVER_PID")")
[[ $(ch_query "SELECT count() FROM bench.ceiling") == "$CHANGES" ]] || od_die "the ceiling table lacks rows"

cat >"$TMP/bench.yml" <<YAML
state_dir: $TMP/state
log_level: warn
pipelines:
  - name: bench
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", tables: [public.bench_rows], snapshot: never }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: bench, user: odsync, password: "\${env:CH_PASSWORD}" }
    batch: { max_rows: $BENCH_MAX_ROWS, max_delay_ms: 200 }
YAML
sink_lsn() { # the LSN of the sink's checkpoint, 0 when none
  local t
  t=$(ch_query "SELECT argMax(text, written) FROM bench._odsync_checkpoint WHERE key = 'bench'" 2>/dev/null || true)
  [[ $t =~ ^pg:([0-9A-F]+/[0-9A-F]+)$ ]] && od_lsn_to_int "${BASH_REMATCH[1]}" || echo 0
}
log "odsync → ClickHouse"
S0=$(od_cpu_seconds "$CH_SERVER_PID")
T0=$EPOCHREALTIME
"$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync.log" 2>&1 &
ODSYNC_PID=$!
while (( $(sink_lsn) < LAST_LSN )); do
  od_alive "$ODSYNC_PID" || { tail -n 20 "$TMP/odsync.log" >&2; od_die "odsync exited"; }
  sleep 0.2
done
T1=$EPOCHREALTIME
OD_CPU=$(od_cpu_seconds "$ODSYNC_PID")
OD_SRV=$(od_secs "$S0" "$(od_cpu_seconds "$CH_SERVER_PID")")
od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" || true; ODSYNC_PID=
OD_S=$(od_secs "$T0" "$T1")

want=$(od_psql bench -c "SELECT count(*) || ':' || sum(a) || ':' || sum(d) FROM bench_rows")
got=$(ch_query "SELECT concat(toString(count()), ':', toString(sum(a)), ':', toString(sum(d))) FROM bench.bench_rows_current")
[[ $got == "$want" ]] || od_die "ClickHouse holds $got (count:sum(a):sum(d)), the source $want"

rate() { awk -v c="$CHANGES" -v s="$1" 'BEGIN { printf "%.0f", c / s }'; }
printf '\nPostgreSQL → ClickHouse, %d changes (%d inserts + %d updates, %d-row transactions)\n' "$CHANGES" \
  "$BENCH_ROWS" "$BENCH_ROWS" "$BENCH_TXN"
printf '%-42s %8s %12s %12s %16s\n' what seconds changes/s "odsync CPU" "ClickHouse CPU"
printf '%-42s %8s %12s %12s %16s\n' "clickhouse-client TSV insert (ceiling)" "$CEIL_S" "$(rate "$CEIL_S")" - "$CEIL_SRV"
printf '%-42s %8s %12s %12s %16s\n' "odsync (catch-up of the backlog)" "$OD_S" "$(rate "$OD_S")" "$OD_CPU" "$OD_SRV"
printf 'odsync / ceiling: %s   sink equals source (%s)\n' "$(awk -v a="$CEIL_S" -v b="$OD_S" 'BEGIN { printf "%.2f", a / b }')" "$got"
