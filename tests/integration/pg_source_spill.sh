#!/usr/bin/env bash
# pg_source_spill.sh — odsync sees and names the source server's spill of decoded changes to its
# own disk (pg_stat_replication_slots.spill_bytes, PostgreSQL 14+), which makes decoding a large
# transaction 2-3x slower: odsync_source_spilled_bytes_total on /metrics, spilled_bytes in /status'
# source_health, a warning naming the setting to change, and the catch-up's closing line.
#
# 1. Catch-up with catchup_decoding_mem_bytes: 65536 (64 kB, the server's minimum): a backlog with
#    a 20,000-row transaction is spilled by the batch calls' decoding session (the temporary copy of
#    the slot). Asserts: the warning names catchup_decoding_mem_bytes and the copy; the closing
#    catch-up line says how much the source spilled; the counter and /status agree and are > 0 (at
#    least 1 MiB: 20,000 rows of ~100 bytes); `odsync status` shows it; the sink equals the source.
# 2. Streaming with stream_in_progress: false and the server's logical_decoding_work_mem at 64 kB:
#    a 20,000-row transaction is spilled by the walsender. Asserts: the walsender warning names the
#    slot and stream_in_progress; the counter grew by at least 1 MiB; the sink equals the source.
# 3. The same two situations with the settings that avoid the spill, in a new process: the default
#    catchup_decoding_mem_bytes (256 MiB) for the backlog, stream_in_progress: true (the default)
#    for the transaction at the head (the server streams it in blocks instead: its stream_bytes
#    grow). Asserts: no warning, the counter stays 0, no "spilled" in the catch-up line nor in
#    `odsync status`, the sink equals the source.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_source_spill
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/sink.db
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT

pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text);
SQL

write_config() { # $1: file, $2: extra source options
  cat >"$1" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items], status_interval_ms: 200, catchup_lag_bytes: 1, catchup_exit_bytes: 0$2 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
}
spilled() { # the counter on /metrics
  curl -s --max-time 5 "$ADMIN/metrics" | sed -n 's/^odsync_source_spilled_bytes_total{pipeline="shop"} \([0-9]*\)$/\1/p'
}
status_spilled() {
  curl -s --max-time 5 "$ADMIN/status" | python3 -c '
import json, sys
h = json.load(sys.stdin)["pipelines"][0]["source_health"]
print(h["spilled_bytes"] if h else "")'
}
equal() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items >/dev/null 2>&1; }
wait_equal() { # $1: what
  wait_for equal 120 || { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table items || true; fail "$1: sink differs from the source"; }
}
big_txn() { # $1: first id
  pg_psql -c "INSERT INTO items SELECT g, g % 7, 'big ' || g FROM generate_series($1, $1 + 19999) g" >/dev/null
}

# The first run creates the slot and copies the (empty) table, then stops: what follows is a backlog.
write_config "$TEST_TMP/spill.yaml" ", stream_in_progress: false, catchup_decoding_mem_bytes: 65536"
odsync_start "$TEST_TMP/spill.yaml" "$TEST_TMP/first.log"
wait_for "grep -q 'streaming' '$TEST_TMP/first.log'" 60 || fail "odsync does not start"
odsync_stop

log "1. catch-up of a 20,000-row transaction with catchup_decoding_mem_bytes: 65536"
pg_psql -c "INSERT INTO items SELECT g, 1, 'small' FROM generate_series(1, 500) g" >/dev/null
big_txn 100000
LOG1=$TEST_TMP/spill.log
odsync_start "$TEST_TMP/spill.yaml" "$LOG1"
wait_for "grep -q 'caught up by batch decoding' '$LOG1'" 120 || { tail -n 20 "$LOG1" >&2; fail "1: catch-up did not end"; }
wait_equal 1
grep -q "catch-up: the source spills decoded changes to its disk (.*pg_replslot/odsync_shop_catchup_[0-9]*).*catchup_decoding_mem_bytes: 64 kB" "$LOG1" ||
  { grep -i spill "$LOG1" >&2 || true; fail "1: no catch-up spill warning naming the copy and catchup_decoding_mem_bytes"; }
grep -q "caught up by batch decoding (.*; the source spilled [0-9.]* MiB of decoded changes to its disk)" "$LOG1" ||
  { grep "caught up" "$LOG1" >&2; fail "1: the catch-up line does not say how much the source spilled"; }
wait_for "[[ -n \$(spilled) ]] && (( \$(spilled) >= 1048576 ))" 10 || fail "1: odsync_source_spilled_bytes_total is '$(spilled)', expected >= 1 MiB"
S1=$(spilled)
[[ $(status_spilled) == "$S1" ]] || fail "1: /status spilled_bytes $(status_spilled), /metrics $S1"
out=$("$ODSYNC_BIN" status -c "$TEST_TMP/spill.yaml") || fail "1: odsync status failed: $out"
grep -q "source: spilled [0-9.]* MiB of decoded changes to its disk since start" <<<"$out" ||
  fail "1: odsync status does not show the spill: $out"
log "1: the source spilled $S1 bytes; $(grep -o 'WARN .*spills decoded changes.*' "$LOG1" | head -c 400)"

log "2. streaming a 20,000-row transaction with stream_in_progress: false, logical_decoding_work_mem 64 kB"
pg_psql -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" >/dev/null
odsync_stop # the walsender of the next session starts with the new setting
LOG2=$TEST_TMP/stream.log
odsync_start "$TEST_TMP/spill.yaml" "$LOG2"
wait_for "grep -q 'streaming' '$LOG2'" 60 || fail "2: odsync does not stream"
big_txn 200000
wait_equal 2
wait_for "grep -q 'the walsender spills decoded changes to the source.s disk (.*pg_replslot/odsync_shop).*stream_in_progress: true' '$LOG2'" 10 ||
  { grep -i spill "$LOG2" >&2 || true; fail "2: no walsender spill warning naming the slot and stream_in_progress"; }
wait_for "(( \$(spilled) >= 1048576 ))" 10 || fail "2: odsync_source_spilled_bytes_total is '$(spilled)' in the new process, expected >= 1 MiB"
log "2: the walsender spilled $(spilled) bytes; $(grep -o 'WARN .*spills decoded changes.*' "$LOG2" | head -c 400)"
odsync_stop

log "3. the same with the defaults: catchup_decoding_mem_bytes 256 MiB, stream_in_progress: true"
big_txn 300000
write_config "$TEST_TMP/default.yaml" ""
LOG3=$TEST_TMP/default.log
odsync_start "$TEST_TMP/default.yaml" "$LOG3"
wait_for "grep -q 'caught up by batch decoding' '$LOG3'" 120 || { tail -n 20 "$LOG3" >&2; fail "3: catch-up did not end"; }
wait_equal 3
stream_bytes() { pg_psql -c "SELECT stream_bytes FROM pg_stat_replication_slots WHERE slot_name = 'odsync_shop'"; }
before=$(stream_bytes)
big_txn 400000 # at the head: with the server's 64 kB the walsender streams it in blocks
wait_equal 3
(($(stream_bytes) > before + 1048576)) || fail "3: the walsender did not stream the transaction (stream_bytes $before -> $(stream_bytes))"
sleep 1 # two more health reads (status_interval_ms: 200)
[[ $(spilled) == 0 ]] || { grep -i spill "$LOG3" >&2 || true; fail "3: odsync_source_spilled_bytes_total is $(spilled), expected 0"; }
[[ $(status_spilled) == 0 ]] || fail "3: /status spilled_bytes is $(status_spilled), expected 0"
out=$("$ODSYNC_BIN" status -c "$TEST_TMP/default.yaml") || fail "3: odsync status failed: $out"
! grep -q "spilled" <<<"$out" || fail "3: odsync status shows a spill: $out"
! grep -q "spills decoded changes\|source spilled" "$LOG3" || { grep "spill" "$LOG3" >&2; fail "3: a spill was reported with the settings that avoid it"; }
odsync_stop
pg_psql -c "ALTER SYSTEM RESET logical_decoding_work_mem" -c "SELECT pg_reload_conf()" >/dev/null
log "all assertions passed"
