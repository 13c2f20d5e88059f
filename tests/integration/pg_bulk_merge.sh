#!/usr/bin/env bash
# pg_bulk_merge.sh — the PostgreSQL sink's set-based apply (src/sinks/postgres_bulk.c): changes of
# keyed tables are buffered and merged by key within a sink transaction, then sent as one
# DELETE ... unnest and one INSERT ... unnest ... ON CONFLICT per table.
#
# Asserts: the target equals the source (od_compare_pg) after transactions that each mix, for one
# key, insert -> delete -> insert -> partial update (TOASTed value UNCHANGED: per-row path after a
# flush), insert -> key change -> delete of the new key, delete -> re-insert, update of a row
# inserted in the same transaction, text values 'NULL', '', NULL, quotes, backslashes, braces and
# commas in one buffer, a TRUNCATE after buffered rows, a keyless table in between, a composite
# key, and a table whose every column is key (DO NOTHING); and the same with `bulk: false`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_bulk_merge
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
TABLES=(--table public.docs --table public.pairs --table public.tags --table public.notes)

pg_psql <<'SQL'
CREATE TABLE docs (id int PRIMARY KEY, title text, n int, body text);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE pairs (a int, b text, v numeric(10,2), PRIMARY KEY (a, b));
CREATE TABLE tags (t text PRIMARY KEY);
CREATE TABLE notes (k int, s text);
SQL

for db in on off; do
  PGPORT=$DST_PORT pg_psql -d postgres -c "CREATE DATABASE w_$db" >/dev/null
done

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: bon
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.docs, public.pairs, public.tags, public.notes] }
    sink: { type: postgres, dsn: "host=127.0.0.1 port=$DST_PORT dbname=w_on user=postgres" }
  - name: boff
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.docs, public.pairs, public.tags, public.notes] }
    sink: { type: postgres, dsn: "host=127.0.0.1 port=$DST_PORT dbname=w_off user=postgres", bulk: false }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_bon 60
wait_slot_active odsync_boff 60
log "slots active; workload"

pg_psql <<'SQL'
INSERT INTO docs SELECT g, 't' || g, g, NULL FROM generate_series(1, 50) g;
INSERT INTO pairs SELECT g, 'x', g FROM generate_series(1, 20) g;
BEGIN;
INSERT INTO docs VALUES (100, 'first', 1, repeat('a', 5000));
DELETE FROM docs WHERE id = 100;
INSERT INTO docs VALUES (100, 'second', 2, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g));
UPDATE docs SET n = 3 WHERE id = 100;
INSERT INTO docs VALUES (101, 'NULL', NULL, ''), (102, NULL, 0, 'NULL'),
  (103, E'q " b \\ {x,y} ; (1,2)', -1, E'\\N');
UPDATE docs SET title = 'moved' WHERE id = 103;
INSERT INTO docs VALUES (104, 'to move', 4, NULL);
UPDATE docs SET id = 105 WHERE id = 104;
DELETE FROM docs WHERE id = 105;
DELETE FROM docs WHERE id = 7;
INSERT INTO docs VALUES (7, 'reborn', 77, NULL);
DELETE FROM docs WHERE id = 8;
UPDATE docs SET title = title || '!' WHERE id BETWEEN 10 AND 20;
INSERT INTO notes VALUES (1, 'a'), (1, 'a');
UPDATE docs SET title = 'after keyless' WHERE id = 11;
UPDATE pairs SET v = v * 2 WHERE a <= 10;
DELETE FROM pairs WHERE a = 3;
INSERT INTO pairs VALUES (3, 'x', 3.456), (3, 'NULL', NULL);
INSERT INTO tags VALUES ('a'), ('b'), ('NULL'), (''), ('"');
DELETE FROM tags WHERE t = 'b';
INSERT INTO tags VALUES ('b');
COMMIT;
BEGIN;
INSERT INTO pairs VALUES (99, 'y', 1);
TRUNCATE pairs;
INSERT INTO pairs VALUES (1, 'after truncate', 1.5);
UPDATE docs SET n = n + 1 WHERE id = 100;
COMMIT;
SQL

for db in on off; do
  deadline=$(($(date +%s) + 60))
  until out=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "host=127.0.0.1 port=$DST_PORT dbname=w_$db user=postgres" \
    "${TABLES[@]}" 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "w_$db not equal to the source after 60 s"; }
    sleep 1
  done
  log "w_$db equal to the source"
done
odsync_stop
log "all assertions passed"
