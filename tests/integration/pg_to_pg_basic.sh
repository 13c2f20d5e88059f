#!/usr/bin/env bash
# pg_to_pg_basic.sh — one postgres -> postgres pipeline, end to end, source and target being two
# separate PostgreSQL servers.
#
# Asserts: after a workload of inserts, updates (incl. primary-key changes, updates that leave a
# TOASTed column untouched), deletes, a TRUNCATE followed by new inserts and a rolled-back
# transaction, the target holds exactly the source rows (od_compare_pg: column names and
# format_type, rows as sorted multisets of their text form), for
#   orders    primary key, many types (int, bigint, numeric, unicode text, bool, timestamptz, date,
#             bytea, jsonb, uuid, arrays, float8 with NaN/±Infinity), NULL vs ''
#   events    keyless, insert-only, duplicate rows on purpose, truncated then refilled
#   documents primary key, >100 kB incompressible TOASTed body, small-column updates
#   ledger    keyless, REPLICA IDENTITY FULL, updates/deletes of one of several duplicates, NULLs;
#             written to archive.ledger_copy through table_map (schema created by the sink)
# then that SIGTERM makes odsync exit 0, the checkpoint row exists with a position > 0 and not
# past the source's WAL end, that a restart continues without loss or duplicates (incl. a column
# added on the source), that killing the sink's target connection is retried and recovered, and
# that od_compare_pg itself reports a changed and a duplicated target row (exit 1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_to_pg_basic
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

# Two servers: pg_start exports PGPORT etc. for the last one; keep both and point the helpers
# (pg_psql, wait_slot_active, the failure log tail) at the source.
pg_start_pair shop warehouse

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
TABLES=(--table public.orders --table public.events --table public.documents
  --table public.ledger=archive.ledger_copy)
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}"; }
wait_equal_pg() {
  local timeout=$1 deadline out
  deadline=$(($(date +%s) + timeout))
  while true; do
    if out=$(compare_pg 2>&1); then
      echo "$out"
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      echo "$out" >&2
      fail "target not equal to source after ${timeout}s (od_compare_pg report above)"
    fi
    sleep 1
  done
}
checkpoint_pos() {
  dst_psql -c "SELECT (position - '0/0'::pg_lsn)::bigint FROM public._odsync_checkpoint WHERE pipeline = '$1'"
}

log "source on port $SRC_PORT, target on port $DST_PORT; schema"
pg_psql <<'SQL'
CREATE TABLE orders (
  id int PRIMARY KEY, customer_id bigint, note text, amount numeric(12,2), paid bool,
  created_at timestamptz, due date, payload bytea, attrs jsonb, ref uuid, tags text[], nums int[],
  score float8, qty smallint);
CREATE TABLE events (kind text, n int, at timestamptz, tag text);
CREATE TABLE documents (id bigint PRIMARY KEY, title text, version int, body text);
CREATE TABLE ledger (account text, amount numeric(14,3), memo text, seq int);
ALTER TABLE ledger REPLICA IDENTITY FULL;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: shop
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.orders, public.events, public.documents, public.ledger] }
    sink:
      type: postgres
      dsn: "$DST_DSN"
      table_map: [public.ledger=archive.ledger_copy]
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
log "slot active; workload"

pg_psql <<'SQL'
INSERT INTO orders
SELECT g, g * 1000003::bigint, 'order ' || g, (g * 1.37)::numeric(12,2), g % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 7.123456 seconds',
       date '2024-01-01' + g, decode(md5(g::text), 'hex'),
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 3)),
       md5(g::text)::uuid, ARRAY['t' || g, NULL, 'x y'], ARRAY[g, -g], g / 7.0, (g % 100)::smallint
FROM generate_series(1, 300) g;
INSERT INTO orders VALUES
  (1001, NULL, '', 0.00, false, NULL, NULL, '\x', '{}', NULL, '{}', '{}', 'NaN', 0),
  (1002, -9223372036854775808, NULL, -9999999999.99, true, '1999-12-31 23:59:59.999999+00', '0001-01-01', NULL, NULL,
   '00000000-0000-0000-0000-000000000000', ARRAY[''], NULL, 'Infinity', -32768),
  (1003, 9223372036854775807, E'quote '' dq " backslash \\ tab \t nl \n cr \r end', 9999999999.99, NULL, 'infinity',
   'infinity', '\x00ff00', '[1, "é", null, {"k": "v"}]', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
   ARRAY[E'a\\b', 'c"d', E'e\tf', '{}', ','], ARRAY[1, NULL], '-Infinity', 32767),
  (1004, 0, 'unicode ☃ 日本語 é 🎉', 0.01, true, '-infinity', '-infinity', '\x5c27', 'null', NULL, NULL, NULL, 0.1, NULL),
  (1005, 1, ' ', NULL, false, '2024-02-29 12:00:00+00', '2024-02-29', '\x00', '"str"', NULL, ARRAY[NULL]::text[], NULL, 1e308, 1),
  (1006, 2, 'tiny', 1, true, '2024-02-29 12:00:00+00', NULL, '\x01', '1.50', NULL, NULL, NULL, 5e-324, 2),
  (1007, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (1008, 4, E'\\N', 4, true, NULL, NULL, '\x5c4e', '{"k": "\\\\N"}', NULL, ARRAY[E'\\N'], NULL, -0.0, 4);
SQL

for i in $(seq 1 40); do
  pg_psql <<SQL
BEGIN;
UPDATE orders SET paid = NOT coalesce(paid, false), score = score * 2, note = note || '+' WHERE id = $i;
INSERT INTO events VALUES ('tick', $i % 5, '2024-03-01 00:00:00+00', NULL), ('tick', $i % 5, '2024-03-01 00:00:00+00', NULL);
INSERT INTO ledger VALUES ('acct-' || ($i % 3), $i * 1.5, CASE WHEN $i % 4 = 0 THEN NULL ELSE 'memo' END, $i % 2);
COMMIT;
SQL
done

# Primary-key changes, deletes, NULL/empty transitions, a no-op update, insert+update+delete of
# one key and a key change back and forth inside one transaction.
pg_psql <<'SQL'
UPDATE orders SET id = id + 10000 WHERE id BETWEEN 10 AND 20;
UPDATE orders SET id = 5000, note = 'moved' WHERE id = 1;
DELETE FROM orders WHERE id % 7 = 0;
UPDATE orders SET note = NULL WHERE id = 1001;
UPDATE orders SET note = '' WHERE id = 1007;
UPDATE orders SET payload = NULL, attrs = '{"z": []}' WHERE id = 1003;
UPDATE orders SET payload = '\x' WHERE id = 1002;
UPDATE orders SET note = note WHERE id BETWEEN 100 AND 110;
UPDATE orders SET score = 'NaN' WHERE id = 1006;
UPDATE orders SET score = 2.5, tags = ARRAY['x'] WHERE id = 1001;
BEGIN;
INSERT INTO orders (id, note) VALUES (9000, 'short-lived');
UPDATE orders SET note = 'updated' WHERE id = 9000;
DELETE FROM orders WHERE id = 9000;
INSERT INTO orders (id, note) VALUES (9001, 'a');
UPDATE orders SET id = 9002 WHERE id = 9001;
UPDATE orders SET id = 9001, note = 'back' WHERE id = 9002;
COMMIT;
SQL

pg_psql <<'SQL'
INSERT INTO documents
SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(random()::text || d || g), '') FROM generate_series(1, 4000) g)
FROM generate_series(1, 6) d;
SQL
pg_psql <<'SQL'
UPDATE documents SET title = title || ' (edited)', version = version + 1 WHERE id IN (1, 2, 3);
UPDATE documents SET version = version + 1 WHERE id = 1;
UPDATE documents SET id = 100, title = 'renumbered' WHERE id = 2;
UPDATE documents SET body = NULL, version = 9 WHERE id = 4;
UPDATE documents SET body = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3500)) WHERE id = 5;
UPDATE documents SET title = NULL WHERE id = 5;
DELETE FROM documents WHERE id = 6;
BEGIN;
UPDATE documents SET version = version + 10 WHERE id = 3;
UPDATE documents SET title = 'same transaction' WHERE id = 3;
COMMIT;
SQL

pg_psql <<'SQL'
INSERT INTO ledger VALUES ('dup', 1.000, 'same', 1), ('dup', 1.000, 'same', 1), ('dup', 1.000, 'same', 1),
                          ('nul', NULL, NULL, NULL), ('nul', NULL, NULL, NULL);
UPDATE ledger SET memo = 'changed one' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE account = 'dup');
DELETE FROM ledger WHERE ctid = (SELECT max(ctid) FROM ledger WHERE account = 'dup' AND memo = 'same');
UPDATE ledger SET memo = 'was null' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE account = 'nul');
DELETE FROM ledger WHERE ctid = (SELECT max(ctid) FROM ledger WHERE account = 'nul' AND memo IS NULL);
UPDATE ledger SET amount = amount + 0.001 WHERE account = 'acct-1';
DELETE FROM ledger WHERE account = 'acct-2' AND seq = 0;
SQL

pg_psql -c "TRUNCATE events"
pg_psql <<'SQL'
INSERT INTO events SELECT 'after-truncate', g % 10, '2024-04-01 00:00:00+00', CASE WHEN g % 3 = 0 THEN '' END
FROM generate_series(1, 2000) g;
INSERT INTO events VALUES ('after-truncate', 1, '2024-04-01 00:00:00+00', ''), ('after-truncate', 1, '2024-04-01 00:00:00+00', '');
BEGIN;
INSERT INTO events VALUES ('before-truncate-in-txn', 1, NULL, NULL);
TRUNCATE events;
INSERT INTO events VALUES ('after-truncate-in-txn', 2, NULL, NULL), ('after-truncate-in-txn', 2, NULL, NULL);
COMMIT;
SQL

pg_psql <<'SQL'
BEGIN;
INSERT INTO orders VALUES (7000, 7, 'multi', 7.77, true, now(), current_date, '\xdeadbeef', '{"m": 1}', gen_random_uuid(), '{a,b}', '{7}', 7.5, 7);
INSERT INTO events VALUES ('multi', 7, NULL, 'x');
UPDATE documents SET version = version + 1 WHERE id = 1;
DELETE FROM ledger WHERE account = 'acct-0' AND seq = 1;
COMMIT;
BEGIN;
INSERT INTO orders VALUES (7001, 7, 'rolled back', 0, true, now(), NULL, NULL, NULL, NULL, NULL, NULL, 0, 0);
INSERT INTO events VALUES ('rolled back', 0, NULL, NULL);
DELETE FROM documents;
ROLLBACK;
SQL

log "workload done; waiting for the target to catch up"
wait_equal_pg 60
odsync_running || fail "odsync is not running after catching up"
[[ $(dst_psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'public.orders'::regclass AND indisprimary") == 1 ]] ||
  fail "target table public.orders was created without its primary key"
[[ $(dst_psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'archive.ledger_copy'::regclass") == 0 ]] ||
  fail "keyless archive.ledger_copy has an index"

log "stopping odsync with SIGTERM"
odsync_stop
pos=$(checkpoint_pos shop)
[[ "$pos" =~ ^[0-9]+$ ]] || fail "no checkpoint row for pipeline 'shop' on the target (got '$pos')"
((pos > 0)) || fail "checkpoint position is $pos, expected > 0"
wal_end=$(lsn_to_int "$(pg_psql -c "SELECT pg_current_wal_lsn()")")
((pos <= wal_end)) || fail "checkpoint position $pos is past the source's WAL end $wal_end"
log "checkpoint: $pos (source wal end $wal_end)"

log "restart: more changes after a clean stop, incl. a new column"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
pg_psql <<'SQL'
INSERT INTO events VALUES ('restart', 1, NULL, NULL), ('restart', 1, NULL, NULL);
UPDATE orders SET note = 'after restart' WHERE id = 5000;
UPDATE documents SET title = 'after restart' WHERE id = 100;
DELETE FROM ledger WHERE ctid = (SELECT min(ctid) FROM ledger WHERE account = 'dup');
ALTER TABLE orders ADD COLUMN region varchar(8);
UPDATE orders SET region = 'eu' WHERE id < 50;
INSERT INTO orders (id, note, region) VALUES (8000, 'with region', 'us');
SQL
wait_equal_pg 60
log "target connection killed: the sink must reconnect and go on"
[[ $(dst_psql -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'odsync_shop_sink'") -ge 1 ]] ||
  fail "no sink connection (application_name odsync_shop_sink) found on the target"
pg_psql <<'SQL'
INSERT INTO events VALUES ('after-reconnect', 1, NULL, NULL);
UPDATE orders SET note = 'after reconnect' WHERE id = 5000;
SQL
wait_equal_pg 60
odsync_running || fail "odsync exited after losing its target connection"
grep "retrying" "$LOG" || fail "expected a retry message after the target connection was killed"
odsync_stop
pos2=$(checkpoint_pos shop)
((pos2 > pos)) || fail "checkpoint position did not advance after the restart ($pos -> $pos2)"
# The oracle itself: a changed, a duplicated and a removed row on the target must be reported.
dst_psql -c "UPDATE public.orders SET note = 'tampered' WHERE id = 5000"
if compare_pg >/dev/null 2>&1; then fail "od_compare_pg did not notice a changed row"; fi
dst_psql -c "UPDATE public.orders SET note = 'after restart' WHERE id = 5000"
dst_psql -c "INSERT INTO archive.ledger_copy SELECT * FROM archive.ledger_copy LIMIT 1"
set +e
compare_pg >"$TEST_TMP/negative.txt" 2>&1
neg_rc=$?
set -e
[[ $neg_rc -eq 1 ]] || { cat "$TEST_TMP/negative.txt"; fail "od_compare_pg exited $neg_rc on a duplicated row (expected 1)"; }
grep -q "extra on the target" "$TEST_TMP/negative.txt" || fail "od_compare_pg did not report the extra row"
log "all assertions passed"
