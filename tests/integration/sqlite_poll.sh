#!/usr/bin/env bash
# sqlite_poll.sh — query-based polling of an SQLite source file (`type: sqlite_poll`) into SQLite,
# across SIGKILLs. The source (WAL mode) takes its watermarks from a counter table, raised by
# triggers inside every writing transaction; deletes are soft (deleted = 1).
#
# Asserts:
#  - rows present before the first run arrive (the initial load), including a row whose
#    watermark is NULL;
#  - under a workload of inserts, updates, multi-statement transactions, soft deletes and
#    un-deletes on a table with an INTEGER PRIMARY KEY and one with a composite key, with odsync
#    SIGKILLed at random moments (at least 4 times) and restarted, the sink ends equal, row for row
#    and storage class for storage class (quote()), to the source's live rows (deleted = 0);
#  - the PostgreSQL sink holds the same live rows with the mapped types (bigint, text, double
#    precision, bytea): od_compare between it and a copy of the source file without the deleted rows;
#  - the sink's checkpoint is a sqlpoll position naming both tables' watermarks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init sqlite_poll
pg_start warehouse
DST_DSN=$(pg_dsn)
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-15}
SRC=$TEST_TMP/source.db
SINK_DB=$TEST_TMP/sink.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
sqlite3 "$SRC" <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE counter (n INTEGER NOT NULL);
INSERT INTO counter VALUES (0);
CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB, version INTEGER, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE tags (k TEXT, n INTEGER, note TEXT, version INTEGER, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (k, n));
CREATE TRIGGER items_ins AFTER INSERT ON items BEGIN
  UPDATE counter SET n = n + 1; UPDATE items SET version = (SELECT n FROM counter) WHERE id = NEW.id; END;
CREATE TRIGGER items_upd AFTER UPDATE OF v, r, b, deleted ON items BEGIN
  UPDATE counter SET n = n + 1; UPDATE items SET version = (SELECT n FROM counter) WHERE id = NEW.id; END;
CREATE TRIGGER tags_ins AFTER INSERT ON tags BEGIN
  UPDATE counter SET n = n + 1; UPDATE tags SET version = (SELECT n FROM counter) WHERE k = NEW.k AND n = NEW.n; END;
CREATE TRIGGER tags_upd AFTER UPDATE OF note, deleted ON tags BEGIN
  UPDATE counter SET n = n + 1; UPDATE tags SET version = (SELECT n FROM counter) WHERE k = NEW.k AND n = NEW.n; END;
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 300)
INSERT INTO items (v, r, b) SELECT 'pre ' || x, x / 7.0, randomblob(8) FROM g;
INSERT INTO tags (k, n, note) VALUES ('a', 1, 'pre'), ('b', 2, NULL);
UPDATE items SET version = NULL WHERE id = 1; -- a row without a watermark: only the initial load sees it
SQL
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: lp
    source: { type: sqlite_poll, path: $SRC, tables: [items, tags], watermark: version, deleted_column: deleted, interval_ms: 100 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: lpg
    source: { type: sqlite_poll, path: $SRC, tables: [items, tags], watermark: version, deleted_column: deleted, interval_ms: 100 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
src_rows() {
  sqlite3 "$SRC" "SELECT id, quote(v), quote(r), quote(b), quote(version), deleted FROM items WHERE deleted = 0 ORDER BY id" \
    "SELECT quote(k), n, quote(note), quote(version), deleted FROM tags WHERE deleted = 0 ORDER BY k, n"
}
sink_rows() {
  sqlite3 "$SINK_DB" "SELECT id, quote(v), quote(r), quote(b), quote(version), deleted FROM items ORDER BY id" \
    "SELECT quote(k), n, quote(note), quote(version), deleted FROM tags ORDER BY k, n" 2>/dev/null
}
workload() {
  local end=$((SECONDS + WORKLOAD_SECONDS)) it=0
  while ((SECONDS < end)); do
    it=$((it + 1))
    sqlite3 "$SRC" <<SQL || { echo "workload: sqlite3 failed in iteration $it"; return 1; }
.timeout 10000
BEGIN IMMEDIATE;
INSERT INTO items (v, r, b) VALUES ('it $it', $it * 0.5, x'00ff'), ('it $it b', NULL, NULL);
UPDATE items SET v = v || '.', r = coalesce(r, 0) + 1 WHERE id = (SELECT max(id) FROM items) - 3;
COMMIT;
UPDATE items SET deleted = 1 WHERE id = (SELECT min(id) FROM items WHERE deleted = 0 AND id > 1);
INSERT INTO tags (k, n, note) VALUES ('t', $it, 'n $it');
UPDATE tags SET note = note || '+' WHERE k = 't' AND n = $((it / 2 + 1));
UPDATE tags SET deleted = 1 - deleted WHERE k = 't' AND n = $((it / 3 + 1));
SQL
    if ((it % 10 == 0)); then sqlite3 "$SRC" ".timeout 10000" "UPDATE items SET deleted = 0, v = 'back' WHERE id = (SELECT max(id) FROM items WHERE deleted = 1)"; fi
  done
  echo "workload: $it iterations"
}
odsync_start "$CONFIG" "$LOG"
wait_for "[[ \$(sqlite3 $SINK_DB 'SELECT count(*) FROM items' 2>/dev/null) == 300 ]]" 60 || fail "the initial load did not arrive"
[[ $(sqlite3 "$SINK_DB" "SELECT v FROM items WHERE id = 1") == "pre 1" ]] || fail "the row with a NULL watermark is missing"
workload_start workload
kills=0
while kill -0 "$WORKLOAD_PID" 2>/dev/null || ((kills < 4)); do
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + r / 32767 * 1.5 }')"
  odsync_running || { wait "$ODSYNC_PID" || true; fail "odsync exited on its own (before kill $((kills + 1)))"; }
  odsync_kill9
  kills=$((kills + 1))
  log "kill $kills"
  odsync_start "$CONFIG" "$LOG"
done
workload_wait
[[ $(sqlite3 "$SRC" "SELECT count(*) FROM items WHERE deleted = 1") -gt 0 ]] || fail "workload: nothing soft-deleted"
wait_for "[[ \"\$(src_rows)\" == \"\$(sink_rows)\" ]]" 120 || {
  diff <(src_rows) <(sink_rows) | head -20
  fail "the sink is not equal to the source's live rows"
}
log "equal: $(src_rows | wc -l) rows"
# The PostgreSQL sink against a copy of the source without its soft-deleted rows.
pg_equal() {
  rm -f "$TEST_TMP/live.db"
  sqlite3 "$SRC" ".timeout 10000" ".backup $TEST_TMP/live.db" &&
    sqlite3 "$TEST_TMP/live.db" "DELETE FROM items WHERE deleted = 1; DELETE FROM tags WHERE deleted = 1; DROP TABLE counter;" &&
    "$OD_COMPARE" --pg "$DST_DSN" --sqlite "$TEST_TMP/live.db" --table public.items --table public.tags
}
wait_for "pg_equal >/dev/null 2>&1" 120 || { pg_equal || true; fail "the PostgreSQL sink is not equal to the source's live rows"; }
pg_equal
[[ $(pg_psql -c "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0") == "bigint,text,double precision,bytea,bigint,bigint" ]] ||
  fail "PostgreSQL sink column types: $(pg_psql -c "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0")"
odsync_stop
[[ "$(src_rows)" == "$(sink_rows)" ]] || fail "the sink differs after the final stop"
cp=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'lp'")
[[ "$cp" =~ ^sqlpoll:[0-9]+,[0-9]+$ ]] || fail "checkpoint '$cp' is not a sqlpoll position of two tables"
log "ok ($kills kills, checkpoint $cp)"
