#!/usr/bin/env bash
# mesh_unique.sh — clashes on a non-primary unique index in a 2-node mesh (a <-> b), and the
# never-existing-key race.
#
# Asserts:
#  - two tables with a primary key and a UNIQUE email, one under last_writer_wins (users_lww),
#    one under priority [a, b] (users_prio);
#  - writes made while odsync is stopped (a first, b later): an insert/insert clash of two keys
#    on one email, two updates moving two rows onto one email, an insert against an update moving
#    onto its email; afterwards the pipeline runs on, both nodes hold exactly the expected rows (the
#    later writer's row on users_lww, a's row on users_prio; the loser's row is gone on both), each
#    clash is logged as kind `unique` with the index name, the policy and the same winner on both
#    nodes, and a later write of a survivor or of a loser's key is no conflict;
#  - a live load: both nodes insert rows with their own keys on 25 shared emails, move earlier rows
#    of their own onto other shared emails and delete earlier rows of their own (many clashes, and
#    winners that leave their value before the loser arrives: _odsync_unique_left; odsync running);
#    after quiescing the pipeline is still running, both nodes are identical row for row
#    (od_compare_pg), and both nodes logged unique conflicts (none twice);
#  - the never-existing-key race, made real by ODSYNC_MESH_TEST_PAUSE_MS (the sink waits between
#    its versions read and its apply): a key b inserts is inserted and deleted at a inside that
#    window; with the key-lock trigger the application's insert waits for the sink and both nodes
#    end identical; with the trigger dropped the same sequence leaves the nodes different (the
#    window is real, the lock is what closes it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE users_lww (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE users_prio (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE race_t (id int PRIMARY KEY, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
TABLES="public.users_lww, public.users_prio, public.race_t, public.mesh_marker"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "$TABLES" '  policies: { public.users_prio: { policy: priority, priority: [a, b] } }'
dump() {
  local n
  for n in a b; do
    log "node $n: lww '$(rows $n users_lww)' prio '$(rows $n users_prio)'; conflicts: $(conflicts $n)"
    log "  tombstones: $(node_psql $n -c "SELECT string_agg(tbl || '/' || key, ' ') FROM _odsync_tombstones")"
  done
}
rows() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || ${3:-email}, ' ' ORDER BY id), '') FROM $2"; }
conflicts() {
  node_psql "$1" -c "SELECT coalesce(string_agg(concat_ws(':', split_part(table_name, '.', 2), kind, key, index_name, policy, winner), ' ' ORDER BY table_name, key, id), '') FROM _odsync_conflicts"
}

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
# each node later updates only rows it wrote itself (its own writes are causally ordered whatever
# the version vectors know after a restart)
for t in users_lww users_prio; do
  node_psql a -c "INSERT INTO $t VALUES (10, 'p', 'a')"
  node_psql b -c "INSERT INTO $t VALUES (11, 'q', 'b'), (20, 'r', 'b')"
done
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.users_lww public.users_prio

log "clashes made while odsync is stopped: a first, b later"
odsync_stop
for t in users_lww users_prio; do
  node_psql a -c "INSERT INTO $t VALUES (1, 'x', 'a')"          # insert/insert on email x
  node_psql a -c "UPDATE $t SET email = 'z' WHERE id = 10"       # update/update onto email z
  node_psql a -c "INSERT INTO $t VALUES (3, 'w', 'a')"          # insert (a) vs update (b) onto w
done
sleep 0.05 # b's writes get later commit times than a's (last_writer_wins)
for t in users_lww users_prio; do
  node_psql b -c "INSERT INTO $t VALUES (2, 'x', 'b')"
  node_psql b -c "UPDATE $t SET email = 'z' WHERE id = 11"
  node_psql b -c "UPDATE $t SET email = 'w' WHERE id = 20"
done
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 90 public.users_lww public.users_prio ) || { dump; fail "nodes differ after the clashes"; }
odsync_running || fail "odsync stopped on the unique clashes: $(tail -5 "$LOG")"
for n in a b; do
  # last writer (b): b's rows 2, 11 (z), 20 (w) survive; a's 1, 10 and 3 are gone
  [[ $(rows $n users_lww) == "2:x 11:z 20:w" ]] || fail "node $n users_lww: '$(rows $n users_lww)', expected '2:x 11:z 20:w'"
  # priority [a, b]: a's rows 1 (x), 10 (z), 3 (w) survive; b's 2, 11 and 20 are gone
  [[ $(rows $n users_prio) == "1:x 3:w 10:z" ]] || fail "node $n users_prio: '$(rows $n users_prio)', expected '1:x 3:w 10:z'"
done
# Each node logs the clashes it saw: at a, b's rows met a's; at b, a's rows met b's. The key is the
# remote row's; the winner is the same node on both sides.
want_a="users_lww:unique:11:users_lww_email_key:last_writer_wins:b users_lww:unique:2:users_lww_email_key:last_writer_wins:b users_lww:unique:20:users_lww_email_key:last_writer_wins:b users_prio:unique:11:users_prio_email_key:priority:a users_prio:unique:2:users_prio_email_key:priority:a users_prio:unique:20:users_prio_email_key:priority:a"
want_b="users_lww:unique:1:users_lww_email_key:last_writer_wins:b users_lww:unique:10:users_lww_email_key:last_writer_wins:b users_lww:unique:3:users_lww_email_key:last_writer_wins:b users_prio:unique:1:users_prio_email_key:priority:a users_prio:unique:10:users_prio_email_key:priority:a users_prio:unique:3:users_prio_email_key:priority:a"
[[ $(conflicts a) == "$want_a" ]] || fail "node a conflict log: '$(conflicts a)' (expected '$want_a')"
[[ $(conflicts b) == "$want_b" ]] || fail "node b conflict log: '$(conflicts b)' (expected '$want_b')"
# both versions are in the log: the local row and the remote row, with the local row's key
[[ $(node_psql a -c "SELECT local_row->>'id' || '/' || (remote_row->>'id') FROM _odsync_conflicts WHERE table_name = 'public.users_lww' AND key = '2'") == "1/2" ]] ||
  fail "node a: the users_lww clash on x does not hold both rows: $(node_psql a -c "SELECT local_row, remote_row FROM _odsync_conflicts WHERE key = '2'")"

out=$("$ODSYNC_BIN" conflicts -c "$CONFIG") || fail "odsync conflicts failed: $out"
(($(grep -c 'unique (users_lww_email_key) public.users_lww' <<<"$out") == 6)) ||
  fail "odsync conflicts did not list 3 unique conflicts on users_lww_email_key per node: $out"

log "later writes of a survivor and of a loser's key are no conflict"
node_psql a -c "UPDATE users_lww SET v = 'later' WHERE id = 2"
node_psql b -c "INSERT INTO users_prio VALUES (2, 'x2', 'again')"
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
mesh_wait_equal 60 public.users_lww public.users_prio
for n in a b; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts") == 6 ]] || fail "node $n logged a conflict for a causally later write: $(conflicts $n)"
  [[ $(node_psql $n -c "SELECT v FROM users_lww WHERE id = 2") == later ]] || fail "node $n: the later update of row 2 is missing"
  [[ $(node_psql $n -c "SELECT v FROM users_prio WHERE id = 2") == again ]] || fail "node $n: the re-inserted row 2 is missing"
done

log "live load: both nodes insert, move and delete rows on 25 shared emails with odsync running"
load() { # NODE BASE
  {
    echo '\set ON_ERROR_STOP 0'
    for i in $(seq 1 300); do
      for t in users_lww users_prio; do
        echo "INSERT INTO $t VALUES ($2 + $i, 'e' || ($i % 25), '$1') ON CONFLICT DO NOTHING;"
        # later writes of earlier rows (which may have lost at the other node meanwhile, or won
        # there while they leave their value here before the loser arrives)
        ((i % 3)) || echo "UPDATE $t SET email = 'e' || (($i * 7) % 25), v = v || '.' WHERE id = $2 + $i - 2;"
        ((i % 5)) || echo "DELETE FROM $t WHERE id = $2 + $i - 4;"
      done
    done
  } | node_psql "$1" >/dev/null 2>&1
}
load a 1000 &
pa=$!
load b 2000 &
pb=$!
wait $pa $pb
mesh_wait_marker 180 a b
mesh_wait_marker 180 b a
( mesh_wait_equal 120 public.users_lww public.users_prio ) || {
  for n in a b; do
    log "node $n conflicts:"
    node_psql $n -c "SELECT id, split_part(table_name, '.', 2), kind, key, local_origin, (extract(epoch FROM local_commit_ts) * 1000000)::int8 % 100000000, remote_origin, (extract(epoch FROM remote_commit_ts) * 1000000)::int8 % 100000000, winner, local_row ->> 'id', local_row ->> 'email', remote_row ->> 'email' FROM _odsync_conflicts WHERE id > 6 ORDER BY id" >&2
  done
  fail "nodes differ after the load"
}
odsync_running || fail "odsync stopped during the load: $(tail -5 "$LOG")"
for n in a b; do
  c=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE kind = 'unique'")
  rows_n=$(node_psql $n -c "SELECT (SELECT count(*) FROM users_lww) + (SELECT count(*) FROM users_prio)")
  log "node $n: $c unique conflicts in all, $rows_n rows"
  ((c > 20)) || fail "node $n: the load caused only $c unique conflicts in all"
  ((rows_n > 10)) || fail "node $n: only $rows_n rows after the load"
  # a pair is (remote change, local row): one change can meet several rows that left its value
  dup=$(node_psql $n -c "SELECT count(*) FROM (SELECT remote_lsn, key, table_name, index_name, local_row ->> 'id' FROM _odsync_conflicts GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1) d")
  [[ $dup == 0 ]] || fail "node $n logged $dup conflicts twice"
done
log "batches retried on a clash committed after their check: $(grep -c 'clash appeared after the batch' "$LOG" || true)"

log "the never-existing-key race: a's application inserts and deletes a key inside the sink's window"
odsync_stop
race() { # ID: b inserts ID; while a's sink holds that batch, a inserts and deletes ID
  local deadline=$(($(date +%s) + 60))
  node_psql b -c "INSERT INTO race_t VALUES ($1, 'b')"
  # the sink at a has locked the absent key (an exclusive advisory lock), read the versions and
  # waits ODSYNC_MESH_TEST_PAUSE_MS before its apply
  until [[ $(node_psql a -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted") != 0 ]]; do
    (($(date +%s) < deadline)) || fail "the sink at a never locked the absent key $1"
    sleep 0.05
  done
  sleep 0.3
  node_psql a -c "INSERT INTO race_t VALUES ($1, 'a')" >/dev/null 2>&1 || true
  node_psql a -c "DELETE FROM race_t WHERE id = $1"
  mesh_wait_marker 120 a b
  mesh_wait_marker 120 b a
}
ODSYNC_MESH_TEST_PAUSE_MS=4000 odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
race 1
mesh_wait_equal 60 public.race_t
log "with the key lock: nodes equal (a: '$(rows a race_t v)', b: '$(rows b race_t v)')"
# Without the lock (the trigger dropped) the same sequence must leave the nodes different: the
# application's tombstone was written inside the window, the sink's insert of b's row lands on it.
node_psql a -c "DROP TRIGGER _odsync_keylock ON race_t"
race 2
sleep 2
rc=0; out=$(mesh_compare a b public.race_t 2>&1) || rc=$?
((rc != 0)) || fail "without the key-lock trigger the race left the nodes equal: the window was not made real"
grep -q 'difference' <<<"$out" || fail "od_compare_pg failed without reporting a difference: $out"
log "without the key lock: a holds '$(rows a race_t v)', b holds '$(rows b race_t v)' (diverged, as expected)"
odsync_stop
for t in public.users_lww public.users_prio public.mesh_marker; do
  mesh_compare a b $t || fail "nodes differ on $t"
done
log "ok"
