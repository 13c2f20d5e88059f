#!/usr/bin/env bash
# mesh_hlc_skew.sh — hybrid logical clocks order concurrent writes under real clock skew (3 nodes).
#
# Node c's PostgreSQL runs with its wall clock one hour behind (LD_PRELOAD of
# tests/tools/preload/clockshift.c, built here: its commit timestamps really come from a skewed
# clock; odsync is not told). Scenario on row 1 of items:
#   B: b updates the row while b is cut off (odsync stopped);
#   A: a updates it later (a 2-node mesh a <-> c runs, same pipelines, b's stay idle);
#   C: c updates it after it applied A (C causally follows A), still without B;
#   then the whole mesh runs. Commit times: C (c's clock) < B < A, so ordering by commit time
#   (the old rule) diverges: b applies A over B (A later) and then C (C saw A: no conflict), while
#   a and c keep C until B arrives and B beats C (C's commit time is earlier) — b ends with C,
#   a and c with B. With hybrid logical clocks hlc(C) > hlc(A) > hlc(B): C wins everywhere.
# Row 2 (written first at c) the same way, B2 at b with B, and C2 at c after odsync restarted with
# c's stream towards a starting after the transaction that applied A at c: that reader takes A's
# clock from _odsync_hlc (persisted state), the reader towards b from the stream, c's sink from SQL;
# all three must give C2 the same lifted hlc.
# Asserts: the skew is real (c's now() and C's commit time an hour behind), C applied at a with no
# conflict (causal), all three nodes identical with C's row, exactly one update_update conflict per
# node (b: A beats B; a and c: C beats B) whose local_hlc/remote_hlc are the versions' clocks, C's
# hlc the same at every node (conflict logs of a and c, _odsync_versions of a and b) and above
# both A's hlc and its own commit time (also as `odsync conflicts` prints it); a restart of odsync
# in between changes nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

SKEW_US=-3600000000 # node c: one hour behind
test_init mesh_hlc_skew
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
SRC_DIR=${ODSYNC_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SHIM=$TEST_TMP/clockshift.so
${CC:-cc} -shared -fPIC -O2 -o "$SHIM" "$SRC_DIR/tests/tools/preload/clockshift.c" -ldl ||
  fail "cannot build the clock-shift library"
chmod 711 "$TEST_TMP" # the server user loads it
chmod 755 "$SHIM"
mesh_start_nodes a b
OD_CLOCK_SHIFT_US=$SKEW_US LD_PRELOAD=$SHIM mesh_start_nodes c
for n in a b c; do
  node_psql $n <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
done
us() { node_psql "$1" -c "SELECT (extract(epoch FROM $2) * 1000000)::int8"; }
skew=$(($(us c 'now()') - $(us a 'now()')))
log "node c's clock is ${skew} µs off node a's"
((skew < -3500000000 && skew > -3700000000)) || fail "node c's clock is not an hour behind (${skew} µs)"

CONFIG=$TEST_TMP/odsync.yaml
CONFIG_AC=$TEST_TMP/odsync_ac.yaml
LOG=$TEST_TMP/odsync.log
TABLES="public.items, public.mesh_marker"
mesh_config "$CONFIG" last_writer_wins "$TABLES"
MESH_NODES=(a c)
mesh_config "$CONFIG_AC" last_writer_wins "$TABLES"
MESH_NODES=(a b c)

log "the mesh starts (slots and origins everywhere)"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
node_psql a -c "INSERT INTO items VALUES (1, 'init', 0)" # one version (a's) on every node
node_psql c -c "INSERT INTO items VALUES (2, 'init', 0)" # one version (c's) on every node
mesh_wait_marker 120 a b; mesh_wait_marker 120 b c; mesh_wait_marker 120 c a; mesh_wait_marker 120 a c
for n in a b c; do
  [[ $(node_psql $n -c "SELECT string_agg(v, ',' ORDER BY id) FROM items") == init,init ]] || fail "the first rows did not reach $n"
done
odsync_stop

log "B and B2 at b, cut off"
node_psql b -c "UPDATE items SET v = 'B', n = 2 WHERE id = 1"
node_psql b -c "UPDATE items SET v = 'B2', n = 2 WHERE id = 2"
log "A at a, then C at c after c applied A (a 2-node mesh a <-> c)"
MESH_NODES=(a c)
odsync_start "$CONFIG_AC" "$LOG"
mesh_wait_active 120
node_psql a -c "UPDATE items SET v = 'A', n = 1 WHERE id = 1"
wait_for '[[ $(node_psql c -c "SELECT v FROM items WHERE id = 1") == A ]]' 120 || fail "A did not reach c"
ts_a=$(node_psql a -c "SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 FROM items WHERE id = 1")
node_psql c -c "UPDATE items SET v = 'C', n = 3 WHERE id = 1"
mesh_wait_marker 120 c a
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 1") == C ]] || fail "C did not reach a"
[[ $(node_psql a -c "SELECT count(*) FROM _odsync_conflicts") == 0 ]] ||
  fail "C (which saw A) was logged as a conflict at a: $(node_psql a -c 'SELECT * FROM _odsync_conflicts')"
log "restart: c's stream towards a now starts after A's application at c; C2 at c"
odsync_stop
odsync_start "$CONFIG_AC" "$LOG"
mesh_wait_active 120
node_psql c -c "UPDATE items SET v = 'C2', n = 3 WHERE id = 2"
mesh_wait_marker 120 c a
[[ $(node_psql a -c "SELECT v FROM items WHERE id = 2") == C2 ]] || fail "C2 did not reach a"
odsync_stop
MESH_NODES=(a b c)

cts() { node_psql "$1" -c "SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 FROM items WHERE id = $2"; }
ts_b=$(cts b 1); ts_c=$(cts c 1); ts_b2=$(cts b 2); ts_c2=$(cts c 2)
log "commit times: A $ts_a, B $ts_b, C $ts_c, B2 $ts_b2, C2 $ts_c2"
((ts_c < ts_b && ts_b < ts_a)) || fail "the scenario needs C < B < A in commit time (skew not effective)"
((ts_c2 < ts_b2)) || fail "the scenario needs C2 < B2 in commit time (skew not effective)"

log "the whole mesh runs: B meets A and C"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
for round in 1 2; do
  mesh_wait_marker 120 a b; mesh_wait_marker 120 b c; mesh_wait_marker 120 c a
  mesh_wait_marker 120 a c; mesh_wait_marker 120 c b; mesh_wait_marker 120 b a
  ((round == 1)) && { log "restart odsync"; odsync_stop; odsync_start "$CONFIG" "$LOG"; mesh_wait_active 120; }
done
rows() { node_psql "$1" -c "SELECT string_agg(v, ',' ORDER BY id) FROM items"; }
for n in a b c; do log "node $n: $(rows $n)"; done
mesh_compare a b public.items || fail "a and b differ: a has $(rows a), b has $(rows b)"
mesh_compare a c public.items || fail "a and c differ: a has $(rows a), c has $(rows c)"
[[ $(rows a) == C,C2 ]] || fail "the nodes converged on $(rows a), not on C,C2 (the causally latest writes)"

log "conflict logs"
conf() { node_psql "$1" -c "SELECT kind, local_origin, remote_origin, winner, local_hlc, remote_hlc,
  (extract(epoch FROM local_commit_ts) * 1000000)::int8, (extract(epoch FROM remote_commit_ts) * 1000000)::int8
  FROM _odsync_conflicts WHERE key = '${2:-1}'"; }
for n in a b c; do log "node $n: $(conf $n 1 | tr '\n' ';') $(conf $n 2 | tr '\n' ';')"; done
for n in a b c; do
  [[ $(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts") == 2 ]] ||
    fail "node $n: expected one conflict per row: $(node_psql $n -c 'SELECT * FROM _odsync_conflicts')"
done
IFS='|' read -r kind lo ro win lh rh lt rt <<<"$(conf b)"
[[ "$kind $lo $ro $win" == "update_update b a a" ]] || fail "node b: expected A to beat B: $(conf b)"
[[ $lh == "$ts_b" && $rh == "$ts_a" && $lt == "$ts_b" && $rt == "$ts_a" ]] ||
  fail "node b: the hlcs of A and B are their commit times (a and b are not skewed): $(conf b)"
hlc_c=
for n in a c; do
  IFS='|' read -r kind lo ro win lh rh lt rt <<<"$(conf $n)"
  [[ "$kind $lo $ro $win" == "update_update c b c" ]] || fail "node $n: expected C to beat B: $(conf $n)"
  [[ $rh == "$ts_b" && $lt == "$ts_c" && $rt == "$ts_b" ]] || fail "node $n: wrong versions logged: $(conf $n)"
  ((lh > ts_a && lh > ts_c + 3000000000)) || fail "node $n: C's hlc $lh is not past A's ($ts_a)"
  [[ -z $hlc_c || $hlc_c == "$lh" ]] || fail "C's hlc differs between nodes: $hlc_c and $lh"
  hlc_c=$lh
done
for n in a b; do
  v=$(node_psql $n -c "SELECT node || ' ' || ts || ' ' || hlc FROM _odsync_versions WHERE tbl = 'public.items' AND key = '1'")
  [[ $v == "c $ts_c $hlc_c" ]] || fail "node $n: _odsync_versions of the row is '$v', expected 'c $ts_c $hlc_c'"
done
log "C: commit time $ts_c, hlc $hlc_c (A: $ts_a, B: $ts_b)"
# C2: its hlc from the reader that started after A's application (a), the one that read A's
# message in its stream (b), and c's sink (SQL over _odsync_hlc) — one value
IFS='|' read -r kind lo ro win lh rh lt rt <<<"$(conf b 2)"
[[ "$kind $lo $ro $win" == "update_update b c c" && $lh == "$ts_b2" && $lt == "$ts_b2" && $rt == "$ts_c2" ]] ||
  fail "node b: expected C2 to beat B2: $(conf b 2)"
hlc_c2=$rh
((hlc_c2 > ts_a && hlc_c2 > ts_c2 + 3000000000)) || fail "node b: C2's hlc $hlc_c2 is not past A's ($ts_a)"
for n in a c; do
  IFS='|' read -r kind lo ro win lh rh lt rt <<<"$(conf $n 2)"
  [[ "$kind $lo $ro $win" == "update_update c b c" && $rh == "$ts_b2" && $lt == "$ts_c2" && $rt == "$ts_b2" ]] ||
    fail "node $n: expected C2 to beat B2: $(conf $n 2)"
  [[ $lh == "$hlc_c2" ]] || fail "node $n: C2's hlc is $lh, node b's stamp said $hlc_c2"
done
for n in a b; do
  v=$(node_psql $n -c "SELECT node || ' ' || ts || ' ' || hlc FROM _odsync_versions WHERE tbl = 'public.items' AND key = '2'")
  [[ $v == "c $ts_c2 $hlc_c2" ]] || fail "node $n: _odsync_versions of row 2 is '$v', expected 'c $ts_c2 $hlc_c2'"
done
log "C2: commit time $ts_c2, hlc $hlc_c2 (B2: $ts_b2)"
[[ $(node_psql c -c "SELECT count(*) FROM _odsync_hlc WHERE hlc >= $ts_a") -ge 1 ]] ||
  fail "node c (clock behind) did not record A's clock in _odsync_hlc"
hm() { node_psql a -c "SELECT to_char('1970-01-01 00:00:00+00'::timestamptz + $1 * interval '1 microsecond', 'HH24:MI:SS.US')"; }
out=$("$ODSYNC_BIN" conflicts -c "$CONFIG") || fail "odsync conflicts failed: $out"
echo "$out"
want="local c@$(hm "$ts_c") (hlc $(hm "$hlc_c")) vs remote b@$(hm "$ts_b") (hlc $(hm "$ts_b")) -> c wins"
[[ $(grep -cF "$want" <<<"$out") == 2 ]] || fail "odsync conflicts does not show C's clock at a and c: expected '$want' twice"
odsync_stop
log "ok"
