#!/usr/bin/env bash
# mesh_unique_idx.sh — unique clashes on partial, NULLS NOT DISTINCT and expression unique indexes
# (docs/MULTI_MASTER.md, "Unique-key clashes"). 2 nodes, a <-> b, last_writer_wins.
#  - users_part: UNIQUE (email) WHERE deleted_at IS NULL (index users_part_live);
#  - users_nnd: UNIQUE NULLS NOT DISTINCT (org, code) (users_nnd_org_code_key);
#  - users_expr: UNIQUE (lower(email)) (users_expr_lower).
# Every write is made with odsync stopped (no write saw the other node's), each later than the last:
#  users_part  x: a (1, x), b (2, x)                    -> 2 wins (later) on both nodes
#              o: a (3, o, deleted), b (4, o)           -> no clash: 3 is outside the predicate
#              p: a (5, p, deleted), b (6, p, deleted)  -> no clash: both outside (both stay)
#              s: b (8, s), a (7, s), a soft-deletes 7  -> 7's version that held s beats 8: 8 goes on
#                 both nodes (at a by the record of 7 leaving the predicate); 7 stays, soft-deleted
#              t: b (9, t, deleted), a (10, t), a soft-deletes 10 -> no clash: 9 is outside the
#                 predicate, so 10's record does not judge it (both stay)
#  users_nnd   a (1, 1, NULL), b (2, 1, NULL) -> 2 wins; a (3, 2, c), b (4, 2, c) -> 4 wins;
#              b (5, 3, NULL), a (6, 3, NULL), a deletes 6 -> 5 goes on both (at a by 6's record)
#  users_expr  a (1, Ab@x), b (2, aB@X) -> 2 wins; b (3, Q@x), a (4, q@X), a deletes 4 -> 3 goes;
#              a (5, m@x), b (6, n@x) -> no clash
#  users_move  (1, k1) on both nodes first; then b moves it: SET id = 11, email = e; a (2, e) later:
#              a's row wins; at a, b's key-changing update loses and removes the row it moved (key
#              1), not only the new key 11 (before: a kept 1:k1, b held only 2:e)
# Then odsync runs: both nodes hold exactly the rows above, each logged the same 8 `unique`
# conflicts (table:index:policy:winner), and the nodes are identical.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique_idx
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE TABLE users_part (id int PRIMARY KEY, email text, deleted_at timestamptz, v text);
CREATE UNIQUE INDEX users_part_live ON users_part (email) WHERE deleted_at IS NULL;
CREATE TABLE users_nnd (id int PRIMARY KEY, org int, code text, v text, UNIQUE NULLS NOT DISTINCT (org, code));
CREATE TABLE users_expr (id int PRIMARY KEY, email text, v text);
CREATE UNIQUE INDEX users_expr_lower ON users_expr (lower(email));
CREATE TABLE users_move (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
TABLES="public.users_part, public.users_nnd, public.users_expr, public.users_move, public.mesh_marker"
mesh_config "$CONFIG" last_writer_wins "$TABLES"
rows_part() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email || ':' || CASE WHEN deleted_at IS NULL THEN '' ELSE 'd' END, ' ' ORDER BY id), '') FROM users_part"; }
rows_nnd() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || org || ':' || coalesce(code, ''), ' ' ORDER BY id), '') FROM users_nnd"; }
rows_move() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email, ' ' ORDER BY id), '') FROM users_move"; }
rows_expr() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email, ' ' ORDER BY id), '') FROM users_expr"; }

odsync_start "$CONFIG" "$LOG" # the slots (and triggers) exist from here on
mesh_wait_active 90
node_psql a -c "INSERT INTO users_move VALUES (1, 'k1', 'a')" >/dev/null
mesh_wait_marker 120 a b
[[ $(rows_move b) == "1:k1" ]] || fail "node b did not receive users_move 1 before the test: '$(rows_move b)'"
odsync_stop
mesh_step a -c "INSERT INTO users_part VALUES (1, 'x', NULL, 'a')"
mesh_step b -c "INSERT INTO users_part VALUES (2, 'x', NULL, 'b')"
mesh_step a -c "INSERT INTO users_part VALUES (3, 'o', now(), 'a')"
mesh_step b -c "INSERT INTO users_part VALUES (4, 'o', NULL, 'b')"
mesh_step a -c "INSERT INTO users_part VALUES (5, 'p', now(), 'a')"
mesh_step b -c "INSERT INTO users_part VALUES (6, 'p', now(), 'b')"
mesh_step b -c "INSERT INTO users_part VALUES (8, 's', NULL, 'b')"
mesh_step a -c "INSERT INTO users_part VALUES (7, 's', NULL, 'a')"
mesh_step a -c "UPDATE users_part SET deleted_at = now() WHERE id = 7"
mesh_step b -c "INSERT INTO users_part VALUES (9, 't', now(), 'b')"
mesh_step a -c "INSERT INTO users_part VALUES (10, 't', NULL, 'a')"
mesh_step a -c "UPDATE users_part SET deleted_at = now() WHERE id = 10"
mesh_step a -c "INSERT INTO users_nnd VALUES (1, 1, NULL, 'a')"
mesh_step b -c "INSERT INTO users_nnd VALUES (2, 1, NULL, 'b')"
mesh_step a -c "INSERT INTO users_nnd VALUES (3, 2, 'c', 'a')"
mesh_step b -c "INSERT INTO users_nnd VALUES (4, 2, 'c', 'b')"
mesh_step b -c "INSERT INTO users_nnd VALUES (5, 3, NULL, 'b')"
mesh_step a -c "INSERT INTO users_nnd VALUES (6, 3, NULL, 'a')"
mesh_step a -c "DELETE FROM users_nnd WHERE id = 6"
mesh_step a -c "INSERT INTO users_expr VALUES (1, 'Ab@x', 'a')"
mesh_step b -c "INSERT INTO users_expr VALUES (2, 'aB@X', 'b')"
mesh_step b -c "INSERT INTO users_expr VALUES (3, 'Q@x', 'b')"
mesh_step a -c "INSERT INTO users_expr VALUES (4, 'q@X', 'a')"
mesh_step a -c "DELETE FROM users_expr WHERE id = 4"
mesh_step a -c "INSERT INTO users_expr VALUES (5, 'm@x', 'a')"
mesh_step b -c "INSERT INTO users_expr VALUES (6, 'n@x', 'b')"
mesh_step b -c "UPDATE users_move SET id = 11, email = 'e' WHERE id = 1"
mesh_step a -c "INSERT INTO users_move VALUES (2, 'e', 'a')"
log "records at a: $(node_psql a -c "SELECT string_agg(split_part(tbl, '.', 2) || '/' || key || '/' || img::text, ' ' ORDER BY tbl, key) FROM _odsync_unique_left")"
# the soft deletes of 7 and 10 (leaving the predicate), the deletes of nnd 6 and expr 4
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_unique_left") == 4 ]] || fail "node a does not hold 4 unique-left records"

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
odsync_running || fail "odsync stopped: $(tail -5 "$LOG")"
want_part="2:x: 3:o:d 4:o: 5:p:d 6:p:d 7:s:d 9:t:d 10:t:d"
want_nnd="2:1: 4:2:c"
want_expr="2:aB@X 5:m@x 6:n@x"
want_move="2:e"
for n in a b; do
  got=$(rows_part $n)
  [[ $got == "$want_part" ]] || fail "node $n users_part holds '$got', expected '$want_part' (a: '$(rows_part a)', b: '$(rows_part b)')"
  got=$(rows_nnd $n)
  [[ $got == "$want_nnd" ]] || fail "node $n users_nnd holds '$got', expected '$want_nnd' (a: '$(rows_nnd a)', b: '$(rows_nnd b)')"
  got=$(rows_move $n)
  [[ $got == "$want_move" ]] || fail "node $n users_move holds '$got', expected '$want_move' (a: '$(rows_move a)', b: '$(rows_move b)')"
  got=$(rows_expr $n)
  [[ $got == "$want_expr" ]] || fail "node $n users_expr holds '$got', expected '$want_expr' (a: '$(rows_expr a)', b: '$(rows_expr b)')"
done
want_c="users_expr:unique:users_expr_lower:last_writer_wins:a users_expr:unique:users_expr_lower:last_writer_wins:b"
want_c+=" users_move:unique:users_move_email_key:last_writer_wins:a"
want_c+=" users_nnd:unique:users_nnd_org_code_key:last_writer_wins:a users_nnd:unique:users_nnd_org_code_key:last_writer_wins:b"
want_c+=" users_nnd:unique:users_nnd_org_code_key:last_writer_wins:b"
want_c+=" users_part:unique:users_part_live:last_writer_wins:a users_part:unique:users_part_live:last_writer_wins:b"
for n in a b; do
  got=$(mesh_unique_conflicts $n)
  [[ $got == "$want_c" ]] || fail "node $n conflict log '$got', expected '$want_c'"
done
log "node a logged (remote key, local row): $(node_psql a -c "SELECT string_agg(split_part(table_name, '.', 2) || ' ' || key || ' vs ' || local_row::text || ' -> ' || winner, '; ' ORDER BY id) FROM _odsync_conflicts")"
odsync_stop
mesh_compare a b public.users_part public.users_nnd public.users_expr public.users_move public.mesh_marker || fail "nodes a and b differ"
log "ok"
