#!/usr/bin/env bash
# poll_reconcile_chunks.sh — postgres_poll's checksum reconciliation (reconcile_mode: checksum, the
# default): hard DELETEs found by comparing key-range chunks with the delivered-key ledger, only the
# differing chunks fetched, correct across SIGKILLs (also in the middle of a reconciliation).
# Pipeline `lite` (watermark: xmin) into SQLite, pipeline `pgs` (watermark: updated_at) into
# PostgreSQL, one odsync process; tables with a bigint key (20,000 rows) and a composite
# (int, text) key whose names need the "C" order and escaping (tab, backslash, non-ASCII).
#
# Asserts:
#  - the first reconciliation after the initial load compares every chunk and fetches none
#    (a full reload would not print that line);
#  - a one-column text key (notes, 2,000 rows in 100 chunks): 10 spread deletes found by fetching at
#    most 10 chunks;
#  - 20 hard deletes spread over 20 chunks of items: exactly those 20 chunks (of 1000 / 200) are
#    fetched, 20 deletes are delivered (log and /metrics counters), and both sinks equal the source
#    row for row;
#  - odsync SIGKILLed right after a reconciliation started (at least once verifiably before it
#    finished its last table) with new spread deletes pending: after the restart the ledger is
#    trusted (no pipeline falls back to a full reload), the deletes arrive, sinks equal the source;
#  - a workload of inserts, updates and spread hard deletes with random SIGKILLs ends with both
#    sinks equal to the source row for row, and over the whole run far fewer chunks were fetched
#    than compared (fetched * 5 < compared), so a reload-everything implementation fails.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init poll_reconcile_chunks
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-15}
pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql <<'SQL'
CREATE TABLE items (id bigint PRIMARY KEY, v text, n int, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tags (region int, name text, n int, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (region, name));
CREATE TABLE notes (code text PRIMARY KEY, n int, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO notes (code, n) SELECT (ARRAY['Q', 'q', 'Ö', 'a b', E'x\\y'])[g % 5 + 1] || g, g FROM generate_series(1, 2000) g;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER touch BEFORE UPDATE ON tags FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO items (id, v, n) SELECT g, 'item ' || g, g % 97 FROM generate_series(1, 20000) g;
INSERT INTO tags (region, name, n)
  SELECT g % 5, (ARRAY['Zeta', 'alpha', 'Éclair', E'tab\there', E'back\\slash', 'b c', 'Ärger'])[g % 7 + 1] || ' ' || g, g
  FROM generate_series(1, 3000) g;
SQL
cat >"$CONFIG" <<YAML
log_level: debug
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.tags, public.notes], watermark: xmin,
              interval_ms: 200, reconcile_interval_ms: 1000, reconcile_chunk_rows: 20, load_chunk_rows: 5000 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: pgs
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.tags, public.notes], watermark: updated_at,
              lag_ms: 300, interval_ms: 200, reconcile_interval_ms: 1500, reconcile_chunk_rows: 100 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
APORT=$(pg_free_port)
echo "admin: { listen: \"127.0.0.1:$APORT\" }" >>"$CONFIG"

compare_all() {
  "$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$SINK_DB" --table public.items --table public.tags --table public.notes &&
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.items --table public.tags --table public.notes
}
wait_compare() { # wait_compare WHAT
  local deadline=$(($(date +%s) + 180)) out
  until out=$(compare_all 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the source 180 s after $1"; }
    odsync_running || fail "odsync exited (waiting for $1)"
    sleep 1
  done
}
# Lines "reconciliation of TABLE" of pipeline P in the log from line FROM on.
recon_lines() { tail -n +"$3" "$LOG" | grep -F "pipeline $1: postgres_poll source: reconciliation of $2:" || true; }

odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(sqlite3 $SINK_DB 'SELECT count(*) FROM items' 2>/dev/null) == 20000 && \$(dst_psql -c 'SELECT count(*) FROM tags' 2>/dev/null) == 3000 ]]" 180 ||
  fail "the initial load did not arrive in both sinks"
wait_compare "the initial load"
wait_for "grep -q 'pipeline lite: postgres_poll source: reconciliation of public.items: 1000 chunks compared, 0 differed' $LOG && grep -q 'pipeline pgs: postgres_poll source: reconciliation of public.items: 200 chunks compared, 0 differed' $LOG" 120 ||
  fail "no checksum reconciliation comparing every chunk and fetching none after the initial load"
grep -q "reconciliation cycle (every row re-read)" "$LOG" && fail "a full reload ran on a fresh start"

log "phase 2: 20 hard deletes spread over 20 chunks"
from=$(($(wc -l <"$LOG") + 1))
pg_psql -c "DELETE FROM items WHERE id % 1000 = 7; DELETE FROM notes WHERE n % 200 = 3" >/dev/null
wait_for "recon_lines lite public.items $from | grep_q '1000 chunks compared, 20 differed and were fetched, 20 deletes, 0 rows re-sent' && recon_lines pgs public.items $from | grep_q '200 chunks compared, 20 differed and were fetched, 20 deletes, 0 rows re-sent'" 120 || {
  recon_lines lite public.items "$from" | tail -5
  recon_lines pgs public.items "$from" | tail -5
  fail "the spread deletes were not found by fetching exactly the 20 differing chunks"
}
wait_compare "the spread deletes"
# A one-text-column key (its chunks' checksums come from one width_bucket pass in "C" order): 10 deletes.
recon_lines lite public.notes "$from" | grep_q '100 chunks compared, \([1-9]\|10\) differed and were fetched, 10 deletes, 0 rows re-sent' ||
  { recon_lines lite public.notes "$from" | tail -3; fail "the 10 deletes of notes were not found in at most 10 fetched chunks"; }
# The same counts as Prometheus counters (this process has run every reconciliation so far).
metric() { curl -fsS --max-time 5 "http://127.0.0.1:$APORT/metrics" | awk -v k="$1" 'index($0, k " ") == 1 { print $2 }'; }
fetched=$(metric 'odsync_poll_reconcile_chunks_total{pipeline="lite",table="public.items",result="fetched"}')
equal=$(metric 'odsync_poll_reconcile_chunks_total{pipeline="lite",table="public.items",result="equal"}')
deletes=$(metric 'odsync_poll_reconcile_deletes_total{pipeline="lite",table="public.items"}')
log "metrics: items chunks fetched $fetched, equal $equal, deletes $deletes"
[[ $fetched == 20 && $deletes == 20 && ${equal:-0} -ge 1980 ]] ||
  fail "metrics: expected 20 chunks fetched, 20 deletes and at least 1980 equal chunks for lite/public.items"

log "phase 3: SIGKILL right after a reconciliation started, deletes pending"
mid=0
for attempt in 1 2 3 4 5 6; do
  pg_psql -c "DELETE FROM items WHERE id % 1000 = $((100 + attempt)); DELETE FROM tags WHERE n % 400 = $attempt" >/dev/null
  from=$(($(wc -l <"$LOG") + 1))
  # Not a pipeline: grep returns (and odsync is killed) at the first match, without waiting for tail.
  exec {tailfd}< <(exec timeout 60 tail -n +"$from" -f "$LOG")
  tailpid=$!
  grep -m1 -q "pipeline lite: postgres_poll source: reconciliation cycle (checksums) started" <&"$tailfd" ||
    fail "no reconciliation started within 60 s (attempt $attempt)"
  odsync_kill9
  kill "$tailpid" 2>/dev/null || true
  exec {tailfd}<&-
  # Verifiably in the middle: the started line is the lite pipeline's last word on reconciliation.
  last=$(grep -n "pipeline lite: postgres_poll source: reconciliation" "$LOG" | tail -1)
  [[ $last == *"reconciliation cycle (checksums) started"* ]] && mid=$((mid + 1))
  log "kill $attempt (in the middle of a reconciliation: $mid so far)"
  from=$(($(wc -l <"$LOG") + 1))
  odsync_start "$CONFIG" "$LOG"
  wait_compare "restart $attempt"
  if tail -n +"$from" "$LOG" | grep_q "reconciliation cycle (every row re-read)"; then
    fail "after kill $attempt a pipeline fell back to a full reload: the ledger was not trusted"
  fi
  ((mid >= 2)) && break
done
((mid >= 1)) || fail "no SIGKILL landed in the middle of a reconciliation in 6 attempts"

log "phase 4: workload with SIGKILLs"
workload() {
  local end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
INSERT INTO items (id, v, n) SELECT 100000 + $it * 10 + g, 'new $it', g FROM generate_series(1, 5) g;
UPDATE items SET v = v || '.', n = n + 1 WHERE id = 20000 - $it * 13;
DELETE FROM items WHERE id = $((it * 137 % 20000 + 1));
DELETE FROM items WHERE id = 100000 + $((it - 1)) * 10 + 3;
INSERT INTO tags (region, name, n) VALUES ($it % 5, E'w\\\\$it\\tx', $it) ON CONFLICT DO NOTHING;
DELETE FROM tags WHERE n = $((it * 31 % 3000 + 1));
SQL
  done
  echo "workload: $it iterations"
}
workload_start workload
kills=0
while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < 3)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.7 + r / 32767 * 2.0 }')"
  odsync_running || fail "odsync exited on its own (before kill $((kills + 1)))"
  odsync_kill9
  kills=$((kills + 1))
  log "workload kill $kills"
  odsync_start "$CONFIG" "$LOG"
done
workload_wait
wait_compare "the workload"
odsync_stop
compare_all || fail "sinks differ after the final stop"
[[ $(pg_psql -c "SELECT count(*) FROM items WHERE id <= 20000") -lt 19950 ]] || fail "workload: too few hard deletes"
grep -q "reconciliation cycle (every row re-read)" "$LOG" && fail "a full reload ran: the ledger was not trusted"
read -r compared fetched < <(grep -o "reconciliation of public\.[a-z]*: [0-9]* chunks compared, [0-9]* differed" "$LOG" |
  awk '{ c += $4; f += $7 } END { print c + 0, f + 0 }')
log "chunks compared $compared, fetched $fetched"
((compared > 0 && fetched * 5 < compared)) || fail "fetched $fetched of $compared chunks: not a chunked reconciliation"
[[ -s $TEST_TMP/state/postgres_poll/lite.keys ]] || fail "no key ledger in state_dir"
log "ok ($kills workload kills, $mid kills in the middle of a reconciliation)"
