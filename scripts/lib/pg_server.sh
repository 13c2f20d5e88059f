# shellcheck shell=bash
# scripts/lib/pg_server.sh — the one way odsync's tests, benchmarks and demo start a throwaway
# PostgreSQL server (source this file; bash only). tests/env/pg.sh and bench/lib.sh build on it.
#
#   pgsrv_bindir                 the server binaries ($PG_BIN, else pg_config, else the newest
#                                /usr/lib/postgresql/N/bin)
#   pgsrv_start DIR LOCALE [conf lines...]   (PGSRV_TEMPLATE=1: from a copy of a template, pgsrv_initdb)
#                                initdb into DIR/data (superuser postgres, trust auth), listen on
#                                127.0.0.1 at a free port with wal_level=logical, sockets in DIR;
#                                extra lines go to postgresql.auto.conf. Sets PGSRV_PORT.
#                                The mesh's output plugin odsync_pgoutput (src/pgplugin), when built,
#                                is copied to DIR/lib and dynamic_library_path includes it: from
#                                $ODSYNC_PGPLUGIN (a .so path; "none": not offered), else
#                                $ODSYNC_BUILD_DIR/pgplugin/odsync_pgoutput.so, else the pgplugin
#                                folder beside $ODSYNC_BIN; where the server has the setting
#                                output_plugin_libraries, odsync_pgoutput is added to its list.
#                                Nothing is installed system-wide.
#   pgsrv_stop DIR               fast shutdown, then immediate, then SIGKILL (idempotent)
#   pgsrv_as_user CMD...         run CMD as the unprivileged server user when we are root
#   pgsrv_free_port              a loopback TCP port nothing listens on right now
#
# PostgreSQL refuses to run as root: as root the server runs as the system user $PGSRV_USER
# (default odsync-test; created here if missing; scripts/setup.sh creates it too).

PGSRV_USER=${PGSRV_USER:-${PG_TEST_USER:-${OD_PG_OS_USER:-odsync-test}}}
PGSRV_PORT=

pgsrv_bindir() {
  local d
  if [[ -n ${PG_BIN:-} && -x ${PG_BIN}/initdb ]]; then echo "$PG_BIN"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
  done
  echo "pg_server.sh: cannot find PostgreSQL server binaries (initdb, pg_ctl); run scripts/setup.sh" >&2
  return 1
}

pgsrv_as_user() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u "$PGSRV_USER" -- "$@"; else "$@"; fi
}

pgsrv_ensure_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  id -u "$PGSRV_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PGSRV_USER" 2>/dev/null ||
    id -u "$PGSRV_USER" >/dev/null 2>&1 || { echo "pg_server.sh: cannot create system user $PGSRV_USER" >&2; return 1; }
}

# Checked by binding the port (perl is in Debian's base system).
pgsrv_free_port() {
  local port i
  for i in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(LocalAddr => "127.0.0.1",
        LocalPort => $ARGV[0], Proto => "tcp", ReuseAddr => 0, Listen => 1) ? 0 : 1)' "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "pg_server.sh: no free port found" >&2
  return 1
}

# initdb into DIR/data. With PGSRV_TEMPLATE=1 (tests/env/pg.sh sets it) initdb runs once per server
# version, locale and server user, into a template under ${TMPDIR:-/tmp} (made under a lock, marked
# complete by a file `ready`), and each server starts from a copy of it: on the 2-core CI machine an
# initdb costs ~0.8 s of CPU and a copy ~0.25, and the test suite starts ~250 servers.
# pgsrv_run_initdb BIN DATADIR LOCALE LOG: one initdb as the server user (trust auth, UTF8, no sync)
pgsrv_run_initdb() {
  pgsrv_as_user "$1/initdb" -D "$2" -U postgres --auth=trust -E UTF8 --locale="$3" --no-sync >"$4" 2>&1
}

pgsrv_initdb() {
  local dir=$1 locale=$2 bin=$3 tpl
  if [[ ${PGSRV_TEMPLATE:-} == 1 ]]; then
    tpl=${TMPDIR:-/tmp}/odsync-pg-template-$(id -u)-$PGSRV_USER-$locale-$("$bin/postgres" --version | tr -c 'A-Za-z0-9.\n' '_')
    if [[ ! -f $tpl/ready ]]; then
      (
        flock 9
        [[ -f $tpl/ready ]] && exit 0
        rm -rf "$tpl" && mkdir -p "$tpl" && chmod 755 "$tpl" || exit 1
        if [[ $(id -u) -eq 0 ]]; then chown "$PGSRV_USER" "$tpl" || exit 1; fi
        pgsrv_run_initdb "$bin" "$tpl/data" "$locale" "$tpl/initdb.log" || exit 1
        touch "$tpl/ready"
      ) 9>"$tpl.lock" || true # a template that could not be made: initdb below says why
    fi
    if [[ -f $tpl/ready ]] && cp -a "$tpl/data" "$dir/data"; then return 0; fi
    rm -rf "$dir/data"
  fi
  if ! pgsrv_run_initdb "$bin" "$dir/data" "$locale" "$dir/initdb.log"; then
    echo "pg_server.sh: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    return 1
  fi
}

pgsrv_start() {
  local dir=$1 locale=$2 bin attempt port line
  shift 2
  bin=$(pgsrv_bindir) || return 1
  pgsrv_ensure_user || return 1
  mkdir -p "$dir"
  chmod 755 "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown "$PGSRV_USER" "$dir"
    chmod go+x "$(dirname "$dir")" # the server user must reach DIR (mktemp -d parents are 0700)
  fi
  pgsrv_initdb "$dir" "$locale" "$bin" || return 1
  local plugin=${ODSYNC_PGPLUGIN:-}
  if [[ -z $plugin && -n ${ODSYNC_BUILD_DIR:-} ]]; then plugin=$ODSYNC_BUILD_DIR/pgplugin/odsync_pgoutput.so; fi
  if [[ -z $plugin && -n ${ODSYNC_BIN:-} ]]; then plugin=$(dirname "$ODSYNC_BIN")/pgplugin/odsync_pgoutput.so; fi
  if [[ $plugin != none && -f $plugin ]]; then
    mkdir -p "$dir/lib" && cp "$plugin" "$dir/lib/" && chmod 755 "$dir/lib" && chmod 644 "$dir/lib/odsync_pgoutput.so" || return 1
    set -- "$@" "dynamic_library_path = '\$libdir:$dir/lib'"
    # Servers with output_plugin_libraries (Debian's 15.20 has it) load only the output plugins
    # listed there: keep the server's own list and add the module.
    local allowed
    allowed=$("$bin/postgres" --describe-config 2>/dev/null | awk -F'\t' '$1 == "output_plugin_libraries" { print $5 }')
    if [[ -n $allowed ]]; then set -- "$@" "output_plugin_libraries = '$allowed, odsync_pgoutput'"; fi
  fi
  # The port is picked by binding; if another process takes it before the server binds, the start
  # fails and another port is tried.
  for attempt in 1 2 3 4 5; do
    port=$(pgsrv_free_port) || return 1
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir'"
      echo "wal_level = logical"
      echo "logging_collector = off"
      echo "log_min_messages = warning"
      for line in "$@"; do echo "$line"; done
    } >"$dir/data/postgresql.auto.conf"
    if [[ $(id -u) -eq 0 ]]; then chown "$PGSRV_USER" "$dir/data/postgresql.auto.conf"; fi
    if pgsrv_as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
      PGSRV_PORT=$port
      return 0
    fi
    if ! grep -qiE 'could not (bind|create listen)|address already in use' "$dir/server.log" 2>/dev/null; then
      echo "pg_server.sh: PostgreSQL failed to start:" >&2
      tail -n 30 "$dir/server.log" >&2
      return 1
    fi
  done
  echo "pg_server.sh: PostgreSQL failed to start after 5 port attempts:" >&2
  tail -n 30 "$dir/server.log" >&2
  return 1
}

pgsrv_stop() {
  local dir=$1 bin pid
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  bin=$(pgsrv_bindir) || return 0
  pgsrv_as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
    pgsrv_as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
  fi
}
