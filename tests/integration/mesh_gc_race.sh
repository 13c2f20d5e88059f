#!/usr/bin/env bash
# mesh_gc_race.sh — the mesh clean-up against a sink that commits in the middle of its statement
# (docs/MULTI_MASTER.md, "Tombstone clean-up", concurrency with the sinks).
#
# 2 nodes a, b; mesh.gc_interval_s: 1; the test hook ODSYNC_MESH_GC_TEST_PAUSE_MS makes the clean-up
# wait 15 s per candidate tombstone between its statement's snapshot and its lock.
#  1. a deletes key 1: b's sink writes the tombstone and the key's version (author a); b's clean-up
#     takes that tombstone as a candidate and pauses (seen in pg_stat_activity).
#  2. a re-inserts key 1 while b's clean-up pauses: b's sink locks the tombstone (free: the clean-up
#     has not locked it yet), inserts the row, rewrites the key's version (author a, a's commit
#     time) and commits before the clean-up wakes.
#  3. When the clean-up is done (the tombstone is gone), b's row 1 still has its version: a's commit
#     time of the re-insert. Before the fix the clean-up locked the tombstone, re-checked only that
#     row and deleted the versions row the sink had just written (the key had no row in the
#     statement's snapshot): b held a row carrying a replication origin and no version (seen first
#     as an intermittent failure of mesh_join; this test failed against that code).
#  4. Key 2, the same delete with no re-insert: its tombstone and version go (the clean-up still
#     cleans up), and a and b are equal row for row.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

PAUSE_MS=15000
test_init mesh_gc_race
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
INSERT INTO items VALUES (1, 'init'), (2, 'init');
SQL
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker" "  gc_interval_s: 1"
ODSYNC_MESH_GC_TEST_PAUSE_MS=$PAUSE_MS odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120

gc_pausing_at_b() {
  [[ $(node_psql b -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'odsync%gc' AND
       wait_event = 'PgSleep'") == 1 ]]
}
version_at_b() { node_psql b -c "SELECT node || '/' || ts FROM _odsync_versions WHERE tbl = 'public.items' AND key = '$1'"; }
commit_time_at_a() {
  node_psql a -c "SELECT 'a/' || (extract(epoch FROM c.timestamp) * 1000000)::int8 FROM items i CROSS JOIN LATERAL
    pg_xact_commit_timestamp_origin(i.xmin) c WHERE i.id = $1 AND c.roident = 0"
}

log "a deletes key 1; b's clean-up takes its tombstone and pauses"
node_psql a -c "DELETE FROM items WHERE id = 1"
wait_for "[[ \$(node_psql b -c \"SELECT count(*) FROM items WHERE id = 1\") == 0 ]]" 60 || fail "b did not apply the delete"
[[ -n $(version_at_b 1) ]] || fail "b has no version for the deleted key 1"
wait_for gc_pausing_at_b 60 || fail "b's clean-up did not pause on a candidate: $(tail -n 20 "$LOG")"
[[ $(node_psql b -c "SELECT count(*) FROM _odsync_tombstones WHERE tbl = 'public.items' AND key = '1'") == 1 ]] ||
  fail "b's tombstone of key 1 is gone before the clean-up's pause"

log "a re-inserts key 1 while b's clean-up pauses"
node_psql a -c "INSERT INTO items VALUES (1, 're-inserted')"
want=$(commit_time_at_a 1)
[[ -n $want ]] || fail "a's row 1 has no local commit time"
wait_for "[[ \$(node_psql b -c \"SELECT v FROM items WHERE id = 1\") == re-inserted ]]" 10 ||
  fail "b did not apply the re-insert within 10 s"
[[ $(version_at_b 1) == "$want" ]] || fail "b's version of key 1 after the re-insert: '$(version_at_b 1)', expected $want"
gc_pausing_at_b || fail "b's clean-up finished its pause before b applied the re-insert: the test did not race (raise PAUSE_MS)"

log "the clean-up completes: the tombstone goes, the re-inserted key keeps its version"
wait_for "[[ \$(node_psql b -c \"SELECT count(*) FROM _odsync_tombstones WHERE key = '1'\") == 0 ]]" 120 ||
  fail "b's clean-up did not remove the tombstone of key 1"
[[ $(version_at_b 1) == "$want" ]] ||
  fail "b's version of key 1 after the clean-up: '$(version_at_b 1)', expected $want (the clean-up deleted the version the sink wrote)"
[[ $(node_psql b -c "SELECT count(*) FROM items i CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(i.xmin) c
      WHERE c.roident <> 0 AND NOT EXISTS (SELECT 1 FROM _odsync_versions v WHERE v.tbl = 'public.items' AND
      v.key = i.id::text)") == 0 ]] || fail "b holds rows written by its sink without a version"

log "key 2: deleted, not re-inserted: tombstone and version go"
node_psql a -c "DELETE FROM items WHERE id = 2"
wait_for "[[ \$(node_psql b -c \"SELECT count(*) FROM items WHERE id = 2\") == 0 ]]" 60 || fail "b did not apply the delete of 2"
wait_for "[[ \$(node_psql b -c \"SELECT count(*) FROM _odsync_tombstones WHERE key = '2'\") == 0 && -z \$(version_at_b 2) ]]" 120 ||
  fail "b's clean-up kept key 2's tombstone or version: tombstones $(node_psql b -c "SELECT count(*) FROM _odsync_tombstones WHERE key = '2'"), version '$(version_at_b 2)'"
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_compare a b public.items || fail "a and b differ"
odsync_stop
log "PASS"
