# bench/lib.sh — helpers shared by scripts/demo.sh and bench/*.sh (source it; don't run it).
#
# Throwaway PostgreSQL:  od_pg_start DIR [postgresql.conf lines...]   sets OD_PG_PORT, OD_PG_DIR
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

# The PostgreSQL server binaries: $PG_BIN, else the newest /usr/lib/postgresql/N/bin, else PATH.
od_pg_bindir() {
  if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
  local d best=
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb ]] && best=$d
  done
  if [[ -z $best ]] && command -v pg_config >/dev/null; then best=$(pg_config --bindir); fi
  [[ -n $best && -x $best/initdb ]] || od_die "PostgreSQL server binaries not found (set PG_BIN=/usr/lib/postgresql/15/bin)"
  echo "$best"
}

# Run a server-side command as the unprivileged owner of the data directory.
od_as_pg() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u "$OD_PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

od_ensure_pg_user() {
  [[ $EUID -eq 0 ]] || return 0
  id "$OD_PG_OS_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --shell /usr/sbin/nologin "$OD_PG_OS_USER" \
    || od_die "could not create system user $OD_PG_OS_USER (needed because initdb refuses root)"
}

# A loopback TCP port nobody listens on (small race with other starters: od_pg_start retries).
od_free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  od_die "no free loopback port found"
}

od_now() { echo "$EPOCHREALTIME"; }

# "16/B374D848" -> decimal integer (hi << 32) + lo
od_lsn_to_int() {
  local hi=${1%%/*} lo=${1##*/}
  echo $(( (16#$hi << 32) + 16#$lo ))
}

# od_pg_start DIR [conf lines...]: initdb into DIR/data, listen on 127.0.0.1:free port,
# wal_level=logical, trust auth, superuser "postgres"; extra lines are appended to postgresql.conf.
od_pg_start() {
  local dir=$1; shift
  local bin; bin=$(od_pg_bindir)
  od_ensure_pg_user
  mkdir -p "$dir"
  if [[ $EUID -eq 0 ]]; then
    chown "$OD_PG_OS_USER" "$dir"
    # the server user must be able to reach DIR (mktemp -d parents are 0700)
    chmod go+x "$(dirname "$dir")"
  fi
  od_as_pg mkdir -p "$dir/data" "$dir/sock"
  od_as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; od_die "initdb failed"; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir/sock'"
    echo "wal_level = logical"
    echo "max_replication_slots = 16"
    echo "max_wal_senders = 16"
    echo "log_min_messages = warning"
    local line
    for line in "$@"; do echo "$line"; done
  } | od_as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  OD_PG_DIR=$dir
  local try port
  for try in 1 2 3 4 5; do
    port=$(od_free_port)
    if od_as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
         -o "-p $port" start >/dev/null 2>&1; then
      OD_PG_PORT=$port
      return 0
    fi
    # lost the race for the port (or something else): look at the log, retry on a new port
    grep -q "could not bind\|Address already in use" "$dir/server.log" 2>/dev/null || break
  done
  tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
  od_die "PostgreSQL did not start (log: $dir/server.log)"
}

od_pg_stop() {
  [[ -n ${OD_PG_DIR:-} && -f $OD_PG_DIR/data/postmaster.pid ]] || return 0
  local bin; bin=$(od_pg_bindir)
  if ! od_as_pg "$bin/pg_ctl" -D "$OD_PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
    local pid; pid=$(head -n 1 "$OD_PG_DIR/data/postmaster.pid" 2>/dev/null || true)
    [[ -n $pid ]] && kill -QUIT "$pid" 2>/dev/null || true
  fi
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
