#!/usr/bin/env bash
# state_encrypted.sh — encryption at rest of what odsync writes in its state directory (the schema
# history), with tampering on disk and key rotation (docs/SECURITY.md).
#
# Asserts, for a postgres -> sqlite pipeline:
#  - started first without `encryption:`, the history is plain JSON; with `encryption:` configured
#    the next start rewrites it sealed (log line), and every later line is sealed too: no table or
#    column name is left in clear, and the sink stays equal to the source through a schema change;
#  - a history edited on disk (one base64 character changed), two lines swapped, a line deleted
#    from the middle, or a plain line put among sealed ones: odsync refuses to start with an error
#    naming the file and line, and never reads it; restored, it starts again;
#  - without encryption.keys the sealed history is refused (the message says to add the keys);
#  - key rotation: a new key first and the old one kept: old lines read, new lines carry the new
#    key id; with the old key removed, the error names the missing key id.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init state_encrypted
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/out.db
LOG=$TEST_TMP/odsync.log
HIST=$TEST_TMP/state/shop.schema.jsonl
export ODSYNC_T_K1=$(openssl rand -hex 32)
export ODSYNC_T_K2=$(openssl rand -base64 32)
pg_psql -c "CREATE TABLE customer_secrets (id int PRIMARY KEY, card_number text)"
pg_psql -c "INSERT INTO customer_secrets SELECT g, 'c' || g FROM generate_series(1, 50) g"

config() { # KEYS-YAML (empty: no encryption)
  { printf 'state_dir: %s/state\n' "$TEST_TMP"
    [[ -z "$1" ]] || printf 'encryption:\n  keys:\n%s\n' "$1"
    printf 'pipelines:\n  - name: shop\n    source: { type: postgres, dsn: "%s", tables: [public.customer_secrets] }\n' "$(pg_dsn)"
    printf '    sink: { type: sqlite, path: %s }\n' "$SINK_DB"; } >"$TEST_TMP/odsync.yaml"
}
K1='    - { id: k1, key: "${env:ODSYNC_T_K1}" }'
K2='    - { id: k2, key: "${env:ODSYNC_T_K2}" }'
# run_until_equal: start, wait for equality, stop.
run_until_equal() {
  odsync_start "$TEST_TMP/odsync.yaml" "$LOG"
  wait_slot_active odsync_shop 60
  "$@"
  wait_equal 60 >/dev/null
  odsync_stop
}
# refused WANT: odsync run must exit non-zero, its output naming WANT.
refused() {
  local rc=0 out
  out=$(timeout 120 "$ODSYNC_BIN" run -c "$TEST_TMP/odsync.yaml" 2>&1 </dev/null) || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "odsync ran on a bad history (exit $rc): $out"
  grep -qF "$1" <<<"$out" || fail "the refusal does not say '$1': $out"
  log "  refused: $(grep -F "$1" <<<"$out" | head -1 | cut -c1-260)"
}
sealed_lines() { grep -c '^sealed:' "$HIST" || true; }
key_id_of_line() { sed -n "${1}p" "$HIST" | cut -c8- | base64 -d 2>/dev/null | head -c 6 | tail -c 2; }

# 1. Plain, then encrypted.
config ""
run_until_equal true
grep -q '"table":"public.customer_secrets"' "$HIST" || fail "the first history is not plain JSON"
config "$K1"
two_changes() {
  pg_psql -c "ALTER TABLE customer_secrets ADD COLUMN holder text" -c "INSERT INTO customer_secrets VALUES (51, 'c51', 'h')"
  pg_psql -c "ALTER TABLE customer_secrets ADD COLUMN expiry text" -c "INSERT INTO customer_secrets VALUES (53, 'c53', 'h', 'e')"
}
run_until_equal two_changes
grep -q "schema history $HIST: encrypted with key k1 (it was plain text" "$LOG" || fail "no log line for the migration"
n=$(wc -l <"$HIST")
[[ $(sealed_lines) == "$n" && $n -ge 3 ]] || fail "$(sealed_lines) of $n lines sealed (expected 3 or more)"
! grep -qE 'customer_secrets|card_number|holder|expiry' "$HIST" || fail "a table or column name is in clear"
log "history sealed ($n lines; no names in clear); sink equal through ADD COLUMN"

# 2. Tampering on disk.
cp "$HIST" "$TEST_TMP/hist.good"
line2=$(sed -n 2p "$HIST")
c=${line2:40:1}; [[ $c == A ]] && r=B || r=A
sed -i "2s/^\(.\{40\}\)./\1$r/" "$HIST"
refused "schema history $HIST:2: shop.schema.jsonl: record 1 does not authenticate"
{ sed -n 2p "$TEST_TMP/hist.good"; sed -n 1p "$TEST_TMP/hist.good"; sed -n '3,$p' "$TEST_TMP/hist.good"; } >"$HIST"
refused "schema history $HIST:1: shop.schema.jsonl: record 0 does not authenticate"
sed 2d "$TEST_TMP/hist.good" >"$HIST"
refused "schema history $HIST:2: shop.schema.jsonl: record 1 does not authenticate"
{ cat "$TEST_TMP/hist.good"; echo '{"table":"public.customer_secrets","version":99,"columns":[]}'; } >"$HIST"
refused "encrypted and plain-text lines are mixed: the file was altered"
cp "$TEST_TMP/hist.good" "$HIST"
config ""
refused "the file is encrypted but encryption.keys is not configured"
log "edited, swapped, deleted and injected lines and a missing key config: all refused"

# 3. Rotation: k2 first, k1 kept.
config "$K2
$K1"
run_until_equal pg_psql -c "ALTER TABLE customer_secrets ADD COLUMN note text" \
  -c "INSERT INTO customer_secrets VALUES (52, 'c52', 'h', 'e', 'n')"
last=$(wc -l <"$HIST")
((last > n)) || fail "no line was added after the rotation"
[[ $(key_id_of_line 1) == k1 && $(key_id_of_line "$last") == k2 ]] ||
  fail "key ids: first line $(key_id_of_line 1), last $(key_id_of_line "$last") (expected k1, k2)"
config "$K2"
refused "record 0 was sealed with key id 'k1', which is not in encryption.keys"
log "rotation: old lines under k1 read, new lines under k2; without k1 the error names it"
