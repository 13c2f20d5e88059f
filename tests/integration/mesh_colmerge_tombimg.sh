#!/usr/bin/env bash
# mesh_colmerge_tombimg.sh — column_merge: a run that applies an update and then a delete of the same
# key writes the tombstone's last row (img) as the run left the row, not as the DELETE found it
# (3 nodes a, b, c; fallback last_writer_wins; docs/MULTI_MASTER.md, "Tombstones keep the row").
#
# The set-based apply keeps a key's last operation only, so b's DELETE of row 1 meets the row from
# before c's update, and the delete trigger's image misses c's v while the side table names c's
# update as v's version. a's concurrent, later update of n then beats the delete and re-creates the
# row at b from that image: b held the old v, a and c c's v (seen 2026-12-04 in the 3-node stress,
# as a value apart from its version). Built on purpose:
#  - odsync stopped; at a, a transaction updates n of rows 1 and 2 and stays open (pg_sleep) while
#    c updates v of row 1 and then deletes it (two transactions), and updates v of row 2 and
#    deletes it in one transaction; odsync starts: b applies c's transactions in one run (c -> a
#    waits on a's row locks); a commits later (a's update never saw c's deletes, and its clock is
#    later: it wins against them);
#  - afterwards every node holds rows 1 and 2 with c's v and a's n, and b's tombstone images had
#    c's v.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_colmerge_tombimg
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE items REPLICA IDENTITY FULL;
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" column_merge "public.items, public.mesh_marker" "  fallback: last_writer_wins"
odsync_start "$CONFIG" "$LOG" # slots, tombstone and column-version triggers exist from here on
mesh_wait_active 120
node_psql a -c "INSERT INTO items VALUES (1, 'init', 0), (2, 'init', 0)"
mesh_wait_marker 120 a b
mesh_wait_marker 120 a c
odsync_stop
HOLD=${MESH_TOMBIMG_HOLD_S:-20}
node_psql a -c "BEGIN; UPDATE items SET n = n + 1 WHERE id IN (1, 2); SELECT pg_sleep($HOLD); COMMIT" >"$TEST_TMP/a_txn.log" 2>&1 &
A_TXN=$!
test_extra_cleanup() { kill "$A_TXN" 2>/dev/null; return 0; }
wait_for "[[ \$(node_psql a -c \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'items' AND l.mode = 'RowExclusiveLock' AND l.granted\") -ge 1 ]]" 30 || fail "a's open transaction holds no lock on items"
node_psql c -c "UPDATE items SET v = 'c1' WHERE id = 1" >/dev/null
node_psql c -c "DELETE FROM items WHERE id = 1" >/dev/null
node_psql c -c "BEGIN; UPDATE items SET v = 'c2' WHERE id = 2; DELETE FROM items WHERE id = 2; COMMIT" >/dev/null
odsync_start "$CONFIG" "$LOG"
# b applies c's update and delete (one run, as the stream catches up) while a's transaction is open
wait_for "[[ \$(node_psql b -c \"SELECT count(*) FROM items WHERE id IN (1, 2)\") == 0 ]]" $((HOLD - 2)) ||
  fail "c's delete did not reach b while a's transaction was open (raise MESH_TOMBIMG_HOLD_S)"
kill -0 $A_TXN 2>/dev/null || fail "a's transaction ended before c's delete reached b"
img=$(node_psql b -c "SELECT string_agg(key || ':' || coalesce(img ->> 'v', '-'), ' ' ORDER BY key) FROM _odsync_tombstones WHERE tbl = 'public.items'")
log "b's tombstones hold v: $img"
wait "$A_TXN" || fail "a's transaction failed: $(cat "$TEST_TMP/a_txn.log")"
A_TXN=
mesh_wait_active 120
for round in 1 2; do
  for f in a b c; do
    for t in a b c; do [[ $f != "$t" ]] && mesh_wait_marker 120 $f $t; done
  done
done
for n in a b c; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || v || ':' || n, ' ' ORDER BY id), 'none') FROM items")
  log "node $n: $got"
  [[ $got == "1:c1:1 2:c2:1" ]] ||
    fail "node $n holds '$got', expected '1:c1:1 2:c2:1' (c's v, a's n: a's update beat c's delete)"
done
[[ $img == "1:c1 2:c2" ]] || fail "b's tombstone images held v '$img', expected '1:c1 2:c2' (the rows as c's updates left them)"
mesh_compare a b public.items || fail "a and b differ"
mesh_compare a c public.items || fail "a and c differ"
odsync_stop
log "ok"
