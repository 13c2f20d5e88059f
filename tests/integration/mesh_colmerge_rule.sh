#!/usr/bin/env bash
# mesh_colmerge_rule.sh — column rules on a column_merge table order one column's concurrent writes in
# place of the fallback (docs/MULTI_MASTER.md, "Business rules and column_merge"), on the live row,
# in a re-creation from a tombstone and in a tombstone's last row; 2 nodes, fallback last_writer_wins,
# rules "public.items.ver: higher wins" and "public.items.st: new < paid < shipped".
#
# With odsync stopped (after a first start installed the triggers and replicated rows 1-5), each step
# a little later than the one before (so the later write has the later clock):
#  row 1: a sets ver 3, x; b sets ver 2, y, then ver 3, x. A rule deciding whole pairs ended with
#         a (3, xB2, y0) and b (3, xB2, yB) (seen on 2026-12-04); now every column is a register:
#         ver 3, x = xB2 (equal ranks: the later writer), y = yB (only b wrote it) on both nodes;
#  row 2: a sets st shipped, b later paid: shipped wins (the clock alone would take paid);
#  row 3: a sets st shipped and deletes the row; b later sets st paid and y: b's update beats the
#         delete (later) and re-creates the row at a, where shipped must stay (the rule ranks it above
#         paid, as it does on b's live row): (shipped, yB3) on both;
#  row 4: b sets st shipped; a later sets st paid and deletes the row: the delete wins everywhere,
#         and the tombstone's last row holds st shipped on both nodes (b's losing write still wins
#         the column at a, by the rule);
#  row 5: a sets st NULL (later), b paid: a value the rule cannot rank ranks below: paid.
# Afterwards both nodes hold the same rows; the conflict logs list st under "rule" for row 2.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_colmerge_rule
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, ver int NOT NULL, st text, x text, y text);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE items REPLICA IDENTITY FULL;
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" column_merge "public.items, public.mesh_marker" '  fallback: last_writer_wins
  rules: ["public.items.ver: higher wins", "public.items.st: new < paid < shipped"]'
odsync_start "$CONFIG" "$LOG" # slots, tombstone and column-version triggers exist from here on
mesh_wait_active 120
node_psql a -c "INSERT INTO items SELECT g, 1, 'new', 'x0', 'y0' FROM generate_series(1, 5) g"
mesh_wait_marker 120 a b
odsync_stop
tick() { sleep 0.05; } # distinct commit times, in this order
on() { node_psql "$1" -c "$2" >/dev/null; tick; }
on a "UPDATE items SET ver = 3, x = 'xA' WHERE id = 1"
on b "UPDATE items SET ver = 2, y = 'yB' WHERE id = 1"
on b "UPDATE items SET ver = 3, x = 'xB2' WHERE id = 1"
on a "UPDATE items SET st = 'shipped' WHERE id = 2"
on b "UPDATE items SET st = 'paid' WHERE id = 2"
on a "UPDATE items SET st = 'shipped' WHERE id = 3"
on a "DELETE FROM items WHERE id = 3"
on b "UPDATE items SET st = 'paid', y = 'yB3' WHERE id = 3"
on b "UPDATE items SET st = 'shipped' WHERE id = 4"
on a "UPDATE items SET st = 'paid' WHERE id = 4"
on a "DELETE FROM items WHERE id = 4"
on b "UPDATE items SET st = 'paid' WHERE id = 5"
on a "UPDATE items SET st = NULL WHERE id = 5"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do mesh_wait_marker 120 a b; mesh_wait_marker 120 b a; done
want="1:3:new:xB2:yB 2:1:shipped:x0:y0 3:1:shipped:x0:yB3 5:1:paid:x0:y0"
for n in a b; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, ver, coalesce(st, 'NULL'), x, y), ' ' ORDER BY id) FROM items")
  [[ $got == "$want" ]] ||
    fail "node $n holds '$got', expected '$want' ($(node_psql $n -c "SELECT string_agg(key || ' ' || kind || ' ' || policy || ' ' || winner || ' ' || coalesce(merged::text, '-'), '; ' ORDER BY id) FROM _odsync_conflicts"))"
  img=$(node_psql $n -c "SELECT img ->> 'st' FROM _odsync_tombstones WHERE tbl = 'public.items' AND key = '4'")
  [[ $img == shipped ]] || fail "node $n: row 4's tombstone holds st '$img', expected shipped"
  ruled=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.items' AND key = '2' AND policy = 'column_merge' AND merged -> 'rule' ? 'st'")
  [[ $ruled == 1 ]] || fail "node $n: row 2's conflict does not list st under rule: $(node_psql $n -c "SELECT merged FROM _odsync_conflicts WHERE key = '2'")"
done
mesh_compare a b public.items || fail "a and b differ"
log "conflicts at a: $(node_psql a -c "SELECT string_agg(key || ' ' || kind || ' -> ' || winner || ' ' || coalesce(merged::text, '-'), '; ' ORDER BY id) FROM _odsync_conflicts")"
odsync_stop
log "ok"
