#!/usr/bin/env bash
# bench/pg_to_redis.sh — PostgreSQL → Redis (hash mode) throughput of odsync against the cache's
# ceiling: the same row versions written as pipelined HSETs with `redis-cli --pipe`, in the same run.
#
# One throwaway PostgreSQL (bench/lib.sh), one throwaway redis-server (tests/env/redis.sh: AOF with
# appendfsync always, for both runs); the bench_rows workload (od_bench_rows_workload: BENCH_ROWS
# inserts, then BENCH_ROWS updates, BENCH_TXN-row transactions) is written while odsync is stopped (its
# slot made first), so odsync catches up on a backlog:
#   1. ceiling: 2 × BENCH_ROWS + 1 `HSET ceil:bench_rows:<id> a .. b .. c .. d ..` (every row as inserted
#      and as updated, generated from PostgreSQL beforehand), piped with `redis-cli --pipe`;
#   2. odsync: `odsync run` into the Redis sink (mode hash, prefix bench) until its checkpoint holds
#      the last transaction; then the hashes are counted and summed against the source.
# Prints changes/s of both, odsync/ceiling (issue #12's target: ≥ 0.5) and CPU seconds of odsync and
# of redis-server while each ran.
#
# Environment: BENCH_ROWS (1000000), BENCH_TXN (1000), BENCH_MAX_ROWS (5000: batch.max_rows),
# ODSYNC_BIN (build/odsync: a Release build, scripts/build.sh), BENCH_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
pg_free_port() { od_free_port; } # tests/env/redis.sh picks its port with it
# shellcheck source=tests/env/redis.sh
source "$ROOT/tests/env/redis.sh"

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXN=${BENCH_TXN:-1000}
BENCH_MAX_ROWS=${BENCH_MAX_ROWS:-5000}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
CHANGES=$((2 * BENCH_ROWS + 1))
[[ -x $ODSYNC_BIN ]] || od_die "odsync not built at $ODSYNC_BIN (scripts/build.sh)"
command -v redis-cli >/dev/null || od_die "redis-cli not found (scripts/setup.sh installs redis-tools)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-rdbench.XXXXXX")
ODSYNC_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $ODSYNC_PID ]] && { od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; }
  redis_cleanup_all || true
  od_pg_stop
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

od_bench_rows_source "$TMP/pg"
redis_start || od_die "redis-server did not start"
REDIS_SERVER_PID=$(rcli INFO server | awk -F: '/^process_id/ { print $2 }' | tr -d '\r')
log "PostgreSQL on $OD_PG_PORT, Redis on $REDIS_PORT; workload: $BENCH_ROWS inserts + $BENCH_ROWS updates"
od_bench_rows_workload bench "$BENCH_ROWS" "$BENCH_TXN"
LAST_LSN=$(od_bench_rows_last_txn bench)

# The ceiling's commands: every row as inserted and as updated (c as PostgreSQL prints it), in the
# Redis protocol redis-cli --pipe sends as is.
od_psql bench -c "\\copy (SELECT id, a - 1, lower(b), (c - interval '1 day')::text, (d - 1)::text FROM bench_rows WHERE id > 0 UNION ALL SELECT id, a, b, c::text, d::text FROM bench_rows) TO '$TMP/rows.tsv'"
[[ $(wc -l <"$TMP/rows.tsv") == "$CHANGES" ]] || od_die "the export holds $(wc -l <"$TMP/rows.tsv") rows, expected $CHANGES"
awk -F'\t' 'function bulk(s) { return "$" length(s) "\r\n" s "\r\n" }
  { printf "*12\r\n%s%s%s%s%s%s%s%s%s%s%s%s", bulk("HSET"), bulk("ceil:bench_rows:" $1), bulk("id"), bulk($1),
      bulk("a"), bulk($2), bulk("b"), bulk($3), bulk("c"), bulk($4), bulk("d"), bulk($5) }' \
  "$TMP/rows.tsv" >"$TMP/ceiling.resp"

log "ceiling: redis-cli --pipe of $CHANGES HSETs"
S0=$(od_cpu_seconds "$REDIS_SERVER_PID")
T0=$EPOCHREALTIME
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe <"$TMP/ceiling.resp" >"$TMP/pipe.out"
T1=$EPOCHREALTIME
CEIL_S=$(od_secs "$T0" "$T1")
CEIL_SRV=$(od_secs "$S0" "$(od_cpu_seconds "$REDIS_SERVER_PID")")
grep -q "errors: 0, replies: $CHANGES" "$TMP/pipe.out" || { cat "$TMP/pipe.out" >&2; od_die "redis-cli --pipe did not apply every HSET"; }

cat >"$TMP/bench.yml" <<YAML
state_dir: $TMP/state
log_level: warn
pipelines:
  - name: bench
    source: { type: postgres, dsn: "$(od_pg_dsn bench)", tables: [public.bench_rows], snapshot: never }
    sink: { type: redis, port: $REDIS_PORT, user: odsync, password: "\${env:REDIS_PASSWORD}", prefix: bench, mode: hash }
    batch: { max_rows: $BENCH_MAX_ROWS, max_delay_ms: 50 }
YAML
sink_lsn() { # the LSN of the sink's checkpoint, 0 when none
  local t
  t=$(rcli HGET bench:_odsync:checkpoint bench 2>/dev/null | tr -d '\r' || true)
  [[ $t =~ ^pg:([0-9A-F]+/[0-9A-F]+)$ ]] && od_lsn_to_int "${BASH_REMATCH[1]}" || echo 0
}
log "odsync → Redis (hash mode)"
S0=$(od_cpu_seconds "$REDIS_SERVER_PID")
T0=$EPOCHREALTIME
"$ODSYNC_BIN" run -c "$TMP/bench.yml" --no-progress >"$TMP/odsync.log" 2>&1 &
ODSYNC_PID=$!
while (( $(sink_lsn) < LAST_LSN )); do
  od_alive "$ODSYNC_PID" || { tail -n 20 "$TMP/odsync.log" >&2; od_die "odsync exited"; }
  sleep 0.1
done
T1=$EPOCHREALTIME
OD_CPU=$(od_cpu_seconds "$ODSYNC_PID")
OD_SRV=$(od_secs "$S0" "$(od_cpu_seconds "$REDIS_SERVER_PID")")
od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" || true; ODSYNC_PID=
OD_S=$(od_secs "$T0" "$T1")

# The sink's hashes against the source: count and sum(a), read with one Lua call.
want=$(od_psql bench -c "SELECT count(*) || ':' || sum(a) FROM bench_rows")
got=$(rcli EVAL "local n, s, cur = 0, 0, '0'
  repeat
    local r = redis.call('SCAN', cur, 'MATCH', 'bench:*bench_rows:*', 'COUNT', 10000)
    cur = r[1]
    for _, k in ipairs(r[2]) do n = n + 1; s = s + tonumber(redis.call('HGET', k, 'a')) end
  until cur == '0'
  return tostring(n) .. ':' .. tostring(s)" 0 | tr -d '\r')
[[ $got == "$want" ]] || od_die "Redis holds $got (count:sum(a)), the source $want"

rate() { awk -v c="$CHANGES" -v s="$1" 'BEGIN { printf "%.0f", c / s }'; }
printf '\nPostgreSQL → Redis (hash), %d changes (%d inserts + %d updates + 1, %d-row transactions)\n' "$CHANGES" \
  "$BENCH_ROWS" "$BENCH_ROWS" "$BENCH_TXN"
printf '%-42s %8s %12s %12s %12s\n' what seconds changes/s "odsync CPU" "Redis CPU"
printf '%-42s %8s %12s %12s %12s\n' "redis-cli --pipe HSETs (ceiling)" "$CEIL_S" "$(rate "$CEIL_S")" - "$CEIL_SRV"
printf '%-42s %8s %12s %12s %12s\n' "odsync (catch-up of the backlog)" "$OD_S" "$(rate "$OD_S")" "$OD_CPU" "$OD_SRV"
printf 'odsync / ceiling: %s   sink equals source (%s)\n' "$(awk -v a="$CEIL_S" -v b="$OD_S" 'BEGIN { printf "%.2f", a / b }')" "$got"
