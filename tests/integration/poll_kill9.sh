#!/usr/bin/env bash
# poll_kill9.sh — query-based polling (`type: postgres_poll`) across SIGKILLs, both watermark modes,
# soft deletes: pipeline `lite` (watermark: xmin) into SQLite and pipeline `pgs` (watermark:
# updated_at, maintained by a BEFORE UPDATE trigger) into PostgreSQL, in one odsync process.
#
# Asserts:
#  - rows present before the first run arrive (the first poll is the initial load; in `lite` cut into
#    transactions of 100 rows, which the debug log shows);
#  - under a workload of inserts (single and 2,000-row batches), updates, repeated updates in one
#    transaction, soft deletes (deleted = true) and un-deletes, on a table with a bigint key and one
#    with a composite key, with odsync SIGKILLed at random moments (at least 4 times) and restarted,
#    each sink ends equal row for row to the source's live rows (NOT deleted): the live rows are
#    copied into a third database `expect` and compared with od_compare / od_compare_pg, so a row
#    missing, doubled, stale, or soft-deleted but still present in a sink is a failure;
#  - hard DELETEs (not visible to polling) disappear from the sinks through the periodic
#    reconciliation cycles (reconcile_interval_ms), and the log shows reconciliation cycles ran;
#  - each sink's checkpoint holds a poll horizon ("pgpoll:xmin:N" / "pgpoll:ts:N").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init poll_kill9
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/lite.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
DDL="
CREATE TABLE items (id bigint PRIMARY KEY, v text, amount numeric(12,2), f float8, b bytea, attrs jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(), deleted bool NOT NULL DEFAULT false);
CREATE TABLE accounts (region int, name text, balance numeric(14,3), updated_at timestamptz NOT NULL DEFAULT now(),
  deleted bool NOT NULL DEFAULT false, PRIMARY KEY (region, name));"
pg_psql <<SQL
$DDL
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN NEW.updated_at := now(); RETURN NEW; END \$\$;
CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();
CREATE SEQUENCE item_ids;
INSERT INTO items (id, v, amount, f, b, attrs) SELECT nextval('item_ids'), 'pre ' || g, g * 0.5,
  CASE WHEN g = 7 THEN 'NaN' ELSE g / 3.0 END, '\x00ff', jsonb_build_object('g', g) FROM generate_series(1, 500) g;
INSERT INTO accounts (region, name, balance) SELECT g % 7, 'acct ' || g, g FROM generate_series(1, 100) g;
CREATE DATABASE expect;
SQL
PGDATABASE=expect pg_psql -c "$DDL"
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: lite
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.accounts], watermark: xmin,
              deleted_column: deleted, interval_ms: 200, fetch_rows: 70, reconcile_interval_ms: 3000,
              load_chunk_rows: 100 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: pgs
    source: { type: postgres_poll, dsn: "$SRC_DSN", tables: [public.items, public.accounts], watermark: updated_at,
              lag_ms: 300, deleted_column: deleted, interval_ms: 200, reconcile_interval_ms: 2000 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

# The source's live rows into database expect (one snapshot per table).
refresh_expect() {
  local t
  PGDATABASE=expect pg_psql -c "TRUNCATE items, accounts"
  for t in items accounts; do
    pg_psql -c "COPY (SELECT * FROM $t WHERE NOT deleted) TO STDOUT" | PGDATABASE=expect pg_psql -c "COPY $t FROM STDIN"
  done
}
compare_all() {
  refresh_expect &&
    "$OD_COMPARE" --pg "$(pg_dsn expect)" --sqlite "$SINK_DB" --table public.items --table public.accounts &&
    "$OD_COMPARE_PG" --source "$(pg_dsn expect)" --target "$DST_DSN" --table public.items --table public.accounts
}

workload() {
  local end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    {
      cat <<SQL
INSERT INTO items (id, v, amount, f, b, attrs) SELECT nextval('item_ids'), 'it $it', $it * 0.25, $it / 7.0, '\x0102', '{"it": $it}' FROM generate_series(1, 3);
BEGIN;
UPDATE items SET v = v || '.', amount = amount + 1 WHERE id = (SELECT max(id) FROM items) - 5;
UPDATE items SET v = v || '!' WHERE id = (SELECT max(id) FROM items) - 5;
UPDATE accounts SET balance = balance + $it WHERE region = $it % 7;
COMMIT;
UPDATE items SET deleted = true WHERE id = (SELECT min(id) FROM items WHERE NOT deleted);
UPDATE accounts SET deleted = NOT deleted WHERE name = 'acct $((it % 100 + 1))';
INSERT INTO accounts (region, name, balance) VALUES ($it % 7, 'new $it', $it) ON CONFLICT DO NOTHING;
DELETE FROM items WHERE id = (SELECT max(id) FROM items WHERE v LIKE 'pre %');
SQL
      if ((it % 10 == 5)); then
        echo "INSERT INTO items (id, v, amount) SELECT nextval('item_ids'), 'bulk $it', g FROM generate_series(1, 2000) g;"
      fi
      if ((it % 10 == 0)); then echo "UPDATE items SET deleted = false, v = 'undeleted' WHERE id = (SELECT max(id) FROM items WHERE deleted);"; fi
    } | pg_psql >/dev/null || {
      echo "workload: psql failed in iteration $it"
      return 1
    }
  done
  echo "workload: $it iterations"
}

sed -i 's/^state_dir:/log_level: debug\nstate_dir:/' "$CONFIG"
odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(sqlite3 $SINK_DB 'SELECT count(*) FROM items' 2>/dev/null) == 500 && \$(dst_psql -c 'SELECT count(*) FROM items' 2>/dev/null) == 500 ]]" 120 ||
  fail "the rows present before the first run did not arrive in both sinks"
workload_start workload
kills=0
while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < 4)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.5 + r / 32767 * 2.0 }')"
  odsync_running || { wait "$ODSYNC_PID" || true; fail "odsync exited on its own (before kill $((kills + 1)))"; }
  odsync_kill9
  kills=$((kills + 1))
  log "kill $kills"
  odsync_start "$CONFIG" "$LOG"
done
workload_wait
[[ $(pg_psql -c "SELECT count(*) FROM items WHERE deleted") -gt 0 ]] || fail "workload: no soft-deleted item"
deadline=$(($(date +%s) + 180))
until out=$(compare_all 2>&1); do
  (($(date +%s) < deadline)) || { echo "$out" >&2; fail "sinks not equal to the source's live rows 180 s after the workload"; }
  sleep 1
done
echo "$out"
odsync_stop
compare_all >/dev/null || fail "sinks differ after the final stop"
grep -q "pipeline lite: postgres_poll source: initial load: chunk transaction load:5 delivered (100 rows)" "$LOG" || fail "pipeline lite: the initial load was not cut into chunk transactions"
grep -q "pipeline lite: postgres_poll source: reconciliation cycle" "$LOG" || fail "no reconciliation cycle in pipeline lite"
grep -q "pipeline pgs: postgres_poll source: reconciliation cycle" "$LOG" || fail "no reconciliation cycle in pipeline pgs"
[[ $(pg_psql -c "SELECT count(*) FROM items WHERE v LIKE 'pre %'") -lt 500 ]] || fail "workload: no hard delete"
cp=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'lite'")
[[ "$cp" == pgpoll:xmin:* ]] || fail "SQLite checkpoint is '$cp', not a pgpoll xmin horizon"
cp=$(dst_psql -c "SELECT concat_ws('|', position::text, position_text) FROM public._odsync_checkpoint WHERE pipeline = 'pgs'")
[[ "$cp" == *pgpoll:ts:* ]] || fail "PostgreSQL checkpoint is '$cp', not a pgpoll timestamp horizon"
log "ok ($kills kills)"
