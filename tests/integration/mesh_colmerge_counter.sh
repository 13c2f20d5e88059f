#!/usr/bin/env bash
# mesh_colmerge_counter.sh — a counter column on a column_merge table (docs/MULTI_MASTER.md, "Counters on
# a column_merge table"): qty is merged as a sum of deltas from every node, the other columns by column
# (fallback last_writer_wins). CMC_NODES nodes (default 3: a b c; mesh_colmerge_counter2.sh runs 2).
#
# stock(id, name, price, tag, qty, n_<node> per node), REPLICA IDENTITY FULL, 7 rows of qty 10000.
#
# Phase 1, deterministic (odsync stopped after a first start installed the triggers), in this order:
#  row 1: every node decrements qty; a sets name, b sets price (disjoint columns; c sets tag);
#  row 2: every node decrements qty and sets name (overlapping: the last writer, the last node, wins);
#  row 3: a updates qty three times in one transaction (-2, +1 with tag, -3: every delta counts, not
#    only the first), b decrements it once;
#  row 6: a decrements qty, b then deletes the row, c (on 2 nodes: a) then decrements it: the last
#    decrement wins against the delete and the row stays with what the delete had not seen, qty -2
#    (the delete removed the 10000 it saw; where it came first, the row is re-created from the
#    tombstone's balance plus the delta: "Counter columns");
#  row 7: every node but b decrements qty, then b deletes it: gone everywhere, every tombstone's
#    balance -(N - 1) (the decrements the delete had not seen).
#  On 3 nodes a and b replicate alone first (b's delete of row 6 wins at a before c's decrement
#  arrives: there and at b c's decrement re-creates the row from the tombstone), then all three.
#  Then: every node holds exactly the expected rows (row 1 keeps a's name, b's price and c's tag, qty
#  10000 - N; row 2 the last node's name, qty 10000 - N; row 3 qty 10000 - 5; row 6 qty -2; no row 7),
#  identical row for row,
#  and each node logged column_merge conflicts whose merged column lists qty under "counters" and
#  never under remote/local/both, and name under "both" for row 2.
# Phase 2, live: pgbench at every node, 2 clients x CMC_TXNS transactions each of which decrements qty
#  of a random row once (net; some as -2 then +1 in one transaction), adds 1 to the node's own column
#  n_<node> (disjoint) and sometimes sets tag (overlapping), with a SIGKILL of odsync in the middle.
#  Afterwards: all nodes identical row for row, sum(qty) exact, every sum(n_<node>) exactly that node's
#  transactions (no disjoint column change lost), concurrent updates detected (counters listed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/mesh.sh"

NN=${CMC_NODES:-3}
TXNS=${CMC_TXNS:-200}
ALL=(a b c)
NODES=("${ALL[@]:0:$NN}")
LAST=${NODES[$((NN - 1))]}
test_init "mesh_colmerge_counter$NN"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"
mesh_start_nodes "${NODES[@]}"
owncols=""
for n in "${NODES[@]}"; do owncols+=", n_$n int NOT NULL DEFAULT 0"; done
for n in "${NODES[@]}"; do
  node_psql $n <<SQL
CREATE TABLE stock (id int PRIMARY KEY, name text, price int, tag text, qty int NOT NULL$owncols);
ALTER TABLE stock REPLICA IDENTITY FULL;
CREATE TABLE mesh_marker (id text PRIMARY KEY, n int);
ALTER TABLE mesh_marker REPLICA IDENTITY FULL;
INSERT INTO stock (id, name, price, tag, qty) SELECT g, 'init', 100, 'init', 10000 FROM generate_series(1, 7) g;
SQL
done
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log
mesh_config "$CONFIG" last_writer_wins "public.stock, public.mesh_marker" \
  "  counters: [public.stock.qty]
  policies: { public.stock: { policy: column_merge, fallback: last_writer_wins } }"
out=$("$ODSYNC_BIN" check -c "$CONFIG" 2>&1) || fail "odsync check refused counters on a column_merge table: $out"
odsync_start "$CONFIG" "$LOG" # slots, tombstone and column-version triggers exist from here on
mesh_wait_active 120
odsync_stop

quiesce() { mesh_quiesce 300 "${NODES[@]}"; }
same_everywhere() { mesh_same_everywhere "$1" public.stock "${NODES[@]}"; }

# ---- phase 1: deterministic ----
for n in "${NODES[@]}"; do
  case $n in
    a) other="name = 'name-a'" ;;
    b) other="price = 222" ;;
    c) other="tag = 'tag-c'" ;;
  esac
  mesh_step $n -c "UPDATE stock SET qty = qty - 1, $other WHERE id = 1"
  mesh_step $n -c "UPDATE stock SET qty = qty - 1, name = 'name2-$n' WHERE id = 2"
done
mesh_step a -c "BEGIN; UPDATE stock SET qty = qty - 2 WHERE id = 3; UPDATE stock SET qty = qty + 1, tag = 'two' WHERE id = 3; UPDATE stock SET qty = qty - 3 WHERE id = 3; COMMIT"
mesh_step b -c "UPDATE stock SET qty = qty - 1 WHERE id = 3"
# row 6: a delete between two concurrent decrements (a's, then b deletes, then c's — a's again on 2
# nodes): the later decrement beats the delete, the row stays with what the delete had not seen
mesh_step a -c "UPDATE stock SET qty = qty - 1 WHERE id = 6"
mesh_step b -c "DELETE FROM stock WHERE id = 6"
mesh_step "${NODES[$((NN == 2 ? 0 : 2))]}" -c "UPDATE stock SET qty = qty - 1 WHERE id = 6"
# row 7: concurrent decrements, then a later delete: gone everywhere
for n in "${NODES[@]}"; do [[ $n == b ]] || mesh_step $n -c "UPDATE stock SET qty = qty - 1 WHERE id = 7"; done
mesh_step b -c "DELETE FROM stock WHERE id = 7"
if ((NN >= 3)); then
  # a and b first, alone (a mesh of a and b; c's writes wait): at a, b's delete of row 6 wins against
  # a's decrement before c's arrives, so c's decrement re-creates the row from the tombstone at a and b
  ALLN=("${MESH_NODES[@]}")
  MESH_NODES=(a b)
  mesh_config "$TEST_TMP/ab.yaml" last_writer_wins "public.stock, public.mesh_marker" \
    "  counters: [public.stock.qty]
  policies: { public.stock: { policy: column_merge, fallback: last_writer_wins } }"
  odsync_start "$TEST_TMP/ab.yaml" "$LOG"
  mesh_wait_active 120
  NODES=(a b)
  quiesce
  NODES=("${ALLN[@]}")
  odsync_stop
  [[ $(node_psql a -c "SELECT count(*) FROM stock WHERE id = 6") == 0 ]] || fail "a still holds row 6 after b's delete"
  MESH_NODES=("${ALLN[@]}")
fi
odsync_start "$CONFIG" "$LOG"
mesh_wait_active 120
quiesce
tag1=init
((NN >= 3)) && tag1=tag-c
want="1:name-a:222:$tag1:$((10000 - NN)) 2:name2-$LAST:100:init:$((10000 - NN)) 3:init:100:two:9995 6:init:100:init:-2"
for n in "${NODES[@]}"; do
  got=$(node_psql $n -c "SELECT string_agg(concat_ws(':', id, name, price, tag, qty), ' ' ORDER BY id) FROM stock WHERE id NOT IN (4, 5)")
  [[ $got == "$want" ]] || fail "node $n holds '$got', expected '$want' ($(node_psql $n -c "SELECT string_agg(key || ' ' || kind || ' ' || policy || ' ' || winner || ' ' || coalesce(merged::text, '-'), '; ' ORDER BY id) FROM _odsync_conflicts"))"
done
same_everywhere "phase 1"
# row 7's tombstone holds the same balance everywhere (the decrements the delete had not seen, added
# there where they lost to it): a later re-creation starts from the same value on every node
for n in "${NODES[@]}"; do
  bal=$(node_psql $n -c "SELECT ctr ->> 'qty' FROM _odsync_tombstones WHERE tbl = 'public.stock' AND key = '7'")
  [[ $bal == $((-(NN - 1))) ]] || fail "node $n: row 7's tombstone holds the balance '$bal', expected $((-(NN - 1)))"
done
for n in "${NODES[@]}"; do
  ctr=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND key = '1' AND policy = 'column_merge' AND merged -> 'counters' ? 'qty'")
  bad=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND (merged -> 'remote' ? 'qty' OR merged -> 'local' ? 'qty' OR merged -> 'both' ? 'qty' OR (key = '1' AND merged -> 'both' <> '[]'::jsonb))")
  both=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND key = '2' AND policy = 'column_merge' AND merged -> 'both' ? 'name' AND merged -> 'counters' ? 'qty'")
  log "node $n: row 1 merges listing qty as a counter: $ctr; row 2 merges of name: $both"
  ((ctr >= 1)) || fail "node $n logged no column_merge conflict with qty under counters for row 1"
  ((both >= 1)) || fail "node $n logged no column_merge conflict on name (both) for row 2"
  ((bad == 0)) || fail "node $n logged qty as a merged column or row 1's disjoint columns as overlapping: $(node_psql $n -c "SELECT string_agg(key || ' ' || merged::text, '; ') FROM _odsync_conflicts")"
done

# ---- phase 2: live, with a SIGKILL ----
for n in "${NODES[@]}"; do
  printf '%s\n' '\set k random(1, 5)' "UPDATE stock SET qty = qty - 1, n_$n = n_$n + 1 WHERE id = :k;" >"$TEST_TMP/own_$n.sql"
  printf '%s\n' '\set k random(1, 5)' '\set r random(1, 1000000)' \
    "UPDATE stock SET qty = qty - 1, n_$n = n_$n + 1, tag = '$n-' || :r WHERE id = :k;" >"$TEST_TMP/tag_$n.sql"
  printf '%s\n' '\set k random(1, 5)' 'BEGIN;' "UPDATE stock SET qty = qty - 2 WHERE id = :k;" \
    "UPDATE stock SET qty = qty + 1, n_$n = n_$n + 1 WHERE id = :k;" 'COMMIT;' >"$TEST_TMP/two_$n.sql"
done
base=$(node_psql a -c "SELECT sum(qty) FROM stock")
load() {
  local pids=() n rc=0
  for n in "${NODES[@]}"; do
    pgbench -n -h 127.0.0.1 -p "${NODE_PORT[$n]}" -U postgres -c 2 -j 1 -t "$TXNS" \
      -f "$TEST_TMP/own_$n.sql@3" -f "$TEST_TMP/tag_$n.sql@1" -f "$TEST_TMP/two_$n.sql@1" shop \
      >"$TEST_TMP/pgbench_$n.log" 2>&1 &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return $rc
}
log "phase 2: $NN nodes x 2 clients x $TXNS transactions"
load &
LOAD_PID=$!
test_extra_cleanup() { [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null; return 0; }
before=$(node_psql a -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'stock'")
deadline=$(($(date +%s) + 60))
while kill -0 $LOAD_PID 2>/dev/null && (($(date +%s) < deadline)); do
  now=$(node_psql a -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'stock'")
  ((now > before + 150)) && break
  sleep 0.3
done
log "SIGKILL of odsync"
odsync_kill9
sleep 1
odsync_start "$CONFIG" "$LOG"
wait $LOAD_PID || fail "the workload failed: $(tail -n 5 "$TEST_TMP"/pgbench_*.log)"
LOAD_PID=
for n in "${NODES[@]}"; do grep -q "number of transactions actually processed: $((2 * TXNS))/" "$TEST_TMP/pgbench_$n.log" ||
  fail "pgbench at $n did not complete: $(cat "$TEST_TMP/pgbench_$n.log")"; done
mesh_wait_active 120
quiesce
same_everywhere "phase 2"
want=$((base - NN * 2 * TXNS))
for n in "${NODES[@]}"; do
  got=$(node_psql $n -c "SELECT sum(qty) FROM stock")
  [[ $got == "$want" ]] || fail "node $n: total qty $got, expected $want"
  for o in "${NODES[@]}"; do
    own=$(node_psql $n -c "SELECT sum(n_$o) FROM stock")
    [[ $own == $((2 * TXNS)) ]] || fail "node $n: sum(n_$o) is $own, expected $((2 * TXNS)): a change of $o's own column was lost"
  done
  conf=$(node_psql $n -c "SELECT count(*) FROM _odsync_conflicts WHERE table_name = 'public.stock' AND merged -> 'counters' ? 'qty'")
  log "node $n: total qty $got (expected $want), $conf merges with a counter delta logged"
  ((conf > 1)) || fail "node $n: no concurrent counter update detected in the live phase"
done
odsync_stop
log "ok"
