#!/usr/bin/env bash
# admin_auth.sh — authentication, roles and HTTPS on the admin API of a running postgres -> sqlite
# pipeline (docs/SECURITY.md).
#
# Asserts:
#  - a config listening beyond loopback (0.0.0.0) without tokens or jwt is refused before anything
#    starts, with a message naming admin.listen and what to add;
#  - over HTTPS (admin.tls, a certificate the test makes for DNS:localhost): curl verifying against
#    the test CA gets answers; without the CA it refuses the certificate; plain HTTP gets no page;
#  - the token matrix with static tokens (viewer, operator, admin) and HS256 JWTs: missing,
#    non-Bearer, unknown token -> 401 with WWW-Authenticate; viewer may read /status and /metrics
#    but not pause (403); operator pauses (rows inserted meanwhile do not arrive; /status shows
#    paused) and resumes (they arrive, sink equal to source), requests a snapshot (202); reload
#    needs admin (operator 403; admin 200, the same file: the pipeline unchanged); JWTs expired, forged (other secret),
#    alg none, without exp, nbf in the future, wrong audience, wrong issuer, an unknown role and an
#    RS256 token where HS256 is configured -> 401; a valid viewer JWT cannot pause (403); a valid
#    operator JWT can; /healthz needs nothing; GET on a POST route -> 405;
#  - every denied request and every allowed POST is recorded (audit log records `admin_request`
#    and log lines "admin: denied" /
#    "admin: allowed" with who and path), and no token or JWT secret appears in the log;
#  - a second run with RS256 (public key file): a valid RS256 operator JWT pauses; the same claims
#    signed HS256 with the public key's PEM as the HMAC secret (algorithm confusion) -> 401.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/sec.sh"

test_init admin_auth
command -v curl >/dev/null || fail "curl not installed (scripts/setup.sh installs it)"
command -v openssl >/dev/null || fail "openssl not installed (scripts/setup.sh installs it)"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g"

CERTS=$TEST_TMP/certs
mkdir -p "$CERTS"
sec_make_ca "$CERTS" || fail "cannot make the test CA"
sec_make_cert "$CERTS" admin "DNS:localhost" || fail "cannot make the admin certificate"

export ODSYNC_T_VIEWER=viewer-$RANDOM$RANDOM-0123456789abcdef
export ODSYNC_T_OPERATOR=operator-$RANDOM$RANDOM-0123456789abcdef
export ODSYNC_T_ADMIN=admin-$RANDOM$RANDOM-0123456789abcdef
export ODSYNC_T_JWT=jwt-secret-$RANDOM$RANDOM-0123456789abcdef0123456789

# 1. Beyond loopback without credentials: refused at once.
cat >"$TEST_TMP/open.yaml" <<YAML
state_dir: $TEST_TMP/state-open
admin: { listen: "0.0.0.0:$APORT" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $TEST_TMP/never.db }
YAML
rc=0
out=$("$ODSYNC_BIN" run -c "$TEST_TMP/open.yaml" 2>&1 </dev/null) || rc=$?
[[ $rc -ne 0 ]] || fail "odsync started with admin.listen 0.0.0.0 and no authentication"
grep -q "admin.listen '0.0.0.0:$APORT' listens beyond loopback, where the admin API requires authentication" <<<"$out" ||
  fail "the refusal does not say why: $out"
[[ ! -e "$TEST_TMP/never.db" ]] || fail "the sink was created although the config was refused"
log "beyond loopback without credentials: refused ($out)"

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin:
  listen: "localhost:$APORT"
  tls: { cert: $CERTS/admin.pem, key: $CERTS/admin.key }
  tokens:
    - { token: "\${env:ODSYNC_T_VIEWER}", role: viewer }
    - { token: "\${env:ODSYNC_T_OPERATOR}", role: operator }
    - { token: "\${env:ODSYNC_T_ADMIN}", role: admin }
  jwt: { algorithm: HS256, secret: "\${env:ODSYNC_T_JWT}", audience: odsync-admin, issuer: test-idp }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $SINK_DB }
YAML

ADMIN=https://localhost:$APORT
C=(curl -s --max-time 10 --cacert "$CERTS/ca.pem")
code() { "${C[@]}" -o "$TEST_TMP/body" -D "$TEST_TMP/headers" -w '%{http_code}' "$@"; }
# expect CODE DESCRIPTION CURL-ARGS...: the answer's status must be CODE.
expect() {
  local want=$1 what=$2 got
  shift 2
  got=$(code "$@") || true
  [[ "$got" == "$want" ]] || fail "$what: HTTP $got, expected $want (body: $(head -c 300 "$TEST_TMP/body" 2>/dev/null))"
  log "  $what -> $got $(head -c 120 "$TEST_TMP/body" | tr '\n' ' ')"
}
bearer() { printf 'Authorization: Bearer %s' "$1"; }

odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(code $ADMIN/healthz) == 200 ]]" 30 || fail "/healthz over HTTPS did not answer 200: $(tail -5 "$LOG")"
wait_slot_active odsync_shop 60
wait_equal 60
grep -q "admin: serving https://127.0.0.1:$APORT/.*authentication required" "$LOG" || fail "the start line does not say https and authentication"

# 2. HTTPS: verified against the test CA; refused without it; plain HTTP gets no page.
rc=0; curl -s --max-time 10 -o /dev/null "https://localhost:$APORT/healthz" || rc=$?
[[ $rc -eq 60 ]] || fail "curl without the test CA: exit $rc, expected 60 (certificate not trusted)"
rc=0; plain=$(curl -s --max-time 10 "http://127.0.0.1:$APORT/healthz") || rc=$?
[[ "$plain" != "ok" ]] || fail "plain HTTP was answered on the HTTPS port"
log "HTTPS: verified with the test CA; untrusted without it (curl 60); plain HTTP unanswered (curl $rc)"

# odsync status -c: https from admin.tls, the token from ODSYNC_ADMIN_TOKEN, the CA from ODSYNC_ADMIN_CACERT.
rc=0; out=$(ODSYNC_ADMIN_CACERT=$CERTS/ca.pem "$ODSYNC_BIN" status -c "$CONFIG" 2>&1) || rc=$?
[[ $rc -eq 1 ]] && grep -q "HTTP 401" <<<"$out" && grep -q "set ODSYNC_ADMIN_TOKEN" <<<"$out" || fail "odsync status without a token: exit $rc: $out"
out=$(ODSYNC_ADMIN_TOKEN=$ODSYNC_T_VIEWER ODSYNC_ADMIN_CACERT=$CERTS/ca.pem "$ODSYNC_BIN" status -c "$CONFIG" 2>&1) ||
  fail "odsync status with a viewer token failed: $out"
grep -q "shop" <<<"$out" || fail "odsync status did not show the pipeline: $out"
log "odsync status -c over HTTPS: 401 without a token, the table with ODSYNC_ADMIN_TOKEN"

# 3. Static tokens.
expect 200 "healthz without credentials" "$ADMIN/healthz"
expect 200 "dashboard page (no data) without credentials" "$ADMIN/"
expect 401 "status without credentials" "$ADMIN/status"
grep -qi '^WWW-Authenticate: Bearer' "$TEST_TMP/headers" || fail "401 without WWW-Authenticate: Bearer"
expect 401 "metrics with Basic auth" -H "Authorization: Basic dXNlcjpwYXNz" "$ADMIN/metrics"
expect 401 "status with an unknown token" -H "$(bearer not-a-configured-token-123456)" "$ADMIN/status"
expect 401 "pause without credentials" -X POST "$ADMIN/pipelines/shop/pause"
expect 200 "status as viewer" -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/status"
grep -q '"paused":false' "$TEST_TMP/body" || fail "/status does not show paused:false"
expect 200 "metrics as viewer" -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/metrics"
expect 403 "pause as viewer" -X POST -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/pipelines/shop/pause"
expect 405 "GET on the pause route" -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/pipelines/shop/pause"
expect 404 "pause an unknown pipeline" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/pipelines/nope/pause"
expect 200 "pause as operator" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/pipelines/shop/pause"
expect 200 "status after pause" -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/status"
grep -q '"paused":true' "$TEST_TMP/body" || fail "/status does not show paused:true after pause"
pg_psql -c "INSERT INTO items SELECT g, 'p' || g FROM generate_series(101, 150) g"
# Paused: the 50 new rows must not arrive (while the source has them for 5 s).
for _ in $(seq 1 10); do
  n=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM items")
  [[ "$n" == 100 ]] || fail "rows arrived while the pipeline was paused (sink has $n)"
  sleep 0.5
done
expect 200 "resume as operator" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/pipelines/shop/resume"
wait_equal 60
log "pause held 50 rows back for 5 s; after resume the sink equals the source"
expect 202 "snapshot request as operator" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" \
  "$ADMIN/pipelines/shop/snapshot?tables=public.items"
grep -q '"snapshot_requested":"public.items"' "$TEST_TMP/body" || fail "snapshot answer does not name the table"
expect 403 "config reload as operator" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/config/reload"
expect 200 "config reload as admin (the same file)" -X POST -H "$(bearer "$ODSYNC_T_ADMIN")" "$ADMIN/config/reload"
grep -q '"unchanged":\["shop"\].*"admin_credentials":"unchanged".*"result":"applied"' "$TEST_TMP/body" ||
  fail "reloading the same file did not keep the pipeline untouched: $(cat "$TEST_TMP/body")"

# 4. JWTs (HS256).
now=$(date +%s)
H='{"alg":"HS256","typ":"JWT"}'
claims() { printf '{"sub":"%s","role":"%s","aud":%s,"iss":"%s","exp":%s%s}' "$1" "$2" "$3" "$4" "$5" "${6:-}"; }
good_op=$(claims alice operator '"odsync-admin"' test-idp $((now + 600)))
expect 200 "JWT operator pauses" -X POST -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$good_op")")" \
  "$ADMIN/pipelines/shop/pause"
expect 200 "JWT operator (aud as a list) resumes" -X POST \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims alice operator '["x","odsync-admin"]' test-idp $((now + 600)))")")" \
  "$ADMIN/pipelines/shop/resume"
expect 200 "JWT viewer reads status" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims bob viewer '"odsync-admin"' test-idp $((now + 600)))")")" "$ADMIN/status"
expect 403 "JWT viewer pauses" -X POST \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims bob viewer '"odsync-admin"' test-idp $((now + 600)))")")" \
  "$ADMIN/pipelines/shop/pause"
expect 401 "JWT expired an hour ago" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims alice operator '"odsync-admin"' test-idp $((now - 3600)))")")" "$ADMIN/status"
grep -q "expired" "$TEST_TMP/body" || fail "the expired JWT's 401 does not say expired"
expect 401 "JWT forged (signed with another secret)" \
  -H "$(bearer "$(jwt_hs256 "another-secret-0123456789abcdef0123456789" "$H" "$good_op")")" "$ADMIN/status"
none_tok="$(printf '%s' '{"alg":"none","typ":"JWT"}' | b64url).$(printf '%s' "$good_op" | b64url)."
expect 401 "JWT alg none" -H "$(bearer "$none_tok")" "$ADMIN/status"
expect 401 "JWT alg none with a signature" -H "$(bearer "${none_tok}c2ln")" "$ADMIN/status"
expect 401 "JWT without exp" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" '{"sub":"a","role":"admin","aud":"odsync-admin","iss":"test-idp"}')")" "$ADMIN/status"
expect 401 "JWT nbf in an hour" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims a viewer '"odsync-admin"' test-idp $((now + 7200)) ",\"nbf\":$((now + 3600))")")")" "$ADMIN/status"
expect 401 "JWT wrong audience" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims a viewer '"other-api"' test-idp $((now + 600)))")")" "$ADMIN/status"
expect 401 "JWT wrong issuer" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims a viewer '"odsync-admin"' evil-idp $((now + 600)))")")" "$ADMIN/status"
expect 401 "JWT unknown role" \
  -H "$(bearer "$(jwt_hs256 "$ODSYNC_T_JWT" "$H" "$(claims a root '"odsync-admin"' test-idp $((now + 600)))")")" "$ADMIN/status"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTS/jwt.key" >/dev/null 2>&1
openssl pkey -in "$CERTS/jwt.key" -pubout -out "$CERTS/jwt.pub" >/dev/null 2>&1
expect 401 "JWT RS256 where HS256 is configured" \
  -H "$(bearer "$(jwt_rs256 "$CERTS/jwt.key" '{"alg":"RS256","typ":"JWT"}' "$good_op")")" "$ADMIN/status"
expect 200 "status after the JWT matrix (pipeline resumed)" -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/status"
grep -q '"paused":false' "$TEST_TMP/body" || fail "the pipeline is still paused"
odsync_stop

# 5. Every decision recorded; no credential in the log.
grep -q "admin: denied GET /status by anonymous@127.0.0.1 (role none): no credentials" "$LOG" || fail "denied request not recorded"
grep -q "admin: denied POST /pipelines/shop/pause by token#0@127.0.0.1 (role viewer): role viewer may not do this" "$LOG" ||
  fail "denied viewer pause not recorded"
grep -q "admin: allowed POST /pipelines/shop/pause by token#1@127.0.0.1 (role operator): pipeline paused" "$LOG" ||
  fail "allowed pause not recorded"
grep -q "admin: allowed POST /pipelines/shop/pause by jwt:alice@127.0.0.1 (role operator)" "$LOG" || fail "JWT pause not recorded"
grep -q "admin: allowed POST /pipelines/shop/snapshot by token#1@127.0.0.1 (role operator): snapshot requested: public.items" "$LOG" ||
  fail "snapshot request not recorded"
grep -q "admin: denied GET /status by anonymous@127.0.0.1 (role none): the JWT expired" "$LOG" || fail "expired JWT denial not recorded"
denied=$(grep -c "admin: denied" "$LOG")
[[ $denied == 18 ]] || fail "$denied denied requests recorded (the matrix above makes 18, with odsync status without a token)"
for s in "$ODSYNC_T_VIEWER" "$ODSYNC_T_OPERATOR" "$ODSYNC_T_ADMIN" "$ODSYNC_T_JWT"; do
  ! grep -qF "$s" "$LOG" || fail "a credential appears in the log"
done
# ...and in the audit log's process chain, which still verifies.
audit_denied=$(cat "$TEST_TMP"/state/audit/odsync-process* | grep '"kind":"admin_request"' | grep -c '"allowed":false' || true)
[[ $audit_denied == "$denied" ]] || fail "$audit_denied denied requests in the audit log, $denied in the log"
grep -h '"kind":"admin_request"' "$TEST_TMP"/state/audit/odsync-process* | grep_q '"path":"/pipelines/shop/pause","allowed":true' ||
  fail "the allowed pause is not in the audit log"
for s in "$ODSYNC_T_VIEWER" "$ODSYNC_T_OPERATOR" "$ODSYNC_T_ADMIN" "$ODSYNC_T_JWT"; do
  ! grep -rqF "$s" "$TEST_TMP/state/audit" || fail "a credential appears in the audit log"
done
"$ODSYNC_BIN" audit verify -c "$CONFIG" >"$TEST_TMP/verify.txt" 2>&1 || { cat "$TEST_TMP/verify.txt"; fail "audit verify failed"; }
log "decisions recorded ($denied denied, also in the audit log, which verifies); no credential in the log"

# 6. RS256 (plain HTTP this time), and the algorithm confusion attack.
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin:
  listen: "127.0.0.1:$APORT"
  jwt: { algorithm: RS256, public_key: $CERTS/jwt.pub, role_claim: odsync_role }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.items] }
    sink: { type: sqlite, path: $SINK_DB }
YAML
ADMIN=http://127.0.0.1:$APORT
C=(curl -s --max-time 10)
odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(code $ADMIN/healthz) == 200 ]]" 30 || fail "/healthz did not answer 200 (RS256 run)"
rs_claims=$(printf '{"sub":"carol","odsync_role":"operator","exp":%s}' $((now + 600)))
expect 200 "RS256 operator pauses" -X POST \
  -H "$(bearer "$(jwt_rs256 "$CERTS/jwt.key" '{"alg":"RS256","typ":"JWT"}' "$rs_claims")")" "$ADMIN/pipelines/shop/pause"
pubhex=$(od -An -tx1 <"$CERTS/jwt.pub" | tr -d ' \n')
expect 401 "HS256 signed with the RS256 public key (algorithm confusion)" -X POST \
  -H "$(bearer "$(jwt_hs256_hexkey "$pubhex" "$H" "$rs_claims")")" "$ADMIN/pipelines/shop/resume"
expect 401 "RS256 signed by another key" \
  -H "$(bearer "$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CERTS/other.key" >/dev/null 2>&1;
    jwt_rs256 "$CERTS/other.key" '{"alg":"RS256","typ":"JWT"}' "$rs_claims")")" "$ADMIN/status"
expect 200 "RS256 operator resumes" -X POST \
  -H "$(bearer "$(jwt_rs256 "$CERTS/jwt.key" '{"alg":"RS256","typ":"JWT"}' "$rs_claims")")" "$ADMIN/pipelines/shop/resume"
pg_psql -c "INSERT INTO items SELECT g, 'r' || g FROM generate_series(151, 160) g"
wait_equal 60
odsync_stop
log "RS256: verified; algorithm confusion refused; sink equal to source"
