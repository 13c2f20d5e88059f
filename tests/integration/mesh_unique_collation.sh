#!/usr/bin/env bash
# mesh_unique_collation.sh — unique clashes judged by the index's own equality (docs/MULTI_MASTER.md,
# "Unique-key clashes"): a nondeterministic (case-insensitive ICU) collation given in the index, and
# one of the column itself. 2 nodes, a <-> b, last_writer_wins.
#  - users_ci:  UNIQUE INDEX users_ci_email ON users_ci (email COLLATE ci)  (the column: default);
#  - users_col: email text COLLATE ci UNIQUE (users_col_email_key).
# Every write is made with odsync stopped (no write saw the other node's), each later than the last;
# per table:  a (1, Ab@x), b (2, aB@X)              -> 2 wins (later) on both nodes
#             b (3, Q@x), a (4, q@X), a deletes 4   -> 3 goes on both (at a by 4's unique-left record)
#             a (5, m@x), b (6, n@x)                -> no clash
# Then odsync runs: both nodes hold exactly 2, 5, 6, each logged the same 4 `unique` conflicts, and the
# nodes are identical. Before the check compared with the index's collation, b's aB@X failed at a
# with a unique violation (the check had compared case-sensitively).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique_collation
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE users_ci (id int PRIMARY KEY, email text, v text);
CREATE UNIQUE INDEX users_ci_email ON users_ci (email COLLATE ci);
CREATE TABLE users_col (id int PRIMARY KEY, email text COLLATE ci UNIQUE, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.users_ci, public.users_col, public.mesh_marker"
rows() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email, ' ' ORDER BY id), '') FROM $2"; }

odsync_start "$CONFIG" "$LOG" # the slots (and triggers) exist from here on
mesh_wait_active 90
mesh_wait_marker 120 a b
odsync_stop
for t in users_ci users_col; do
  mesh_step a -c "INSERT INTO $t VALUES (1, 'Ab@x', 'a')"
  mesh_step b -c "INSERT INTO $t VALUES (2, 'aB@X', 'b')"
  mesh_step b -c "INSERT INTO $t VALUES (3, 'Q@x', 'b')"
  mesh_step a -c "INSERT INTO $t VALUES (4, 'q@X', 'a')"
  mesh_step a -c "DELETE FROM $t WHERE id = 4"
  mesh_step a -c "INSERT INTO $t VALUES (5, 'm@x', 'a')"
  mesh_step b -c "INSERT INTO $t VALUES (6, 'n@x', 'b')"
done

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
odsync_running || fail "odsync stopped: $(tail -5 "$LOG")"
want="2:aB@X 5:m@x 6:n@x"
for n in a b; do
  for t in users_ci users_col; do
    got=$(rows $n $t)
    [[ $got == "$want" ]] || fail "node $n $t holds '$got', expected '$want' (a: '$(rows a $t)', b: '$(rows b $t)'; $(grep -m3 -i 'unique\|error' "$LOG"))"
  done
done
want_c="users_ci:unique:users_ci_email:last_writer_wins:a users_ci:unique:users_ci_email:last_writer_wins:b"
want_c+=" users_col:unique:users_col_email_key:last_writer_wins:a users_col:unique:users_col_email_key:last_writer_wins:b"
for n in a b; do
  got=$(mesh_unique_conflicts $n)
  [[ $got == "$want_c" ]] || fail "node $n conflict log '$got', expected '$want_c'"
done
odsync_stop
mesh_compare a b public.users_ci public.users_col public.mesh_marker || fail "nodes a and b differ"
log "ok"
