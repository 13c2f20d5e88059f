# shellcheck shell=bash
# tests/env/sec.sh — certificates and tokens for the security tests (source this file; bash only).
#
#   sec_make_ca DIR                 a test CA: DIR/ca.pem, DIR/ca.key
#   sec_make_cert DIR NAME SAN      a server certificate signed by DIR's CA for SAN (e.g.
#                                   "DNS:localhost"): DIR/NAME.pem, DIR/NAME.key
#   b64url                          stdin -> base64url without padding
#   jwt_hs256 SECRET HEADER PAYLOAD a JWT signed with HMAC-SHA-256 (HEADER/PAYLOAD are JSON text)
#   jwt_hs256_hexkey HEXKEY H P     the same with a key given in hex (any bytes)
#   jwt_rs256 KEYFILE HEADER PAYLOAD a JWT signed with RSA-SHA-256 by the PEM private key
#
# Everything is made with the openssl command line (scripts/setup.sh installs it).

sec_make_ca() {
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=odsync test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1
}

sec_make_cert() {
  local dir=$1 name=$2 san=$3
  openssl req -newkey rsa:2048 -nodes -subj "/CN=odsync test server" -keyout "$dir/$name.key" \
    -out "$dir/$name.csr" >/dev/null 2>&1 || return 1
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    "$san" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/$name.ext" -out "$dir/$name.pem" >/dev/null 2>&1
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

jwt_hs256_hexkey() {
  local hex=$1 h p s
  h=$(printf '%s' "$2" | b64url)
  p=$(printf '%s' "$3" | b64url)
  s=$(printf '%s' "$h.$p" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hex" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

jwt_hs256() { jwt_hs256_hexkey "$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')" "$2" "$3"; }

jwt_rs256() {
  local key=$1 h p s
  h=$(printf '%s' "$2" | b64url)
  p=$(printf '%s' "$3" | b64url)
  s=$(printf '%s' "$h.$p" | openssl dgst -sha256 -sign "$key" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}
