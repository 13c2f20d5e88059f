#!/usr/bin/env bash
# partitions.sh — partitioned tables (source.partitions, docs/adapters/postgres-source.md): with
# `partitions: root` (the default) the publication odsync creates publishes via the partition root,
# so a partitioned table reaches the sink as ONE table named after the root; its initial snapshot
# is cut by leaf partition (composite key) or by key range (single bigint key). With
# `partitions: leaves` each leaf partition is a sink table of its own.
#
# Tables (filled before odsync starts):
#   events   PRIMARY KEY (id, created_at), RANGE (created_at): events_2024_01/02/03 and
#            events_default; 50,000 rows -> one snapshot chunk per leaf partition (4)
#   metrics  bigint PRIMARY KEY, RANGE (id): metrics_lo, metrics_hi; 30,000 rows -> key ranges
# Pipelines in one odsync process: part_sq (SQLite) and part_pg (PostgreSQL on a second server),
# both partitions: root; part_lv (SQLite, partitions: leaves, events only).
# The workload (during and after the copy): inserts into every partition, updates, deletes, and
# updates that move a row to another partition (created_at / id changed).
#
# Asserts: the root sinks hold one table per root and none named after a partition; the log shows
# the per-partition plan for events and key ranges for metrics; the leaves sink holds the leaf
# tables; every sink equals the source row for row; `odsync check` and `odsync run` (once) warn
# about an existing publication whose publish_via_partition_root disagrees with source.partitions,
# naming both, and that publication is used unaltered.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init partitions
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/out.db
LEAVES_DB=$TEST_TMP/leaves.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
LEAVES="events_2024_01 events_2024_02 events_2024_03 events_default"


log "filling the source before odsync exists"
pg_psql <<'SQL'
CREATE TABLE events (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text, payload text,
                     PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, '2024-01-01 00:00:00+00'::timestamptz + (g % 120) * interval '1 day' + g * interval '1 s',
  'k' || (g % 7), md5(g::text) FROM generate_series(1, 50000) g;
CREATE TABLE metrics (id bigint PRIMARY KEY, region int, v numeric(12,2)) PARTITION BY RANGE (id);
CREATE TABLE metrics_lo PARTITION OF metrics FOR VALUES FROM (MINVALUE) TO (20000);
CREATE TABLE metrics_hi PARTITION OF metrics FOR VALUES FROM (20000) TO (MAXVALUE);
INSERT INTO metrics SELECT g, g % 10, g / 7.0 FROM generate_series(1, 30000) g;
ANALYZE;
SQL
for l in $LEAVES; do
  [[ $(pg_psql -c "SELECT count(*) > 1000 FROM ONLY $l") == t ]] || fail "partition $l holds too few rows"
done

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: part_sq
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.events, public.metrics],
              snapshot_workers: 2, snapshot_chunk_rows: 5000 }
    sink: { type: sqlite, path: $SINK_DB }
  - name: part_pg
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.events, public.metrics], partitions: root,
              snapshot_workers: 2, snapshot_chunk_rows: 5000 }
    sink: { type: postgres, dsn: "$DST_DSN" }
  - name: part_lv
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.events], partitions: leaves }
    sink: { type: sqlite, path: $LEAVES_DB }
YAML

workload() {
  local it=0 end=$((SECONDS + ${WORKLOAD_SECONDS:-8}))
  while ((SECONDS < end)); do
    it=$((it + 1))
    pg_psql >/dev/null <<SQL || { echo "workload: psql failed in iteration $it"; return 1; }
INSERT INTO events VALUES (100000 + $it, '2024-01-20'::timestamptz + $it * interval '1 min', 'new', 'jan $it'),
  (200000 + $it, '2024-02-20'::timestamptz + $it * interval '1 min', 'new', 'feb $it'),
  (300000 + $it, '2024-03-20'::timestamptz + $it * interval '1 min', 'new', 'mar $it'),
  (400000 + $it, '2025-06-01'::timestamptz + $it * interval '1 min', 'new', 'default $it');
UPDATE events SET payload = 'upd $it', kind = 'u' WHERE id IN ($((it * 7919 % 50000 + 1)), $((it * 104729 % 50000 + 1)));
DELETE FROM events WHERE id = $((it * 15485863 % 50000 + 1));
UPDATE events SET created_at = created_at + interval '31 days' WHERE id = $((it * 31337 % 50000 + 1));
UPDATE events SET created_at = '2026-01-01'::timestamptz + $it * interval '1 s', payload = 'moved $it'
  WHERE id = 100000 + $it;
INSERT INTO metrics VALUES (30000 + $it, $it % 10, $it), (-$it, 0, -$it);
UPDATE metrics SET v = v + 1 WHERE id IN ($((it * 7919 % 30000 + 1)), $((it * 104729 % 30000 + 1)));
DELETE FROM metrics WHERE id = $((it * 15485863 % 30000 + 1));
UPDATE metrics SET id = id + 1000000 WHERE id = $((it * 31337 % 20000 + 1));
SQL
  done
  echo "workload: $it iterations"
}

odsync_start "$CONFIG" "$LOG"
workload_start workload
wait_for "grep -q 'pipeline part_sq: initial snapshot done' '$LOG' && grep -q 'pipeline part_pg: initial snapshot done' '$LOG' && grep -q 'pipeline part_lv: initial snapshot done' '$LOG'" 120 ||
  fail "the snapshots did not finish within 120 s"
log "snapshots done; waiting for the workload"
workload_wait

# The publications odsync created publish via the root (part_sq, part_pg) or the leaves (part_lv).
[[ $(pg_psql -c "SELECT string_agg(pubname || '=' || pubviaroot, ',' ORDER BY pubname) FROM pg_publication") == \
  "odsync_part_lv=false,odsync_part_pg=true,odsync_part_sq=true" ]] || fail "publications: $(pg_psql -c 'TABLE pg_publication')"
grep -q "created publication odsync_part_sq for the configured tables (partitioned tables published as their root)" "$LOG" ||
  fail "no log line for the root publication"

# The plan: events by leaf partition (in name order), metrics by key ranges.
# (once per root pipeline: part_sq and part_pg)
[[ $(grep -c "snapshot: public.events: 4 chunks by leaf partition" "$LOG") == 2 ]] ||
  fail "events was not planned by leaf partition in both root pipelines"
grep -q "snapshot: public.events: its 4 leaf partitions, one chunk each: public.events_2024_01, public.events_2024_02, public.events_2024_03, public.events_default" "$LOG" ||
  fail "the leaf partitions of events are not logged in name order"
grep -qE "snapshot: public.metrics: [0-9]+ chunks by key range" "$LOG" || fail "metrics was not planned by key ranges"
ev_method=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'part_sq/snapshot/public.events/method'")
ev_n=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'part_sq/snapshot/public.events/n'")
m_method=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'part_sq/snapshot/public.metrics/method'")
m_n=$(sqlite3 "$SINK_DB" "SELECT position FROM _odsync_checkpoint WHERE pipeline = 'part_sq/snapshot/public.metrics/n'")
[[ "$ev_method" == 4 && "$ev_n" == 4 ]] || fail "events plan marks: method '$ev_method', n '$ev_n' (expected 4, 4)"
[[ "$m_method" == 1 ]] && ((m_n >= 4)) || fail "metrics plan marks: method '$m_method', n '$m_n' (expected 1, >= 4)"
grep -q "snapshot: public.events: copied 4 chunks in this run (0 already done, 4 in all)" "$LOG" ||
  fail "events was not copied as 4 chunks"
grep -q "snapshot: public.metrics: copied $m_n chunks in this run (0 already done, $m_n in all)" "$LOG" ||
  fail "metrics was not copied as $m_n chunks"

# One sink table per root, none named after a partition.
sq_tables=$(sqlite3 "$SINK_DB" "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND (name LIKE 'events%' OR name LIKE 'metrics%') ORDER BY name)")
[[ "$sq_tables" == "events,metrics" ]] || fail "sqlite sink tables: '$sq_tables' (expected events,metrics)"
pg_tables=$(dst_psql -c "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind IN ('r', 'p') AND (relname LIKE 'events%' OR relname LIKE 'metrics%')")
[[ "$pg_tables" == "events,metrics" ]] || fail "postgres sink tables: '$pg_tables' (expected events,metrics)"
lv_tables=$(sqlite3 "$LEAVES_DB" "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events%' ORDER BY name)")
[[ "$lv_tables" == "$LEAVES" ]] || fail "leaves sink tables: '$lv_tables' (expected $LEAVES)"
log "sink tables: sqlite $sq_tables; postgres $pg_tables; leaves $lv_tables"

# Row for row. Rows moved by the workload must have left their partition.
[[ $(pg_psql -c "SELECT count(*) FROM ONLY events_default WHERE payload LIKE 'moved %'") -gt 0 ]] ||
  fail "the workload moved no row into the default partition"
wait_equal 120
log "sqlite sink equals the source"
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" --table public.events --table public.metrics; }
compare_leaves() {
  local args=() l
  for l in $LEAVES; do args+=(--table "public.$l"); done
  "$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$LEAVES_DB" "${args[@]}"
}
for c in compare_pg compare_leaves; do
  deadline=$(($(date +%s) + 120))
  until out=$($c 2>&1); do
    (($(date +%s) < deadline)) || { echo "$out" >&2; fail "$c: sink not equal to the source after 120 s"; }
    sleep 1
  done
  echo "$out"
done
log "postgres and leaves sinks equal the source"
odsync_stop
compare >/dev/null || fail "sqlite sink differs after the stop"
compare_pg >/dev/null || fail "postgres sink differs after the stop"
compare_leaves >/dev/null || fail "leaves sink differs after the stop"

# An existing publication is not altered; a disagreement is a warning naming it and both values.
pg_psql -c "CREATE PUBLICATION by_leaves FOR TABLE events"
cat >"$TEST_TMP/check.yaml" <<YAML
state_dir: $TEST_TMP/state2
pipelines:
  - name: chk
    source: { type: postgres, dsn: "$SRC_DSN", publication: by_leaves, tables: [public.events] }
    sink: { type: sqlite, path: $TEST_TMP/chk.db }
YAML
RC=0
OUT=$("$ODSYNC_BIN" check -c "$TEST_TMP/check.yaml" 2>&1) || RC=$?
echo "$OUT"
grep -q "publication by_leaves exists with publish_via_partition_root = false, but source.partitions is root" <<<"$OUT" ||
  fail "odsync check did not warn about publication by_leaves"
# ... and once at the start of a run, which then streams what the publication publishes (leaves).
LOG2=$TEST_TMP/odsync_chk.log
odsync_start "$TEST_TMP/check.yaml" "$LOG2"
wait_for "grep -q 'pipeline chk: initial snapshot done' '$LOG2'" 60 || fail "pipeline chk did not snapshot"
odsync_stop
[[ $(grep -c "publication by_leaves exists with publish_via_partition_root = false, but source.partitions is root" "$LOG2") == 1 ]] ||
  fail "odsync run did not warn exactly once about publication by_leaves"
[[ $(pg_psql -c "SELECT pubviaroot FROM pg_publication WHERE pubname = 'by_leaves'") == f ]] ||
  fail "odsync altered publication by_leaves"
chk_tables=$(sqlite3 "$TEST_TMP/chk.db" "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'events%' ORDER BY name)")
[[ "$chk_tables" == "$LEAVES" ]] || fail "the existing publication did not win: sink tables '$chk_tables'"
log "all assertions passed"
