#!/usr/bin/env bash
# poll_load_resume.sh — postgres_poll's initial load resumes after a SIGKILL by keyset pagination
# from the last delivered key (the position carries it), instead of starting over.
# Pipeline `lite` (watermark: xmin) into SQLite, pipeline `pgs` (watermark: updated_at) into
# PostgreSQL, one odsync process; items (bigint key, 100,000 rows) then accounts (int, text key).
#
# Asserts:
#  - odsync SIGKILLed twice in the middle of the load (the SQLite checkpoint is a resumable load
#    position "pgpoll:load:<k>@<horizon>/0/<key>", in table 0), with rows updated (before and after
#    the resume key) and inserted while it is down;
#  - each restart logs that the load resumes, and reads exactly the rows after the checkpoint: the
#    rows it reports read in that run equal the source's rows minus those the sink already held
#    (a load that starts over reads them all and fails);
#  - after the load both sinks equal the source row for row (updates made to already-loaded rows
#    while odsync was down arrive: the load ends at its first snapshot's horizon).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init poll_load_resume
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
ROWS=${ROWS:-100000}
pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
pg_psql <<SQL
CREATE TABLE items (id bigint PRIMARY KEY, v text, pad text, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE accounts (region int, name text, balance numeric(14,3), updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (region, name));
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN NEW.updated_at := now(); RETURN NEW; END \$\$;
CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO items (id, v, pad) SELECT g, 'item ' || g, repeat('p', 200) FROM generate_series(1, $ROWS) g;
INSERT INTO accounts (region, name, balance) SELECT g % 7, (ARRAY['Zeta', 'alpha', E'tab\there', 'Ärger'])[g % 4 + 1] || ' ' || g, g
  FROM generate_series(1, 3000) g;
SQL
cat >"$CONFIG" <<YAML
log_level: debug
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.accounts], watermark: xmin,
              interval_ms: 200, load_chunk_rows: 1000, fetch_rows: 500 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: pgs
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.accounts], watermark: updated_at,
              lag_ms: 300, interval_ms: 200, load_chunk_rows: 1000, fetch_rows: 500 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

compare_all() {
  "$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$SINK_DB" --table public.items --table public.accounts &&
    "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.items --table public.accounts
}
sink_rows() { # items + accounts in the SQLite sink (a table not created yet counts 0)
  local t n sum=0
  for t in items accounts; do
    if [[ -n $(sqlite3 "$SINK_DB" "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '$t'") ]]; then
      n=$(sqlite3 "$SINK_DB" "SELECT count(*) FROM $t")
      sum=$((sum + n))
    fi
  done
  echo "$sum"
}
source_rows() { pg_psql -c "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM accounts)"; }

odsync_start "$CONFIG" "$LOG"
next_id=$((ROWS + 1))
for kill in 1 2; do
  # The kill comes once the sink's checkpoint is at load chunk ROWS * kill / 4000 of the items
  # (1000-row chunks), read in a tight loop: a fast host loads the 100,000 rows in half a second, and
  # a count polled every 0.2 s let the load end before the kill (CI of 12-06 00:25).
  target=$((ROWS * kill / 4000))
  deadline=$(($(date +%s) + 300))
  until [[ $(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'lite'" 2>/dev/null) =~ ^pgpoll:load:([0-9]+)@ ]] &&
    ((BASH_REMATCH[1] >= target)); do
    (($(date +%s) < deadline)) || fail "the load did not reach chunk $target (kill $kill)"
    sleep 0.002
  done
  odsync_kill9
  held=$(sink_rows)
  ((kill == 1)) && pgs_cp=$(dst_psql -c "SELECT position_text FROM public._odsync_checkpoint WHERE pipeline = 'pgs'" 2>/dev/null || true)
  cp=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'lite'")
  [[ $cp =~ ^pgpoll:load:[0-9]+@[0-9]+/0/[0-9a-f]+$ ]] ||
    fail "kill $kill: the checkpoint '$cp' is not a resumable load position in table 0 (was the load already over? raise ROWS)"
  ((held < ROWS)) || fail "kill $kill: the load was over before the kill"
  # While odsync is down: rows already loaded and rows not yet loaded change, new rows arrive.
  pg_psql >/dev/null <<SQL
UPDATE items SET v = 'changed while down $kill' WHERE id % 5000 = $kill;
INSERT INTO items (id, v, pad) SELECT g, 'new ' || g, 'n' FROM generate_series($next_id, $((next_id + 99))) g;
UPDATE accounts SET balance = balance + 1 WHERE region = $kill;
SQL
  next_id=$((next_id + 100))
  total=$(source_rows)
  log "kill $kill: checkpoint $cp, the sink holds $held of $total rows"
  from=$(($(wc -l <"$LOG") + 1))
  odsync_start "$CONFIG" "$LOG"
  wait_for "tail -n +$from $LOG | grep_q 'pipeline lite: postgres_poll source: initial load: [0-9]* rows read in this run'" 300 ||
    fail "restart $kill: the load did not end"
  tail -n +"$from" "$LOG" | grep_q "pipeline lite: postgres_poll source: resuming the initial load (load:[0-9]*) at table public.items after the last delivered key" ||
    fail "restart $kill: the load did not resume"
  read_now=$(tail -n +"$from" "$LOG" | grep -o "pipeline lite: postgres_poll source: initial load: [0-9]* rows read in this run (resumed)" | grep -o "[0-9]* rows" | grep -o "[0-9]*")
  log "restart $kill: the resumed load read $read_now rows (expected $((total - held)))"
  [[ $read_now == $((total - held)) ]] || fail "restart $kill: the resumed load read $read_now rows, not the $((total - held)) after the checkpoint"
  if ((kill == 1)); then
    # Start the load over for the second round: a fresh sink file and pipeline state.
    odsync_kill9
    rm -f "$SINK_DB" "$SINK_DB-wal" "$SINK_DB-shm"
    rm -rf "$TEST_TMP/state/postgres_poll"
    odsync_start "$CONFIG" "$LOG"
  fi
done
if [[ ${pgs_cp:-} == pgpoll:load:*@* ]]; then
  grep -q "pipeline pgs: postgres_poll source: resuming the initial load" "$LOG" || fail "pipeline pgs held $pgs_cp at kill 1 but did not resume"
  log "pipeline pgs resumed its load from $pgs_cp"
else
  log "pipeline pgs held '${pgs_cp:-}' at kill 1 (its load was not cut by a resumable chunk)"
fi
deadline=$(($(date +%s) + 180))
until out=$(compare_all 2>&1); do
  (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the source 180 s after the load"; }
  sleep 1
done
echo "$out"
odsync_stop
compare_all >/dev/null || fail "sinks differ after the final stop"
log "ok"
