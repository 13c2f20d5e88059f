# bench/lib.sh — helpers shared by scripts/demo.sh and bench/*.sh (source it; don't run it).
#
# Throwaway PostgreSQL:  od_pg_start DIR [config lines...]   sets OD_PG_PORT, OD_PG_DIR (scripts/lib/pg_server.sh)
#                        od_pg_stop                                    (idempotent; safe in traps)
#                        od_psql [psql args...]                        psql as postgres on that server
# Misc:                  od_free_port, od_now (seconds, float), od_lsn_to_int X/Y,
#                        od_sink_position DB PIPELINE (0 when not there yet)
#
# initdb/pg_ctl refuse to run as root: when we are root the server runs as the unprivileged
# system user $OD_PG_OS_USER (default odsync-test), created on first use.

OD_PG_OS_USER=${OD_PG_OS_USER:-odsync-test}
OD_PG_PORT=
OD_PG_DIR=

od_die() { echo "error: $*" >&2; exit 1; }

# shellcheck source=../scripts/lib/pg_server.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/pg_server.sh"
PGSRV_USER=$OD_PG_OS_USER

od_pg_bindir() { pgsrv_bindir || od_die "PostgreSQL server binaries not found (set PG_BIN=/usr/lib/postgresql/15/bin)"; }
od_as_pg() { pgsrv_as_user "$@"; }
od_ensure_pg_user() { pgsrv_ensure_user || od_die "could not create system user $OD_PG_OS_USER (needed because initdb refuses root)"; }
od_free_port() { pgsrv_free_port || od_die "no free loopback port found"; }

od_now() { echo "$EPOCHREALTIME"; }
# Seconds from A to B (two od_now / EPOCHREALTIME values, or two CPU readings), two decimals.
od_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# User + system CPU seconds a live process has used so far (n/a when it is gone).
od_cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo n/a
}

# "16/B374D848" -> decimal integer (hi << 32) + lo
od_lsn_to_int() {
  local hi=${1%%/*} lo=${1##*/}
  echo $(( (16#$hi << 32) + 16#$lo ))
}

# od_pg_start DIR [conf lines...]: a server in DIR (scripts/lib/pg_server.sh) with 16 slots and
# senders; extra lines go to its configuration.
od_pg_start() {
  local dir=$1; shift
  OD_PG_DIR=$dir
  pgsrv_start "$dir" C.UTF-8 "max_replication_slots = 16" "max_wal_senders = 16" "$@" ||
    od_die "PostgreSQL did not start (log: $dir/server.log)"
  OD_PG_PORT=$PGSRV_PORT
}

od_pg_stop() {
  [[ -n ${OD_PG_DIR:-} ]] || return 0
  pgsrv_stop "$OD_PG_DIR"
}

od_pg_dsn() { echo "host=127.0.0.1 port=$OD_PG_PORT dbname=${1:-postgres} user=postgres"; }

# od_psql DB [psql args...] — quiet, unaligned, stops on the first error.
od_psql() {
  local db=$1; shift
  psql -X -q -A -t -v ON_ERROR_STOP=1 "$(od_pg_dsn "$db")" "$@"
}

# Integer checkpoint position of PIPELINE in the sink DB; 0 when the file/table/row is not there.
od_sink_position() {
  local db=$1 pipeline=$2 v
  [[ -f $db ]] || { echo 0; return; }
  v=$(sqlite3 -cmd ".timeout 2000" "$db" \
        "SELECT position FROM _odsync_checkpoint WHERE pipeline = '$pipeline'" 2>/dev/null || true)
  [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

# True while PID runs (an exited but not yet reaped child counts as gone).
od_alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# Stop a child we started (by pid): SIGTERM, wait up to N seconds, then SIGKILL.
# The caller may then `wait PID` for its exit status.
od_stop_pid() {
  local pid=$1 secs=${2:-30} i
  [[ -n $pid ]] || return 0
  od_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < secs * 10; i++ )); do
    od_alive "$pid" || return 0
    sleep 0.1
  done
  echo "warning: pid $pid did not stop in ${secs}s, killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# The bench_rows workload shared by the benchmarks (bench/instructions.sh, pg_to_clickhouse.sh,
# pg_to_redis.sh): table bench_rows (bigint key, int, text, timestamptz, numeric) and publication
# odsync_bench in database DB, then ROWS inserts and ROWS updates of every non-key column in
# TXN-row transactions (synchronous_commit off: the WAL, not the client, is what is measured).
#   od_bench_rows_source DIR   a server in DIR (bench settings) with database bench, the table, the
#                               publication and slot odsync_bench (made before any change: a backlog)
#   od_bench_rows_table DB
#   od_bench_rows_workload DB ROWS TXN
#   od_bench_rows_last_txn DB   one more transaction (row 0) on its own; prints, as an integer, an
#                               LSN read inside it: past every earlier commit and not past its own,
#                               so a sink checkpoint at or beyond it holds the whole workload
od_bench_rows_table() {
  od_psql "$1" <<'SQL'
CREATE TABLE bench_rows (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2));
CREATE PUBLICATION odsync_bench FOR TABLE bench_rows;
SQL
}

od_bench_rows_source() {
  od_pg_start "$1" "shared_buffers = 512MB" "max_wal_size = 8GB" "autovacuum = off"
  od_psql postgres -c "CREATE DATABASE bench"
  od_bench_rows_table bench
  od_psql bench -c "SELECT pg_create_logical_replication_slot('odsync_bench', 'pgoutput')" >/dev/null
}

od_bench_rows_workload() {
  local db=$1 rows=$2 txn=$3
  PGOPTIONS="-c synchronous_commit=off" od_psql "$db" <<SQL
DO \$\$ DECLARE lo bigint := 1; BEGIN
  WHILE lo <= $rows LOOP
    INSERT INTO bench_rows SELECT g, (g % 1000003)::int, md5(g::text),
      timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', (g % 10000000) / 100.0
      FROM generate_series(lo, least(lo + $txn - 1, $rows)) g;
    COMMIT;
    lo := lo + $txn;
  END LOOP;
  lo := 1;
  WHILE lo <= $rows LOOP
    UPDATE bench_rows SET a = a + 1, b = upper(b), c = c + interval '1 day', d = d + 1
     WHERE id BETWEEN lo AND least(lo + $txn - 1, $rows);
    COMMIT;
    lo := lo + $txn;
  END LOOP;
END \$\$;
SQL
}

od_bench_rows_last_txn() {
  od_lsn_to_int "$(od_psql "$1" <<'SQL'
BEGIN;
INSERT INTO bench_rows VALUES (0, 0, 'last', now(), 0);
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
)"
}
