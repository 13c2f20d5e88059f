# shellcheck shell=bash
# tests/env/redis.sh — a throwaway redis-server for tests (source after common.sh and pg.sh,
# which provides pg_free_port; bash only).
#
#   redis_start           start redis-server in a fresh temp dir on a free 127.0.0.1 port with
#                         AOF (appendfsync always) and an ACL user `odsync` whose password is
#                         $REDIS_PASSWORD (odsync gets it through ${env:REDIS_PASSWORD}); the
#                         default user stays open for the test's own commands. Sets REDIS_DIR,
#                         REDIS_PORT, REDIS_PID, REDIS_LOG. Lines in $REDIS_EXTRA_CONF are
#                         added to its redis.conf (e.g. tls-port and certificates).
#   redis_stop_server     shut the server down (SHUTDOWN, then SIGKILL); keeps its data
#   redis_restart_server  start it again on the same port and data
#   redis_cleanup_all     stop it and remove REDIS_DIR (for EXIT traps; safe to call twice)
#   rcli ARGS...          redis-cli against it (raw output)
#
# Never touches: the Debian package's own server.

REDIS_DIR=
REDIS_PID=
REDIS_PASSWORD=${REDIS_PASSWORD:-rd-secret-$RANDOM$RANDOM}
export REDIS_PASSWORD

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --raw "$@"; }

redis_launch() {
  command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found; run scripts/setup.sh" >&2; return 1; }
  redis-server "$REDIS_DIR/redis.conf" >>"$REDIS_DIR/stdout.log" 2>&1 </dev/null &
  REDIS_PID=$!
  echo "$REDIS_PID" >"$REDIS_DIR/server.pid"
  local i
  for i in $(seq 1 150); do
    if [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then return 0; fi
    if ! kill -0 "$REDIS_PID" 2>/dev/null; then
      echo "redis.sh: redis-server exited during start:" >&2
      tail -n 20 "$REDIS_LOG" >&2
      REDIS_PID=
      return 1
    fi
    sleep 0.2
  done
  echo "redis.sh: redis-server did not answer on port $REDIS_PORT within 30 s" >&2
  return 1
}

redis_start() {
  REDIS_DIR=$(mktemp -d /tmp/odsync-redis.XXXXXX) || return 1
  REDIS_LOG=$REDIS_DIR/server.log
  local attempt
  for attempt in 1 2 3 4 5; do
    REDIS_PORT=$(pg_free_port) || return 1
    cat >"$REDIS_DIR/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
dir $REDIS_DIR
logfile $REDIS_LOG
daemonize no
save ""
appendonly yes
appendfsync always
user default on nopass ~* &* +@all
user odsync on >$REDIS_PASSWORD ~* &* +@all
${REDIS_EXTRA_CONF:-}
CONF
    if redis_launch; then
      local dir=$REDIS_DIR
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
    grep -qiE 'address already in use' "$REDIS_LOG" 2>/dev/null || return 1
  done
  echo "redis.sh: redis-server failed to start after 5 port attempts" >&2
  return 1
}

redis_stop_server() {
  [[ -n "$REDIS_PID" ]] || return 0
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

redis_restart_server() {
  [[ -n "$REDIS_DIR" ]] || { echo "redis.sh: no server to restart" >&2; return 1; }
  redis_launch
}

redis_cleanup_all() {
  [[ -n "$REDIS_DIR" ]] || return 0
  if [[ ${TEST_RC:-0} -ne 0 && -f "$REDIS_LOG" ]]; then
    echo "---- last 20 lines of the Redis log ----" >&2
    tail -n 20 "$REDIS_LOG" >&2
  fi
  redis_stop_server
  rm -rf "$REDIS_DIR"
  REDIS_DIR=
}

# redis_dump_hashes PATTERN FIELD...: every hash whose key matches PATTERN as
# "key<TAB>field1<TAB>field2..." (a missing field as \N), sorted bytewise.
redis_dump_hashes() {
  local pattern=$1
  shift
  rcli EVAL "local out = {} local c = '0'
repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1]
  for _, k in ipairs(r[2]) do
    local v = redis.call('HMGET', k, unpack(ARGV, 2)) local line = k
    for i = 1, #v do line = line .. '\t' .. (v[i] or '\\\\N') end
    out[#out + 1] = line
  end
until c == '0'
return table.concat(out, '\n')" 0 "$pattern" "$@" | LC_ALL=C sort
}

# redis_dump_strings PATTERN: "key<TAB>value" of every string key matching PATTERN, sorted.
redis_dump_strings() {
  rcli EVAL "local out = {} local c = '0'
repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1]
  for _, k in ipairs(r[2]) do out[#out + 1] = k .. '\t' .. redis.call('GET', k) end
until c == '0'
return table.concat(out, '\n')" 0 "$1" | LC_ALL=C sort
}

# redis_compare NAME PG_SELECT PATTERN [FIELD...]: the source query's rows (first column = the
# expected key; NULL as \N) equal the hashes (no FIELD: the JSON strings) at PATTERN.
redis_compare() {
  local name=$1 pgq=$2 pattern=$3
  shift 3
  pg_psql -F $'\t' -P null='\N' -c "$pgq" | LC_ALL=C sort >"$TEST_TMP/rcmp.$name.pg" || return 1
  if [[ $# -gt 0 ]]; then
    redis_dump_hashes "$pattern" "$@" >"$TEST_TMP/rcmp.$name.redis" || return 1
  else
    redis_dump_strings "$pattern" >"$TEST_TMP/rcmp.$name.redis" || return 1
  fi
  if ! cmp -s "$TEST_TMP/rcmp.$name.pg" "$TEST_TMP/rcmp.$name.redis"; then
    echo "table $name differs ($(wc -l <"$TEST_TMP/rcmp.$name.pg") source rows, $(wc -l <"$TEST_TMP/rcmp.$name.redis") keys):"
    diff "$TEST_TMP/rcmp.$name.pg" "$TEST_TMP/rcmp.$name.redis" | head -n 10
    return 1
  fi
}
