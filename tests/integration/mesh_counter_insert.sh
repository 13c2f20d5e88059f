#!/usr/bin/env bash
# mesh_counter_insert.sh — inserts and deletes of counter rows racing across the mesh
# (docs/MULTI_MASTER.md, "Counter columns": every write adds new − seen to the key's counters on
# every node; a delete removes what its author saw, an insert starts from the balance its author's
# tombstone held). CTRINS_NODES nodes (default 3: a b c; mesh_counter_insert2.sh runs 2), the table's
# policy CTRINS_POLICY (default last_writer_wins; mesh_counter_insert_cm.sh: column_merge, fallback
# last_writer_wins, 3 nodes).
#
# stock(id, name, qty), qty in mesh.counters, REPLICA IDENTITY FULL. odsync is started once (slots,
# triggers) and stopped; then, with nothing replicating:
#  keys 1-3: inserted at every node (one transaction per node), qty 100·k + node number (1, 2, 3);
#  keys 4-5: the same inserts, then every node decrements qty twice (`qty = qty - 1`, a transaction
#    each, nodes interleaved);
#  key 6:    inserted at a only (no conflict: a control);
#  key 7:    inserted at a and at the last node only.
# Then odsync starts with ODSYNC_MESH_TEST_PAUSE_MS (every batch held between its versions read and
# its apply), is SIGKILLed while a sink holds such a batch open (the batch is retried: nothing of it
# may count twice), and is started again. After quiescing: every node holds, for each key, the sum of
# the values inserted minus every decrement, the nodes are identical row for row, and each node logged
# exactly one insert_insert conflict per remote insert that met its live row (keys 1-5: N-1; key 7:
# 1; key 6: none), each listing qty under "counters" in its merged column.
# Phase 2, live: concurrent decrements at every node of keys 1-5 (pgbench), after which the totals
# are exact again; key 6 deleted at b and inserted again at a with qty 500 after the delete had
# reached it (500 everywhere, nothing added).
# Phase 3, delete races (odsync stopped; L = the last node; keys 10, 11, 14-16 hold 100 at every node
# first; later writes win under last_writer_wins):
#  key 10: L takes 5, then a deletes           -> no row anywhere; every tombstone's balance -5
#  key 11: a deletes, then L takes 5           -> the row survives with -5 everywhere (what the
#                                                 delete had not seen)
#  key 12: L inserts 20 and deletes it, then a inserts 10   -> 10 everywhere
#  key 13: a inserts 10, then L inserts 20 and deletes it   -> no row; balances 10
#  key 14: L takes 5, a deletes and inserts 300 -> 295 everywhere
#  key 16: a deletes and inserts 300, L deletes and inserts 800 -> 1000 everywhere (both deletes
#          removed the 100 they saw: documented)
# Then live: key 15 (100) loses 5 at L while a deletes it (odsync stopped), the nodes converge on a
# tombstone with balance -5, and a inserts 50 there: the insert names that balance, so 50
# everywhere and no balance left.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

NN=${CTRINS_NODES:-3}
POLICY=${CTRINS_POLICY:-last_writer_wins}
TXNS=${CTRINS_TXNS:-100}
ALL=(a b c)
NODES=("${ALL[@]:0:$NN}")
LAST=${NODES[$((NN - 1))]}
suffix=$NN
[[ $POLICY == column_merge ]] && suffix+=_cm
test_init "mesh_counter_insert$suffix"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes "${NODES[@]}"
for n in "${NODES[@]}"; do
  node_psql $n <<'SQL'
CREATE TABLE stock (id int PRIMARY KEY, name text, qty int NOT NULL);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
extra="  counters: [public.stock.qty]"
[[ $POLICY == column_merge ]] && extra+="
  policies: { public.stock: { policy: column_merge, fallback: last_writer_wins } }"
mesh_config "$CONFIG" last_writer_wins "public.stock, public.mesh_marker" "$extra"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check failed: $out"
odsync_start "$CONFIG" "$LOG" # slots and triggers exist from here on
mesh_wait_active 120
odsync_stop

quiesce() { mesh_quiesce 300 "${NODES[@]}"; }
same_everywhere() { mesh_same_everywhere "$1" public.stock "${NODES[@]}"; }
# the rows of keys $1..$2 at node $3 as "id:qty ..."
rows() { node_psql "$3" -c "SELECT coalesce(string_agg(id || ':' || qty, ' ' ORDER BY id), '') FROM stock WHERE id BETWEEN $1 AND $2"; }

# ---- phase 1: concurrent inserts, odsync stopped ----
declare -A WANT
i=0
for n in "${NODES[@]}"; do
  i=$((i + 1))
  mesh_step $n -c "INSERT INTO stock SELECT k, 'name-$n', 100 * k + $i FROM generate_series(1, 3) k"
  mesh_step $n -c "INSERT INTO stock VALUES (4, 'name-$n', 400 + $i)"
  mesh_step $n -c "INSERT INTO stock VALUES (5, 'name-$n', 500 + $i)"
  for k in 1 2 3 4 5; do WANT[$k]=$((${WANT[$k]:-0} + 100 * k + i)); done
done
for round in 1 2; do
  for n in "${NODES[@]}"; do mesh_step $n -c "UPDATE stock SET qty = qty - 1 WHERE id IN (4, 5)"; done
done
WANT[4]=$((WANT[4] - 2 * NN))
WANT[5]=$((WANT[5] - 2 * NN))
mesh_step a -c "INSERT INTO stock VALUES (6, 'only-a', 600)"
WANT[6]=600
mesh_step a -c "INSERT INTO stock VALUES (7, 'name-a', 701)"
mesh_step "$LAST" -c "INSERT INTO stock VALUES (7, 'name-$LAST', 770)"
WANT[7]=$((701 + 770))
want=""
for k in 1 2 3 4 5 6 7; do want+="${want:+ }$k:${WANT[$k]}"; done

# a first run SIGKILLed while a sink holds a decided batch open: the retried batch counts once
mesh_kill9_while_held "$CONFIG" "$LOG"
quiesce
for n in "${NODES[@]}"; do
  got=$(rows 1 7 $n)
  log "node $n: $got"
  [[ $got == "$want" ]] || fail "node $n holds '$got', expected '$want' (the sum of the inserts per key)"
done
same_everywhere "phase 1"
for n in "${NODES[@]}"; do
  log "node $n conflicts: $(node_psql $n -c "SELECT string_agg(s, ', ' ORDER BY s) FROM (SELECT kind || '/' || policy || ' x' || count(*) AS s FROM _odsync_conflicts WHERE table_name = 'public.stock' GROUP BY kind, policy) c")"
  for k in 1 2 3 4 5 6 7; do
    w=$((NN - 1))
    ((k == 6)) && w=0
    ((k == 7)) && w=1
    got=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND key = '$k' AND kind = 'insert_insert'")
    [[ $got == "$w" ]] || fail "node $n: $got insert_insert conflicts logged for key $k, expected $w"
    got=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND key = '$k' AND kind = 'insert_insert' AND merged -> 'counters' ? 'qty'")
    [[ $got == "$w" ]] || fail "node $n: $got insert_insert conflicts of key $k list qty under merged counters, expected $w"
  done
done

# ---- phase 2: live, concurrent decrements of the merged rows; a causally seen re-insert ----
printf '%s\n' '\set k random(1, 5)' 'UPDATE stock SET qty = qty - 1 WHERE id = :k;' >"$TEST_TMP/dec.sql"
base=$(node_psql a -c "SELECT sum(qty) FROM stock WHERE id BETWEEN 1 AND 5")
pids=()
for n in "${NODES[@]}"; do
  pgbench -n -h 127.0.0.1 -p "${NODE_PORT[$n]}" -U postgres -c 2 -j 1 -t "$TXNS" -f "$TEST_TMP/dec.sql" shop \
    >"$TEST_TMP/pgbench_$n.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "pgbench failed: $(tail -n 5 "$TEST_TMP"/pgbench_*.log)"; done
mesh_step b -c "DELETE FROM stock WHERE id = 6"
quiesce
mesh_step a -c "INSERT INTO stock VALUES (6, 'again', 500)"
quiesce
same_everywhere "phase 2"
for n in "${NODES[@]}"; do
  got=$(node_psql $n -c "SELECT sum(qty) FROM stock WHERE id BETWEEN 1 AND 5")
  [[ $got == $((base - NN * 2 * TXNS)) ]] || fail "node $n: total qty of keys 1-5 $got, expected $((base - NN * 2 * TXNS))"
  six=$(rows 6 6 $n)
  [[ $six == "6:500" ]] || fail "node $n: key 6 after delete and re-insert holds '$six', expected 6:500"
done

# ---- phase 3: delete races ----
# the tombstone balance of key $1 at node $2 ("" none)
bal() { node_psql "$2" -c "SELECT coalesce(ctr ->> 'qty', '') FROM _odsync_tombstones WHERE tbl = 'public.stock' AND key = '$1'"; }
mesh_step a -c "INSERT INTO stock SELECT k, 'race', 100 FROM unnest(ARRAY[10, 11, 14, 15, 16]) k"
quiesce
odsync_stop
L=$LAST
mesh_step $L -c "UPDATE stock SET qty = qty - 5 WHERE id = 10"
mesh_step a -c "DELETE FROM stock WHERE id = 10"
mesh_step a -c "DELETE FROM stock WHERE id = 11"
mesh_step $L -c "UPDATE stock SET qty = qty - 5 WHERE id = 11"
mesh_step $L -c "INSERT INTO stock VALUES (12, 'L', 20)"
mesh_step $L -c "DELETE FROM stock WHERE id = 12"
mesh_step a -c "INSERT INTO stock VALUES (12, 'a', 10)"
mesh_step a -c "INSERT INTO stock VALUES (13, 'a', 10)"
mesh_step $L -c "INSERT INTO stock VALUES (13, 'L', 20)"
mesh_step $L -c "DELETE FROM stock WHERE id = 13"
mesh_step $L -c "UPDATE stock SET qty = qty - 5 WHERE id = 14"
mesh_step a -c "DELETE FROM stock WHERE id = 14"
mesh_step a -c "INSERT INTO stock VALUES (14, 'a', 300)"
mesh_step $L -c "UPDATE stock SET qty = qty - 5 WHERE id = 15"
mesh_step a -c "DELETE FROM stock WHERE id = 15"
mesh_step a -c "DELETE FROM stock WHERE id = 16"
mesh_step a -c "INSERT INTO stock VALUES (16, 'a', 300)"
mesh_step $L -c "DELETE FROM stock WHERE id = 16"
mesh_step $L -c "INSERT INTO stock VALUES (16, 'L', 800)"
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
quiesce
same_everywhere "phase 3"
for n in "${NODES[@]}"; do
  got=$(rows 10 16 $n)
  log "node $n: $got; balances 10:$(bal 10 $n) 13:$(bal 13 $n) 15:$(bal 15 $n)"
  [[ $got == "11:-5 12:10 14:295 16:1000" ]] || fail "node $n holds '$got', expected '11:-5 12:10 14:295 16:1000'"
  [[ $(bal 10 $n) == -5 ]] || fail "node $n: key 10's tombstone balance '$(bal 10 $n)', expected -5"
  [[ $(bal 13 $n) == 10 ]] || fail "node $n: key 13's tombstone balance '$(bal 13 $n)', expected 10"
  [[ $(bal 15 $n) == -5 ]] || fail "node $n: key 15's tombstone balance '$(bal 15 $n)', expected -5"
done
# an insert where the author's tombstone holds a balance starts from it
mesh_step a -c "INSERT INTO stock VALUES (15, 'again', 50)"
quiesce
same_everywhere "phase 3, key 15 again"
for n in "${NODES[@]}"; do
  [[ $(rows 15 15 $n) == "15:50" ]] || fail "node $n: key 15 holds '$(rows 15 15 $n)', expected 15:50"
  [[ -z $(bal 15 $n) ]] || fail "node $n: key 15's tombstone kept the balance '$(bal 15 $n)' after the re-insert"
done
odsync_stop
log "ok"
