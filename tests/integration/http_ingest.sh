#!/usr/bin/env bash
# http_ingest: the http ingest source (`type: http`) into two sinks at once (SQLite and
# PostgreSQL, fan-out), with real clients (curl processes).
#
# Asserts:
#  - `odsync check` refuses a listener beyond loopback without a token;
#  - 8 concurrent clients post batches (retrying until answered 2xx), re-post earlier batches and
#    post some batches twice at once, while odsync is SIGKILLed and restarted three times: every
#    re-post is answered 200 with the first answer's body and Odsync-Duplicates = the batch size;
#    the journal assigned exactly one sequence per distinct event (health next_seq); both sinks
#    equal, row for row and by declared type (PostgreSQL column types too), the state computed
#    from the posted events (tests/tools/http_ingest.py check);
#  - a corpus of malformed requests: each answered with its 4xx and the JSON path of the bad field;
#    nothing of them is appended (next_seq unchanged) and the sinks are unchanged;
#  - backpressure: with max_unacked_bytes small and the PostgreSQL sink blocked (LOCK TABLE), a post
#    is answered 503 with Retry-After; once unblocked, everything gets in;
#  - auth: with a token, no/wrong bearer token -> 401; the right one -> 200; a re-post of a batch
#    whose journal segments were pruned (segment_bytes small) is still recognized as a duplicate
#    after restarts (ids.log);
#  - the trace span of the last batch (tracing, sample_ratio 1, a test collector) carries its first
#    and last correlation ids (odsync.correlation_id.first/.last);
#  - SIGTERM exits 0; pruned segments: at most 2 segment files remain.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
test_init http_ingest

HELPER=$ODSYNC_SOURCE_DIR/tests/tools/http_ingest.py
pg_start ingest
PG_SINK_DSN=$(pg_dsn ingest)
SINK_DB=$TEST_TMP/sink.db
DATA=$TEST_TMP/events
CLIENTS=8
python3 "$HELPER" gen "$DATA" --clients $CLIENTS --batches 15 --size 20 --seed 16
PORT=$(pg_free_port)
URL=http://127.0.0.1:$PORT
LOG=$TEST_TMP/odsync.log
export ODSYNC_TEST_TOKEN=s3cret-token-for-tests

write_cfg() { # FILE EXTRA_SOURCE_KEYS [TOP_LEVEL_LINES]
  cat >"$1" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
${3:-}
pipelines:
  - name: ingest
    source:
      type: http
      listen: ${LISTEN:-127.0.0.1:$PORT}
      segment_bytes: 65536
$2
      tables:
        - "public.accounts (id bigint key, owner text not null, balance numeric(14,2), active boolean, updated timestamptz, tags jsonb)"
        - "app.events (stream text key, n integer key, kind varchar(20), at timestamp, score double precision, ref uuid)"
    sinks:
      - { name: lite, type: sqlite, path: $SINK_DB }
      - { name: pg, type: postgres, dsn: "$PG_SINK_DSN" }
YAML
}

# check: a listener beyond loopback needs a token
LISTEN=0.0.0.0:$PORT write_cfg "$TEST_TMP/open.yml" ""
if out=$("$ODSYNC_BIN" check -c "$TEST_TMP/open.yml" 2>&1); then fail "check accepted listen 0.0.0.0 without a token: $out"; fi
grep -q "needs a token" <<<"$out" || fail "check's message does not say a token is needed: $out"
log "check refuses an open listener without a token: ok"

write_cfg "$TEST_TMP/a.yml" ""
health() { curl -s --max-time 5 -H "Authorization: Bearer ${1:-}" "$URL/v1/health"; }
next_seq() { health "${1:-}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_seq"])'; }
start() { odsync_start "$1" "$LOG"; wait_for "health ${2:-} | grep_q ok" 120 || fail "the ingest listener did not come up"; }
start "$TEST_TMP/a.yml"

# post FILE OUT_BODY OUT_HEADERS [TOKEN]: one POST; prints the status code (000: no answer)
post() {
  curl -s --max-time 60 -o "$2" -D "$3" -w '%{http_code}' -H 'Content-Type: application/json' \
    ${4:+-H "Authorization: Bearer $4"} --data-binary @"$1" "$URL/v1/events" || true
}
# post_until_ok FILE BODY HEADERS [TOKEN]: retry (connection refused, 503) until 200
post_until_ok() {
  local code i
  for i in $(seq 1 3000); do
    code=$(post "$@")
    [[ $code == 200 ]] && return 0
    [[ $code == 000 || $code == 503 ]] || { echo "unexpected $code for $1: $(cat "$2")"; return 1; }
    [[ -n ${RETRIES:-} ]] && echo "$code" >>"$RETRIES"
    sleep 0.1
  done
  echo "no 200 for $1 after 3000 attempts"
  return 1
}
dups_of() { tr -d '\r' <"$1" | awk -F': ' 'tolower($1)=="odsync-duplicates"{print $2}'; }

client() {
  local i=$1 dir=$DATA/c$1 out=$TEST_TMP/client$1 f n=0 j prev size
  mkdir -p "$out"
  local RETRIES=$out/retries
  local files=("$dir"/b*.json)
  for f in "${files[@]}"; do
    b=$(basename "$f" .json)
    if ((RANDOM % 4 == 0)); then # the same batch twice at once
      post_until_ok "$f" "$out/$b.twin" "$out/$b.twin.h" &
      local twin=$!
      post_until_ok "$f" "$out/$b.body" "$out/$b.h" || return 1
      wait $twin || return 1
      cmp -s "$out/$b.body" "$out/$b.twin" || { echo "client $i: $b answered differently twice"; return 1; }
    else
      post_until_ok "$f" "$out/$b.body" "$out/$b.h" || return 1
    fi
    echo "$b" >>"$out/acked"
    n=$((n + 1))
    if ((n > 1 && RANDOM % 3 == 0)); then # re-post an earlier batch: a duplicate
      j=$((RANDOM % (n - 1)))
      prev=$(basename "${files[$j]}" .json)
      post_until_ok "${files[$j]}" "$out/re.body" "$out/re.h" || return 1
      cmp -s "$out/re.body" "$out/$prev.body" || { echo "client $i: re-post of $prev answered differently"; return 1; }
      size=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "${files[$j]}")
      [[ $(dups_of "$out/re.h") == "$size" ]] || { echo "client $i: re-post of $prev: Odsync-Duplicates '$(dups_of "$out/re.h")', expected $size"; return 1; }
      echo "re" >>"$out/reposts"
    fi
  done
  echo "client $i done"
}

pids=()
for i in $(seq 0 $((CLIENTS - 1))); do
  client "$i" >"$TEST_TMP/client$i.log" 2>&1 &
  pids+=($!)
done
acked() { cat "$TEST_TMP"/client*/acked 2>/dev/null | wc -l; }
TOTAL_BATCHES=$((CLIENTS * 15))
for k in 1 2 3; do
  wait_for "[[ \$(acked) -ge $((k * TOTAL_BATCHES / 5)) ]]" 300 || fail "clients made no progress (acked $(acked))"
  log "SIGKILL $k at $(acked) acknowledged batches"
  odsync_kill9
  sleep 0.5
  start "$TEST_TMP/a.yml"
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { cat "$TEST_TMP/client$i.log"; fail "client $i failed"; }
done
log "clients done: $(acked) batches acknowledged, $(cat "$TEST_TMP"/client*/reposts 2>/dev/null | wc -l) re-posts answered as duplicates"
[[ $(acked) -eq $TOTAL_BATCHES ]] || fail "only $(acked) of $TOTAL_BATCHES batches acknowledged"
retries=$(cat "$TEST_TMP"/client*/retries 2>/dev/null | wc -l)
((retries > 0)) || fail "no client had to retry although odsync was killed three times while they posted"
log "clients retried $retries requests through the kills (unanswered or 503)"

mv "$DATA/x" "$TEST_TMP/x" # the extra batches are for later phases
check_equal() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(python3 "$HELPER" check "$DATA" --sqlite "$SINK_DB" --pg "$PG_SINK_DSN" 2>&1); then
      echo "$out"
      return 0
    fi
    odsync_running || fail "odsync exited; check said: $out"
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the posted events after ${timeout}s"; }
    sleep 1
  done
}
check_equal 300
EVENTS=$(python3 "$HELPER" count "$DATA")
SEQ=$(next_seq)
[[ $SEQ -eq $((EVENTS + 1)) ]] || fail "the journal assigned $((SEQ - 1)) sequences for $EVENTS distinct events (exactly once)"
log "exactly once: $EVENTS events, journal next_seq $SEQ, both sinks equal"

# malformed corpus
python3 "$HELPER" corpus "$TEST_TMP/corpus.tsv"
n=0
while IFS=$'\t' read -r want path body; do
  printf '%s' "$body" >"$TEST_TMP/bad.json"
  code=$(post "$TEST_TMP/bad.json" "$TEST_TMP/bad.out" "$TEST_TMP/bad.h")
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("path"))' "$TEST_TMP/bad.out" 2>/dev/null || echo "?")
  [[ $code == "$want" && $got == "$path" ]] ||
    fail "malformed request $((n + 1)): expected $want at $path, got $code: $(cat "$TEST_TMP/bad.out") for $body"
  n=$((n + 1))
done <"$TEST_TMP/corpus.tsv"
[[ $(next_seq) -eq $SEQ ]] || fail "malformed requests appended events (next_seq $(next_seq), was $SEQ)"
python3 "$HELPER" check "$DATA" --sqlite "$SINK_DB" --pg "$PG_SINK_DSN" >/dev/null || fail "the sinks changed after malformed requests"
log "$n malformed requests: each its 4xx naming the field; nothing appended"

# backpressure
odsync_stop
mv "$TEST_TMP/x" "$DATA/x"
write_cfg "$TEST_TMP/b.yml" "      max_unacked_bytes: 4096"
start "$TEST_TMP/b.yml"
pg_psql -d ingest -c "BEGIN; LOCK TABLE public.accounts, app.events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)" \
  >/dev/null 2>&1 &
LOCKER=$!
wait_for "[[ \$(pg_psql -d ingest -c \"SELECT count(*) FROM pg_locks WHERE mode='AccessExclusiveLock' AND relation='public.accounts'::regclass AND granted\") -ge 1 ]]" 30 ||
  fail "the test's table lock was not taken"
XFILES=("$DATA"/x/b*.json)
got503=
for xi in "${!XFILES[@]}"; do
  code=$(post "${XFILES[$xi]}" "$TEST_TMP/x.out" "$TEST_TMP/x.h")
  if [[ $code == 503 ]]; then got503=$xi; break; fi
  [[ $code == 200 ]] || fail "backpressure phase: unexpected $code: $(cat "$TEST_TMP/x.out")"
done
[[ -n $got503 ]] || fail "no 503 while the PostgreSQL sink was blocked and max_unacked_bytes is 4096"
tr -d '\r' <"$TEST_TMP/x.h" | grep_q -i '^Retry-After: [0-9]' || fail "the 503 has no Retry-After: $(cat "$TEST_TMP/x.h")"
grep -q backpressure "$TEST_TMP/x.out" || fail "the 503 does not say backpressure: $(cat "$TEST_TMP/x.out")"
log "backpressure: 503 with Retry-After after $got503 accepted batches"
pg_psql -d ingest -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$LOCKER" 2>/dev/null || true
for ((xi = got503; xi < ${#XFILES[@]} - 1; xi++)); do
  post_until_ok "${XFILES[$xi]}" "$TEST_TMP/x.out" "$TEST_TMP/x.h" || fail "after the sink was unblocked: $(cat "$TEST_TMP/x.out")"
done

# auth (the last extra batch is posted with the token), with every batch traced to a collector
COLL_PID=
test_extra_cleanup() { [[ -n "$COLL_PID" ]] && kill "$COLL_PID" 2>/dev/null && wait "$COLL_PID" 2>/dev/null; return 0; }
TPORT=$(pg_free_port)
BODIES=$TEST_TMP/otlp.jsonl
perl -MIO::Socket::INET -e '
  my ($port, $out) = @ARGV;
  my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 64, ReuseAddr => 1)
    or die "listen: $!";
  while (my $c = $srv->accept) {
    my ($len, $line) = (0);
    while (defined($line = <$c>)) { last if $line eq "\r\n"; $len = $1 if $line =~ /^Content-Length:\s*(\d+)/i; }
    my $body = ""; while (length($body) < $len) { my $n = read($c, $body, $len - length($body), length($body)); last unless $n; }
    open(my $f, ">>", $out) or die; print $f "$body\n"; close $f;
    print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"; close $c;
  }' "$TPORT" "$BODIES" &
COLL_PID=$!
odsync_stop
write_cfg "$TEST_TMP/c.yml" "      token: \${env:ODSYNC_TEST_TOKEN}" \
  "tracing: { endpoint: \"http://127.0.0.1:$TPORT/v1/traces\", sample_ratio: 1 }"
start "$TEST_TMP/c.yml" "$ODSYNC_TEST_TOKEN"
LAST=${XFILES[${#XFILES[@]} - 1]}
[[ $(post "$LAST" "$TEST_TMP/a.out" "$TEST_TMP/a.h") == 401 ]] || fail "no token: expected 401, got $(cat "$TEST_TMP/a.out")"
[[ $(post "$LAST" "$TEST_TMP/a.out" "$TEST_TMP/a.h" wrong-token) == 401 ]] || fail "wrong token: expected 401"
tr -d '\r' <"$TEST_TMP/a.h" | grep_q -i '^WWW-Authenticate: Bearer' || fail "401 without WWW-Authenticate"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/health") == 401 ]] || fail "health without a token: expected 401"
post_until_ok "$LAST" "$TEST_TMP/a.out" "$TEST_TMP/a.h" "$ODSYNC_TEST_TOKEN" || fail "right token: $(cat "$TEST_TMP/a.out")"
# c0's first batch: its segment is long pruned; its ids must still be known (ids.log)
code=$(post "$DATA/c0/b000.json" "$TEST_TMP/a.out" "$TEST_TMP/a.h" "$ODSYNC_TEST_TOKEN")
[[ $code == 200 && $(dups_of "$TEST_TMP/a.h") == 20 ]] || fail "re-post after pruning: $code, duplicates '$(dups_of "$TEST_TMP/a.h")'"
cmp -s "$TEST_TMP/a.out" "$TEST_TMP/client0/b000.body" || fail "re-post after pruning answered differently"
log "auth: 401 without/with a wrong token, 200 with it; pruned ids still answered as duplicates"
# the correlation ids of the last batch reach the batch's trace span
LASTB=$(basename "$LAST" .json)
wait_for "grep -q '\"odsync.correlation_id.last\",\"value\":{\"stringValue\":\"x-$LASTB-e019\"}' '$BODIES'" 30 ||
  fail "no trace span carries odsync.correlation_id.last = x-$LASTB-e019: $(head -c 600 "$BODIES" 2>/dev/null)"
grep -q '"odsync.correlation_id.first","value":{"stringValue":"x-'"$LASTB"'-e000"}' "$BODIES" ||
  fail "no trace span carries odsync.correlation_id.first = x-$LASTB-e000"
log "trace spans carry the batch's correlation ids"

python3 "$HELPER" check "$DATA" --sqlite "$SINK_DB" --pg "$PG_SINK_DSN" >/dev/null 2>&1 || check_equal 300
check_equal 300 >/dev/null
EVENTS=$(python3 "$HELPER" count "$DATA")
[[ $(next_seq "$ODSYNC_TEST_TOKEN") -eq $((EVENTS + 1)) ]] || fail "next_seq $(next_seq "$ODSYNC_TEST_TOKEN") after $EVENTS events"
sleep 2 # an acknowledgement round (pruning follows the sinks' checkpoints)
odsync_stop
segs=$(ls "$TEST_TMP/state/http/ingest/"*.seg | wc -l)
[[ $segs -le 2 ]] || fail "$segs journal segments remain after every sink holds every event (pruning)"
log "PASS ($EVENTS events, $segs segment(s) left)"
