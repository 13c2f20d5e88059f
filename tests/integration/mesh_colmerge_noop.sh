#!/usr/bin/env bash
# mesh_colmerge_noop.sh — column_merge: an update that changed no column (old row = new row, e.g. an
# upsert setting the value the row already holds) is no write of the row's existence, on both sides
# of a concurrent delete (3 nodes a, b, c; fallback last_writer_wins; docs/MULTI_MASTER.md,
# "column_merge", "An update that changed no column").
#
# With odsync stopped (after a first start installed the mesh's triggers), on keys written before by
# a (every node has their column versions):
#  row 1: b deletes it, then a updates it to the values it holds (UPDATE ... SET v = v);
#  row 2: b deletes it, then a upserts it with the value it holds (INSERT ... ON CONFLICT DO UPDATE);
#  row 3: control: b deletes it, then a really changes v: the later write re-creates the row.
# At a the delete meets a live row whose columns it all saw (the no-op wrote none): applied. At b the
# no-op update meets b's tombstone: it must not re-create the row, or a and b differ for ever. c gets
# both in some order and must end like them. Expected everywhere: rows 1 and 2 gone, row 3 = 'a3'.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_colmerge_noop
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
node_psql a -c "INSERT INTO items VALUES (1, 'x', 1), (2, 'i1', 2), (3, 'x', 3)"
mesh_wait_marker 120 a b
mesh_wait_marker 120 a c
for n in b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_versions WHERE tbl = 'public.items' AND also IS NOT NULL") == 3 ]] ||
    fail "node $n holds no column versions of a's rows: $(node_psql $n -c 'SELECT * FROM _odsync_versions')"
done
odsync_stop
tick() { sleep 0.05; } # distinct commit times, in this order
node_psql b -c "DELETE FROM items WHERE id IN (1, 2, 3)" >/dev/null
tick
node_psql a -c "UPDATE items SET v = v WHERE id = 1" >/dev/null
node_psql a -c "INSERT INTO items VALUES (2, 'i1', 0) ON CONFLICT (id) DO UPDATE SET v = excluded.v" >/dev/null
node_psql a -c "UPDATE items SET v = 'a3' WHERE id = 3" >/dev/null
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do
  for f in a b c; do
    for t in a b c; do [[ $f != "$t" ]] && mesh_wait_marker 120 $f $t; done
  done
done
for n in a b c; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || v || ':' || n, ' ' ORDER BY id), 'none') FROM items")
  [[ $got == "3:a3:3" ]] || fail "node $n holds '$got', expected '3:a3:3' (rows 1 and 2 deleted, row 3 re-created)"
done
mesh_compare a b public.items || fail "a and b differ"
mesh_compare a c public.items || fail "a and c differ"
log "conflicts at b: $(node_psql b -c "SELECT coalesce(string_agg(key || ' ' || kind || ' ' || policy || ' -> ' || winner, '; ' ORDER BY id), 'none') FROM _odsync_conflicts")"
odsync_stop
log "ok"
