# shellcheck shell=bash
# tests/env/kill9.sh — the exactly-once-across-crashes scenario, written once and run per sink
# (source it after common.sh and pg.sh, then call kill9_run SINK).
#
#   kill9_run sqlite|postgres     CONSISTENCY (strong|causal|eventual, default strong) picks the
#                                 pipeline's consistency level (4 writers where the sink has them);
#                                 KILL9_SOURCE_EXTRA adds keys to the source block (e.g. catch-up by
#                                 batch decoding: "catchup_lag_bytes: 1"); KILL9_WAIT_SESSION=1 makes
#                                 each restart wait (up to 60 s) until the new session has started
#                                 its source (the "streaming from" line) before the next random kill,
#                                 so every kill falls after the source chose how to read
#
# odsync is killed with SIGKILL at random moments (at least MIN_KILLS=6 times) while a workload of many
# small and some large (5,000-row) transactions runs for WORKLOAD_SECONDS (default 20), and restarted
# each time. The workload includes, inside single transactions, insert+update+delete of one key,
# repeated updates of the same key, primary-key changes, keyless tables with duplicate rows and
# TOASTed bodies left untouched by updates.
#
# Asserts:
#   - after each kill, the slot's confirmed_flush_lsn (read once the walsender has gone) is never
#     ahead of the checkpoint the sink holds, and the sink's checkpoint never goes backwards; with no
#     checkpoint row yet, the slot has not moved from where it was created;
#   - once the workload ends and odsync catches up, the sink equals the source exactly (od_compare
#     for SQLite, od_compare_pg for PostgreSQL): nothing missing, no duplicates in the keyless tables,
#     TOASTed bodies intact;
#   - a final SIGTERM makes odsync exit 0, the rule above still holds, and the slot was acknowledged
#     past its creation point.

KILL9_TABLES=(public.orders public.events public.documents public.ledger)

# ---- per sink: start servers, the sink block, the checkpoint, the comparison ---------------------

kill9_setup_sqlite() {
  [[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
  pg_start shop
  SINK_DB=$TEST_TMP/out.db
  SINK_YAML="sink: { type: sqlite, path: $SINK_DB }"
}
kill9_checkpoint_sqlite() { checkpoint_lsn shop; }
kill9_compare_sqlite() { compare; }

kill9_setup_postgres() {
  OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
  [[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
  pg_start_pair shop warehouse
  SINK_YAML="sink: { type: postgres, dsn: \"$DST_DSN\"${KILL9_SINK_EXTRA:+, $KILL9_SINK_EXTRA} }"
}
kill9_checkpoint_postgres() {
  dst_psql -c "SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = 'shop'" \
    2>/dev/null || true
}
kill9_compare_postgres() {
  local t args=()
  for t in "${KILL9_TABLES[@]}"; do args+=(--table "$t"); done
  "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${args[@]}"
}

# ---- the scenario ----------------------------------------------------------------------------------

kill9_workload() {
  local end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  pg_psql <<'SQL'
INSERT INTO documents
SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(random()::text || d || g), '') FROM generate_series(1, 4000) g)
FROM generate_series(1, 5) d;
SQL
  while ((SECONDS < end)); do
    it=$((it + 1))
    {
      cat <<SQL
BEGIN;
INSERT INTO orders SELECT nextval('order_ids'), $it, 'it $it', $it * 0.25, $it % 2 = 0, '2024-01-01 00:00:00+00'::timestamptz + $it * interval '1 s', '\x0102', '{"it": $it}', CASE WHEN $it % 9 = 0 THEN 'NaN'::float8 ELSE $it / 3.0 END, $it FROM generate_series(1, 3);
COMMIT;
BEGIN;
UPDATE orders SET paid = NOT paid, note = note || '.', score = score + 1 WHERE id = (SELECT max(id) FROM orders) - 4;
UPDATE orders SET note = note || '!' WHERE id = (SELECT max(id) FROM orders) - 4;
INSERT INTO events VALUES ('small', $it % 4, NULL), ('small', $it % 4, NULL);
COMMIT;
BEGIN;
INSERT INTO orders (id, note, qty) VALUES (2000000000 + $it, 'transient', 0);
UPDATE orders SET note = 'transient updated' WHERE id = 2000000000 + $it;
DELETE FROM orders WHERE id = 2000000000 + $it;
INSERT INTO orders (id, note, qty) VALUES (3000000000 + $it, 'kept', 0);
UPDATE orders SET note = 'kept, updated', qty = 1 WHERE id = 3000000000 + $it;
COMMIT;
DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE qty = $it - 1);
BEGIN;
INSERT INTO ledger VALUES ('acct', 1.5, 'dup'), ('acct', 1.5, 'dup'), ('acct', NULL, NULL);
UPDATE ledger SET memo = 'one of the dups' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE memo = 'dup');
COMMIT;
DELETE FROM ledger WHERE ctid = (SELECT max(ctid) FROM ledger WHERE memo IS NULL);
UPDATE documents SET version = version + 1, title = 'doc ' || id || ' v' || (version + 1) WHERE id = 1 + $it % 5;
UPDATE orders SET id = id + 1000000000 WHERE id = (SELECT max(id) FROM orders WHERE id < 1000000000) - 1;
SQL
      if ((it % 20 == 0)); then
        cat <<SQL
INSERT INTO events SELECT 'large', g % 50, CASE WHEN g % 2 = 0 THEN '' END FROM generate_series(1, 5000) g;
SQL
      elif ((it % 20 == 10)); then
        cat <<SQL
BEGIN;
INSERT INTO orders SELECT nextval('order_ids'), g, 'bulk $it', g * 0.01, g % 3 = 0, '2024-06-01 00:00:00+00', NULL, NULL, g * 1.5, -$it FROM generate_series(1, 5000) g;
COMMIT;
UPDATE orders SET qty = qty + 1000 WHERE qty = -$it AND id % 2 = 0;
SQL
      fi
      if ((it % 7 == 0)); then
        echo "UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3500)) WHERE id = 1 + $it % 5;"
        echo "DELETE FROM orders WHERE qty < 0 AND id % 97 = $((it % 97));"
      fi
    } | pg_psql >/dev/null || {
      echo "workload: psql failed in iteration $it"
      return 1
    }
  done
  echo "workload: $it iterations"
}

# After a kill: wait for the walsender to go, then confirmed_flush_lsn <= the sink's checkpoint.
kill9_check_ack() {
  local what=$1 confirmed cp
  wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$KILL9_SLOT'\") == f ]]" 30 ||
    fail "$what: slot $KILL9_SLOT still active 30 s after odsync died"
  confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$KILL9_SLOT'")")
  cp=$("kill9_checkpoint_$KILL9_SINK")
  if [[ -z "$cp" ]]; then
    ((confirmed == KILL9_CREATED)) ||
      fail "$what: no checkpoint in the sink, yet the slot was acknowledged to $confirmed (created at $KILL9_CREATED)"
    log "$what: no checkpoint yet; slot confirmed_flush unchanged"
  else
    ((confirmed <= cp)) || fail "$what: slot confirmed_flush_lsn $confirmed is ahead of the sink checkpoint $cp"
    ((cp >= KILL9_LAST_CP)) || fail "$what: the sink checkpoint went backwards ($KILL9_LAST_CP -> $cp)"
    KILL9_LAST_CP=$cp
    KILL9_LAST_CONFIRMED=$confirmed
    log "$what: confirmed_flush $confirmed <= checkpoint $cp"
  fi
}

kill9_run() {
  KILL9_SINK=$1
  CONSISTENCY=${CONSISTENCY:-strong}
  WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
  local min_kills=6 kills=0 deadline out
  KILL9_SLOT=odsync_shop KILL9_LAST_CP=0 KILL9_LAST_CONFIRMED=0
  "kill9_setup_$KILL9_SINK"
  CONFIG=$TEST_TMP/odsync.yaml
  LOG=$TEST_TMP/odsync.log
  pg_psql <<'SQL'
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint, note text, amount numeric(12,2), paid bool,
  created_at timestamptz, payload bytea, attrs jsonb, score float8, qty int);
CREATE SEQUENCE order_ids;
CREATE TABLE events (kind text, n int, tag text);
CREATE TABLE documents (id int PRIMARY KEY, title text, version int, body text);
CREATE TABLE ledger (account text, amount numeric(14,3), memo text);
ALTER TABLE ledger REPLICA IDENTITY FULL;
SQL
  local tables
  tables=$(IFS=,; echo "${KILL9_TABLES[*]}")
  cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$(pg_dsn)", tables: [${tables//,/, }]${KILL9_SOURCE_EXTRA:+, $KILL9_SOURCE_EXTRA} }
    $SINK_YAML
    consistency: $CONSISTENCY
    apply_workers: 4
    apply_parallel_min_rows: 0
YAML
  odsync_start "$CONFIG" "$LOG"
  wait_slot_active "$KILL9_SLOT" 60
  # Active while CREATE_REPLICATION_SLOT still runs (no confirmed position yet under load): wait.
  wait_for "[[ -n \$(pg_psql -c \"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$KILL9_SLOT'\") ]]" 60 ||
    fail "slot $KILL9_SLOT has no confirmed position 60 s after it became active"
  KILL9_CREATED=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$KILL9_SLOT'")")
  log "sink $KILL9_SINK, consistency $CONSISTENCY; slot active (created at $KILL9_CREATED); ${WORKLOAD_SECONDS}s workload"
  workload_start kill9_workload
  while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < min_kills)); do
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + r / 32767 * 2.0 }')"
    if ! odsync_running; then
      wait "$ODSYNC_PID" || true
      fail "odsync exited on its own (before kill $((kills + 1)))"
    fi
    odsync_kill9
    kills=$((kills + 1))
    kill9_check_ack "kill $kills"
    local sessions
    sessions=$(grep -c "pipeline shop: streaming from" "$LOG" || true)
    odsync_start "$CONFIG" "$LOG"
    if [[ ${KILL9_WAIT_SESSION:-0} == 1 ]] &&
      ! wait_for "(( \$(grep -c 'pipeline shop: streaming from' '$LOG' || true) > $sessions ))" 60; then
      log "restart $kills: no new session started its source within 60 s"
    fi
  done
  workload_wait
  log "$kills kills done; waiting for the sink to catch up"
  deadline=$(($(date +%s) + 180))
  until out=$("kill9_compare_$KILL9_SINK" 2>&1); do
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "sink not equal to the source after 180 s (comparison above)"
    fi
    sleep 1
  done
  echo "$out"
  odsync_running || fail "odsync is not running after catching up"
  odsync_stop
  kill9_check_ack "after SIGTERM"
  ((KILL9_LAST_CONFIRMED > KILL9_CREATED)) ||
    fail "the slot was never acknowledged past its creation point $KILL9_CREATED (WAL would pile up)"
  "kill9_compare_$KILL9_SINK" >/dev/null || { "kill9_compare_$KILL9_SINK" || true; fail "sink differs from the source after the final stop"; }
  log "all assertions passed ($kills kills)"
}
