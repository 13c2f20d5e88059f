#!/usr/bin/env bash
# clickhouse_tls.sh — the ClickHouse sink over HTTPS with a private CA (docs/SECURITY.md).
#
# The test makes a CA and a certificate for DNS:localhost (openssl) and gives ClickHouse 18.16 an
# https_port with it. Asserts:
#  - odsync (postgres -> clickhouse, url https://localhost:PORT, ca_file = the test CA) copies the
#    snapshot and streams inserts, updates and deletes; the _current view equals the source row
#    for row;
#  - the same sink by https://127.0.0.1:PORT (not a name in the certificate) and without ca_file
#    (the system's CAs do not know the test CA) is refused by `odsync check` with curl's reason.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/clickhouse.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/sec.sh"

test_init clickhouse_tls
test_extra_cleanup() { ch_cleanup_all; }
command -v openssl >/dev/null || fail "openssl not installed (scripts/setup.sh installs it)"
CERTS=$TEST_TMP/certs
mkdir -p "$CERTS"
sec_make_ca "$CERTS" || fail "cannot make the test CA"
sec_make_cert "$CERTS" server "DNS:localhost" || fail "cannot make the server certificate"

pg_start shop
ch_start || fail "clickhouse-server did not start"
HPORT=$(pg_free_port)
mkdir -p "$CH_DIR/config.d"
cat >"$CH_DIR/config.d/tls.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <https_port>$HPORT</https_port>
  <openSSL><server>
    <certificateFile>$CERTS/server.pem</certificateFile>
    <privateKeyFile>$CERTS/server.key</privateKeyFile>
    <verificationMode>none</verificationMode>
    <loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3</disableProtocols>
    <preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>
</yandex>
XML
ch_stop_server
ch_restart_server || fail "clickhouse-server did not restart with https_port"
wait_for "[[ \$(curl -s --max-time 5 --cacert $CERTS/ca.pem 'https://localhost:$HPORT/?query=SELECT%201') == 1 ]]" 60 ||
  fail "ClickHouse does not answer HTTPS on $HPORT: $(tail -5 "$CH_DIR/error.log")"
log "ClickHouse $(ch_query 'SELECT version()') serves HTTPS on $HPORT with the test certificate"

DB=shop_tls
pg_psql -c "CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(10,2))"
pg_psql -c "INSERT INTO orders SELECT g, 'n' || g, g * 0.5 FROM generate_series(1, 400) g"
sink_yaml() { # URL [CA_FILE]
  printf '      type: clickhouse\n      url: %s\n      database: %s\n      user: odsync\n      password: ${env:CH_PASSWORD}\n' "$1" "$DB"
  [[ -z "${2:-}" ]] || printf '      ca_file: %s\n' "$2"
}
config() { # FILE URL [CA_FILE]
  { printf 'state_dir: %s/state\npipelines:\n  - name: shop\n' "$TEST_TMP"
    printf '    source: { type: postgres, dsn: "%s", tables: [public.orders] }\n    sink:\n' "$(pg_dsn)"
    sink_yaml "$2" "${3:-}"
    printf '    batch: { max_delay_ms: 100 }\n'; } >"$1"
}
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
config "$CONFIG" "https://localhost:$HPORT" "$CERTS/ca.pem"
"$ODSYNC_BIN" check -c "$CONFIG" >"$TEST_TMP/check.out" 2>&1 || fail "odsync check over HTTPS failed: $(cat "$TEST_TMP/check.out")"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 90
pg_psql -c "INSERT INTO orders SELECT g, 'late ' || g, g FROM generate_series(401, 600) g"
pg_psql -c "UPDATE orders SET note = note || '!' WHERE id % 5 = 0"
pg_psql -c "DELETE FROM orders WHERE id % 9 = 0"
same() {
  ch_compare_table orders "SELECT id, note, amount FROM orders ORDER BY id" \
    "SELECT id, note, amount FROM $DB.orders_current ORDER BY id" >/dev/null 2>&1
}
wait_for same 90 || { ch_compare_table orders "SELECT id, note, amount FROM orders ORDER BY id" \
  "SELECT id, note, amount FROM $DB.orders_current ORDER BY id" || true; fail "ClickHouse view not equal to the source"; }
odsync_stop
rows=$(ch_query "SELECT count() FROM $DB.orders_current")
[[ "$rows" == $(pg_psql -c "SELECT count(*) FROM orders") ]] || fail "row counts differ: $rows"
log "synced over HTTPS with ca_file: $rows rows, view equal to the source"

refused() { # WHAT WANT URL [CA]
  local what=$1 want=$2 rc=0 out
  config "$TEST_TMP/bad.yaml" "$3" "${4:-}"
  sed -i "s|state_dir: .*|state_dir: $TEST_TMP/state-bad|" "$TEST_TMP/bad.yaml"
  out=$(timeout 120 "$ODSYNC_BIN" check -c "$TEST_TMP/bad.yaml" 2>&1 </dev/null) || rc=$?
  [[ $rc -ne 0 ]] || fail "$what: odsync check passed"
  grep -qiE "$want" <<<"$out" || fail "$what: the error does not say '$want': $out"
  log "$what: refused: $(grep -iE "$want" <<<"$out" | head -1 | cut -c1-240)"
}
refused "by 127.0.0.1" "no alternative certificate subject name matches|does not match" "https://127.0.0.1:$HPORT" "$CERTS/ca.pem"
refused "without ca_file" "certificate|issuer" "https://localhost:$HPORT"
