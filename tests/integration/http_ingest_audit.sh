#!/usr/bin/env bash
# http_ingest_audit: an HTTP-ingested event's correlation id travels into the audit log (docs/AUDIT.md),
# and `odsync audit find ID` answers which batch of which sink applied it.
#
# Asserts, with the http source fanned out into two SQLite sinks and the audit log on:
#  - three POSTs, each applied before the next is sent (so each is a batch of its own in each sink):
#    ids "ord-1".."ord-9", then "x-1" alone, then "x-10" with an id holding quotes, a backslash,
#    a comma, a bracket and unicode;
#  - both sinks hold exactly the posted rows (od_compare between the two sinks and a count/sum);
#  - `audit find ord-7` prints exactly 2 batch records (one per sink, "sink":"a" and "sink":"b"),
#    each listing ord-7 among its correlation_ids;
#  - `audit find x-1` prints only the batches of the second POST (not those of "x-10": no prefix
#    match); the odd id is found by its exact text; an id never posted exits 1 and prints nothing;
#  - `audit verify` passes, and a record edited to add an id is refused by verify (the ids are
#    covered by the hash chain like every other field).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh" # pg_free_port only: no server is started
test_init http_ingest_audit

PORT=$(pg_free_port)
URL=http://127.0.0.1:$PORT
CFG=$TEST_TMP/odsync.yml
LOG=$TEST_TMP/odsync.log
cat >"$CFG" <<YAML
state_dir: $TEST_TMP/state
audit: { fsync_ms: 0 }
pipelines:
  - name: ingest
    source:
      type: http
      listen: 127.0.0.1:$PORT
      tables:
        - "public.orders (id bigint key, item text, qty integer)"
    sinks:
      - { name: a, type: sqlite, path: $TEST_TMP/a.db }
      - { name: b, type: sqlite, path: $TEST_TMP/b.db }
YAML

odsync_start "$CFG" "$LOG"
wait_for "curl -s --max-time 5 $URL/v1/health | grep_q ok" 120 || fail "the ingest listener did not come up"

rows_in() { sqlite3 "$TEST_TMP/$1.db" "SELECT count(*) FROM orders" 2>/dev/null || echo 0; }
post() { # BODY EXPECTED_ROWS_AFTER
  local code
  code=$(curl -s --max-time 60 -o "$TEST_TMP/answer.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "$1" "$URL/v1/events")
  [[ $code == 200 ]] || fail "POST answered $code: $(cat "$TEST_TMP/answer.json")"
  wait_for "(( \$(rows_in a) == $2 && \$(rows_in b) == $2 ))" 120 ||
    fail "the sinks hold $(rows_in a) and $(rows_in b) rows, expected $2"
}

batch1="["
for i in $(seq 1 9); do
  batch1+="{\"table\":\"public.orders\",\"op\":\"insert\",\"row\":{\"id\":$i,\"item\":\"item $i\",\"qty\":$i},\"correlation_id\":\"ord-$i\"}"
  ((i < 9)) && batch1+=","
done
batch1+="]"
post "$batch1" 9
post '{"table":"public.orders","op":"insert","row":{"id":10,"item":"ten","qty":10},"correlation_id":"x-1"}' 10
ODD='odd "quoted" \back, [bracket] – ünï'
odd_json=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$ODD")
post "[{\"table\":\"public.orders\",\"op\":\"insert\",\"row\":{\"id\":11,\"item\":\"eleven\",\"qty\":11},\"correlation_id\":\"x-10\"},
       {\"table\":\"public.orders\",\"op\":\"update\",\"row\":{\"id\":3,\"qty\":33},\"correlation_id\":$odd_json}]" 11
odsync_stop

rows() { sqlite3 "$TEST_TMP/$1.db" "SELECT id, typeof(id), item, typeof(item), qty, typeof(qty) FROM orders ORDER BY id"; }
[[ $(rows a) == "$(rows b)" ]] || fail "the two sinks differ: $(diff <(rows a) <(rows b))"
[[ $(rows a | awk -F'|' '$2 == "integer" && $4 == "text" && $6 == "integer"' | wc -l) == 11 ]] ||
  fail "sink a does not hold 11 rows of (integer, text, integer): $(rows a)"
[[ $(sqlite3 "$TEST_TMP/a.db" "SELECT sum(id) || ':' || sum(qty) FROM orders") == "66:96" ]] ||
  fail "sink a holds $(sqlite3 "$TEST_TMP/a.db" "SELECT sum(id) || ':' || sum(qty) FROM orders"), expected 66:96"
log "both sinks hold the 11 posted rows and the update"

find_id() { "$ODSYNC_BIN" audit find "$1" -c "$CFG" >"$TEST_TMP/find.out" 2>"$TEST_TMP/find.err"; }
find_id ord-7 || fail "audit find ord-7 exited $?: $(cat "$TEST_TMP/find.err")"
[[ $(wc -l <"$TEST_TMP/find.out") == 2 ]] || fail "audit find ord-7 printed $(wc -l <"$TEST_TMP/find.out") records, expected 2: $(cat "$TEST_TMP/find.out")"
for s in a b; do
  grep -q "\"kind\":\"batch\".*\"sink\":\"$s\".*\"correlation_ids\":\[[^]]*\"ord-7\"" "$TEST_TMP/find.out" ||
    fail "no batch record of sink $s lists ord-7: $(cat "$TEST_TMP/find.out")"
done
find_id x-1 || fail "audit find x-1 exited $?"
[[ $(wc -l <"$TEST_TMP/find.out") == 2 ]] || fail "audit find x-1 printed $(wc -l <"$TEST_TMP/find.out") records, expected 2"
if grep -q '"x-10"' "$TEST_TMP/find.out"; then fail "audit find x-1 also printed the batch of x-10 (a prefix match)"; fi
find_id "$ODD" || fail "audit find did not find the id with quotes, backslash, comma, bracket and unicode"
[[ $(wc -l <"$TEST_TMP/find.out") == 2 ]] || fail "audit find (odd id) printed $(wc -l <"$TEST_TMP/find.out") records, expected 2"
grep -q '"x-10"' "$TEST_TMP/find.out" || fail "the odd id's records are not the third POST's batches"
if find_id never-posted; then fail "audit find never-posted exited 0: $(cat "$TEST_TMP/find.out")"; fi
[[ ! -s $TEST_TMP/find.out ]] || fail "audit find never-posted printed records"
grep -q "no batch record holds correlation id never-posted" "$TEST_TMP/find.err" || fail "no clear message for an unknown id: $(cat "$TEST_TMP/find.err")"
log "audit find: ord-7 in one batch per sink; x-1 without x-10; the odd id by its exact text; an unknown id exits 1"

"$ODSYNC_BIN" audit verify -c "$CFG" >"$TEST_TMP/verify.out" 2>&1 || fail "audit verify failed: $(cat "$TEST_TMP/verify.out")"
# Editing a record to claim an event it did not carry breaks the chain.
logf=$TEST_TMP/state/audit/ingest.jsonl
sed -i '0,/"correlation_ids":\["x-1"\]/s//"correlation_ids":["x-1","forged"]/' "$logf"
grep -q '"forged"' "$logf" || fail "the test could not edit the record of x-1"
if "$ODSYNC_BIN" audit verify -c "$CFG" >"$TEST_TMP/verify2.out" 2>&1; then fail "audit verify accepted an edited id list"; fi
grep -q "was edited" "$TEST_TMP/verify2.out" || fail "verify did not name the edited record: $(cat "$TEST_TMP/verify2.out")"
log "audit verify: intact, and an added id is detected as an edit"
