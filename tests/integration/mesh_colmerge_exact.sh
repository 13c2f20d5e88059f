#!/usr/bin/env bash
# mesh_colmerge_exact.sh — column_merge judges columns by versions, never by value (3 nodes a, b, c;
# fallback last_writer_wins; docs/MULTI_MASTER.md, "column_merge").
#
# With odsync stopped (after a first start installed the mesh's triggers):
#  row 1 (a value that comes back): a sets v to 'x', b then sets v to 'y', a then sets v back to
#    'init' — the value b's write saw — and c adds 5 to n. a's second write is the latest writer of v:
#    every node must end with v = 'init' and n = 5. Judged by value, a would let b's write take v
#    (a's v equals b's old image) while b keeps a's: the nodes would differ.
#  row 2 (a delete between merges): a sets v to 'a2', b deletes the row, c then sets n to 7: the
#    latest write (c's) re-creates the row at b from its tombstone, and every node ends with
#    v = 'a2' (a's column, older than the delete but not lost with it where the delete came
#    first) and n = 7.
# Then: all three nodes identical row for row, the conflicts logged at a name column_merge for row 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_colmerge_exact
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE items REPLICA IDENTITY FULL;
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
INSERT INTO items VALUES (1, 'init', 0), (2, 'init', 0);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" column_merge "public.items, public.mesh_marker" "  fallback: last_writer_wins"
odsync_start "$CONFIG" "$LOG" # slots, tombstone and column-version triggers exist from here on
mesh_wait_active 120
odsync_stop
for n in a b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname = '_odsync_colver'") == 1 ]] ||
    fail "node $n: no _odsync_colver trigger on items"
done
tick() { sleep 0.05; } # distinct commit times, in this order
node_psql a -c "UPDATE items SET v = 'x' WHERE id = 1; UPDATE items SET v = 'a2' WHERE id = 2" >/dev/null
tick
node_psql b -c "UPDATE items SET v = 'y' WHERE id = 1; DELETE FROM items WHERE id = 2" >/dev/null
tick
node_psql a -c "UPDATE items SET v = 'init' WHERE id = 1" >/dev/null
node_psql c -c "UPDATE items SET n = n + 5 WHERE id = 1; UPDATE items SET n = 7 WHERE id = 2" >/dev/null
# a's local column versions: both its writes changed v of row 1 (the second is the one recorded)
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_colver WHERE tbl = 'public.items' AND key = '1' AND xids[2] IS NOT NULL AND xids[3] IS NULL") == 1 ]] ||
  fail "a recorded no version of column v for row 1: $(node_psql a -c 'SELECT * FROM _odsync_colver')"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do
  for f in a b c; do
    for t in a b c; do [[ $f != "$t" ]] && mesh_wait_marker 120 $f $t; done
  done
done
for n in a b c; do
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || v || ':' || n, ' ' ORDER BY id) FROM items")
  [[ $got == "1:init:5 2:a2:7" ]] || fail "node $n holds '$got', expected '1:init:5 2:a2:7'"
done
mesh_compare a b public.items || fail "a and b differ"
mesh_compare a c public.items || fail "a and c differ"
mesh_compare b c public.items || fail "b and c differ"
merged=$(node_psql a -c "SELECT count(*) FROM _odsync_conflicts WHERE key = '1' AND policy = 'column_merge'")
((merged >= 1)) || fail "a logged no column_merge conflict for row 1: $(node_psql a -c 'SELECT kind, key, policy, winner FROM _odsync_conflicts')"
log "conflicts at a: $(node_psql a -c "SELECT string_agg(key || ' ' || kind || ' ' || policy || ' -> ' || winner, '; ' ORDER BY id) FROM _odsync_conflicts")"
odsync_stop
log "ok"
