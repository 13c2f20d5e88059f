#!/usr/bin/env bash
# redis_tls.sh — PostgreSQL -> Redis over TLS (redis-server's tls-port with a CA and certificates
# the test makes, tls-auth-clients yes): verify-full with a client certificate.
#
# Asserts:
#   - tls: true with tls_ca_file, a client certificate and tls_server_name: localhost: the initial
#     snapshot and a streamed workload (inserts, updates, deletes in multi-statement transactions,
#     several batches pipelined in MULTI/EXEC) arrive; every hash equals its source row, no key
#     missing or extra; the checkpoint is in Redis; SIGTERM exits 0; the password never shows;
#   - tls_server_name that the certificate does not name: `odsync check` fails naming the TLS
#     handshake, "certificate verify failed" and the name; nothing is written;
#   - a CA that did not sign the server's certificate: refused the same way;
#   - the TLS port without a client certificate (tls-auth-clients yes): refused, naming TLS;
#   - a plain (tls: false) connection to the TLS port fails with a message that says to set tls;
#   - a tls_* key without tls: true is a config error naming the key.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/redis.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/sec.sh"

test_init redis_tls
test_extra_cleanup() { redis_cleanup_all; }
command -v openssl >/dev/null || fail "openssl not installed (scripts/setup.sh installs it)"
CERTS=$TEST_TMP/certs
mkdir -p "$CERTS"
sec_make_ca "$CERTS" || fail "cannot make the test CA"
sec_make_cert "$CERTS" server "DNS:localhost,IP:127.0.0.1" || fail "cannot make the server certificate"
# A client certificate (clientAuth) from the same CA, and a second CA that signed nothing here.
openssl req -newkey rsa:2048 -nodes -subj "/CN=odsync test client" -keyout "$CERTS/client.key" \
  -out "$CERTS/client.csr" >/dev/null 2>&1 || fail "cannot make the client key"
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$CERTS/client.ext"
openssl x509 -req -in "$CERTS/client.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -CAcreateserial -days 2 \
  -extfile "$CERTS/client.ext" -out "$CERTS/client.pem" >/dev/null 2>&1 || fail "cannot sign the client certificate"
mkdir -p "$CERTS/other"
sec_make_ca "$CERTS/other" || fail "cannot make the second CA"

pg_start shop
TLS_PORT=$(pg_free_port)
REDIS_EXTRA_CONF="tls-port $TLS_PORT
tls-cert-file $CERTS/server.pem
tls-key-file $CERTS/server.key
tls-ca-cert-file $CERTS/ca.pem
tls-auth-clients yes"
redis_start || fail "redis-server did not start"
grep -q "tls" <<<"$(rcli CONFIG GET tls-port)" && [[ $(rcli CONFIG GET tls-port | tail -1) == "$TLS_PORT" ]] ||
  fail "redis-server is not listening for TLS on $TLS_PORT"
log "redis-server: plain port $REDIS_PORT (test's own commands), TLS port $TLS_PORT"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

pg_psql <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text, balance numeric(10,2), note text);
INSERT INTO customers SELECT g, 'name ' || g, g * 1.5, CASE WHEN g % 4 = 0 THEN NULL ELSE repeat('n', g % 50) END
  FROM generate_series(1, 2000) g;
SQL

# cfg FILE PORT TLS-KEYS...: one pipeline into Redis on PORT with the given sink keys.
cfg() {
  local file=$1 port=$2
  shift 2
  {
    cat <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.customers] }
    batch: { max_rows: 200 }
    sink:
      type: redis
      host: 127.0.0.1
      port: $port
      user: odsync
      password: \${env:REDIS_PASSWORD}
      prefix: app
      timeout_ms: 5000
YAML
    local k
    for k in "$@"; do echo "      $k"; done
  } >"$file"
}
GOOD=(
  "tls: true"
  "tls_ca_file: $CERTS/ca.pem"
  "tls_cert_file: $CERTS/client.pem"
  "tls_key_file: $CERTS/client.key"
  "tls_server_name: localhost"
)

# check_fails NAME EXPECTED-REGEX: `odsync check` on $TEST_TMP/NAME.yaml fails and says so.
check_fails() {
  local rc=0 out
  out=$("$ODSYNC_BIN" check -c "$TEST_TMP/$1.yaml" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || fail "$1: odsync check passed: $out"
  grep -Eq "$2" <<<"$out" || fail "$1: the error does not say '$2': $out"
  ! grep -qF "$REDIS_PASSWORD" <<<"$out" || fail "$1: the password appears in the error"
  log "$1 refused: $(grep -E "$2" <<<"$out" | head -1 | cut -c1-300)"
}

# 1. Refusals first (nothing may be written).
cfg "$TEST_TMP/wrongname.yaml" "$TLS_PORT" "tls: true" "tls_ca_file: $CERTS/ca.pem" "tls_cert_file: $CERTS/client.pem" \
  "tls_key_file: $CERTS/client.key" "tls_server_name: wrong.example.net"
check_fails wrongname "TLS handshake .*wrong.example.net.*certificate verify failed: hostname mismatch"
cfg "$TEST_TMP/wrongca.yaml" "$TLS_PORT" "tls: true" "tls_ca_file: $CERTS/other/ca.pem" "tls_cert_file: $CERTS/client.pem" \
  "tls_key_file: $CERTS/client.key" "tls_server_name: localhost"
check_fails wrongca "TLS handshake.*certificate verify failed: (unable to get local issuer certificate|self.signed)"
cfg "$TEST_TMP/nocert.yaml" "$TLS_PORT" "tls: true" "tls_ca_file: $CERTS/ca.pem" "tls_server_name: localhost"
check_fails nocert "redis sink .*TLS.*(certificate required|client certificates).*set tls_cert_file and tls_key_file"
cfg "$TEST_TMP/plain.yaml" "$TLS_PORT"
check_fails plain "if this port speaks TLS .*set tls: true"
cfg "$TEST_TMP/half.yaml" "$TLS_PORT" "tls_ca_file: $CERTS/ca.pem"
check_fails half "half.yaml:[0-9]+:[0-9]+: .*tls_ca_file: is set but tls is not"
# by IP: the certificate names 127.0.0.1 too, so verify-full by address passes.
cfg "$TEST_TMP/byip.yaml" "$TLS_PORT" "tls: true" "tls_ca_file: $CERTS/ca.pem" "tls_cert_file: $CERTS/client.pem" \
  "tls_key_file: $CERTS/client.key"
"$ODSYNC_BIN" check -c "$TEST_TMP/byip.yaml" >"$TEST_TMP/byip.out" 2>&1 || fail "verify-full by IP address failed: $(cat "$TEST_TMP/byip.out")"
[[ $(rcli DBSIZE) == 0 ]] || fail "a refused connection wrote $(rcli DBSIZE) keys"

# 2. Sync over TLS.
cfg "$CONFIG" "$TLS_PORT" "${GOOD[@]}"
compare_customers() {
  redis_compare customers "SELECT 'app:customers:' || id, id, name, balance, note FROM customers" 'app:customers:*' id name balance note
}
wait_redis_equal() {
  local deadline=$(($(date +%s) + $1)) out
  until out=$(compare_customers 2>&1); do
    odsync_running || fail "odsync exited while waiting for Redis"
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "Redis not equal to the source after $1 s"; }
    sleep 1
  done
}
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 90
wait_redis_equal 120
log "initial snapshot equal over TLS ($(rcli DBSIZE) keys)"
for it in $(seq 1 15); do
  pg_psql >/dev/null <<SQL
BEGIN;
INSERT INTO customers SELECT 10000 + $it * 100 + g, 'new', $it, NULL FROM generate_series(1, 50) g;
UPDATE customers SET balance = balance + 1, note = 'it $it' WHERE id % 15 = $it - 1;
DELETE FROM customers WHERE id BETWEEN $it * 20 AND $it * 20 + 4;
COMMIT;
SQL
done
wait_redis_equal 120
[[ -n "$(rcli HGET app:_odsync:checkpoint shop)" ]] || fail "no checkpoint in Redis"
odsync_stop
compare_customers || fail "Redis differs from the source after the stop"
! grep -qF "$REDIS_PASSWORD" "$LOG" || fail "the password appears in odsync's output"
grep -q "TLS" "$REDIS_LOG" && grep -qi "error accepting a client connection" "$REDIS_LOG" && log "(the server logged the refused handshakes)"
log "sync over TLS equal: $(pg_psql -c 'SELECT count(*) FROM customers') rows"
