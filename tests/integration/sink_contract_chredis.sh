#!/usr/bin/env bash
# sink_contract_chredis.sh — the sink contract (tests/contract/sink_contract.h) against the Redis
# and ClickHouse sinks, each on a fresh server.
#
# Asserts: ClickHouse passes every check, the keyless table's included (duplicates kept, one copy
# deleted by full row: signed rows, src/sinks/clickhouse_keyless.c), row counts read through the
# views `<table>_current` (od_sink_contract, with curl). Redis passes every check
# except the keyless rows, which must fail with its refusal of a table without a key — by design
# (Redis names each row's key by its key values; its stream mode takes keyless rows but needs each
# change's position, which the contract's changes do not carry) — and with nothing else; each run
# reaches its last check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"

test_init sink_contract_chredis
test_extra_cleanup() {
  ch_cleanup_all
  redis_cleanup_all
}
TOOL=${ODSYNC_BUILD_DIR:?}/od_sink_contract
[[ -x "$TOOL" ]] || fail "od_sink_contract not built at $TOOL"
ch_start || fail "clickhouse-server did not start"
redis_start || fail "redis-server did not start"

# contract_keyless_refused TYPE NFAIL KEY=VALUE...: NFAIL checks fail, each on the keyless table.
contract_keyless_refused() {
  local type=$1 nfail=$2 out rc=0 fails
  shift 2
  out=$("$TOOL" "$type" "$@" 2>&1) || rc=$?
  grep -v '^20' <<<"$out"
  fails=$(grep '^FAIL' <<<"$out" || true)
  [[ $(grep -c '^FAIL' <<<"$out") == "$nfail" ]] || fail "$type: expected exactly $nfail keyless check(s) to fail"
  grep -q "^FAIL keyless rows: .*table public.contract_k has no primary key or replica identity index" <<<"$fails" ||
    fail "$type: the keyless-rows check did not fail with the keyless refusal"
  [[ $rc == 1 ]] || fail "od_sink_contract exited $rc for $type"
  grep -q "^ok   the position is durable across close and open" <<<"$out" || fail "the $type contract run did not finish"
  log "$type: contract kept (keyless tables refused, as documented)"
}

contract_keyless_refused redis 1 "port=$REDIS_PORT" "user=odsync" "password=$REDIS_PASSWORD" "prefix=contract"
out=$("$TOOL" clickhouse "url=http://127.0.0.1:$CH_HTTP_PORT" "database=contract" "user=odsync" "password=$CH_PASSWORD" 2>&1) ||
  { grep -v '^20' <<<"$out"; fail "clickhouse: the contract failed"; }
grep -v '^20' <<<"$out"
grep -q "^ok   keyless rows: duplicates kept, one deleted by full row" <<<"$out" || fail "clickhouse: the keyless check did not pass"
grep -q "^ok   the position is durable across close and open" <<<"$out" || fail "the clickhouse contract run did not finish"
log "clickhouse: contract kept, keyless table included"
log "all assertions passed"
