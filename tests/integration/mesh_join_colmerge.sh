#!/usr/bin/env bash
# mesh_join_colmerge.sh — node c joins a running mesh a <-> b whose table is column_merge (fallback
# last_writer_wins): the join's copy carries every column's version and the tombstones' last rows, so
# that c judges later concurrent column writes exactly as the seed a would (docs/MULTI_MASTER.md,
# "Adding a node to a running mesh").
#
# Writers (pgbench at a and b, rate-limited, in rounds until stopped: upserts that re-create deleted
# keys, updates of one column (v, n or w) or of two rows, deletes on keys 1..1500) run through the
# whole join and for AFTER_JOIN_WRITES rows after it.
# Two keys are built on purpose around the join, with the pipeline a -> b held (a transaction at b
# holds the row of key -100, which a updates first; the held sink applies nothing after it):
#  key -1 (columns): a sets v, then b sets n (applied at a: a merge, a's row version is b's now); the
#    copy; then b sets w. b's last write had not seen a's v: c must keep v = 'a1' and take w — with the
#    row's version alone (no column versions) c takes b's write as seen and applies b's whole row
#    (v = 'init'), while a and b end with v = 'a1'.
#  key -2 (a tombstone's last row): a sets n = 5, then deletes the row; the copy; then b sets v (later
#    than the delete: it wins and re-creates the row). c must take n = 5 from the copied tombstone
#    image, as a does and as b (which merges a's n into its row) does.
# Then, with odsync stopped, a, b and c each update one column of rows 2001..2040 (whose column
# versions came from the copy; the writers never touch them): all three updates survive everywhere.
# A first join is SIGKILLed in the middle of its copy (c holds nothing after it; it leaves the slots
# the second reuses). Asserts: c empty before the join; the second join completes under load; c's copied version of key -1 has
# a column list (v by a, n by b); after quiescence a, b, c identical row for row, keys -1 and -2 as
# above, no conflict logged twice; the disjoint updates all survive and the nodes are identical again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

RATE=${MESH_JOIN_RATE:-40}                           # transactions/s per node, 2 clients each
AFTER_JOIN_WRITES=${MESH_JOIN_AFTER_WRITES:-1500}   # rows written at a and b after the join, then stop
test_init mesh_join_colmerge
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0, w text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE items REPLICA IDENTITY FULL;
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
CREATE TABLE hold (x int); -- not a mesh table: releases the test's blocking transaction
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" column_merge "public.items, public.mesh_marker" "  fallback: last_writer_wins"
sed -i "s|    - { name: c, dsn: \"\(.*\)\" }|    - { name: c, dsn: \"\1\", join_from: a }|" "$CONFIG"
grep -q "join_from: a" "$CONFIG" || fail "config without join_from: $(cat "$CONFIG")"
odsync_start "$CONFIG" "$LOG"
MESH_NODES=(a b) # c has not joined yet
mesh_wait_active 120
node_psql a -c "INSERT INTO items SELECT g, 'init', 0, 'init' FROM generate_series(1, 1500) g"
node_psql a -c "INSERT INTO items SELECT g, 'init', 0, 'init' FROM generate_series(2001, 2040) g"
node_psql a -c "INSERT INTO items VALUES (-100, 'init', 0, 'init'), (-1, 'init', 0, 'init'), (-2, 'init', 0, 'init')"
mesh_wait_marker 120 a b
# column versions of several writers on the rows the end of the test updates: b's n, a's w
node_psql b -c "UPDATE items SET n = 1 WHERE id BETWEEN 2001 AND 2040; DELETE FROM items WHERE id % 7 = 0 AND id <= 1500"
node_psql a -c "UPDATE items SET w = 'a' WHERE id BETWEEN 2001 AND 2040"
mesh_wait_marker 120 b a
mesh_wait_marker 120 a b
MESH_NODES=(a b c)
wait_for "grep -q 'mesh node c has not joined the mesh yet' '$LOG'" 60 || fail "no pipeline into c reported the gate"
[[ $(node_psql c -c "SELECT count(*) FROM items") == 0 ]] || fail "c received rows before joining"

cat >"$TEST_TMP/load.sql" <<'SQL'
\set k random(1, 1500)
\set k2 random(1, 1500)
\set op random(1, 10)
\if :op <= 2
INSERT INTO items VALUES (:k, 'i' || :client_id, 1, 'i')
  ON CONFLICT (id) DO UPDATE SET v = excluded.v;
\elif :op <= 4
UPDATE items SET v = 'u' || :client_id || '-' || md5(random()::text) WHERE id = :k;
\elif :op <= 6
UPDATE items SET n = n + 1 WHERE id = :k;
\elif :op <= 7
UPDATE items SET w = 'w' || :client_id || '-' || md5(random()::text) WHERE id = :k;
\elif :op <= 8
BEGIN;
UPDATE items SET n = n + 1 WHERE id = :k;
UPDATE items SET w = 'p' || :client_id WHERE id = :k2;
COMMIT;
\else
DELETE FROM items WHERE id = :k;
\endif
SQL
HOLD_PID=
JOIN_PID=
test_extra_cleanup() {
  local p
  mesh_load_kill
  for p in $JOIN_PID $HOLD_PID; do kill "$p" 2>/dev/null; done
  return 0
}
mesh_load_start "$TEST_TMP/load.sql" "$RATE" a b
writes() { # rows written at a and b so far
  local n t=0
  for n in a b; do
    t=$((t + $(node_psql $n -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE relname = 'items'")))
  done
  echo $t
}
val() { node_psql "$1" -c "SELECT coalesce(string_agg(v || ':' || n || ':' || w, ' '), 'none') FROM items WHERE id = $2"; }

w0=$(writes)
wait_for "(( \$(writes) > $w0 + 100 ))" 120 || fail "the writers did not start"

log "join 1: slowed down, SIGKILLed in the middle of its copy (it leaves the slots into and out of c)"
ODSYNC_MESH_JOIN_TEST_PAUSE_MS=4000 "$ODSYNC_BIN" mesh join -c "$CONFIG" c >"$TEST_TMP/join1.log" 2>&1 &
JOIN_PID=$!
wait_for "grep -q 'table public.items:' '$TEST_TMP/join1.log' || ! kill -0 $JOIN_PID" 300
grep -q 'table public.items:' "$TEST_TMP/join1.log" || fail "join 1 did not reach its copy: $(cat "$TEST_TMP/join1.log")"
kill -KILL $JOIN_PID
wait $JOIN_PID 2>/dev/null || true
JOIN_PID=
[[ $(node_psql c -c "SELECT count(*) FROM items") == 0 && $(node_psql c -c "SELECT count(*) FROM _odsync_versions") == 0 ]] ||
  fail "a killed join left rows or versions at c"
# (Creating a slot waits for the node's running transactions: the slot b -> c exists now, so join 2
# does not wait for the transaction that holds a -> b below.)
[[ $(node_psql b -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'odsync_m_b_to_c'") == 1 ]] ||
  fail "join 1 made no slot b -> c"

log "hold the pipeline a -> b (a transaction at b holds key -100, which a writes first)"
node_psql b -c "BEGIN; SELECT id FROM items WHERE id = -100 FOR UPDATE; DO \$\$ BEGIN FOR i IN 1..6000 LOOP EXIT WHEN EXISTS (SELECT 1 FROM hold); PERFORM pg_sleep(0.05); END LOOP; END \$\$; COMMIT;" >/dev/null 2>&1 &
HOLD_PID=$!
wait_for "[[ \$(node_psql b -c 'SELECT count(*) FROM (SELECT 1 FROM items WHERE id = -100 FOR UPDATE SKIP LOCKED) x') == 0 ]]" 30 ||
  fail "the blocking transaction at b did not take its lock"
tick() { sleep 0.05; } # distinct commit times, in this order
node_psql a -c "UPDATE items SET v = 'a0' WHERE id = -100" >/dev/null
tick
node_psql a -c "UPDATE items SET v = 'a1' WHERE id = -1" >/dev/null
node_psql a -c "UPDATE items SET n = 5 WHERE id = -2" >/dev/null
tick
node_psql a -c "DELETE FROM items WHERE id = -2" >/dev/null
tick
node_psql b -c "UPDATE items SET n = 1 WHERE id = -1" >/dev/null
wait_for "[[ \$(val a -1) == a1:1:init ]]" 60 || fail "a did not merge b's n into key -1: $(val a -1)"
[[ $(val b -1) == init:1:init && $(val b -2) == init:0:init ]] || fail "a's writes reached b through the hold: $(val b -1) $(val b -2)"

log "join 2, writers running (the copy slowed down)"
ODSYNC_MESH_JOIN_TEST_PAUSE_MS=2000 "$ODSYNC_BIN" mesh join -c "$CONFIG" c >"$TEST_TMP/join.log" 2>&1 &
JOIN_PID=$!
wait_for "grep -q 'table public.items:' '$TEST_TMP/join.log' || ! kill -0 $JOIN_PID" 300
grep -q 'table public.items:' "$TEST_TMP/join.log" || fail "the join did not reach its copy: $(cat "$TEST_TMP/join.log")"
# a's snapshot is taken: these writes of b come to c from b's stream, concurrent with a's v (key -1)
# and with a's n and delete (key -2) in the copy
node_psql b -c "UPDATE items SET w = 'b1' WHERE id = -1" >/dev/null
node_psql b -c "UPDATE items SET v = 'bT' WHERE id = -2" >/dev/null
wait "$JOIN_PID" || fail "the join failed: $(cat "$TEST_TMP/join.log")"
JOIN_PID=
cat "$TEST_TMP/join.log"
grep -q "node c joined the mesh from a" "$TEST_TMP/join.log" || fail "the join did not report the join"
mesh_loading || fail "the writers stopped before the join ended"
[[ $(val b -1) == init:1:b1 ]] || fail "a's write reached b before b's last write: $(val b -1)"
# What the copy wrote at c (checked before the hold ends: b has not applied a's delete of key -2, so
# no clean-up can take c's tombstone yet). c may already have applied b's last writes (w of key -1,
# v of key -2): those columns may be b's; the others are the copy's.
# key -1: id by a (the insert), v by a, n by b (a merged b's write before the copy)
cv=$(node_psql c -c "SELECT also FROM _odsync_versions WHERE tbl = 'public.items' AND key = '-1'")
[[ $cv =~ ^a:[0-9]+:[0-9]+,a:[0-9]+:[0-9]+,b:[0-9]+:[0-9]+,[ab]:[0-9]+:[0-9]+$ ]] ||
  fail "c's copied column versions of key -1 are '$cv', expected a,a,b,(a|b)"
# key -2's tombstone: a's local writes, resolved from a's _odsync_colver (the insert's for id and w,
# n's from a's later update), and its last row
cv=$(node_psql c -c "SELECT also FROM _odsync_versions WHERE tbl = 'public.items' AND key = '-2'")
[[ $cv =~ ^a:([0-9]+):[0-9]+,[ab]:[0-9]+:[0-9]+,a:([0-9]+):[0-9]+,a:([0-9]+):[0-9]+$ ]] ||
  fail "c's copied column versions of key -2 are '$cv', expected a,(a|b),a,a"
((BASH_REMATCH[1] == BASH_REMATCH[3] && BASH_REMATCH[2] > BASH_REMATCH[1])) ||
  fail "c's copied column versions of key -2 ('$cv'): n's should be a's later update"
[[ $(node_psql c -c "SELECT img ->> 'n' FROM _odsync_tombstones WHERE tbl = 'public.items' AND key = '-2'") == 5 ]] ||
  fail "c's copied tombstone of key -2 has no image with n = 5"
node_psql b -c "INSERT INTO hold VALUES (1)"
wait "$HOLD_PID" || true
HOLD_PID=
# The writers go on for a while with c in the mesh and a -> b released, then stop.
w3=$(writes)
wait_for "(( \$(writes) > $w3 + $AFTER_JOIN_WRITES ))" 300 || fail "the writers stalled after the join"
mesh_load_stop
log "load done; waiting for the mesh to quiesce"
mesh_wait_active 180
quiesce() { mesh_quiesce 300 a b c; }
quiesce
for n in a b c; do
  [[ $(val $n -1) == a1:1:b1 ]] || fail "node $n holds key -1 as '$(val $n -1)', expected a1:1:b1 (a's v, b's n and w)"
  [[ $(val $n -2) == bT:5:init ]] || fail "node $n holds key -2 as '$(val $n -2)', expected bT:5:init (b's v, a's n from the tombstone)"
done
mesh_compare a b public.items || fail "a and b differ"
mesh_compare a c public.items || fail "a and c differ"
mesh_compare b c public.items >/dev/null || fail "b and c differ"
rows=$(node_psql c -c "SELECT count(*) FROM items")
((rows > 100)) || fail "c holds only $rows rows"
for n in a b c; do
  dup=$(node_psql $n -c "SELECT count(*) FROM (SELECT 1 FROM _odsync_conflicts GROUP BY remote_origin, remote_lsn, table_name, key, kind HAVING count(*) > 1) x")
  log "node $n: $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts") conflicts"
  [[ $dup == 0 ]] || fail "node $n logged $dup conflicts twice (a transaction applied twice?)"
done

log "concurrent disjoint-column updates at a, b and c on copied rows"
before=$(node_psql c -c "SELECT string_agg(id || ':' || n, ' ' ORDER BY id) FROM items WHERE id BETWEEN 2001 AND 2040")
odsync_stop
node_psql a -c "UPDATE items SET v = 'A' WHERE id BETWEEN 2001 AND 2040" >/dev/null
node_psql b -c "UPDATE items SET n = n + 1000 WHERE id BETWEEN 2001 AND 2040" >/dev/null
node_psql c -c "UPDATE items SET w = 'C' WHERE id BETWEEN 2001 AND 2040" >/dev/null
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
quiesce
want=$(node_psql c -c "SELECT string_agg(id || ':A:' || (n::int) || ':C', ' ' ORDER BY id) FROM (SELECT id, n FROM unnest(string_to_array('$before', ' ')) e, LATERAL (SELECT split_part(e, ':', 1)::int AS id, split_part(e, ':', 2)::int + 1000 AS n) x) y")
for n in a b c; do
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || v || ':' || n || ':' || w, ' ' ORDER BY id) FROM items WHERE id BETWEEN 2001 AND 2040")
  [[ $got == "$want" ]] || fail "node $n: the disjoint updates did not all survive: got '$got', expected '$want'"
done
mesh_compare a b public.items >/dev/null || fail "a and b differ after the disjoint updates"
mesh_compare a c public.items || fail "a and c differ after the disjoint updates"
merged=$(node_psql c -c "SELECT count(*) FROM _odsync_conflicts WHERE key IN (SELECT g::text FROM generate_series(2001, 2040) g) AND table_name LIKE '%items' AND policy = 'column_merge'")
((merged >= 40)) || fail "c logged $merged column_merge conflicts for the disjoint updates, expected at least 40"
odsync_stop
log "PASS"
