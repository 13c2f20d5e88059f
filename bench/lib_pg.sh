# bench/lib_pg.sh — helpers for benchmarks that run several throwaway PostgreSQL servers at once
# (source it after bench/lib.sh; don't run it). lib.sh keeps one server in OD_PG_PORT/OD_PG_DIR;
# these helpers keep any number of them by name.
#
# Servers:  pgb_start NAME DIR [conf lines...]   start one (od_pg_start), remember it as NAME
#           pgb_stop_all                          stop every started server (idempotent; for traps)
#           pgb_psql NAME DB [psql args...]       od_psql on that server
#           pgb_dsn NAME DB                       its libpq connection string
# Pair:     pgb_start_pair TMP   the PostgreSQL → PostgreSQL benches' two servers "src" and "snk" in
#              TMP/src and TMP/snk, tuned for bulk writes (shared_buffers 1 GB, max_wal_size 8 GB,
#              autovacuum off), both synchronous_commit = on, the sink ready for native subscription
#              workers; creates database bench on src and sets SRC_DSN. PGB_ROW_DDL / PGB_ROW_GEN: the
#              row shape of their workloads (columns, and the SELECT list of row g). PGB_PAIR_EXTRA (an
#              array): more settings for both servers.
# Traps:    pgb_bench_traps   EXIT/INT/TERM traps of a bench that keeps its files in TMP and its
#              odsync in ODSYNC_PID: stop odsync, every server, remove TMP (kept with BENCH_KEEP=1)
# Waiting:  pgb_wait_sql NAME DB EXPR TIMEOUT [PID]
#              polls the SQL boolean EXPR inside the server every 10 ms (a DO loop that commits
#              each round, so it holds no snapshot back); prints the server's clock (epoch seconds)
#              at the first round EXPR was true. A missing table counts as false. Returns 1 on
#              timeout, 2 when PID (a process we started) exits first.
# Process:  pgb_cpu_seconds PID   user + system CPU seconds of a running process
#           pgb_server_cpu NAME   CPU seconds used so far by all processes of a started server
#           pgb_hwm_mib PID       its peak RSS (VmHWM) in MiB
# Sessions: pgb_sessions_start FILE NAME...  samples, every 0.5 s until pgb_sessions_stop, the CPU
#              seconds of every session process (client backend, walsender, logical replication
#              worker) of the named servers into FILE; pgb_sessions_sample FILE NAME... takes one
#              sample now (call it last, while the processes still live)
#           pgb_sessions_busiest FILE NAME REGEX   "CPU-seconds kind" of the process of server
#              NAME whose kind ("<backend_type>:<application_name>", spaces as _) matches REGEX
#              and that used the most CPU; "- -" when none did

declare -gA PGB_PORT=() PGB_DIR=()
PGB_NAMES=()
declare -ga PGB_PAIR_EXTRA # set by a bench before pgb_start_pair

pgb_start() {
  local name=$1 dir=$2; shift 2
  od_pg_start "$dir" "$@"
  PGB_PORT[$name]=$OD_PG_PORT
  PGB_DIR[$name]=$OD_PG_DIR
  PGB_NAMES+=("$name")
}

PGB_ROW_DDL="id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2)"
PGB_ROW_GEN="g, (g % 1000003)::int, md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', (g % 10000000) / 100.0"

pgb_start_pair() {
  local tmp=$1
  local tuning=("shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" "autovacuum = off"
                "${PGB_PAIR_EXTRA[@]}")
  pgb_start src "$tmp/src" "${tuning[@]}" "synchronous_commit = on"
  # wal_retrieve_retry_interval: the subscription launcher starts at most one apply worker per
  # interval (default 5 s), which would add up to 5 s to a second native run.
  pgb_start snk "$tmp/snk" "${tuning[@]}" "synchronous_commit = on" \
    "max_logical_replication_workers = 8" "max_worker_processes = 16" "wal_retrieve_retry_interval = 100ms"
  pgb_psql src postgres -c "CREATE DATABASE bench"
  SRC_DSN=$(pgb_dsn src bench)
}

pgb_bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n ${ODSYNC_PID:-} ]]; then od_stop_pid "$ODSYNC_PID" 30; wait "$ODSYNC_PID" 2>/dev/null || true; fi
  pgb_stop_all
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
pgb_bench_traps() {
  trap pgb_bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

pgb_stop_all() {
  local n keep=${OD_PG_DIR:-}
  pgb_sessions_stop
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

# One sample of every session process of the named servers: "server pid kind cpu-seconds" lines.
# A process's CPU is cumulative since it started, so the last sample of a process that started
# with the run is what it spent in the run (one that exits between samples loses at most 0.5 s).
pgb_sessions_sample() {
  local out=$1 n; shift
  for n in "$@"; do
    pgb_psql "$n" postgres -F ' ' -c "SELECT pid, replace(backend_type || ':' || coalesce(nullif(application_name, ''), '-'), ' ', '_')
        FROM pg_stat_activity WHERE pid <> pg_backend_pid()
         AND backend_type IN ('client backend', 'walsender', 'logical replication worker')" 2>/dev/null |
      while read -r pid kind; do
        awk -v n="$n" -v pid="$pid" -v kind="$kind" -v hz="$(getconf CLK_TCK)" \
          '{ printf "%s %s %s %.2f\n", n, pid, kind, ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true
      done
  done >>"$out"
}

pgb_sessions_start() {
  local out=$1; shift
  : >"$out"
  ( trap 'exit 0' TERM; while :; do pgb_sessions_sample "$out" "$@"; sleep 0.5; done ) &
  PGB_SESSIONS_PID=$!
}

pgb_sessions_stop() {
  [[ -n ${PGB_SESSIONS_PID:-} ]] || return 0
  kill -TERM "$PGB_SESSIONS_PID" 2>/dev/null || true
  wait "$PGB_SESSIONS_PID" 2>/dev/null || true
  PGB_SESSIONS_PID=
}

pgb_sessions_busiest() {
  awk -v n="$2" -v re="$3" '$1 == n && $3 ~ re { if ($4 > cpu[$2]) cpu[$2] = $4; kind[$2] = $3 }
    END { best = ""; for (p in cpu) if (best == "" || cpu[p] > cpu[best]) best = p
          if (best == "") print "- -"; else printf "%.2f %s\n", cpu[best], kind[best] }' "$1"
}
