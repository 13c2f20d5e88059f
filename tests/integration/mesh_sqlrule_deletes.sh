#!/usr/bin/env bash
# mesh_sqlrule_deletes.sh — an SQL rule ranks a delete as the row it deleted (docs/MULTI_MASTER.md,
# "Rules and concurrent deletes"), on a 2-node mesh (a <-> b), table stock with REPLICA IDENTITY FULL
# and the rule `remote.st > local.st` (st grows along every causal chain, as a rule needs).
#
# Asserts:
#  - `odsync check` warns about an SQL rule only where a node lacks REPLICA IDENTITY FULL on its
#    table (plain: always; stock: after b drops FULL, naming node b; not with FULL everywhere);
#  - pairs made while odsync is stopped, row for row at both nodes:
#    key 1, the cycle that left the nodes apart before: a raises st to 1000 and deletes the row, b
#    later sets st 5. At b a's update wins by the rule and a's delete follows; at a b's update meets
#    the tombstone, ranked as st 1000: it loses. The row is gone on both.
#    key 2: b raises st to 20, a later deletes the row (st 1 there): the delete ranks as st 1 and
#    loses to b's update though it is the later write; the row stays with st 20 on both.
#    key 3: a raises st to 100 and deletes, b raises it to 60 and deletes (later): two deletes
#    ranked as their rows — a's tombstone (image st 100) wins on both nodes.
#    key 4: b updates v only (st 1), a deleted the row (st 1) earlier: equal ranks, no decision,
#    last_writer_wins: b's update stays.
#  - both conflict logs hold exactly these conflicts, with `rule` where the ranking decided, each
#    rule decision won by the higher st (the logs carry the deleted rows);
#  - the tombstones of the deleted keys hold the winning delete's row (st 1000, 100) on both nodes;
#  - both nodes identical afterwards (od_compare_pg).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_sqlrule_deletes
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE TABLE stock (id int PRIMARY KEY, st bigint NOT NULL, v text);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE plain (id int PRIMARY KEY, st bigint NOT NULL, v text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
TABLES="public.stock, public.plain, public.mesh_marker"
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "$TABLES" \
  '  rules: ["public.stock: sql: remote.st > local.st", "public.plain: sql: remote.st > local.st"]'
dump() {
  local n
  for n in a b; do
    log "node $n stock: $(node_psql $n -c "SELECT string_agg(concat_ws(':', id, st, v), ' ' ORDER BY id) FROM stock")"
    log "node $n conflicts: $(node_psql $n -c "SELECT string_agg(concat_ws(':', key, kind, policy, winner, local_row ->> 'st', remote_row ->> 'st'), ' ' ORDER BY id) FROM _odsync_conflicts")"
  done
}

log "odsync check: a warning where REPLICA IDENTITY FULL is missing"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check refused the config: $out"
warns=$(grep '^warning: mesh.rules\[[0-9]\] on table' <<<"$out" || true)
[[ $(grep -c . <<<"$warns") == 1 && $warns == *"mesh.rules[1] on table public.plain is an SQL rule"*"missing on node a"*"REPLICA IDENTITY FULL on every node"* ]] ||
  fail "odsync check: expected one warning, for public.plain: $out"
node_psql b -c "ALTER TABLE stock REPLICA IDENTITY DEFAULT" >/dev/null
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check refused the config: $out"
grep -q '^warning: mesh.rules\[0\] on table public.stock is an SQL rule: .*missing on node b' <<<"$out" ||
  fail "odsync check: no warning for public.stock without REPLICA IDENTITY FULL on node b: $out"
node_psql b -c "ALTER TABLE stock REPLICA IDENTITY FULL" >/dev/null

odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
node_psql a -c "INSERT INTO stock SELECT g, 1, 'v0' FROM generate_series(1, 5) g" >/dev/null
mesh_wait_marker 120 a b
mesh_wait_equal 60 public.stock

log "concurrent writes and deletes while odsync is stopped"
odsync_stop
node_psql b -c "UPDATE stock SET st = 20, v = 'b2' WHERE id = 2" >/dev/null
sleep 0.05
node_psql a >/dev/null <<'SQL'
UPDATE stock SET st = 1000, v = 'a1' WHERE id = 1;
DELETE FROM stock WHERE id = 1;
DELETE FROM stock WHERE id = 2;
UPDATE stock SET st = 100, v = 'a3' WHERE id = 3;
DELETE FROM stock WHERE id = 3;
DELETE FROM stock WHERE id = 4;
SQL
sleep 0.05
node_psql b >/dev/null <<'SQL'
UPDATE stock SET st = 5, v = 'b1' WHERE id = 1;
UPDATE stock SET st = 60, v = 'b3' WHERE id = 3;
DELETE FROM stock WHERE id = 3;
UPDATE stock SET v = 'b4' WHERE id = 4;
SQL
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
( mesh_wait_equal 90 public.stock ) || { dump; fail "nodes differ"; }

want_log_a="1:update_delete:rule:a 2:update_delete:rule:b 3:delete_delete:rule:a 3:update_delete:rule:a 4:update_delete:last_writer_wins:b"
want_log_b="1:update_update:rule:a 2:update_delete:rule:b 3:update_delete:rule:a 4:update_delete:last_writer_wins:b"
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, st, v), ' ' ORDER BY id) FROM stock")
  [[ $got == "2:20:b2 4:1:b4 5:1:v0" ]] || { dump; fail "node $n stock '$got', expected '2:20:b2 4:1:b4 5:1:v0'"; }
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', key, kind, policy, winner), ' ' ORDER BY key::int, kind) FROM _odsync_conflicts WHERE table_name = 'public.stock'")
  want=want_log_$n
  [[ $got == "${!want}" ]] || { dump; fail "node $n conflict log '$got', expected '${!want}'"; }
  # every rule decision went to the higher st, the deleted side ranked as its row (logged with it)
  wrong=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE policy = 'rule' AND
    ((local_row ->> 'st')::bigint > (remote_row ->> 'st')::bigint) IS DISTINCT FROM (winner = local_origin)")
  [[ $wrong == 0 ]] || { dump; fail "node $n: $wrong rule decisions without both rows or for the lower st"; }
  got=$(node_psql $n -c "SELECT string_agg(key || ':' || coalesce(img ->> 'st', '-'), ' ' ORDER BY key) FROM _odsync_tombstones WHERE tbl = 'public.stock' AND key IN ('1', '3')")
  [[ $got == "1:1000 3:100" ]] || { dump; fail "node $n tombstone images '$got', expected '1:1000 3:100'"; }
done
odsync_stop
! grep -F "could not be ranked" "$LOG" || fail "a delete pair of a table with REPLICA IDENTITY FULL was not ranked"
for t in public.stock public.mesh_marker; do mesh_compare a b $t || fail "nodes differ on $t"; done
log "ok"
