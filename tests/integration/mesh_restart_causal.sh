#!/usr/bin/env bash
# mesh_restart_causal.sh — version vectors survive a restart of odsync (issue #14; docs/MULTI_MASTER.md,
# "Version vectors across restarts"). 2 nodes a <-> b, policy `priority` with b first: a false
# update_update conflict at b would keep b's old row while a has its own write (divergence).
#
# Per row: b inserts it, a applies it, odsync restarts, then a updates it (W). W was written after
# a had b's insert: it is no conflict, and both nodes must hold W.
#   row 1: clean stop, and the restart point of a's stream is just after the transaction that applied
#          b's insert at a (no local write at a in between: the vector update of that dropped
#          transaction is what carries it);
#   row 2: SIGKILL, with a local write at a after the apply (its stamp carries b's entry);
#   row 3: SIGKILL, restart point just after the dropped transaction, as row 1;
#   row 4: control — a and b update it while odsync is stopped: truly concurrent, one update_update
#          conflict per node, b (first in priority) wins on both.
# Asserts: the restart points are really past the applying transaction (b's checkpoint of a's
# stream), both nodes hold W for rows 1-3, the conflict log of each node holds exactly row 4's
# conflict, _odsync_peer_vv at b holds a's entry for b, and a and b are row-for-row equal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_restart_causal
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" priority "public.items, public.mesh_marker" '  priority: [b, a]'
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90

# b's checkpoint of the stream from a, as a decimal LSN (0: none yet).
ck_a_to_b() {
  node_psql b -c "SELECT coalesce((SELECT (position - '0/0'::pg_lsn)::int8 FROM _odsync_checkpoint WHERE pipeline = 'm_a_to_b'), 0)"
}

# b inserts row ID, a applies it; with GAP=1 nothing is written at a afterwards and we wait until
# b's checkpoint of a's stream passes the transaction that applied the row at a.
b_insert_applied_at_a() {
  local id=$1 gap=$2 at
  node_psql b -c "INSERT INTO items VALUES ($id, 'b$id')"
  wait_for "[[ \$(node_psql a -c 'SELECT v FROM items WHERE id = $id') == b$id ]]" 120 ||
    fail "b's insert of row $id did not reach a"
  if ((gap)); then
    # the applying transaction committed before the row became visible: a's WAL end now is past it
    at=$(node_psql a -c "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
    wait_for "(( \$(ck_a_to_b) >= $at ))" 180 ||
      fail "b's checkpoint of a's stream ($(ck_a_to_b)) did not pass a's LSN $at after the apply of row $id"
    log "row $id: b's checkpoint of a's stream is past the applying transaction ($(ck_a_to_b) >= $at)"
  else
    node_psql a -c "INSERT INTO items VALUES (${id}00, 'a-local')" # a local write after the apply
    mesh_wait_marker 120 a b
  fi
}

a_update() {
  local id=$1
  node_psql a -c "UPDATE items SET v = 'W$id' WHERE id = $id"
  mesh_wait_marker 120 a b
  mesh_wait_marker 120 b a
  for n in a b; do
    [[ $(node_psql $n -c "SELECT v FROM items WHERE id = $id") == "W$id" ]] ||
      fail "node $n holds '$(node_psql $n -c "SELECT v FROM items WHERE id = $id")' for row $id, not a's later write W$id"
  done
}

log "row 1: clean stop just after the apply at a"
b_insert_applied_at_a 1 1
odsync_stop
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
a_update 1

log "row 2: SIGKILL after a local write at a"
b_insert_applied_at_a 2 0
odsync_kill9
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
a_update 2

log "row 3: SIGKILL just after the apply at a"
b_insert_applied_at_a 3 1
odsync_kill9
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
a_update 3

pv=$(node_psql b -c "SELECT count(*) FROM _odsync_peer_vv WHERE peer = 'a' AND node = 'b' AND ts > 0")
[[ $pv == 1 ]] || fail "_odsync_peer_vv at b holds no entry of a for b: $(node_psql b -c 'TABLE _odsync_peer_vv')"

log "row 4 (control): truly concurrent updates while odsync is stopped"
node_psql a -c "INSERT INTO items VALUES (4, 'a4')"
mesh_wait_marker 120 a b
odsync_stop
node_psql a -c "UPDATE items SET v = 'A4' WHERE id = 4"
node_psql b -c "UPDATE items SET v = 'B4' WHERE id = 4"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.items
for n in a b; do
  [[ $(node_psql $n -c "SELECT v FROM items WHERE id = 4") == B4 ]] || fail "node $n: priority node b did not win row 4"
  got=$(node_psql $n -c "SELECT coalesce(string_agg(kind || ':' || key || ':' || winner || ':' || policy, ',' ORDER BY id), '') FROM _odsync_conflicts")
  [[ $got == "update_update:4:b:priority" ]] ||
    fail "node $n conflict log: '$got' (expected only update_update:4:b:priority)"
done
odsync_stop
mesh_compare a b public.items public.mesh_marker || fail "nodes differ"
[[ $(node_psql a -c "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM items WHERE id < 100") == "1=W1,2=W2,3=W3,4=B4" ]] ||
  fail "unexpected rows at a: $(node_psql a -c 'SELECT string_agg(id || '\''='\'' || v, '\'','\'' ORDER BY id) FROM items')"
log "ok"
