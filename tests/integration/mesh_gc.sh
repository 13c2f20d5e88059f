#!/usr/bin/env bash
# mesh_gc.sh — the mesh's clean-up of tombstones, row versions and _odsync_hlc (docs/MULTI_MASTER.md,
# "Tombstone clean-up", "Pruning _odsync_hlc"; mesh.gc_interval_s: 1 here).
#
# 3 nodes a, b, c.
# 1. Full mesh: each node deletes 5 keys, two deleted keys are re-inserted elsewhere afterwards;
#    once replication quiesces every tombstone is gone on every node, the _odsync_versions rows of
#    the deleted keys without a row went with them, the re-inserted keys kept theirs, all nodes equal
#    row for row; /metrics counts the removed tombstones and 0 pending.
# 2. c cut off (a mesh of a and b only: c's pipelines stopped): c updates keys 20 and 21, then a
#    deletes 20 and b deletes 21 (later: the deletes win under last_writer_wins), a deletes 23 and
#    ('y z', 5) of pairs, which b re-inserts. a and b keep those four tombstones through many
#    clean-ups (c has not covered them: the pending gauge shows 4, the log names c).
# 3. Full mesh again: c's late updates are judged against those tombstones (update_delete logged on
#    every node, winner the deleting node), keys 20 and 21 are gone everywhere, then the tombstones
#    go too, nodes equal. With the clean-up ignoring the vectors (checked by breaking the condition
#    in postgres_mesh_gc.c) phase 2 fails (the tombstones go) and so would phase 3 (a and b would
#    re-create 20 and 21 from c's updates while c deletes them).
# 4. _odsync_hlc at a: a row 10 s behind a's clock, then one 2 h ahead, then one 1 h ahead: the
#    last is dominated (an earlier commit carries a higher clock) and goes at once, the first goes
#    once b and c applied a later write of a, the 2 h row stays (a's clock has not passed it).
# 5. _odsync_hlc at b, which writes nothing: a row its clock has passed goes all the same (the
#    clean-up's heartbeat moves the peers' entries for b).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_gc
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
CREATE TABLE pairs (k text, n int, v text, PRIMARY KEY (k, n));
INSERT INTO items SELECT g, 'init', 0 FROM generate_series(1, 30) g;
INSERT INTO pairs SELECT k, g, 'init' FROM unnest(ARRAY['x', 'y z']) k, generate_series(1, 5) g;
SQL
done
TABLES="public.items, public.mesh_marker, public.pairs"
CONFIG=$TEST_TMP/odsync.yaml
CONFIG_AB=$TEST_TMP/odsync_ab.yaml
LOG=$TEST_TMP/odsync.log
APORT=$(pg_free_port)
mesh_config "$CONFIG" last_writer_wins "$TABLES" "  gc_interval_s: 1"
echo "admin: { listen: \"127.0.0.1:$APORT\" }" >>"$CONFIG"
MESH_NODES=(a b)
mesh_config "$CONFIG_AB" last_writer_wins "$TABLES" "  gc_interval_s: 1"
echo "admin: { listen: \"127.0.0.1:$APORT\" }" >>"$CONFIG_AB"
MESH_NODES=(a b c)

quiesce() { mesh_quiesce 120; } # every pair, twice (what one node applied reaches the others, and their vectors come back)
tombs() { node_psql "$1" -c "SELECT coalesce(string_agg(key, ',' ORDER BY key::int), '') FROM _odsync_tombstones WHERE tbl = 'public.items'"; }
metric() { # NAME NODE -> value ('' when absent)
  curl -fsS "http://127.0.0.1:$APORT/metrics" | awk -v m="$1{node=\"$2\"}" '$1 == m { print $2 }'
}
wait_tombs() { # NODE WANT TIMEOUT: the node's tombstones of items are exactly WANT
  local n=$1 want=$2 deadline=$(($(date +%s) + $3))
  until [[ $(tombs "$n") == "$want" ]]; do
    odsync_running || fail "odsync exited while waiting for the tombstones of $n"
    (($(date +%s) < deadline)) || fail "node $n holds tombstones '$(tombs "$n")' after $3 s, expected '$want'"
    sleep 0.5
  done
}

log "phase 1: deletes and re-inserts on the full mesh"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
node_psql a -c "DELETE FROM items WHERE id BETWEEN 1 AND 5"
node_psql b -c "DELETE FROM items WHERE id BETWEEN 6 AND 10"
node_psql c -c "DELETE FROM items WHERE id BETWEEN 11 AND 15"
node_psql a -c "DELETE FROM pairs WHERE n <= 3"                 # a two-column key (text with a space, int)
quiesce
node_psql c -c "INSERT INTO items VALUES (3, 'again', 1)"      # a's deleted key, re-created at c
node_psql c -c "INSERT INTO pairs VALUES ('y z', 2, 'again')"
node_psql a -c "INSERT INTO items VALUES (12, 'again', 1)"     # c's deleted key, re-created at a
quiesce
for n in a b c; do wait_tombs $n "" 120; done
for n in a b c; do
  left=$(node_psql $n -c "SELECT count(*) FROM _odsync_versions v WHERE tbl = 'public.items' AND NOT EXISTS (SELECT 1 FROM items i WHERE i.id = v.key::int)")
  [[ $left == 0 ]] || fail "node $n keeps $left row versions of keys that have neither a row nor a tombstone"
  [[ $(node_psql $n -c "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM items WHERE id IN (3, 12)") == "3=again 12=again" ]] ||
    fail "node $n lost a re-inserted key: $(node_psql $n -c "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM items WHERE id <= 15")"
  [[ $(node_psql $n -c "SELECT count(*) FROM items WHERE id <= 15") == 2 ]] || fail "node $n: deleted keys are back"
  removed=$(metric odsync_mesh_tombstones_removed_total $n)
  [[ -n $removed ]] && ((removed >= 15)) || fail "node $n: odsync_mesh_tombstones_removed_total is '$removed', expected >= 15"
done
for n in a b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_tombstones") == 0 ]] || fail "node $n keeps tombstones of pairs"
  left=$(node_psql $n -c "SELECT count(*) FROM _odsync_versions v WHERE tbl = 'public.pairs' AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.k || chr(31) || p.n = v.key)")
  [[ $left == 0 ]] || fail "node $n keeps $left row versions of pairs keys without a row or tombstone"
done
for n in a b; do # ('y z', 2) re-created by c: its row version (written by c's sink) stays
  [[ $(node_psql $n -c "SELECT node FROM _odsync_versions WHERE tbl = 'public.pairs' AND key = 'y z' || chr(31) || '2'") == c ]] ||
    fail "node $n lost the row version of the live two-column key ('y z', 2)"
done
for n in b c; do mesh_compare a $n public.items public.pairs || fail "phase 1: a and $n differ"; done
grep -q "mesh clean-up on node a .*removed [0-9]* tombstones" "$LOG" || fail "no clean-up line for node a in the log"
odsync_stop

log "phase 2: c cut off; c updates 20 and 21, then a deletes 20 and b deletes 21"
node_psql c -c "UPDATE items SET v = 'C' WHERE id IN (20, 21)"
node_psql c -c "DELETE FROM items WHERE id = 22"
MESH_NODES=(a b)
odsync_start "$CONFIG_AB" "$LOG"
mesh_wait_active 120
node_psql a -c "DELETE FROM items WHERE id = 20"
node_psql b -c "DELETE FROM items WHERE id = 21"
node_psql a -c "DELETE FROM items WHERE id = 23"
node_psql a -c "DELETE FROM pairs WHERE k = 'y z' AND n = 5"
quiesce
node_psql b -c "INSERT INTO items VALUES (23, 'back', 2)" # key 23: a tombstone and a live row
node_psql b -c "INSERT INTO pairs VALUES ('y z', 5, 'back')" # the same with a two-column key
quiesce
# Many clean-up rounds (1 s each) after both deletes reached both nodes: the pending gauge of a and
# b shows the kept tombstones (items 20, 21, 23 and pairs ('y z', 5): c has covered none of them).
for n in a b; do
  deadline=$(($(date +%s) + 60))
  until [[ $(metric odsync_mesh_tombstones_pending $n) == 4 ]]; do
    (($(date +%s) < deadline)) || fail "node $n: pending tombstones gauge is '$(metric odsync_mesh_tombstones_pending $n)', expected 4"
    sleep 0.5
  done
done
sleep 3 # three more rounds
for n in a b; do # the log names the node that holds them back
  grep -q "mesh clean-up on node $n .*4 tombstones kept, waiting for peers that have not applied their deletes: c (4)" "$LOG" ||
    fail "no clean-up line of node $n naming c as the peer that holds 4 tombstones back: $(grep "clean-up on node $n" "$LOG" | tail -n 2)"
done
for n in a b; do
  [[ $(tombs $n) == "20,21,23" ]] || fail "node $n holds tombstones '$(tombs $n)' while c is cut off; expected 20,21,23 (c has not covered them)"
done
MESH_NODES=(a b c)
odsync_stop

log "phase 3: the full mesh again; c's late updates meet the tombstones"
declare -A BEFORE
for n in a b c; do BEFORE[$n]=$(node_psql $n -c "SELECT coalesce(max(id), 0) FROM _odsync_conflicts"); done
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
quiesce
for n in a b c; do
  got=$(node_psql $n -c "SELECT string_agg(key || ':' || kind || ':' || winner, ' ' ORDER BY key) FROM _odsync_conflicts WHERE id > ${BEFORE[$n]} AND key IN ('20', '21')")
  [[ $got == "20:update_delete:a 21:update_delete:b" ]] ||
    fail "node $n conflict log of keys 20, 21: '$got', expected c's updates losing to the later deletes of a and b"
  [[ $(node_psql $n -c "SELECT count(*) FROM items WHERE id IN (20, 21, 22)") == 0 ]] ||
    fail "node $n has keys $(node_psql $n -c "SELECT string_agg(id::text, ',') FROM items WHERE id IN (20, 21, 22)")"
done
for n in a b c; do wait_tombs $n "" 120; done
for n in a c; do # key 23 lives (b's re-insert): its row version stays where a mesh sink wrote it
  [[ $(node_psql $n -c "SELECT node FROM _odsync_versions WHERE tbl = 'public.items' AND key = '23'") == b ]] ||
    fail "node $n lost the row version of the live key 23 with its tombstone"
  [[ $(node_psql $n -c "SELECT node FROM _odsync_versions WHERE tbl = 'public.pairs' AND key = 'y z' || chr(31) || '5'") == b ]] ||
    fail "node $n lost the row version of the live key ('y z', 5) with its tombstone"
done
for n in b c; do mesh_compare a $n public.items public.pairs || fail "phase 3: a and $n differ"; done
[[ $(metric odsync_mesh_tombstones_pending a) == 0 ]] || fail "node a: pending gauge $(metric odsync_mesh_tombstones_pending a) after quiescence"

log "phase 4: _odsync_hlc at a"
now_us() { node_psql a -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8"; }
t=$(now_us)
node_psql a -c "INSERT INTO _odsync_hlc VALUES ($((t - 10000000)))"
node_psql a -c "INSERT INTO _odsync_hlc VALUES ($((t + 7200000000)))"
node_psql a -c "INSERT INTO _odsync_hlc VALUES ($((t + 3600000000)))"
quiesce # a's markers, applied at b and c, carry a's entry past t - 10 s back to a
deadline=$(($(date +%s) + 60))
until [[ $(node_psql a -c "SELECT string_agg(hlc::text, ',' ORDER BY hlc) FROM _odsync_hlc") == "$((t + 7200000000))" ]]; do
  (($(date +%s) < deadline)) || fail "_odsync_hlc at a holds '$(node_psql a -c "SELECT string_agg(hlc::text, ',' ORDER BY hlc) FROM _odsync_hlc")', expected only $((t + 7200000000))"
  sleep 0.5
done
removed=$(metric odsync_mesh_hlc_rows_removed_total a)
[[ -n $removed ]] && ((removed >= 2)) || fail "odsync_mesh_hlc_rows_removed_total{node=a} is '$removed', expected >= 2"
node_psql a -c "UPDATE items SET v = 'late' WHERE id = 30"
quiesce
for n in b c; do mesh_compare a $n public.items || fail "phase 4: a and $n differ"; done

log "phase 5: _odsync_hlc at b, which writes nothing from now on"
# A row 1 ms behind b's clock, after b's last own write (the insert is not replicated: no stamp). Nothing of b's own moves the
# peers' entries for b; the clean-up's heartbeat (an empty local transaction with one message) does.
tb=$(node_psql b -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")
node_psql b -c "INSERT INTO _odsync_hlc VALUES ($((tb - 1000)))"
deadline=$(($(date +%s) + 60))
until [[ $(node_psql b -c "SELECT count(*) FROM _odsync_hlc") == 0 ]]; do
  odsync_running || fail "odsync exited while waiting for b's clock rows"
  (($(date +%s) < deadline)) || fail "_odsync_hlc at b still holds '$(node_psql b -c "SELECT string_agg(hlc::text, ',') FROM _odsync_hlc")' after 60 s (no heartbeat?)"
  sleep 0.5
done
for n in a c; do # the heartbeat applied everywhere: no rows, no conflicts, the data unchanged
  mesh_wait_marker 120 $n a
  mesh_compare b $n public.items public.pairs || fail "phase 5: b and $n differ"
done
odsync_stop
log "ok"
