# bench/lib_pg.sh — helpers for benchmarks that run several throwaway PostgreSQL servers at once
# (source it after bench/lib.sh; don't run it). lib.sh keeps one server in OD_PG_PORT/OD_PG_DIR;
# these helpers keep any number of them by name.
#
# Servers:  pgb_start NAME DIR [conf lines...]   start one (od_pg_start), remember it as NAME
#           pgb_stop_all                          stop every started server (idempotent; for traps)
#           pgb_psql NAME DB [psql args...]       od_psql on that server
#           pgb_dsn NAME DB                       its libpq connection string
# Waiting:  pgb_wait_sql NAME DB EXPR TIMEOUT [PID]
#              polls the SQL boolean EXPR inside the server every 10 ms (a DO loop that commits
#              each round, so it holds no snapshot back); prints the server's clock (epoch seconds)
#              at the first round EXPR was true. A missing table counts as false. Returns 1 on
#              timeout, 2 when PID (a process we started) exits first.
# Process:  pgb_cpu_seconds PID   user + system CPU seconds of a running process
#           pgb_server_cpu NAME   CPU seconds used so far by all processes of a started server
#           pgb_hwm_mib PID       its peak RSS (VmHWM) in MiB

declare -gA PGB_PORT=() PGB_DIR=()
PGB_NAMES=()

pgb_start() {
  local name=$1 dir=$2; shift 2
  od_pg_start "$dir" "$@"
  PGB_PORT[$name]=$OD_PG_PORT
  PGB_DIR[$name]=$OD_PG_DIR
  PGB_NAMES+=("$name")
}

pgb_stop_all() {
  local n keep=${OD_PG_DIR:-}
  for n in "${PGB_NAMES[@]}"; do
    OD_PG_DIR=${PGB_DIR[$n]}
    od_pg_stop
  done
  # a server whose od_pg_start failed half-way is not in PGB_NAMES yet
  OD_PG_DIR=$keep
  od_pg_stop
}

pgb_dsn() { echo "host=127.0.0.1 port=${PGB_PORT[$1]} dbname=$2 user=postgres"; }

pgb_psql() {
  local name=$1; shift
  OD_PG_PORT=${PGB_PORT[$name]} od_psql "$@"
}

pgb_wait_sql() {
  local name=$1 db=$2 expr=$3 timeout=$4 pid=${5:-} errf wp rc
  errf=$(mktemp "${TMPDIR:-/tmp}/pgb_wait.XXXXXX")
  pgb_psql "$name" "$db" -c "DO \$pgbw\$
DECLARE ok bool; t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    BEGIN
      EXECUTE 'SELECT coalesce((' || \$pgbe\$$expr\$pgbe\$ || '), false)' INTO ok;
    EXCEPTION WHEN undefined_table OR undefined_object THEN ok := false;
    END;
    EXIT WHEN ok;
    IF clock_timestamp() - t0 > interval '$timeout seconds' THEN RAISE EXCEPTION 'pgb_wait_sql: timeout'; END IF;
    COMMIT;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE NOTICE 'pgb_reached %', extract(epoch FROM clock_timestamp());
END \$pgbw\$" >/dev/null 2>"$errf" &
  wp=$!
  while od_alive "$wp"; do
    if [[ -n $pid ]] && ! od_alive "$pid"; then
      kill "$wp" 2>/dev/null || true
      wait "$wp" 2>/dev/null || true
      rm -f "$errf"
      return 2
    fi
    sleep 0.05
  done
  wait "$wp" && rc=0 || rc=$?
  if (( rc != 0 )); then
    grep -v pgb_reached "$errf" >&2 || true
    rm -f "$errf"
    return 1
  fi
  sed -n 's/.*pgb_reached \([0-9.]*\).*/\1/p' "$errf"
  rm -f "$errf"
}

pgb_cpu_seconds() { od_cpu_seconds "$1"; }

pgb_hwm_mib() {
  awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# pgb_server_cpu NAME: CPU seconds (user + system) used so far by every process of that server:
# the postmaster, its live children, and its exited children (the postmaster's cutime/cstime).
pgb_server_cpu() {
  local pid kids
  pid=$(head -n 1 "${PGB_DIR[$1]}/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  kids=$(pgrep -P "$pid" | sed 's|.*|/proc/&/stat|' | tr '\n' ' ')
  # A child that exits between pgrep and cat is counted in the postmaster's cutime instead; cat's
  # failure on its file must not fail the pipeline (pipefail: the caller's set -e ended the bench).
  # shellcheck disable=SC2086
  { cat "/proc/$pid/stat" $kids 2>/dev/null || true; } | awk -v hz="$(getconf CLK_TCK)" -v pm="$pid" '
    { t += $14 + $15; if ($1 == pm) t += $16 + $17 } END { printf "%.2f", t / hz }'
}
