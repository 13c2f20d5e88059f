#!/usr/bin/env bash
# mesh_unique_left.sh — a unique clash whose winner left the value (deleted, or moved off by an
# update) at its own node before the loser arrived there (docs/MULTI_MASTER.md, "When the winner
# leaves before the loser arrives"). 2 nodes, a <-> b; users_lww under last_writer_wins,
# users_prio under priority [a, b]; both with a UNIQUE email; gc_interval_s: 1.
#
# Asserts, with odsync stopped while every write is made (so no write saw the other node's):
#  - x: a inserts (1, x), b then (2, x), a then deletes 1;
#  - y: a inserts (3, y), b then (4, y), a then moves 3 to y2;
#  - z (users_lww only): b inserts (6, z), a then (5, z), a then deletes 5;
#  then odsync runs: both nodes hold exactly users_lww "2:x 3:y2 4:y" (b's later rows beat a's
#  version *that held* x and y — not a's later delete or move — and a's later row 5 beats 6, whose
#  removal at a comes from 5's record) and users_prio "3:y2" (a's rows win, so b's 2 and 4 go on
#  both nodes although a never saw 1 or 3 on the value when they arrived); every node logged
#  exactly the same five `unique` conflicts (table:index:policy:winner); the nodes are identical;
#  a later insert of the freed value x at b is no conflict anywhere; once every node has covered
#  the versions, the clean-up removes every _odsync_unique_left record.
# Without the record check node a keeps 2 and 4 in users_prio and 6 in users_lww (checked).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique_left
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE users_lww (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE users_prio (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.users_lww, public.users_prio, public.mesh_marker" \
  "  policies: { public.users_prio: { policy: priority, priority: [a, b] } }
  gc_interval_s: 1"
rows() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email, ' ' ORDER BY id), '') FROM $2"; }

odsync_start "$CONFIG" "$LOG" # the slots exist from here on
mesh_wait_active 90
odsync_stop
for t in users_lww users_prio; do
  mesh_step a -c "INSERT INTO $t VALUES (1, 'x', 'a')"
  mesh_step b -c "INSERT INTO $t VALUES (2, 'x', 'b')"
  mesh_step a -c "DELETE FROM $t WHERE id = 1"
  mesh_step a -c "INSERT INTO $t VALUES (3, 'y', 'a')"
  mesh_step b -c "INSERT INTO $t VALUES (4, 'y', 'b')"
  mesh_step a -c "UPDATE $t SET email = 'y2' WHERE id = 3"
done
mesh_step b -c "INSERT INTO users_lww VALUES (6, 'z', 'b')"
mesh_step a -c "INSERT INTO users_lww VALUES (5, 'z', 'a')"
mesh_step a -c "DELETE FROM users_lww WHERE id = 5"
log "records at a: $(node_psql a -c "SELECT string_agg(split_part(tbl, '.', 2) || '/' || key || '/' || img::text || '/' || coalesce(node, '-'), ' ' ORDER BY tbl, key) FROM _odsync_unique_left")"
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_unique_left") == 5 ]] || fail "node a does not hold 5 unique-left records"

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
odsync_running || fail "odsync stopped: $(tail -5 "$LOG")"
want_lww="2:x 3:y2 4:y"
want_prio="3:y2"
for n in a b; do
  got=$(rows $n users_lww)
  [[ $got == "$want_lww" ]] || fail "node $n users_lww holds '$got', expected '$want_lww' (a: '$(rows a users_lww)', b: '$(rows b users_lww)')"
  got=$(rows $n users_prio)
  [[ $got == "$want_prio" ]] || fail "node $n users_prio holds '$got', expected '$want_prio' (a: '$(rows a users_prio)', b: '$(rows b users_prio)')"
done
want_c="users_lww:unique:users_lww_email_key:last_writer_wins:a users_lww:unique:users_lww_email_key:last_writer_wins:b users_lww:unique:users_lww_email_key:last_writer_wins:b users_prio:unique:users_prio_email_key:priority:a users_prio:unique:users_prio_email_key:priority:a"
for n in a b; do
  got=$(mesh_unique_conflicts $n)
  [[ $got == "$want_c" ]] || fail "node $n conflict log '$got', expected '$want_c'"
done
log "node a logged (remote key, local row): $(node_psql a -c "SELECT string_agg(split_part(table_name, '.', 2) || ' ' || key || ' vs ' || local_row::text || ' -> ' || winner, '; ' ORDER BY id) FROM _odsync_conflicts")"

log "a later insert of the freed value x at b is no conflict"
node_psql b -c "INSERT INTO users_prio VALUES (7, 'x', 'b')"
mesh_wait_marker 120 b a
mesh_wait_marker 120 a b
mesh_wait_equal 60 public.users_lww public.users_prio
for n in a b; do
  [[ $(rows $n users_prio) == "3:y2 7:x" ]] || fail "node $n users_prio holds '$(rows $n users_prio)', expected '3:y2 7:x'"
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts") == 5 ]] || fail "node $n logged a conflict for the later insert: $(mesh_unique_conflicts $n)"
done

log "the clean-up removes the covered records"
deadline=$(($(date +%s) + 60))
until [[ $(node_psql a -c "SELECT count(*) FROM _odsync_unique_left") == 0 &&
  $(node_psql b -c "SELECT count(*) FROM _odsync_unique_left") == 0 ]]; do
  (($(date +%s) < deadline)) || fail "unique-left records left: a $(node_psql a -c "SELECT count(*) FROM _odsync_unique_left"), b $(node_psql b -c "SELECT count(*) FROM _odsync_unique_left")"
  node_psql a -c "INSERT INTO mesh_marker VALUES ('gc-a', 0) ON CONFLICT (id) DO UPDATE SET n = mesh_marker.n + 1" >/dev/null
  node_psql b -c "INSERT INTO mesh_marker VALUES ('gc-b', 0) ON CONFLICT (id) DO UPDATE SET n = mesh_marker.n + 1" >/dev/null
  sleep 1
done
odsync_stop
mesh_compare a b public.users_lww public.users_prio public.mesh_marker || fail "nodes a and b differ"
log "ok"
