#!/usr/bin/env bash
# mesh_composite_key.sh — a 2-node mesh on a table with a two-column primary key (text, int) whose
# text values need quoting in an array literal (comma, double quote, backslash, brace, space).
# The versions query passes the keys as one array parameter per key column (a prepared statement
# per table): this checks that path end to end.
# Asserts:
#  - rows written at a reach b and rows written at b reach a, with no conflict logged (disjoint keys,
#    among them the awkward texts);
#  - batching: 200 single-row transactions at each node while odsync is stopped arrive in at most
#    30 target transactions, no conflict;
#  - a concurrent update/update and insert/insert pair on composite keys (both nodes write while
#    odsync is stopped) is detected at both nodes (one log entry each, the same winner: b, the
#    later writer) and both nodes hold b's values;
#  - a write at b after b received a's write of that row is no conflict, and wins everywhere;
#  - a delete at a of an awkward key reaches b;
#  - both nodes identical row for row (od_compare_pg).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_composite_key
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes a b
for n in a b; do
  node_psql $n <<'SQL'
CREATE TABLE stock (region text, id int, v text, PRIMARY KEY (region, id));
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.stock, public.mesh_marker"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90

conflicts() { node_psql "$1" -c "SELECT coalesce(string_agg(kind || ':' || winner, ',' ORDER BY kind), '') FROM _odsync_conflicts"; }

log "disjoint rows both ways, awkward key texts"
node_psql a <<'SQL'
INSERT INTO stock VALUES ('eu', 1, 'a1'), ('eu', 2, 'a2'), ('a,"b"\c', 1, 'odd-a'), ('{x} y', 1, 'brace-a');
SQL
node_psql b <<'SQL'
INSERT INTO stock VALUES ('us', 1, 'b1'), ('a,"b"\c', 2, 'odd-b'), ('', 3, 'empty-b');
SQL
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
for n in a b; do
  [[ $(node_psql $n -c "SELECT count(*) FROM stock") == 7 ]] || fail "node $n does not hold the 7 rows"
  [[ $(node_psql $n -c "SELECT v FROM stock WHERE region = 'a,\"b\"\\c' AND id = 2") == odd-b ]] ||
    fail "node $n: the awkward key of b is missing"
  [[ -z $(conflicts $n) ]] || fail "node $n logged conflicts for disjoint rows: $(conflicts $n)"
done

log "batching: 200 single-row transactions at each node while odsync is stopped"
odsync_stop
for i in $(seq 100 299); do echo "INSERT INTO stock VALUES ('r \"$((i % 7))\"', $i, 'a');"; done | node_psql a >/dev/null
for i in $(seq 300 499); do echo "INSERT INTO stock VALUES ('r \"$((i % 7))\"', $i, 'b');"; done | node_psql b >/dev/null
log "concurrent: both nodes update (eu, 1) and insert (us, 7) while odsync is stopped"
node_psql a -c "UPDATE stock SET v = 'a-upd' WHERE region = 'eu' AND id = 1"
node_psql a -c "INSERT INTO stock VALUES ('us', 7, 'a-ins')"
node_psql b -c "UPDATE stock SET v = 'b-upd' WHERE region = 'eu' AND id = 1"
node_psql b -c "INSERT INTO stock VALUES ('us', 7, 'b-ins')"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 90
mesh_wait_marker 120 a b
mesh_wait_marker 120 b a
for pair in "a b 100 299" "b a 300 499"; do
  read -r src dst lo hi <<<"$pair"
  [[ $(node_psql $dst -c "SELECT count(*) FROM stock WHERE id BETWEEN $lo AND $hi") == 200 ]] ||
    fail "not all 200 rows of $src reached $dst"
  txns=$(node_psql $dst -c "SELECT count(DISTINCT xmin::text) FROM stock WHERE id BETWEEN $lo AND $hi")
  log "$src -> $dst: 200 source transactions in $txns target transactions"
  ((txns <= 30)) || fail "$src -> $dst: 200 source transactions took $txns target transactions (no batching)"
done
for n in a b; do
  [[ $(node_psql $n -c "SELECT v FROM stock WHERE region = 'eu' AND id = 1") == b-upd ]] ||
    fail "node $n: the later writer (b) did not win (eu, 1)"
  [[ $(node_psql $n -c "SELECT v FROM stock WHERE region = 'us' AND id = 7") == b-ins ]] ||
    fail "node $n: the later writer (b) did not win (us, 7)"
  got=$(conflicts $n)
  [[ $got == "insert_insert:b,update_update:b" ]] || fail "node $n conflict log: '$got' (expected insert_insert:b,update_update:b)"
done

log "causality: b updates a row it received from a; a deletes an awkward key"
node_psql b -c "UPDATE stock SET v = 'b-after' WHERE region = '{x} y' AND id = 1"
mesh_wait_marker 120 b a
[[ $(node_psql a -c "SELECT v FROM stock WHERE region = '{x} y' AND id = 1") == b-after ]] ||
  fail "b's causally later update did not win at a"
node_psql a -c "DELETE FROM stock WHERE region = 'a,\"b\"\\c' AND id = 1"
mesh_wait_marker 120 a b
[[ $(node_psql b -c "SELECT count(*) FROM stock WHERE region = 'a,\"b\"\\c' AND id = 1") == 0 ]] ||
  fail "a's delete of an awkward key did not reach b"
for n in a b; do
  got=$(conflicts $n)
  [[ $got == "insert_insert:b,update_update:b" ]] || fail "node $n logged more conflicts: '$got'"
done
odsync_stop
mesh_compare a b public.stock public.mesh_marker || fail "nodes differ"
log "ok"
