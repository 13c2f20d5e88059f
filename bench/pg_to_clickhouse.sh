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
#      then one row written after the backlog is timed until the sink's view shows it (it comes by
#      the stream, which first decodes from the slot's restart_lsn: catchup_move_restart), and the
#      sink's view (bench_rows_current) is compared with the source (count, sum(a), sum(d)).
#   Before odsync: "decode only", the same backlog read by pg_logical_slot_peek_binary_changes with
#   odsync's pgoutput options in one call on a copy of the slot (the source-side floor of any
#   consumer: the ClickHouse side costs nothing there).
# Prints changes/s of all three, odsync/ceiling (issue #12's target: ≥ 0.5), decode-only/ceiling,
# and CPU seconds of odsync, of the ClickHouse server while each ran, of the batch-decoding backend
# (the session owning the slot's temporary copy, read from /proc while it lives) and of PostgreSQL's
# walsender.
#
# Then, on the same server: the insert format (TabSeparated vs RowBinary, the server's parsing of
# an HTTP body), and the server's own account of the run (system.query_log, system.part_log).
#
# Environment: BENCH_ROWS (1000000), BENCH_TXN (1000), BENCH_MAX_ROWS (100000: batch.max_rows, the
# sink's own default for lingering batches; 50000 before lingering batches kept to it),
# BENCH_CATCHUP_LAG (67108864: the source's catchup_lag_bytes; 0 streams the backlog),
# BENCH_LINGER (auto; false: batches cut as before lingering), BENCH_CH_COMPRESSION (none | gzip),
# BENCH_FORMATS (1: measure the formats), BENCH_LOG_LEVEL (warn), ODSYNC_BIN (build/odsync: a
# Release build, scripts/build.sh), BENCH_SOURCE_EXTRA (keys added to the source block, e.g.
# "catchup_move_restart: false" to measure the stream restarting from the backlog's start), BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"
pg_free_port() { od_free_port; } # tests/env/clickhouse.sh picks its ports with it
# shellcheck source=tests/env/clickhouse.sh
source "$ROOT/tests/env/clickhouse.sh"
# Profile the server: every query in system.query_log, every part written or merged in
# system.part_log (printed after the run, per side).
CH_EXTRA_CONFIG='<part_log><database>system</database><table>part_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></part_log>'
CH_EXTRA_PROFILE='<log_queries>1</log_queries>'

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-100000}
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
PGB_DIR[src]=$OD_PG_DIR # pgb_server_cpu src: CPU seconds of every process of this server
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
log_level: ${BENCH_LOG_LEVEL:-warn}
pipelines:
  - name: bench
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", tables: [public.bench_rows], snapshot: never, catchup_lag_bytes: ${BENCH_CATCHUP_LAG:-67108864}${BENCH_SOURCE_EXTRA:+, $BENCH_SOURCE_EXTRA} }
    sink: { type: clickhouse, url: "http://127.0.0.1:$CH_HTTP_PORT", database: bench, user: odsync, password: "\${env:CH_PASSWORD}", compression: ${BENCH_CH_COMPRESSION:-none} }
    batch: { max_rows: $BENCH_MAX_ROWS, max_delay_ms: 200, linger: ${BENCH_LINGER:-auto} }
YAML
ch_http_query() { # over HTTP with curl: a poll costs a few ms of CPU where clickhouse-client costs ~0.1 s
  curl -sf --data-binary "$1" "http://127.0.0.1:$CH_HTTP_PORT/?user=default"
}
sink_lsn() { # the LSN of the sink's checkpoint, 0 when none
  local t
  t=$(ch_http_query "SELECT argMax(text, written) FROM bench._odsync_checkpoint WHERE key = 'bench'" 2>/dev/null || true)
  [[ $t =~ ^pg:([0-9A-F]+/[0-9A-F]+)$ ]] && od_lsn_to_int "${BASH_REMATCH[1]}" || echo 0
}
# Decode only (the source-side floor of any consumer, same run): the same backlog read by
# pg_logical_slot_peek_binary_changes with odsync's pgoutput options, in one call, on a copy of the
# slot (the copy starts where the slot does; peek consumes nothing; the copy is dropped after).
# Seconds of the call (psql's start included, a few ms) and PostgreSQL's CPU seconds meanwhile.
PG_OPTS="'proto_version', '1', 'publication_names', '\"odsync_bench\"'"
(( $(od_psql bench -c "SHOW server_version_num") >= 140000 )) && PG_OPTS+=", 'messages', 'true'"
od_psql bench -c "SELECT pg_copy_logical_replication_slot('odsync_bench', 'bench_decode_only')" >/dev/null
log "decode only: pg_logical_slot_peek_binary_changes of the whole backlog on a copy of the slot"
PG0=$(pgb_server_cpu src)
T0=$EPOCHREALTIME
DEC_OUT=$(od_psql bench -c "SELECT count(*) || ' messages, ' || sum(length(data)) || ' bytes' FROM pg_logical_slot_peek_binary_changes('bench_decode_only', NULL, NULL, $PG_OPTS)")
T1=$EPOCHREALTIME
DEC_S=$(od_secs "$T0" "$T1")
DEC_PG=$(od_secs "$PG0" "$(pgb_server_cpu src)")
od_psql bench -c "SELECT pg_drop_replication_slot('bench_decode_only')" >/dev/null

log "odsync → ClickHouse"
S0=$(od_cpu_seconds "$CH_SERVER_PID")
PG0=$(pgb_server_cpu src)
T0=$EPOCHREALTIME
"$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync.log" 2>&1 &
ODSYNC_PID=$!
# The batch-decoding backend: the session that owns the slot's temporary copy (named after its
# PID); its CPU seconds are read while it lives (it ends at the switch to streaming).
DEC_PID= DEC_CPU=-
while (( $(sink_lsn) < LAST_LSN )); do
  od_alive "$ODSYNC_PID" || { tail -n 20 "$TMP/odsync.log" >&2; od_die "odsync exited"; }
  if [[ -z $DEC_PID ]]; then
    DEC_PID=$(od_psql bench -c "SELECT substring(slot_name from '_catchup_([0-9]+)$') FROM pg_replication_slots WHERE slot_name LIKE 'odsync_bench_catchup_%' LIMIT 1" 2>/dev/null || true)
  fi
  if [[ -n $DEC_PID ]]; then c=$(od_cpu_seconds "$DEC_PID"); [[ $c == n/a ]] || DEC_CPU=$c; fi
  sleep 0.05
done
T1=$EPOCHREALTIME
OD_CPU=$(od_cpu_seconds "$ODSYNC_PID")
PG_CPU=$(od_secs "$PG0" "$(pgb_server_cpu src)")
if [[ -n $DEC_PID ]]; then c=$(od_cpu_seconds "$DEC_PID"); [[ $c == n/a ]] || DEC_CPU=$c; fi
OD_SRV=$(od_secs "$S0" "$(od_cpu_seconds "$CH_SERVER_PID")")
# The first change after the backlog: one row written now, timed until the sink's view shows it. It
# comes by the stream, which starts decoding at the slot's restart_lsn: at the backlog's start
# unless catch-up moved it (catchup_move_restart), the walsender decodes the backlog's WAL again first.
PG1=$(pgb_server_cpu src)
T2=$EPOCHREALTIME
od_psql bench -c "INSERT INTO bench_rows VALUES (-1, 0, 'after the backlog', now(), 0)" >/dev/null
until [[ $(ch_query "SELECT count() FROM bench.bench_rows_current WHERE id = -1") == 1 ]]; do
  od_alive "$ODSYNC_PID" || { tail -n 20 "$TMP/odsync.log" >&2; od_die "odsync exited"; }
  (( $(od_secs "$T2" "$EPOCHREALTIME" | cut -d. -f1) < 300 )) || od_die "the row written after the backlog did not arrive in 300 s"
  sleep 0.05
done
NEXT_S=$(od_secs "$T2" "$EPOCHREALTIME")
NEXT_PG=$(od_secs "$PG1" "$(pgb_server_cpu src)")
WS_PID=$(od_psql bench -c "SELECT pid FROM pg_stat_replication LIMIT 1")
WS_CPU=$( [[ -n $WS_PID ]] && od_cpu_seconds "$WS_PID" || echo -)
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
printf '%-42s %8s %12s %12s %16s   (%s; PostgreSQL CPU s %s)\n' "decode only (peek, one call: source floor)" "$DEC_S" "$(rate "$DEC_S")" - - "$DEC_OUT" "$DEC_PG"
printf 'PostgreSQL batch-decoding backend (pid %s) CPU s, last read before it ended or the run did: %s\n' "${DEC_PID:--}" "$DEC_CPU"
printf 'PostgreSQL walsender (pgoutput decoding) CPU s, up to the row after the backlog: %s (batch decoding of a catch-up runs in another backend: not counted)\n' "$WS_CPU"
printf 'first change after the backlog: %s s until in the sink; PostgreSQL server CPU s meanwhile: %s\n' "$NEXT_S" "$NEXT_PG"
printf 'PostgreSQL server CPU s while odsync ran (every process: batch-decoding backend, slot advances, walsender): %s\n' "$PG_CPU"
printf 'odsync / ceiling: %s   decode only / ceiling: %s   sink equals source (%s)\n' \
  "$(awk -v a="$CEIL_S" -v b="$OD_S" 'BEGIN { printf "%.2f", a / b }')" \
  "$(awk -v a="$CEIL_S" -v b="$DEC_S" 'BEGIN { printf "%.2f", a / b }')" "$got"

# The insert format, measured where odsync pays for it: the server parsing an HTTP body (as odsync
# sends it; clickhouse-client parses its input itself and sends native blocks). The same row
# versions in the shape of odsync's table (Nullable columns, version, deleted flag), as
# TabSeparated and as RowBinary, POSTed with curl into fresh ReplacingMergeTree tables, twice each,
# alternating; server CPU seconds and wall seconds of each POST.
if [[ ${BENCH_FORMATS:-1} == 1 ]]; then
  shape="(id Int64, a Nullable(Int32), b Nullable(String), c Nullable(DateTime('UTC')), d Nullable(Decimal(12,2)), _odsync_version UInt64, _odsync_deleted UInt8)"
  sel="SELECT id, toNullable(a), toNullable(b), toNullable(c), toNullable(d), toUInt64(rowNumberInAllBlocks()), toUInt8(0) FROM bench.ceiling"
  ch_query "$sel FORMAT TabSeparated" >"$TMP/rows_shape.tsv"
  ch_query "$sel FORMAT RowBinary" >"$TMP/rows_shape.bin"
  printf '\nInsert format (server parsing an HTTP POST of %d rows): format, round, bytes, seconds, ClickHouse CPU s\n' "$CHANGES"
  for round in 1 2; do
    for fmt in TabSeparated RowBinary; do
      f=$TMP/rows_shape.tsv; [[ $fmt == RowBinary ]] && f=$TMP/rows_shape.bin
      t=fmt_${fmt}_$round
      ch_query "CREATE TABLE bench.$t $shape ENGINE = ReplacingMergeTree(_odsync_version) ORDER BY id"
      S0=$(od_cpu_seconds "$CH_SERVER_PID"); T0=$EPOCHREALTIME
      curl -sf --data-binary "@$f" "http://127.0.0.1:$CH_HTTP_PORT/?query=$(printf 'INSERT%%20INTO%%20bench.%s%%20FORMAT%%20%s' "$t" "$fmt")" >/dev/null ||
        od_die "the $fmt insert failed"
      T1=$EPOCHREALTIME
      printf '%-14s %d %10d %8s %8s\n' "$fmt" "$round" "$(stat -c %s "$f")" "$(od_secs "$T0" "$T1")" \
        "$(od_secs "$S0" "$(od_cpu_seconds "$CH_SERVER_PID")")"
      [[ $(ch_query "SELECT count() FROM bench.$t") == "$CHANGES" ]] || od_die "bench.$t lacks rows"
    done
  done
fi

# Where the server's time went.
ch_query "SYSTEM FLUSH LOGS" >/dev/null 2>&1 || true
printf '\nsystem.query_log, finished queries (the checkpoint polls of this script are the SELECT argMax rows): side, kind, count, rows read, rows written, max memory MiB, seconds\n'
ch_query "SELECT multiIf(query LIKE '%bench.fmt_%', 'formats', query LIKE '%bench.ceiling%', 'ceiling', 'odsync') AS side,
  substring(replaceRegexpAll(query, '[\\n ]+', ' '), 1, 40) AS kind, count(), sum(read_rows), sum(written_rows),
  round(max(memory_usage) / 1048576, 1), round(sum(query_duration_ms) / 1000, 2)
  FROM system.query_log WHERE type = 2 AND query NOT LIKE '%system.%'
  GROUP BY side, kind ORDER BY side, sum(query_duration_ms) DESC LIMIT 20" || true
printf '\nsystem.part_log: table, event (1 new part, 2 merge), count, rows, seconds\n'
ch_query "SELECT table, event_type, count(), sum(rows), round(sum(duration_ms) / 1000, 2) FROM system.part_log
  WHERE database = 'bench' GROUP BY table, event_type ORDER BY table, event_type" || true
