#!/usr/bin/env bash
# mesh_echo.sh — the mesh's output plugin odsync_pgoutput (src/pgplugin; docs/MULTI_MASTER.md,
# "The echo") leaves the echo out at the server, and everything the mesh builds from the dropped
# transactions still works.
#
# Asserts:
#  - with the module loadable (nodes a, b; mesh.output_plugin default auto): both slots are created
#    with odsync_pgoutput, and `odsync check` says so per pipeline; 200 single-row transactions
#    plus one 50-row transaction written at each node while odsync runs, then updates of the other
#    node's rows, all arrive; at stop each source logs the transactions applied at its node by the
#    other pipeline as dropped (> 0: their Begin, Origin, odsync.hlc message and Commit still came)
#    and 0 row changes of them received (the echo never left the server);
#  - the version vectors still work: b's update of a row it received from a is no conflict (no log
#    entry at either node, b's value everywhere), which needs b's stamp to carry a's entry, built
#    from exactly those dropped transactions;
#  - without the module (nodes c, d: not offered to the servers) auto falls back to pgoutput (logged,
#    `odsync check` says so), the same workload converges and the echo is received and dropped:
#    > 0 row changes logged (how many depends on how far the source read before the stop);
#  - odsync_pgoutput refuses an unknown value of its option, and output_plugin: odsync_pgoutput on a
#    server that cannot load it fails with a message naming the module;
#  - both meshes: nodes identical (od_compare_pg), no conflicts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

test_init mesh_echo
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
PLUGIN=${ODSYNC_BUILD_DIR:-}/pgplugin/odsync_pgoutput.so
[[ -f $PLUGIN ]] || fail "odsync_pgoutput not built at $PLUGIN (PostgreSQL server headers missing? apt-get install postgresql-server-dev-15)"

schema() {
  node_psql "$1" <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
SQL
}
# NODE BASE: 200 single-row transactions and one of 50 rows, keys BASE+1.. (disjoint per node)
load() {
  local n=$1 b=$2 i
  for i in $(seq $((b + 1)) $((b + 200))); do echo "INSERT INTO items VALUES ($i, '$n', 0);"; done | node_psql "$n" >/dev/null
  node_psql "$n" -c "INSERT INTO items SELECT g, '$n-bulk', 0 FROM generate_series($((b + 201)), $((b + 250))) g"
}
# "dropped rows" of the source on NODE from the stop log line of pipeline NODE_to_OTHER
echo_line() { { grep -h "mesh echo:" "$1" | grep -F "127.0.0.1:${NODE_PORT[$2]}/" | tail -n 1; } || true; }
run_mesh() { # X Y CONFIG LOG -> the workload through a running mesh, checked
  local x=$1 y=$2 cfg=$3 lg=$4
  odsync_start "$cfg" "$lg"
  mesh_wait_active 90
  load "$x" 1000 &
  local p=$!
  load "$y" 2000
  wait $p
  mesh_wait_marker 180 "$x" "$y"
  mesh_wait_marker 180 "$y" "$x"
  [[ $(node_psql "$y" -c "SELECT count(*) FROM items WHERE id BETWEEN 1001 AND 1250") == 250 ]] || fail "$y lacks rows of $x"
  [[ $(node_psql "$x" -c "SELECT count(*) FROM items WHERE id BETWEEN 2001 AND 2250") == 250 ]] || fail "$x lacks rows of $y"
  log "causality: $y updates rows it received from $x, $x updates rows of $y"
  node_psql "$y" -c "UPDATE items SET v = '$y-after', n = 1 WHERE id BETWEEN 1001 AND 1020"
  node_psql "$x" -c "UPDATE items SET v = '$x-after', n = 1 WHERE id BETWEEN 2001 AND 2020"
  mesh_wait_marker 180 "$y" "$x"
  mesh_wait_marker 180 "$x" "$y"
  [[ $(node_psql "$x" -c "SELECT count(*) FROM items WHERE v = '$y-after'") == 20 ]] || fail "$y's later writes did not win at $x"
  [[ $(node_psql "$y" -c "SELECT count(*) FROM items WHERE v = '$x-after'") == 20 ]] || fail "$x's later writes did not win at $y"
  for n in "$x" "$y"; do
    c=$(node_psql "$n" -c "SELECT count(*) FROM _odsync_conflicts")
    [[ $c == 0 ]] || fail "node $n logged $c conflicts for causally ordered writes: $(node_psql "$n" -c 'TABLE _odsync_conflicts')"
  done
  odsync_stop
  mesh_compare "$x" "$y" public.items public.mesh_marker || fail "nodes $x and $y differ"
}
dropped_of() { sed -E 's/.*mesh echo: ([0-9]+) transactions.*/\1/' <<<"$1"; }
rows_of() { sed -E 's/.* dropped; ([0-9]+) of their row changes.*/\1/' <<<"$1"; }

# ---- with the module ----
mesh_start_nodes a b
schema a; schema b
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.items, public.mesh_marker"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed: $out"
grep -q 'pipeline m_a_to_b: node a will be read through odsync_pgoutput' <<<"$out" ||
  fail "odsync check did not name odsync_pgoutput for m_a_to_b: $out"
run_mesh a b "$CONFIG" "$LOG"
for n in a b; do
  o=b; [[ $n == b ]] && o=a
  p=$(node_psql $n -c "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'odsync_m_${n}_to_${o}'")
  [[ $p == odsync_pgoutput ]] || fail "slot odsync_m_${n}_to_${o} uses '$p', expected odsync_pgoutput"
  line=$(echo_line "$LOG" $n)
  [[ -n $line ]] || fail "no 'mesh echo' line for the source on $n in $LOG"
  log "$n: $line"
  (($(dropped_of "$line") > 0)) || fail "source on $n saw no dropped transactions (Begin/Origin/messages missing?): $line"
  [[ $(rows_of "$line") == 0 ]] || fail "source on $n still received echoed row changes with odsync_pgoutput: $line"
done
grep -q 'slot odsync_m_a_to_b uses the output plugin odsync_pgoutput' "$LOG" || fail "the plugin in use was not logged"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed: $out"
grep -q 'pipeline m_b_to_a: node b is read through odsync_pgoutput (slot odsync_m_b_to_a)' <<<"$out" ||
  fail "odsync check did not report the existing slot's plugin: $out"

log "the module refuses an unknown option value"
node_psql a -c "SELECT pg_create_logical_replication_slot('probe_bad', 'odsync_pgoutput')" >/dev/null
rc=0; msg=$(node_psql a -c "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('probe_bad', NULL, NULL, 'proto_version', '1', 'publication_names', 'odsync_m', 'odsync_origin', 'sometimes')" 2>&1) || rc=$?
((rc != 0)) && grep -q 'invalid value "sometimes" for option odsync_origin' <<<"$msg" || fail "bad option value accepted: $msg"
node_psql a -c "SELECT pg_drop_replication_slot('probe_bad')" >/dev/null

# ---- without the module ----
MESH_NODES=()
ODSYNC_PGPLUGIN=none mesh_start_nodes c d
schema c; schema d
CONFIG2=$TEST_TMP/odsync2.yaml
LOG2=$TEST_TMP/odsync2.log
mesh_config "$CONFIG2" last_writer_wins "public.items, public.mesh_marker"
sed -i "s|^state_dir: .*|state_dir: $TEST_TMP/state2|" "$CONFIG2"
out=$("$ODSYNC_BIN" check -c "$CONFIG2" 2>&1) || fail "odsync check failed: $out"
grep -q 'pipeline m_c_to_d: node c will be read through pgoutput' <<<"$out" ||
  fail "odsync check did not say c falls back to pgoutput: $out"
sed 's/^  policy: .*/&\n  output_plugin: odsync_pgoutput/' "$CONFIG2" >"$TEST_TMP/forced.yaml"
rc=0; out=$("$ODSYNC_BIN" check -c "$TEST_TMP/forced.yaml" 2>&1) || rc=$?
[[ $rc == 1 ]] && grep -q 'error: .*odsync_pgoutput' <<<"$out" || fail "output_plugin: odsync_pgoutput on a node without it was not refused by check (rc $rc): $out"
run_mesh c d "$CONFIG2" "$LOG2"
for n in c d; do
  o=d; [[ $n == d ]] && o=c
  p=$(node_psql $n -c "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'odsync_m_${n}_to_${o}'")
  [[ $p == pgoutput ]] || fail "slot odsync_m_${n}_to_${o} uses '$p', expected pgoutput (fallback)"
  line=$(echo_line "$LOG2" $n)
  log "$n: $line"
  (($(dropped_of "$line") > 0)) || fail "source on $n saw no dropped transactions: $line"
  (($(rows_of "$line") > 0)) || fail "source on $n should have received the echo (row changes > 0) without the module: $line"
done
grep -q 'cannot load the output plugin odsync_pgoutput' "$LOG2" || fail "the fallback to pgoutput was not logged"
log "ok"
