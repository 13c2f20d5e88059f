#!/usr/bin/env bash
# pg_insert_conflict.sh — the PostgreSQL sink's optimistic path for new rows (postgres_bulk.c):
# runs of inserts go as a plain INSERT ... unnest (no ON CONFLICT) inside a savepoint; a key already
# on the target (23505) rolls the run back to the savepoint and redoes it as today's upsert.
#
# Asserts: on a hand-made target table (extra column with a default, columns in another order,
# a quoted unicode name) holding rows the stream later inserts, the target equals the source
# (od_compare_pg, on the source's columns) after (1) a transaction of new rows mixed with keys
# already there, (2) new rows only, (3) a mix of insert/update/delete of new and old keys in one
# buffer; the fallback was taken (its log line, per table); extra columns of pre-existing rows are kept, new rows get the default;
# no odsync savepoint is left open (the next transactions commit), and nothing is duplicated; after
# a restart a run of 1000 new rows is counted as 1000 plain inserts and 0 upserts, all 1000 sent by
# COPY (runs of at least 512 new rows: the sink option copy_min_rows), values with tab, newline, carriage return,
# backslash, the text '\N', NULL and unicode arriving byte for byte; a target that is a view (COPY
# refused, SQLSTATE 42809) gets its 600 new rows through the plain INSERT, with one WARN; a target
# with an INSERT rule (COPY would not fire it) gets its 700 new rows by INSERT, the rule fired 700
# times. Runs of fewer
# than 64 new rows (PGS_OPTIMISTIC_MIN_ROWS) go with the upsert, without a sync of their own: the
# unicode table's run is 103 rows so that it takes the optimistic path; (2) and (3) are small runs
# when the sink keeps up (one transaction per commit), among them keys already on the target (2005, 10).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init pg_insert_conflict
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
# The target's items has another column order and an extra column: compared through a view.
TABLES=(--table public.items=public.items_cmp --table 'public.Čísla x' --table public.logv --table public.ruled)

pg_psql <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE "Čísla x" (k text PRIMARY KEY, w numeric(8,2));
CREATE TABLE logv (id int PRIMARY KEY, note text);
CREATE TABLE ruled (id int PRIMARY KEY, note text);
SQL
dst_psql <<'SQL'
CREATE TABLE items (n int, extra text DEFAULT 'dflt', v text, id int PRIMARY KEY);
INSERT INTO items (id, v, n, extra) VALUES (5, 'stale', 0, 'keep5');
CREATE TABLE "Čísla x" (k text PRIMARY KEY, w numeric(8,2));
INSERT INTO "Čísla x" VALUES ('b', 9.99);
CREATE VIEW items_cmp AS SELECT id, v, n FROM items;
-- A target with an INSERT rule: COPY would not fire it, so its new rows must go by INSERT.
CREATE TABLE ruled (id int PRIMARY KEY, note text);
CREATE TABLE ruled_log (id int);
CREATE RULE ruled_log_ins AS ON INSERT TO ruled DO ALSO INSERT INTO ruled_log VALUES (NEW.id);
SQL

CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
log_level: debug
pipelines:
  - name: opt
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.items, 'public."Čísla x"', public.logv, public.ruled] }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_opt 60
log "slot active; workload"

compare() {
  local deadline=$(($(date +%s) + 120)) out
  until out=$("$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}" 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "$1: target not equal to the source after 120 s"; }
    sleep 1
  done
  log "$1: target equal to the source"
}

# (1) new rows and keys already on the target in one run: the fallback.
pg_psql <<'SQL'
BEGIN;
INSERT INTO items SELECT g, 'v' || g, g FROM generate_series(1, 1000) g;
INSERT INTO "Čísla x" VALUES ('a', 1.5), ('b', 2.25), ('c', NULL);
INSERT INTO "Čísla x" SELECT 'k' || g, g / 4.0 FROM generate_series(1, 100) g;
COMMIT;
SQL
compare "run with existing keys"
grep -q "table public.items: 1000 new rows met a key already on the target" "$LOG" ||
  fail "no fallback logged for public.items"
grep -qF 'table public.Čísla x: 103 new rows met a key already on the target' "$LOG" || fail "no fallback logged for the unicode table"
[[ $(dst_psql -Atc "SELECT v || '/' || extra FROM items WHERE id = 5") == "v5/keep5" ]] ||
  fail "row 5: the upsert did not keep the extra column: $(dst_psql -Atc 'SELECT * FROM items WHERE id = 5')"
[[ $(dst_psql -Atc "SELECT count(*) FROM items WHERE extra = 'dflt'") == 999 ]] || fail "new rows lack the default"

dst_psql -c "INSERT INTO items (id, v, n, extra) VALUES (2005, 'stale', 0, 'keep2005')" >/dev/null

# (2) new rows only, many transactions (after the fallback's calm period the plain path again),
# then (3) mixes in one buffer, and a key put there after the fallback (2005).
pg_psql <<'SQL'
DO $$ BEGIN
  FOR t IN 0..99 LOOP
    INSERT INTO items SELECT g, 'w' || g, g FROM generate_series(1001 + t * 10, 1010 + t * 10) g;
    COMMIT;
  END LOOP;
END $$;
INSERT INTO items SELECT g, 'late' || g, g FROM generate_series(2001, 2010) g;
BEGIN;
INSERT INTO items VALUES (3001, 'a', 1);
UPDATE items SET v = 'a2' WHERE id = 3001;
INSERT INTO items VALUES (3002, 'b', 2);
DELETE FROM items WHERE id = 3002;
DELETE FROM items WHERE id = 10;
INSERT INTO items VALUES (10, 'reborn', 10);
UPDATE items SET n = -1 WHERE id BETWEEN 20 AND 30;
INSERT INTO items VALUES (3003, 'c', 3), (3004, NULL, NULL);
COMMIT;
SQL
compare "new rows and mixes"
[[ $(dst_psql -Atc "SELECT v || '/' || extra FROM items WHERE id = 2005") == "late2005/keep2005" ]] ||
  fail "row 2005: $(dst_psql -Atc 'SELECT * FROM items WHERE id = 2005')"
[[ $(dst_psql -Atc "SELECT count(*), count(DISTINCT id) FROM items") == "2013|2013" ]] ||
  fail "items: $(dst_psql -Atc 'SELECT count(*), count(DISTINCT id) FROM items') rows, expected 2013 distinct"
odsync_stop

# (4) after a restart (no fallback history): a run of new rows goes the plain way, every one of it.
# logv's target becomes a view before it (the initial snapshot has made it a table with a key): an
# INSERT goes through the view (auto-updatable), a COPY does not.
dst_psql <<'SQL' >/dev/null
ALTER TABLE logv RENAME TO logv_base;
ALTER TABLE logv_base ADD COLUMN at timestamptz DEFAULT now();
CREATE VIEW logv AS SELECT id, note FROM logv_base;
SQL
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_opt 60
pg_psql <<'SQL' >/dev/null
INSERT INTO items SELECT g, CASE g % 8 WHEN 0 THEN E'tab\there' WHEN 1 THEN E'line\nbreak' WHEN 2 THEN E'cr\rhere'
  WHEN 3 THEN E'back\\slash\\' WHEN 4 THEN '\N' WHEN 5 THEN NULL WHEN 6 THEN 'Čísla ✓ ' || g ELSE 'r' || g END, g
  FROM generate_series(5001, 6000) g;
SQL
compare "new rows after a restart"
[[ $(dst_psql -Atc "SELECT count(*) FROM items WHERE id > 5000 AND v IS NULL") == 125 ]] || fail "NULLs after COPY"
[[ $(dst_psql -Atc "SELECT v FROM items WHERE id = 5004") == '\N' ]] || fail "the text \\N became $(dst_psql -Atc 'SELECT v IS NULL FROM items WHERE id = 5004')"
pg_psql -c "INSERT INTO logv SELECT g, 'n' || g FROM generate_series(1, 600) g" >/dev/null
pg_psql -c "INSERT INTO ruled SELECT g, 'n' || g FROM generate_series(1, 700) g" >/dev/null
compare "new rows into a view and into a table with a rule"
[[ $(dst_psql -Atc "SELECT count(*), count(DISTINCT id) FROM ruled_log") == "700|700" ]] ||
  fail "the INSERT rule of ruled fired for $(dst_psql -Atc 'SELECT count(*) FROM ruled_log') of 700 new rows"
grep -q "table public.ruled has an INSERT rule, which COPY would not fire" "$LOG" || fail "no line for the ruled table"
odsync_stop
grep -q "table public.logv: the target refused COPY (.*SQLSTATE 42809): its new rows go as INSERT" "$LOG" ||
  fail "no WARN for the view that refused COPY"
[[ $(dst_psql -Atc "SELECT count(*) FROM logv_base") == 600 ]] || fail "logv_base: $(dst_psql -Atc 'SELECT count(*) FROM logv_base') rows"
copied=$(grep -o '[0-9]* new rows by COPY' "$LOG" | tail -1 | awk '{print $1}')
[[ $copied == 1000 ]] || fail "the second session sent ${copied:-no} new rows by COPY, expected 1000 (items; not the view's)"
ins=$(grep -o 'postgres sink [^ ]*: [0-9]* inserted, [0-9]* updated' "$LOG" | tail -1 | awk '{print $4 "|" $6}')
if [[ $ins != "2300|0" ]]; then
  grep 'inserted,' "$LOG" >&2 || true
  fail "after the restart the sink inserted|upserted ${ins:-nothing}, expected 2300|0 (plain inserts, COPY included)"
fi
[[ $(dst_psql -Atc "SELECT count(*), count(DISTINCT id) FROM items") == "3013|3013" ]] ||
  fail "items: $(dst_psql -Atc 'SELECT count(*), count(DISTINCT id) FROM items') rows, expected 3013 distinct"
log "all assertions passed"
