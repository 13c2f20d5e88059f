#!/usr/bin/env bash
# mesh_key_move.sh — updates that change a row's key, racing across the mesh (docs/MULTI_MASTER.md,
# "Updates that change the key": on every node such an update is the delete of the old key and the
# insert of the new one, each judged as any delete and insert). MOVE_NODES nodes (default 3: a b c;
# 2: a b), last_writer_wins; L is the last node. Tables: items (default replica identity: the old
# key only), stock (qty in mesh.counters, REPLICA IDENTITY FULL), docs (a TOASTed column that the
# moves leave unchanged, REPLICA IDENTITY FULL), docs2 (the same with the default replica
# identity: the key-lock trigger makes PostgreSQL write the moved row's values anew, so they arrive
# whole, not as "unchanged"), cm (column_merge). Rows 1-9 and 20 hold 100 first.
# With odsync stopped, each write later than the last, for items and stock alike:
#  key 1: a moves 1 -> 11, L inserts 11 (5)       -> 11 is L's (stock: 105, both inserts); no 1
#  key 2: L inserts 12 (7), a moves 2 -> 12        -> 12 is a's row (stock: 107); no 2
#  key 3: a moves 3 -> 13, L takes 1 from 3        -> 3 re-created by L's update (99; stock: -1, the
#                                                     move removed the 100 it saw), and 13 (100)
#  key 4: L takes 1 from 4, a moves 4 -> 14        -> no 4 (stock: its tombstone's balance -1), 14
#  key 5: a moves 5 -> 15, L moves 5 -> 16         -> 15 and 16 (stock: balance -100, both moves
#                                                     removed the 100 they saw: documented)
#  key 6: a moves 6 -> 17, L deletes 6             -> 17 (stock: balance -100, as key 5)
#  key 20 (stock): L takes 5, a deletes it         -> no 20, balance -5
# docs: a moves 1 -> 11 and L moves 2 -> 12, neither touching the TOASTed column; docs2: a moves
# 1 -> 11 (no conflict); cm: a moves 1 -> 11, then L changes 1's name (the update re-creates 1).
# First, `odsync check` refuses a table with a DEFERRABLE primary key (its shifts over adjacent keys
# hold two rows under one key for a while); last, a mesh run with one anyway (items' key made
# DEFERRABLE) is warned by every sink.
# Asserts after odsync ran (SIGKILLed once while a sink held a decided batch, then started again):
# every node holds exactly the rows above (and docs' values, od_compare_pg), the nodes are
# identical, each logged the same conflicts (kind, key, winner) for items and stock, tombstone
# balances as above, docs' and docs2's moved rows hold their values, and no move was applied as an
# update (no warning).
# Then live: a moves stock 8 -> 20, onto the tombstone with balance -5 (its trigger names the
# balance, as an insert's does): 20 holds 100 everywhere and no balance is left; a moves items 9 ->
# 19 and L then updates 19 (it saw the move): no conflict, 19 is L's everywhere.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

NN=${MOVE_NODES:-3}
ALL=(a b c)
NODES=("${ALL[@]:0:$NN}")
L=${NODES[$((NN - 1))]}
test_init mesh_key_move
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes "${NODES[@]}"
for n in "${NODES[@]}"; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, name text, qty int NOT NULL);
CREATE TABLE stock (id int PRIMARY KEY, name text, qty int NOT NULL);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE docs (id int PRIMARY KEY, name text, body text);
ALTER TABLE docs REPLICA IDENTITY FULL;
CREATE TABLE docs2 (id int PRIMARY KEY, name text, body text);
CREATE TABLE cm (id int PRIMARY KEY, name text, price int);
ALTER TABLE cm REPLICA IDENTITY FULL;
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.stock, public.docs, public.docs2, public.cm, public.mesh_marker" \
  "  counters: [public.stock.qty]
  policies: { public.cm: { policy: column_merge, fallback: last_writer_wins } }"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed: $out"
# a DEFERRABLE primary key is refused: a shift over adjacent keys holds two rows under one key for a
# while, and its moves arrive one by one
for n in "${NODES[@]}"; do node_psql $n -c "CREATE TABLE shift (id int PRIMARY KEY DEFERRABLE, v text)"; done
mesh_config "$TEST_TMP/shift.yaml" last_writer_wins "public.items, public.shift"
rc=0; out=$("$ODSYNC_BIN" check -c "$TEST_TMP/shift.yaml" 2>&1) || rc=$?
[[ $rc == 1 ]] || fail "odsync check exited $rc on a table with a DEFERRABLE primary key: $out"
grep -q "mesh node a: table public.shift has a DEFERRABLE primary key; .*make it NOT DEFERRABLE" <<<"$out" ||
  fail "odsync check did not name the DEFERRABLE primary key: $out"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for t in items stock; do mesh_step a -c "INSERT INTO $t SELECT k, 'n', 100 FROM generate_series(1, 9) k"; done
mesh_step a -c "INSERT INTO stock VALUES (20, 'n', 100)"
# ~190 kB of hex per row: stored out of line (TOASTed), so an update that does not set it sends it
# as unchanged
for t in docs docs2; do
  mesh_step a -c "INSERT INTO $t SELECT k, 'd', (SELECT string_agg(md5(k::text || g::text), '') FROM generate_series(1, 6000) g) FROM generate_series(1, 2) k"
done
mesh_step a -c "INSERT INTO cm VALUES (1, 'n', 10)"
mesh_quiesce 120 "${NODES[@]}"
odsync_stop
ext=$(node_psql a -c "SELECT pg_relation_size(reltoastrelid) > 300000 FROM pg_class WHERE oid = 'docs'::regclass")
[[ $ext == t ]] || fail "docs.body is not stored out of line (docs' TOAST table holds less than the two values)"

for t in items stock; do
  mesh_step a -c "UPDATE $t SET id = 11 WHERE id = 1"
  mesh_step $L -c "INSERT INTO $t VALUES (11, 'L', 5)"
  mesh_step $L -c "INSERT INTO $t VALUES (12, 'L', 7)"
  mesh_step a -c "UPDATE $t SET id = 12 WHERE id = 2"
  mesh_step a -c "UPDATE $t SET id = 13 WHERE id = 3"
  mesh_step $L -c "UPDATE $t SET qty = qty - 1 WHERE id = 3"
  mesh_step $L -c "UPDATE $t SET qty = qty - 1 WHERE id = 4"
  mesh_step a -c "UPDATE $t SET id = 14 WHERE id = 4"
  mesh_step a -c "UPDATE $t SET id = 15 WHERE id = 5"
  mesh_step $L -c "UPDATE $t SET id = 16 WHERE id = 5"
  mesh_step a -c "UPDATE $t SET id = 17 WHERE id = 6"
  mesh_step $L -c "DELETE FROM $t WHERE id = 6"
done
mesh_step $L -c "UPDATE stock SET qty = qty - 5 WHERE id = 20"
mesh_step a -c "DELETE FROM stock WHERE id = 20"
mesh_step a -c "UPDATE docs SET id = 11 WHERE id = 1"
mesh_step $L -c "UPDATE docs SET id = 12, name = 'L' WHERE id = 2"
mesh_step a -c "UPDATE docs2 SET id = 11 WHERE id = 1"
mesh_step a -c "UPDATE cm SET id = 11 WHERE id = 1"
mesh_step $L -c "UPDATE cm SET name = 'L' WHERE id = 1"

# a first run SIGKILLed while a sink holds a decided batch open: the retried batch counts once
mesh_kill9_while_held "$CONFIG" "$LOG"
mesh_quiesce 300 "${NODES[@]}"

rows() { node_psql "$2" -c "SELECT coalesce(string_agg(id || ':' || name || ':' || qty, ' ' ORDER BY id), '') FROM $1"; }
bal() { node_psql "$2" -c "SELECT coalesce(ctr ->> 'qty', '') FROM _odsync_tombstones WHERE tbl = 'public.stock' AND key = '$1'"; }
conflicts() { node_psql "$2" -c "SELECT coalesce(string_agg(kind || ':' || key || ':' || winner, ' ' ORDER BY key::int, kind), '') FROM _odsync_conflicts WHERE table_name = 'public.$1'"; }
want_items="3:n:99 7:n:100 8:n:100 9:n:100 11:L:5 12:n:100 13:n:100 14:n:100 15:n:100 16:n:100 17:n:100"
want_stock="3:n:-1 7:n:100 8:n:100 9:n:100 11:L:105 12:n:107 13:n:100 14:n:100 15:n:100 16:n:100 17:n:100"
want_conf="update_delete:3:$L update_delete:4:a delete_delete:5:$L delete_delete:6:$L insert_insert:11:$L insert_insert:12:a"
for n in "${NODES[@]}"; do
  got=$(rows items $n)
  [[ $got == "$want_items" ]] || fail "node $n: items '$got', expected '$want_items'"
  got=$(rows stock $n)
  [[ $got == "$want_stock" ]] || fail "node $n: stock '$got', expected '$want_stock'"
  got=$(conflicts items $n)
  [[ $got == "$want_conf" ]] || fail "node $n: conflicts of items '$got', expected '$want_conf'"
  got=$(conflicts stock $n)
  [[ $got == "$want_conf update_delete:20:a" ]] || fail "node $n: conflicts of stock '$got', expected '$want_conf update_delete:20:a'"
  for kb in 4:-1 5:-100 6:-100 20:-5; do
    [[ $(bal ${kb%%:*} $n) == "${kb#*:}" ]] || fail "node $n: stock key ${kb%%:*}'s tombstone balance '$(bal ${kb%%:*} $n)', expected ${kb#*:}"
  done
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || name || ':' || md5(body), ' ' ORDER BY id) FROM docs")
  want=$(node_psql a -c "SELECT string_agg(k || ':' || CASE k WHEN 11 THEN 'd' ELSE 'L' END || ':' || md5((SELECT string_agg(md5((k - 10)::text || g::text), '') FROM generate_series(1, 6000) g)), ' ' ORDER BY k) FROM unnest(ARRAY[11, 12]) k")
  [[ $got == "$want" ]] || fail "node $n: docs '$got', expected '$want' (the moved rows with their unchanged TOASTed values)"
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || name || ':' || price, ' ' ORDER BY id) FROM cm")
  [[ $got == "1:L:10 11:n:10" ]] || fail "node $n: cm '$got', expected '1:L:10 11:n:10'"
done
for t in items stock docs docs2 cm; do mesh_same_everywhere "the races" public.$t "${NODES[@]}"; done
for n in "${NODES[@]}"; do
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || md5(body), ' ' ORDER BY id) FROM docs2")
  want=$(node_psql a -c "SELECT string_agg(k || ':' || md5((SELECT string_agg(md5((k % 10)::text || g::text), '') FROM generate_series(1, 6000) g)), ' ' ORDER BY k) FROM unnest(ARRAY[2, 11]) k")
  [[ $got == "$want" ]] || fail "node $n: docs2 '$got', expected '$want'"
done
! grep -q "changed its key and left TOASTed values unchanged" "$LOG" || fail "a move was applied as an update: $(grep -m1 'changed its key' "$LOG")"

# live: a move onto a tombstone that holds a balance; a move that a later update saw
declare -A NCONF
for n in "${NODES[@]}"; do NCONF[$n]=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts"); done
mesh_step a -c "UPDATE stock SET id = 20 WHERE id = 8"
mesh_step a -c "UPDATE items SET id = 19 WHERE id = 9"
mesh_wait_marker 120 a "$L"
mesh_step $L -c "UPDATE items SET name = 'L', qty = 1 WHERE id = 19"
mesh_quiesce 300 "${NODES[@]}"
for n in "${NODES[@]}"; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || qty, ' ' ORDER BY id), '') FROM stock WHERE id IN (8, 20)")
  [[ $got == "20:100" ]] || fail "node $n: stock keys 8 and 20 '$got' after moving 8 onto 20's tombstone, expected '20:100'"
  [[ -z $(bal 20 $n) ]] || fail "node $n: key 20's tombstone kept the balance '$(bal 20 $n)' after the move onto it"
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || name || ':' || qty, ' ' ORDER BY id), '') FROM items WHERE id IN (9, 19)")
  [[ $got == "19:L:1" ]] || fail "node $n: items keys 9 and 19 '$got', expected '19:L:1'"
  got=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  [[ $got == "${NCONF[$n]}" ]] || fail "node $n: $((got - NCONF[$n])) conflicts logged for the live moves (each saw what it moved)"
done
for t in items stock; do mesh_same_everywhere "the live moves" public.$t "${NODES[@]}"; done
odsync_stop

# a mesh that runs with a DEFERRABLE primary key anyway is told so by every sink's session
for n in "${NODES[@]}"; do node_psql $n -c "ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (id) DEFERRABLE"; done
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
wait_for "(( \$(grep -c 'table(s) public.items have a DEFERRABLE primary key' \"$LOG\") >= $((NN * (NN - 1))) ))" 30 ||
  fail "not every sink warned of items' DEFERRABLE primary key: $(grep -c 'DEFERRABLE primary key' "$LOG") warnings"
odsync_stop
log "ok"
