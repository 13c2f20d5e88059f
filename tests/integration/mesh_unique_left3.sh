#!/usr/bin/env bash
# mesh_unique_left3.sh — the winner leaves before the loser arrives, seen by a third node that got
# the winner's insert and its delete (or move) in one batch (docs/MULTI_MASTER.md, "When the winner
# leaves before the loser arrives"). 3 nodes; users under priority [a, b, c] with a UNIQUE email.
#
# Asserts: with odsync stopped, b inserts (2, x) and (4, y); a inserts (1, x) and (3, y), then
# deletes 1 and moves 3 to y2; a two-node mesh a <-> c brings a's writes to c in one batch (c holds
# 3:y2 only); then the full mesh: every node holds exactly "3:y2" (a's rows win, so b's 2 and 4 go
# everywhere, c included, which never held 1 or 3 on x or y), each node logged two `unique`
# conflicts won by a, and the nodes are identical.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_unique_left3
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
TABLES="public.users, public.mesh_marker"
CONFIG=$TEST_TMP/odsync.yaml
CONFIG_AC=$TEST_TMP/odsync_ac.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" priority "$TABLES" '  priority: [a, b, c]'
MESH_NODES=(a c)
mesh_config "$CONFIG_AC" priority "$TABLES" '  priority: [a, c]'
MESH_NODES=(a b c)
rows() { node_psql "$1" -c "SELECT coalesce(string_agg(id || ':' || email, ' ' ORDER BY id), '') FROM users"; }

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
odsync_stop
node_psql b -c "INSERT INTO users VALUES (2, 'x', 'b'), (4, 'y', 'b')"
node_psql a -c "INSERT INTO users VALUES (1, 'x', 'a'), (3, 'y', 'a')"
node_psql a -c "DELETE FROM users WHERE id = 1"
node_psql a -c "UPDATE users SET email = 'y2' WHERE id = 3"

log "a <-> c only: a's writes reach c"
odsync_start "$CONFIG_AC" "$LOG"
MESH_NODES=(a c)
mesh_wait_active 120
mesh_wait_marker 120 a c
MESH_NODES=(a b c)
odsync_stop
[[ $(rows c) == "3:y2" ]] || fail "c holds '$(rows c)' after a's writes, expected '3:y2'"
log "records at c: $(node_psql c -c "SELECT coalesce(string_agg(key || '/' || img::text || '/' || coalesce(node, '-'), ' ' ORDER BY key), '') FROM _odsync_unique_left")"

log "the full mesh"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do
  mesh_wait_marker 120 a b; mesh_wait_marker 120 b c; mesh_wait_marker 120 c a
  mesh_wait_marker 120 a c; mesh_wait_marker 120 c b; mesh_wait_marker 120 b a
done
odsync_running || fail "odsync stopped: $(tail -5 "$LOG")"
for n in a b c; do
  [[ $(rows $n) == "3:y2" ]] || fail "node $n holds '$(rows $n)', expected '3:y2' (a: '$(rows a)', b: '$(rows b)', c: '$(rows c)')"
  got=$(node_psql $n -c "SELECT coalesce(string_agg(concat_ws(':', kind, index_name, winner), ' ' ORDER BY id), '') FROM _odsync_conflicts")
  [[ $got == "unique:users_email_key:a unique:users_email_key:a" ]] || fail "node $n conflict log: '$got'"
done
odsync_stop
for n in b c; do mesh_compare a $n public.users || fail "nodes a and $n differ"; done
log "ok"
