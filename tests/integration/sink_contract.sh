#!/usr/bin/env bash
# sink_contract.sh — the sink contract (tests/contract/sink_contract.h) against every SQL sink, each
# on a fresh store: positions and their text form, commit / commit_data / rollback, marks, replays,
# keyed and keyless changes, a schema change, many types, separate checkpoints per name, durability
# across close and open, with row counts read back. A new sink adds one `contract` line here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sink_contract
TOOL=${ODSYNC_BUILD_DIR:?}/od_sink_contract
[[ -x "$TOOL" ]] || fail "od_sink_contract not built at $TOOL"
pg_start contract

contract() {
  log "contract: $*"
  "$TOOL" "$@" || fail "sink $1 breaks the contract (see the FAIL lines above)"
}

contract sqlite "path=$TEST_TMP/contract.db"
contract postgres "dsn=$(pg_dsn)"
log "all assertions passed"
