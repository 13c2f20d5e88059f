#!/usr/bin/env bash
# pg_to_pg_kill9.sh — exactly-once across crashes for the postgres sink: odsync is killed with
# SIGKILL at random moments (at least 6 times) while a workload of many small and some large
# (5,000-row) transactions runs for ~20 s, and restarted each time. Source and target are two
# separate PostgreSQL servers.
#
# The workload includes, inside single transactions, insert+update+delete of one key, repeated
# updates of the same key, primary-key changes and TOASTed bodies left untouched by updates.
#
# Asserts:
#   - after each kill, the slot's confirmed_flush_lsn (read once the walsender has gone) is never
#     ahead of the checkpoint the target holds; with no checkpoint row yet, the slot has not moved
#     from where it was created;
#   - once the workload ends and odsync catches up, the target equals the source exactly
#     (od_compare_pg): nothing missing, no duplicates in the keyless tables (events, ledger);
#   - a final SIGTERM makes odsync exit 0 and the confirmed <= checkpoint rule still holds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

# CONSISTENCY (strong|causal|eventual) selects the pipeline's consistency level; the
# pg_to_pg_kill9_<level>.sh wrappers run this same scenario with 4 parallel writers.
CONSISTENCY=${CONSISTENCY:-strong}
test_init "pg_to_pg_kill9_$CONSISTENCY"
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
pg_start_pair shop warehouse
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
WORKLOAD_LOG=$TEST_TMP/workload.log
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
MIN_KILLS=6
SLOT=odsync_shop
WORKLOAD_PID=
TABLES=(--table public.orders --table public.events --table public.documents --table public.ledger)
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}"; }

test_extra_cleanup() {
  if [[ -n "$WORKLOAD_PID" ]]; then
    kill "$WORKLOAD_PID" 2>/dev/null
    wait "$WORKLOAD_PID" 2>/dev/null
  fi
  if [[ -f "$WORKLOAD_LOG" ]]; then
    echo "---- last 20 lines of the workload log ----" >&2
    tail -n 20 "$WORKLOAD_LOG" >&2
  fi
}

# The target's checkpoint for PIPELINE as a decimal LSN; empty when there is none.
pg_checkpoint_lsn() {
  dst_psql -c "SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = '$1'" 2>/dev/null || true
}

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

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.orders, public.events, public.documents, public.ledger] }
    sink: { type: postgres, dsn: "$DST_DSN" }
    consistency: $CONSISTENCY
    apply_workers: 4
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active "$SLOT" 60
slot_created_lsn=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")")
log "slot active (created at $slot_created_lsn); starting a ${WORKLOAD_SECONDS}s workload"

workload() {
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

workload >"$WORKLOAD_LOG" 2>&1 &
WORKLOAD_PID=$!

rand_sleep() { sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + r / 32767 * 2.0 }')"; }

check_ack_not_ahead() {
  local what=$1 confirmed cp
  wait_for "[[ \$(pg_psql -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'\") == f ]]" 30 ||
    fail "$what: slot $SLOT still active 30 s after odsync died"
  confirmed=$(lsn_to_int "$(pg_psql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")")
  cp=$(pg_checkpoint_lsn shop)
  if [[ -z "$cp" ]]; then
    ((confirmed == slot_created_lsn)) ||
      fail "$what: no checkpoint on the target, yet the slot was acknowledged to $confirmed (created at $slot_created_lsn)"
    log "$what: no checkpoint yet; slot confirmed_flush unchanged"
  else
    ((confirmed <= cp)) ||
      fail "$what: slot confirmed_flush_lsn $confirmed is ahead of the target checkpoint $cp"
    log "$what: confirmed_flush $confirmed <= checkpoint $cp"
  fi
}

kills=0
while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < MIN_KILLS)); do
  rand_sleep
  if ! odsync_running; then
    wait "$ODSYNC_PID" || true
    fail "odsync exited on its own (before kill $((kills + 1)))"
  fi
  odsync_kill9
  kills=$((kills + 1))
  check_ack_not_ahead "kill $kills"
  odsync_start "$CONFIG" "$LOG"
done
WORKLOAD_RC=0
wait "$WORKLOAD_PID" || WORKLOAD_RC=$?
WORKLOAD_PID=
cat "$WORKLOAD_LOG"
[[ $WORKLOAD_RC -eq 0 ]] || fail "the workload failed (exit $WORKLOAD_RC)"
log "$kills kills done; waiting for the target to catch up"

deadline=$(($(date +%s) + 180))
until out=$(compare_pg 2>&1); do
  if (($(date +%s) >= deadline)); then
    echo "$out" >&2
    fail "target not equal to source after 180s (od_compare_pg report above)"
  fi
  sleep 1
done
echo "$out"
odsync_running || fail "odsync is not running after catching up"
odsync_stop
check_ack_not_ahead "after SIGTERM"
compare_pg >/dev/null || { compare_pg || true; fail "target differs from source after the final stop"; }
log "all assertions passed ($kills kills)"
