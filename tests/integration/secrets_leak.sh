#!/usr/bin/env bash
# secrets_leak.sh — no secret odsync is given ever shows up in what it writes (docs/SECURITY.md).
#
# Secrets (each a random value handed in through ${env:} or ${file:}): the source's database
# password (the server checks it: scram-sha-256 for a dedicated role), the admin bearer token, the
# JWT HS256 secret, the pseudonymize key and an encryption key; plus a wrong password for the
# failing-connection case. odsync runs a postgres -> sqlite pipeline (one table plain, one
# pseudonymized) with the admin API, first with text logs, then with JSON logs. Collected and
# grepped for every secret value (none may appear):
#  - every log line (text and JSON runs), the output of `odsync check`;
#  - /status (json, text, with history), /metrics, /readyz, the dashboard page, 401 and 403 bodies;
#  - the errors of a connection with a wrong password (check and run) and to a closed port;
#  - a config error where a secret is put in the wrong place (log_level: ${env:...});
#  - every file in the state directory, and the sink database.
# The runs must do real work: the plain table ends equal to the source (od_compare), and the
# pseudonymized one holds every row with tokens instead of names.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/sec.sh"

test_init secrets_leak
command -v curl >/dev/null || fail "curl not installed (scripts/setup.sh installs it)"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

rnd() { openssl rand -hex 16; }
export ODSYNC_S_DBPW="dbpw-$(rnd)"
export ODSYNC_S_BADPW="badpw-$(rnd)"
export ODSYNC_S_TOKEN="token-$(rnd)"
export ODSYNC_S_JWT="jwtsecret-$(rnd)$(rnd)"
export ODSYNC_S_PSEUDO="pseudo-$(rnd)"
ODSYNC_S_ENC=$(openssl rand -hex 32)
SECRETS=("$ODSYNC_S_DBPW" "$ODSYNC_S_BADPW" "$ODSYNC_S_TOKEN" "$ODSYNC_S_JWT" "$ODSYNC_S_PSEUDO" "$ODSYNC_S_ENC")
OUT=$TEST_TMP/out
mkdir -p "$OUT"
printf '%s\n' "$ODSYNC_S_ENC" >"$TEST_TMP/enc.key"
chmod 600 "$TEST_TMP/enc.key"

pg_start shop
pg_psql -c "CREATE ROLE app LOGIN SUPERUSER REPLICATION PASSWORD '$ODSYNC_S_DBPW'"
pg_hba_prepend "host replication app 127.0.0.1/32 scram-sha-256"
pg_hba_prepend "host all app 127.0.0.1/32 scram-sha-256"
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, v text)"
pg_psql -c "CREATE TABLE people (id int PRIMARY KEY, name text)"
pg_psql -c "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 300) g"
pg_psql -c "INSERT INTO people SELECT g, 'Person ' || g FROM generate_series(1, 50) g"
SINK_DB=$TEST_TMP/out.db
APORT=$(pg_free_port)
ADMIN=http://127.0.0.1:$APORT
DSN_OK="host=127.0.0.1 port=$PGPORT dbname=shop user=app password=$ODSYNC_S_DBPW"
export ODSYNC_S_DSN=$DSN_OK

config() { # FILE LOG_FORMAT DSN_REF
  cat >"$1" <<YAML
state_dir: $TEST_TMP/state
log: { format: $2 }
encryption:
  keys:
    - { id: k1, key: "\${file:$TEST_TMP/enc.key}" }
admin:
  listen: "127.0.0.1:$APORT"
  tokens: [{ token: "\${env:ODSYNC_S_TOKEN}", role: viewer }]
  jwt: { algorithm: HS256, secret: "\${env:ODSYNC_S_JWT}" }
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$3", tables: [public.items, public.people], reconnect_max_ms: 500 }
    sink: { type: sqlite, path: $SINK_DB }
    transforms:
      - { type: pseudonymize, tables: [public.people], columns: [name], prefix: p_, key: "\${env:ODSYNC_S_PSEUDO}" }
YAML
}

auth=(-H "Authorization: Bearer $ODSYNC_S_TOKEN")
collect() { # NAME: every page of the admin API
  local n=$1
  curl -s --max-time 10 "${auth[@]}" "$ADMIN/status" >"$OUT/$n.status.json"
  curl -s --max-time 10 "${auth[@]}" "$ADMIN/status?format=text" >"$OUT/$n.status.txt"
  curl -s --max-time 10 "${auth[@]}" "$ADMIN/status?history=1" >"$OUT/$n.status.hist"
  curl -s --max-time 10 "${auth[@]}" "$ADMIN/metrics" >"$OUT/$n.metrics"
  curl -s --max-time 10 "$ADMIN/readyz" >"$OUT/$n.readyz"
  curl -s --max-time 10 "$ADMIN/" >"$OUT/$n.dashboard"
  curl -s --max-time 10 -H "Authorization: Bearer $ODSYNC_S_JWT" "$ADMIN/status" >"$OUT/$n.401"
  curl -s --max-time 10 -X POST "${auth[@]}" "$ADMIN/pipelines/shop/pause" >"$OUT/$n.403"
  grep -q '"name":"shop"' "$OUT/$n.status.json" || fail "$n: /status did not answer with the pipeline"
  grep -q 'odsync_changes_applied_total' "$OUT/$n.metrics" || fail "$n: /metrics did not answer"
  grep -q 'authentication required' "$OUT/$n.401" || fail "$n: a JWT secret used as a token was not refused"
  grep -q 'forbidden' "$OUT/$n.403" || fail "$n: a viewer could pause"
}

# Run 1: text logs; run 2: JSON logs. Each with more rows.
for fmt in text json; do
  config "$TEST_TMP/$fmt.yaml" "$fmt" '${env:ODSYNC_S_DSN}'
  "$ODSYNC_BIN" check -c "$TEST_TMP/$fmt.yaml" >"$OUT/check-$fmt.out" 2>&1 || fail "odsync check failed: $(cat "$OUT/check-$fmt.out")"
  odsync_start "$TEST_TMP/$fmt.yaml" "$OUT/run-$fmt.log"
  wait_for "[[ \$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/healthz) == 200 ]]" 30 || fail "admin server did not start"
  wait_slot_active odsync_shop 60
  base=$([[ $fmt == text ]] && echo 1000 || echo 2000)
  pg_psql -c "INSERT INTO items SELECT g, 'w' || g FROM generate_series($base, $base + 199) g"
  pg_psql -c "INSERT INTO people SELECT g, 'Late ' || g FROM generate_series($base, $base + 9) g"
  compare() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$SINK_DB" --table public.items; }
  wait_equal 60
  want=$(pg_psql -c "SELECT count(*) FROM people")
  wait_for "[[ \$(sqlite3 $SINK_DB 'SELECT count(*) FROM people') == $want ]]" 60 || fail "people rows missing in the sink"
  [[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM people WHERE name LIKE 'Person %' OR name LIKE 'Late %'") == 0 ]] ||
    fail "names arrived unpseudonymized"
  collect "$fmt"
  odsync_stop
  if [[ $fmt == json ]]; then
    while IFS= read -r line; do
      [[ "$line" == "==="* || "$line" == "{"*"}" ]] || fail "a JSON-format log line is not a JSON object: $line"
    done <"$OUT/run-json.log"
  fi
  log "$fmt logs: synced (items equal, $want people pseudonymized), admin pages collected"
done

# Failing connections: a wrong password (the server answers "password authentication failed"),
# and a closed port.
export ODSYNC_S_DSN_BAD="host=127.0.0.1 port=$PGPORT dbname=shop user=app password=$ODSYNC_S_BADPW"
config "$TEST_TMP/bad.yaml" text '${env:ODSYNC_S_DSN_BAD}'
"$ODSYNC_BIN" check -c "$TEST_TMP/bad.yaml" >"$OUT/check-badpw.out" 2>&1 && fail "check passed with a wrong password"
grep -q "password authentication failed" "$OUT/check-badpw.out" || fail "check did not report the failed password: $(cat "$OUT/check-badpw.out")"
rc=0
timeout 120 "$ODSYNC_BIN" run -c "$TEST_TMP/bad.yaml" >"$OUT/run-badpw.log" 2>&1 </dev/null || rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || fail "run with a wrong password: exit $rc (expected a refusal)"
grep -q "password authentication failed" "$OUT/run-badpw.log" || fail "run did not report the failed password"
closed=$(pg_free_port)
export ODSYNC_S_DSN_CLOSED="host=127.0.0.1 port=$closed dbname=shop user=app password=$ODSYNC_S_DBPW connect_timeout=2"
config "$TEST_TMP/closed.yaml" json '${env:ODSYNC_S_DSN_CLOSED}'
"$ODSYNC_BIN" check -c "$TEST_TMP/closed.yaml" >"$OUT/check-closed.out" 2>&1 && fail "check passed against a closed port"
grep -qi "connection refused\|failed" "$OUT/check-closed.out" || fail "check against a closed port said: $(cat "$OUT/check-closed.out")"
# A secret put where it does not belong: the config error must not quote it.
sed "s|^log: { format: text }|log_level: \"\${env:ODSYNC_S_DBPW}\"|" "$TEST_TMP/text.yaml" >"$TEST_TMP/misplaced.yaml"
"$ODSYNC_BIN" check -c "$TEST_TMP/misplaced.yaml" >"$OUT/check-misplaced.out" 2>&1 && fail "a secret log_level was accepted"
grep -q "not shown" "$OUT/check-misplaced.out" || fail "misplaced secret: $(cat "$OUT/check-misplaced.out")"
log "failing connections and a misplaced secret: errors collected"

# The state directory and the sink.
cp -r "$TEST_TMP/state" "$OUT/state"
cp "$SINK_DB" "$OUT/sink.db"
nfiles=$(find "$OUT" -type f | wc -l)
((nfiles >= 25)) || fail "only $nfiles outputs collected"
for i in "${!SECRETS[@]}"; do
  if grep -rlaF "${SECRETS[$i]}" "$OUT" >"$TEST_TMP/hits"; then
    fail "secret #$i appears in: $(tr '\n' ' ' <"$TEST_TMP/hits")"
  fi
done
log "none of ${#SECRETS[@]} secrets appears in $nfiles collected outputs (logs, pages, errors, state, sink)"
