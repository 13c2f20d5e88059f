#!/usr/bin/env bash
# chredis_errors.sh — the ClickHouse and Redis sinks report bad configuration and failed
# connections clearly, and never show a password.
#
# Asserts (`odsync check`, which reports one line per problem and exits non-zero):
#   - a bad clickhouse `compression`, a bad redis `modes` entry and a redis `user` without a
#     password are named with CONFIG:LINE:COL and the key;
#   - a ClickHouse port where nothing listens is named as host:port/database;
#   - a wrong ClickHouse password says "authentication failed for user odsync", a wrong Redis
#     password names the server and WRONGPASS; with the right passwords `check` passes;
#   - neither password (from ${env:...}) appears in any output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init chredis_errors
test_extra_cleanup() {
  ch_cleanup_all
  redis_cleanup_all
}
[[ -x "$ODSYNC_BIN" ]] || fail "odsync binary not found at $ODSYNC_BIN"
pg_start shop
pg_psql -c "CREATE TABLE a (id int PRIMARY KEY, v text)"
ch_start || fail "clickhouse-server did not start"
redis_start || fail "redis-server did not start"
GOOD_CH=$CH_PASSWORD GOOD_RD=$REDIS_PASSWORD
CFG=$TEST_TMP/odsync.yaml

# write_cfg CH_SINK_FLOW REDIS_SINK_FLOW
write_cfg() {
  cat >"$CFG" <<EOF
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.a] }
    sinks:
      - { name: ch, type: clickhouse, $1 }
      - { name: cache, type: redis, $2 }
EOF
}

# check_expect NAME REGEX...: `odsync check` exits non-zero and prints every REGEX.
check_expect() {
  local name=$1 out rc=0 re secret
  shift
  out=$(timeout 60 "$ODSYNC_BIN" check -c "$CFG" 2>&1 </dev/null) || rc=$?
  [[ $rc -ne 124 ]] || fail "$name: odsync check did not finish within 60 s"
  [[ $rc -ne 0 ]] || fail "$name: odsync check exited 0; output: $out"
  for re in "$@"; do grep -qE -- "$re" <<<"$out" || fail "$name: no line matching '$re' in: $out"; done
  for secret in "$GOOD_CH" "$GOOD_RD" "wrong-ch-pw-4711" "wrong-rd-pw-4712"; do
    if grep -qF -- "$secret" <<<"$out"; then fail "$name: a password appears in the output"; fi
  done
  log "$name: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
}

CH_OK="url: \"http://127.0.0.1:$CH_HTTP_PORT\", user: odsync, password: \"\${env:CH_PASSWORD}\""
RD_OK="port: $REDIS_PORT, user: odsync, password: \"\${env:REDIS_PASSWORD}\""

write_cfg "$CH_OK, compression: zstd" "$RD_OK, modes: [public.a=cache]"
check_expect "bad options" "$CFG:6:[0-9]+: pipelines\[0\]\.sinks\[0\]\.compression: expected none or gzip" \
  "$CFG:7:[0-9]+: pipelines\[0\]\.sinks\[1\]\.modes: entry 0 'public.a=cache' must read schema.table=MODE"

write_cfg "$CH_OK" "port: $REDIS_PORT, user: odsync"
check_expect "redis user without password" "$CFG:7:[0-9]+: pipelines\[0\]\.sinks\[1\]\.user: a user needs a password"

port=$(pg_free_port)
write_cfg "url: \"http://127.0.0.1:$port\", database: dw" "$RD_OK"
check_expect "nothing listening" "clickhouse sink 127\.0\.0\.1:$port/dw: connecting: .*(onnect|refused)"

export CH_PASSWORD=wrong-ch-pw-4711 REDIS_PASSWORD=wrong-rd-pw-4712
write_cfg "$CH_OK" "$RD_OK"
check_expect "wrong passwords" "clickhouse sink 127\.0\.0\.1:$CH_HTTP_PORT/default: connecting: authentication failed for user odsync" \
  "redis sink 127\.0\.0\.1:$REDIS_PORT/0: authenticating as odsync: WRONGPASS"

export CH_PASSWORD=$GOOD_CH REDIS_PASSWORD=$GOOD_RD
out=$(timeout 60 "$ODSYNC_BIN" check -c "$CFG" 2>&1 </dev/null) || fail "odsync check with the right passwords failed: $out"
log "right passwords: $(tr '\n' ' ' <<<"$out" | cut -c1-300)"
if grep -qF -- "$GOOD_CH" <<<"$out" || grep -qF -- "$GOOD_RD" <<<"$out"; then fail "a password appears in the output"; fi
log "all assertions passed"
