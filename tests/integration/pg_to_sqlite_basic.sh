#!/usr/bin/env bash
# pg_to_sqlite_basic.sh — one postgres -> sqlite pipeline, end to end, against a real server.
#
# Asserts: after a workload of inserts, updates (incl. primary-key changes, updates that leave a
# TOASTed column untouched), deletes, a TRUNCATE followed by new inserts and a rolled-back
# transaction, the SQLite sink holds exactly the source rows (od_compare: values and storage
# classes; keyless tables as multisets), for
#   orders    primary key, many types, NaN/Infinity, NULLs and empty strings/bytea
#   events    keyless, insert-only, duplicate rows on purpose, truncated then refilled
#   documents primary key, >100 kB incompressible TOASTed body, small-column updates
#   ledger    keyless, REPLICA IDENTITY FULL, updates/deletes of one of several duplicates, NULLs
# then that SIGTERM makes odsync exit 0, `odsync check` exits 0, the checkpoint row exists with a
# position > 0 and not past the server's WAL end, and that a restart continues without loss or
# duplicates.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_to_sqlite_basic
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

log "PostgreSQL on port $PGPORT; schema"
pg_psql <<'SQL'
CREATE TABLE orders (
  id int PRIMARY KEY, customer_id bigint, note text, amount numeric(12,2), paid bool,
  created_at timestamptz, payload bytea, attrs jsonb, score float8, qty smallint);
CREATE TABLE events (kind text, n int, at timestamptz, tag text);
CREATE TABLE documents (id bigint PRIMARY KEY, title text, version int, body text);
CREATE TABLE ledger (account text, amount numeric(14,3), memo text, seq int);
ALTER TABLE ledger REPLICA IDENTITY FULL;
SQL

write_config "$CONFIG" shop "public.orders, public.events, public.documents, public.ledger"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
log "slot active; workload"

# orders: bulk rows, then the special values.
pg_psql <<'SQL'
INSERT INTO orders
SELECT g, g * 1000003::bigint, 'order ' || g, (g * 1.37)::numeric(12,2), g % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 7.123456 seconds',
       decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 3)),
       g / 7.0, (g % 100)::smallint
FROM generate_series(1, 300) g;
INSERT INTO orders VALUES
  (1001, NULL, '', 0.00, false, NULL, '\x', '{}', 'NaN', 0),
  (1002, -9223372036854775808, NULL, -9999999999.99, true, '1999-12-31 23:59:59.999999+00', NULL, NULL, 'Infinity', -32768),
  (1003, 9223372036854775807, E'quote '' dq " backslash \\ tab \t nl \n end', 9999999999.99, NULL, 'infinity', '\x00ff00', '[1, "é", null, {"k": "v"}]', '-Infinity', 32767),
  (1004, 0, 'unicode ☃ 日本語 é', 0.01, true, '-infinity', '\x5c27', 'null', 0.1, NULL),
  (1005, 1, ' ', NULL, false, '2024-02-29 12:00:00+00', '\x00', '"str"', 1e308, 1),
  (1006, 2, 'tiny', 1, true, '2024-02-29 12:00:00+00', '\x01', '1.50', 5e-324, 2),
  (1007, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SQL

# Many small transactions touching orders, events and ledger.
for i in $(seq 1 40); do
  pg_psql <<SQL
BEGIN;
UPDATE orders SET paid = NOT coalesce(paid, false), score = score * 2, note = note || '+' WHERE id = $i;
INSERT INTO events VALUES ('tick', $i % 5, '2024-03-01 00:00:00+00', NULL), ('tick', $i % 5, '2024-03-01 00:00:00+00', NULL);
INSERT INTO ledger VALUES ('acct-' || ($i % 3), $i * 1.5, CASE WHEN $i % 4 = 0 THEN NULL ELSE 'memo' END, $i % 2);
COMMIT;
SQL
done

# Primary-key changes, deletes, NULL/empty transitions, a no-op update.
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
UPDATE orders SET score = 2.5 WHERE id = 1001;
SQL

# documents: >100 kB of incompressible text per body, then updates that leave body untouched.
pg_psql <<'SQL'
INSERT INTO documents
SELECT d, 'doc ' || d, 1, (SELECT string_agg(md5(random()::text || d || g), '') FROM generate_series(1, 4000) g)
FROM generate_series(1, 6) d;
SQL
stored=$(pg_psql -c "SELECT min(pg_column_size(body)) FROM documents")
((stored > 100000)) || fail "test premise: document bodies must be stored TOASTed above 100 kB, min is $stored bytes"
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

# ledger (REPLICA IDENTITY FULL, keyless): duplicates, then change/delete exactly one of them.
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

# TRUNCATE of the keyless table, then new rows (with duplicates) in later transactions.
pg_psql -c "TRUNCATE events"
pg_psql <<'SQL'
INSERT INTO events SELECT 'after-truncate', g % 10, '2024-04-01 00:00:00+00', CASE WHEN g % 3 = 0 THEN '' END
FROM generate_series(1, 2000) g;
INSERT INTO events VALUES ('after-truncate', 1, '2024-04-01 00:00:00+00', ''), ('after-truncate', 1, '2024-04-01 00:00:00+00', '');
SQL

# A transaction across all tables, and one rolled back (must never reach the sink).
pg_psql <<'SQL'
BEGIN;
INSERT INTO orders VALUES (7000, 7, 'multi', 7.77, true, now(), '\xdeadbeef', '{"m": 1}', 7.5, 7);
INSERT INTO events VALUES ('multi', 7, NULL, 'x');
UPDATE documents SET version = version + 1 WHERE id = 1;
DELETE FROM ledger WHERE account = 'acct-0' AND seq = 1;
COMMIT;
BEGIN;
INSERT INTO orders VALUES (7001, 7, 'rolled back', 0, true, now(), NULL, NULL, 0, 0);
INSERT INTO events VALUES ('rolled back', 0, NULL, NULL);
DELETE FROM documents;
ROLLBACK;
SQL

log "workload done; waiting for the sink to catch up"
wait_equal 60
odsync_running || fail "odsync is not running after catching up"

log "stopping odsync with SIGTERM"
odsync_stop
set +e
check_out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1)
check_rc=$?
set -e
echo "$check_out"
[[ $check_rc -eq 0 ]] || fail "odsync check -c exited $check_rc after a clean run"

cp_lsn=$(checkpoint_lsn shop)
[[ -n "$cp_lsn" ]] || fail "no checkpoint row for pipeline 'shop' in _odsync_checkpoint"
pos=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'shop'")
[[ "$pos" =~ ^[0-9]+$ ]] || fail "checkpoint position is not an integer: '$pos'"
((pos > 0)) || fail "checkpoint position is $pos, expected > 0"
wal_end=$(lsn_to_int "$(pg_psql -c "SELECT pg_current_wal_lsn()")")
((cp_lsn <= wal_end)) || fail "checkpoint LSN $cp_lsn is past the server's WAL end $wal_end"
log "checkpoint: position=$pos lsn=$cp_lsn (wal end $wal_end)"

log "restart: more changes after a clean stop"
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
pg_psql <<'SQL'
INSERT INTO events VALUES ('restart', 1, NULL, NULL), ('restart', 1, NULL, NULL);
UPDATE orders SET note = 'after restart' WHERE id = 5000;
UPDATE documents SET title = 'after restart' WHERE id = 100;
DELETE FROM ledger WHERE ctid = (SELECT min(ctid) FROM ledger WHERE account = 'dup');
SQL
wait_equal 60
odsync_stop
pos2=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'shop'")
((pos2 > pos)) || fail "checkpoint position did not advance after the restart ($pos -> $pos2)"
log "all assertions passed"
