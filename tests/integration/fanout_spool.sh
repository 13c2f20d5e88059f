#!/usr/bin/env bash
# fanout_spool.sh — one PostgreSQL source, two sinks (a: SQLite, b: PostgreSQL), b's server stopped
# for ~20 s in the middle of a load: the per-sink spool (docs/ARCHITECTURE.md, "Spools").
#
# Asserts, with real servers:
#  1. While b's server is down, sink a keeps up: every row written during the outage reaches a
#     before b's server is back (the delivered rows during the outage are logged), the session
#     never restarts, /status says b is down with spool_bytes > 0, and
#     odsync_sink_spool_bytes{sink="b"} > 0; the source slot is acknowledged past b's checkpoint
#     (what b's spool holds durably).
#  2. SIGKILL while b is down and its spool grows; odsync again with b still down: a starts and
#     catches up; SIGKILL; b's server back, odsync again: b's spool is replayed, SIGKILL again while
#     b drains it; odsync again: both sinks equal the source row for
#     row (od_compare, od_compare_pg), and b's spool shrinks back (segments pruned).
#  3. A bound (spool.max_bytes 1 MiB) reached while b is down: the source is held back (a stops
#     advancing), /status names b in blocked_by and odsync_pipeline_blocked_by{sink="b"} is 1; with
#     b's server back everything drains and both sinks are exact.
#  4. A sink added to the running pipeline later (c) starts with an initial snapshot of its own,
#     then follows the stream next to a and b: all three equal the source.
#  5. A corrupt spool record (one byte flipped): odsync refuses it with an error naming the segment
#     file and the record's offset; nothing is skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init fanout_spool
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
command -v curl >/dev/null || fail "curl not installed"

pg_start_pair shop warehouse
DST_DATA=$(dirname "$DST_LOG")/data
SINK_DB=$TEST_TMP/a.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
SPOOL=$TEST_TMP/state/spool/shop.b

compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.items; }
wait_equal_pg() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_pg 2>&1); then
      echo "$out"
      return 0
    fi
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sink b not equal to the source after ${timeout}s"; }
    odsync_running || fail "odsync exited while sink b caught up"
    sleep 1
  done
}
dst_stop() { pg_as_user "$PG_BINDIR/pg_ctl" -D "$DST_DATA" -m fast -w -t 30 stop >/dev/null; }
dst_start() { pg_as_user "$PG_BINDIR/pg_ctl" -D "$DST_DATA" -l "$DST_LOG" -w -t 60 start >/dev/null; }
status() { curl -s --max-time 5 "$ADMIN/status"; }
metric() { curl -s --max-time 5 "$ADMIN/metrics" | grep -F "$1 " | awk '{print $NF}'; }
sqlite_count() { sqlite3 "$SINK_DB" "SELECT count(*) FROM items" 2>/dev/null || echo 0; }
src_count() { pg_psql -c "SELECT count(*) FROM items"; }
spool_kib() { du -sk "$SPOOL" 2>/dev/null | awk '{print $1}'; }
# batch FROM TO: insert rows FROM..TO (1 KiB values of random hex, which lz4 barely compresses) and
# update every 7th of them, one transaction.
batch() {
  pg_psql -c "BEGIN; INSERT INTO items SELECT g, 'v' || g,
                (SELECT string_agg(md5(random()::text || s || g), '') FROM generate_series(1, 32) s) FROM generate_series($1, $2) g;
              UPDATE items SET v = v || '+' WHERE id BETWEEN $1 AND $2 AND id % 7 = 0; COMMIT"
}

write_cfg() { # $1: spool max_bytes, $2: queue settings, $3: one more sink block line
  local queue=${2:-"{ max_rows: 100000 }"}
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin: { listen: "127.0.0.1:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items] }
    reconnect_max_ms: 1000
    queue: $queue
    sinks:
      - { name: a, type: sqlite, path: $SINK_DB }
      - name: b
        type: postgres
        dsn: "$DST_DSN"
        spool: { max_bytes: $1, compression: lz4 }
${3:-}
YAML
}

pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text, payload text)"
write_cfg 1GiB
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
for i in $(seq 0 4); do batch $((i * 200 + 1)) $((i * 200 + 200)); done
wait_equal 60 >/dev/null
wait_equal_pg 60 >/dev/null
log "1000 rows in both sinks; stopping b's server"

# ---- 1. b's server down for ~20 s under load --------------------------------------------------
sessions_before=$(metric 'odsync_sessions_total{pipeline="shop"}')
ck_b=$(dst_psql -c "SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = 'shop.b'")
dst_stop
out_start=$(date +%s)
a_before=$(sqlite_count)
next=1001
while (($(date +%s) - out_start < 20)); do
  batch $next $((next + 199))
  next=$((next + 200))
  sleep 0.3
done
written=$((next - 1001))
((written >= 2000)) || fail "only $written rows written during the outage (machine too slow?)"
wait_equal 60 >/dev/null
a_delivered=$(($(sqlite_count) - a_before))
[[ $a_delivered -eq $written ]] || fail "sink a got $a_delivered of $written rows during b's outage"
up_for=$(($(date +%s) - out_start))
log "outage: $written rows written, sink a delivered all $a_delivered ${up_for}s after the outage began (b still down)"
st=$(status)
python3 - "$st" <<'PY' || fail "/status during the outage: $st"
import json, sys
p = json.loads(sys.argv[1])["pipelines"][0]
b = [k for k in p["sinks"] if k["name"] == "b"][0]
assert b["down"] is True and b["spool_bytes"] > 0, b
assert p["blocked_by"] is None, p["blocked_by"]
PY
sb=$(metric 'odsync_sink_spool_bytes{pipeline="shop",sink="b"}')
((sb > 0)) || fail "odsync_sink_spool_bytes for b is $sb during the outage"
[[ $(metric 'odsync_sessions_total{pipeline="shop"}') == "$sessions_before" ]] || fail "the session restarted during b's outage"
flushed=$(pg_psql -c "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'odsync_shop'")
((flushed > ck_b)) || fail "slot confirmed $flushed, not past b's checkpoint $ck_b (its spool holds the changes durably)"
log "b down, spool ${sb} bytes, slot acknowledged past b's checkpoint ($ck_b -> $flushed)"

# ---- 2. SIGKILL while spooling, then while draining ------------------------------------------
batch $next $((next + 399)); next=$((next + 400))
odsync_kill9
log "SIGKILL while b was down (spool $(spool_kib) KiB)"
# Restarted while b is still down: a starts and goes on (b's spool knows b's checkpoint).
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
batch $next $((next + 199)); next=$((next + 200))
wait_equal 60 >/dev/null
grep -q "sink b is unreachable" "$LOG" || fail "the restart did not start without b"
log "restarted with b still down: sink a caught up ($(sqlite_count) rows)"
odsync_kill9
dst_start
odsync_start "$CONFIG" "$LOG"
for _ in $(seq 1 100); do
  grep -q "spooled chunks to apply first" "$LOG" && break
  sleep 0.1
done
grep -q "spooled chunks to apply first" "$LOG" || fail "the restarted odsync did not replay b's spool"
ckb() { dst_psql -c "SELECT coalesce((SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = 'shop.b'), 0)"; }
wait_for "(( \$(ckb) > ck_b ))" 60 || fail "b did not start draining its spool"
odsync_kill9
mid=$(ckb)
end=$(pg_psql -c "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
log "SIGKILL while b drained its spool (b's checkpoint $ck_b -> $mid, source at $end)"
odsync_start "$CONFIG" "$LOG"
batch $next $((next + 199)); next=$((next + 200))
wait_equal 120 >/dev/null
wait_equal_pg 180 >/dev/null
log "both sinks exact after two SIGKILLs ($(src_count) rows)"
for _ in $(seq 1 50); do
  (($(spool_kib) < 2048)) && break
  sleep 0.2
done
(($(spool_kib) < 2048)) || fail "b's spool was not pruned after draining: $(spool_kib) KiB"
odsync_stop

# ---- 3. the bound: backpressure, and the status names the sink ---------------------------------
write_cfg 1MiB '{ max_rows: 1000, max_bytes: 1MiB }'
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
dst_stop
blocked=0
for _ in $(seq 1 60); do
  batch $next $((next + 199)); next=$((next + 200))
  st=$(status)
  if python3 -c 'import json,sys; p=json.loads(sys.argv[1])["pipelines"][0]; sys.exit(0 if p["blocked_by"] == "b" else 1)' "$st"; then
    blocked=1
    break
  fi
done
((blocked)) || fail "status never named b as blocking with a 1 MiB spool: $st"
[[ $(metric 'odsync_pipeline_blocked_by{pipeline="shop",sink="b"}') == 1 ]] || fail "odsync_pipeline_blocked_by{sink=b} is not 1"
a1=$(sqlite_count)
for _ in $(seq 1 10); do batch $next $((next + 199)); next=$((next + 200)); done
sleep 3
a2=$(sqlite_count)
total=$(src_count)
((a2 < total)) || fail "sink a holds every row ($a2) although b's full spool should hold the source back"
log "spool at its bound: blocked_by b; sink a at $a1 -> $a2 of $total rows (held back)"
dst_start
wait_equal 180 >/dev/null
wait_equal_pg 180 >/dev/null
log "after b's server is back: both sinks exact ($(src_count) rows)"
odsync_stop

# ---- 4. a sink added to the pipeline later starts with a snapshot of its own -------------------
write_cfg 1GiB "" "      - { name: c, type: sqlite, path: $TEST_TMP/c.db }"
odsync_start "$CONFIG" "$LOG"
batch $next $((next + 199)); next=$((next + 200))
SINK_DB=$TEST_TMP/c.db wait_equal 120 >/dev/null
wait_equal 60 >/dev/null
wait_equal_pg 60 >/dev/null
[[ -n $(sqlite3 "$TEST_TMP/c.db" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'shop.c'") ]] ||
  fail "sink c has no checkpoint of its own"
log "sink c added later: snapshot of its own, then the stream; a, b, c equal the source ($(src_count) rows)"
odsync_stop

# ---- 5. a corrupt record is refused, naming the file and offset -------------------------------
write_cfg 1GiB
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
dst_stop
for _ in $(seq 1 3); do batch $next $((next + 199)); next=$((next + 200)); done
wait_equal 60 >/dev/null
wait_for "[[ \$(ls $SPOOL/*.spool 2>/dev/null | wc -l) -gt 0 && \$(spool_kib) -gt 8 ]]" 30 || fail "nothing spooled for b"
odsync_stop
seg=$(ls "$SPOOL"/*.spool | head -1)
size=$(stat -c %s "$seg")
# Flip a byte in the body of the first record larger than 200 bytes; its offset is what the error names.
off=$(python3 - "$seg" <<'PY'
import struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    data = bytearray(f.read())
    off = 0
    while off + 16 <= len(data):  # segment frames (src/common/segfile.h): 16-byte header, stored_len at +8
        (stored,) = struct.unpack_from("<I", data, off + 8)
        total = 16 + stored
        if stored > 200:
            at = off + 16 + stored // 2
            f.seek(at)
            f.write(bytes([data[at] ^ 0x5A]))
            print(off)
            break
        off += total
PY
)
[[ -n "$off" ]] || fail "no spooled record larger than 200 bytes in $seg"
dst_start
: >"$TEST_TMP/corrupt.log"
set +e
timeout 60 "$ODSYNC_BIN" run -c "$CONFIG" --no-progress >"$TEST_TMP/corrupt.log" 2>&1
rc=$?
set -e
grep -q "$seg: checksum mismatch in the record at offset $off " "$TEST_TMP/corrupt.log" ||
  fail "no clear error for the corrupt record (rc $rc): $(tail -5 "$TEST_TMP/corrupt.log")"
[[ $rc -eq 1 ]] || fail "odsync exited $rc on a corrupt spool (expected 1)"
[[ $(stat -c %s "$seg") -eq $size ]] || fail "the corrupt segment was changed"
log "corrupt record refused: $(grep -o "spool: [^;]*offset $off [^;]*" "$TEST_TMP/corrupt.log" | head -1)"
log "all assertions passed"
