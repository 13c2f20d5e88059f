#!/usr/bin/env bash
# mesh_versions_insert.sh — the mesh sink writes a key's _odsync_versions row with a plain INSERT
# when its versions read found none, and with the upsert when the key had one — also a key that
# has a side-table row but neither a live row nor a tombstone (docs/MULTI_MASTER.md, "The versions
# write").
#
#   1. a inserts keys 1..4: b's sink finds no row, no tombstone, no side-table row (plain INSERT);
#      b's side table then holds the four keys with a's version.
#   2. a updates keys 1, 2: b finds their rows and side-table rows (the upsert): author a, newer ts.
#   3. at b, keys 3 and 4 are deleted with triggers off (session_replication_role = replica): no
#      tombstone at b, but b's side-table rows of 3 and 4 stay (as after a TRUNCATE). The delete
#      still reaches a.
#   4. a inserts keys 3, 4 again: b's sink finds neither a row nor a tombstone but a side-table row;
#      a plain INSERT would fail on its primary key (the batch retried for ever): the read must
#      report it, and the upsert replace it. Asserts the rows arrived, the side-table rows carry the
#      new version, the nodes are identical and b's log shows no failed batch.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_versions_insert
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
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120

ver() { node_psql b -c "SELECT string_agg(key || ':' || node, ' ' ORDER BY key) FROM _odsync_versions WHERE tbl = 'public.items'"; }
ts_of() { node_psql b -c "SELECT ts FROM _odsync_versions WHERE tbl = 'public.items' AND key = '$1'"; }

log "1. new keys at a: plain inserts of their side-table rows at b"
node_psql a -c "INSERT INTO items SELECT g, 'a1', g FROM generate_series(1, 4) g"
mesh_wait_marker 120 a b
[[ $(ver) == "1:a 2:a 3:a 4:a" ]] || fail "b's side table after a's inserts: '$(ver)', expected keys 1..4 by a"
declare -A TS0
for k in 1 2 3 4; do TS0[$k]=$(ts_of $k); done

log "2. updates of keys with a side-table row: the upsert"
node_psql a -c "UPDATE items SET v = 'a2' WHERE id IN (1, 2)"
mesh_wait_marker 120 a b
for k in 1 2; do
  (($(ts_of $k) > ${TS0[$k]})) || fail "key $k: b's side-table row kept ts ${TS0[$k]} after a's update"
done
(($(ts_of 3) == ${TS0[3]})) || fail "key 3: b's side-table row changed without a write"

log "3. at b: keys 3, 4 deleted without their tombstones (triggers off); their side-table rows stay"
node_psql b -c "SET session_replication_role = replica; DELETE FROM items WHERE id IN (3, 4)"
[[ $(node_psql b -c "SELECT count(*) FROM _odsync_tombstones WHERE tbl = 'public.items' AND key IN ('3', '4')") == 0 ]] ||
  fail "b has tombstones of keys 3, 4 although its triggers were off"
[[ $(ver) == "1:a 2:a 3:a 4:a" ]] || fail "b's side table after the delete: '$(ver)'"
mesh_wait_marker 120 b a
[[ $(node_psql a -c "SELECT count(*) FROM items WHERE id IN (3, 4)") == 0 ]] || fail "b's delete did not reach a"

log "4. a re-inserts keys 3, 4: b has only their side-table rows (must be upserted)"
node_psql a -c "INSERT INTO items VALUES (3, 'a3', 3), (4, 'a3', 4)"
mesh_wait_marker 60 a b
[[ $(node_psql b -c "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM items") == "1=a2 2=a2 3=a3 4=a3" ]] ||
  fail "b's rows: '$(node_psql b -c "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM items")'"
for k in 3 4; do
  (($(ts_of $k) > ${TS0[$k]})) || fail "key $k: b's side-table row kept the old version after the re-insert"
done
[[ $(ver) == "1:a 2:a 3:a 4:a" ]] || fail "b's side table at the end: '$(ver)'"
mesh_wait_marker 120 b a
mesh_compare a b public.items || fail "a and b differ"
! grep -q '_odsync_versions_pkey' "$LOG" || fail "a batch failed on the side table's primary key: $(grep -m1 _odsync_versions_pkey "$LOG")"
odsync_stop
log "ok"
