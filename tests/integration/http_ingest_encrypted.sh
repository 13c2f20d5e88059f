#!/usr/bin/env bash
# http_ingest_encrypted.sh — the http source's journal sealed with `encryption:` keys (the keys
# reach the adapter through its config section; docs/SECURITY.md).
#
# Asserts:
#  - 200 events with a known marker value posted in 10 batches are answered 200 and arrive in the
#    SQLite sink row for row (every id, every value, nothing more);
#  - no journal segment (nor any file under state_dir) holds the marker or an event's text in
#    plaintext, and every frame of every segment is a format-2 frame marked sealed;
#  - SIGKILL and restart: the sealed journal is read again (a re-post of a batch is answered 200
#    with Odsync-Duplicates = its size; next_seq unchanged) and new events still arrive;
#  - the keys removed from the config: odsync refuses the journal, naming the key id, exit 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
test_init http_ingest_encrypted
command -v curl >/dev/null || fail "curl not installed"

PORT=$(pg_free_port)
URL=http://127.0.0.1:$PORT
LOG=$TEST_TMP/odsync.log
SINK_DB=$TEST_TMP/sink.db
JOURNAL=$TEST_TMP/state/http/ingest
MARKER=MARKER-7f3e9a
export ODSYNC_TEST_KEY=$(openssl rand -base64 32)

write_cfg() { # $1: top-level lines
  cat >"$TEST_TMP/odsync.yml" <<YAML
state_dir: $TEST_TMP/state
$1
pipelines:
  - name: ingest
    source:
      type: http
      listen: 127.0.0.1:$PORT
      segment_bytes: 16384
      tables:
        - "public.people (id bigint key, name text not null, note text)"
    sinks:
      - { name: lite, type: sqlite, path: $SINK_DB }
YAML
}
KEYS='encryption: { keys: [{ id: j1, key: "${env:ODSYNC_TEST_KEY}" }] }'
health() { curl -s --max-time 5 "$URL/v1/health"; }
next_seq() { health | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_seq"])'; }
start() { odsync_start "$TEST_TMP/odsync.yml" "$LOG"; wait_for "health | grep_q ok" 120 || fail "the ingest listener did not come up"; }
# batch B: the JSON of batch B (ids 20B+1 .. 20B+20)
batch() {
  python3 - "$1" "$MARKER" <<'PY'
import json, sys
b, m = int(sys.argv[1]), sys.argv[2]
print(json.dumps([{"table": "people", "op": "insert", "correlation_id": f"cid-{i}",
                   "row": {"id": i, "name": f"{m}-name-{i}", "note": f"note {i} of batch {b}"}}
                  for i in range(20 * b + 1, 20 * b + 21)]))
PY
}
post() { # FILE -> status; headers in FILE.h
  curl -s --max-time 60 -o "$1.body" -D "$1.h" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$1" "$URL/v1/events" || true
}
sink_rows() { sqlite3 "$SINK_DB" "SELECT id || '|' || name || '|' || note FROM people ORDER BY id" 2>/dev/null || true; }
expect_rows() { # N: rows 1..N as the sink must hold them
  python3 - "$1" "$MARKER" <<'PY'
import sys
n, m = int(sys.argv[1]), sys.argv[2]
for i in range(1, n + 1):
    print(f"{i}|{m}-name-{i}|note {i} of batch {(i - 1) // 20}")
PY
}
wait_rows() { # N
  local deadline=$(($(date +%s) + 120))
  until [[ "$(sink_rows)" == "$(expect_rows "$1")" ]]; do
    (($(date +%s) < deadline)) || { diff <(sink_rows) <(expect_rows "$1") | head -5 >&2; fail "the sink does not hold rows 1..$1 exactly"; }
    odsync_running || fail "odsync exited"
    sleep 0.5
  done
}

write_cfg "$KEYS"
start
for b in $(seq 0 9); do
  batch "$b" >"$TEST_TMP/b$b.json"
  code=$(post "$TEST_TMP/b$b.json")
  [[ $code == 200 ]] || fail "batch $b answered $code: $(cat "$TEST_TMP/b$b.json.body")"
done
wait_rows 200
[[ $(next_seq) -eq 201 ]] || fail "next_seq $(next_seq) after 200 events"
segs=$(ls "$JOURNAL"/*.seg | wc -l)
((segs >= 1)) || fail "no journal segment"
grep -qa "$MARKER" "$JOURNAL"/*.seg && fail "a journal segment holds the marker in plaintext"
grep -qa "note 7 of batch" "$JOURNAL"/*.seg && fail "a journal segment holds an event's text in plaintext"
grep -rqa "$MARKER" "$TEST_TMP/state" && fail "a file under state_dir holds the marker: $(grep -rla "$MARKER" "$TEST_TMP/state")"
frames=$(python3 - "$JOURNAL" <<'PY'

import glob, struct, sys
total = 0
for p in glob.glob(sys.argv[1] + "/*.seg"):
    d = open(p, "rb").read()
    off = n = 0
    while off < len(d):
        assert d[off:off + 4] == b"ODF2" and d[off + 4] & 1, (p, off)
        off += 16 + struct.unpack_from("<I", d, off + 8)[0]
        n += 1
    assert off == len(d), p
    total += n
assert total > 0, "no record left in the journal (segments rolled at 16 KiB; pruned ones are gone)"
print(total)
PY
) || fail "journal segments are not sealed format-2 frames"
log "$frames sealed records retained; 200 events in the sink row for row; $segs sealed journal segments, no marker in any file of state_dir"

odsync_kill9
start
code=$(post "$TEST_TMP/b3.json")
[[ $code == 200 ]] || fail "the re-post after SIGKILL answered $code"
dups=$(tr -d '\r' <"$TEST_TMP/b3.json.h" | awk -F': ' 'tolower($1)=="odsync-duplicates"{print $2}')
[[ $dups == 20 ]] || fail "the re-post after restart counted $dups duplicates, expected 20"
[[ $(next_seq) -eq 201 ]] || fail "next_seq moved to $(next_seq) on a duplicate"
batch 10 >"$TEST_TMP/b10.json"
[[ $(post "$TEST_TMP/b10.json") == 200 ]] || fail "batch 10 after restart"
wait_rows 220
odsync_stop
log "after SIGKILL the sealed journal reopened: duplicates recognized, 220 rows exact"

write_cfg ""
rm -f "$TEST_TMP/state/ingest.schema.jsonl" # sealed too (refused first otherwise): the journal's refusal is tested here
set +e
timeout 60 "$ODSYNC_BIN" run -c "$TEST_TMP/odsync.yml" --no-progress >"$TEST_TMP/nokeys.log" 2>&1
rc=$?
set -e
grep -q "is encrypted (key id 'j1')" "$TEST_TMP/nokeys.log" ||
  fail "no clear error without the keys (rc $rc): $(tail -5 "$TEST_TMP/nokeys.log")"
[[ $rc -eq 1 ]] || fail "odsync exited $rc without the journal's keys (expected 1)"
log "without the keys the journal is refused naming key id j1"
log "all assertions passed"
