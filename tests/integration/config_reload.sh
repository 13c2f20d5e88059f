#!/usr/bin/env bash
# config_reload.sh — reloading the config of a running `odsync run` (POST /config/reload, SIGHUP):
# two postgres -> sqlite pipelines, alpha and beta, admin API with viewer/operator/admin tokens.
#
# Asserts:
#  - while a workload inserts into alpha's table, a reload (admin token) that adds a table and a
#    mask transform to beta answers 200 naming alpha unchanged and beta restarted (source,
#    transforms); alpha is untouched: same walsender pid, odsync_sessions_total still 1, its
#    changes_applied counter keeps growing (never reset), no second snapshot; beta restarts from its
#    checkpoint, an incremental snapshot of the added table is requested (named in the answer) and
#    copies it; the new transform applies to changes after the reload;
#  - viewer and operator tokens get 403 on /config/reload, no token 401; nothing reloads;
#  - an invalid file (a misspelled key) is refused with 400 naming FILE:LINE and the key, and
#    SIGHUP with an invalid file logs the refusal: both pipelines keep their walsender pids and go
#    on streaming;
#  - SIGHUP with a valid file adding a pipeline gamma starts it (snapshot + stream) while alpha and
#    beta keep their pids; then a reload removing gamma stops it (its slot goes inactive);
#  - rotating the viewer token (a ${file:} reference) and reloading: the old token gets 401, the
#    new one 200, no pipeline restarts ("admin_credentials":"reloaded");
#  - every reload is a config_reload record in the hash-chained process audit log, with who, the
#    config hashes before/after (the file's SHA-256) and what changed; `odsync audit verify` passes;
#    no token appears in the log, the responses or the audit log;
#  - after a clean stop each sink equals its source row for row (od_compare), beta's masked
#    column holds the masked values for rows changed after the reload.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init config_reload
command -v curl >/dev/null || fail "curl not installed (scripts/setup.sh installs it)"
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"

pg_start reload
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
A_DB=$TEST_TMP/alpha.db
B_DB=$TEST_TMP/beta.db
G_DB=$TEST_TMP/gamma.db
pg_psql <<'SQL'
CREATE TABLE a_items (id int PRIMARY KEY, v text);
CREATE TABLE b_items (id int PRIMARY KEY, v text);
CREATE TABLE b_extra (id int PRIMARY KEY, n int);
CREATE TABLE g_items (id int PRIMARY KEY, v text);
INSERT INTO a_items SELECT g, 'a' || g FROM generate_series(1, 200) g;
INSERT INTO b_items SELECT g, 'secretvalue' || g FROM generate_series(1, 100) g;
INSERT INTO b_extra SELECT g, g * 3 FROM generate_series(1, 150) g;
INSERT INTO g_items SELECT g, 'g' || g FROM generate_series(1, 80) g;
SQL

export ODSYNC_T_VIEWER=viewer-$RANDOM$RANDOM-0123456789abcdef
# The viewer token is read from a file, so that a reload can rotate it (${env:} is odsync's own
# environment, fixed at its start).
printf '%s' "$ODSYNC_T_VIEWER" >"$TEST_TMP/viewer.token"
export ODSYNC_T_OPERATOR=operator-$RANDOM$RANDOM-0123456789abcdef
export ODSYNC_T_ADMIN=admin-$RANDOM$RANDOM-0123456789abcdef

# write_cfg BETA_TABLES BETA_TRANSFORMS_YAML [EXTRA_PIPELINE_YAML] [BAD_KEY_LINE]
write_cfg() {
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
admin:
  listen: "127.0.0.1:$APORT"
  tokens:
    - { token: "\${file:$TEST_TMP/viewer.token}", role: viewer }
    - { token: "\${env:ODSYNC_T_OPERATOR}", role: operator }
    - { token: "\${env:ODSYNC_T_ADMIN}", role: admin }
pipelines:
  - name: alpha
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [public.a_items] }
    sink: { type: sqlite, path: $A_DB }
  - name: beta
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [$1] }
$2
    sink: { type: sqlite, path: $B_DB }
${3:-}
YAML
}
GAMMA="  - name: gamma
    source: { type: postgres, dsn: \"$(pg_dsn)\", tables: [public.g_items] }
    sink: { type: sqlite, path: $G_DB }"
MASK="    transforms:
      - { type: mask, tables: [b_items], columns: [v], style: keep_last, keep: 2 }"

ADMIN=http://127.0.0.1:$APORT
code() { curl -s --max-time 300 -o "$TEST_TMP/body" -w '%{http_code}' "$@"; }
expect() {
  local want=$1 what=$2 got
  shift 2
  got=$(code "$@") || true
  cat "$TEST_TMP/body" >>"$TEST_TMP/responses"
  [[ "$got" == "$want" ]] || fail "$what: HTTP $got, expected $want (body: $(head -c 600 "$TEST_TMP/body" 2>/dev/null))"
  log "  $what -> $got $(head -c 400 "$TEST_TMP/body" | tr '\n' ' ')"
}
bearer() { printf 'Authorization: Bearer %s' "$1"; }
wsender() { pg_psql -c "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots WHERE slot_name = 'odsync_$1'"; }
metric() { # metric NAME PIPELINE: sum of the series of NAME for that pipeline
  curl -s --max-time 10 -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/metrics" |
    awk -v n="$1" -v p="pipeline=\"$2\"" 'index($0, n "{") == 1 && index($0, p) { s += $NF } END { printf "%d\n", s }'
}
cmp_db() { "$OD_COMPARE" --pg "$(pg_dsn)" --sqlite "$1" "${@:2}"; }
wait_db_equal() {
  local db=$1 t=$2 deadline=$(($(date +%s) + 120)) out
  until out=$(cmp_db "$db" --table "$t" 2>&1); do
    (($(date +%s) < deadline)) || fail "$db: $t not equal to the source after 120 s: $out"
    sleep 1
  done
  log "  $out"
}

write_cfg public.b_items ""
odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(code $ADMIN/healthz) == 200 ]]" 60 || fail "/healthz did not answer: $(tail -5 "$LOG")"
wait_slot_active odsync_alpha 90
wait_slot_active odsync_beta 90
wait_db_equal "$A_DB" public.a_items
wait_db_equal "$B_DB" public.b_items
A_PID=$(wsender alpha)
B_PID=$(wsender beta)
ODSYNC_MAIN=$ODSYNC_PID
[[ -n "$A_PID" && -n "$B_PID" ]] || fail "no walsender pids ($A_PID, $B_PID)"
[[ $(metric odsync_sessions_total alpha) == 1 ]] || fail "alpha has $(metric odsync_sessions_total alpha) sessions before the reload"
A_SNAP_LINES=$(grep -c "pipeline alpha: .*initial snapshot" "$LOG" || true)
[[ $A_SNAP_LINES -ge 1 ]] || fail "alpha's initial snapshot is not in the log"
log "streaming: alpha walsender $A_PID, beta walsender $B_PID"

# A workload on alpha's table across every reload (bounded: 600 transactions).
alpha_workload() {
  for i in $(seq 1 600); do
    pg_psql -c "INSERT INTO a_items VALUES ($((1000 + i)), 'w$i'); UPDATE a_items SET v = v || '+' WHERE id = $((i % 200 + 1))" >/dev/null
    sleep 0.05
  done
  echo "workload: 600 transactions"
}
workload_start alpha_workload
# 250 changes are 125 of the workload's transactions, one psql start each: once, at load 30 on 2 cores,
# fewer than that were written in 120 s, so the wait is generous; the assertion is unchanged.
wait_for "(( \$(metric odsync_changes_applied_total alpha) > 250 ))" 300 || fail "alpha applied at most 250 changes of the workload in 300 s"
A_APPLIED1=$(metric odsync_changes_applied_total alpha)

# 1. Roles: no token 401, viewer and operator 403; nothing reloads.
expect 401 "reload without a token" -X POST "$ADMIN/config/reload"
expect 403 "reload as viewer" -X POST -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/config/reload"
expect 403 "reload as operator" -X POST -H "$(bearer "$ODSYNC_T_OPERATOR")" "$ADMIN/config/reload"
grep -q "config reload by" "$LOG" && fail "a denied request reloaded the config"

# 2. An invalid file: refused with FILE:LINE and the key; nothing changes.
write_cfg public.b_items "    batch: { max_rowz: 10 }"
expect 400 "reload of an invalid file" -X POST -H "$(bearer "$ODSYNC_T_ADMIN")" "$ADMIN/config/reload"
grep -q "config reload refused: $CONFIG:[0-9]*:[0-9]*: .*max_rowz" "$TEST_TMP/body" || fail "the refusal does not name file:line and the key: $(cat "$TEST_TMP/body")"
grep -q "nothing changed" "$TEST_TMP/body" || fail "the refusal does not say nothing changed"
[[ $(wsender alpha) == "$A_PID" && $(wsender beta) == "$B_PID" ]] || fail "a refused reload touched the pipelines"

# 3. A valid reload: beta gets a table and a transform; alpha keeps streaming untouched.
write_cfg "public.b_items, public.b_extra" "$MASK"
HASH_BEFORE=$(sha256sum "$CONFIG" | cut -c1-64)
expect 200 "reload as admin (beta: + b_extra, + mask)" -X POST -H "$(bearer "$ODSYNC_T_ADMIN")" "$ADMIN/config/reload"
python3 - "$TEST_TMP/body" "$HASH_BEFORE" <<'PY' || fail "the reload answer is not what was done: $(cat "$TEST_TMP/body")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["result"] == "applied", r
assert r["unchanged"] == ["alpha"], r
assert r["restarted"] == {"beta": "source, transforms"}, r
assert r["added"] == [] and r["removed"] == [], r
assert r["snapshots_requested"] == {"beta": ["public.b_extra"]}, r
assert r["needs_restart"] == [] and r["admin_credentials"] == "unchanged", r
assert r["config_after"] == sys.argv[2], r
assert r["config_before"] != r["config_after"], r
assert r["by"].startswith("token#2@127.0.0.1"), r
PY
[[ $(wsender alpha) == "$A_PID" ]] || fail "alpha's walsender changed across a reload that did not change alpha"
wait_slot_active odsync_beta 90
[[ $(wsender beta) != "$B_PID" ]] || fail "beta was not restarted"
wait_db_equal "$B_DB" public.b_extra
pg_psql -c "UPDATE b_items SET v = 'secretvalue-new' || id WHERE id <= 10" >/dev/null
wait_for "[[ \$(sqlite3 '$B_DB' \"SELECT count(*) FROM b_items WHERE v LIKE '%*' || '*' || substr(v, -2) AND v NOT LIKE 'secret%' AND id <= 10\") == 10 ]]" 120 ||
  fail "beta's rows changed after the reload are not masked: $(sqlite3 "$B_DB" "SELECT * FROM b_items WHERE id <= 3")"
wait_for "(( \$(metric odsync_changes_applied_total alpha) > $A_APPLIED1 ))" 60 || fail "alpha's counter stopped after the reload"
[[ $(metric odsync_sessions_total alpha) == 1 ]] || fail "alpha started a new session in the reload"
log "reload applied: alpha untouched (walsender $A_PID, 1 session, applied $A_APPLIED1 -> $(metric odsync_changes_applied_total alpha)); beta restarted with b_extra and the mask"

# 4. SIGHUP with an invalid file: logged, nothing changes.
B_PID=$(wsender beta)
cp "$CONFIG" "$TEST_TMP/good.yaml"
sed -i 's/type: sqlite, path: \(.*alpha.db\)/type: sqlitex, path: \1/' "$CONFIG"
kill -HUP "$ODSYNC_PID"
wait_for "grep -q 'config reload by signal:SIGHUP refused: .*sqlitex' '$LOG'" 60 || fail "SIGHUP with an invalid file logged no refusal"
[[ $(wsender alpha) == "$A_PID" && $(wsender beta) == "$B_PID" ]] || fail "a refused SIGHUP reload touched the pipelines"

# 5. SIGHUP adding gamma.
write_cfg "public.b_items, public.b_extra" "$MASK" "$GAMMA"
kill -HUP "$ODSYNC_PID"
wait_for "grep -q 'config reload by signal:SIGHUP applied' '$LOG'" 120 || fail "SIGHUP did not reload"
wait_slot_active odsync_gamma 90
wait_db_equal "$G_DB" public.g_items
pg_psql -c "INSERT INTO g_items VALUES (1000, 'streamed')" >/dev/null
wait_db_equal "$G_DB" public.g_items
[[ $(wsender alpha) == "$A_PID" && $(wsender beta) == "$B_PID" ]] || fail "adding gamma restarted alpha or beta"

# 6. Removing gamma (HTTP): it stops, the others run on.
write_cfg "public.b_items, public.b_extra" "$MASK"
expect 200 "reload removing gamma" -X POST -H "$(bearer "$ODSYNC_T_ADMIN")" "$ADMIN/config/reload"
grep -q '"removed":\["gamma"\]' "$TEST_TMP/body" || fail "gamma not reported removed"
wait_for "[[ -z \$(wsender gamma) ]]" 60 || fail "gamma still streams after its removal"
[[ $(wsender alpha) == "$A_PID" && $(wsender beta) == "$B_PID" ]] || fail "removing gamma restarted alpha or beta"
[[ $ODSYNC_PID == "$ODSYNC_MAIN" ]] && odsync_running || fail "odsync is not the same process any more"

# 7. Token rotation: a new viewer token in the file; after a reload the old one is refused.
OLD_VIEWER=$ODSYNC_T_VIEWER
ODSYNC_T_VIEWER=viewer2-$RANDOM$RANDOM-0123456789abcdef
printf '%s' "$ODSYNC_T_VIEWER" >"$TEST_TMP/viewer.token"
expect 200 "status with the old viewer token before the reload" -H "$(bearer "$OLD_VIEWER")" "$ADMIN/status"
expect 200 "reload rotating the viewer token" -X POST -H "$(bearer "$ODSYNC_T_ADMIN")" "$ADMIN/config/reload"
grep -q '"unchanged":\["alpha","beta"\].*"admin_credentials":"reloaded"' "$TEST_TMP/body" || fail "the rotation was not reported"
expect 401 "status with the rotated-out viewer token" -H "$(bearer "$OLD_VIEWER")" "$ADMIN/status"
expect 200 "status with the new viewer token" -H "$(bearer "$ODSYNC_T_VIEWER")" "$ADMIN/status"
python3 -c 'import json,sys; u = json.load(open(sys.argv[1]))["uptime_seconds"]; sys.exit(0 if u >= 5 else 1)' "$TEST_TMP/body" ||
  fail "/status uptime restarted with the reload: $(head -c 200 "$TEST_TMP/body")"
[[ $(wsender alpha) == "$A_PID" && $(wsender beta) == "$B_PID" ]] || fail "rotating a token restarted a pipeline"

workload_wait
(($(grep -c "pipeline alpha: .*initial snapshot" "$LOG" || true) == A_SNAP_LINES)) || fail "alpha started another initial snapshot after the reloads"
wait_db_equal "$A_DB" public.a_items
odsync_stop
cmp_db "$A_DB" --table public.a_items || fail "alpha differs from its source after the stop"
cmp_db "$B_DB" --table public.b_extra || fail "beta's b_extra differs from its source after the stop"
cmp_db "$G_DB" --table public.g_items || fail "gamma differs from its source"
# b_items: rows 1..10 masked (changed after the mask came), the rest as copied before it.
want=$(pg_psql -c "SELECT id, CASE WHEN id <= 10 THEN repeat('*', length(v) - 2) || right(v, 2) ELSE v END FROM b_items ORDER BY id")
got=$(sqlite3 -separator '|' "$B_DB" "SELECT id, v FROM b_items ORDER BY id")
[[ "$want" == "$got" ]] || { diff <(echo "$want") <(echo "$got") | head >&2; fail "beta's b_items is not what the transforms make"; }
dups=$(sqlite3 "$A_DB" "SELECT count(*) - count(DISTINCT id) FROM a_items")
[[ $dups == 0 ]] || fail "alpha has $dups duplicated keys"

# 8. The audit log: one config_reload record per reload (2 refused, 4 applied), chain intact.
AUD=$TEST_TMP/state/audit/odsync-process.jsonl
[[ $(grep -c '"kind":"config_reload"' "$AUD") == 6 ]] || fail "expected 6 config_reload records: $(grep config_reload "$AUD")"
[[ $(grep '"kind":"config_reload"' "$AUD" | grep -c '"result":"refused"') == 2 ]] || fail "the refused reloads are not recorded"
grep '"kind":"config_reload"' "$AUD" | grep_q "\"config_after\":\"$HASH_BEFORE\".*\"restarted\":{\"beta\":\"source, transforms\"}" ||
  fail "the applied reload's record lacks the hash or what changed"
grep '"kind":"config_reload"' "$AUD" | grep_q '"by":"signal:SIGHUP".*"added":\["gamma"\]' || fail "the SIGHUP reload is not recorded"
"$ODSYNC_BIN" audit verify -c "$CONFIG" >"$TEST_TMP/verify.txt" 2>&1 || { cat "$TEST_TMP/verify.txt"; fail "audit verify failed"; }
for s in "$OLD_VIEWER" "$ODSYNC_T_VIEWER" "$ODSYNC_T_OPERATOR" "$ODSYNC_T_ADMIN"; do
  ! grep -rqF "$s" "$LOG" "$TEST_TMP/responses" "$TEST_TMP/state/audit" || fail "a token appears in the log, a response or the audit log"
done
log "audit: 6 config_reload records, chain verified; no token in any output"
