#!/usr/bin/env bash
# mesh_join.sh — adding node c to a running mesh a <-> b (`join_from: a`, `odsync mesh join`).
#
# odsync runs the config with c already in mesh.nodes (join_from: a): the pipelines into c wait
# (the join gate). Writers run at a and b (pgbench, rate-limited, in rounds until stopped: upserts,
# updates, deletes and two-row updates on 1500 overlapping keys) during the whole join and for
# AFTER_JOIN_WRITES rows after it.
# Asserts:
#  - before the join, c's pipelines do not write to c (c stays empty, no checkpoint at c);
#  - a first `odsync mesh join` slowed by ODSYNC_MESH_JOIN_TEST_PAUSE_MS is SIGKILLed in the middle
#    of its copy (after it reported copying items): c holds no row and is not marked joined;
#  - the second join meets a deadlock of its seed's snapshot reads with an admin's session (LOCK TABLE
#    on a, in the other order), rolls its copy back and copies again;
#  - the second join completes while the writers still run (pgbench still running when it returns)
#    and the rows written at a and b grew during it;
#  - after the writers stop and the mesh quiesces (markers both ways on every pair), a, b and c are
#    identical row for row (od_compare_pg pairwise), each key's version (author node, author's commit
#    time) is the same on all three nodes, and no conflict was logged twice at any node;
#  - writes at c (insert, update, delete) reach a and b; all three identical again;
#  - then, with nothing written, a fourth node d joins from b (two other nodes, idle: the join's own
#    message moves b's checkpoints); d's update and a's insert reach every node, the four are
#    identical, d's row versions equal b's, and d's write is no conflict anywhere.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

RATE=${MESH_JOIN_RATE:-60}                            # transactions/s per node, 2 clients each
AFTER_JOIN_WRITES=${MESH_JOIN_AFTER_WRITES:-2000}    # rows written at a and b after join 2, then stop
test_init mesh_join
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker"
sed -i "s|    - { name: c, dsn: \"\(.*\)\" }|    - { name: c, dsn: \"\1\", join_from: a }|" "$CONFIG"
grep -q "join_from: a" "$CONFIG" || fail "config without join_from: $(cat "$CONFIG")"
odsync_start "$CONFIG" "$LOG"
MESH_NODES=(a b) # c has not joined yet
mesh_wait_active 120
node_psql a -c "INSERT INTO items SELECT g, 'init', 0 FROM generate_series(1, 1500) g"
mesh_wait_marker 120 a b
node_psql b -c "DELETE FROM items WHERE id % 7 = 0"
mesh_wait_marker 120 b a
MESH_NODES=(a b c)

log "the gate: c's pipelines wait for the join"
wait_for "grep -q 'mesh node c has not joined the mesh yet' '$LOG'" 60 || fail "no pipeline into c reported the gate"
[[ $(node_psql c -c "SELECT count(*) FROM items") == 0 ]] || fail "c received rows before joining"
[[ $(node_psql c -c "SELECT count(*) FROM pg_tables WHERE tablename = '_odsync_checkpoint'") == 0 ||
   $(node_psql c -c "SELECT count(*) FROM _odsync_checkpoint WHERE pipeline LIKE '%_to_c'") == 0 ]] ||
  fail "c has a checkpoint before joining"

cat >"$TEST_TMP/load.sql" <<'SQL'
\set k random(1, 1500)
\set k2 random(1, 1500)
\set op random(1, 10)
\if :op <= 3
INSERT INTO items VALUES (:k, 'i' || :client_id || '-' || md5(random()::text), 1)
  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = items.n + 1;
\elif :op <= 7
UPDATE items SET v = 'u' || :client_id || '-' || md5(random()::text), n = n + 1 WHERE id = :k;
\elif :op <= 8
BEGIN;
UPDATE items SET n = n + 1 WHERE id = :k;
UPDATE items SET v = 'p' || :client_id WHERE id = :k2;
COMMIT;
\else
DELETE FROM items WHERE id = :k;
\endif
SQL
mesh_load_start "$TEST_TMP/load.sql" "$RATE" a b
JOIN_PID=
test_extra_cleanup() {
  local p
  mesh_load_kill
  for p in $JOIN_PID; do kill "$p" 2>/dev/null; done
  return 0
}
writes() { # rows written at a and b so far
  local n t=0
  for n in a b; do
    t=$((t + $(node_psql $n -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE relname = 'items'")))
  done
  echo $t
}
w0=$(writes)
wait_for "(( \$(writes) > $w0 + 200 ))" 120 || fail "the writers did not start"

log "join 1: slowed down, SIGKILLed in the middle of its copy"
ODSYNC_MESH_JOIN_TEST_PAUSE_MS=4000 "$ODSYNC_BIN" mesh join -c "$CONFIG" c >"$TEST_TMP/join1.log" 2>&1 &
JOIN_PID=$!
wait_for "grep -q 'table public.items:' '$TEST_TMP/join1.log' || ! kill -0 $JOIN_PID" 300
grep -q 'table public.items:' "$TEST_TMP/join1.log" || fail "join 1 did not reach its copy: $(cat "$TEST_TMP/join1.log")"
kill -KILL $JOIN_PID
wait $JOIN_PID 2>/dev/null || true
JOIN_PID=
cat "$TEST_TMP/join1.log"
[[ $(node_psql c -c "SELECT count(*) FROM items") == 0 ]] || fail "a killed join left rows at c"
[[ $(node_psql c -c "SELECT count(*) FROM pg_tables WHERE tablename = '_odsync_join'") == 0 ||
   $(node_psql c -c "SELECT count(*) FROM _odsync_join") == 0 ]] || fail "a killed join left c marked joined"
[[ $(node_psql c -c "SELECT count(*) FROM _odsync_versions") == 0 ]] || fail "a killed join left versions at c"
mesh_loading || fail "the writers stopped before join 2"

log "join 2, writers running; an admin's session on a deadlocks with the seed's snapshot reads"
# The locker waits for the join's copy on a, takes _odsync_unique_left (read by the seed after the
# tables), waits until the seed's session queues for it, then asks for items, which the seed has
# read: a deadlock, detected by the seed's session (deadlock_timeout 1 s there, 60 s here), whose
# copy fails with 40P01; the join must roll back and copy again.
node_psql a >"$TEST_TMP/locker.log" 2>&1 <<'SQL' &
SET deadlock_timeout = '60s';
BEGIN;
DO $$
DECLARE i int := 0;
BEGIN
  WHILE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'odsync_mesh_join' AND query LIKE 'COPY %') LOOP
    i := i + 1; IF i > 3000 THEN RAISE EXCEPTION 'locker: the join never copied'; END IF;
    PERFORM pg_sleep(0.05);
    PERFORM pg_stat_clear_snapshot(); -- pg_stat_activity is read once per transaction otherwise
  END LOOP;
  LOCK TABLE public._odsync_unique_left IN ACCESS EXCLUSIVE MODE;
  i := 0;
  WHILE NOT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity s USING (pid) WHERE s.application_name = 'odsync_mesh_join'
                    AND l.relation = 'public._odsync_unique_left'::regclass AND NOT l.granted) LOOP
    i := i + 1; IF i > 1200 THEN RAISE EXCEPTION 'locker: the seed never waited for _odsync_unique_left'; END IF;
    PERFORM pg_sleep(0.05);
    PERFORM pg_stat_clear_snapshot();
  END LOOP;
  LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE;
  RAISE NOTICE 'locker: got both locks';
END $$;
COMMIT;
SQL
LOCKER_PID=$!
w1=$(writes)
ODSYNC_MESH_JOIN_TEST_PAUSE_MS=1000 "$ODSYNC_BIN" mesh join -c "$CONFIG" c >"$TEST_TMP/join2.log" 2>&1 ||
  fail "join 2 failed: $(cat "$TEST_TMP/join2.log"; cat "$TEST_TMP/locker.log")"
cat "$TEST_TMP/join2.log"
wait $LOCKER_PID || fail "the locker failed: $(cat "$TEST_TMP/locker.log")"
grep -q "locker: got both locks" "$TEST_TMP/locker.log" || fail "the locker did not get its locks: $(cat "$TEST_TMP/locker.log")"
grep -q "deadlock detected" "$TEST_TMP/join2.log" || fail "join 2 met no deadlock (the test did not test the retry)"
grep -q "copying again" "$TEST_TMP/join2.log" || fail "join 2 did not report copying again"
w2=$(writes)
mesh_loading || fail "the writers stopped before join 2 ended: the join did not run under load"
((w2 > w1)) || fail "no rows were written at a or b during join 2"
log "rows written at a and b during join 2: $((w2 - w1))"
grep -q "node c joined the mesh from a" "$TEST_TMP/join2.log" || fail "join 2 did not report the join"
[[ $(node_psql c -c "SELECT state FROM _odsync_join WHERE node = 'c'") == done ]] || fail "c not marked joined"
"$ODSYNC_BIN" mesh join -c "$CONFIG" c 2>&1 | grep -q "already joined" || fail "a third join did not see c joined"
# The join made the slots of the pipelines into and out of c with the mesh's output plugin (auto: the
# test servers can load odsync_pgoutput), as the sources would have.
for n in a b c; do
  plugins=$(node_psql $n -c "SELECT string_agg(DISTINCT plugin, ',') FROM pg_replication_slots WHERE slot_name LIKE '%\_c' OR slot_name LIKE '%c\_to\_%'")
  [[ $plugins == odsync_pgoutput ]] || fail "node $n: the join's slots use '$plugins', expected odsync_pgoutput"
done

# The writers go on for a while with c in the mesh (its streams carry their writes), then stop.
w3=$(writes)
wait_for "(( \$(writes) > $w3 + $AFTER_JOIN_WRITES ))" 300 || fail "the writers stalled after the join"
mesh_load_stop
log "load done; waiting for the mesh to quiesce"
mesh_wait_active 180
for round in 1 2; do
  mesh_wait_marker 300 a b; mesh_wait_marker 300 b c; mesh_wait_marker 300 c a
  mesh_wait_marker 300 a c; mesh_wait_marker 300 c b; mesh_wait_marker 300 b a
done
mesh_compare a b public.items >/dev/null || fail "a and b differ"
mesh_compare a c public.items || fail "a and c differ"
mesh_compare b c public.items >/dev/null || fail "b and c differ"
rows=$(node_psql c -c "SELECT count(*) FROM items")
((rows > 100)) || fail "c holds only $rows rows"
# Each key's version: the author and the author's commit time, the same on every node.
versions() {
  node_psql "$1" -c "SELECT string_agg(k || '=' || node || '/' || ts, ' ' ORDER BY k) FROM (SELECT i.id AS k,
    CASE WHEN c.roident <> 0 THEN v.node ELSE '$1' END AS node,
    CASE WHEN c.roident <> 0 THEN v.ts ELSE (extract(epoch FROM c.timestamp) * 1000000)::int8 END AS ts
    FROM items i CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(i.xmin) c
    LEFT JOIN _odsync_versions v ON v.tbl = 'public.items' AND v.key = i.id::text) x"
}
va=$(versions a); vb=$(versions b); vc=$(versions c)
[[ -n $va && $va == "$vb" ]] || fail "the row versions of a and b differ"
if [[ $va != "$vc" ]]; then
  diff <(tr ' ' '\n' <<<"$va") <(tr ' ' '\n' <<<"$vc") | head -20 >&2
  fail "the row versions of a and c differ"
fi
for n in a b c; do
  dup=$(node_psql $n -c "SELECT count(*) FROM (SELECT 1 FROM _odsync_conflicts GROUP BY remote_origin, remote_lsn, table_name, key, kind HAVING count(*) > 1) x")
  log "node $n: $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts") conflicts"
  [[ $dup == 0 ]] || fail "node $n logged $dup conflicts twice (a transaction applied twice?)"
done

log "writes at c reach a and b"
node_psql c -c "INSERT INTO items VALUES (100001, 'from-c', 7)"
node_psql c -c "UPDATE items SET v = 'c-upd' WHERE id = (SELECT min(id) FROM items WHERE id < 100000)"
node_psql c -c "DELETE FROM items WHERE id = (SELECT max(id) FROM items WHERE id < 100000)"
mesh_wait_marker 120 c a
mesh_wait_marker 120 c b
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 100001") == from-c ]] || fail "c's insert did not reach a"
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE v = 'c-upd'") == 1 ]] || fail "c's update did not reach b"
mesh_compare a c public.items || fail "a and c differ after c's writes"
mesh_compare b c public.items || fail "b and c differ after c's writes"
for n in a b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE remote_origin IN ('c', 'odsync_c') OR local_origin IN ('c', 'odsync_c')") == 0 ]] ||
    fail "node $n logged a conflict for c's writes made after the load"
done

log "an idle mesh: d joins from b (a and c are the other nodes; c keeps its join_from)"
mesh_start_nodes d
node_psql d <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
odsync_stop
echo "    - { name: d, dsn: \"${NODE_DSN[d]}\", join_from: b }" >>"$CONFIG"
odsync_start "$CONFIG" "$LOG"
MESH_NODES=(a b c)
mesh_wait_active 120
mesh_wait_marker 120 a b; mesh_wait_marker 120 c b # b has applied everything; then nothing is written
"$ODSYNC_BIN" mesh join -c "$CONFIG" d >"$TEST_TMP/join3.log" 2>&1 || fail "join of d failed: $(cat "$TEST_TMP/join3.log")"
cat "$TEST_TMP/join3.log"
MESH_NODES=(a b c d)
mesh_wait_active 120
node_psql d -c "UPDATE items SET v = 'd-upd' WHERE id = (SELECT min(id) FROM items WHERE v <> 'c-upd')"
node_psql a -c "INSERT INTO items VALUES (100002, 'from-a', 1)"
for n in a b c; do mesh_wait_marker 120 d $n; mesh_wait_marker 120 $n d; done
for n in b c d; do mesh_compare a $n public.items >/dev/null || fail "a and $n differ after d joined"; done
[[ $(node_psql c -c "SELECT count(*) FROM items WHERE v = 'd-upd' OR id = 100002") == 2 ]] ||
  fail "d's update or a's insert did not reach c"
vd=$(versions d | tr ' ' '\n' | grep -v '^100002=' | grep -v "=d/" | tr '\n' ' ')
vb=$(versions b | tr ' ' '\n' | grep -v '^100002=' | grep -v "=d/" | tr '\n' ' ')
[[ -n $vd && $vd == "$vb" ]] || fail "the row versions of b and d differ"
for n in a b c d; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE remote_origin IN ('d', 'odsync_d') OR local_origin IN ('d', 'odsync_d')") == 0 ]] ||
    fail "node $n logged a conflict for d's write"
done
odsync_stop
log "PASS"
