# shellcheck shell=bash
# tests/env/clickhouse.sh — a throwaway clickhouse-server for tests (source after common.sh and
# pg.sh, which provides pg_free_port; bash only).
#
#   ch_start            write a config into a fresh temp dir, start clickhouse-server on free
#                       127.0.0.1 ports (HTTP and native), wait until it answers; sets CH_DIR,
#                       CH_HTTP_PORT, CH_TCP_PORT, CH_LOG, CH_PID. Two users: `default` (no
#                       password, for the test's own queries) and `odsync` with password
#                       $CH_PASSWORD (what odsync is configured with, through ${env:CH_PASSWORD}).
#   ch_stop_server      stop the server (SIGTERM, then SIGKILL after 5 s: 18.16 can take long to
#                       shut down, and may crash doing so); keeps its data
#   ch_restart_server   start the stopped server again on the same ports and data
#   ch_cleanup_all      stop the server and remove CH_DIR (for EXIT traps; safe to call twice)
#   ch_query SQL        run SQL through clickhouse-client as `default` (TSV output)
#
# CH_EXTRA_CONFIG (XML put into config.xml, e.g. <part_log>) and CH_EXTRA_PROFILE (settings put
# into the default profile, e.g. <log_queries>1</log_queries>) are for benchmarks that profile the
# server; tests leave them empty.
#
# Never touches: the Debian package's own server (/etc/clickhouse-server, /var/lib/clickhouse).

CH_DIR=
CH_PID=
CH_PASSWORD=${CH_PASSWORD:-ch-secret-$RANDOM$RANDOM}
export CH_PASSWORD

ch_server_bin() {
  local b
  for b in /usr/sbin/clickhouse-server /usr/bin/clickhouse-server /usr/bin/clickhouse; do
    if [[ -x "$b" ]]; then echo "$b"; return 0; fi
  done
  echo "clickhouse.sh: clickhouse-server not found; run scripts/setup.sh" >&2
  return 1
}

ch_write_config() {
  cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$CH_DIR/server.log</log><errorlog>$CH_DIR/error.log</errorlog><console>0</console></logger>
  <http_port>$CH_HTTP_PORT</http_port>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>64</max_connections>
  <keep_alive_timeout>30</keep_alive_timeout>
  <max_concurrent_queries>32</max_concurrent_queries>
  <uncompressed_cache_size>8388608</uncompressed_cache_size>
  <mark_cache_size>67108864</mark_cache_size>
  <path>$CH_DIR/data/</path>
  <tmp_path>$CH_DIR/tmp/</tmp_path>
  <user_files_path>$CH_DIR/user_files/</user_files_path>
  <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
  <users_config>$CH_DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
  ${CH_EXTRA_CONFIG:-}
</yandex>
XML
  cat >"$CH_DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage>${CH_EXTRA_PROFILE:-}</default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <odsync><password>$CH_PASSWORD</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></odsync>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

ch_query() {
  clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" --user default -q "$1"
}

# Starts the server of $CH_DIR and waits (60 s at most) until it answers HTTP.
ch_launch() {
  local bin t0
  bin=$(ch_server_bin) || return 1
  t0=$(date +%s.%N)
  "$bin" --config-file="$CH_DIR/config.xml" >>"$CH_DIR/stdout.log" 2>&1 </dev/null &
  CH_PID=$!
  echo "$CH_PID" >"$CH_DIR/server.pid"
  local i
  for i in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$CH_HTTP_PORT/ping" >/dev/null 2>&1; then
      CH_START_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
      return 0
    fi
    if ! kill -0 "$CH_PID" 2>/dev/null; then
      echo "clickhouse.sh: clickhouse-server exited during start:" >&2
      tail -n 30 "$CH_DIR/error.log" "$CH_DIR/stdout.log" >&2 2>/dev/null
      CH_PID=
      return 1
    fi
    sleep 0.2
  done
  echo "clickhouse.sh: clickhouse-server did not answer on port $CH_HTTP_PORT within 60 s" >&2
  tail -n 30 "$CH_DIR/error.log" >&2 2>/dev/null
  return 1
}

ch_start() {
  CH_DIR=$(mktemp -d /tmp/odsync-ch.XXXXXX) || return 1
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas"
  CH_LOG=$CH_DIR/error.log
  local attempt
  for attempt in 1 2 3 4 5; do
    CH_HTTP_PORT=$(pg_free_port) || return 1
    CH_TCP_PORT=$(pg_free_port) || return 1
    [[ "$CH_HTTP_PORT" != "$CH_TCP_PORT" ]] || continue
    ch_write_config
    if ch_launch; then
      # Watchdog: if the test shell dies without its traps (SIGKILL), stop this server anyway.
      local dir=$CH_DIR
      (
        set +e
        trap '' INT TERM PIPE
        while kill -0 "$$" 2>/dev/null && [[ -d "$dir" ]]; do sleep 1; done
        [[ -f "$dir/server.pid" ]] && kill -KILL "$(cat "$dir/server.pid")" 2>/dev/null
        rm -rf "$dir"
      ) </dev/null >/dev/null 2>&1 &
      disown $! 2>/dev/null || true
      return 0
    fi
    grep -qiE 'address already in use|bind' "$CH_DIR/error.log" 2>/dev/null || return 1
  done
  echo "clickhouse.sh: clickhouse-server failed to start after 5 port attempts" >&2
  return 1
}

ch_stop_server() {
  [[ -n "$CH_PID" ]] || return 0
  kill -TERM "$CH_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$CH_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$CH_PID" 2>/dev/null || true
  wait "$CH_PID" 2>/dev/null || true
  CH_PID=
}

ch_restart_server() {
  [[ -n "$CH_DIR" ]] || { echo "clickhouse.sh: no server to restart" >&2; return 1; }
  ch_launch
}

ch_cleanup_all() {
  [[ -n "$CH_DIR" ]] || return 0
  if [[ ${TEST_RC:-0} -ne 0 && -f "$CH_DIR/error.log" ]]; then
    echo "---- last 20 lines of the ClickHouse error log ----" >&2
    tail -n 20 "$CH_DIR/error.log" >&2
  fi
  ch_stop_server
  rm -rf "$CH_DIR"
  CH_DIR=
}

# ch_compare_table NAME PG_SELECT CH_SELECT: both queries (each ordered the same way) must give
# the same TabSeparated text (psql COPY text format and ClickHouse TabSeparated escape alike, but
# ClickHouse also escapes a single quote as \').
# Prints a diff and returns 1 when they differ.
ch_compare_table() {
  local name=$1 pgq=$2 chq=$3
  pg_psql -c "COPY ($pgq) TO STDOUT" >"$TEST_TMP/cmp.$name.pg" || return 1
  ch_query "$chq FORMAT TabSeparated" | sed "s/\\\\'/'/g" >"$TEST_TMP/cmp.$name.ch" || return 1
  if ! cmp -s "$TEST_TMP/cmp.$name.pg" "$TEST_TMP/cmp.$name.ch"; then
    echo "table $name differs ($(wc -l <"$TEST_TMP/cmp.$name.pg") source rows, $(wc -l <"$TEST_TMP/cmp.$name.ch") sink rows):"
    diff "$TEST_TMP/cmp.$name.pg" "$TEST_TMP/cmp.$name.ch" | head -n 10
    return 1
  fi
  return 0
}
