#!/usr/bin/env bash
# pg_tls.sh — PostgreSQL source and sink over TLS with sslmode=verify-full (docs/SECURITY.md).
#
# The test makes a CA and a server certificate for DNS:localhost only (openssl), turns ssl on in a
# source and a sink server, and makes both refuse every connection without TLS (pg_hba hostnossl
# reject, replication included). Asserts:
#  - odsync syncs postgres -> postgres through DSNs with sslmode=verify-full sslrootcert=CA
#    host=localhost: snapshot and stream, target equal to source row for row;
#  - its connections (walsender and sink session) are TLS connections (pg_stat_ssl);
#  - the same DSN by 127.0.0.1 (not a name in the certificate) is refused with a clear error that
#    names the host name mismatch, for the source and for the sink (odsync check);
#  - a DSN whose sslrootcert is another CA is refused (certificate verify failed);
#  - without TLS (sslmode=disable) the servers refuse (proving the hba rules hold).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/sec.sh"

test_init pg_tls
command -v openssl >/dev/null || fail "openssl not installed (scripts/setup.sh installs it)"
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

CERTS=$TEST_TMP/certs
mkdir -p "$CERTS" "$TEST_TMP/other"
sec_make_ca "$CERTS" || fail "cannot make the test CA"
sec_make_cert "$CERTS" server "DNS:localhost" || fail "cannot make the server certificate"
sec_make_ca "$TEST_TMP/other" || fail "cannot make the second CA"
chmod 644 "$CERTS/ca.pem"

pg_start_pair shop warehouse
DST_DIR=${PG_STARTED_DIRS[0]}
SRC_DIR=${PG_STARTED_DIRS[1]}

# ssl on, and TLS required for every TCP connection (replication too).
enable_tls() {
  local dir=$1 port=$2
  cp "$CERTS/server.pem" "$CERTS/server.key" "$dir/data/"
  chown "$PG_TEST_USER" "$dir/data/server.pem" "$dir/data/server.key"
  chmod 600 "$dir/data/server.key"
  { printf 'hostnossl all all 127.0.0.1/32 reject\nhostnossl replication all 127.0.0.1/32 reject\n'
    cat "$dir/data/pg_hba.conf"; } >"$dir/data/pg_hba.new"
  cat "$dir/data/pg_hba.new" >"$dir/data/pg_hba.conf"
  PGPORT=$port PGDATABASE=postgres pg_psql -c "ALTER SYSTEM SET ssl = on" \
    -c "ALTER SYSTEM SET ssl_cert_file = 'server.pem'" -c "ALTER SYSTEM SET ssl_key_file = 'server.key'" \
    -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "[[ \$(PGPORT=$port PGDATABASE=postgres pg_psql -c 'SHOW ssl') == on ]]" 30 || fail "ssl did not turn on"
}
enable_tls "$SRC_DIR" "$SRC_PORT"
enable_tls "$DST_DIR" "$DST_PORT"

rc=0
psql "host=127.0.0.1 port=$SRC_PORT dbname=shop user=postgres sslmode=disable" -XAtc "SELECT 1" >/dev/null 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "the source server accepted a connection without TLS"
tls() { echo "host=$1 port=$2 dbname=$3 user=postgres sslmode=verify-full sslrootcert=${4:-$CERTS/ca.pem}"; }
[[ $(psql "$(tls localhost "$SRC_PORT" shop)" -XAtc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == t ]] ||
  fail "psql with verify-full did not get a TLS session"
log "source and sink servers: ssl on, non-TLS refused; psql verify-full by localhost works"

pg_psql -c "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2), opened date)"
pg_psql -c "INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.25, date '2024-01-01' + g FROM generate_series(1, 500) g"

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(tls localhost "$SRC_PORT" shop)", tables: [public.accounts] }
    sink: { type: postgres, dsn: "$(tls localhost "$DST_PORT" warehouse)" }
YAML
TABLES=(public.accounts)
compare_pg() { "$OD_COMPARE_PG" --source "$(tls localhost "$SRC_PORT" shop)" --target "$(tls localhost "$DST_PORT" warehouse)" --table public.accounts; }
wait_equal_pg() {
  local deadline=$(($(date +%s) + $1)) out
  while true; do
    if out=$(compare_pg 2>&1); then echo "$out"; return 0; fi
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "target not equal to source after $1 s"; }
    sleep 1
  done
}

odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 90
wait_equal_pg 90
pg_psql -c "INSERT INTO accounts SELECT g, 'late ' || g, g, date '2025-01-01' FROM generate_series(501, 800) g"
pg_psql -c "UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0"
pg_psql -c "DELETE FROM accounts WHERE id % 11 = 0"
wait_equal_pg 90
src_tls=$(pg_psql -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                      WHERE a.application_name LIKE 'odsync_shop%' AND s.ssl")
dst_tls=$(PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a
                      USING (pid) WHERE a.application_name LIKE 'odsync_shop%' AND s.ssl")
((src_tls >= 1)) || fail "no odsync connection to the source uses TLS (pg_stat_ssl)"
((dst_tls >= 1)) || fail "no odsync connection to the sink uses TLS (pg_stat_ssl)"
odsync_stop
log "synced through verify-full (source TLS sessions: $src_tls, sink: $dst_tls); target equal to source"

# Wrong host name: the certificate names localhost only.
check_refused() {
  local what=$1 want=$2 src=$3 dst=$4 out rc=0
  cat >"$TEST_TMP/bad.yaml" <<YAML
state_dir: $TEST_TMP/state-bad
pipelines:
  - name: bad
    source: { type: postgres, dsn: "$src", tables: [public.accounts] }
    sink: { type: postgres, dsn: "$dst" }
YAML
  out=$(timeout 120 "$ODSYNC_BIN" check -c "$TEST_TMP/bad.yaml" 2>&1 </dev/null) || rc=$?
  [[ $rc -ne 0 ]] || fail "$what: odsync check passed ($out)"
  grep -qF "$want" <<<"$out" || fail "$what: the error does not say '$want': $out"
  log "$what: refused: $(grep -F "$want" <<<"$out" | head -1)"
}
check_refused "source by 127.0.0.1" 'does not match host name "127.0.0.1"' \
  "$(tls 127.0.0.1 "$SRC_PORT" shop)" "$(tls localhost "$DST_PORT" warehouse)"
check_refused "sink by 127.0.0.1" 'does not match host name "127.0.0.1"' \
  "$(tls localhost "$SRC_PORT" shop)" "$(tls 127.0.0.1 "$DST_PORT" warehouse)"
check_refused "source with another CA" "certificate verify failed" \
  "$(tls localhost "$SRC_PORT" shop "$TEST_TMP/other/ca.pem")" "$(tls localhost "$DST_PORT" warehouse)"
check_refused "source without TLS" "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"postgres\", database \"shop\", no encryption" \
  "host=localhost port=$SRC_PORT dbname=shop user=postgres sslmode=disable" "$(tls localhost "$DST_PORT" warehouse)"
