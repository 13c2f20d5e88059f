#!/usr/bin/env bash
# mesh_remove.sh — retiring nodes from a running mesh (`odsync mesh remove`, docs/MULTI_MASTER.md
# "Removing a node from a running mesh"; mesh.gc_interval_s: 1).
#
# 4 nodes a, b, c, d, all running.
# 1. c stops taking writes right after a last burst (inserts, updates, deletes), and
#    `odsync mesh remove c` runs at once with the config that still lists c while odsync runs it: it
#    waits until a, b and d applied all of c's writes. Afterwards c's rows are on a, b and d (c equals
#    each of them row for row); a, b, d hold no slot, publication, origin, peer vector or checkpoint
#    row of c's pipelines, c no slot or publication of its own; odsync, still running c's pipelines,
#    logs that c was removed and makes none of them again (checked for 5 s).
# 2. c deleted from the config, reloaded (SIGHUP): a, b, d replicate; b updates a row c wrote last: no conflict at a or d
#    (the vector entries the other peers keep for c still show that b had seen c's write).
# 3. d goes down; a deletes keys: a and b keep those tombstones for d (the pending gauge, the log
#    names d). `odsync mesh remove d` fails, naming d as unreachable and --force, and changes nothing;
#    with --force it succeeds: the tombstones on a and b go (gauge 0), no slot/origin/vector/checkpoint
#    of d is left on a and b.
# 4. odsync restarts with a and b only: a write at each reaches the other; a and b equal.
# 5. c joins again (`join_from: a`, `odsync mesh join`, its tables emptied): the join clears c's
#    removal mark everywhere, the three nodes replicate, writes at c and b are no conflicts, equal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_remove
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c d
D_DIR=$PG_DIR # the last server started: d's
for n in a b c d; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO items SELECT g, 'init', 0 FROM generate_series(1, 100) g;
SQL
done
TABLES="public.items, public.mesh_marker"
APORT=$(pg_free_port)
CONFIG=$TEST_TMP/odsync.yaml
CONFIG_ABD=$TEST_TMP/odsync_abd.yaml
CONFIG_AB=$TEST_TMP/odsync_ab.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "$TABLES" "  gc_interval_s: 1"
MESH_NODES=(a b d)
mesh_config "$CONFIG_ABD" last_writer_wins "$TABLES" "  gc_interval_s: 1"
MESH_NODES=(a b)
mesh_config "$CONFIG_AB" last_writer_wins "$TABLES" "  gc_interval_s: 1"
for f in "$CONFIG" "$CONFIG_ABD" "$CONFIG_AB"; do echo "admin: { listen: \"127.0.0.1:$APORT\" }" >>"$f"; done
MESH_NODES=(a b c d)

metric() { # NAME NODE -> value ('' when absent)
  curl -fsS "http://127.0.0.1:$APORT/metrics" | awk -v m="$1{node=\"$2\"}" '$1 == m { print $2 }'
}
tombs() { node_psql "$1" -c "SELECT coalesce(string_agg(key, ',' ORDER BY key::int), '') FROM _odsync_tombstones WHERE tbl = 'public.items'"; }
wait_tombs() { # NODE WANT TIMEOUT
  local n=$1 want=$2 deadline=$(($(date +%s) + $3))
  until [[ $(tombs "$n") == "$want" ]]; do
    odsync_running || fail "odsync exited while waiting for the tombstones of $n"
    (($(date +%s) < deadline)) || fail "node $n holds tombstones '$(tombs "$n")' after $3 s, expected '$want'"
    sleep 0.5
  done
}
quiesce() { mesh_quiesce 180; }
# Nothing of node GONE's pipelines is left on node N (slots, publications, origin, its vector, checkpoints).
assert_clean() {
  local n=$1 gone=$2 q
  q="SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'odsync_m_%_to_$gone' OR slot_name LIKE 'odsync_m_${gone}_to_%')
      || ' ' || (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'odsync_m_%_to_$gone' OR pubname LIKE 'odsync_m_${gone}_to_%')
      || ' ' || (SELECT count(*) FROM pg_replication_origin WHERE roname = 'odsync_$gone')
      || ' ' || (SELECT count(*) FROM _odsync_peer_vv WHERE peer = '$gone')
      || ' ' || (SELECT count(*) FROM _odsync_checkpoint WHERE pipeline LIKE 'm_${gone}_to_%')"
  [[ $(node_psql "$n" -c "$q") == "0 0 0 0 0" ]] ||
    fail "node $n keeps state of removed node $gone (slots, publications, origin, peer vectors, checkpoints): $(node_psql "$n" -c "$q")"
}

log "phase 1: c's last writes, then mesh remove c while odsync runs it"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 180
node_psql a -c "DELETE FROM items WHERE id BETWEEN 1 AND 3"
quiesce
for t in 1 2 3 4 5; do # c's last burst: small transactions, not awaited
  node_psql c -c "INSERT INTO items SELECT g, 'c$t', $t FROM generate_series(1000 + $t * 100, 1000 + $t * 100 + 49) g"
  node_psql c -c "UPDATE items SET v = 'cu$t', n = n + 1 WHERE id BETWEEN 10 + $t * 5 AND 14 + $t * 5"
  node_psql c -c "DELETE FROM items WHERE id = 60 + $t"
done
node_psql b -c "DELETE FROM items WHERE id BETWEEN 90 AND 92" # tombstones c may not have covered yet
"$ODSYNC_BIN" mesh remove -c "$CONFIG" --timeout 300 c >"$TEST_TMP/remove_c.log" 2>&1 ||
  fail "mesh remove c failed: $(cat "$TEST_TMP/remove_c.log")"
cat "$TEST_TMP/remove_c.log"
grep -q "node a has applied c up to" "$TEST_TMP/remove_c.log" || fail "the removal did not wait for a"
for n in a b d; do mesh_compare c $n public.items || fail "phase 1: $n lacks some of c's last writes"; done
[[ $(node_psql a -c "SELECT count(*) FROM items WHERE v LIKE 'c%'") == 275 ]] || fail "c's rows at a: $(node_psql a -c "SELECT count(*) FROM items WHERE v LIKE 'c%'")"
for n in a b d; do assert_clean $n c; done
[[ $(node_psql c -c "SELECT count(*) FROM pg_replication_slots") == 0 ]] || fail "c keeps slots: $(node_psql c -c "SELECT string_agg(slot_name, ',') FROM pg_replication_slots")"
[[ $(node_psql c -c "SELECT count(*) FROM pg_publication") == 0 ]] || fail "c keeps publications"
wait_for "grep -q 'mesh node c was removed from the mesh' '$LOG'" 60 || fail "no pipeline of c logged the removal"
sleep 5 # odsync still runs c's pipelines: they must not make c's slots or origin again
odsync_running || fail "odsync exited after the removal of c"
for n in a b d; do assert_clean $n c; done
[[ $(node_psql c -c "SELECT count(*) FROM pg_replication_slots") == 0 ]] || fail "c's slots came back while odsync still ran them"
MESH_NODES=(a b d)
for n in a b d; do wait_tombs $n "" 120; done # the clean-up no longer waits for c

log "phase 2: c deleted from the config (SIGHUP reload); b updates a row c wrote last"
cp "$CONFIG_ABD" "$CONFIG"
kill -HUP "$ODSYNC_PID"
wait_for "grep -q 'config reload by signal:SIGHUP applied: .* 6 removed' '$LOG'" 120 ||
  fail "the reload without c was not applied (6 pipelines removed): $(grep 'config reload' "$LOG" | tail -n 3)"
mesh_wait_active 180
declare -A BEFORE
for n in a b d; do BEFORE[$n]=$(node_psql $n -c "SELECT coalesce(max(id), 0) FROM _odsync_conflicts"); done
node_psql b -c "UPDATE items SET v = 'b-after', n = n + 1 WHERE id IN (15, 1120)"
node_psql a -c "INSERT INTO items VALUES (3000, 'a-after', 0)"
quiesce
for n in a b d; do
  got=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE id > ${BEFORE[$n]}")
  [[ $got == 0 ]] || fail "node $n logged $got conflicts for writes that had seen c's: $(node_psql $n -c "SELECT string_agg(kind || ' ' || key, ', ') FROM _odsync_conflicts WHERE id > ${BEFORE[$n]}")"
done
for n in b d; do mesh_compare a $n public.items || fail "phase 2: a and $n differ"; done
[[ $(node_psql d -c "SELECT v FROM items WHERE id = 1120") == b-after ]] || fail "b's update of c's row is not at d"

log "phase 3: d down; removal without and with --force"
pgsrv_stop "$D_DIR"
node_psql a -c "DELETE FROM items WHERE id BETWEEN 40 AND 44"
MESH_NODES=(a b)
quiesce
for n in a b; do
  deadline=$(($(date +%s) + 60))
  until [[ $(metric odsync_mesh_tombstones_pending $n) == 5 ]]; do
    (($(date +%s) < deadline)) || fail "node $n: pending tombstones gauge is '$(metric odsync_mesh_tombstones_pending $n)', expected 5 (held by d)"
    sleep 0.5
  done
  # the INFO line of the run after which d alone holds them (b may have held them one run earlier)
  wait_for "grep -q 'mesh clean-up on node $n .*waiting for peers that have not applied their deletes: d (5) ' '$LOG'" 60 ||
    fail "no clean-up line of node $n naming d alone: $(grep "clean-up on node $n" "$LOG" | tail -n 2)"
done
rc=0
"$ODSYNC_BIN" mesh remove -c "$CONFIG_ABD" --timeout 30 d >"$TEST_TMP/remove_d1.log" 2>&1 || rc=$?
cat "$TEST_TMP/remove_d1.log"
[[ $rc == 1 ]] || fail "mesh remove of an unreachable d without --force exited $rc, expected 1"
grep -q "node d is unreachable" "$TEST_TMP/remove_d1.log" && grep -q -- "--force" "$TEST_TMP/remove_d1.log" ||
  fail "the failed removal does not name d as unreachable and --force"
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_removed WHERE node = 'd'") == 0 ]] || fail "the failed removal marked d"
[[ $(node_psql a -c "SELECT count(*) FROM pg_replication_origin WHERE roname = 'odsync_d'") == 1 ]] || fail "the failed removal dropped d's origin"
"$ODSYNC_BIN" mesh remove -c "$CONFIG_ABD" --force d >"$TEST_TMP/remove_d2.log" 2>&1 ||
  fail "mesh remove --force d failed: $(cat "$TEST_TMP/remove_d2.log")"
cat "$TEST_TMP/remove_d2.log"
for n in a b; do assert_clean $n d; done
for n in a b; do wait_tombs $n "" 120; done
for n in a b; do
  deadline=$(($(date +%s) + 60))
  until [[ $(metric odsync_mesh_tombstones_pending $n) == 0 ]]; do
    (($(date +%s) < deadline)) || fail "node $n: pending gauge '$(metric odsync_mesh_tombstones_pending $n)' after removing d"
    sleep 0.5
  done
done
"$ODSYNC_BIN" mesh remove -c "$CONFIG_ABD" --force d >"$TEST_TMP/remove_d3.log" 2>&1 ||
  fail "a second mesh remove --force d failed (not idempotent): $(cat "$TEST_TMP/remove_d3.log")"
odsync_stop

log "phase 4: a and b alone"
odsync_start "$CONFIG_AB" "$LOG"
mesh_wait_active 180
node_psql a -c "INSERT INTO items VALUES (4000, 'from a', 0)"
node_psql b -c "UPDATE items SET v = 'from b' WHERE id = 50"
quiesce
[[ $(node_psql b -c "SELECT v FROM items WHERE id = 4000") == "from a" ]] || fail "a's write is not at b"
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 50") == "from b" ]] || fail "b's write is not at a"
mesh_compare a b public.items public.mesh_marker || fail "phase 4: a and b differ"
for n in a b; do assert_clean $n c; assert_clean $n d; done
odsync_stop

log "phase 5: c joins again (join_from: a)"
node_psql c -c "TRUNCATE items, mesh_marker"
CONFIG_ABC=$TEST_TMP/odsync_abc.yaml
MESH_NODES=(a b c)
mesh_config "$CONFIG_ABC" last_writer_wins "$TABLES" "  gc_interval_s: 1"
sed -i "s|    - { name: c, dsn: \"\(.*\)\" }|    - { name: c, dsn: \"\1\", join_from: a }|" "$CONFIG_ABC"
grep -q "join_from: a" "$CONFIG_ABC" || fail "config without join_from"
odsync_start "$CONFIG_ABC" "$LOG"
wait_for "grep -q 'mesh node c has not joined the mesh yet' '$LOG'" 60 || fail "the pipelines into c did not wait for the join"
"$ODSYNC_BIN" mesh join -c "$CONFIG_ABC" c >"$TEST_TMP/join_c.log" 2>&1 || fail "c's join failed: $(cat "$TEST_TMP/join_c.log")"
for n in a b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_removed WHERE node = 'c'") == 0 ]] || fail "node $n keeps c's removal mark after its join"
done
mesh_wait_active 180
for n in a b c; do BEFORE[$n]=$(node_psql $n -c "SELECT coalesce(max(id), 0) FROM _odsync_conflicts"); done
node_psql c -c "UPDATE items SET v = 'c-again' WHERE id = 1220"
node_psql b -c "UPDATE items SET v = 'b-again' WHERE id = 16"
quiesce
mesh_wait_equal 120 public.items
for n in a b c; do
  got=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE id > ${BEFORE[$n]}")
  [[ $got == 0 ]] || fail "node $n logged $got conflicts after c joined again"
done
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 1220") == c-again ]] || fail "c's write after its join is not at a"
odsync_stop
log "ok"
