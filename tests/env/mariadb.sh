# shellcheck shell=bash
# tests/env/mariadb.sh — throwaway MariaDB servers for tests (source after tests/env/common.sh and
# tests/env/pg.sh, which provides the unprivileged user and the free-port helper; bash only).
#
#   my_start [DBNAME]   mariadb-install-db a data dir in a fresh temp dir, start mariadbd on a free
#                       127.0.0.1 port with the binlog on (log_bin, binlog_format=ROW,
#                       binlog_row_image=FULL, server_id=1, GTIDs in strict mode), create DBNAME
#                       (default odsync) and the replication user odsync/odsync-pw, and export
#                       MY_PORT MY_DB MY_DIR MY_DATA MY_LOG MY_SOCK
#   my_stop             shut down the last started server and remove its dir
#   my_cleanup_all      stop and remove every server this shell started (for EXIT traps)
#   my_sql ARGS...      the mariadb client as root over the socket, batch mode, no column names
#   my_dsn              print "host=127.0.0.1 port=... user=odsync password=odsync-pw dbname=..."
#
# mariadbd does not run as root: when run as root the server runs as the system user
# odsync-test (the one tests/env/pg.sh and scripts/setup.sh create).

declare -a MY_STARTED_DIRS=()
MY_USER=odsync
MY_PASSWORD=odsync-pw

my_bin() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    if [[ -x /usr/sbin/$name ]]; then echo "/usr/sbin/$name"; return 0; fi
  done
  echo "mariadb.sh: cannot find $* (Debian package mariadb-server; run scripts/setup.sh)" >&2
  return 1
}

my_start() {
  local db=${1:-odsync} dir port attempt mariadbd install_db
  mariadbd=$(my_bin mariadbd) || return 1
  install_db=$(my_bin mariadb-install-db) || return 1
  my_bin mariadb >/dev/null || return 1
  pg_ensure_user || return 1
  dir=$(mktemp -d /tmp/odsync-my.XXXXXX) || return 1
  MY_STARTED_DIRS+=("$dir")
  chmod 755 "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown "$PG_TEST_USER" "$dir"; fi
  MY_DIR=$dir
  MY_DATA=$dir/data
  MY_LOG=$dir/server.log
  MY_SOCK=$dir/mysqld.sock
  # Each server's temporary files in its own dir: servers started at the same moment (tests run in
  # parallel) name their temporary tables alike, and collide in a shared /tmp.
  pg_as_user mkdir -p "$dir/tmp"
  if ! pg_as_user "$install_db" --no-defaults --datadir="$MY_DATA" --tmpdir="$dir/tmp" \
      --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >"$dir/install.log" 2>&1; then
    echo "mariadb.sh: mariadb-install-db failed:" >&2
    cat "$dir/install.log" >&2
    return 1
  fi
  for attempt in 1 2 3 4 5; do
    port=$(pg_free_port) || return 1
    cat >"$dir/my.cnf" <<EOF
[mariadbd]
datadir=$MY_DATA
socket=$MY_SOCK
pid-file=$dir/mariadbd.pid
tmpdir=$dir/tmp
port=$port
bind-address=127.0.0.1
skip-name-resolve
log-error=$MY_LOG
log-bin=$MY_DATA/odsync-bin
binlog_format=ROW
binlog_row_image=FULL
server_id=1
gtid_domain_id=0
gtid_strict_mode=1
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
default-time-zone=+00:00
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=1
sync_binlog=1
max_connections=50
performance_schema=OFF
EOF
    if [[ $(id -u) -eq 0 ]]; then chown "$PG_TEST_USER" "$dir/my.cnf"; fi
    : >"$MY_LOG"
    if [[ $(id -u) -eq 0 ]]; then chown "$PG_TEST_USER" "$MY_LOG"; fi
    pg_as_user "$mariadbd" --defaults-file="$dir/my.cnf" </dev/null >/dev/null 2>&1 &
    MY_PID=$!
    if wait_for "mariadb --no-defaults -S '$MY_SOCK' -uroot -e 'SELECT 1'" 60; then
      MY_PORT=$port
      MY_DB=
      export MY_PORT MY_DB MY_DIR MY_DATA MY_LOG MY_SOCK
      my_sql -e "CREATE DATABASE \`$db\`;
        CREATE USER '$MY_USER'@'%' IDENTIFIED BY '$MY_PASSWORD';
        GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO '$MY_USER'@'%';" ||
        return 1
      MY_DB=$db
      # Watchdog: stop this server if the test shell dies without running its traps.
      (
        trap '' INT TERM PIPE
        while kill -0 "$$" 2>/dev/null && [[ -d "$dir" ]]; do sleep 1; done
        my_stop_dir "$dir"
      ) </dev/null >/dev/null 2>&1 &
      disown $! 2>/dev/null || true
      return 0
    fi
    kill -KILL "$MY_PID" 2>/dev/null
    wait "$MY_PID" 2>/dev/null
    if ! grep -qiE 'bind|address already in use' "$MY_LOG" 2>/dev/null; then
      echo "mariadb.sh: mariadbd failed to start:" >&2
      tail -n 30 "$MY_LOG" >&2
      return 1
    fi
  done
  echo "mariadb.sh: mariadbd failed to start after 5 port attempts:" >&2
  tail -n 30 "$MY_LOG" >&2
  return 1
}

# Shuts the server in DIR down (SHUTDOWN over the socket, then SIGKILL) and removes DIR.
my_stop_dir() {
  local dir=$1 pid i
  [[ -d "$dir" ]] || return 0
  pid=$(cat "$dir/mariadbd.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    mariadb --no-defaults -S "$dir/mysqld.sock" -uroot --connect-timeout=5 -e SHUTDOWN >/dev/null 2>&1 || true
    for i in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

my_stop() {
  [[ -n "${MY_DIR:-}" ]] || return 0
  my_stop_dir "$MY_DIR"
  local keep=() d
  for d in "${MY_STARTED_DIRS[@]}"; do [[ "$d" != "$MY_DIR" ]] && keep+=("$d"); done
  MY_STARTED_DIRS=("${keep[@]}")
  MY_DIR=
}

my_cleanup_all() {
  local d
  [[ ${#MY_STARTED_DIRS[@]} -gt 0 ]] || return 0
  for d in "${MY_STARTED_DIRS[@]}"; do my_stop_dir "$d"; done
  MY_STARTED_DIRS=()
  MY_DIR=
}

my_sql() {
  mariadb --no-defaults -S "$MY_SOCK" -uroot --batch --skip-column-names --default-character-set=utf8mb4 \
    ${MY_DB:+-D "$MY_DB"} "$@"
}

my_dsn() {
  echo "host=127.0.0.1 port=$MY_PORT user=$MY_USER password=$MY_PASSWORD dbname=$MY_DB"
}
