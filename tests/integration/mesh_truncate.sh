#!/usr/bin/env bash
# mesh_truncate.sh — TRUNCATE of a mesh table (docs/MULTI_MASTER.md, "TRUNCATE"): an application's
# TRUNCATE deletes every row it had, as deletes that every node judges like any delete; writes
# concurrent with it that it never saw survive where the policy says so, and keys it never had are
# not touched anywhere.
#
# 2 nodes, last_writer_wins. Rows 1..50 written at a and replicated; odsync stopped; then, in this
# order (distinct commit times):
#   b: UPDATE row 5, INSERT row 200          (concurrent with the truncate, earlier)
#   a: TRUNCATE items                        (T)
#   b: UPDATE row 7, INSERT row 201          (concurrent with T, later)
#   a: INSERT row 300                        (after T, at a)
# Expected on both nodes: 7 (b's value), 200, 201, 300 — row 5 lost to the later truncate, row 7's
# later update wins against it (re-created at a); the other 48 rows gone; one update_delete conflict
# per row 5 and 7 logged at each node with the same winner. Before this, a peer's TRUNCATE was
# applied as a TRUNCATE: b lost 7, 200 and 201, which a kept.
# Then, live: b truncates while odsync runs and a writes a new row after it: both end equal. Last,
# foreign keys: `TRUNCATE parent CASCADE` fails with the key's error and changes nothing anywhere;
# `TRUNCATE child, parent` empties both on both nodes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_truncate
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
mesh_psql_all <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, pid int NOT NULL REFERENCES parent);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.parent, public.child, public.mesh_marker"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
node_psql a -c "INSERT INTO items SELECT g, 'a' || g FROM generate_series(1, 50) g"
mesh_wait_marker 120 a b
[[ $(node_psql b -c "SELECT count(*) FROM items") == 50 ]] || fail "b does not hold a's 50 rows"
for n in a b; do
  [[ $(node_psql $n -c "SELECT count(*) FROM pg_trigger WHERE tgname = '_odsync_truncate' AND tgrelid = 'items'::regclass") == 1 ]] ||
    fail "node $n: no _odsync_truncate trigger on items"
done
odsync_stop

log "concurrent with a's TRUNCATE (odsync stopped)"
tick() { sleep 0.05; } # distinct commit times, in this order
node_psql b -c "UPDATE items SET v = 'b5' WHERE id = 5" >/dev/null
node_psql b -c "INSERT INTO items VALUES (200, 'b200')" >/dev/null
tick
node_psql a -c "TRUNCATE items" >/dev/null
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_tombstones WHERE tbl = 'public.items'") == 50 ]] ||
  fail "a's TRUNCATE left $(node_psql a -c "SELECT count(*) FROM _odsync_tombstones WHERE tbl = 'public.items'") tombstones, expected 50"
tick
node_psql b -c "UPDATE items SET v = 'b7' WHERE id = 7" >/dev/null
node_psql b -c "INSERT INTO items VALUES (201, 'b201')" >/dev/null
node_psql a -c "INSERT INTO items VALUES (300, 'a300')" >/dev/null
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do
  mesh_wait_marker 120 a b
  mesh_wait_marker 120 b a
done
want="7:b7 200:b200 201:b201 300:a300"
for n in a b; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || v, ' ' ORDER BY id), 'none') FROM items")
  [[ $got == "$want" ]] || fail "node $n holds '$got', expected '$want'"
done
mesh_compare a b public.items || fail "a and b differ"
for n in a b; do
  c=$(node_psql $n -c "SELECT coalesce(string_agg(key || ' ' || kind || ' -> ' || winner, '; ' ORDER BY key), 'none') FROM _odsync_conflicts WHERE table_name = 'public.items'")
  log "conflicts at $n: $c"
  [[ $c == "5 update_delete -> a; 7 update_delete -> b" ]] ||
    fail "node $n logged '$c', expected '5 update_delete -> a; 7 update_delete -> b'"
done
grep -q "a TRUNCATE of public.items is not applied as such" "$LOG" || fail "b's sink did not say it skipped a's TRUNCATE"

log "live: b truncates while odsync runs, a writes after it"
node_psql b -c "TRUNCATE items" >/dev/null
mesh_wait_marker 120 b a
node_psql a -c "INSERT INTO items VALUES (400, 'a400')" >/dev/null
mesh_wait_marker 120 a b
for n in a b; do
  got=$(node_psql $n -c "SELECT coalesce(string_agg(id || ':' || v, ' ' ORDER BY id), 'none') FROM items")
  [[ $got == "400:a400" ]] || fail "node $n holds '$got' after b's TRUNCATE, expected '400:a400'"
done
mesh_compare a b public.items || fail "a and b differ after the live TRUNCATE"

log "foreign keys: TRUNCATE parent CASCADE fails and loses nothing; TRUNCATE child, parent works"
node_psql a -c "INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1)" >/dev/null
mesh_wait_marker 120 a b
out=$(node_psql a -c "TRUNCATE parent CASCADE" 2>&1) && fail "TRUNCATE parent CASCADE succeeded on a mesh table with a referencing table"
grep -q 'violates foreign key constraint "child_pid_fkey"' <<<"$out" || fail "TRUNCATE parent CASCADE failed with: $out"
mesh_wait_marker 120 a b
for n in a b; do
  [[ $(node_psql $n -c "SELECT (SELECT count(*) FROM parent) || '/' || (SELECT count(*) FROM child)") == 2/1 ]] ||
    fail "node $n lost rows to the failed TRUNCATE"
done
node_psql a -c "TRUNCATE child, parent" >/dev/null
mesh_wait_marker 120 a b
for n in a b; do
  [[ $(node_psql $n -c "SELECT (SELECT count(*) FROM parent) || '/' || (SELECT count(*) FROM child)") == 0/0 ]] ||
    fail "node $n: TRUNCATE child, parent did not empty both tables"
done
odsync_stop
log "ok"
