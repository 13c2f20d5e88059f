#!/usr/bin/env bash
# schema_changes.sh — schema evolution from a real PostgreSQL into SQLite, per `schema_changes`.
#
# Asserts:
#  apply (default; publication FOR ALL TABLES, no `tables:`), with a writer inserting and
#  updating rows of the evolving table all along, od_compare equal after each of:
#    ADD COLUMN ... DEFAULT 'new' on a table with rows (rows that predate it hold 'new' in the sink)
#    DROP COLUMN, RENAME COLUMN, int -> bigint, varchar(10) -> text, numeric(8,2) -> numeric(12,2),
#    CREATE TABLE of a new table;
#  the history STATE_DIR/shop.schema.jsonl holds versions 1..7 of public.orders (one per change)
#  and version 1 of public.added, and the sink's _odsync_columns knows the renamed column's attnum.
#  stop: odsync exits non-zero with a message naming the table, the change and the policy; the
#  sink holds exactly the transactions committed before the change (ids 1..6), not the column.
#  ignore: odsync keeps running; the sink keeps its original columns, and the values of the kept
#  columns (id, qty = renamed quantity, price) equal the source's; a new column never appears.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init schema_changes
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
pg_start shop
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
WRITER_PID=

test_extra_cleanup() {
  if [[ -n "$WRITER_PID" ]]; then
    kill "$WRITER_PID" 2>/dev/null
    wait "$WRITER_PID" 2>/dev/null
  fi
}

# config FILE PIPELINE DB POLICY: a FOR ALL TABLES pipeline of database DB into $SINK_DB.
config() {
  cat >"$1" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: $2
    source: { type: postgres, dsn: "$(pg_dsn "$3")" }
    sink: { type: sqlite, path: $SINK_DB }
    schema_changes: $4
YAML
}

# ---------------------------------------------------------------- apply
SINK_DB=$TEST_TMP/apply.db
log "PostgreSQL on port $PGPORT; apply: schema and rows"
pg_psql <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, qty int, price numeric(8,2), label varchar(10), note text);
CREATE SEQUENCE ids START 1000;
SQL
config "$CONFIG" shop shop apply
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_shop 60
# (no initial snapshot yet: rows written once the slot streams)
pg_psql -c "INSERT INTO orders SELECT g, g % 7, g * 1.25, 'l' || g, 'note ' || g FROM generate_series(1, 200) g"
wait_equal 60

# Writes that keep going through every change: inserts (id only, so they fit every shape) and
# updates that resend whole rows in the current shape.
(
  while true; do
    psql -X -q -At -c "INSERT INTO orders (id) VALUES (nextval('ids')); UPDATE orders SET id = id WHERE id = 1 + (random() * 150)::int" >/dev/null 2>&1 || true
    sleep 0.05
  done
) &
WRITER_PID=$!

step() { # step "what" SQL: run the change, one more write, wait until the sink equals the source
  log "apply: $1"
  pg_psql -c "$2"
  pg_psql -c "UPDATE orders SET id = id WHERE id = 2"
  wait_equal 60 >/dev/null
  odsync_running || fail "odsync exited after: $1"
}
step "ADD COLUMN status text DEFAULT 'new'" "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new'"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM orders WHERE id <= 200 AND status = 'new'") == 200 ]] ||
  fail "rows that predate ADD COLUMN ... DEFAULT 'new' do not hold 'new' in the sink"
step "DROP COLUMN note" "ALTER TABLE orders DROP COLUMN note"
step "RENAME COLUMN qty TO quantity" "ALTER TABLE orders RENAME COLUMN qty TO quantity"
step "quantity int -> bigint" "ALTER TABLE orders ALTER COLUMN quantity TYPE bigint"
pg_psql -c "UPDATE orders SET quantity = 9000000000 WHERE id = 3"
step "label varchar(10) -> text" "ALTER TABLE orders ALTER COLUMN label TYPE text"
pg_psql -c "UPDATE orders SET label = 'longer than ten characters' WHERE id = 4"
step "price numeric(8,2) -> numeric(12,2)" "ALTER TABLE orders ALTER COLUMN price TYPE numeric(12,2)"
pg_psql -c "UPDATE orders SET price = 1234567890.12 WHERE id = 5"
step "CREATE TABLE added" "CREATE TABLE added (id int PRIMARY KEY, v text); INSERT INTO added VALUES (1, 'one'), (2, NULL)"
kill "$WRITER_PID" 2>/dev/null || true
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=
wait_equal 60
[[ $(sqlite3 "$SINK_DB" "SELECT group_concat(name, ',') FROM pragma_table_info('orders')") == "id,quantity,price,label,status" ]] ||
  fail "sink columns of orders: $(sqlite3 "$SINK_DB" "SELECT group_concat(name, ',') FROM pragma_table_info('orders')")"
[[ $(sqlite3 "$SINK_DB" "SELECT attnum FROM _odsync_columns WHERE tbl = 'orders' AND name = 'quantity'") == 2 ]] ||
  fail "_odsync_columns does not record attnum 2 for the renamed column quantity"
odsync_stop

HISTORY=$TEST_TMP/state/shop.schema.jsonl
[[ -f "$HISTORY" ]] || fail "no schema history at $HISTORY (is od_schema wired into the pipeline?)"
versions=$(grep -o '"table":"public.orders","version":[0-9]*' "$HISTORY" | grep -o '[0-9]*$' | tr '\n' ' ')
[[ "$versions" == "1 2 3 4 5 6 7 " ]] || fail "history versions of public.orders: '$versions', expected 1..7"
grep -q '"change":"column note dropped"' "$HISTORY" || fail "history lacks the DROP COLUMN line"
grep -q '"change":"column qty renamed to quantity"' "$HISTORY" || fail "history lacks the RENAME line"
grep -q '"change":"column quantity changed from integer to bigint"' "$HISTORY" || fail "history lacks int -> bigint"
grep -q '"table":"public.added","version":1' "$HISTORY" || fail "history lacks the new table"

# ---------------------------------------------------------------- stop
SINK_DB=$TEST_TMP/stop.db
log "stop: a new database and pipeline"
pg_psql -c "CREATE DATABASE stopdb"
pg_psql -d stopdb -c "CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)"
config "$CONFIG" stopper stopdb stop
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_stopper 60
pg_psql -d stopdb -c "INSERT INTO t VALUES (4, 4)"
# Rows 1-3 existed before the pipeline: the initial snapshot copies them (docs/SNAPSHOTS.md).
wait_for "[[ \$(sqlite3 '$SINK_DB' 'SELECT count(*) FROM t' 2>/dev/null) == 4 ]]" 60 || fail "first row not in the sink"
pg_psql -d stopdb <<'SQL'
INSERT INTO t VALUES (5, 5);
INSERT INTO t VALUES (6, 6);
ALTER TABLE t ADD COLUMN note text;
INSERT INTO t VALUES (7, 7, 'after the change');
INSERT INTO t VALUES (8, 8, 'after the change');
SQL
wait_for "! kill -0 $ODSYNC_PID" 60 || fail "odsync still runs after a schema change under schema_changes: stop"
rc=0
wait "$ODSYNC_PID" || rc=$?
ODSYNC_PID=
((rc != 0)) || fail "odsync exited 0 after a schema change under schema_changes: stop"
grep -q "table public.t changed on the source (column note text added); schema_changes is 'stop'" "$LOG" ||
  fail "odsync's log does not name the table, the change and the policy"
got=$(sqlite3 "$SINK_DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY id)")
[[ "$got" == "1,2,3,4,5,6" ]] ||
  fail "stop: the sink holds ids '$got', expected exactly 1,2,3 (the snapshot) and 4,5,6 (the changes before the schema change)"
[[ $(sqlite3 "$SINK_DB" "SELECT count(*) FROM pragma_table_info('t') WHERE name = 'note'") == 0 ]] ||
  fail "stop: the sink has the new column"

# ---------------------------------------------------------------- ignore
SINK_DB=$TEST_TMP/ignore.db
log "ignore: a new database and pipeline"
pg_psql -c "CREATE DATABASE ignoredb"
pg_psql -d ignoredb -c "CREATE TABLE t (id int PRIMARY KEY, qty int, price numeric(8,2), note text)"
config "$CONFIG" keeper ignoredb ignore
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_keeper 60
pg_psql -d ignoredb -c "INSERT INTO t SELECT g, g, g * 0.5, 'n' || g FROM generate_series(1, 50) g"
PGDATABASE=ignoredb wait_equal 60 >/dev/null
pg_psql -d ignoredb <<'SQL'
ALTER TABLE t ADD COLUMN extra text DEFAULT 'x';
INSERT INTO t VALUES (51, 51, 25.5, 'n51', 'e51');
ALTER TABLE t RENAME COLUMN qty TO quantity;
UPDATE t SET quantity = quantity * 10 WHERE id <= 10;
ALTER TABLE t DROP COLUMN note;
INSERT INTO t (id, quantity, price) VALUES (52, 520, 1.5);
UPDATE t SET price = price + 1 WHERE id BETWEEN 20 AND 25;
DELETE FROM t WHERE id = 30;
SQL
src_rows() { pg_psql -d ignoredb -c "SELECT id, quantity, price FROM t ORDER BY id"; }
sink_rows() { sqlite3 "$SINK_DB" "SELECT id, qty, price FROM t ORDER BY id" 2>&1; }
wait_for '[[ "$(src_rows)" == "$(sink_rows)" ]]' 60 ||
  fail "ignore: kept columns differ: $(diff <(src_rows) <(sink_rows) | head -5)"
odsync_running || fail "ignore: odsync exited"
[[ $(sqlite3 "$SINK_DB" "SELECT group_concat(name, ',') FROM pragma_table_info('t')") == "id,qty,price,note" ]] ||
  fail "ignore: sink columns changed: $(sqlite3 "$SINK_DB" "SELECT group_concat(name, ',') FROM pragma_table_info('t')")"
[[ $(sqlite3 "$SINK_DB" "SELECT quote(note) FROM t WHERE id = 52") == NULL ]] || fail "ignore: dropped column not NULL"
odsync_stop
log "all assertions passed"
