#!/usr/bin/env bash
# pg_slot_invalidated.sh — slot safety of the PostgreSQL source: the retained-WAL warning, and an
# invalidated slot turned into a clear fatal error.
#
# Asserts: (1) with odsync stopped, ~24 MB of WAL is written (a table outside the publication);
# odsync restarted with slot_warn_retained_bytes 8 MB logs the warning once (naming the slot, the
# retained size and wal_status) and, once it caught up, the "below" line; /metrics has
# odsync_source_retained_bytes and /status a source_health object with the slot's wal_status.
# (2) odsync stopped again, max_slot_wal_keep_size = 1MB, ~48 MB of WAL and a checkpoint:
# pg_replication_slots says wal_status = 'lost'; odsync started on it exits 1 (not retrying) with an
# error that names the slot, says it was invalidated and gives the recovery
# (pg_drop_replication_slot('odsync_shop'), empty the sink, odsync run); the sink still holds exactly
# what it had (od_compare on the captured table).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_slot_invalidated
pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
pg_psql <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, note text);
INSERT INTO orders SELECT g, 'o' || g FROM generate_series(1, 100) g;
CREATE TABLE filler (id int, pad text);
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.orders], status_interval_ms: 500,
              slot_warn_retained_bytes: 8000000 }
    sink: { type: sqlite, path: $SINK_DB }
YAML
gen_wal() { # MB
  pg_psql -c "INSERT INTO filler SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, $1 * 1000) g" >/dev/null
  pg_psql -c "SELECT pg_switch_wal()" >/dev/null
}
# Only the captured table (filler is not published).
compare() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table public.orders; }
slot() { pg_psql -c "SELECT $1 FROM pg_replication_slots WHERE slot_name = 'odsync_shop'"; }

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
pg_psql -c "INSERT INTO orders VALUES (101, 'streamed')"
wait_equal 60 >/dev/null
odsync_stop

# ---- (1) the warning ---------------------------------------------------------------------------
gen_wal 24
retained=$(pg_psql -c "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")
log "odsync stopped; slot retains $retained bytes of WAL"
((retained > 8000000)) || fail "the slot retains only $retained bytes after writing 24 MB of WAL"
odsync_start "$CONFIG" "$LOG"
wait_for "grep -q 'replication slot odsync_shop retains .* of WAL on the server (source.slot_warn_retained_bytes' '$LOG'" 60 ||
  fail "no retained-WAL warning"
grep -m1 "replication slot odsync_shop retains" "$LOG"
grep -q "wal_status reserved\|wal_status extended" "$LOG" || fail "the warning does not report wal_status"
wait_for "curl -sf http://127.0.0.1:$APORT/metrics | grep_q '^odsync_source_retained_bytes{pipeline=\"shop\"} [0-9]'" 30 ||
  fail "no odsync_source_retained_bytes series"
st=$(curl -sf "http://127.0.0.1:$APORT/status")
[[ "$st" == *'"source_health":{"retained_bytes":'*'"status":"reserved"'* || "$st" == *'"source_health":{"retained_bytes":'*'"status":"extended"'* ]] ||
  fail "/status has no source_health with the slot's wal_status: $st"
# The slot advances once odsync acknowledges; restart_lsn follows at the next running-xacts record.
pg_psql -c "INSERT INTO orders VALUES (102, 'after the warning')"
wait_for "pg_psql -c 'CHECKPOINT' && grep -q 'replication slot odsync_shop retains .* of WAL again, below' '$LOG'" 120 ||
  fail "the warning never cleared"
grep -m1 "of WAL again, below" "$LOG"
wait_equal 60 >/dev/null
odsync_stop
log "VERIFIED: warning logged once ($(grep -c 'retains .* of WAL on the server' "$LOG")), cleared, metric and /status present"

# ---- (2) the invalidated slot ------------------------------------------------------------------
pg_psql -c "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'" >/dev/null
pg_psql -c "SELECT pg_reload_conf()" >/dev/null
for i in 1 2 3; do gen_wal 16; done
pg_psql -c "CHECKPOINT" >/dev/null
wait_for "[[ \$(slot wal_status) == lost ]]" 30 || fail "the slot is not lost (wal_status $(slot wal_status))"
log "slot odsync_shop invalidated by the server (wal_status lost)"
rc=0
timeout 120 "$ODSYNC_BIN" run -c "$CONFIG" >>"$LOG" 2>&1 </dev/null || rc=$?
[[ $rc -eq 1 ]] || fail "odsync on an invalidated slot exited $rc (expected 1)"
msg=$(grep "was invalidated by the server" "$LOG" | tail -1)
echo "$msg"
[[ "$msg" == *"replication slot odsync_shop was invalidated"* ]] || fail "the error does not name the slot"
[[ "$msg" == *"pg_drop_replication_slot('odsync_shop')"* ]] || fail "the error does not name the recovery (drop the slot)"
[[ "$msg" == *"_odsync_checkpoint row for pipeline shop"* && "$msg" == *"odsync run -c"* ]] ||
  fail "the error does not say how to re-snapshot"
grep -q "retrying in" <(sed -n '/was invalidated/,$p' "$LOG") && fail "odsync retried an invalidated slot"
compare
log "VERIFIED: an invalidated slot is fatal, with the recovery named; the sink is intact"
