#!/usr/bin/env bash
# bench/mesh_echo_cost.sh — what the mesh's echo costs a node's walsender, and what odsync_pgoutput
# saves of it: the same WAL decoded through pgoutput and through odsync_pgoutput, measured as the
# decoding backend's own CPU time (perf stat task-clock; the best of ECHO_REPEAT calls, interleaved),
# which a loaded machine disturbs far less than wall-clock time (not CI). Hardware instruction
# counters are not available on this VM (perf reports instructions <not supported>).
#
# One throwaway server (offered odsync_pgoutput: scripts/lib/pg_server.sh, from the pgplugin folder
# beside ODSYNC_BIN), three slots created at the same point:
#   pg   (pgoutput), od (odsync_pgoutput, odsync_origin 'none'), and base (pgoutput) in a second
#   database holding only the local half (the one-way reference: no echo at all).
# Workload in both databases: ECHO_TXNS single-row local insert transactions (the node's own
# writes); in the mesh database also the same number of rows applied "by a mesh sink": a session
# with replication origin odsync_b, ECHO_BATCH rows per transaction, each transaction with the sink's
# odsync.hlc message and pg_replication_origin_xact_setup, as a mesh sink writes them.
# Each slot is then read whole by pg_logical_slot_peek_binary_changes in one backend, with odsync's
# options, under `perf stat -e task-clock`; printed: CPU ms, messages and bytes per slot, and µs per
# local transaction.
# Environment: ECHO_TXNS (20000) ECHO_BATCH (30) ECHO_REPEAT (3) ODSYNC_BIN (for the module's folder) PG_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/lib_pg.sh
source "$ROOT/bench/lib_pg.sh"

N=${ECHO_TXNS:-20000}
B=${ECHO_BATCH:-30}
ODSYNC_BIN=${ODSYNC_BIN:-$ROOT/build/odsync}
command -v perf >/dev/null || od_die "perf is needed (apt-get install linux-perf)"
[[ -f $(dirname "$ODSYNC_BIN")/pgplugin/odsync_pgoutput.so ]] ||
  od_die "odsync_pgoutput.so not built beside $ODSYNC_BIN (pgplugin/): PostgreSQL server headers missing?"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/odsync-bench-echo.XXXXXX")
cleanup() { local rc=$?; trap - EXIT; pgb_stop_all; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
pgb_start a "$TMP/a" "track_commit_timestamp = on"
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn a "$1")" "${@:2}"; }

q postgres -c "CREATE DATABASE mesh" -c "CREATE DATABASE base" >/dev/null
for d in mesh base; do
  q $d -c "CREATE TABLE items (id bigint PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)" \
    -c "CREATE PUBLICATION p FOR TABLE items" >/dev/null
done
q mesh -c "SELECT pg_create_logical_replication_slot('pg', 'pgoutput')" \
  -c "SELECT pg_create_logical_replication_slot('od', 'odsync_pgoutput')" >/dev/null
q base -c "SELECT pg_create_logical_replication_slot('base', 'pgoutput')" >/dev/null
q mesh -c "SELECT pg_replication_origin_create('odsync_b')" >/dev/null

echo "INSERT INTO items (id, v) VALUES (nextval('s'), md5(random()::text));" >"$TMP/local.sql"
for d in mesh base; do
  q $d -c "CREATE SEQUENCE s" >/dev/null
  PGOPTIONS="-c synchronous_commit=off" pgbench -n -h 127.0.0.1 -p "${PGB_PORT[a]}" -U postgres -c 2 -j 1 \
    -t $((N / 2)) -f "$TMP/local.sql" $d >/dev/null 2>&1
done
# The applied half: what a mesh sink writes (batches under origin odsync_b, keys of the other node)
q mesh <<SQL >/dev/null
SET synchronous_commit = off;
SELECT pg_replication_origin_session_setup('odsync_b');
DO \$\$
BEGIN
  FOR i IN 0 .. ($N / $B) - 1 LOOP
    INSERT INTO items (id, v) SELECT 1000000000 + i * $B + g, md5(g::text) FROM generate_series(1, $B) g;
    PERFORM pg_replication_origin_xact_setup(('0/' || to_hex(i + 1000))::pg_lsn, '2000-01-01 00:00:00+00');
    PERFORM pg_logical_emit_message(true, 'odsync.hlc', (extract(epoch FROM now()) * 1000000)::int8::text || ' 1');
    COMMIT;
  END LOOP;
END \$\$;
SQL

opts="'proto_version', '1', 'publication_names', 'p', 'messages', 'true'"
measure() { # DB SLOT EXTRA_OPTS -> "ms messages bytes"
  local db=$1 slot=$2 extra=$3 fifo=$TMP/fifo.$2 pid out
  rm -f "$fifo" "$TMP/out.$slot"
  mkfifo "$fifo"
  # one backend: print its pid, wait for perf to attach, then decode the whole slot
  psql -X -q -A -t -v ON_ERROR_STOP=1 "$(pgb_dsn a "$db")" <"$fifo" >"$TMP/out.$slot" 2>&1 &
  local psql_pid=$!
  exec 7>"$fifo"
  echo "SELECT 'pid ' || pg_backend_pid();" >&7
  until pid=$(sed -n 's/^pid //p' "$TMP/out.$slot") && [[ -n $pid ]]; do sleep 0.05; done
  perf stat -e task-clock -x, -o "$TMP/perf.$slot" -p "$pid" &
  local perf_pid=$!
  sleep 0.5
  echo "SELECT 'got ' || count(*) || ' ' || coalesce(sum(length(data)), 0) FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL, $opts$extra);" >&7
  until grep -q '^got ' "$TMP/out.$slot"; do
    grep -q ERROR "$TMP/out.$slot" && od_die "decoding slot $slot: $(cat "$TMP/out.$slot")"
    sleep 0.05
  done
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  exec 7>&-
  wait "$psql_pid" || true
  out=$(sed -n 's/^got //p' "$TMP/out.$slot")
  awk -F, -v o="$out" '$3 == "task-clock" { ms = $1 } END { printf "%.1f %s\n", ms, o }' "$TMP/perf.$slot"
}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
bms= pms= oms=
for ((r = 0; r < ${ECHO_REPEAT:-3}; r++)); do
  read -r x bm bb < <(measure base base ""); bms=$(best "$bms" "$x")
  read -r x pm pb < <(measure mesh pg ""); pms=$(best "$pms" "$x")
  read -r x om ob < <(measure mesh od ", 'odsync_origin', 'none'"); oms=$(best "$oms" "$x")
done
line() { awk -v n="$N" -v t="$1" -v ms="$2" -v m="$3" -v b="$4" -v base="$bms" 'BEGIN {
  printf "  %-42s %8.1f ms CPU (%5.2f µs per local txn, %4.2fx one-way)  %7d messages  %9d bytes\n",
         t, ms, ms * 1000 / n, ms / base, m, b }'; }
cat <<EOF2

mesh echo at one node's walsender: $N local single-row transactions, plus $N rows applied by a mesh sink
in transactions of $B rows (origin odsync_b, odsync.hlc message each); whole slot decoded in one call
(the decoding backend's CPU time, perf stat task-clock, best of ${ECHO_REPEAT:-3} interleaved calls; measured under the machine's load)
$(line "one-way reference (local only, pgoutput)" "$bms" "$bm" "$bb")
$(line "with the echo, pgoutput" "$pms" "$pm" "$pb")
$(line "with the echo, odsync_pgoutput ('none')" "$oms" "$om" "$ob")
  the echo's cost: pgoutput $(awk -v a="$pms" -v b="$bms" -v n="$N" 'BEGIN { printf "%.2f", (a - b) * 1000 / n }') µs per local txn, odsync_pgoutput $(awk -v a="$oms" -v b="$bms" -v n="$N" 'BEGIN { printf "%.2f", (a - b) * 1000 / n }') µs (the decoding call saves $(awk -v a="$pms" -v o="$oms" 'BEGIN { printf "%.0f %%", 100 * (a - o) / a }'))
EOF2
