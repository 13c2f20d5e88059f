#!/usr/bin/env bash
# encryption_at_rest.sh — `encryption:` keys seal what odsync writes that holds row data
# (docs/SECURITY.md): the fan-out spool's segments and the dead letters in a sink.
# One PostgreSQL source, two sinks (a: SQLite, b: PostgreSQL with an uncompressed spool and
# on_poison: dead_letter); every row carries a known marker value.
#
# Asserts, with real servers:
#  1. Dead letters (b rejects rows with qty < 0 by a CHECK): their change and error columns in b's
#     _odsync_dead_letters are sealed (no marker, no key value in plaintext); `odsync dlq show`
#     opens them (the marker and the key are shown); two sealed changes swapped between dead letters
#     are refused by show and replay (does not authenticate) and nothing is applied; swapped back,
#     with the CHECK dropped, `dlq replay --all` applies them: b equals the source.
#  2. b's server down under load: b's spool holds the rows (segments > 8 KiB, compression none)
#     and no spool file contains the marker; SIGKILL; the config rotates keys (k2 seals, k1 still
#     opens); b back, odsync again: the spool sealed under k1 drains, and both sinks equal the
#     source row for row (od_compare, od_compare_pg).
#  3. A sealed spool record altered (one byte, CRC recomputed): odsync refuses it with an error
#     naming the segment and offset ("does not authenticate"), the file unchanged, exit 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init encryption_at_rest
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

pg_start_pair shop warehouse
DST_DATA=$(dirname "$DST_LOG")/data
SINK_DB=$TEST_TMP/a.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
SPOOL=$TEST_TMP/state/spool/shop.b
MARKER=MARKER-d41d8cd9
K1=$(openssl rand -hex 32)
K2=$(openssl rand -hex 32)
printf '%s\n' "$K1" >"$TEST_TMP/k1.key"
chmod 600 "$TEST_TMP/k1.key"
export ODSYNC_TEST_K2=$K2

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
dl_count() { dst_psql -c "SELECT count(*) FROM public._odsync_dead_letters" 2>/dev/null || echo 0; }
spool_kib() { du -sk "$SPOOL" 2>/dev/null | awk '{print $1}'; }
# batch FROM TO [QTY]: rows FROM..TO with the marker in v and 512 bytes of hex in payload.
batch() {
  pg_psql -c "INSERT INTO items SELECT g, '$MARKER-' || g, ${3:-1},
                (SELECT string_agg(md5(s || '-' || g), '') FROM generate_series(1, 16) s) FROM generate_series($1, $2) g"
}
dlq() { "$ODSYNC_BIN" dlq "$@" -c "$CONFIG" -p shop -s b; }

write_cfg() { # $1: the encryption keys block
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
encryption:
$1
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items] }
    reconnect_max_ms: 1000
    on_poison: dead_letter
    sinks:
      - { name: a, type: sqlite, path: $SINK_DB }
      - name: b
        type: postgres
        dsn: "$DST_DSN"
        spool: { max_bytes: 1GiB, compression: none }
YAML
}
KEYS_K1='  keys: [{ id: k1, key: "${file:'"$TEST_TMP"'/k1.key}" }]'
KEYS_ROTATED='  keys: [{ id: k2, key: "${env:ODSYNC_TEST_K2}" }, { id: k1, key: "${file:'"$TEST_TMP"'/k1.key}" }]'

pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, qty int NOT NULL, payload text)"
write_cfg "$KEYS_K1"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
batch 1 200
wait_equal 60 >/dev/null
wait_equal_pg 60 >/dev/null
log "200 rows in both sinks"

# ---- 1. dead letters sealed in the sink -------------------------------------------------------
dst_psql -c "ALTER TABLE public.items ADD CONSTRAINT qty_ok CHECK (qty >= 0) NOT VALID" >/dev/null
batch 201 203 -5
batch 204 300
wait_equal 60 >/dev/null
wait_for "[[ \$(dl_count) -eq 3 ]]" 120 || fail "expected 3 dead letters in b, found $(dl_count)"
stored=$(dst_psql -c "SELECT position || ' ' || change::text || ' ' || coalesce(error, '') FROM public._odsync_dead_letters")
grep -q "$MARKER" <<<"$stored" && fail "a dead letter holds the marker in plaintext: $stored"
grep -qE '"id": ?"?20[123]' <<<"$stored" && fail "a dead letter holds its key in plaintext: $stored"
[[ $(grep -c '"sealed:' <<<"$stored") -eq 3 ]] || fail "the dead letters' changes are not sealed: $stored"
errs=$(dst_psql -c "SELECT count(*) FROM public._odsync_dead_letters WHERE error LIKE 'sealed:%'")
[[ $errs -eq 3 ]] || fail "only $errs of 3 dead letters have a sealed error text"
id1=$(dst_psql -c "SELECT min(id) FROM public._odsync_dead_letters")
id2=$(dst_psql -c "SELECT max(id) FROM public._odsync_dead_letters")
show=$(dlq show "$id1") || fail "dlq show $id1 failed: $show"
grep -q "$MARKER-20" <<<"$show" || fail "dlq show does not open the sealed change: $show"
grep -q "qty_ok" <<<"$show" || fail "dlq show does not open the sealed error: $show"
grep -q "encrypted:   yes" <<<"$show" || fail "dlq show does not say the dead letter is encrypted: $show"
list=$(dlq list) || fail "dlq list failed: $list"
[[ $(grep -c "public.items" <<<"$list") -eq 3 ]] || fail "dlq list: $list"
log "3 dead letters, sealed in b (no marker, no key in plaintext); dlq show opens them"

# Swap two sealed changes: each is bound to its own dead letter.
dst_psql -c "UPDATE public._odsync_dead_letters d SET change = o.change FROM public._odsync_dead_letters o
             WHERE (d.id, o.id) IN (($id1, $id2), ($id2, $id1))" >/dev/null
set +e
out=$(dlq show "$id1" 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "dlq show of a swapped dead letter succeeded: $out"
grep -q "does not authenticate" <<<"$out" || fail "no clear error for a swapped dead letter: $out"
dst_psql -c "ALTER TABLE public.items DROP CONSTRAINT qty_ok" >/dev/null
set +e
out=$(dlq replay --all 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "dlq replay --all with two swapped dead letters succeeded: $out"
grep -q "does not authenticate" <<<"$out" || fail "replay of a swapped dead letter: $out"
[[ $(dl_count) -eq 2 ]] || fail "expected the 2 swapped dead letters to stay (the third replayed), found $(dl_count)"
[[ $(dst_psql -c "SELECT count(*) FROM public.items WHERE qty < 0") -eq 1 ]] || fail "a swapped dead letter was applied"
log "swapped sealed changes refused by show and replay: $(grep -o 'record 0 does not authenticate[^;]*' <<<"$out" | head -1)"
dst_psql -c "UPDATE public._odsync_dead_letters d SET change = o.change FROM public._odsync_dead_letters o
             WHERE (d.id, o.id) IN (($id1, $id2), ($id2, $id1))" >/dev/null
out=$(dlq replay --all 2>&1) || fail "dlq replay --all failed: $out"
[[ $(dl_count) -eq 0 ]] || fail "$(dl_count) dead letters left after replay"
wait_equal_pg 60 >/dev/null
log "swapped back and replayed: b equals the source"

# ---- 2. the spool sealed; key rotation --------------------------------------------------------
dst_stop
next=301
for _ in $(seq 1 10); do batch $next $((next + 99)); next=$((next + 100)); done
wait_equal 120 >/dev/null
wait_for "[[ \$(ls $SPOOL/*.spool 2>/dev/null | wc -l) -gt 0 && \$(spool_kib) -gt 8 ]]" 60 || fail "nothing spooled for b"
odsync_kill9
kib=$(spool_kib)
grep -rqa "$MARKER" "$SPOOL" && fail "b's spool ($kib KiB, compression none) holds the marker in plaintext"
grep -rqa "$MARKER" "$TEST_TMP/state" && fail "a file under state_dir holds the marker in plaintext: $(grep -rla "$MARKER" "$TEST_TMP/state")"
log "b down: $((next - 301)) rows spooled ($kib KiB, uncompressed), no marker in any file of state_dir"
write_cfg "$KEYS_ROTATED"
dst_start
odsync_start "$CONFIG" "$LOG"
batch $next $((next + 99)); next=$((next + 100))
wait_equal 120 >/dev/null
wait_equal_pg 180 >/dev/null
log "keys rotated (k2 seals, k1 opens): b's spool sealed under k1 drained; both sinks equal the source ($((next - 1)) rows)"

# ---- 3. an altered sealed record is refused ---------------------------------------------------
dst_stop
for _ in $(seq 1 3); do batch $next $((next + 99)); next=$((next + 100)); done
wait_equal 60 >/dev/null
wait_for "[[ \$(ls $SPOOL/*.spool 2>/dev/null | wc -l) -gt 0 && \$(spool_kib) -gt 8 ]]" 60 || fail "nothing spooled for b"
odsync_stop
seg=$(ls "$SPOOL"/*.spool | tail -1)
size=$(stat -c %s "$seg")
grep -qa "k2" "$seg" || fail "the new segment $seg is not sealed under the new key k2"
# Alter one byte of the ciphertext of the second record and recompute its CRC (a careful attacker).
off=$(python3 - "$seg" <<'PY'
import struct, sys, zlib
p = sys.argv[1]
with open(p, "r+b") as f:
    data = bytearray(f.read())
    (stored,) = struct.unpack_from("<I", data, 8)
    off = 16 + stored  # the second frame
    if off + 16 > len(data):
        sys.exit("only one record in " + p)
    (stored,) = struct.unpack_from("<I", data, off + 8)
    at = off + 16 + stored // 2
    data[at] ^= 0x20
    crc = zlib.crc32(bytes(data[off:off + 12]))
    crc = zlib.crc32(bytes(data[off + 16:off + 16 + stored]), crc)
    struct.pack_into("<I", data, off + 12, crc)
    f.seek(0)
    f.write(data)
    print(off)
PY
)
dst_start
set +e
timeout 60 "$ODSYNC_BIN" run -c "$CONFIG" --no-progress >"$TEST_TMP/tamper.log" 2>&1
rc=$?
set -e
grep -q "$seg at offset $off: .*does not authenticate" "$TEST_TMP/tamper.log" ||
  fail "no clear error for the altered record (rc $rc): $(tail -5 "$TEST_TMP/tamper.log")"
[[ $rc -eq 1 ]] || fail "odsync exited $rc on an altered sealed spool record (expected 1)"
[[ $(stat -c %s "$seg") -eq $size ]] || fail "the altered segment was changed (cut?)"
log "altered record refused: $(grep -o "spool: [^;]*does not authenticate" "$TEST_TMP/tamper.log" | head -1)"
log "all assertions passed"
