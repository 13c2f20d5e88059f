#!/usr/bin/env bash
# mesh_colmerge_reinsert.sh — column_merge with deletes and re-inserts at two nodes (a, c; fallback
# last_writer_wins): every node ends with the same rows AND the same column versions, whatever the
# order the writes arrive in (docs/MULTI_MASTER.md, "column_merge": "A peer's later write in the
# same run" and "The key columns"). The divergence of mesh_converge_colmerge.sh seen in CI
# (2026-12-04 15:54 UTC, key 29), made deterministic.
#
# With odsync stopped (after a first start installed the mesh's triggers), in this order:
#  row 1: c sets v to 'c1'; a deletes the row; c deletes it; a inserts (1, 'A', 1); c inserts
#    (1, 'C', 2) and deletes it again; a adds 1 to n twice (two transactions).
#    Expected everywhere: the row exists (a's last update is the latest write, concurrent with c's
#    second delete), v = 'C' (c's insert is the latest write of v), n = 3 (a's updates).
#    At c, a's first update beats c's delete and re-creates the row, v from the tombstone ('C');
#    a's second update then came as "this stream's write, seen" and was applied whole with a's old
#    image, v = 'A', while v's recorded version stayed c's insert: c held 'A', a held 'C'.
#    At a, c's insert is merged into a's live row (v taken): the key column kept a's insert as its
#    version while c recorded c's insert for it — different column versions, which later decisions
#    read ("seen", the competitor of a delete).
#  row 2: a deletes it and inserts (2, 'A2', 5); c then deletes it. Expected: gone everywhere. At c,
#    a's insert loses to c's delete and keeps its columns in the tombstone — its key column too, as
#    at a, where a's insert wrote every column.
#  row 3 (inserted at a while the mesh ran: every column has a recorded version): c sets v to 'c3'
#    and deletes the row; then one transaction at a adds 1 to n twice. Expected everywhere: the row
#    exists (a's transaction is the latest write), v = 'c3', n = 2. At c, a's first update re-creates
#    the row with v from the tombstone; its second update (same source transaction) was applied
#    whole with a's v, 'init'. It must be merged by column, as at a node where the row was live.
# Asserts: the exact rows on both nodes; the nodes identical row for row (od_compare_pg); the same
# row version and column versions (`also`) for every key in _odsync_versions on both nodes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_colmerge_reinsert
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a c
for n in a c; do
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
# the tombstones' column versions are compared: no clean-up (MESH_GC_INTERVAL does not apply)
mesh_config "$CONFIG" column_merge "public.items, public.mesh_marker" "  fallback: last_writer_wins
  gc_interval_s: 0"
odsync_start "$CONFIG" "$LOG" # slots, tombstone and column-version triggers exist from here on
mesh_wait_active 120
node_psql a -c "INSERT INTO items VALUES (3, 'init', 0)" >/dev/null # every column with a recorded version
mesh_wait_marker 120 a c
odsync_stop
for n in a c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND tgname = '_odsync_colver'") == 1 ]] ||
    fail "node $n: no _odsync_colver trigger on items"
done
# each step commits later than the one before (mesh_step waits 50 ms)
mesh_step c -c "UPDATE items SET v = 'c1' WHERE id = 1"
mesh_step a -c "DELETE FROM items WHERE id = 1"
mesh_step c -c "DELETE FROM items WHERE id = 1"
mesh_step a -c "INSERT INTO items VALUES (1, 'A', 1)"
mesh_step c -c "INSERT INTO items VALUES (1, 'C', 2)"
mesh_step c -c "DELETE FROM items WHERE id = 1"
mesh_step a -c "UPDATE items SET n = n + 1 WHERE id = 1"
mesh_step a -c "UPDATE items SET n = n + 1 WHERE id = 1"
mesh_step a -c "DELETE FROM items WHERE id = 2"
mesh_step a -c "INSERT INTO items VALUES (2, 'A2', 5)"
mesh_step c -c "DELETE FROM items WHERE id = 2"
mesh_step c -c "UPDATE items SET v = 'c3' WHERE id = 3"
mesh_step c -c "DELETE FROM items WHERE id = 3"
mesh_step a -c "BEGIN; UPDATE items SET n = n + 1 WHERE id = 3; UPDATE items SET n = n + 1 WHERE id = 3; COMMIT"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do mesh_wait_marker 120 a c; mesh_wait_marker 120 c a; done
versions() { # every key's row version and column versions, as the side table holds them
  node_psql "$1" -c "SELECT coalesce(string_agg(key || '=' || node || '/' || ts || '/' || hlc || ' [' || coalesce(also, '') || ']', ' ' ORDER BY key), '') FROM _odsync_versions WHERE tbl = 'public.items'"
}
for n in a c; do
  log "node $n: rows $(node_psql $n -c "SELECT string_agg(id || ':' || v || ':' || n, ' ' ORDER BY id) FROM items"); versions $(versions $n)"
  log "  conflicts: $(node_psql $n -c "SELECT string_agg(key || ' ' || kind || ' -> ' || winner || coalesce(' ' || merged::text, ''), '; ' ORDER BY id) FROM _odsync_conflicts WHERE table_name = 'public.items'")"
done
for n in a c; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || v || ':' || n, ' ' ORDER BY id), '') FROM items")
  [[ $got == "1:C:3 3:c3:2" ]] || fail "node $n holds '$got', expected '1:C:3 3:c3:2' (row 1: c's v, a's n; row 2 deleted; row 3: c's v, a's n)"
done
mesh_compare a c public.items || fail "a and c differ"
va=$(versions a) vc=$(versions c)
[[ -n $va ]] || fail "no versions recorded at a"
[[ $va == "$vc" ]] || fail "the column versions differ: a has '$va', c has '$vc'"
odsync_stop
log "ok"
