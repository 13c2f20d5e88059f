#!/usr/bin/env bash
# mesh_policies.sh — a policy per table and column_merge on a 2-node mesh (a <-> b).
#
# Asserts:
#  - config validation: a policy for a table that is not in mesh.tables, an unknown policy, a
#    priority order naming an unknown node, a counter that is not an integer column (on a
#    column_merge table) are refused with messages naming the problem; `odsync check` refuses a column_merge table without REPLICA
#    IDENTITY FULL;
#  - per-table policies: the same concurrent update/update pair (a first, b later) on two tables
#    goes to b on the last_writer_wins table and to a on the table with `priority: [a, b]`;
#  - column_merge (fallback last_writer_wins) on concurrent updates made while odsync is stopped:
#    disjoint columns both survive (row 1), an overlapping column goes to the later writer and the
#    disjoint ones survive (row 2), two successive transactions at b against one at a all survive
#    (row 4), an update against a later concurrent delete follows the fallback (row 5 deleted);
#  - the conflict log of each node holds exactly the expected entries (kind, key, policy, winner;
#    column_merge entries name the columns taken from each side);
#  - afterwards both nodes are identical row for row (od_compare_pg), and a later write is no
#    conflict (the merged rows' versions are consistent);
#  - a burst of 60 single-column updates at each node on 4 rows while odsync is stopped (a writes
#    x and z, b writes y and z, later): every row ends with a's last x, b's last y and the later
#    writer's z on both nodes, with column_merge conflicts logged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_policies
dump_merge() { # what the nodes hold of merge_t: rows, versions, conflicts
  local n
  for n in a b; do
    log "node $n: $(node_psql $n -c "SELECT string_agg(concat_ws(':', id, x, y, z, n), ' ' ORDER BY id) FROM merge_t")"
    log "  versions: $(node_psql $n -c "SELECT string_agg(key || '=' || node || '/' || ts || '/' || coalesce(also, '-'), ' ') FROM _odsync_versions WHERE tbl = 'public.merge_t'")"
    log "  conflicts: $(node_psql $n -c "SELECT string_agg(key || ' ' || kind || ' ' || policy || ' ' || winner || ' ' || coalesce(merged::text, '-') || ' remote ' || (extract(epoch FROM remote_commit_ts) * 1000000)::int8, '; ' ORDER BY id) FROM _odsync_conflicts WHERE table_name = 'public.merge_t'")"
  done
}
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE lww_t (id int PRIMARY KEY, v text);
CREATE TABLE prio_t (id int PRIMARY KEY, v text);
CREATE TABLE merge_t (id int PRIMARY KEY, x text, y text, z text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
TABLES="public.lww_t, public.prio_t, public.merge_t, public.mesh_marker"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

log "config validation"
bad() { # NAME EXTRA-MESH-LINES EXPECTED-MESSAGE-PART
  mesh_config "$TEST_TMP/$1.yaml" last_writer_wins "$TABLES" "$2"
  local rc=0 out
  out=$("$ODSYNC_BIN" check -c "$TEST_TMP/$1.yaml" 2>&1) || rc=$?
  ((rc != 0)) || fail "config $1 was accepted: $out"
  grep -qF -- "$3" <<<"$out" || fail "config $1: expected a message containing '$3', got: $out"
}
bad unknown_table '  policies: { public.nope: priority }' "mesh.policies.public.nope: 'public.nope' is not one of mesh.tables"
bad unknown_policy '  policies: { public.prio_t: first_wins }' "first_wins"
bad unknown_node '  policies: { public.prio_t: { policy: priority, priority: [a, zz] } }' \
  "mesh.policies.public.prio_t.priority: 'zz' is not a node of the mesh"
bad no_order '  policies: { public.prio_t: priority }' "policy priority needs a node order"
bad bad_fallback '  policies: { public.merge_t: { policy: column_merge, fallback: column_merge } }' "fallback"
# counters on a column_merge table are accepted (mesh_colmerge_counter.sh); a counter that is not an
# integer column is still refused, on a column_merge table too
bad merge_counter $'  counters: [public.merge_t.x]\n  policies: { public.merge_t: column_merge }' \
  "mesh node a: counter public.merge_t.x: expected an integer column, found text"

mesh_config "$CONFIG" last_writer_wins "$TABLES" \
  '  policies: { public.prio_t: { policy: priority, priority: [a, b] }, public.merge_t: { policy: column_merge, fallback: last_writer_wins } }'
log "odsync check refuses column_merge without REPLICA IDENTITY FULL"
rc=0; out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || rc=$?
[[ $rc == 1 ]] || fail "odsync check exited $rc with merge_t lacking REPLICA IDENTITY FULL: $out"
grep -q 'mesh node a: table public.merge_t has policy column_merge, which needs REPLICA IDENTITY FULL' <<<"$out" ||
  fail "odsync check did not name the missing REPLICA IDENTITY FULL: $out"
for n in a b; do node_psql $n -c "ALTER TABLE merge_t REPLICA IDENTITY FULL"; done
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed on a good mesh: $out"

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
node_psql a <<'SQL'
INSERT INTO lww_t VALUES (1, 'v0');
INSERT INTO prio_t VALUES (1, 'v0');
INSERT INTO merge_t SELECT g, 'x0', 'y0', 'z0', 0 FROM generate_series(1, 5) g;
SQL
mesh_wait_marker 120 a b
mesh_wait_equal 60 public.lww_t public.prio_t public.merge_t

log "concurrent writes at a (first) and b (later) while odsync is stopped"
odsync_stop
node_psql a <<'SQL'
UPDATE lww_t SET v = 'a' WHERE id = 1;
UPDATE prio_t SET v = 'a' WHERE id = 1;
UPDATE merge_t SET x = 'a1' WHERE id = 1;
UPDATE merge_t SET x = 'a2', z = 'az2' WHERE id = 2;
UPDATE merge_t SET x = 'a4' WHERE id = 4;
UPDATE merge_t SET y = 'a5' WHERE id = 5;
SQL
node_psql b <<'SQL'
UPDATE lww_t SET v = 'b' WHERE id = 1;
UPDATE prio_t SET v = 'b' WHERE id = 1;
UPDATE merge_t SET y = 'b1' WHERE id = 1;
UPDATE merge_t SET y = 'b2', z = 'bz2' WHERE id = 2;
UPDATE merge_t SET y = 'b4' WHERE id = 4;
UPDATE merge_t SET z = 'b4z' WHERE id = 4;
DELETE FROM merge_t WHERE id = 5;
SQL
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 90 public.lww_t public.prio_t public.merge_t ) || { dump_merge; fail "nodes differ"; }

for n in a b; do
  [[ $(node_psql $n -c "SELECT v FROM lww_t WHERE id = 1") == b ]] || fail "node $n: last writer (b) did not win lww_t"
  [[ $(node_psql $n -c "SELECT v FROM prio_t WHERE id = 1") == a ]] || fail "node $n: priority node a did not win prio_t"
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, x, y, z), ' ' ORDER BY id) FROM merge_t")
  want="1:a1:b1:z0 2:a2:b2:bz2 3:x0:y0:z0 4:a4:b4:b4z"
  [[ $got == "$want" ]] || fail "node $n: merged rows '$got', expected '$want'"
done

log "conflict logs"
want_a="lww_t:update_update:1:last_writer_wins:b merge_t:update_delete:5:last_writer_wins:b merge_t:update_update:1:column_merge:merged merge_t:update_update:2:column_merge:b merge_t:update_update:4:column_merge:merged merge_t:update_update:4:column_merge:merged prio_t:update_update:1:priority:a"
want_b="lww_t:update_update:1:last_writer_wins:b merge_t:update_delete:5:last_writer_wins:b merge_t:update_update:1:column_merge:merged merge_t:update_update:2:column_merge:b merge_t:update_update:4:column_merge:merged prio_t:update_update:1:priority:a"
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', split_part(table_name, '.', 2), kind, key, policy, winner), ' ' ORDER BY table_name, kind, key, id) FROM _odsync_conflicts")
  want=want_$n
  [[ $got == "${!want}" ]] || fail "node $n conflict log: '$got' (expected '${!want}')"
done
# which columns came from where: row 1 at a took y from b and kept its own x; row 2 at b kept its
# own z (b wrote later) and y, took x from a
[[ $(node_psql a -c "SELECT merged::text FROM _odsync_conflicts WHERE table_name = 'public.merge_t' AND key = '1'") == '{"both": [], "local": ["x"], "remote": ["y"]}' ]] ||
  fail "node a: merged columns of row 1: $(node_psql a -c "SELECT merged FROM _odsync_conflicts WHERE key = '1'")"
[[ $(node_psql b -c "SELECT merged::text FROM _odsync_conflicts WHERE table_name = 'public.merge_t' AND key = '2'") == '{"both": ["z"], "local": ["y"], "remote": ["x"]}' ]] ||
  fail "node b: merged columns of row 2: $(node_psql b -c "SELECT merged FROM _odsync_conflicts WHERE key = '2'")"

log "later writes of merged rows are no conflict"
node_psql a -c "UPDATE merge_t SET n = 7 WHERE id = 1"
node_psql b -c "UPDATE merge_t SET n = 8 WHERE id = 2"
node_psql b -c "UPDATE merge_t SET x = 'b4x' WHERE id = 4"
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.merge_t
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, x, y, z, n), ' ' ORDER BY id) FROM merge_t")
  [[ $got == "1:a1:b1:z0:7 2:a2:b2:bz2:8 3:x0:y0:z0:0 4:b4x:b4:b4z:0" ]] || fail "node $n after later writes: $got"
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts")
  want=want_$n
  [[ $c == $(wc -w <<<"${!want}") ]] || fail "node $n logged new conflicts for causally later writes: $(node_psql $n -c 'TABLE _odsync_conflicts')"
done
log "column_merge under a burst: 60 single-column updates at each node on 4 rows while odsync is stopped"
# a writes columns x and z, b writes y and z (b after a): every row must end with a's last x, b's
# last y and b's last z (z: both wrote it, the later writer wins) on both nodes.
odsync_stop
declare -A last
for n in a b; do
  cols=(x z); [[ $n == b ]] && cols=(y z)
  for i in $(seq 1 60); do
    col=${cols[$((RANDOM % 2))]} row=$((RANDOM % 4 + 1))
    last[$row$col]="$n-$i"
    echo "UPDATE merge_t SET $col = '$n-$i' WHERE id = $row;"
  done | node_psql $n >/dev/null
done
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 90 public.merge_t ) || { dump_merge; fail "nodes differ after the burst"; }
merged=$(node_psql a -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'column_merge'")
log "burst: $merged column_merge conflicts at a in all"
((merged > $(grep -o column_merge <<<"$want_a" | wc -l))) || fail "the burst caused no column_merge conflict at a"
for n in a b; do
  for row in 1 2 3 4; do
    got=$(node_psql $n -c "SELECT concat_ws(':', x, y, z) FROM merge_t WHERE id = $row")
    IFS=: read -r gx gy gz <<<"$got"
    [[ -z ${last[${row}x]:-} || $gx == "${last[${row}x]}" ]] || fail "node $n row $row: x is $gx, a's last write was ${last[${row}x]}"
    [[ -z ${last[${row}y]:-} || $gy == "${last[${row}y]}" ]] || fail "node $n row $row: y is $gy, b's last write was ${last[${row}y]}"
    [[ -z ${last[${row}z]:-} || $gz == "${last[${row}z]}" ]] || fail "node $n row $row: z is $gz, the last write was ${last[${row}z]}"
  done
done
odsync_stop
for t in public.lww_t public.prio_t public.merge_t public.mesh_marker; do
  mesh_compare a b $t || fail "nodes differ on $t"
done
log "ok"
