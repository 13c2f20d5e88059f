#!/usr/bin/env bash
# mesh_run_per_batch.sh — a mesh sink decides and applies a batch as one run, whatever the number of
# chunks (apply() calls) it arrived in (docs/MULTI_MASTER.md, "What each pipeline does", item 2):
# the changes are held back and go out before the checkpoint, or after 2,000 held-back changes.
#
#   1. a and b start with the same (empty) table; odsync runs until the mesh is active, then stops.
#   2. a writes a backlog of 6,000 single-row transactions (and b 50), odsync starts again and
#      catches up both ways.
#   3. Every run of a mesh sink writes exactly one transactional "odsync.hlc" message (with the
#      versions/origin statement). Read from a test_decoding slot made at b before the catch-up, per
#      transaction of b's sink: its rows and its odsync.hlc messages. Asserts: every transaction of
#      the sink carries at most 1 + rows / 1000 messages (a run per 2,000 held-back changes: a stamp
#      and a row for each of these transactions), and the whole backlog took fewer runs than 6,000 /
#      1,000 + the sink's transactions; the nodes are identical, every row arrived once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_run_per_batch
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker"

log "1. the mesh becomes active, then odsync stops"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
odsync_stop

log "2. a backlog: 6000 single-row transactions at a, 50 at b"
node_psql b -c "SELECT 1 FROM pg_create_logical_replication_slot('peek', 'test_decoding')" >/dev/null
node_psql a -c "DO \$\$ BEGIN FOR i IN 1..6000 LOOP INSERT INTO items VALUES (i, 'a', i); COMMIT; END LOOP; END \$\$"
node_psql b -c "DO \$\$ BEGIN FOR i IN 1..50 LOOP INSERT INTO items VALUES (100000 + i, 'b', i); COMMIT; END LOOP; END \$\$"
odsync_start "$CONFIG" "$LOG"
mesh_wait_marker 180 a b
mesh_wait_marker 180 b a
mesh_wait_equal 60 public.items
[[ $(node_psql b -c "SELECT count(*) FROM items") == 6050 ]] || fail "b holds $(node_psql b -c "SELECT count(*) FROM items") rows, expected 6050"
odsync_stop

log "3. runs per transaction of b's sink (test_decoding at b)"
# per transaction of b that wrote odsync.hlc messages (the sink's): its item rows and its messages
PER=$(node_psql b -F ' ' -c "SELECT xid, count(*) FILTER (WHERE data LIKE 'table public.items: INSERT:%'),
  count(*) FILTER (WHERE data LIKE 'message: transactional: 1 prefix: odsync.hlc,%')
  FROM pg_logical_slot_peek_changes('peek', NULL, NULL) GROUP BY xid
  HAVING count(*) FILTER (WHERE data LIKE 'message: transactional: 1 prefix: odsync.hlc,%') > 0 ORDER BY xid::text::bigint")
[[ -n $PER ]] || fail "no transaction of b's sink carried an odsync.hlc message"
echo "$PER" | awk '{ print "  sink transaction " $1 ": " $2 " rows, " $3 " runs" }' >&2
ROWS=$(echo "$PER" | awk '{ s += $2 } END { print s }')
((ROWS >= 6000)) || fail "b's sink transactions wrote $ROWS rows of items, expected the 6000 of a's backlog"
echo "$PER" | awk '$3 > 1 + int($2 / 1000) { bad = 1; print "transaction " $1 ": " $3 " runs for " $2 " rows" > "/dev/stderr" } END { exit bad }' ||
  fail "a transaction of b's sink took more runs than its held-back changes need (one run per chunk?)"
NTX=$(echo "$PER" | wc -l)
RUNS=$(echo "$PER" | awk '{ s += $3 } END { print s }')
((RUNS <= 6 + NTX)) || fail "the backlog took $RUNS runs in $NTX transactions"
node_psql b -c "SELECT pg_drop_replication_slot('peek')" >/dev/null
mesh_compare a b public.items || fail "a and b differ"
log "ok ($ROWS rows in $NTX sink transactions, $RUNS runs)"
