#!/usr/bin/env bash
# snapshot_initial.sh — the consistent initial snapshot: tables that hold rows before odsync ever
# runs are copied (3 workers, dozens of chunks) while a workload keeps writing, then streamed,
# with no gap and no overlap. Two pipelines run in one odsync process from the same source: one
# into SQLite, one into PostgreSQL on a second server.
#
# Tables (filled before odsync starts):
#   big   bigint primary key, 1,000,000 rows -> cut by key ranges (min/max split, ~40 chunks)
#   kl    no key, REPLICA IDENTITY FULL, 200,000 rows with duplicates -> cut by CTID page ranges
#   docs  text primary key (cut by CTID), incompressible TOASTed bodies of ~40 kB
# The workload (during and after the copy): updates, inserts (also below the smallest key and
# above the largest), deletes, primary-key changes in big; inserts, updates and deletes of one of
# several equal rows in kl; body rewrites and title-only updates (TOAST unchanged) in docs.
#
# Asserts: both sinks equal the source exactly (od_compare / od_compare_pg: value for value,
# keyless tables as multisets, so a duplicated or missing row fails); the log shows the snapshot
# ran with the expected plan (big: 40 chunks, kl: several) and finished before streaming; the
# checkpoint of each sink equals the slot's creation point after the snapshot (the stream starts
# exactly where the copy's view ends); odsync stops cleanly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init snapshot_initial
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start warehouse
DST_PORT=$PGPORT
pg_start shop
SRC_DSN="host=127.0.0.1 port=$PGPORT dbname=shop user=postgres"
DST_DSN="host=127.0.0.1 port=$DST_PORT dbname=warehouse user=postgres"
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log


log "filling the source before odsync exists"
pg_psql <<'SQL'
CREATE TABLE big (id bigint PRIMARY KEY, v text, n int, at timestamptz);
INSERT INTO big SELECT g, md5(g::text), g % 1000, '2024-01-01'::timestamptz + g * interval '1 s'
FROM generate_series(1, 1000000) g;
CREATE TABLE kl (a int, b text, c numeric(10,2));
ALTER TABLE kl REPLICA IDENTITY FULL;
INSERT INTO kl SELECT g % 5000, 'row ' || (g % 50000), g % 7 FROM generate_series(1, 200000) g;
CREATE TABLE docs (id text PRIMARY KEY, title text, body text);
INSERT INTO docs SELECT 'doc' || d, 'title ' || d,
  (SELECT string_agg(md5(d::text || g), '') FROM generate_series(1, 1250) g) FROM generate_series(1, 40) d;
ANALYZE;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: snap_sq
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.big, public.kl, public.docs],
              snapshot_workers: 3, snapshot_chunk_rows: 25000 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: snap_pg
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.big, public.kl, public.docs],
              snapshot_workers: 3, snapshot_chunk_rows: 25000 }
    sink: { type: postgres, dsn: "$DST_DSN" }
YAML

workload() {
  local it=0 end=$((SECONDS + ${WORKLOAD_SECONDS:-12}))
  while ((SECONDS < end)); do
    it=$((it + 1))
    pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
UPDATE big SET v = 'upd $it', n = n + 1 WHERE id IN ($((it * 7919 % 1000000 + 1)), $((it * 104729 % 1000000 + 1)));
DELETE FROM big WHERE id = $((it * 15485863 % 1000000 + 1));
INSERT INTO big VALUES (1000000 + $it, 'new $it', $it, now()), (-$it, 'below $it', $it, NULL);
UPDATE big SET id = id + 5000000 WHERE id = $((it * 31337 % 1000000 + 1));
INSERT INTO kl VALUES ($it % 5000, 'row 1', 1.5), ($it % 5000, 'row 1', 1.5);
UPDATE kl SET c = c + 100 WHERE ctid = (SELECT min(ctid) FROM kl WHERE a = $((it % 5000)));
DELETE FROM kl WHERE ctid = (SELECT max(ctid) FROM kl WHERE a = $(((it * 13) % 5000)));
UPDATE docs SET title = 'title v$it' WHERE id = 'doc$((it % 40 + 1))';
UPDATE docs SET body = md5('$it') || body WHERE id = 'doc$((it * 7 % 40 + 1))';
SQL
  done
  echo "workload: $it iterations"
}

odsync_start "$CONFIG" "$LOG"
workload_start workload
wait_for "grep -q 'pipeline snap_sq: initial snapshot done' '$LOG' && grep -q 'pipeline snap_pg: initial snapshot done' '$LOG'" 120 ||
  fail "the snapshots did not finish within 120 s"
log "both snapshots done; waiting for the workload"
workload_wait
big_n=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'snap_sq/snapshot/public.big/n'")
big_method=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'snap_sq/snapshot/public.big/method'")
[[ "$big_method" == 1 ]] || fail "big was not cut by key ranges (method mark '$big_method')"
((big_n >= 30 && big_n <= 50)) || fail "big has $big_n chunks, expected about 40"
grep -q "snapshot: public.big: copied $big_n chunks in this run (0 already done, $big_n in all)" "$LOG" ||
  fail "big was not copied as $big_n key-range chunks"
grep -qE "snapshot: public.kl: copied [0-9]+ chunks" "$LOG" || fail "kl was not copied in chunks"
if grep -q "already done" <(grep -v "(0 already done" "$LOG"); then fail "a fresh snapshot claims chunks already done"; fi

# A last transaction after the workload: both sinks hold it while odsync runs, so they have caught
# up (each applies in commit order); the row-for-row comparison follows the stop, once per sink.
pg_psql -c "UPDATE docs SET title = 'after the workload' WHERE id = 'doc1'" >/dev/null
wait_for "[[ \$(sqlite3 '$SINK_DB' \"SELECT title FROM docs WHERE id = 'doc1'\") == 'after the workload' ]]" 120 ||
  fail "the sqlite sink did not catch up within 120 s"
wait_for "[[ \$(PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c \"SELECT title FROM docs WHERE id = 'doc1'\") == 'after the workload' ]]" 120 ||
  fail "the postgres sink did not catch up within 120 s"
log "both sinks caught up"
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.big --table public.kl --table public.docs; }

# The snapshot's final transaction stored the slot's creation point as the checkpoint.
done_sq=$(sqlite3 "$SINK_DB" "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'snap_sq/snapshot'")
done_sq=${done_sq#pg:}
[[ -n "$done_sq" ]] || fail "no snap_sq/snapshot mark in the sqlite sink"
grep -q "created replication slot odsync_snap_sq at $done_sq exporting snapshot" "$LOG" ||
  fail "the snapshot's position $done_sq is not the slot's consistent point"
done_pg=$(PGPORT=$DST_PORT PGDATABASE=warehouse pg_psql -c "SELECT position_text FROM _odsync_checkpoint WHERE pipeline = 'snap_pg/snapshot'")
done_pg=${done_pg#pg:}
grep -q "created replication slot odsync_snap_pg at $done_pg exporting snapshot" "$LOG" ||
  fail "the postgres sink's snapshot position '$done_pg' is not its slot's consistent point"
odsync_stop
out=$(compare 2>&1) || { echo "$out" >&2; fail "the sqlite sink differs from the source"; }
echo "$out"
log "sqlite sink equals the source"
out=$(compare_pg 2>&1) || { echo "$out" >&2; fail "the postgres sink differs from the source"; }
echo "$out"
log "postgres sink equals the source"
log "all assertions passed"
