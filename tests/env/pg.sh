# shellcheck shell=bash
# tests/env/pg.sh — throwaway PostgreSQL clusters for tests (source this file; bash only).
#
#   pg_start [DBNAME]   initdb a cluster in a fresh temp dir, start it on a free 127.0.0.1 port with
#                       wal_level=logical, create DBNAME (default postgres) and export
#                       PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=DBNAME
#                       (also PG_DIR, PG_DATA, PG_LOG, PG_BINDIR)
#                       (PG_START_CONF, when set, is one more postgresql.conf line, e.g.
#                       "track_commit_timestamp = on")
#   pg_stop             fast shutdown of the last started cluster, remove its dir
#   pg_cleanup_all      stop and remove every cluster this shell started (for EXIT traps;
#                       safe to call more than once)
#   pg_dsn [DBNAME]     print a libpq DSN for the current cluster
#   pg_psql ARGS...     psql -X -At -v ON_ERROR_STOP=1 against the current cluster
#   pg_hba_prepend LINE put an HBA rule before the default (trust) rules and reload
#   pg_poll_true SQL [ARGS] t once SQL is true, polled in one session (up to 2 s), else f
#
# The server itself is started by scripts/lib/pg_server.sh (shared with bench/lib.sh and the demo).

PG_TEST_USER=${PG_TEST_USER:-odsync-test}
declare -a PG_STARTED_DIRS=()

# Settings that would make psql/libpq differ from what the server's walsender uses.
unset PGTZ PGDATESTYLE PGOPTIONS PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE PGSSLMODE \
  PGHOSTADDR PGCLIENTENCODING 2>/dev/null || true

# shellcheck source=../../scripts/lib/pg_server.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/pg_server.sh"
PGSRV_USER=$PG_TEST_USER
# Servers start from a copy of one initdb'd template (scripts/lib/pg_server.sh, pgsrv_initdb).
PGSRV_TEMPLATE=${PGSRV_TEMPLATE:-1}

# The server's own client programs (psql, pgbench, pg_dump, ...) first in PATH: Debian's
# /usr/bin/psql and friends are a Perl wrapper (postgresql-common's pg_wrapper) that picks the same
# binaries at ~50 ms of CPU per call, and the tests call psql thousands of times (their wait loops).
if _od_pgbin=$(pgsrv_bindir 2>/dev/null) && [[ -x $_od_pgbin/psql && ":$PATH:" != *":$_od_pgbin:"* ]]; then
  export PATH="$_od_pgbin:$PATH"
fi
unset _od_pgbin

pg_bindir() { pgsrv_bindir; }
pg_as_user() { pgsrv_as_user "$@"; }
pg_ensure_user() { pgsrv_ensure_user; }
pg_free_port() { pgsrv_free_port; }

pg_start() {
  local db=${1:-postgres} dir
  PG_BINDIR=$(pg_bindir) || return 1
  dir=$(mktemp -d /tmp/odsync-pg.XXXXXX) || return 1
  PG_STARTED_DIRS+=("$dir")
  PG_DIR=$dir
  PG_DATA=$dir/data
  PG_LOG=$dir/server.log
  pgsrv_start "$dir" C "max_replication_slots = 10" "max_wal_senders = 10" "fsync = on" \
    "synchronous_commit = on" "max_connections = 50" "shared_buffers = 32MB" "timezone = 'UTC'" \
    "log_timezone = 'UTC'" "datestyle = 'ISO, MDY'" "lc_messages = 'C'" ${PG_START_CONF:+"$PG_START_CONF"} || return 1
  export PGHOST=127.0.0.1 PGPORT=$PGSRV_PORT PGUSER=postgres PGDATABASE=postgres
  if [[ "$db" != postgres ]]; then
    pg_psql -c "CREATE DATABASE \"$db\"" >/dev/null || return 1
  fi
  export PGDATABASE=$db
  # Watchdog: if the test shell dies without running its traps (SIGKILL, e.g. a CTest timeout),
  # stop this cluster anyway. It exits as soon as the cluster dir is gone.
  (
    trap '' INT TERM PIPE
    while kill -0 "$$" 2>/dev/null && [[ -d "$dir" ]]; do sleep 1; done
    pg_stop_dir "$dir"
  ) </dev/null >/dev/null 2>&1 &
  disown $! 2>/dev/null || true
  return 0
}

# Stops the cluster in DIR (fast shutdown, then immediate, then kill) and removes DIR.
pg_stop_dir() {
  local dir=$1
  [[ -d "$dir" ]] || return 0
  pgsrv_stop "$dir"
  rm -rf "$dir"
}

pg_stop() {
  [[ -n "${PG_DIR:-}" ]] || return 0
  pg_stop_dir "$PG_DIR"
  local keep=() d
  for d in "${PG_STARTED_DIRS[@]}"; do [[ "$d" != "$PG_DIR" ]] && keep+=("$d"); done
  PG_STARTED_DIRS=("${keep[@]}")
  PG_DIR=
}

pg_cleanup_all() {
  local d
  [[ ${#PG_STARTED_DIRS[@]} -gt 0 ]] || return 0
  for d in "${PG_STARTED_DIRS[@]}"; do pg_stop_dir "$d"; done
  PG_STARTED_DIRS=()
  PG_DIR=
}

# pg_start_pair SRC_DB DST_DB: two servers, a sink (DST_DB) and then a source (SRC_DB), so that
# PGPORT and the other pg_start exports point at the source (pg_psql, wait_slot_active, the
# failure log tail). Sets SRC_PORT, SRC_DSN, DST_PORT, DST_DSN, DST_LOG and defines dst_psql.
pg_start_pair() {
  local src_db=$1 dst_db=$2
  pg_start "$dst_db"
  DST_PORT=$PGPORT
  DST_LOG=$PG_LOG
  DST_DB=$dst_db
  pg_start "$src_db"
  SRC_PORT=$PGPORT
  SRC_DSN="host=127.0.0.1 port=$SRC_PORT dbname=$src_db user=postgres"
  DST_DSN="host=127.0.0.1 port=$DST_PORT dbname=$dst_db user=postgres"
}
dst_psql() { PGPORT=$DST_PORT PGDATABASE=$DST_DB pg_psql "$@"; }

# pg_wait_equal LABEL TIMEOUT_S OD_COMPARE_PG_ARGS...: poll od_compare_pg (SRC_DSN against DST_DSN)
# every second until the target equals the source; fail naming LABEL, with its report, after TIMEOUT_S.
pg_wait_equal() {
  local label=$1 timeout=$2 deadline out
  shift 2
  local cmp=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
  deadline=$(($(date +%s) + timeout))
  until out=$("$cmp" --source "$SRC_DSN" --target "$DST_DSN" "$@" 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "$label: target not equal to the source after ${timeout} s"; }
    sleep 1
  done
  log "$label: target equal to the source"
}

pg_dsn() {
  echo "host=127.0.0.1 port=$PGPORT dbname=${1:-$PGDATABASE} user=postgres"
}

pg_psql() {
  psql -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# pg_poll_true SQL [PSQL ARGS...]: prints t once the boolean SQL is true, polled inside one server
# session every 20 ms for up to 2 s (f after that; nothing, and a failed exit, on an error). A psql
# call costs ~60 ms of CPU on the 2-core CI machine (~30 the client, ~30 the server's new backend: page
# faults after fork); a poll inside the session next to nothing. Each of the polls reads a new
# snapshot (a DO block is volatile).
pg_poll_true() {
  local sql=$1
  shift
  pg_psql "$@" -c "DO \$odpoll\$ BEGIN FOR i IN 1..100 LOOP EXIT WHEN ($sql); PERFORM pg_sleep(0.02); END LOOP; END \$odpoll\$" \
    -c "SELECT ($sql)"
}

pg_hba_prepend() {
  local hba=$PG_DATA/pg_hba.conf
  { echo "$1"; cat "$hba"; } >"$hba.new"
  cat "$hba.new" >"$hba" && rm -f "$hba.new"
  pg_psql -d postgres -c "SELECT pg_reload_conf()" >/dev/null
}
