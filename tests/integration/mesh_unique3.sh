#!/usr/bin/env bash
# mesh_unique3.sh — a unique-index clash seen by a third node (a, b, c; last_writer_wins).
#
# Asserts: with odsync stopped, a inserts (1, 'x') and b, later, (2, 'x') into a table with a
# UNIQUE email, and a and b each insert a row of their own on an email only they use; afterwards the
# pipelines run on, all three nodes hold exactly b's row on 'x' (the later writer) and the two other
# rows, identical row for row, and every node logged exactly one `unique` conflict with winner b:
# a and b judged (the other's row, their own), c judged the same pair whichever arrived first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique3
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.users, public.mesh_marker"
odsync_start "$CONFIG" "$LOG" # the slots exist from here on
mesh_wait_active 120
odsync_stop
node_psql a -c "INSERT INTO users VALUES (1, 'x', 'a'), (11, 'only-a', 'a')"
sleep 0.05 # b's row gets the later commit time
node_psql b -c "INSERT INTO users VALUES (2, 'x', 'b'), (12, 'only-b', 'b')"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for f in a b c; do
  for t in a b c; do [[ $f != "$t" ]] && mesh_wait_marker 120 $f $t; done
done
mesh_wait_equal 90 public.users
odsync_running || fail "odsync stopped on the clash: $(tail -5 "$LOG")"
for n in a b c; do
  got=$(node_psql $n -c "SELECT string_agg(id || ':' || email, ' ' ORDER BY id) FROM users")
  [[ $got == "2:x 11:only-a 12:only-b" ]] || fail "node $n holds '$got', expected '2:x 11:only-a 12:only-b'"
  got=$(node_psql $n -c "SELECT coalesce(string_agg(concat_ws(':', kind, index_name, policy, winner), ' '), '') FROM _odsync_conflicts")
  [[ $got == "unique:users_email_key:last_writer_wins:b" ]] || fail "node $n conflict log: '$got'"
done
log "node c logged: $(node_psql c -c "SELECT key || ' from ' || remote_origin || ' vs local row of ' || local_origin FROM _odsync_conflicts")"
odsync_stop
for n in b c; do mesh_compare a $n public.users public.mesh_marker || fail "nodes a and $n differ"; done
log "ok"
