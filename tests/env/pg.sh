# shellcheck shell=bash
# tests/env/pg.sh — throwaway PostgreSQL clusters for tests (source this file; bash only).
#
#   pg_start [DBNAME]   initdb a cluster in a fresh temp dir, start it on a free 127.0.0.1 port with
#                       wal_level=logical, create DBNAME (default postgres) and export
#                       PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=DBNAME
#                       (also PG_DIR, PG_DATA, PG_LOG, PG_BINDIR)
#   pg_stop             fast shutdown of the last started cluster, remove its dir
#   pg_cleanup_all      stop and remove every cluster this shell started (for EXIT traps;
#                       safe to call more than once)
#   pg_dsn [DBNAME]     print a libpq DSN for the current cluster
#   pg_psql ARGS...     psql -X -At -v ON_ERROR_STOP=1 against the current cluster
#   pg_hba_prepend LINE put an HBA rule before the default (trust) rules and reload
#
# PostgreSQL refuses to run as root: when run as root the server runs as the system user
# odsync-test (created here if missing; scripts/setup.sh creates it too).

PG_TEST_USER=${PG_TEST_USER:-odsync-test}
declare -a PG_STARTED_DIRS=()

# Settings that would make psql/libpq differ from what the server's walsender uses.
unset PGTZ PGDATESTYLE PGOPTIONS PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE PGSSLMODE \
  PGHOSTADDR PGCLIENTENCODING 2>/dev/null || true

pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
      echo "$d"
      return 0
    fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
      echo "$d"
      return 0
    fi
  done
  echo "pg.sh: cannot find PostgreSQL server binaries (initdb, pg_ctl); run scripts/setup.sh" >&2
  return 1
}

# Runs a command as the unprivileged server user when we are root, directly otherwise.
pg_as_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PG_TEST_USER" -- "$@"
  else
    "$@"
  fi
}

pg_ensure_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  id -u "$PG_TEST_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    "$PG_TEST_USER" 2>/dev/null || id -u "$PG_TEST_USER" >/dev/null 2>&1 || {
    echo "pg.sh: cannot create system user $PG_TEST_USER" >&2
    return 1
  }
}

# A loopback TCP port that nothing listens on right now (checked by binding it).
pg_free_port() {
  local port i
  for i in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(LocalAddr => "127.0.0.1",
        LocalPort => $ARGV[0], Proto => "tcp", ReuseAddr => 0, Listen => 1) ? 0 : 1)' "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "pg.sh: no free port found" >&2
  return 1
}

pg_start() {
  local db=${1:-postgres} attempt port dir
  PG_BINDIR=$(pg_bindir) || return 1
  pg_ensure_user || return 1
  dir=$(mktemp -d /tmp/odsync-pg.XXXXXX) || return 1
  PG_STARTED_DIRS+=("$dir")
  chmod 755 "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown "$PG_TEST_USER" "$dir"; fi
  PG_DIR=$dir
  PG_DATA=$dir/data
  PG_LOG=$dir/server.log
  if ! pg_as_user "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 \
      --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    echo "pg.sh: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    return 1
  fi
  # The port is picked by binding; if another process takes it before the server binds,
  # the start fails and we try another port.
  for attempt in 1 2 3 4 5; do
    port=$(pg_free_port) || return 1
    cat >"$PG_DATA/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
fsync = on
synchronous_commit = on
max_connections = 50
shared_buffers = 32MB
timezone = 'UTC'
log_timezone = 'UTC'
datestyle = 'ISO, MDY'
lc_messages = 'C'
logging_collector = off
log_min_messages = warning
EOF
    if [[ $(id -u) -eq 0 ]]; then chown "$PG_TEST_USER" "$PG_DATA/postgresql.auto.conf"; fi
    if pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 2>&1; then
      export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
      if [[ "$db" != postgres ]]; then
        pg_psql -c "CREATE DATABASE \"$db\"" >/dev/null || return 1
      fi
      export PGDATABASE=$db
      # Watchdog: if the test shell dies without running its traps (SIGKILL, e.g. a CTest
      # timeout), stop this cluster anyway. It exits as soon as the cluster dir is gone.
      (
        trap '' INT TERM PIPE
        while kill -0 "$$" 2>/dev/null && [[ -d "$dir" ]]; do sleep 1; done
        pg_stop_dir "$dir"
      ) </dev/null >/dev/null 2>&1 &
      disown $! 2>/dev/null || true
      return 0
    fi
    if ! grep -qiE 'could not (bind|create listen)|address already in use' "$PG_LOG" 2>/dev/null; then
      echo "pg.sh: PostgreSQL failed to start:" >&2
      cat "$PG_LOG" >&2
      return 1
    fi
  done
  echo "pg.sh: PostgreSQL failed to start after 5 port attempts:" >&2
  cat "$PG_LOG" >&2
  return 1
}

# Stops the cluster in DIR (fast shutdown, then immediate, then kill) and removes DIR.
pg_stop_dir() {
  local dir=$1 pid
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    pg_as_user "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      pg_as_user "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
      [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}

pg_stop() {
  [[ -n "${PG_DIR:-}" ]] || return 0
  PG_BINDIR=${PG_BINDIR:-$(pg_bindir)}
  pg_stop_dir "$PG_DIR"
  local keep=() d
  for d in "${PG_STARTED_DIRS[@]}"; do [[ "$d" != "$PG_DIR" ]] && keep+=("$d"); done
  PG_STARTED_DIRS=("${keep[@]}")
  PG_DIR=
}

pg_cleanup_all() {
  local d
  [[ ${#PG_STARTED_DIRS[@]} -gt 0 ]] || return 0
  PG_BINDIR=${PG_BINDIR:-$(pg_bindir)}
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

pg_dsn() {
  echo "host=127.0.0.1 port=$PGPORT dbname=${1:-$PGDATABASE} user=postgres"
}

pg_psql() {
  psql -X -q -At -v ON_ERROR_STOP=1 "$@"
}

pg_hba_prepend() {
  local hba=$PG_DATA/pg_hba.conf
  { echo "$1"; cat "$hba"; } >"$hba.new"
  cat "$hba.new" >"$hba" && rm -f "$hba.new"
  pg_psql -d postgres -c "SELECT pg_reload_conf()" >/dev/null
}
