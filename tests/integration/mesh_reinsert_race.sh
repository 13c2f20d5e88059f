#!/usr/bin/env bash
# mesh_reinsert_race.sh — an application re-inserts a deleted key at b while the mesh sink at b
# decides and applies a's concurrent insert of the same key (issue #14, the divergence of
# mesh_converge.sh; docs/MULTI_MASTER.md, "The race of a re-insert").
#
# The interleaving, made deterministic: key 1 is deleted (a tombstone on both nodes); at b an open
# transaction inserts key 1 ('B') and keeps its transaction open until some other session waits
# for it (pg_blocking_pids, polled up to 120 s: it fails if nobody ever waits); then a inserts key 1
# ('A'), and the sink a -> b reads its versions and applies. Before the fix, the sink's read saw
# only the tombstone (b's insert not committed), decided "seen", and its upsert waited for b's
# insert and then overwrote it: b ended with 'A', while a judged b's later insert concurrent with
# 'A' and kept 'B'. With the fix b's insert holds its key's stripe of the key lock (the
# _odsync_keylock trigger, shared), which the sink's lock statement takes exclusively for every key
# without a live row before its fresh read: the sink waits for the insert and judges the pair.
# Asserts: the sink did wait for b's insert; both nodes end identical (od_compare_pg) with the
# later insert 'B'; one insert_insert conflict at each node with the winner b (after the
# setup's own entries).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_reinsert_race
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO items VALUES (1, 'init', 0), (2, 'init', 0);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
# the tombstones are inspected: no clean-up (MESH_GC_INTERVAL does not apply)
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker" "  gc_interval_s: 0"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120

node_psql a -c "DELETE FROM items WHERE id = 1"
mesh_wait_marker 120 a b
[[ $(node_psql b -c "SELECT count(*) FROM items WHERE id = 1") == 0 ]] || fail "a's delete did not reach b"
[[ $(node_psql b -c "SELECT count(*) FROM _odsync_tombstones WHERE tbl = 'public.items' AND key = '1'") == 1 ]] ||
  fail "b has no tombstone for key 1"

# (the initial rows were written before the mesh started: a's delete of one may be logged as a conflict)
declare -A BEFORE
for n in a b; do BEFORE[$n]=$(node_psql $n -c "SELECT coalesce(max(id), 0) FROM _odsync_conflicts"); done
log "b: an open transaction re-inserts key 1 and waits until another session waits for it"
WAITED=$TEST_TMP/waited.out
node_psql b >"$WAITED" 2>&1 <<'SQL' &
BEGIN;
INSERT INTO items VALUES (1, 'B', 0);
DO $$
BEGIN
  FOR i IN 1..1200 LOOP
    IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))) THEN
      RAISE NOTICE 'reinsert_race: waited on';
      RETURN;
    END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RAISE EXCEPTION 'reinsert_race: nobody waited for the insert in 120 s';
END $$;
COMMIT;
SQL
BPID=$!
test_extra_cleanup() { [[ -n "${BPID:-}" ]] && kill "$BPID" 2>/dev/null; return 0; }
deadline=$(($(date +%s) + 60))
until [[ $(node_psql b -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%reinsert_race: nobody%' AND state = 'active' AND pid <> pg_backend_pid()") == 1 ]]; do
  (($(date +%s) < deadline)) || fail "b's inserting session did not start: $(cat "$WAITED")"
  sleep 0.1
done
node_psql a -c "INSERT INTO items VALUES (1, 'A', 0)"
wait "$BPID" || fail "b's inserting session failed: $(cat "$WAITED")"
BPID=
grep -q "reinsert_race: waited on" "$WAITED" || fail "the sink never waited for b's insert: $(cat "$WAITED")"

for round in 1 2; do mesh_wait_marker 120 a b; mesh_wait_marker 120 b a; done
for n in a b; do log "node $n: $(node_psql $n -c "SELECT string_agg(id || '=' || v, ' ' ORDER BY id) FROM items")"; done
mesh_compare a b public.items || fail "a and b differ after the re-insert race"
for n in a b; do
  [[ $(node_psql $n -c "SELECT v FROM items WHERE id = 1") == B ]] || fail "node $n: key 1 is not b's later insert 'B'"
  got=$(node_psql $n -c "SELECT string_agg(kind || '->' || winner, ' ') FROM _odsync_conflicts WHERE key = '1' AND id > ${BEFORE[$n]}")
  [[ $got == "insert_insert->b" ]] || fail "node $n: conflict log of key 1 is '$got', expected one insert_insert won by b"
done
odsync_stop
log "ok"
